//! BuildKit's instructions layer (`frontend/dockerfile/instructions`, v0.13.2, the version Docker 26.1.5 embeds): parser
//! nodes to typed instructions, flags checked, words not yet expanded; and the Go formatting `dockerfile2llb/convert.go`
//! writes into image history (`history_text`), so that the native builder writes BuildKit's exact text.
//!
//! Where later BuildKit behaves otherwise, which Docker 28 (BuildKit v0.20 and later) or newer shows, a `HEAD:` comment
//! says so, with the version that changed it.
//!
//! # What this module expects of `parser::Node`
//!
//! The fields mirror what BuildKit's `newParseRequestFromNode` reads from its `parser.Node`:
//!
//! - `keyword`: the instruction word, matched case-insensitively. BuildKit's `Node.Value` keeps the case as written and
//!   `unknown instruction: X` prints it; a parser that lower-cases it only changes that message.
//! - `flags`: the leading `--name[=value]` words as `extractBuilderFlags` returns them (quotes and escapes removed).
//! - `args`: the values of the node's `Next` chain (`nodeArgs`), per BuildKit's line parser of the instruction:
//!   - ENV, LABEL (`parseNameVal`): key, value, key, value, ...; the legacy `ENV key value words` form is one pair whose
//!     value is the rest of the line. (`HEAD:` since v0.14 the parser gives key, value, delimiter triples.)
//!   - ARG (`parseNameOrNameVal`): one element per word, `name` or `name=value` not split.
//!   - FROM, EXPOSE (`parseStringsWhitespaceDelimited`): the words, so `FROM image AS name` is three.
//!   - COPY, ADD, VOLUME (`parseMaybeJSONToList`): the JSON array's strings when `json`, else the words.
//!   - CMD, ENTRYPOINT, RUN, SHELL (`parseMaybeJSON`): the JSON array's strings when `json`, else one element holding the
//!     rest of the line; no element when nothing follows the keyword.
//!   - MAINTAINER, USER, WORKDIR, STOPSIGNAL (`parseString`): one element, the rest of the line; none when empty.
//!   - HEALTHCHECK (`parseHealthConfig`): flat, as BuildKit's chain is: the type word first (`NONE`, `CMD` or anything else
//!     as written), then the command exactly as CMD's (`json` tells which form), so `HEALTHCHECK CMD` alone is `["CMD"]`.
//!     `sub` is not read: a parser that puts the command there has to flatten it into `args`.
//!   - ONBUILD (`parseSubCommand`): `sub` holds the trigger's node, whose `keyword` is checked (`args` is not read); no
//!     `sub` means nothing followed ONBUILD.
//! - `json`: `Attributes["json"]`, set by the JSON array forms.
//! - `original`: the instruction's full logical line (`Node.Original`, continuation lines joined): the source of ONBUILD's
//!   trigger expression and of `Command::code`.
//! - `heredocs`: BuildKit's `Node.Heredocs` in order: name with quotes removed, content as read (not chomped). ONBUILD's
//!   trigger's heredocs are on the ONBUILD node itself, as BuildKit attaches them.
//! - `start_line`, `end_line`: the 1-based lines of the instruction, for errors and locations.
//!
//! The sibling `parser.rs` as first written ports BuildKit HEAD, not v0.13.2, and differs from the above in two ways that
//! show here: ENV and LABEL come as triples (pass `args.chunks(3).flat_map(|t| t[..2].to_vec())`, or give v0.13.2's
//! pairs), and `keyword` is lower-cased (`unknown instruction: foo` for BuildKit's `unknown instruction: FOO`). Its extra
//! fields (`Node::comments`, `Heredoc::file_descriptor`) are not read.
//!
//! Not ported: doc comments (`Stage.Comment`, `KeyValuePairOptional.Comment`), which need the node's preceding comments;
//! the Windows hint of `errNotJSON` (the daemon is Linux); and the flags the frontend Docker 26.1.5 embeds is built
//! without (`RUN --security`, and in later versions `RUN --device` (v0.20) and `ADD --unpack` (v0.23)), which are unknown
//! flags here as there. `COPY --parents` and `COPY/ADD --exclude` are read where a syntax directive names a frontend that
//! has them (`Frontend`: labs, and `--exclude` from docker/dockerfile:1.19), which BuildKit then runs instead.
//! No rule that several sources need a destination ending in `/` exists in v0.13.2: that error is the classic builder's.

use std::collections::BTreeSet;
use std::fmt;
use std::net::IpAddr;

use super::go::{format_duration, go_format_slice, go_lower, go_quote, go_quote_rune, go_quote_slice, go_upper};
use super::parser::{chomp_heredoc_content, parse_heredoc, Heredoc, Node};

/// The Dockerfile frontend that reads the instructions: the one Docker 26.1.5 embeds, or the one
/// a `# syntax=` directive names, which BuildKit pulls and runs instead. Newer frontends accept
/// flags the embedded one refuses: `COPY/ADD --exclude` since docker/dockerfile:1.19, and
/// `COPY --parents` in the labs channel (`docker/dockerfile:1.7-labs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Frontend {
    Embedded,
    /// docker/dockerfile:1.19 and later, `:1` and `:latest`.
    Newer,
    Labs,
}

impl Frontend {
    /// The frontend a syntax directive's image reference names; `None`: the embedded one.
    pub fn of_syntax(syntax: Option<&str>) -> Frontend {
        let Some(reference) = syntax.map(str::trim).filter(|syntax| !syntax.is_empty()) else { return Frontend::Embedded };
        let reference = reference.split('@').next().unwrap_or_default();
        let (name, tag) = match reference.rsplit_once(':').filter(|(_, tag)| !tag.contains('/')) {
            Some((name, tag)) => (name, tag),
            None => (reference, "latest"),
        };
        if !name.ends_with("docker/dockerfile") && !name.ends_with("docker/dockerfile-upstream") {
            return Frontend::Embedded;
        }
        if tag.contains("labs") {
            return Frontend::Labs;
        }
        let mut numbers = tag.split(['.', '-']).map(|part| part.parse::<u32>().ok());
        match (numbers.next(), numbers.next()) {
            _ if tag == "latest" || tag == "master" => Frontend::Newer,
            (Some(Some(1)), None | Some(None)) => Frontend::Newer,
            (Some(Some(1)), Some(Some(minor))) if minor >= 19 => Frontend::Newer,
            (Some(Some(major)), _) if major > 1 => Frontend::Newer,
            _ => Frontend::Embedded,
        }
    }
}

/// Where an instruction is in the Dockerfile: its first and last line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Location {
    pub start_line: usize,
    pub end_line: usize,
}

impl Location {
    fn of(node: &Node) -> Self {
        Location { start_line: node.start_line, end_line: node.end_line }
    }
}

/// An instruction BuildKit refuses, with its message (BuildKit's text, case included) and the instruction's first line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstructionError {
    pub line: usize,
    pub message: String,
}

impl fmt::Display for InstructionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for InstructionError {}

/// One Dockerfile instruction, typed. Words are as written: `Instruction::expand` substitutes variables later, per stage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Instruction {
    /// FROM, which BuildKit turns into a `Stage`; `name` is lower-cased, an empty `--platform` is none.
    From {
        base_name: String,
        name: Option<String>,
        platform: Option<String>,
    },
    /// ARG: `name` alone has no value, `name=` an empty one.
    Arg {
        args: Vec<(String, Option<String>)>,
    },
    Env {
        pairs: Vec<(String, String)>,
    },
    Label {
        pairs: Vec<(String, String)>,
    },
    Copy(CopyInstruction),
    Add(AddInstruction),
    Workdir {
        path: String,
    },
    User {
        user: String,
    },
    /// EXPOSE: the words sorted (BuildKit sorts them at parse); dispatch still shell-splits each and parses the specs.
    Expose {
        ports: Vec<String>,
    },
    /// VOLUME: the paths, trimmed.
    Volume {
        volumes: Vec<String>,
    },
    StopSignal {
        signal: String,
    },
    /// CMD: the exec form's strings, or the shell form's text as one string with `prepend_shell`.
    Cmd {
        cmd_line: Vec<String>,
        prepend_shell: bool,
    },
    /// ENTRYPOINT, as CMD, except that an empty `cmd_line` is BuildKit's nil (`emptyAsNil`): `ENTRYPOINT []` makes the
    /// image's Entrypoint null, where `CMD []` makes Cmd an empty array.
    Entrypoint {
        cmd_line: Vec<String>,
        prepend_shell: bool,
    },
    Healthcheck {
        health: HealthConfig,
    },
    Shell {
        shell: Vec<String>,
    },
    /// ONBUILD: the trigger's source text (the line without `ONBUILD`, heredocs appended), as stored in the image.
    Onbuild {
        expression: String,
    },
    Maintainer {
        maintainer: String,
    },
    Run(RunInstruction),
}

/// COPY. `from` is `--from` (none when empty).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyInstruction {
    pub sources: Vec<String>,
    /// The heredoc sources (`<<EOF`), after the path sources in BuildKit's order.
    pub contents: Vec<SourceContent>,
    pub dest: String,
    pub from: Option<String>,
    pub chown: String,
    pub chmod: String,
    pub link: bool,
    /// `--exclude` patterns (a newer frontend's, named by the syntax directive).
    pub excludes: Vec<String>,
    /// `--parents` (a labs frontend's).
    pub parents: bool,
}

/// ADD. `checksum` is only checked (as a digest, and for one HTTP source) at dispatch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddInstruction {
    pub sources: Vec<String>,
    pub contents: Vec<SourceContent>,
    pub dest: String,
    pub chown: String,
    pub chmod: String,
    pub link: bool,
    pub keep_git_dir: bool,
    pub checksum: String,
    /// `--exclude` patterns (a newer frontend's, named by the syntax directive).
    pub excludes: Vec<String>,
}

/// A heredoc source of COPY or ADD: written to `path` (the heredoc's name) with `data`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceContent {
    pub path: String,
    pub data: String,
    /// Whether `Instruction::expand_raw` substitutes variables in `data` (the heredoc word was not quoted).
    pub expand: bool,
}

/// RUN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunInstruction {
    pub cmd_line: Vec<String>,
    /// The heredocs, whose `<<NAME` words stay in `cmd_line` for dispatch to resolve.
    pub files: Vec<ShellInlineFile>,
    pub prepend_shell: bool,
    /// The `--mount` values as written; `expand` parses them again with variables substituted.
    pub mount_specs: Vec<String>,
    /// The parsed mounts: at parse BuildKit only checks them (most keys wait for `expand`), so they are complete after it.
    pub mounts: Vec<Mount>,
    pub network: NetworkMode,
    /// The flags given, sorted (BuildKit's order is Go's map order).
    pub flags_used: Vec<String>,
}

/// A heredoc of RUN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShellInlineFile {
    pub name: String,
    pub data: String,
    pub chomp: bool,
}

/// `RUN --network`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NetworkMode {
    Default,
    None,
    Host,
}

/// HEALTHCHECK's configuration, durations in nanoseconds; zero means inherit.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HealthConfig {
    /// `["NONE"]`, `["CMD", args...]` or `["CMD-SHELL", command]`.
    pub test: Vec<String>,
    pub interval: i64,
    pub timeout: i64,
    pub start_period: i64,
    pub start_interval: i64,
    pub retries: i32,
}

/// A `RUN --mount` (`type` defaults to bind; `readonly` defaults to true but for cache and tmpfs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    pub mount_type: MountType,
    pub from: String,
    pub source: String,
    pub target: String,
    pub read_only: bool,
    /// tmpfs `size` in bytes.
    pub size_limit: i64,
    /// `id`.
    pub cache_id: String,
    pub cache_sharing: Option<ShareMode>,
    /// secret and ssh `required`.
    pub required: bool,
    /// Octal `mode`, `uid`, `gid` (cache, secret and ssh mounts only).
    pub mode: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MountType {
    Bind,
    Cache,
    Tmpfs,
    Secret,
    Ssh,
}

impl MountType {
    /// Sorted, which stands for Go's map order wherever BuildKit suggests from it.
    const ALL: [(&'static str, MountType); 5] = [
        ("bind", MountType::Bind),
        ("cache", MountType::Cache),
        ("secret", MountType::Secret),
        ("ssh", MountType::Ssh),
        ("tmpfs", MountType::Tmpfs),
    ];

    fn as_str(self) -> &'static str {
        match self {
            MountType::Bind => "bind",
            MountType::Cache => "cache",
            MountType::Tmpfs => "tmpfs",
            MountType::Secret => "secret",
            MountType::Ssh => "ssh",
        }
    }
}

/// A cache mount's `sharing`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShareMode {
    Shared,
    Private,
    Locked,
}

impl ShareMode {
    const ALL: [(&'static str, ShareMode); 3] =
        [("locked", ShareMode::Locked), ("private", ShareMode::Private), ("shared", ShareMode::Shared)];
}

/// An instruction of a stage, with its location and source text (BuildKit's `String()`: the line, trimmed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    pub instruction: Instruction,
    pub location: Location,
    pub code: String,
}

/// A FROM and the instructions up to the next one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stage {
    /// The `AS` name, lower-cased.
    pub name: Option<String>,
    pub base_name: String,
    pub platform: Option<String>,
    /// The FROM line, trimmed.
    pub source_code: String,
    pub location: Location,
    pub commands: Vec<Command>,
}

/// BuildKit's `ParseInstruction` for one node; the error's message has no line prefix (see `parse`).
#[cfg(test)]
pub fn parse_instruction(node: &Node) -> Result<Instruction, InstructionError> {
    parse_node(node, Frontend::Embedded).map_err(|message| InstructionError { line: node.start_line, message })
}

/// BuildKit's `Parse`: the ARGs before the first FROM (meta args, always `Instruction::Arg`), and the stages.
///
/// An instruction's own error is prefixed `dockerfile parse error on line N: ` as BuildKit's `parseError` does; any other
/// instruction than ARG before the first FROM is `no build stage in current context`, unprefixed, as in BuildKit.
pub fn parse(nodes: &[Node], frontend: Frontend) -> Result<(Vec<Command>, Vec<Stage>), InstructionError> {
    let mut meta_args = Vec::new();
    let mut stages: Vec<Stage> = Vec::new();
    for node in nodes {
        let instruction = parse_node(node, frontend).map_err(|message| InstructionError {
            line: node.start_line,
            message: format!("dockerfile parse error on line {}: {message}", node.start_line),
        })?;
        let location = Location::of(node);
        let code = node.original.trim().to_string();
        if let Instruction::From { base_name, name, platform } = instruction {
            stages.push(Stage { name, base_name, platform, source_code: code, location, commands: Vec::new() });
            continue;
        }
        let command = Command { instruction, location, code };
        match stages.last_mut() {
            Some(stage) => stage.commands.push(command),
            None if matches!(command.instruction, Instruction::Arg { .. }) => meta_args.push(command),
            None => return Err(InstructionError { line: node.start_line, message: "no build stage in current context".to_string() }),
        }
    }
    Ok((meta_args, stages))
}

/// The instruction names, sorted (Go's map order where BuildKit suggests one for an unknown instruction).
const INSTRUCTION_NAMES: [&str; 18] = [
    "ADD",
    "ARG",
    "CMD",
    "COPY",
    "ENTRYPOINT",
    "ENV",
    "EXPOSE",
    "FROM",
    "HEALTHCHECK",
    "LABEL",
    "MAINTAINER",
    "ONBUILD",
    "RUN",
    "SHELL",
    "STOPSIGNAL",
    "USER",
    "VOLUME",
    "WORKDIR",
];

fn parse_node(node: &Node, frontend: Frontend) -> Result<Instruction, String> {
    match go_lower(&node.keyword).as_str() {
        "env" => parse_env(node),
        "maintainer" => parse_maintainer(node),
        "label" => parse_label(node),
        "add" => parse_add(node, frontend),
        "copy" => parse_copy(node, frontend),
        "from" => parse_from(node),
        "onbuild" => parse_onbuild(node),
        "workdir" => parse_workdir(node),
        "run" => parse_run(node),
        "cmd" => parse_cmd(node),
        "healthcheck" => parse_healthcheck(node),
        "entrypoint" => parse_entrypoint(node),
        "expose" => parse_expose(node),
        "user" => parse_user(node),
        "volume" => parse_volume(node),
        "stopsignal" => parse_stop_signal(node),
        "arg" => parse_arg(node),
        "shell" => parse_shell(node),
        _ => Err(with_suggestion(format!("unknown instruction: {}", node.keyword), &node.keyword, &INSTRUCTION_NAMES, false)),
    }
}

fn err_at_least_one_argument(command: &str) -> String {
    format!("{command} requires at least one argument")
}

fn err_exactly_one_argument(command: &str) -> String {
    format!("{command} requires exactly one argument")
}

fn err_no_destination_argument(command: &str) -> String {
    format!("{command} requires at least two arguments, but only one was provided. Destination could not be determined")
}

/// Parses the flags of an instruction that takes none, which rejects any given.
fn no_flags(node: &Node) -> Result<(), String> {
    BFlags::new(&node.flags).parse()
}

/// The one argument of MAINTAINER, USER, WORKDIR, STOPSIGNAL.
fn exactly_one<'a>(node: &'a Node, command: &str) -> Result<&'a str, String> {
    match node.args.as_slice() {
        [arg] => Ok(arg),
        _ => Err(err_exactly_one_argument(command)),
    }
}

/// The parser gives ENV and LABEL as key, value, separator triples (BuildKit v0.14's shape);
/// v0.13.2's instructions layer read key, value pairs.
fn pairs_of_triples(args: &[String]) -> Vec<String> {
    args.chunks(3).flat_map(|triple| triple.iter().take(2).cloned()).collect()
}

fn parse_kvps(args: &[String], command: &str) -> Result<Vec<(String, String)>, String> {
    if args.is_empty() {
        return Err(err_at_least_one_argument(command));
    }
    if !args.len().is_multiple_of(2) {
        return Err(format!("Bad input to {command}, too many arguments"));
    }
    args.chunks_exact(2)
        .map(|pair| match (&pair[0], &pair[1]) {
            (key, _) if key.is_empty() => Err(format!("{command} names can not be blank")),
            (key, value) => Ok((key.clone(), value.clone())),
        })
        .collect()
}

fn parse_env(node: &Node) -> Result<Instruction, String> {
    no_flags(node)?;
    Ok(Instruction::Env { pairs: parse_kvps(&pairs_of_triples(&node.args), "ENV")? })
}

fn parse_label(node: &Node) -> Result<Instruction, String> {
    no_flags(node)?;
    Ok(Instruction::Label { pairs: parse_kvps(&pairs_of_triples(&node.args), "LABEL")? })
}

fn parse_maintainer(node: &Node) -> Result<Instruction, String> {
    let maintainer = exactly_one(node, "MAINTAINER")?;
    no_flags(node)?;
    Ok(Instruction::Maintainer { maintainer: maintainer.to_string() })
}

fn parse_workdir(node: &Node) -> Result<Instruction, String> {
    let path = exactly_one(node, "WORKDIR")?;
    no_flags(node)?;
    Ok(Instruction::Workdir { path: path.to_string() })
}

fn parse_user(node: &Node) -> Result<Instruction, String> {
    let user = exactly_one(node, "USER")?;
    no_flags(node)?;
    Ok(Instruction::User { user: user.to_string() })
}

/// STOPSIGNAL parses no flags in BuildKit: any given are ignored; the signal is only checked at dispatch.
fn parse_stop_signal(node: &Node) -> Result<Instruction, String> {
    Ok(Instruction::StopSignal { signal: exactly_one(node, "STOPSIGNAL")?.to_string() })
}

/// ARG parses no flags in BuildKit either.
fn parse_arg(node: &Node) -> Result<Instruction, String> {
    if node.args.is_empty() {
        return Err(err_at_least_one_argument("ARG"));
    }
    let args = node
        .args
        .iter()
        .map(|arg| match arg.split_once('=') {
            Some(("", _)) => Err("ARG names can not be blank".to_string()),
            Some((key, value)) => Ok((key.to_string(), Some(value.to_string()))),
            None => Ok((arg.clone(), None)),
        })
        .collect::<Result<_, _>>()?;
    Ok(Instruction::Arg { args })
}

fn parse_expose(node: &Node) -> Result<Instruction, String> {
    if node.args.is_empty() {
        return Err(err_at_least_one_argument("EXPOSE"));
    }
    no_flags(node)?;
    let mut ports = node.args.clone();
    ports.sort();
    Ok(Instruction::Expose { ports })
}

fn parse_volume(node: &Node) -> Result<Instruction, String> {
    if node.args.is_empty() {
        return Err(err_at_least_one_argument("VOLUME"));
    }
    no_flags(node)?;
    let volumes = node
        .args
        .iter()
        .map(|volume| match volume.trim() {
            "" => Err("VOLUME specified can not be an empty string".to_string()),
            volume => Ok(volume.to_string()),
        })
        .collect::<Result<_, _>>()?;
    Ok(Instruction::Volume { volumes })
}

fn parse_from(node: &Node) -> Result<Instruction, String> {
    // The stage name is checked before the flags, so a bad name hides a bad flag.
    let name = parse_build_stage_name(&node.args)?;
    let mut flags = BFlags::new(&node.flags);
    let platform = flags.add_string("platform", "");
    flags.parse()?;
    Ok(Instruction::From { base_name: node.args[0].clone(), name, platform: non_empty(flags.value(platform)) })
}

fn parse_build_stage_name(args: &[String]) -> Result<Option<String>, String> {
    match args {
        [_, as_word, name] if equal_fold_ascii(as_word, "as") => {
            let stage_name = go_lower(name);
            // `^[a-z][a-z0-9-_.]*$`
            let valid = stage_name.starts_with(|c: char| c.is_ascii_lowercase())
                && stage_name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_' | '.'));
            if !valid {
                return Err(format!("invalid name for build stage: {}, name can't start with a number or contain symbols", go_quote(name)));
            }
            Ok(Some(stage_name))
        }
        [_] => Ok(None),
        _ => Err("FROM requires either one or three arguments".to_string()),
    }
}

fn parse_onbuild(node: &Node) -> Result<Instruction, String> {
    let Some(trigger) = &node.sub else {
        return Err(err_at_least_one_argument("ONBUILD"));
    };
    no_flags(node)?;
    match go_upper(trigger.keyword.trim()).as_str() {
        "ONBUILD" => return Err("Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed".to_string()),
        name @ ("MAINTAINER" | "FROM") => return Err(format!("{name} isn't allowed as an ONBUILD trigger")),
        _ => {}
    }
    let mut expression = strip_onbuild_keyword(&node.original).to_string();
    for heredoc in &node.heredocs {
        expression.push('\n');
        expression.push_str(&heredoc.content);
        expression.push_str(&heredoc.name);
    }
    Ok(Instruction::Onbuild { expression })
}

/// `original` without what BuildKit's `(?i)^\s*ONBUILD\s*` matches (RE2's `\s` is `[\t\n\f\r ]`).
fn strip_onbuild_keyword(original: &str) -> &str {
    let is_space = |c: char| matches!(c, '\t' | '\n' | '\x0c' | '\r' | ' ');
    let rest = original.trim_start_matches(is_space);
    match rest.get(..7) {
        Some(keyword) if keyword.eq_ignore_ascii_case("ONBUILD") => rest[7..].trim_start_matches(is_space),
        _ => original,
    }
}

/// BuildKit's `handleJSONArgs`: the exec form's strings, or the shell form's words joined into one string.
fn handle_json_args(args: &[String], json: bool) -> Vec<String> {
    if args.is_empty() {
        Vec::new()
    } else if json {
        args.to_vec()
    } else {
        vec![args.join(" ")]
    }
}

fn parse_cmd(node: &Node) -> Result<Instruction, String> {
    no_flags(node)?;
    Ok(Instruction::Cmd { cmd_line: handle_json_args(&node.args, node.json), prepend_shell: !node.json })
}

fn parse_entrypoint(node: &Node) -> Result<Instruction, String> {
    no_flags(node)?;
    Ok(Instruction::Entrypoint { cmd_line: handle_json_args(&node.args, node.json), prepend_shell: !node.json })
}

fn parse_shell(node: &Node) -> Result<Instruction, String> {
    no_flags(node)?;
    let shell = handle_json_args(&node.args, node.json);
    if shell.is_empty() {
        Err(err_at_least_one_argument("SHELL"))
    } else if node.json {
        Ok(Instruction::Shell { shell })
    } else {
        Err("SHELL requires the arguments to be in JSON form".to_string())
    }
}

fn parse_run(node: &Node) -> Result<Instruction, String> {
    // The flags BuildKit's RUN pre-hooks add (commands_runmount.go, commands_runnetwork.go); `--security` is labs-only.
    let mut flags = BFlags::new(&node.flags);
    let mount = flags.add_strings("mount");
    let network = flags.add_string("network", "default");
    flags.parse()?;
    let flags_used = flags.used();
    let files = node
        .heredocs
        .iter()
        .map(|heredoc| ShellInlineFile { name: heredoc.name.clone(), data: heredoc.content.clone(), chomp: heredoc.chomp })
        .collect();
    // The post-hooks: mounts checked without expansion, then the network mode.
    let mount_specs = flags.values(mount).to_vec();
    let mounts = mount_specs.iter().map(|spec| parse_mount(spec, None)).collect::<Result<_, _>>()?;
    let network = match flags.value(network) {
        "default" => NetworkMode::Default,
        "none" => NetworkMode::None,
        "host" => NetworkMode::Host,
        other => return Err(format!("invalid network mode {}", go_quote(other))),
    };
    Ok(Instruction::Run(RunInstruction {
        cmd_line: handle_json_args(&node.args, node.json),
        files,
        prepend_shell: !node.json,
        mount_specs,
        mounts,
        network,
        flags_used,
    }))
}

/// A duration flag of HEALTHCHECK: zero when empty or zero, else at least BuildKit's minimum of 1ms.
fn parse_opt_interval(name: &str, value: &str) -> Result<i64, String> {
    const MINIMUM_DURATION: i64 = 1_000_000;
    if value.is_empty() {
        return Ok(0);
    }
    match parse_duration(value)? {
        0 => Ok(0),
        duration if duration < MINIMUM_DURATION => {
            Err(format!("Interval {} cannot be less than {}", go_quote(name), format_duration(MINIMUM_DURATION)))
        }
        duration => Ok(duration),
    }
}

fn parse_healthcheck(node: &Node) -> Result<Instruction, String> {
    let Some((typ, args)) = node.args.split_first() else {
        return Err(err_at_least_one_argument("HEALTHCHECK"));
    };
    let typ = go_upper(typ);
    if typ == "NONE" {
        // BuildKit parses no flags for NONE: any given are ignored.
        if !args.is_empty() {
            return Err("HEALTHCHECK NONE takes no arguments".to_string());
        }
        return Ok(Instruction::Healthcheck { health: HealthConfig { test: vec![typ], ..HealthConfig::default() } });
    }
    let mut flags = BFlags::new(&node.flags);
    let interval = flags.add_string("interval", "");
    let timeout = flags.add_string("timeout", "");
    let start_period = flags.add_string("start-period", "");
    let start_interval = flags.add_string("start-interval", "");
    let retries = flags.add_string("retries", "");
    flags.parse()?;
    if typ != "CMD" {
        return Err(format!("Unknown type {} in HEALTHCHECK (try CMD)", go_quote(&typ)));
    }
    let cmd = handle_json_args(args, node.json);
    if cmd.is_empty() {
        return Err("Missing command after HEALTHCHECK CMD".to_string());
    }
    let test_type = if node.json { "CMD" } else { "CMD-SHELL" };
    let test = std::iter::once(test_type.to_string()).chain(cmd).collect();
    let interval = parse_opt_interval("interval", flags.value(interval))?;
    let timeout = parse_opt_interval("timeout", flags.value(timeout))?;
    let start_period = parse_opt_interval("start-period", flags.value(start_period))?;
    let start_interval = parse_opt_interval("start-interval", flags.value(start_interval))?;
    let retries = match flags.value(retries) {
        "" => 0,
        value => match parse_int32(value)? {
            negative if negative < 0 => return Err(format!("--retries cannot be negative ({negative})")),
            retries => retries,
        },
    };
    Ok(Instruction::Healthcheck { health: HealthConfig { test, interval, timeout, start_period, start_interval, retries } })
}

fn parse_copy(node: &Node, frontend: Frontend) -> Result<Instruction, String> {
    if node.args.len() < 2 {
        return Err(err_no_destination_argument("COPY"));
    }
    let mut flags = BFlags::new(&node.flags);
    let chown = flags.add_string("chown", "");
    let from = flags.add_string("from", "");
    let chmod = flags.add_string("chmod", "");
    let link = flags.add_bool("link", false);
    let parents = (frontend == Frontend::Labs).then(|| flags.add_bool("parents", false));
    let excludes = (frontend != Frontend::Embedded).then(|| flags.add_strings("exclude"));
    flags.parse()?;
    let (sources, contents, dest) = parse_sources_and_dest(node, "COPY")?;
    Ok(Instruction::Copy(CopyInstruction {
        sources,
        contents,
        dest,
        from: non_empty(flags.value(from)),
        chown: flags.value(chown).to_string(),
        chmod: flags.value(chmod).to_string(),
        link: flags.is_true(link),
        excludes: excludes.map(|id| flags.values(id).to_vec()).unwrap_or_default(),
        parents: parents.is_some_and(|id| flags.is_true(id)),
    }))
}

fn parse_add(node: &Node, frontend: Frontend) -> Result<Instruction, String> {
    if node.args.len() < 2 {
        return Err(err_no_destination_argument("ADD"));
    }
    let mut flags = BFlags::new(&node.flags);
    let chown = flags.add_string("chown", "");
    let chmod = flags.add_string("chmod", "");
    let link = flags.add_bool("link", false);
    let keep_git_dir = flags.add_bool("keep-git-dir", false);
    let checksum = flags.add_string("checksum", "");
    let excludes = (frontend != Frontend::Embedded).then(|| flags.add_strings("exclude"));
    flags.parse()?;
    let (sources, contents, dest) = parse_sources_and_dest(node, "ADD")?;
    Ok(Instruction::Add(AddInstruction {
        sources,
        contents,
        dest,
        chown: flags.value(chown).to_string(),
        chmod: flags.value(chmod).to_string(),
        link: flags.is_true(link),
        keep_git_dir: flags.is_true(keep_git_dir),
        checksum: flags.value(checksum).to_string(),
        excludes: excludes.map(|id| flags.values(id).to_vec()).unwrap_or_default(),
    }))
}

/// The sources split into paths and heredocs (a source that reads as a heredoc word, whatever the node's heredocs: a
/// name the node lacks gives empty data), and the destination, which cannot be a heredoc.
fn parse_sources_and_dest(node: &Node, command: &str) -> Result<(Vec<String>, Vec<SourceContent>, String), String> {
    let (dest, sources) = node.args.split_last().expect("callers checked two arguments");
    if must_parse_heredoc(dest).is_some() {
        return Err(format!("{command} cannot accept a heredoc as a destination"));
    }
    let mut paths = Vec::new();
    let mut contents = Vec::new();
    for source in sources {
        match must_parse_heredoc(source) {
            Some(word) => {
                // BuildKit looks heredocs up in a map filled in order, so the last of a name wins.
                let content = node.heredocs.iter().rev().find(|heredoc| heredoc.name == word.name).map_or("", |h| &h.content);
                let data = if word.chomp { chomp_heredoc_content(content) } else { content.to_string() };
                contents.push(SourceContent { path: word.name, data, expand: word.expand });
            }
            None => paths.push(source.clone()),
        }
    }
    Ok((paths, contents, dest.clone()))
}

fn non_empty(value: &str) -> Option<String> {
    (!value.is_empty()).then(|| value.to_string())
}

/// BuildKit's `SingleWordExpander`: a word in, the word with its variables substituted out.
pub type SingleWordExpander<'a> = dyn FnMut(&str) -> Result<String, String> + 'a;

impl Instruction {
    /// BuildKit's `Expand` methods: the fields substituted with the single-word expander (dispatch's
    /// `shlex.ProcessWord` over the stage's environment), in BuildKit's order. RUN parses its mounts again, expanded.
    /// Not expanded here, as in BuildKit: FROM (expanded with the meta args), EXPOSE (dispatch shell-splits each
    /// word), CMD, ENTRYPOINT, HEALTHCHECK, SHELL, ONBUILD, MAINTAINER, COPY/ADD `--chmod` and `--from`, RUN's command.
    pub fn expand(&mut self, expander: &mut SingleWordExpander) -> Result<(), String> {
        let mut word = |value: &mut String| -> Result<(), String> {
            *value = expander(value)?;
            Ok(())
        };
        match self {
            Instruction::Env { pairs } | Instruction::Label { pairs } => {
                for (key, value) in pairs {
                    word(key)?;
                    word(value)?;
                }
            }
            // HEAD (v0.16+): `--chmod` is expanded too, after `--chown`.
            Instruction::Add(add) => {
                word(&mut add.chown)?;
                word(&mut add.checksum)?;
                add.sources.iter_mut().try_for_each(&mut word)?;
                word(&mut add.dest)?;
            }
            Instruction::Copy(copy) => {
                word(&mut copy.chown)?;
                copy.sources.iter_mut().try_for_each(&mut word)?;
                word(&mut copy.dest)?;
            }
            Instruction::Workdir { path } => word(path)?,
            Instruction::User { user } => word(user)?,
            Instruction::Volume { volumes } => volumes.iter_mut().try_for_each(&mut word)?,
            Instruction::StopSignal { signal } => word(signal)?,
            Instruction::Arg { args } => {
                for (key, value) in args {
                    word(key)?;
                    if let Some(value) = value {
                        word(value)?;
                    }
                }
            }
            Instruction::Run(run) => {
                run.mounts = run.mount_specs.iter().map(|spec| parse_mount(spec, Some(&mut *expander))).collect::<Result<_, _>>()?;
            }
            Instruction::From { .. }
            | Instruction::Expose { .. }
            | Instruction::Cmd { .. }
            | Instruction::Entrypoint { .. }
            | Instruction::Healthcheck { .. }
            | Instruction::Shell { .. }
            | Instruction::Onbuild { .. }
            | Instruction::Maintainer { .. } => {}
        }
        Ok(())
    }

    /// BuildKit's `ExpandRaw`: the data of COPY and ADD heredocs whose word was unquoted, with the expander dispatch
    /// builds for it (a lexer that keeps quotes: `SkipProcessQuotes`). Dispatch runs it after `expand`.
    pub fn expand_raw(&mut self, expander: &mut SingleWordExpander) -> Result<(), String> {
        let contents = match self {
            Instruction::Copy(copy) => &mut copy.contents,
            Instruction::Add(add) => &mut add.contents,
            _ => return Ok(()),
        };
        for content in contents.iter_mut().filter(|content| content.expand) {
            content.data = expander(&content.data)?;
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------------------------------
// bflag.go

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FlagKind {
    Bool,
    String,
    Strings,
}

#[derive(Debug)]
struct Flag {
    name: &'static str,
    kind: FlagKind,
    value: String,
    values: Vec<String>,
}

/// A flag added to `BFlags`, to read its value after `parse`.
#[derive(Debug, Clone, Copy)]
struct FlagId(usize);

/// BuildKit's `BFlags`: the flags an instruction accepts, then the node's flags parsed against them.
#[derive(Debug)]
struct BFlags<'a> {
    args: &'a [String],
    flags: Vec<Flag>,
    /// Indices into `flags`, in order of first use.
    used: Vec<usize>,
}

impl<'a> BFlags<'a> {
    fn new(args: &'a [String]) -> Self {
        BFlags { args, flags: Vec::new(), used: Vec::new() }
    }

    fn add(&mut self, name: &'static str, kind: FlagKind, value: &str) -> FlagId {
        self.flags.push(Flag { name, kind, value: value.to_string(), values: Vec::new() });
        FlagId(self.flags.len() - 1)
    }

    fn add_bool(&mut self, name: &'static str, default: bool) -> FlagId {
        self.add(name, FlagKind::Bool, if default { "true" } else { "false" })
    }

    fn add_string(&mut self, name: &'static str, default: &str) -> FlagId {
        self.add(name, FlagKind::String, default)
    }

    /// A flag that may be repeated, each value kept.
    fn add_strings(&mut self, name: &'static str) -> FlagId {
        self.add(name, FlagKind::Strings, "")
    }

    fn value(&self, id: FlagId) -> &str {
        &self.flags[id.0].value
    }

    fn is_true(&self, id: FlagId) -> bool {
        self.flags[id.0].value == "true"
    }

    fn values(&self, id: FlagId) -> &[String] {
        &self.flags[id.0].values
    }

    /// The names of the flags given, sorted.
    fn used(&self) -> Vec<String> {
        let mut used: Vec<String> = self.used.iter().map(|&index| self.flags[index].name.to_string()).collect();
        used.sort();
        used
    }

    fn parse(&mut self) -> Result<(), String> {
        for arg in self.args {
            let Some(flag) = arg.strip_prefix("--") else {
                return Err(format!("arg should start with -- : {arg}"));
            };
            if flag.is_empty() {
                return Ok(());
            }
            // HEAD (v0.17+): the errors below name the flag with its `--` (`unknown flag: --boo`).
            let (name, value) = match flag.split_once('=') {
                Some((name, value)) => (name, Some(value)),
                None => (flag, None),
            };
            let Some(index) = self.flags.iter().position(|flag| flag.name == name) else {
                let mut names: Vec<&str> = self.flags.iter().map(|flag| flag.name).collect();
                names.sort_unstable();
                return Err(with_suggestion(format!("unknown flag: {name}"), name, &names, true));
            };
            let flag = &mut self.flags[index];
            if self.used.contains(&index) && flag.kind != FlagKind::Strings {
                return Err(format!("duplicate flag specified: {name}"));
            }
            if !self.used.contains(&index) {
                self.used.push(index);
            }
            match (flag.kind, value) {
                // An empty value is only fine when there is no `=`.
                (FlagKind::Bool, Some("")) => return Err(format!("missing a value on flag: {name}")),
                (FlagKind::Bool, value) => match go_lower(value.unwrap_or("")).as_str() {
                    "true" | "" => flag.value = "true".to_string(),
                    "false" => flag.value = "false".to_string(),
                    _ => return Err(format!("expecting boolean value for flag {name}, not: {}", value.unwrap_or(""))),
                },
                (FlagKind::String | FlagKind::Strings, None) => return Err(format!("missing a value on flag: {name}")),
                (FlagKind::String, Some(value)) => flag.value = value.to_string(),
                (FlagKind::Strings, Some(value)) => flag.values.push(value.to_string()),
            }
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------------------------------
// commands_runmount.go

/// BuildKit's `parseMount`. Without an expander (at parse) only the CSV, key/value shapes and `from` are checked and the
/// other keys wait; with one (`expand`) every value is substituted first, then checked.
fn parse_mount(spec: &str, mut expander: Option<&mut SingleWordExpander>) -> Result<Mount, String> {
    let fields = csv_fields(spec).map_err(|err| format!("failed to parse csv mounts: {err}"))?;
    let mut mount = Mount {
        mount_type: MountType::Bind,
        from: String::new(),
        source: String::new(),
        target: String::new(),
        read_only: false,
        size_limit: 0,
        cache_id: String::new(),
        cache_sharing: None,
        required: false,
        mode: None,
        uid: None,
        gid: None,
    };
    let mut read_only_auto = true;
    let secret_or_ssh = |mount: &Mount| matches!(mount.mount_type, MountType::Secret | MountType::Ssh);
    let unexpected_key = |key: &str, mount: &Mount| format!("unexpected key '{key}' for mount type '{}'", mount.mount_type.as_str());

    for field in &fields {
        let (key, value) = match field.split_once('=') {
            Some((key, value)) => (go_lower(key), value.to_string()),
            None => {
                if expander.is_none() {
                    continue;
                }
                let key = go_lower(field);
                match key.as_str() {
                    "readonly" | "ro" => {
                        mount.read_only = true;
                        read_only_auto = false;
                    }
                    "readwrite" | "rw" => {
                        mount.read_only = false;
                        read_only_auto = false;
                    }
                    "required" if secret_or_ssh(&mount) => mount.required = true,
                    "required" => return Err(unexpected_key(&key, &mount)),
                    _ => return Err(format!("invalid field '{field}' must be a key=value pair")),
                }
                continue;
            }
        };
        let value = match expander.as_mut() {
            Some(expander) => expander(&value)?,
            None if key == "from" => {
                // `\$.`: a `$` followed by anything but a newline.
                if value.chars().zip(value.chars().skip(1)).any(|(dollar, next)| dollar == '$' && next != '\n') {
                    return Err(format!("'{key}' doesn't support variable expansion, define alias stage instead"));
                }
                value
            }
            None => continue,
        };
        match key.as_str() {
            "type" => {
                let lower = go_lower(&value);
                let Some(&(_, mount_type)) = MountType::ALL.iter().find(|(name, _)| *name == lower) else {
                    let names = MountType::ALL.map(|(name, _)| name);
                    return Err(with_suggestion(format!("unsupported mount type {}", go_quote(&value)), &value, &names, true));
                };
                mount.mount_type = mount_type;
            }
            "from" => mount.from = value,
            "source" | "src" => mount.source = value,
            "target" | "dst" | "destination" => mount.target = value,
            "readonly" | "ro" => {
                mount.read_only = parse_bool(&value).ok_or_else(|| format!("invalid value for {key}: {value}"))?;
                read_only_auto = false;
            }
            "readwrite" | "rw" => {
                mount.read_only = !parse_bool(&value).ok_or_else(|| format!("invalid value for {key}: {value}"))?;
                read_only_auto = false;
            }
            "required" if secret_or_ssh(&mount) => {
                mount.required = parse_bool(&value).ok_or_else(|| format!("invalid value for {key}: {value}"))?;
            }
            "required" => return Err(unexpected_key(&key, &mount)),
            "size" if mount.mount_type == MountType::Tmpfs => {
                mount.size_limit = ram_in_bytes(&value).ok_or_else(|| format!("invalid value for {key}: {value}"))?;
            }
            "size" => return Err(unexpected_key(&key, &mount)),
            "id" => mount.cache_id = value,
            "sharing" => {
                let lower = go_lower(&value);
                let Some(&(_, mode)) = ShareMode::ALL.iter().find(|(name, _)| *name == lower) else {
                    let names = ShareMode::ALL.map(|(name, _)| name);
                    return Err(with_suggestion(format!("unsupported sharing value {}", go_quote(&value)), &value, &names, true));
                };
                mount.cache_sharing = Some(mode);
            }
            "mode" => mount.mode = Some(parse_uint32(&value, 8).ok_or_else(|| format!("invalid value {value} for mode"))?),
            "uid" => mount.uid = Some(parse_uint32(&value, 10).ok_or_else(|| format!("invalid value {value} for uid"))?),
            "gid" => mount.gid = Some(parse_uint32(&value, 10).ok_or_else(|| format!("invalid value {value} for gid"))?),
            _ => {
                // HEAD: the suggestions also know `size`, `destination` and (new) `env`.
                const ALL_KEYS: [&str; 16] = [
                    "type",
                    "from",
                    "source",
                    "target",
                    "readonly",
                    "id",
                    "sharing",
                    "required",
                    "mode",
                    "uid",
                    "gid",
                    "src",
                    "dst",
                    "ro",
                    "rw",
                    "readwrite",
                ];
                return Err(with_suggestion(format!("unexpected key '{key}' in '{field}'"), &key, &ALL_KEYS, true));
            }
        }
    }

    if !matches!(mount.mount_type, MountType::Secret | MountType::Ssh | MountType::Cache) {
        let type_name = go_quote(mount.mount_type.as_str());
        if mount.mode.is_some() {
            return Err(format!("mode not allowed for {type_name} type mounts"));
        }
        if mount.uid.is_some() {
            return Err(format!("uid not allowed for {type_name} type mounts"));
        }
        if mount.gid.is_some() {
            return Err(format!("gid not allowed for {type_name} type mounts"));
        }
    }
    if read_only_auto {
        mount.read_only = !matches!(mount.mount_type, MountType::Cache | MountType::Tmpfs);
    }
    if mount.mount_type == MountType::Secret {
        if !mount.from.is_empty() {
            return Err("secret mount should not have a from".to_string());
        }
        if mount.cache_sharing.is_some() {
            return Err("secret mount should not define sharing".to_string());
        }
        if mount.source.is_empty() && mount.target.is_empty() && mount.cache_id.is_empty() {
            return Err("invalid secret mount. one of source, target required".to_string());
        }
        if !mount.source.is_empty() && !mount.cache_id.is_empty() {
            return Err("both source and id can't be set".to_string());
        }
    }
    if mount.cache_sharing.is_some() && mount.mount_type != MountType::Cache {
        return Err(format!("invalid cache sharing set for {} mount", mount.mount_type.as_str()));
    }
    Ok(mount)
}

/// Go's `encoding/csv` reading the first record of a mount spec (`,` separated, `"` quoted, `""` a quote), with its
/// errors. A flag value is one line, so the record is the whole spec.
fn csv_fields(line: &str) -> Result<Vec<String>, String> {
    const BARE_QUOTE: &str = "bare \" in non-quoted-field";
    const QUOTE: &str = "extraneous or missing \" in quoted-field";
    let error = |column: usize, what: &str| format!("parse error on line 1, column {column}: {what}");
    if line.is_empty() {
        return Err("EOF".to_string());
    }
    let mut fields = Vec::new();
    let mut rest = line;
    // Go's 1-based byte column of `rest`.
    let mut column = 1;
    'fields: loop {
        let Some(quoted) = rest.strip_prefix('"') else {
            let (field, next) = match rest.find(',') {
                Some(comma) => (&rest[..comma], Some(comma)),
                None => (rest, None),
            };
            if let Some(quote) = field.find('"') {
                return Err(error(column + quote, BARE_QUOTE));
            }
            fields.push(field.to_string());
            let Some(comma) = next else { return Ok(fields) };
            rest = &rest[comma + 1..];
            column += comma + 1;
            continue;
        };
        rest = quoted;
        column += 1;
        let mut field = String::new();
        while let Some(quote) = rest.find('"') {
            field.push_str(&rest[..quote]);
            rest = &rest[quote + 1..];
            column += quote + 1;
            if let Some(after) = rest.strip_prefix('"') {
                field.push('"');
                rest = after;
                column += 1;
            } else if let Some(after) = rest.strip_prefix(',') {
                fields.push(field);
                rest = after;
                column += 1;
                continue 'fields;
            } else if rest.is_empty() {
                fields.push(field);
                return Ok(fields);
            } else {
                return Err(error(column - 1, QUOTE));
            }
        }
        // The line ended inside the quotes.
        return Err(error(column + rest.len(), QUOTE));
    }
}

/// Go's `strconv.ParseBool`.
fn parse_bool(value: &str) -> Option<bool> {
    match value {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// Go's `strconv.ParseUint(value, radix, 32)`: digits only (no sign, no underscores outside base 0).
fn parse_uint32(value: &str, radix: u32) -> Option<u32> {
    if value.is_empty() || !value.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    u32::from_str_radix(value, radix).ok()
}

/// docker/go-units `RAMInBytes`: a number, then an optional binary unit (`k`, `m`, `g`, `t`, `p`, with an optional `b` or
/// `ib`, any case), or `b`. Rust's float parsing stands for Go's `ParseFloat`; they differ only on hexadecimal floats and
/// overflowing or non-finite values, which are refused here.
fn ram_in_bytes(size: &str) -> Option<i64> {
    let sep = size.rfind(|c: char| c.is_ascii_digit() || c == '.' || c == ' ')?;
    let (number, suffix) = if size.as_bytes()[sep] == b' ' { (&size[..sep], &size[sep + 1..]) } else { (&size[..=sep], &size[sep + 1..]) };
    let value: f64 = number.parse().ok().filter(|value: &f64| value.is_finite() && *value >= 0.0)?;
    // The length is checked before lower-casing, which can shorten it.
    if suffix.len() > 3 {
        return None;
    }
    let suffix = go_lower(suffix);
    let multiplier: u32 = match suffix.as_bytes() {
        [] | [b'b'] => 0,
        [unit, rest @ ..] if rest.is_empty() || rest == b"b" || rest == b"ib" => match unit {
            b'k' => 1,
            b'm' => 2,
            b'g' => 3,
            b't' => 4,
            b'p' => 5,
            _ => return None,
        },
        _ => return None,
    };
    Some((value * 1024f64.powi(multiplier as i32)) as i64)
}

// ---------------------------------------------------------------------------------------------------------------------
// parser.MustParseHeredoc, for COPY and ADD sources

/// BuildKit's `MustParseHeredoc`: the heredoc a word (`<<EOF`, `<<-"EOF"`, ...) opens, if any, as the parser reads one;
/// any error makes it no heredoc. `HEAD:` this is the parser's word reading, whose lexer is HEAD's: unlike v0.13.2's, it
/// refuses `${name:#...}` and `${name:%...}`, and drops what precedes a `${name<op>word}` in the word (`<<a${X:-b}` is
/// named `${X:-b}`), as the parser does for the heredocs it reads, so that the names agree.
fn must_parse_heredoc(word: &str) -> Option<Heredoc> {
    parse_heredoc(word).ok().flatten()
}

// ---------------------------------------------------------------------------------------------------------------------
// History text (dockerfile2llb/convert.go)

/// The shell dispatch prefixes to shell-form commands when the image has none (`defaultShell`).
pub fn default_shell(os: &str) -> Vec<String> {
    let shell: &[&str] = if os == "windows" { &["cmd", "/S", "/C"] } else { &["/bin/sh", "-c"] };
    shell.iter().map(|s| s.to_string()).collect()
}

/// What `convert.go` commits to the image history for an instruction (`CreatedBy`), given the expanded instruction and
/// the image's shell (its `SHELL`, or `default_shell`) for shell-form CMD and ENTRYPOINT; the errors are dispatch's for
/// VOLUME and EXPOSE. `None` for what commits nothing (FROM, ONBUILD) or needs more than the instruction:
///
/// - RUN: BuildKit's `RUN ` + `runCommandString` + ` # buildkit`, from the arguments dispatch runs, the stage's build args
///   and environment; not ported, as the native builder builds no RUN.
/// - WORKDIR: `WORKDIR ` + the resolved absolute directory (`system.NormalizeWorkdir` against the previous one).
///
/// Each caller still has dispatch's checks to make: EXPOSE's `ports` must first be replaced by each word's
/// `shlex.ProcessWords` (dispatch splits them after `expand`, which leaves them); STOPSIGNAL's signal is checked by
/// `signal.ParseSignal`; COPY and ADD refuse URLs, git sources and checksums where BuildKit does.
pub fn history_text(instruction: &Instruction, shell: &[String]) -> Result<Option<String>, String> {
    let with_shell = |cmd_line: &[String], prepend_shell: bool| -> Vec<String> {
        if prepend_shell {
            shell.iter().cloned().chain(std::iter::once(cmd_line.join(" "))).collect()
        } else {
            cmd_line.to_vec()
        }
    };
    let pairs = |keyword: &str, pairs: &[(String, String)]| {
        pairs.iter().fold(keyword.to_string(), |text, (key, value)| format!("{text} {key}={value}"))
    };
    Ok(Some(match instruction {
        Instruction::From { .. } | Instruction::Onbuild { .. } | Instruction::Run(_) | Instruction::Workdir { .. } => return Ok(None),
        Instruction::Env { pairs: env } => pairs("ENV", env),
        Instruction::Label { pairs: labels } => pairs("LABEL", labels),
        Instruction::Maintainer { maintainer } => format!("MAINTAINER {maintainer}"),
        // HEAD (v0.14+): the value committed is the one the build resolved (build arg, default or global arg).
        Instruction::Arg { args } => {
            let args: Vec<String> = args
                .iter()
                .map(|(key, value)| match value {
                    Some(value) => format!("{key}={value}"),
                    None => key.clone(),
                })
                .collect();
            format!("ARG {}", args.join(" "))
        }
        Instruction::Copy(copy) => copy_commit_message("COPY", &copy.chown, &copy.chmod, &copy.sources, &copy.contents, &copy.dest),
        Instruction::Add(add) => copy_commit_message("ADD", &add.chown, &add.chmod, &add.sources, &add.contents, &add.dest),
        Instruction::Cmd { cmd_line, prepend_shell } => format!("CMD {}", go_quote_slice(&with_shell(cmd_line, *prepend_shell))),
        Instruction::Entrypoint { cmd_line, prepend_shell } => {
            format!("ENTRYPOINT {}", go_quote_slice(&with_shell(cmd_line, *prepend_shell)))
        }
        // `%q` of the config pointer: `&{` the fields with `%q`: the test's strings, the durations' `String()`, and the
        // retries as a quoted rune. HEAD (v0.30+): `%+v` of the value, `{Test:[CMD-SHELL ...] Interval:30s ...}`.
        Instruction::Healthcheck { health } => format!(
            "HEALTHCHECK &{{{} {} {} {} {} {}}}",
            go_quote_slice(&health.test),
            go_quote(&format_duration(health.interval)),
            go_quote(&format_duration(health.timeout)),
            go_quote(&format_duration(health.start_period)),
            go_quote(&format_duration(health.start_interval)),
            go_quote_rune(i64::from(health.retries)),
        ),
        // `%v` of nat's port set: a Go map prints its keys sorted, `map[80/tcp:{} 90/udp:{}]`.
        // HEAD (v0.24+): `%v` of a list in the words' order, duplicates kept: `[80/tcp 90/udp]`.
        Instruction::Expose { ports } => {
            let ports: Vec<String> = parse_port_specs(ports)?.into_iter().map(|port| format!("{port}:{{}}")).collect();
            format!("EXPOSE map[{}]", ports.join(" "))
        }
        Instruction::User { user } => format!("USER {user}"),
        Instruction::Volume { volumes } => {
            if volumes.iter().any(String::is_empty) {
                return Err("VOLUME specified can not be an empty string".to_string());
            }
            format!("VOLUME {}", go_format_slice(volumes))
        }
        Instruction::StopSignal { signal } => format!("STOPSIGNAL {signal}"),
        Instruction::Shell { shell } => format!("SHELL {}", go_format_slice(shell)),
    }))
}

/// `dispatchCopy`'s commit message, with the ` # buildkit` a history entry with a layer gets.
pub(super) fn copy_commit_message(
    keyword: &str,
    chown: &str,
    chmod: &str,
    sources: &[String],
    contents: &[SourceContent],
    dest: &str,
) -> String {
    let mut message = keyword.to_string();
    if !chown.is_empty() {
        message.push_str(&format!(" --chown={chown}"));
    }
    if !chmod.is_empty() {
        message.push_str(&format!(" --chmod={chmod}"));
    }
    for source in sources {
        message.push_str(&format!(" {source}"));
    }
    for content in contents {
        message.push_str(&format!(" <<{}", content.path));
    }
    format!("{message} {dest} # buildkit")
}

// ---------------------------------------------------------------------------------------------------------------------
// docker/go-connections nat (v0.5.0)

/// `nat.ParsePortSpecs`' exposed ports (`[[ip:]hostPort:]containerPort[-end][/proto]` specs) as `port/proto` strings,
/// ranges expanded, protocols lower-cased (default `tcp`), deduplicated and sorted as Go prints their map.
pub fn parse_port_specs(ports: &[String]) -> Result<BTreeSet<String>, String> {
    let mut exposed = BTreeSet::new();
    for port in ports {
        exposed.extend(parse_port_spec(port)?);
    }
    Ok(exposed)
}

/// `nat.ParsePortSpec`, keeping the ports (the host bindings do not reach an image).
fn parse_port_spec(raw: &str) -> Result<Vec<String>, String> {
    let (ip, host_port, container_port) = split_parts(raw);
    let (proto, container_port) = split_proto_port(container_port);
    let mut ip = ip.to_string();
    if ip.starts_with('[') {
        // Strip the brackets of an IPv6 address.
        ip = split_host(&format!("{ip}:")).map_err(|err| format!("invalid IP address {ip}: {err}"))?;
    }
    // Rust's address parser stands for Go's `net.ParseIP`: both refuse zones and IPv4 octets with leading zeros.
    if !ip.is_empty() && ip.parse::<IpAddr>().is_err() {
        return Err(format!("invalid IP address: {ip}"));
    }
    if container_port.is_empty() {
        return Err(format!("no port specified: {raw}<empty>"));
    }
    let (start, end) = parse_port_range(container_port).ok_or_else(|| format!("invalid containerPort: {container_port}"))?;
    if !host_port.is_empty() {
        let (host_start, host_end) = parse_port_range(host_port).ok_or_else(|| format!("invalid hostPort: {host_port}"))?;
        // A host range is only allowed for a single container port (as the range to allocate from).
        if end - start != host_end - host_start && end != start {
            return Err(format!("invalid ranges specified for container and host Ports: {container_port} and {host_port}"));
        }
    }
    let proto_lower = go_lower(proto);
    if !matches!(proto_lower.as_str(), "tcp" | "udp" | "sctp") {
        return Err(format!("invalid proto: {proto}"));
    }
    Ok((start..=end).map(|port| format!("{port}/{proto_lower}")).collect())
}

/// nat's `splitParts`: `ip`, `hostPort`, `containerPort` of a spec (an IPv6 address keeps its colons).
fn split_parts(raw: &str) -> (&str, &str, &str) {
    let parts: Vec<&str> = raw.split(':').collect();
    match parts.as_slice() {
        [container] => ("", "", container),
        [host, container] => ("", host, container),
        [ip, host, container] => (ip, host, container),
        [.., host, container] => (&raw[..raw.len() - host.len() - container.len() - 2], host, container),
        [] => unreachable!("split yields at least one part"),
    }
}

/// nat's `SplitProtoPort`: `(proto, port)`, `tcp` by default; parts after a second `/` are ignored.
fn split_proto_port(raw: &str) -> (&str, &str) {
    let mut parts = raw.split('/');
    let port = parts.next().unwrap_or("");
    if port.is_empty() {
        return ("", "");
    }
    match parts.next() {
        None | Some("") => ("tcp", port),
        Some(proto) => (proto, port),
    }
}

/// nat's `ParsePortRange`: `port` or `start-end` (parts after a second `-` are ignored), each a 16-bit number.
fn parse_port_range(ports: &str) -> Option<(u32, u32)> {
    let parse = |port: &str| -> Option<u32> {
        if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        port.parse::<u16>().ok().map(u32::from)
    };
    let mut parts = ports.split('-');
    let start = parse(parts.next()?)?;
    match parts.next() {
        None => Some((start, start)),
        Some(end) => Some((start, parse(end)?)).filter(|(start, end)| end >= start),
    }
}

/// The host of Go's `net.SplitHostPort` for `[host]:port`, with its errors.
fn split_host(hostport: &str) -> Result<String, String> {
    let error = |why: &str| format!("address {hostport}: {why}");
    let last_colon = hostport.rfind(':').ok_or_else(|| error("missing port in address"))?;
    let end = hostport.find(']').ok_or_else(|| error("missing ']' in address"))?;
    if end + 1 == hostport.len() {
        return Err(error("missing port in address"));
    }
    if end + 1 != last_colon {
        return Err(error(if hostport.as_bytes()[end + 1] == b':' { "too many colons in address" } else { "missing port in address" }));
    }
    if hostport[1..].contains('[') {
        return Err(error("unexpected '[' in address"));
    }
    if hostport[end + 1..].contains(']') {
        return Err(error("unexpected ']' in address"));
    }
    Ok(hostport[1..end].to_string())
}

// ---------------------------------------------------------------------------------------------------------------------
// Go parsing

/// Go's `time.ParseDuration` in nanoseconds: signed decimal numbers with units `ns`, `us` (`µs`, `μs`), `ms`, `s`, `m`,
/// `h`, as `1.5s`, `1m30s`, `-2h45m`; `0` needs no unit. The errors are Go's.
pub fn parse_duration(s: &str) -> Result<i64, String> {
    let invalid = || format!("time: invalid duration {}", time_quote(s));
    let (negative, mut rest) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    if rest == "0" {
        return Ok(0);
    }
    if rest.is_empty() {
        return Err(invalid());
    }
    const OVERFLOW: u64 = 1 << 63;
    let mut total: u64 = 0;
    while !rest.is_empty() {
        if !rest.starts_with(|c: char| c == '.' || c.is_ascii_digit()) {
            return Err(invalid());
        }
        // The integer part (`leadingInt`), refused past 2^63.
        let digits = rest.len() - rest.trim_start_matches(|c: char| c.is_ascii_digit()).len();
        let mut value: u64 = 0;
        for digit in rest[..digits].bytes() {
            if value > OVERFLOW / 10 {
                return Err(invalid());
            }
            value = value * 10 + u64::from(digit - b'0');
            if value > OVERFLOW {
                return Err(invalid());
            }
        }
        rest = &rest[digits..];
        let had_integer = digits > 0;
        // The fraction (`leadingFraction`): digits past what fits are dropped.
        let (mut fraction, mut scale, mut had_fraction) = (0u64, 1f64, false);
        if let Some(after_point) = rest.strip_prefix('.') {
            let digits = after_point.len() - after_point.trim_start_matches(|c: char| c.is_ascii_digit()).len();
            let mut overflow = false;
            for digit in after_point[..digits].bytes() {
                if overflow || fraction > (OVERFLOW - 1) / 10 {
                    overflow = true;
                    continue;
                }
                let next = fraction * 10 + u64::from(digit - b'0');
                if next > OVERFLOW {
                    overflow = true;
                    continue;
                }
                fraction = next;
                scale *= 10.0;
            }
            rest = &after_point[digits..];
            had_fraction = digits > 0;
        }
        if !had_integer && !had_fraction {
            return Err(invalid());
        }
        let unit_len = rest.find(|c: char| c == '.' || c.is_ascii_digit()).unwrap_or(rest.len());
        if unit_len == 0 {
            return Err(format!("time: missing unit in duration {}", time_quote(s)));
        }
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let unit_nanos: u64 = match unit {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            _ => return Err(format!("time: unknown unit {} in duration {}", time_quote(unit), time_quote(s))),
        };
        if value > OVERFLOW / unit_nanos {
            return Err(invalid());
        }
        value *= unit_nanos;
        if fraction > 0 {
            // Go computes the fraction in float64, nanosecond-accurate up to hours.
            value += (fraction as f64 * (unit_nanos as f64 / scale)) as u64;
            if value > OVERFLOW {
                return Err(invalid());
            }
        }
        // Go's uint64 addition wraps (2^63 + 2^63 is 0), and so does this.
        total = total.wrapping_add(value);
        if total > OVERFLOW {
            return Err(invalid());
        }
    }
    if negative {
        // 2^63 negated is i64::MIN.
        return Ok((total as i64).wrapping_neg());
    }
    i64::try_from(total).map_err(|_| invalid())
}

/// The `time` package's own quoting in its errors: `"` ... `"`, `"` and `\` escaped, bytes outside printable ASCII as
/// `\xNN`.
fn time_quote(s: &str) -> String {
    let mut quoted = String::from("\"");
    for c in s.chars() {
        if c.is_ascii() && c >= ' ' {
            if c == '"' || c == '\\' {
                quoted.push('\\');
            }
            quoted.push(c);
        } else {
            let mut buf = [0; 4];
            for byte in c.encode_utf8(&mut buf).bytes() {
                quoted.push_str(&format!("\\x{byte:02x}"));
            }
        }
    }
    quoted.push('"');
    quoted
}

/// Go's `strconv.ParseInt(value, 10, 32)`, with its errors.
fn parse_int32(value: &str) -> Result<i32, String> {
    let error = |what: &str| format!("strconv.ParseInt: parsing {}: {what}", go_quote(value));
    let digits = value.strip_prefix(['+', '-']).unwrap_or(value);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(error("invalid syntax"));
    }
    // Only the range is left to fail: too many digits for i128 is out of range too.
    value.parse::<i128>().ok().and_then(|v| i32::try_from(v).ok()).ok_or_else(|| error("value out of range"))
}

/// Go's `strings.EqualFold` against ASCII `target`: Unicode's simple folding maps only `ſ` (to `s`) and the Kelvin sign
/// (to `k`) onto ASCII letters besides their own cases.
fn equal_fold_ascii(s: &str, target: &str) -> bool {
    let folded = s.chars().map(|c| match c {
        'ſ' => 's',
        '\u{212a}' => 'k',
        c => c.to_ascii_lowercase(),
    });
    folded.eq(target.chars().map(|c| c.to_ascii_lowercase()))
}

// ---------------------------------------------------------------------------------------------------------------------
// util/suggest

/// BuildKit's `suggest.WrapError`: ` (did you mean X?)` after `message` when an option is within edit distance 2 of
/// `value`. Go tries the options in its map order and keeps the first closest; `options` come sorted here.
fn with_suggestion(message: String, value: &str, options: &[&str], case_sensitive: bool) -> String {
    let fold = |s: &str| if case_sensitive { s.to_string() } else { go_lower(s) };
    let value_folded = fold(value);
    let mut best: Option<(usize, String)> = None;
    for option in options {
        let option = fold(option);
        if option == value_folded {
            // An exact match means the error was not about the value.
            return message;
        }
        let distance = levenshtein(&value_folded, &option);
        if distance < best.as_ref().map_or(3, |(min, _)| *min) {
            best = Some((distance, option));
        }
    }
    let Some((_, mut suggestion)) = best else { return message };
    if !case_sensitive {
        // `matchCase`: the suggestion in the value's case when that is all lower or all upper.
        if value == go_lower(value) {
            suggestion = go_lower(&suggestion);
        } else if value == go_upper(value) {
            suggestion = go_upper(&suggestion);
        }
    }
    format!("{message} (did you mean {suggestion}?)")
}

/// Edit distance by code point, unit costs (agext/levenshtein's `Distance` without options).
fn levenshtein(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, &cb) in b.iter().enumerate() {
            let substitution = diagonal + usize::from(ca != cb);
            diagonal = row[j + 1];
            row[j + 1] = substitution.min(row[j] + 1).min(row[j + 1] + 1);
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use expect_test::{expect, Expect};

    use super::*;

    fn strings(values: &[&str]) -> Vec<String> {
        values.iter().map(|value| value.to_string()).collect()
    }

    /// A node as BuildKit's parser makes it for `keyword args...` on line 1.
    fn node(keyword: &str, args: &[&str]) -> Node {
        Node {
            keyword: keyword.to_string(),
            args: strings(args),
            original: format!("{keyword} {}", args.join(" ")),
            start_line: 1,
            end_line: 1,
            ..Node::default()
        }
    }

    fn with_flags(node: Node, flags: &[&str]) -> Node {
        Node { flags: strings(flags), ..node }
    }

    fn json(node: Node) -> Node {
        Node { json: true, ..node }
    }

    fn heredoc(name: &str, content: &str) -> Heredoc {
        Heredoc { name: name.to_string(), content: content.to_string(), expand: true, ..Heredoc::default() }
    }

    fn show<T: fmt::Debug>(result: Result<T, impl fmt::Display>) -> String {
        match result {
            Ok(value) => format!("{value:#?}"),
            Err(err) => format!("error: {err}"),
        }
    }

    fn check(node: Node, expected: Expect) {
        expected.assert_eq(&show(parse_instruction(&node)));
    }

    /// One line per node: the error, or the instruction on one line.
    fn check_errors(nodes: &[Node], expected: Expect) {
        let lines: Vec<String> = nodes
            .iter()
            .map(|node| match parse_instruction(node) {
                Ok(instruction) => format!("{} {:?}: {instruction:?}", node.keyword, node.args),
                Err(err) => format!("{} {:?} {:?}: {err}", node.keyword, node.flags, node.args),
            })
            .collect();
        expected.assert_eq(&lines.join("\n"));
    }

    fn check_parse(nodes: &[Node], expected: Expect) {
        expected.assert_eq(&show(parse(nodes, Frontend::Embedded)));
    }

    /// The expander's calls in order (`$V` becomes `val`, `$BAD` fails), then the instruction and its history text.
    fn check_expand(node: Node, expected: Expect) {
        let mut instruction = parse_instruction(&node).unwrap();
        let mut calls = Vec::new();
        let expanded = instruction.expand(&mut |word: &str| {
            calls.push(word.to_string());
            if word.contains("$BAD") {
                return Err(format!("bad word {word}"));
            }
            Ok(word.replace("$V", "val"))
        });
        let actual = match expanded.and_then(|()| instruction.expand_raw(&mut |word: &str| Ok(format!("raw({word})")))) {
            Err(err) => format!("calls: {calls:?}\nerror: {err}"),
            Ok(()) => {
                let history = history_text(&instruction, &default_shell("linux"));
                format!("calls: {calls:?}\nhistory: {history:?}\n{instruction:#?}")
            }
        };
        expected.assert_eq(&actual);
    }

    fn check_history(instruction: Instruction, expected: Expect) {
        expected.assert_eq(&show(history_text(&instruction, &default_shell("linux"))));
    }

    /// Each input and its result on a line.
    fn check_each<T: fmt::Debug>(inputs: &[&str], f: impl Fn(&str) -> T, expected: Expect) {
        let lines: Vec<String> = inputs.iter().map(|input| format!("{input:?} => {:?}", f(input))).collect();
        expected.assert_eq(&lines.join("\n"));
    }

    // parse_test.go

    #[test]
    fn commands_exactly_one_argument() {
        let nodes = ["MAINTAINER", "WORKDIR", "USER", "STOPSIGNAL"].map(|keyword| node(keyword, &[]));
        check_errors(
            &nodes,
            expect![[r#"
                MAINTAINER [] []: MAINTAINER requires exactly one argument
                WORKDIR [] []: WORKDIR requires exactly one argument
                USER [] []: USER requires exactly one argument
                STOPSIGNAL [] []: STOPSIGNAL requires exactly one argument"#]],
        );
    }

    #[test]
    fn commands_at_least_one_argument() {
        let nodes = ["ENV", "LABEL", "ONBUILD", "HEALTHCHECK", "EXPOSE", "VOLUME", "ARG", "SHELL"].map(|keyword| node(keyword, &[]));
        check_errors(
            &nodes,
            expect![[r#"
            ENV [] []: ENV requires at least one argument
            LABEL [] []: LABEL requires at least one argument
            ONBUILD [] []: ONBUILD requires at least one argument
            HEALTHCHECK [] []: HEALTHCHECK requires at least one argument
            EXPOSE [] []: EXPOSE requires at least one argument
            VOLUME [] []: VOLUME requires at least one argument
            ARG [] []: ARG requires at least one argument
            SHELL [] []: SHELL requires at least one argument"#]],
        );
    }

    #[test]
    fn commands_no_destination_argument() {
        check_errors(
            &[node("ADD", &["arg1"]), node("COPY", &["arg1"]), node("COPY", &[])],
            expect![[r#"
            ADD [] ["arg1"]: ADD requires at least two arguments, but only one was provided. Destination could not be determined
            COPY [] ["arg1"]: COPY requires at least two arguments, but only one was provided. Destination could not be determined
            COPY [] []: COPY requires at least two arguments, but only one was provided. Destination could not be determined"#]],
        );
    }

    #[test]
    fn commands_too_many_arguments_and_blank_names() {
        let nodes = [node("ENV", &["", "arg2", "="]), node("LABEL", &["", "arg2", "="]), node("ARG", &["=arg2"])];
        check_errors(
            &nodes,
            expect![[r#"
                ENV [] ["", "arg2", "="]: ENV names can not be blank
                LABEL [] ["", "arg2", "="]: LABEL names can not be blank
                ARG [] ["=arg2"]: ARG names can not be blank"#]],
        );
    }

    #[test]
    fn error_cases() {
        let nodes = [
            Node { original: "ONBUILD FROM scratch".to_string(), sub: Some(Box::new(node("FROM", &["scratch"]))), ..node("ONBUILD", &[]) },
            with_flags(node("MAINTAINER", &["joe@example.com"]), &["--boo"]),
            Node { sub: Some(Box::new(node("ONBUILD", &[]))), ..node("ONBUILD", &[]) },
            Node { sub: Some(Box::new(node("maintainer", &["x"]))), ..node("ONBUILD", &[]) },
            node("FOO", &["bar"]),
            node("foo", &["bar"]),
            node("RUNN", &["x"]),
            node("Runn", &["x"]),
            node("copi", &["x"]),
            node("", &[]),
        ];
        check_errors(
            &nodes,
            expect![[r#"
            ONBUILD [] []: FROM isn't allowed as an ONBUILD trigger
            MAINTAINER ["--boo"] ["joe@example.com"]: unknown flag: boo
            ONBUILD [] []: Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed
            ONBUILD [] []: MAINTAINER isn't allowed as an ONBUILD trigger
            FOO [] ["bar"]: unknown instruction: FOO (did you mean FROM?)
            foo [] ["bar"]: unknown instruction: foo (did you mean from?)
            RUNN [] ["x"]: unknown instruction: RUNN (did you mean RUN?)
            Runn [] ["x"]: unknown instruction: Runn (did you mean run?)
            copi [] ["x"]: unknown instruction: copi (did you mean copy?)
             [] []: unknown instruction: "#]],
        );
    }

    #[test]
    fn healthcheck() {
        // TestHealthCheckCmd: the shell form's words become one CMD-SHELL string.
        check(
            node("HEALTHCHECK", &["CMD", "hello", "world"]),
            expect![[r#"
            Healthcheck {
                health: HealthConfig {
                    test: [
                        "CMD-SHELL",
                        "hello world",
                    ],
                    interval: 0,
                    timeout: 0,
                    start_period: 0,
                    start_interval: 0,
                    retries: 0,
                },
            }"#]],
        );
        check(
            with_flags(
                json(node("HEALTHCHECK", &["cmd", "curl", "-f", "http://localhost/"])),
                &["--interval=1m30s", "--timeout=1.5s", "--start-period=0", "--start-interval=500ms", "--retries=+3"],
            ),
            expect![[r#"
                Healthcheck {
                    health: HealthConfig {
                        test: [
                            "CMD",
                            "curl",
                            "-f",
                            "http://localhost/",
                        ],
                        interval: 90000000000,
                        timeout: 1500000000,
                        start_period: 0,
                        start_interval: 500000000,
                        retries: 3,
                    },
                }"#]],
        );
        // NONE parses no flags, so an unknown one passes.
        check(
            with_flags(node("HEALTHCHECK", &["none"]), &["--bogus"]),
            expect![[r#"
            Healthcheck {
                health: HealthConfig {
                    test: [
                        "NONE",
                    ],
                    interval: 0,
                    timeout: 0,
                    start_period: 0,
                    start_interval: 0,
                    retries: 0,
                },
            }"#]],
        );
    }

    #[test]
    fn healthcheck_errors() {
        let cmd = |flags: &[&str]| with_flags(node("HEALTHCHECK", &["CMD", "x"]), flags);
        let nodes = [
            node("HEALTHCHECK", &["NONE", "x"]),
            node("HEALTHCHECK", &["CMD"]),
            json(node("HEALTHCHECK", &["CMD"])),
            node("HEALTHCHECK", &["CMD-SHELL", "x"]),
            with_flags(node("HEALTHCHECK", &["bogus"]), &["--bogus"]),
            cmd(&["--interval=50ns"]),
            cmd(&["--interval=-1s"]),
            cmd(&["--timeout=999us"]),
            cmd(&["--start-period=5"]),
            cmd(&["--start-interval=1d"]),
            cmd(&["--retries=-1"]),
            cmd(&["--retries=0x10"]),
            cmd(&["--retries=2147483648"]),
            cmd(&["--retries"]),
            cmd(&["--intervals=1s"]),
        ];
        check_errors(
            &nodes,
            expect![[r#"
            HEALTHCHECK [] ["NONE", "x"]: HEALTHCHECK NONE takes no arguments
            HEALTHCHECK [] ["CMD"]: Missing command after HEALTHCHECK CMD
            HEALTHCHECK [] ["CMD"]: Missing command after HEALTHCHECK CMD
            HEALTHCHECK [] ["CMD-SHELL", "x"]: Unknown type "CMD-SHELL" in HEALTHCHECK (try CMD)
            HEALTHCHECK ["--bogus"] ["bogus"]: unknown flag: bogus
            HEALTHCHECK ["--interval=50ns"] ["CMD", "x"]: Interval "interval" cannot be less than 1ms
            HEALTHCHECK ["--interval=-1s"] ["CMD", "x"]: Interval "interval" cannot be less than 1ms
            HEALTHCHECK ["--timeout=999us"] ["CMD", "x"]: Interval "timeout" cannot be less than 1ms
            HEALTHCHECK ["--start-period=5"] ["CMD", "x"]: time: missing unit in duration "5"
            HEALTHCHECK ["--start-interval=1d"] ["CMD", "x"]: time: unknown unit "d" in duration "1d"
            HEALTHCHECK ["--retries=-1"] ["CMD", "x"]: --retries cannot be negative (-1)
            HEALTHCHECK ["--retries=0x10"] ["CMD", "x"]: strconv.ParseInt: parsing "0x10": invalid syntax
            HEALTHCHECK ["--retries=2147483648"] ["CMD", "x"]: strconv.ParseInt: parsing "2147483648": value out of range
            HEALTHCHECK ["--retries"] ["CMD", "x"]: missing a value on flag: retries
            HEALTHCHECK ["--intervals=1s"] ["CMD", "x"]: unknown flag: intervals (did you mean interval?)"#]],
        );
    }

    #[test]
    fn parse_opt_interval_minimum() {
        // TestParseOptInterval, and zero, which means "inherit", passing under the minimum.
        check_each(
            &["50ns", "0ms", "1ms", "0", "", "-0s", "999999ns", "1.5s"],
            |value| parse_opt_interval("interval", value),
            expect![[r#"
                "50ns" => Err("Interval \"interval\" cannot be less than 1ms")
                "0ms" => Ok(0)
                "1ms" => Ok(1000000)
                "0" => Ok(0)
                "" => Ok(0)
                "-0s" => Ok(0)
                "999999ns" => Err("Interval \"interval\" cannot be less than 1ms")
                "1.5s" => Ok(1500000000)"#]],
        );
    }

    #[test]
    fn run_flags_and_mounts() {
        // TestRunCmdFlagsUsed.
        check(
            with_flags(node("RUN", &["echo hello"]), &["--mount=type=tmpfs,target=/foo/"]),
            expect![[r#"
            Run(
                RunInstruction {
                    cmd_line: [
                        "echo hello",
                    ],
                    files: [],
                    prepend_shell: true,
                    mount_specs: [
                        "type=tmpfs,target=/foo/",
                    ],
                    mounts: [
                        Mount {
                            mount_type: Bind,
                            from: "",
                            source: "",
                            target: "",
                            read_only: true,
                            size_limit: 0,
                            cache_id: "",
                            cache_sharing: None,
                            required: false,
                            mode: None,
                            uid: None,
                            gid: None,
                        },
                    ],
                    network: Default,
                    flags_used: [
                        "mount",
                    ],
                },
            )"#]],
        );
        check(
            with_flags(
                node("RUN", &["make"]),
                &["--network=none", "--mount=type=cache,target=/root/.cache,sharing=locked", "--mount=target=/src"],
            ),
            expect![[r#"
                Run(
                    RunInstruction {
                        cmd_line: [
                            "make",
                        ],
                        files: [],
                        prepend_shell: true,
                        mount_specs: [
                            "type=cache,target=/root/.cache,sharing=locked",
                            "target=/src",
                        ],
                        mounts: [
                            Mount {
                                mount_type: Bind,
                                from: "",
                                source: "",
                                target: "",
                                read_only: true,
                                size_limit: 0,
                                cache_id: "",
                                cache_sharing: None,
                                required: false,
                                mode: None,
                                uid: None,
                                gid: None,
                            },
                            Mount {
                                mount_type: Bind,
                                from: "",
                                source: "",
                                target: "",
                                read_only: true,
                                size_limit: 0,
                                cache_id: "",
                                cache_sharing: None,
                                required: false,
                                mode: None,
                                uid: None,
                                gid: None,
                            },
                        ],
                        network: None,
                        flags_used: [
                            "mount",
                            "network",
                        ],
                    },
                )"#]],
        );
        let run = |flags: &[&str]| with_flags(node("RUN", &["x"]), flags);
        let nodes = [
            run(&["--network=bogus"]),
            run(&["--security=insecure"]),
            run(&["--networks=host"]),
            run(&["--mount"]),
            run(&["--mount=type=bind,from=$STAGE"]),
            run(&["--mount=a\"b"]),
            run(&["--mount="]),
        ];
        check_errors(
            &nodes,
            expect![[r#"
            RUN ["--network=bogus"] ["x"]: invalid network mode "bogus"
            RUN ["--security=insecure"] ["x"]: unknown flag: security
            RUN ["--networks=host"] ["x"]: unknown flag: networks (did you mean network?)
            RUN ["--mount"] ["x"]: missing a value on flag: mount
            RUN ["--mount=type=bind,from=$STAGE"] ["x"]: 'from' doesn't support variable expansion, define alias stage instead
            RUN ["--mount=a\"b"] ["x"]: failed to parse csv mounts: parse error on line 1, column 2: bare " in non-quoted-field
            RUN ["--mount="] ["x"]: failed to parse csv mounts: EOF"#]],
        );
    }

    #[test]
    fn run_heredoc() {
        // TestRunHeredoc.
        check(
            json(node("RUN", &["ls", "/"])),
            expect![[r#"
            Run(
                RunInstruction {
                    cmd_line: [
                        "ls",
                        "/",
                    ],
                    files: [],
                    prepend_shell: false,
                    mount_specs: [],
                    mounts: [],
                    network: Default,
                    flags_used: [],
                },
            )"#]],
        );
        check(
            json(node("RUN", &["<<EOF"])),
            expect![[r#"
            Run(
                RunInstruction {
                    cmd_line: [
                        "<<EOF",
                    ],
                    files: [],
                    prepend_shell: false,
                    mount_specs: [],
                    mounts: [],
                    network: Default,
                    flags_used: [],
                },
            )"#]],
        );
        check(
            Node { heredocs: vec![Heredoc { chomp: true, ..heredoc("EOF", "\techo test\n") }], ..node("RUN", &["<<-EOF"]) },
            expect![[r#"
                Run(
                    RunInstruction {
                        cmd_line: [
                            "<<-EOF",
                        ],
                        files: [
                            ShellInlineFile {
                                name: "EOF",
                                data: "\techo test\n",
                                chomp: true,
                            },
                        ],
                        prepend_shell: true,
                        mount_specs: [],
                        mounts: [],
                        network: Default,
                        flags_used: [],
                    },
                )"#]],
        );
    }

    #[test]
    fn copy_heredoc() {
        // TestCopyHeredoc and TestErrorCasesHeredoc.
        check(node("COPY", &["/foo", "<<EOF"]), expect!["error: COPY cannot accept a heredoc as a destination"]);
        check(
            Node {
                heredocs: vec![heredoc("EOF1", "this is the first file\n"), heredoc("EOF2", "\tthe second\n")],
                ..node("COPY", &["<<EOF1", "foo.txt", "<<-EOF2", "/bar"])
            },
            expect![[r#"
                Copy(
                    CopyInstruction {
                        sources: [
                            "foo.txt",
                        ],
                        contents: [
                            SourceContent {
                                path: "EOF1",
                                data: "this is the first file\n",
                                expand: true,
                            },
                            SourceContent {
                                path: "EOF2",
                                data: "the second\n",
                                expand: true,
                            },
                        ],
                        dest: "/bar",
                        from: None,
                        chown: "",
                        chmod: "",
                        link: false,
                        excludes: [],
                        parents: false,
                    },
                )"#]],
        );
        // A quoted word is not expanded; a name without a heredoc is empty; a JSON source is read the same way.
        check(
            Node { heredocs: vec![heredoc("EOF", "\"quotes\"\n")], ..node("COPY", &["<<'EOF'", "<<\"MISSING\"", "/q"]) },
            expect![[r#"
                Copy(
                    CopyInstruction {
                        sources: [],
                        contents: [
                            SourceContent {
                                path: "EOF",
                                data: "\"quotes\"\n",
                                expand: false,
                            },
                            SourceContent {
                                path: "MISSING",
                                data: "",
                                expand: false,
                            },
                        ],
                        dest: "/q",
                        from: None,
                        chown: "",
                        chmod: "",
                        link: false,
                        excludes: [],
                        parents: false,
                    },
                )"#]],
        );
        check(
            json(node("ADD", &["<<EOF", "<<EOF<", "2<<-E\\ O", "/x"])),
            expect![[r#"
                Add(
                    AddInstruction {
                        sources: [
                            "<<EOF<",
                        ],
                        contents: [
                            SourceContent {
                                path: "EOF",
                                data: "",
                                expand: true,
                            },
                            SourceContent {
                                path: "E O",
                                data: "",
                                expand: true,
                            },
                        ],
                        dest: "/x",
                        chown: "",
                        chmod: "",
                        link: false,
                        keep_git_dir: false,
                        checksum: "",
                        excludes: [],
                    },
                )"#]],
        );
    }

    #[test]
    fn onbuild() {
        let trigger = |keyword: &str, args: &[&str]| Some(Box::new(node(keyword, args)));
        check(
            Node { original: "  onbuild\tRUN echo hi ".to_string(), sub: trigger("RUN", &["echo hi"]), ..node("ONBUILD", &[]) },
            expect![[r#"
                Onbuild {
                    expression: "RUN echo hi ",
                }"#]],
        );
        check(
            Node {
                original: "ONBUILD COPY <<EOF /x".to_string(),
                heredocs: vec![heredoc("EOF", "data\n")],
                sub: trigger("COPY", &["<<EOF", "/x"]),
                ..node("ONBUILD", &[])
            },
            expect![[r#"
                Onbuild {
                    expression: "COPY <<EOF /x\ndata\nEOF",
                }"#]],
        );
    }

    #[test]
    fn from() {
        check(
            with_flags(node("FROM", &["golang:1.22", "As", "Build-1.x_y"]), &["--platform=$BUILDPLATFORM"]),
            expect![[r#"
            From {
                base_name: "golang:1.22",
                name: Some(
                    "build-1.x_y",
                ),
                platform: Some(
                    "$BUILDPLATFORM",
                ),
            }"#]],
        );
        let nodes = [
            node("FROM", &["x", "AS", "1st"]),
            node("FROM", &["x", "AS", "a/b"]),
            node("FROM", &["x", "AS", "\"q\u{7}\""]),
            node("FROM", &["x", "y", "z"]),
            node("FROM", &["x", "y"]),
            with_flags(node("FROM", &["x", "y"]), &["--bogus"]),
            with_flags(node("FROM", &["x"]), &["--plaform=linux"]),
            with_flags(node("FROM", &["x"]), &["--platform"]),
            with_flags(node("FROM", &["x"]), &["--platform="]),
            node("FROM", &["x", "a\u{17f}", "\u{130}mage"]),
        ];
        check_errors(
            &nodes,
            expect![[r#"
            FROM [] ["x", "AS", "1st"]: invalid name for build stage: "1st", name can't start with a number or contain symbols
            FROM [] ["x", "AS", "a/b"]: invalid name for build stage: "a/b", name can't start with a number or contain symbols
            FROM [] ["x", "AS", "\"q\u{7}\""]: invalid name for build stage: "\"q\a\"", name can't start with a number or contain symbols
            FROM [] ["x", "y", "z"]: FROM requires either one or three arguments
            FROM [] ["x", "y"]: FROM requires either one or three arguments
            FROM ["--bogus"] ["x", "y"]: FROM requires either one or three arguments
            FROM ["--plaform=linux"] ["x"]: unknown flag: plaform (did you mean platform?)
            FROM ["--platform"] ["x"]: missing a value on flag: platform
            FROM ["x"]: From { base_name: "x", name: None, platform: None }
            FROM ["x", "aſ", "İmage"]: From { base_name: "x", name: Some("image"), platform: None }"#]],
        );
    }

    #[test]
    fn shell_forms() {
        let nodes = [
            json(node("CMD", &["a", "b"])),
            json(node("CMD", &[])),
            node("CMD", &["echo hi"]),
            node("CMD", &[]),
            json(node("ENTRYPOINT", &[])),
            node("ENTRYPOINT", &["nginx -g 'daemon off;'"]),
            json(node("SHELL", &["/bin/bash", "-c"])),
            node("SHELL", &["bash -c"]),
            json(node("SHELL", &[])),
            with_flags(json(node("SHELL", &["a"])), &["--x"]),
        ];
        check_errors(
            &nodes,
            expect![[r#"
            CMD ["a", "b"]: Cmd { cmd_line: ["a", "b"], prepend_shell: false }
            CMD []: Cmd { cmd_line: [], prepend_shell: false }
            CMD ["echo hi"]: Cmd { cmd_line: ["echo hi"], prepend_shell: true }
            CMD []: Cmd { cmd_line: [], prepend_shell: true }
            ENTRYPOINT []: Entrypoint { cmd_line: [], prepend_shell: false }
            ENTRYPOINT ["nginx -g 'daemon off;'"]: Entrypoint { cmd_line: ["nginx -g 'daemon off;'"], prepend_shell: true }
            SHELL ["/bin/bash", "-c"]: Shell { shell: ["/bin/bash", "-c"] }
            SHELL [] ["bash -c"]: SHELL requires the arguments to be in JSON form
            SHELL [] []: SHELL requires at least one argument
            SHELL ["--x"] ["a"]: unknown flag: x"#]],
        );
    }

    #[test]
    fn simple_instructions() {
        let nodes = [
            node("ENV", &["A", "1", "=", "B", "two words", "="]),
            node("LABEL", &["org.example", "", "="]),
            node("ARG", &["A", "B=", "C=x=y"]),
            with_flags(node("ARG", &["A"]), &["--ignored"]),
            node("EXPOSE", &["80/udp", "443", "8080", "1000-1001"]),
            node("VOLUME", &[" /data ", "/logs"]),
            json(node("VOLUME", &["/a", " "])),
            with_flags(node("STOPSIGNAL", &["SIGKILL"]), &["--ignored"]),
            node("USER", &["1000:1000"]),
            node("WORKDIR", &["/srv/$APP"]),
            node("MAINTAINER", &["Jane <jane@example.com>"]),
            with_flags(node("ENV", &["A", "1", "="]), &["--x=1"]),
        ];
        check_errors(
            &nodes,
            expect![[r#"
                ENV ["A", "1", "=", "B", "two words", "="]: Env { pairs: [("A", "1"), ("B", "two words")] }
                LABEL ["org.example", "", "="]: Label { pairs: [("org.example", "")] }
                ARG ["A", "B=", "C=x=y"]: Arg { args: [("A", None), ("B", Some("")), ("C", Some("x=y"))] }
                ARG ["A"]: Arg { args: [("A", None)] }
                EXPOSE ["80/udp", "443", "8080", "1000-1001"]: Expose { ports: ["1000-1001", "443", "80/udp", "8080"] }
                VOLUME [" /data ", "/logs"]: Volume { volumes: ["/data", "/logs"] }
                VOLUME [] ["/a", " "]: VOLUME specified can not be an empty string
                STOPSIGNAL ["SIGKILL"]: StopSignal { signal: "SIGKILL" }
                USER ["1000:1000"]: User { user: "1000:1000" }
                WORKDIR ["/srv/$APP"]: Workdir { path: "/srv/$APP" }
                MAINTAINER ["Jane <jane@example.com>"]: Maintainer { maintainer: "Jane <jane@example.com>" }
                ENV ["--x=1"] ["A", "1", "="]: unknown flag: x"#]],
        );
    }

    #[test]
    fn copy_and_add_flags() {
        check(
            with_flags(node("COPY", &["a", "b", "/c/"]), &["--from=build", "--chown=1:1", "--chmod=755", "--link"]),
            expect![[r#"
                Copy(
                    CopyInstruction {
                        sources: [
                            "a",
                            "b",
                        ],
                        contents: [],
                        dest: "/c/",
                        from: Some(
                            "build",
                        ),
                        chown: "1:1",
                        chmod: "755",
                        link: true,
                        excludes: [],
                        parents: false,
                    },
                )"#]],
        );
        check(
            with_flags(node("ADD", &["https://x/a.tgz", "/a"]), &["--keep-git-dir=TRUE", "--checksum=sha256:abc", "--link=false"]),
            expect![[r#"
                Add(
                    AddInstruction {
                        sources: [
                            "https://x/a.tgz",
                        ],
                        contents: [],
                        dest: "/a",
                        chown: "",
                        chmod: "",
                        link: false,
                        keep_git_dir: true,
                        checksum: "sha256:abc",
                        excludes: [],
                    },
                )"#]],
        );
        let copy = |flags: &[&str]| with_flags(node("COPY", &["a", "b"]), flags);
        let nodes = [
            copy(&["--parents"]),
            copy(&["--exclude=*.md"]),
            with_flags(node("ADD", &["a", "b"]), &["--exclude=*.md"]),
            with_flags(node("ADD", &["a", "b"]), &["--keep-git-dir=maybe"]),
            copy(&["--link="]),
            copy(&["--from"]),
            copy(&["--from=a", "--from=b"]),
            copy(&["--chwon=1"]),
            copy(&["--Chown=1"]),
            copy(&["-x"]),
            copy(&["--", "--bogus"]),
            copy(&["--from="]),
        ];
        check_errors(
            &nodes,
            expect![[r#"
                COPY ["--parents"] ["a", "b"]: unknown flag: parents
                COPY ["--exclude=*.md"] ["a", "b"]: unknown flag: exclude
                ADD ["--exclude=*.md"] ["a", "b"]: unknown flag: exclude
                ADD ["--keep-git-dir=maybe"] ["a", "b"]: expecting boolean value for flag keep-git-dir, not: maybe
                COPY ["--link="] ["a", "b"]: missing a value on flag: link
                COPY ["--from"] ["a", "b"]: missing a value on flag: from
                COPY ["--from=a", "--from=b"] ["a", "b"]: duplicate flag specified: from
                COPY ["--chwon=1"] ["a", "b"]: unknown flag: chwon (did you mean chmod?)
                COPY ["--Chown=1"] ["a", "b"]: unknown flag: Chown (did you mean chown?)
                COPY ["-x"] ["a", "b"]: arg should start with -- : -x
                COPY ["a", "b"]: Copy(CopyInstruction { sources: ["a"], contents: [], dest: "b", from: None, chown: "", chmod: "", link: false, excludes: [], parents: false })
                COPY ["a", "b"]: Copy(CopyInstruction { sources: ["a"], contents: [], dest: "b", from: None, chown: "", chmod: "", link: false, excludes: [], parents: false })"#]],
        );
    }

    // bflag_test.go

    fn check_flags(args: &[&str], expected: Expect) {
        let args = strings(args);
        let mut flags = BFlags::new(&args);
        let ids = [
            flags.add_bool("bool1", false),
            flags.add_bool("bool2", false),
            flags.add_bool("bool3", false),
            flags.add_bool("bool4", true),
            flags.add_bool("bool5", true),
            flags.add_string("str1", ""),
            flags.add_string("str2", ""),
            flags.add_string("str3", "def3"),
            flags.add_string("str4", "def4"),
            flags.add_strings("strs"),
        ];
        let actual = match flags.parse() {
            Err(err) => format!("error: {err}"),
            Ok(()) => {
                let values: Vec<String> = ids
                    .iter()
                    .map(|&id| match flags.flags[id.0].kind {
                        FlagKind::Strings => format!("{:?}", flags.values(id)),
                        _ => flags.value(id).to_string(),
                    })
                    .collect();
                format!("values: {}\nused: {:?}", values.join(" "), flags.used())
            }
        };
        expected.assert_eq(&actual);
    }

    #[test]
    fn builder_flags() {
        check_flags(
            &[],
            expect![[r#"
            values: false false false true true   def3 def4 []
            used: []"#]],
        );
        check_flags(
            &["--"],
            expect![[r#"
            values: false false false true true   def3 def4 []
            used: []"#]],
        );
        check_flags(
            &["--", "--bogus"],
            expect![[r#"
            values: false false false true true   def3 def4 []
            used: []"#]],
        );
        check_flags(&["--str1"], expect!["error: missing a value on flag: str1"]);
        check_flags(
            &["--str1="],
            expect![[r#"
            values: false false false true true   def3 def4 []
            used: ["str1"]"#]],
        );
        check_flags(
            &["--str1=BYE"],
            expect![[r#"
            values: false false false true true BYE  def3 def4 []
            used: ["str1"]"#]],
        );
        check_flags(
            &["--bool1"],
            expect![[r#"
            values: true false false true true   def3 def4 []
            used: ["bool1"]"#]],
        );
        check_flags(
            &["--bool1=true"],
            expect![[r#"
            values: true false false true true   def3 def4 []
            used: ["bool1"]"#]],
        );
        check_flags(
            &["--bool1=false", "--bool4=FALSE"],
            expect![[r#"
            values: false false false false true   def3 def4 []
            used: ["bool1", "bool4"]"#]],
        );
        check_flags(&["--bool1=false1"], expect!["error: expecting boolean value for flag bool1, not: false1"]);
        check_flags(&["--bool1="], expect!["error: missing a value on flag: bool1"]);
        check_flags(&["--bool6"], expect!["error: unknown flag: bool6 (did you mean bool1?)"]);
        check_flags(
            &["--bool1", "--str1=BYE"],
            expect![[r#"
            values: true false false true true BYE  def3 def4 []
            used: ["bool1", "str1"]"#]],
        );
        check_flags(
            &["--bool2=false", "--bool3", "--bool4=true", "--bool5", "--str2= ", "--str3=def3", "--str4=my-val"],
            expect![[r#"
                values: false false true true true    def3 my-val []
                used: ["bool2", "bool3", "bool4", "bool5", "str2", "str3", "str4"]"#]],
        );
        check_flags(&["--str1=a", "--str1=b"], expect!["error: duplicate flag specified: str1"]);
        check_flags(
            &["--strs=a", "--strs=b=c", "--strs="],
            expect![[r#"
            values: false false false true true   def3 def4 ["a", "b=c", ""]
            used: ["strs"]"#]],
        );
        check_flags(&["--strs"], expect!["error: missing a value on flag: strs"]);
        check_flags(&["str1=a"], expect!["error: arg should start with -- : str1=a"]);
        check_flags(&["--=a"], expect!["error: unknown flag: "]);
    }

    /// Go picks among equally close suggestions in map order, at random; here the first in sorted order wins.
    #[test]
    fn suggestion_ties() {
        check_errors(
            &[with_flags(node("COPY", &["a", "b"]), &["--chwon=x"])],
            expect![[r#"COPY ["--chwon=x"] ["a", "b"]: unknown flag: chwon (did you mean chmod?)"#]],
        );
    }

    // support_test.go

    #[test]
    fn handle_json_args_forms() {
        let cases: [(&[&str], bool); 4] = [(&[], false), (&["foo"], true), (&["foo", "bar"], true), (&["foo", "bar"], false)];
        let lines: Vec<String> =
            cases.iter().map(|(args, json)| format!("{args:?} json={json} => {:?}", handle_json_args(&strings(args), *json))).collect();
        expect![[r#"
            [] json=false => []
            ["foo"] json=true => ["foo"]
            ["foo", "bar"] json=true => ["foo", "bar"]
            ["foo", "bar"] json=false => ["foo bar"]"#]]
        .assert_eq(&lines.join("\n"));
    }

    // Parse

    #[test]
    fn parse_stages() {
        let at = |line: usize, node: Node| Node { start_line: line, end_line: line, ..node };
        check_parse(
            &[
                at(1, node("ARG", &["VERSION=1.0"])),
                at(
                    2,
                    Node {
                        original: "  FROM --platform=$BUILDPLATFORM base:$VERSION AS Build  ".to_string(),
                        ..with_flags(node("FROM", &["base:$VERSION", "AS", "Build"]), &["--platform=$BUILDPLATFORM"])
                    },
                ),
                Node { start_line: 3, end_line: 4, ..node("RUN", &["make"]) },
                at(5, node("ARG", &["VERSION"])),
                at(6, node("FROM", &["scratch"])),
                at(7, with_flags(node("COPY", &["/out", "/"]), &["--from=build"])),
            ],
            expect![[r#"
                (
                    [
                        Command {
                            instruction: Arg {
                                args: [
                                    (
                                        "VERSION",
                                        Some(
                                            "1.0",
                                        ),
                                    ),
                                ],
                            },
                            location: Location {
                                start_line: 1,
                                end_line: 1,
                            },
                            code: "ARG VERSION=1.0",
                        },
                    ],
                    [
                        Stage {
                            name: Some(
                                "build",
                            ),
                            base_name: "base:$VERSION",
                            platform: Some(
                                "$BUILDPLATFORM",
                            ),
                            source_code: "FROM --platform=$BUILDPLATFORM base:$VERSION AS Build",
                            location: Location {
                                start_line: 2,
                                end_line: 2,
                            },
                            commands: [
                                Command {
                                    instruction: Run(
                                        RunInstruction {
                                            cmd_line: [
                                                "make",
                                            ],
                                            files: [],
                                            prepend_shell: true,
                                            mount_specs: [],
                                            mounts: [],
                                            network: Default,
                                            flags_used: [],
                                        },
                                    ),
                                    location: Location {
                                        start_line: 3,
                                        end_line: 4,
                                    },
                                    code: "RUN make",
                                },
                                Command {
                                    instruction: Arg {
                                        args: [
                                            (
                                                "VERSION",
                                                None,
                                            ),
                                        ],
                                    },
                                    location: Location {
                                        start_line: 5,
                                        end_line: 5,
                                    },
                                    code: "ARG VERSION",
                                },
                            ],
                        },
                        Stage {
                            name: None,
                            base_name: "scratch",
                            platform: None,
                            source_code: "FROM scratch",
                            location: Location {
                                start_line: 6,
                                end_line: 6,
                            },
                            commands: [
                                Command {
                                    instruction: Copy(
                                        CopyInstruction {
                                            sources: [
                                                "/out",
                                            ],
                                            contents: [],
                                            dest: "/",
                                            from: Some(
                                                "build",
                                            ),
                                            chown: "",
                                            chmod: "",
                                            link: false,
                                            excludes: [],
                                            parents: false,
                                        },
                                    ),
                                    location: Location {
                                        start_line: 7,
                                        end_line: 7,
                                    },
                                    code: "COPY /out /",
                                },
                            ],
                        },
                    ],
                )"#]],
        );
    }

    #[test]
    fn parse_errors() {
        let at = |line: usize, node: Node| Node { start_line: line, end_line: line, ..node };
        check_parse(&[at(1, node("ARG", &["A"])), at(2, node("RUN", &["x"]))], expect!["error: no build stage in current context"]);
        check_parse(&[at(1, node("FROM", &["x"])), at(3, node("COPY", &["a"]))], expect!["error: dockerfile parse error on line 3: COPY requires at least two arguments, but only one was provided. Destination could not be determined"]);
        check_parse(
            &[at(4, node("FOO", &["x"]))],
            expect!["error: dockerfile parse error on line 4: unknown instruction: FOO (did you mean FROM?)"],
        );
        check_parse(
            &[],
            expect![[r#"
            (
                [],
                [],
            )"#]],
        );
    }

    // Expand

    #[test]
    fn expand_order() {
        check_expand(
            node("ENV", &["$V", "$V", "=", "B", "x$V", "="]),
            expect![[r#"
            calls: ["$V", "$V", "B", "x$V"]
            history: Ok(Some("ENV val=val B=xval"))
            Env {
                pairs: [
                    (
                        "val",
                        "val",
                    ),
                    (
                        "B",
                        "xval",
                    ),
                ],
            }"#]],
        );
        check_expand(
            node("ARG", &["$V=$V", "B"]),
            expect![[r#"
            calls: ["$V", "$V", "B"]
            history: Ok(Some("ARG val=val B"))
            Arg {
                args: [
                    (
                        "val",
                        Some(
                            "val",
                        ),
                    ),
                    (
                        "B",
                        None,
                    ),
                ],
            }"#]],
        );
        check_expand(
            Node {
                heredocs: vec![heredoc("EOF", "a $V\n"), heredoc("RAW", "b $V\n")],
                ..with_flags(node("ADD", &["$V", "<<EOF", "<<'RAW'", "/$V/"]), &["--chown=$V", "--chmod=$V", "--checksum=$V"])
            },
            expect![[r#"
                calls: ["$V", "$V", "$V", "/$V/"]
                history: Ok(Some("ADD --chown=val --chmod=$V val <<EOF <<RAW /val/ # buildkit"))
                Add(
                    AddInstruction {
                        sources: [
                            "val",
                        ],
                        contents: [
                            SourceContent {
                                path: "EOF",
                                data: "raw(a $V\n)",
                                expand: true,
                            },
                            SourceContent {
                                path: "RAW",
                                data: "b $V\n",
                                expand: false,
                            },
                        ],
                        dest: "/val/",
                        chown: "val",
                        chmod: "$V",
                        link: false,
                        keep_git_dir: false,
                        checksum: "val",
                        excludes: [],
                    },
                )"#]],
        );
        check_expand(
            with_flags(node("COPY", &["$V", "/dst"]), &["--from=$V", "--chown=$V", "--chmod=$V"]),
            expect![[r#"
                calls: ["$V", "$V", "/dst"]
                history: Ok(Some("COPY --chown=val --chmod=$V val /dst # buildkit"))
                Copy(
                    CopyInstruction {
                        sources: [
                            "val",
                        ],
                        contents: [],
                        dest: "/dst",
                        from: Some(
                            "$V",
                        ),
                        chown: "val",
                        chmod: "$V",
                        link: false,
                        excludes: [],
                        parents: false,
                    },
                )"#]],
        );
        check_expand(
            node("VOLUME", &["/a", "$BAD", "/c"]),
            expect![[r#"
            calls: ["/a", "$BAD"]
            error: bad word $BAD"#]],
        );
        check_expand(
            node("EXPOSE", &["$V"]),
            expect![[r#"
            calls: []
            history: Err("invalid containerPort: $V")
            Expose {
                ports: [
                    "$V",
                ],
            }"#]],
        );
    }

    #[test]
    fn expand_run_mounts() {
        check_expand(
            with_flags(node("RUN", &["echo $V"]), &["--mount=type=cache,target=/$V,id=$V,ro", "--mount=type=secret,id=x,required"]),
            expect![[r#"
                calls: ["cache", "/$V", "$V", "secret", "x"]
                history: Ok(None)
                Run(
                    RunInstruction {
                        cmd_line: [
                            "echo $V",
                        ],
                        files: [],
                        prepend_shell: true,
                        mount_specs: [
                            "type=cache,target=/$V,id=$V,ro",
                            "type=secret,id=x,required",
                        ],
                        mounts: [
                            Mount {
                                mount_type: Cache,
                                from: "",
                                source: "",
                                target: "/val",
                                read_only: true,
                                size_limit: 0,
                                cache_id: "val",
                                cache_sharing: None,
                                required: false,
                                mode: None,
                                uid: None,
                                gid: None,
                            },
                            Mount {
                                mount_type: Secret,
                                from: "",
                                source: "",
                                target: "",
                                read_only: true,
                                size_limit: 0,
                                cache_id: "x",
                                cache_sharing: None,
                                required: true,
                                mode: None,
                                uid: None,
                                gid: None,
                            },
                        ],
                        network: Default,
                        flags_used: [
                            "mount",
                        ],
                    },
                )"#]],
        );
        check_expand(
            with_flags(node("RUN", &["x"]), &["--mount=type=$BAD"]),
            expect![[r#"
            calls: ["$BAD"]
            error: bad word $BAD"#]],
        );
    }

    // commands_runmount.go

    fn check_mounts(specs: &[&str], expected: Expect) {
        let mut identity = |word: &str| Ok(word.to_string());
        let lines: Vec<String> = specs
            .iter()
            .map(|spec| match parse_mount(spec, None).and_then(|_| parse_mount(spec, Some(&mut identity))) {
                Ok(mount) => format!("{spec:?} => {mount:?}"),
                Err(err) => format!("{spec:?} => error: {err}"),
            })
            .collect();
        expected.assert_eq(&lines.join("\n"));
    }

    #[test]
    fn mounts() {
        check_mounts(
            &[
                "target=/src",
                "type=cache,target=/root/.cache,id=go,sharing=private,mode=0700,uid=1000,gid=1000",
                "type=tmpfs,target=/tmp,size=1.5 MiB",
                "type=secret,id=npmrc,target=/root/.npmrc,required",
                "type=ssh,required=false",
                "TYPE=Cache,DST=/x,RW=false",
                "type=bind,from=build,source=/out,destination=/in,readwrite",
                "\"type=bind\",\"target=/a,b\",ro=1",
            ],
            expect![[r#"
                "target=/src" => Mount { mount_type: Bind, from: "", source: "", target: "/src", read_only: true, size_limit: 0, cache_id: "", cache_sharing: None, required: false, mode: None, uid: None, gid: None }
                "type=cache,target=/root/.cache,id=go,sharing=private,mode=0700,uid=1000,gid=1000" => Mount { mount_type: Cache, from: "", source: "", target: "/root/.cache", read_only: false, size_limit: 0, cache_id: "go", cache_sharing: Some(Private), required: false, mode: Some(448), uid: Some(1000), gid: Some(1000) }
                "type=tmpfs,target=/tmp,size=1.5 MiB" => Mount { mount_type: Tmpfs, from: "", source: "", target: "/tmp", read_only: false, size_limit: 1572864, cache_id: "", cache_sharing: None, required: false, mode: None, uid: None, gid: None }
                "type=secret,id=npmrc,target=/root/.npmrc,required" => Mount { mount_type: Secret, from: "", source: "", target: "/root/.npmrc", read_only: true, size_limit: 0, cache_id: "npmrc", cache_sharing: None, required: true, mode: None, uid: None, gid: None }
                "type=ssh,required=false" => Mount { mount_type: Ssh, from: "", source: "", target: "", read_only: true, size_limit: 0, cache_id: "", cache_sharing: None, required: false, mode: None, uid: None, gid: None }
                "TYPE=Cache,DST=/x,RW=false" => Mount { mount_type: Cache, from: "", source: "", target: "/x", read_only: true, size_limit: 0, cache_id: "", cache_sharing: None, required: false, mode: None, uid: None, gid: None }
                "type=bind,from=build,source=/out,destination=/in,readwrite" => Mount { mount_type: Bind, from: "build", source: "/out", target: "/in", read_only: false, size_limit: 0, cache_id: "", cache_sharing: None, required: false, mode: None, uid: None, gid: None }
                "\"type=bind\",\"target=/a,b\",ro=1" => Mount { mount_type: Bind, from: "", source: "", target: "/a,b", read_only: true, size_limit: 0, cache_id: "", cache_sharing: None, required: false, mode: None, uid: None, gid: None }"#]],
        );
    }

    #[test]
    fn mount_errors() {
        check_mounts(
            &[
                "type=cahce",
                "type=cache,sharing=lockd",
                "tpye=cache",
                "type=bind,readonlyy",
                "type=bind,required",
                "type=bind,size=1g",
                "type=tmpfs,size=1KiBb",
                "type=bind,mode=0755",
                "type=cache,mode=8",
                "type=cache,uid=-1",
                "type=secret",
                "type=secret,from=x,id=y",
                "type=secret,id=a,sharing=shared",
                "type=secret,src=a,id=b",
                "type=bind,sharing=shared",
                "ro=maybe",
                "a\"b",
                "\"abc\"x",
                "\"abc",
                "",
            ],
            expect![[r#"
                "type=cahce" => error: unsupported mount type "cahce" (did you mean cache?)
                "type=cache,sharing=lockd" => error: unsupported sharing value "lockd" (did you mean locked?)
                "tpye=cache" => error: unexpected key 'tpye' in 'tpye=cache' (did you mean type?)
                "type=bind,readonlyy" => error: invalid field 'readonlyy' must be a key=value pair
                "type=bind,required" => error: unexpected key 'required' for mount type 'bind'
                "type=bind,size=1g" => error: unexpected key 'size' for mount type 'bind'
                "type=tmpfs,size=1KiBb" => error: invalid value for size: 1KiBb
                "type=bind,mode=0755" => error: mode not allowed for "bind" type mounts
                "type=cache,mode=8" => error: invalid value 8 for mode
                "type=cache,uid=-1" => error: invalid value -1 for uid
                "type=secret" => error: invalid secret mount. one of source, target required
                "type=secret,from=x,id=y" => error: secret mount should not have a from
                "type=secret,id=a,sharing=shared" => error: secret mount should not define sharing
                "type=secret,src=a,id=b" => error: both source and id can't be set
                "type=bind,sharing=shared" => error: invalid cache sharing set for bind mount
                "ro=maybe" => error: invalid value for ro: maybe
                "a\"b" => error: failed to parse csv mounts: parse error on line 1, column 2: bare " in non-quoted-field
                "\"abc\"x" => error: failed to parse csv mounts: parse error on line 1, column 5: extraneous or missing " in quoted-field
                "\"abc" => error: failed to parse csv mounts: parse error on line 1, column 5: extraneous or missing " in quoted-field
                "" => error: failed to parse csv mounts: EOF"#]],
        );
    }

    #[test]
    fn ram_sizes() {
        check_each(
            &[
                "1",
                "1b",
                "1k",
                "1KB",
                "1KiB",
                "1.5 MiB",
                "2g",
                "1t",
                "1p",
                "5 ",
                " 5",
                "1e3",
                "-1",
                "1KiBb",
                "1x",
                "k",
                "1\u{212a}",
                "1\u{212a}b",
            ],
            ram_in_bytes,
            expect![[r#"
                "1" => Some(1)
                "1b" => Some(1)
                "1k" => Some(1024)
                "1KB" => Some(1024)
                "1KiB" => Some(1024)
                "1.5 MiB" => Some(1572864)
                "2g" => Some(2147483648)
                "1t" => Some(1099511627776)
                "1p" => Some(1125899906842624)
                "5 " => Some(5)
                " 5" => None
                "1e3" => Some(1000)
                "-1" => None
                "1KiBb" => None
                "1x" => None
                "k" => None
                "1K" => Some(1024)
                "1Kb" => None"#]],
        );
    }

    // History text

    #[test]
    fn history_texts() {
        let nodes = [
            node("ENV", &["A", "1", "=", "B", "two words", "="]),
            node("LABEL", &["a", "b", "="]),
            node("ARG", &["A=1", "B"]),
            node("MAINTAINER", &["Jane"]),
            node("USER", &["app"]),
            node("STOPSIGNAL", &["SIGTERM"]),
            node("CMD", &["echo \"hi\"\t$HOME"]),
            json(node("CMD", &[])),
            json(node("ENTRYPOINT", &["/app", "--flag=\u{e9}\u{ad}"])),
            node("ENTRYPOINT", &[]),
            node("VOLUME", &["/a", "/b"]),
            json(node("SHELL", &["/bin/bash", "-o", "pipefail", "-c"])),
            node("EXPOSE", &["8080", "80/udp", "80", "7000-7001/SCTP"]),
            with_flags(node("COPY", &["a", "b", "/dst/"]), &["--chown=1:2", "--chmod=644", "--from=x", "--link"]),
            Node { heredocs: vec![heredoc("EOF", "x\n")], ..with_flags(node("ADD", &["a", "<<EOF", "/d"]), &["--checksum=sha256:0"]) },
            node("HEALTHCHECK", &["NONE"]),
            with_flags(node("HEALTHCHECK", &["CMD", "curl -f http://localhost/"]), &["--interval=5m", "--timeout=3s", "--retries=3"]),
            with_flags(
                json(node("HEALTHCHECK", &["CMD", "/check"])),
                &["--start-period=1.5s", "--start-interval=500ms", "--retries=2147483647"],
            ),
            node("RUN", &["x"]),
            node("WORKDIR", &["/x"]),
            Node { sub: Some(Box::new(node("RUN", &["x"]))), ..node("ONBUILD", &[]) },
            node("FROM", &["x"]),
        ];
        let lines: Vec<String> = nodes
            .into_iter()
            .map(|node| match history_text(&parse_instruction(&node).unwrap(), &default_shell("linux")) {
                Ok(Some(text)) => text,
                Ok(None) => format!("{}: none", node.keyword),
                Err(err) => format!("error: {err}"),
            })
            .collect();
        expect![[r#"
            ENV A=1 B=two words
            LABEL a=b
            ARG A=1 B
            MAINTAINER Jane
            USER app
            STOPSIGNAL SIGTERM
            CMD ["/bin/sh" "-c" "echo \"hi\"\t$HOME"]
            CMD []
            ENTRYPOINT ["/app" "--flag=é\u00ad"]
            ENTRYPOINT ["/bin/sh" "-c" ""]
            VOLUME [/a /b]
            SHELL [/bin/bash -o pipefail -c]
            EXPOSE map[7000/sctp:{} 7001/sctp:{} 80/tcp:{} 80/udp:{} 8080/tcp:{}]
            COPY --chown=1:2 --chmod=644 a b /dst/ # buildkit
            ADD a <<EOF /d # buildkit
            HEALTHCHECK &{["NONE"] "0s" "0s" "0s" "0s" '\x00'}
            HEALTHCHECK &{["CMD-SHELL" "curl -f http://localhost/"] "5m0s" "3s" "0s" "0s" '\x03'}
            HEALTHCHECK &{["CMD" "/check"] "0s" "0s" "1.5s" "500ms" '�'}
            RUN: none
            WORKDIR: none
            ONBUILD: none
            FROM: none"#]]
        .assert_eq(&lines.join("\n"));
    }

    #[test]
    fn history_dispatch_errors() {
        // Expansion can empty a path that parsed fine.
        check_history(Instruction::Volume { volumes: strings(&["/a", ""]) }, expect!["error: VOLUME specified can not be an empty string"]);
        check_history(Instruction::Expose { ports: strings(&["80/xyz"]) }, expect!["error: invalid proto: xyz"]);
        // The image's SHELL replaces the default one.
        let instruction = parse_instruction(&node("CMD", &["Get-Date"])).unwrap();
        expect![[r#"
            Some(
                "CMD [\"powershell\" \"-Command\" \"Get-Date\"]",
            )"#]]
        .assert_eq(&show(history_text(&instruction, &strings(&["powershell", "-Command"]))));
        expect![[r#"["cmd", "/S", "/C"]"#]].assert_eq(&format!("{:?}", default_shell("windows")));
    }

    // nat_test.go (go-connections v0.5.0), through the exposed ports

    #[test]
    fn port_specs() {
        check_each(
            &[
                "1234/tcp 2345/udp 3456/sctp",
                "1234:1234/tcp 2345:2345/udp 3456:3456/sctp",
                "0.0.0.0:1234:1234/tcp 0.0.0.0:2345:2345/udp 0.0.0.0:3456:3456/sctp",
                "localhost:1234:1234/tcp",
                "1234-1236/tcp 2345-2347/udp 3456-3458/sctp",
                "0.0.0.0:1234-1236:1234-1236/tcp",
                "localhost:1234-1236:1234-1236/tcp",
                "0.0.0.0:1234-1235:3333-3334/tcp",
                "[2001:4860:0:2001::68]::333",
                "[::1]:80:80",
                "2001:4860:0:2001::68::333",
                "::1:80:80",
                "::::80",
                "192.168.1.100::80",
                "192.168.1.100:8080:80",
                "192.168.1.100",
                "192.168.1.100:-1:-1",
                "192.168.1.100::6000/udp",
                "192.168.1.100::6000/sctp",
                "1234 1234-1234 1234-1235 8000-8002 0 0-0",
                "asdf",
                "1asdf",
                "9000-8000",
                "9000-",
                "-8000",
                "-8000-",
                "1234/",
                "/tcp",
                "80/UDP 80/xyz",
                "65536",
                "1-2-3",
                "[::1:80:80",
                "[::1]x:80:80",
                "01.2.3.4:80:80",
                "1234-1236:1234",
                "1234:1234-1236",
                "",
            ],
            |specs| parse_port_specs(&specs.split_whitespace().map(String::from).collect::<Vec<_>>()),
            expect![[r#"
                "1234/tcp 2345/udp 3456/sctp" => Ok({"1234/tcp", "2345/udp", "3456/sctp"})
                "1234:1234/tcp 2345:2345/udp 3456:3456/sctp" => Ok({"1234/tcp", "2345/udp", "3456/sctp"})
                "0.0.0.0:1234:1234/tcp 0.0.0.0:2345:2345/udp 0.0.0.0:3456:3456/sctp" => Ok({"1234/tcp", "2345/udp", "3456/sctp"})
                "localhost:1234:1234/tcp" => Err("invalid IP address: localhost")
                "1234-1236/tcp 2345-2347/udp 3456-3458/sctp" => Ok({"1234/tcp", "1235/tcp", "1236/tcp", "2345/udp", "2346/udp", "2347/udp", "3456/sctp", "3457/sctp", "3458/sctp"})
                "0.0.0.0:1234-1236:1234-1236/tcp" => Ok({"1234/tcp", "1235/tcp", "1236/tcp"})
                "localhost:1234-1236:1234-1236/tcp" => Err("invalid IP address: localhost")
                "0.0.0.0:1234-1235:3333-3334/tcp" => Ok({"3333/tcp", "3334/tcp"})
                "[2001:4860:0:2001::68]::333" => Ok({"333/tcp"})
                "[::1]:80:80" => Ok({"80/tcp"})
                "2001:4860:0:2001::68::333" => Ok({"333/tcp"})
                "::1:80:80" => Ok({"80/tcp"})
                "::::80" => Ok({"80/tcp"})
                "192.168.1.100::80" => Ok({"80/tcp"})
                "192.168.1.100:8080:80" => Ok({"80/tcp"})
                "192.168.1.100" => Err("invalid containerPort: 192.168.1.100")
                "192.168.1.100:-1:-1" => Err("invalid containerPort: -1")
                "192.168.1.100::6000/udp" => Ok({"6000/udp"})
                "192.168.1.100::6000/sctp" => Ok({"6000/sctp"})
                "1234 1234-1234 1234-1235 8000-8002 0 0-0" => Ok({"0/tcp", "1234/tcp", "1235/tcp", "8000/tcp", "8001/tcp", "8002/tcp"})
                "asdf" => Err("invalid containerPort: asdf")
                "1asdf" => Err("invalid containerPort: 1asdf")
                "9000-8000" => Err("invalid containerPort: 9000-8000")
                "9000-" => Err("invalid containerPort: 9000-")
                "-8000" => Err("invalid containerPort: -8000")
                "-8000-" => Err("invalid containerPort: -8000-")
                "1234/" => Ok({"1234/tcp"})
                "/tcp" => Err("no port specified: /tcp<empty>")
                "80/UDP 80/xyz" => Err("invalid proto: xyz")
                "65536" => Err("invalid containerPort: 65536")
                "1-2-3" => Ok({"1/tcp", "2/tcp"})
                "[::1:80:80" => Err("invalid IP address [::1: address [::1:: missing ']' in address")
                "[::1]x:80:80" => Err("invalid IP address [::1]x: address [::1]x:: missing port in address")
                "01.2.3.4:80:80" => Err("invalid IP address: 01.2.3.4")
                "1234-1236:1234" => Ok({"1234/tcp"})
                "1234:1234-1236" => Err("invalid ranges specified for container and host Ports: 1234-1236 and 1234")
                "" => Ok({})"#]],
        );
    }

    // Go formatting

    #[test]
    fn durations() {
        check_each(
            &[
                "1.5s",
                "1m30s",
                "500ms",
                "1h",
                "-5s",
                "0",
                "+0",
                "-0",
                "",
                "5",
                ".s",
                "1.s",
                ".5s",
                "1µs",
                "1μs",
                "1us",
                "1x",
                "1.5h",
                "0.1234567891s",
                "1h1h",
                "-1.5h",
                "9223372036854775807ns",
                "9223372036854775808ns",
                "-9223372036854775808ns",
                "2562047h47m16.854775807s",
                "2562047h47m16.854775808s",
                "9223372036854775808ns9223372036854775808ns",
                "é",
                "1\u{1}s",
                "1\"s",
            ],
            |s| parse_duration(s).map(|nanos| (nanos, format_duration(nanos))),
            expect![[r#"
                "1.5s" => Ok((1500000000, "1.5s"))
                "1m30s" => Ok((90000000000, "1m30s"))
                "500ms" => Ok((500000000, "500ms"))
                "1h" => Ok((3600000000000, "1h0m0s"))
                "-5s" => Ok((-5000000000, "-5s"))
                "0" => Ok((0, "0s"))
                "+0" => Ok((0, "0s"))
                "-0" => Ok((0, "0s"))
                "" => Err("time: invalid duration \"\"")
                "5" => Err("time: missing unit in duration \"5\"")
                ".s" => Err("time: invalid duration \".s\"")
                "1.s" => Ok((1000000000, "1s"))
                ".5s" => Ok((500000000, "500ms"))
                "1µs" => Ok((1000, "1µs"))
                "1μs" => Ok((1000, "1µs"))
                "1us" => Ok((1000, "1µs"))
                "1x" => Err("time: unknown unit \"x\" in duration \"1x\"")
                "1.5h" => Ok((5400000000000, "1h30m0s"))
                "0.1234567891s" => Ok((123456789, "123.456789ms"))
                "1h1h" => Ok((7200000000000, "2h0m0s"))
                "-1.5h" => Ok((-5400000000000, "-1h30m0s"))
                "9223372036854775807ns" => Ok((9223372036854775807, "2562047h47m16.854775807s"))
                "9223372036854775808ns" => Err("time: invalid duration \"9223372036854775808ns\"")
                "-9223372036854775808ns" => Ok((-9223372036854775808, "-2562047h47m16.854775808s"))
                "2562047h47m16.854775807s" => Ok((9223372036854775807, "2562047h47m16.854775807s"))
                "2562047h47m16.854775808s" => Err("time: invalid duration \"2562047h47m16.854775808s\"")
                "9223372036854775808ns9223372036854775808ns" => Ok((0, "0s"))
                "é" => Err("time: invalid duration \"\\xc3\\xa9\"")
                "1\u{1}s" => Err("time: unknown unit \"\\x01s\" in duration \"1\\x01s\"")
                "1\"s" => Err("time: unknown unit \"\\\"s\" in duration \"1\\\"s\"")"#]],
        );
    }

    #[test]
    fn levenshtein_distances() {
        let lines: Vec<String> = [("", "abc"), ("kitten", "sitting"), ("chwon", "chown"), ("chwon", "chmod"), ("ü", "u"), ("same", "same")]
            .iter()
            .map(|(a, b)| format!("{a} {b} {}", levenshtein(a, b)))
            .collect();
        expect![[r#"
             abc 3
            kitten sitting 3
            chwon chown 2
            chwon chmod 2
            ü u 1
            same same 0"#]]
        .assert_eq(&lines.join("\n"));
    }

    #[test]
    fn the_syntax_directive_names_the_frontend_whose_flags_count() {
        let frontends: Vec<Frontend> = [
            None,
            Some("docker/dockerfile:1.7-labs"),
            Some("docker.io/docker/dockerfile:1.7-labs"),
            Some("docker/dockerfile:1"),
            Some("docker/dockerfile:1.19"),
            Some("docker/dockerfile:1.18.1"),
            Some("docker/dockerfile"),
            Some("docker/dockerfile-upstream:master-labs"),
            Some("docker/dockerfile:1.4@sha256:9ba7531bd80fb0a858632727cf7a112fbfd19b17e94c4e84ced81e24ef1a0dbc"),
            Some("example.com/my/frontend:2"),
        ]
        .into_iter()
        .map(Frontend::of_syntax)
        .collect();
        use Frontend::*;
        assert_eq!(frontends, [Embedded, Labs, Labs, Newer, Newer, Embedded, Newer, Labs, Embedded, Embedded]);
        let copy = |frontend| {
            let node = Node {
                keyword: "copy".into(),
                flags: vec!["--exclude=.git".into(), "--parents".into()],
                args: vec![".".into(), ".".into()],
                ..Node::default()
            };
            parse_node(&node, frontend).map(|_| ())
        };
        assert_eq!(copy(Embedded), Err("unknown flag: exclude".to_string()));
        assert_eq!(copy(Newer), Err("unknown flag: parents".to_string()));
        assert_eq!(copy(Labs), Ok(()));
    }
}
