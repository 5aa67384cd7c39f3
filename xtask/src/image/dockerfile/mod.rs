//! Dockerfiles read as BuildKit reads them, in BuildKit's three layers: `parser` (syntax:
//! directives, escape character, continuations, comments, heredocs, JSON and shell forms),
//! `shell` (word expansion and quoting) and `instructions` (typed instructions, flags checked);
//! and here, the semantics the native builder needs: the last stage's base, the ARG scopes, and
//! `ImagePlan::evaluate`, which applies the stage to the base image's configuration and file
//! system as BuildKit's dockerfile2llb and file operations would (Docker 26's BuildKit is the
//! oracle: `tests/e2e/fidelity.rs`). What the native builder cannot make identically is declined
//! with the line and why, so that `--builder auto` takes the engine.

pub mod cargo_stage;
mod go;
pub mod instructions;
pub mod parser;
mod run_line;
pub mod shell;

use std::collections::BTreeSet;

use anyhow::{anyhow, bail, Result};

use crate::image::fstree::{self, CopyOptions, FileData, FsTree, Kind, LayerEntry, Source, Stat};
use crate::image::oci::{ContainerConfig, Healthcheck, History};
use instructions::{Command, Instruction, Stage};

/// What a Dockerfile of BuildKit's history names as its author.
const HISTORY_COMMENT: &str = "buildkit.dockerfile.v0";

/// The `PATH` BuildKit gives an image whose base sets none (`system.DefaultPathEnv`).
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Base {
    Scratch,
    /// A registry image (as written, its variables expanded), and the line of its FROM.
    Image {
        image: String,
        line: usize,
    },
}

/// The native builder's refusal of a well-formed Dockerfile that needs a real engine (RUN,
/// several stages, ADD, ...), as opposed to a malformed one. `--builder auto` sends such apps to
/// the engine builder and says why.
#[derive(Debug)]
pub struct Declined {
    /// `file:line`.
    pub at: String,
    /// What the native builder does not do, and why where it is not obvious.
    pub what: String,
}

impl std::fmt::Display for Declined {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {} is not assembled by the native builder, which makes exactly the image BuildKit makes of one stage of FROM, COPY from the build context, WORKDIR and instructions that set the configuration; build this app with `--builder engine` (or `auto`)", self.at, self.what)
    }
}

impl std::error::Error for Declined {}

fn declined(file: &str, line: usize, what: impl Into<String>) -> anyhow::Error {
    Declined { at: format!("{file}:{line}"), what: what.into() }.into()
}

/// A Dockerfile read through BuildKit's parser and instructions layers.
struct Read {
    escape: char,
    meta_args: Vec<Command>,
    stages: Vec<Stage>,
}

/// What follows BuildKit's own message for a Dockerfile it refuses.
const REFUSED: &str = "docker build refuses this Dockerfile too: fix that line";

fn read(text: &str, file: &str) -> Result<Read> {
    let parsed = parser::parse(text).map_err(|err| anyhow!("{file}:{}: {}; {REFUSED}", err.line, err.message))?;
    // A syntax directive names the frontend BuildKit runs instead of its own, whose flags count.
    let syntax = parsed.directives.iter().find(|(name, _)| name == "syntax").map(|(_, value)| value.as_str());
    let frontend = instructions::Frontend::of_syntax(syntax);
    let (meta_args, stages) =
        instructions::parse(&parsed.nodes, frontend).map_err(|err| anyhow!("{file}:{}: {}; {REFUSED}", err.line, err.message))?;
    if stages.is_empty() {
        bail!("{file}: no FROM instruction: a Dockerfile needs one, for instance FROM scratch");
    }
    Ok(Read { escape: parsed.escape, meta_args, stages })
}

/// The ARGs before the first FROM with their values, as BuildKit gives them to FROM lines and to
/// stages that declare them again: the platform arguments first, then each meta ARG (a given
/// value, else its default expanded with the ones before it).
fn meta_args(read: &Read, build_args: &[(String, String)]) -> Result<Vec<(String, Option<String>)>> {
    let given = |name: &str| build_args.iter().rev().find(|(key, _)| key == name).map(|(_, value)| value.clone());
    let mut values: Vec<(String, Option<String>)> = PLATFORM_ARGS.iter().map(|name| (name.to_string(), given(name))).collect();
    let lex = shell::Lex::new(read.escape);
    for command in &read.meta_args {
        let Instruction::Arg { args } = &command.instruction else { continue };
        for (name, default) in args {
            let value = match (given(name), default) {
                (Some(value), _) => Some(value),
                // BuildKit discards an error here: the argument is then empty.
                (None, Some(default)) => Some(lex.process_word(default, &lookup_in(&values)).unwrap_or_default()),
                (None, None) => None,
            };
            values.push((name.clone(), value));
        }
    }
    Ok(values)
}

/// The automatic build arguments BuildKit defines for every build.
const PLATFORM_ARGS: [&str; 8] =
    ["BUILDPLATFORM", "BUILDOS", "BUILDARCH", "BUILDVARIANT", "TARGETPLATFORM", "TARGETOS", "TARGETARCH", "TARGETVARIANT"];

/// A variable lookup over `(name, value)` pairs, the last definition winning; a name without a
/// value is unset.
fn lookup_in(values: &[(String, Option<String>)]) -> impl Fn(&str) -> Option<String> + '_ {
    move |name| values.iter().rev().find(|(key, _)| key == name).and_then(|(_, value)| value.clone())
}

/// Whether any stage runs a command while building (`RUN`), which on another architecture than
/// the host's needs emulation. A Dockerfile that cannot be read runs nothing here; the build says
/// what is wrong with it.
pub fn runs_commands(text: &str) -> bool {
    read(text, "Dockerfile").is_ok_and(|read| {
        read.stages.iter().any(|stage| stage.commands.iter().any(|command| matches!(command.instruction, Instruction::Run(_))))
    })
}

/// The registry images the Dockerfile's stages start from: each FROM's image after expanding the
/// ARGs declared before the first FROM, leaving out `scratch` and earlier stages named with AS.
pub fn base_images(text: &str, build_args: &[(String, String)]) -> Vec<String> {
    base_images_with_lines(text, build_args).into_iter().map(|(image, _)| image).collect()
}

/// What the last stage starts from, through the stages it names: the image the built image's
/// programs run on. `None` when the Dockerfile cannot be read (the build says why).
pub fn final_base(text: &str, build_args: &[(String, String)]) -> Option<Base> {
    let read = read(text, "Dockerfile").ok()?;
    let meta = meta_args(&read, build_args).ok()?;
    let lex = shell::Lex::new(read.escape);
    let lookup = lookup_in(&meta);
    let mut stages: Vec<(Option<String>, Base)> = Vec::new();
    for stage in &read.stages {
        let image = lex.process_word(&stage.base_name, &lookup).ok()?;
        let earlier = stages.iter().rev().find(|(name, _)| name.as_deref().is_some_and(|name| name.eq_ignore_ascii_case(&image)));
        let base = match earlier {
            Some((_, base)) => base.clone(),
            None if image.eq_ignore_ascii_case("scratch") => Base::Scratch,
            None => Base::Image { image, line: stage.location.start_line },
        };
        stages.push((stage.name.clone(), base));
    }
    stages.pop().map(|(_, base)| base)
}

/// `base_images`, each with the line of its first FROM.
pub fn base_images_with_lines(text: &str, build_args: &[(String, String)]) -> Vec<(String, usize)> {
    let Ok(read) = read(text, "Dockerfile") else { return Vec::new() };
    let Ok(meta) = meta_args(&read, build_args) else { return Vec::new() };
    let lex = shell::Lex::new(read.escape);
    let lookup = lookup_in(&meta);
    let mut stages: Vec<String> = Vec::new();
    let mut images: Vec<(String, usize)> = Vec::new();
    for stage in &read.stages {
        let Ok(image) = lex.process_word(&stage.base_name, &lookup) else { continue };
        let is_stage = stages.iter().any(|name| name.eq_ignore_ascii_case(&image));
        if !image.eq_ignore_ascii_case("scratch") && !is_stage && !images.iter().any(|(known, _)| *known == image) {
            images.push((image, stage.location.start_line));
        }
        stages.extend(stage.name.clone());
    }
    images
}

/// The Dockerfile as a build of its stage `target` reads it (`docker build --target`): the
/// stages after that one are left out, as blank lines, so that every line keeps its number.
/// BuildKit builds only the stages the target needs, and those all come before it.
pub fn up_to_stage(text: &str, file: &str, target: &str) -> Result<String> {
    let read = read(text, file)?;
    let Some(index) = read.stages.iter().position(|stage| stage.name.as_deref().is_some_and(|name| name.eq_ignore_ascii_case(target)))
    else {
        let names: Vec<&str> = read.stages.iter().filter_map(|stage| stage.name.as_deref()).collect();
        bail!(
            "{file} has no stage named `{target}` (its named stages: {}): give the name of a `FROM ... AS <name>` line as the image's target",
            if names.is_empty() { "none".to_string() } else { names.join(", ") }
        );
    };
    let Some(next) = read.stages.get(index + 1) else { return Ok(text.to_string()) };
    let lines: Vec<&str> = text.split('\n').collect();
    let kept = next.location.start_line - 1;
    Ok(lines.iter().enumerate().map(|(at, line)| if at < kept { *line } else { "" }).collect::<Vec<_>>().join("\n"))
}

/// What a Dockerfile offers a build: its named stages, each a `--target`, and the build arguments
/// it declares without a default anywhere, which a build must be given (`ARG PACKAGE`).
pub struct Offers {
    pub stages: Vec<String>,
    pub required_args: Vec<String>,
}

pub fn offers(text: &str, file: &str) -> Result<Offers> {
    let read = read(text, file)?;
    let stages = read.stages.iter().filter_map(|stage| stage.name.clone()).collect();
    let declared = read.meta_args.iter().chain(read.stages.iter().flat_map(|stage| &stage.commands)).filter_map(|command| {
        match &command.instruction {
            Instruction::Arg { args } => Some(args),
            _ => None,
        }
    });
    let mut required: Vec<String> = Vec::new();
    let mut defaulted: Vec<&str> = Vec::new();
    for (name, default) in declared.flatten() {
        match default {
            Some(_) => defaulted.push(name),
            None if !PLATFORM_ARGS.contains(&name.as_str()) && !required.contains(name) => required.push(name.clone()),
            None => {}
        }
    }
    required.retain(|name| !defaulted.contains(&name.as_str()));
    Ok(Offers { stages, required_args: required })
}

/// The Dockerfile with each `FROM scratch` naming `image` instead, other lines untouched.
pub fn replace_scratch(text: &str, image: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.split_inclusive('\n') {
        let indent = &line[..line.len() - line.trim_start().len()];
        let words: Vec<&str> = line.split_whitespace().collect();
        let is_from = words.first().is_some_and(|word| word.eq_ignore_ascii_case("FROM"));
        let image_word = words.iter().skip(1).position(|word| !word.starts_with("--")).map(|i| i + 1);
        match image_word {
            Some(i) if is_from && words[i].eq_ignore_ascii_case("scratch") => {
                let mut words = words.clone();
                words[i] = image;
                out.push_str(indent);
                out.push_str(&words.join(" "));
                if line.ends_with('\n') {
                    out.push('\n');
                }
            }
            _ => out.push_str(line),
        }
    }
    out
}

/// One Dockerfile's stage read for one platform's build arguments: what `evaluate` applies to a
/// base image.
#[derive(Debug, Clone)]
pub struct ImagePlan {
    pub base: Base,
    /// The Dockerfile as the user names it, for messages.
    pub file: String,
    escape: char,
    commands: Vec<Command>,
    /// The meta ARGs' values, which a stage's ARG of the same name takes when given none.
    meta: Vec<(String, Option<String>)>,
    build_args: Vec<(String, String)>,
}

/// Reads a Dockerfile into the plan of its image. `build_args` are the values given for `ARG`s
/// (the platform arguments among them); as in BuildKit, an argument is visible in a stage only
/// once declared there. A Dockerfile the native builder cannot make identically is `Declined`.
pub fn plan(text: &str, file: &str, build_args: &[(String, String)]) -> Result<ImagePlan> {
    let read = read(text, file)?;
    if let Some(second) = read.stages.get(1) {
        return Err(declined(file, second.location.start_line, "a second FROM (a multi-stage build)"));
    }
    let meta = meta_args(&read, build_args)?;
    let stage = &read.stages[0];
    let line = stage.location.start_line;
    let lex = shell::Lex::new(read.escape);
    let image = {
        let lookup = lookup_in(&meta);
        let image = lex.process_word(&stage.base_name, &lookup).map_err(|err| anyhow!("{file}:{line}: {}", err.0))?;
        if image.is_empty() {
            bail!("{file}:{line}: base name ({}) should not be blank", stage.base_name);
        }
        if let Some(platform) = &stage.platform {
            let platform = lex.process_word(platform, &lookup).map_err(|err| anyhow!("{file}:{line}: {}", err.0))?;
            let target = lookup("TARGETPLATFORM").unwrap_or_default();
            if platform != target {
                return Err(declined(file, line, format!("FROM --platform={platform} (an image of another platform than {target})")));
            }
        }
        image
    };
    // USER as written, to tell whether a later WORKDIR makes its directory for a user name.
    let mut user = String::new();
    for command in &stage.commands {
        let line = command.location.start_line;
        match &command.instruction {
            Instruction::Run(_) => return Err(declined(file, line, "RUN")),
            Instruction::Add(_) => return Err(declined(file, line, "ADD")),
            Instruction::Copy(copy) if copy.from.is_some() => return Err(declined(file, line, "COPY --from")),
            Instruction::Copy(copy) if !copy.excludes.is_empty() => return Err(declined(file, line, "COPY --exclude")),
            Instruction::Copy(copy) if copy.parents => return Err(declined(file, line, "COPY --parents")),
            Instruction::Copy(copy) if names_a_user(&copy.chown) => {
                return Err(declined(
                    file,
                    line,
                    format!("COPY --chown={} (a user name, which only the image's /etc/passwd resolves)", copy.chown),
                ))
            }
            Instruction::User { user: named } => user.clone_from(named),
            Instruction::Workdir { .. } if names_a_user(&user) => {
                return Err(declined(
                    file,
                    line,
                    format!(
                        "WORKDIR after USER {user} (BuildKit makes the directory that user's, whom only the image's /etc/passwd names)"
                    ),
                ))
            }
            _ => {}
        }
    }
    let base = if image == "scratch" { Base::Scratch } else { Base::Image { image, line } };
    Ok(ImagePlan {
        base,
        file: file.to_string(),
        escape: read.escape,
        commands: stage.commands.clone(),
        meta,
        build_args: build_args.to_vec(),
    })
}

/// Whether `user` (`USER`'s or `--chown`'s value as written) names a user or group by name
/// rather than by number; a variable is judged once expanded.
fn names_a_user(user: &str) -> bool {
    !user.contains('$') && user.split(':').any(|part| !part.is_empty() && id_number(part).is_none() && part != "root")
}

/// A user or group given by number, as Go's `strconv.Atoi` into an int32 reads it; a negative
/// one leaves the owner as it is, which for what BuildKit creates or copies is root.
fn id_number(part: &str) -> Option<u32> {
    part.parse::<i32>().ok().map(|number| u32::try_from(number).unwrap_or(0))
}

/// The owner `user` (`UID[:GID]`) gives what BuildKit creates, in `tree`: the group is the user's
/// number when not named, which holds only while no `/etc/passwd` could name another.
fn numeric_owner(user: &str, tree: &FsTree, at: &str, what: &str) -> Result<Option<(u32, u32)>> {
    if user.is_empty() {
        return Ok(None);
    }
    // `root` needs no /etc/passwd: it is 0 with or without one.
    let number = |part: &str| if part == "root" { Some(0) } else { id_number(part) };
    match user.split_once(':') {
        Some((uid, gid)) => match (number(uid), number(gid)) {
            (Some(uid), Some(gid)) => Ok(Some((uid, gid))),
            _ => Err(Declined { at: at.to_string(), what: format!("{what} {user} (a name, which only the image's /etc/passwd resolves)") }.into()),
        },
        None => match number(user) {
            Some(_) if user != "root" && tree.lstat("/etc/passwd")?.is_some() => Err(Declined {
                at: at.to_string(),
                what: format!("{what} {user} without a group (BuildKit takes the group from the image's /etc/passwd, which the native builder does not read)"),
            }
            .into()),
            Some(uid) => Ok(Some((uid, uid))),
            None => Err(Declined { at: at.to_string(), what: format!("{what} {user} (a name, which only the image's /etc/passwd resolves)") }.into()),
        },
    }
}

/// What the Dockerfile makes of its base: the image's configuration and author, the history
/// entries it adds, and the layers of the entries that have one, in order.
#[derive(Debug)]
pub struct Evaluated {
    pub config: ContainerConfig,
    pub author: Option<String>,
    pub history: Vec<History>,
    pub layers: Vec<Vec<LayerEntry>>,
}

/// `KEY=value`'s key.
fn env_key(entry: &str) -> &str {
    entry.split_once('=').map_or(entry, |(key, _)| key)
}

/// BuildKit's `addEnv`: a key set again keeps its place.
fn add_env(env: &mut Vec<String>, key: &str, value: &str) {
    match env.iter_mut().find(|entry| env_key(entry) == key) {
        Some(entry) => *entry = format!("{key}={value}"),
        None => env.push(format!("{key}={value}")),
    }
}

/// The working directory after `WORKDIR path` in `dir`, as Docker 26's BuildKit records it: an
/// absolute path as written, a relative one joined to `dir` and cleaned.
fn workdir_after(dir: &str, path: &str) -> String {
    if path.starts_with('/') {
        path.to_string()
    } else {
        normalize(dir, path)
    }
}

/// BuildKit's `system.NormalizePath(dir, path)`: `path` made absolute against `dir`, cleaned.
fn normalize(dir: &str, path: &str) -> String {
    if path.is_empty() {
        return fstree::clean(dir);
    }
    if path.starts_with('/') {
        fstree::clean(path)
    } else {
        fstree::clean(&format!("{dir}/{path}"))
    }
}

/// Go's `signal.ParseSignal` on Linux: a number other than 0, or a name with or without `SIG`.
fn valid_signal(signal: &str) -> bool {
    const NAMES: [&str; 35] = [
        "ABRT", "ALRM", "BUS", "CHLD", "CLD", "CONT", "FPE", "HUP", "ILL", "INT", "IO", "IOT", "KILL", "PIPE", "POLL", "PROF", "PWR",
        "QUIT", "SEGV", "STKFLT", "STOP", "SYS", "TERM", "TRAP", "TSTP", "TTIN", "TTOU", "URG", "USR1", "USR2", "VTALRM", "WINCH", "XCPU",
        "XFSZ", "UNUSED",
    ];
    if let Ok(number) = signal.parse::<i64>() {
        return number != 0;
    }
    let name = signal.to_ascii_uppercase();
    let name = name.strip_prefix("SIG").unwrap_or(&name);
    let realtime = |prefix: &str, range: std::ops::RangeInclusive<u32>| {
        name.strip_prefix(prefix).is_some_and(|rest| rest.is_empty() || rest.parse::<u32>().is_ok_and(|n| range.contains(&n)))
    };
    NAMES.contains(&name) || name == "RTMIN" || name == "RTMAX" || realtime("RTMIN+", 1..=15) || realtime("RTMAX-", 1..=14)
}

impl ImagePlan {
    /// The context paths the COPYs read, as written once the Dockerfile's own ARGs and ENVs are
    /// expanded (a base image's variables are not known here), for change detection.
    pub fn copy_sources(&self) -> Vec<String> {
        let lex = shell::Lex::new(self.escape);
        let mut state: Vec<(String, Option<String>)> = Vec::new();
        let mut sources = Vec::new();
        for command in &self.commands {
            let mut instruction = command.instruction.clone();
            let lookup = lookup_in(&state);
            let expanded = instruction.expand(&mut |word| lex.process_word(word, &lookup).map_err(|err| err.0));
            drop(lookup);
            if expanded.is_err() {
                continue;
            }
            match instruction {
                Instruction::Env { pairs } => state.extend(pairs.into_iter().map(|(key, value)| (key, Some(value)))),
                Instruction::Arg { args } => state.extend(args.into_iter().map(|(key, default)| {
                    let value = self.arg_value(&key, default);
                    (key, value)
                })),
                Instruction::Copy(copy) => sources.extend(copy.sources),
                _ => {}
            }
        }
        sources
    }

    /// Whether the stage writes into the image's file system (COPY, WORKDIR), so that what the
    /// base image holds matters; a stage that only sets configuration needs no base listing.
    pub fn changes_files(&self) -> bool {
        self.commands.iter().any(|command| matches!(command.instruction, Instruction::Copy(_) | Instruction::Workdir { .. }))
    }

    /// A stage's `ARG key[=default]`'s value, as BuildKit's dispatchArg gives it: the build
    /// argument, else the default, else the meta ARG of that name.
    fn arg_value(&self, key: &str, default: Option<String>) -> Option<String> {
        self.given(key).or(default).or_else(|| lookup_in(&self.meta)(key))
    }

    fn given(&self, name: &str) -> Option<String> {
        self.build_args.iter().rev().find(|(key, _)| key == name).map(|(_, value)| value.clone())
    }

    /// Applies the stage to a base image's configuration and file tree (`tree`, which ends as the
    /// image's), copying from `context`, as BuildKit's dockerfile2llb and file operations do.
    /// `epoch` is every history entry's time.
    pub fn evaluate(&self, base: &ContainerConfig, tree: &mut FsTree, context: &dyn Source, epoch: u64) -> Result<Evaluated> {
        let file = &self.file;
        let mut config = base.clone();
        // ONBUILD triggers are the base's children's, not passed further.
        config.other.remove("OnBuild");
        if !config.env.iter().any(|entry| env_key(entry) == "PATH") {
            config.env.push(format!("PATH={DEFAULT_PATH}"));
        }
        let mut state: Vec<(String, Option<String>)> = config
            .env
            .iter()
            .map(|entry| (env_key(entry).to_string(), entry.split_once('=').map(|(_, value)| value.to_string())))
            .collect();
        let mut workdir = normalize("/", config.working_dir.as_deref().unwrap_or(""));
        let mut author = None;
        let mut cmd_set = false;
        let mut history = Vec::new();
        let mut layers = Vec::new();
        let created = crate::image::oci::rfc3339(epoch);
        let lex = shell::Lex::new(self.escape);
        for command in &self.commands {
            let line = command.location.start_line;
            let at = format!("{file}:{line}");
            let mut instruction = command.instruction.clone();
            {
                let lookup = lookup_in(&state);
                instruction
                    .expand(&mut |word| lex.process_word(word, &lookup).map_err(|err| err.0))
                    .map_err(|err| anyhow!("{at}: {err}; {REFUSED}"))?;
                let raw = shell::Lex::new('\\').skip_process_quotes(true);
                instruction
                    .expand_raw(&mut |word| raw.process_word(word, &lookup).map_err(|err| err.0))
                    .map_err(|err| anyhow!("{at}: {err}; {REFUSED}"))?;
                if let Instruction::Expose { ports } = &mut instruction {
                    let mut words = Vec::new();
                    for port in ports.iter() {
                        words.extend(lex.process_words(port, &lookup).map_err(|err| anyhow!("{at}: {}", err.0))?);
                    }
                    *ports = words;
                }
            }
            // The step's layer: what it touched, and whether it was made on its own (COPY --link).
            let mut layer: Option<Vec<LayerEntry>> = None;
            match &instruction {
                Instruction::Env { pairs } => {
                    for (key, value) in pairs {
                        state.push((key.clone(), Some(value.clone())));
                        add_env(&mut config.env, key, value);
                    }
                }
                Instruction::Label { pairs } => config.labels.extend(pairs.iter().cloned()),
                Instruction::Arg { args } => {
                    for (key, default) in args {
                        let value = self.arg_value(key, default.clone());
                        if value.is_some() {
                            state.push((key.clone(), value));
                        }
                    }
                }
                Instruction::Workdir { path } => {
                    workdir = workdir_after(&workdir, path);
                    config.working_dir = Some(workdir.clone());
                    if fstree::clean(&workdir) != "/" {
                        let owner = numeric_owner(config.user.as_deref().unwrap_or(""), tree, &at, "WORKDIR under USER")?;
                        let mut touched = BTreeSet::new();
                        let resolved = fstree::root_path(tree, &workdir)?;
                        tree.mkdir_all(&resolved, 0o755, owner, &mut touched).map_err(|err| anyhow!("{at}: {err}"))?;
                        layer = Some(tree.layer(&touched));
                    }
                }
                // An empty USER clears it (the config leaves an empty one out).
                Instruction::User { user } => config.user = Some(user.clone()).filter(|user| !user.is_empty()),
                Instruction::Expose { ports } => {
                    for port in instructions::parse_port_specs(ports).map_err(|err| anyhow!("{at}: {err}"))? {
                        config.exposed_ports.insert(port, serde_json::Map::new());
                    }
                }
                Instruction::Volume { volumes } => {
                    for volume in volumes {
                        config.volumes.insert(volume.clone(), serde_json::Map::new());
                    }
                }
                Instruction::StopSignal { signal } => {
                    if !valid_signal(signal) {
                        bail!("{at}: invalid signal: {signal}; {REFUSED}");
                    }
                    config.stop_signal = Some(signal.clone());
                }
                Instruction::Cmd { cmd_line, prepend_shell } => {
                    // `CMD []` leaves Cmd out of the config, as an empty list is omitted there.
                    config.cmd = Some(self.with_shell(&config, cmd_line, *prepend_shell)).filter(|cmd| !cmd.is_empty());
                    config.other.insert("ArgsEscaped".into(), serde_json::Value::Bool(true));
                    cmd_set = true;
                }
                Instruction::Entrypoint { cmd_line, prepend_shell } => {
                    let args = self.with_shell(&config, cmd_line, *prepend_shell);
                    config.entrypoint = if args.is_empty() { None } else { Some(args) };
                    if !cmd_set {
                        config.cmd = None;
                    }
                }
                Instruction::Healthcheck { health } => {
                    let nanos = |value: i64| u64::try_from(value).unwrap_or(0);
                    config.healthcheck = Some(Healthcheck {
                        test: health.test.clone(),
                        interval: nanos(health.interval),
                        timeout: nanos(health.timeout),
                        start_period: nanos(health.start_period),
                        start_interval: nanos(health.start_interval),
                        retries: u64::try_from(health.retries).unwrap_or(0),
                    });
                }
                Instruction::Shell { shell } => {
                    config.other.insert("Shell".into(), serde_json::json!(shell));
                }
                Instruction::Onbuild { expression } => {
                    let triggers = config.other.entry("OnBuild").or_insert_with(|| serde_json::json!([]));
                    if let serde_json::Value::Array(triggers) = triggers {
                        triggers.push(serde_json::Value::String(expression.clone()));
                    }
                }
                Instruction::Maintainer { maintainer } => author = Some(maintainer.clone()),
                Instruction::Copy(copy) => layer = Some(self.copy(copy, &workdir, tree, context, &at)?),
                Instruction::Run(_) | Instruction::Add(_) | Instruction::From { .. } => unreachable!("declined by plan"),
            }
            let shell = self.shell_of(&config);
            let text = match &instruction {
                // BuildKit commits WORKDIR with the path it normalised.
                Instruction::Workdir { .. } => Some(format!("WORKDIR {workdir}")),
                instruction => instructions::history_text(instruction, &shell).map_err(|err| anyhow!("{at}: {err}"))?,
            };
            if let Some(text) = text {
                let mut other = serde_json::Map::new();
                other.insert("comment".into(), serde_json::Value::String(HISTORY_COMMENT.into()));
                history.push(History { created: Some(created.clone()), created_by: Some(text), empty_layer: layer.is_none(), other });
            }
            layers.extend(layer);
        }
        if config.working_dir.as_deref().unwrap_or("").is_empty() {
            config.working_dir = Some("/".into());
        }
        Ok(Evaluated { config, author, history, layers })
    }

    /// The shell the shell forms of CMD and ENTRYPOINT run in: SHELL's, else `/bin/sh -c`.
    fn shell_of(&self, config: &ContainerConfig) -> Vec<String> {
        config
            .other
            .get("Shell")
            .and_then(|shell| serde_json::from_value::<Vec<String>>(shell.clone()).ok())
            .filter(|shell| !shell.is_empty())
            .unwrap_or_else(|| instructions::default_shell("linux"))
    }

    /// BuildKit's `withShell`: a shell form's text after the shell.
    fn with_shell(&self, config: &ContainerConfig, cmd_line: &[String], prepend_shell: bool) -> Vec<String> {
        if !prepend_shell {
            return cmd_line.to_vec();
        }
        let mut args = self.shell_of(config);
        args.push(cmd_line.join(" "));
        args
    }

    /// One COPY from the build context: each source (wildcards resolved) and heredoc copied as
    /// BuildKit's file operation does; returns the step's layer. `--link` changes nothing on
    /// Docker 26, whose engine has no merge operation, so BuildKit copies as without it (with the
    /// containerd image store, newer engines copy onto an empty tree and merge it).
    fn copy(
        &self,
        copy: &instructions::CopyInstruction,
        workdir: &str,
        tree: &mut FsTree,
        context: &dyn Source,
        at: &str,
    ) -> Result<Vec<LayerEntry>> {
        let mut dest = normalize(workdir, &copy.dest);
        if copy.dest.is_empty() || copy.dest == "." || copy.dest.ends_with('/') {
            dest.push('/');
        } else if copy.dest.ends_with("/.") {
            dest.push_str("/.");
        }
        let owner = numeric_owner(&copy.chown, tree, at, "COPY --chown")?;
        // BuildKit leaves a mode it cannot read as octal unset.
        // Only the permission and special bits count (fsutil's `copyFileInfo`).
        let mode = (!copy.chmod.is_empty()).then(|| u32::from_str_radix(&copy.chmod, 8).ok()).flatten().map(|mode| mode & 0o7777);
        let options = CopyOptions { owner, mode };
        let mut touched = BTreeSet::new();
        for written in &copy.sources {
            if written.contains('\\') {
                // The context is sent filtered by the sources read as patterns, where `\` escapes.
                return Err(Declined { at: at.to_string(), what: format!("COPY source `{written}` (a `\\` in a path)") }.into());
            }
            let source = fstree::clean(&format!("/{written}"));
            let matches = if source.split('/').any(fstree::has_wildcard) {
                fstree::resolve_wildcards(context, &source).map_err(|err| anyhow!("{at}: {err}"))?
            } else {
                if context.lstat(&fstree::root_path(context, &source)?)?.is_none() {
                    let through = match context.lstat(&source)? {
                        Some(Stat { kind: Kind::Symlink(target), .. }) => {
                            format!(" (it is a link to `{target}`, which BuildKit resolves inside the context, never outside it)")
                        }
                        _ => String::new(),
                    };
                    bail!("{at}: COPY source `{written}` is not in the build context{through}, or .dockerignore leaves it out, and BuildKit would not find it either: fix the path (it is relative to the context) or the ignore file");
                }
                vec![source]
            };
            for found in matches {
                tree.copy(context, &found, &dest, &options, &mut touched).map_err(|err| anyhow!("{at}: {err}"))?;
            }
        }
        for content in &copy.contents {
            let mut inline = FsTree::new();
            let path = fstree::clean(&format!("/{}", content.path));
            let data = FileData::Inline(content.data.clone().into_bytes());
            inline.apply_base_entry(&path, Some(Stat { kind: Kind::File(data), mode: 0o644, uid: 0, gid: 0, inode: 0 }));
            tree.copy(&inline, &path, &dest, &options, &mut touched).map_err(|err| anyhow!("{at}: {err}"))?;
        }
        Ok(tree.layer(&touched))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::fstree::LayerKind;

    const ARGS: [(&str, &str); 3] = [("TARGETPLATFORM", "linux/arm64"), ("TARGETARCH", "arm64"), ("BUILDPLATFORM", "linux/amd64")];

    /// A build context: `bin/api` (755), `conf` (600) and `docs/readme`.
    fn context() -> FsTree {
        let mut tree = FsTree::new();
        let file = |mode: u32, path: &str| Stat {
            kind: Kind::File(FileData::Context(std::path::PathBuf::from(path))),
            mode,
            uid: 0,
            gid: 0,
            inode: 0,
        };
        let dir = Stat { kind: Kind::Dir, mode: 0o755, uid: 0, gid: 0, inode: 0 };
        tree.apply_base_entry("/bin", Some(dir.clone()));
        tree.apply_base_entry("/bin/api", Some(file(0o755, "bin/api")));
        tree.apply_base_entry("/conf", Some(file(0o600, "conf")));
        tree.apply_base_entry("/docs", Some(dir));
        tree.apply_base_entry("/docs/readme", Some(file(0o644, "docs/readme")));
        tree
    }

    /// Plans and evaluates `dockerfile` on `base` (scratch's empty configuration when `None`),
    /// and prints the configuration, the history and each layer, or the error.
    fn check_on(base: &ContainerConfig, dockerfile: &str, expected: expect_test::Expect) {
        let args: Vec<(String, String)> = ARGS.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let actual = plan(dockerfile, "Dockerfile", &args).and_then(|plan| plan.evaluate(base, &mut FsTree::new(), &context(), 86_400));
        let text = match actual {
            Err(err) => format!("error: {err:#}"),
            Ok(evaluated) => {
                let mut out = serde_json::to_string_pretty(&evaluated.config).unwrap();
                for entry in &evaluated.history {
                    out.push_str(&format!(
                        "\n{}{}",
                        entry.created_by.as_deref().unwrap_or(""),
                        if entry.empty_layer { "" } else { "  (layer)" }
                    ));
                }
                for (index, layer) in evaluated.layers.iter().enumerate() {
                    out.push_str(&format!("\nlayer {index}:"));
                    for entry in layer {
                        let link = match &entry.kind {
                            LayerKind::Symlink(target) | LayerKind::Hardlink(target) => format!(" -> {target}"),
                            _ => String::new(),
                        };
                        out.push_str(&format!(" {} {:o} {}:{}{link};", entry.path, entry.mode, entry.uid, entry.gid));
                    }
                }
                out
            }
        };
        expected.assert_eq(&text);
    }

    fn check(dockerfile: &str, expected: expect_test::Expect) {
        check_on(&ContainerConfig::default(), dockerfile, expected);
    }

    #[test]
    fn the_common_app_shape() {
        check(
            r#"
# comment
FROM scratch
ARG TARGETPLATFORM
WORKDIR /app
COPY bin/api conf .
ENV LISTEN=0.0.0.0:8080 GREETING="hello world" \
    PATH=/app:$PATH
LABEL org.example.team=core "quoted key"=v
EXPOSE 8080 9000-9001/UDP
USER 65534:65534
CMD ["--verbose"]
ENTRYPOINT ["./api"]
"#,
            expect_test::expect![[r#"
                {
                  "User": "65534:65534",
                  "ExposedPorts": {
                    "8080/tcp": {},
                    "9000/udp": {},
                    "9001/udp": {}
                  },
                  "Env": [
                    "PATH=/app:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                    "LISTEN=0.0.0.0:8080",
                    "GREETING=hello world"
                  ],
                  "Entrypoint": [
                    "./api"
                  ],
                  "Cmd": [
                    "--verbose"
                  ],
                  "WorkingDir": "/app",
                  "Labels": {
                    "org.example.team": "core",
                    "quoted key": "v"
                  },
                  "ArgsEscaped": true
                }
                ARG TARGETPLATFORM
                WORKDIR /app  (layer)
                COPY bin/api conf . # buildkit  (layer)
                ENV LISTEN=0.0.0.0:8080 GREETING=hello world PATH=/app:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
                LABEL org.example.team=core quoted key=v
                EXPOSE map[8080/tcp:{} 9000/udp:{} 9001/udp:{}]
                USER 65534:65534
                CMD ["--verbose"]
                ENTRYPOINT ["./api"]
                layer 0: app/ 755 0:0;
                layer 1: app/ 755 0:0; app/api 755 0:0; app/conf 600 0:0;"#]],
        );
    }

    #[test]
    fn a_base_image_gives_its_configuration() {
        let base = ContainerConfig {
            env: vec!["PATH=/bin".into(), "MODE=base".into()],
            cmd: Some(vec!["/bin/sh".into()]),
            working_dir: Some("/base".into()),
            user: Some("1000:1000".into()),
            labels: [("team".to_string(), "platform".to_string())].into(),
            other: serde_json::json!({"Shell": ["/bin/bash", "-c"], "OnBuild": ["RUN make"]}).as_object().unwrap().clone(),
            ..ContainerConfig::default()
        };
        check_on(
            &base,
            "FROM registry.example/base:1\nENV MODE=app X=$MODE\nENTRYPOINT exec api\nCOPY docs/ sub/\n",
            expect_test::expect![[r#"
                {
                  "User": "1000:1000",
                  "Env": [
                    "PATH=/bin",
                    "MODE=app",
                    "X=base"
                  ],
                  "Entrypoint": [
                    "/bin/bash",
                    "-c",
                    "exec api"
                  ],
                  "WorkingDir": "/base",
                  "Labels": {
                    "team": "platform"
                  },
                  "Shell": [
                    "/bin/bash",
                    "-c"
                  ]
                }
                ENV MODE=app X=base
                ENTRYPOINT ["/bin/bash" "-c" "exec api"]
                COPY docs/ sub/ # buildkit  (layer)
                layer 0: base/ 755 0:0; base/sub/ 755 0:0; base/sub/readme 644 0:0;"#]],
        );
    }

    #[test]
    fn declined_and_malformed() {
        let decline = |what: &str| {
            format!("error: Dockerfile:2: {what} is not assembled by the native builder, which makes exactly the image BuildKit makes of one stage of FROM, COPY from the build context, WORKDIR and instructions that set the configuration; build this app with `--builder engine` (or `auto`)")
        };
        let run = |text: &str| match plan(text, "Dockerfile", &[])
            .and_then(|plan| plan.evaluate(&ContainerConfig::default(), &mut FsTree::new(), &context(), 0))
        {
            Ok(_) => "built".to_string(),
            Err(err) => format!("error: {err:#}"),
        };
        assert_eq!(run("FROM scratch\nRUN echo hi\n"), decline("RUN"));
        assert_eq!(run("FROM scratch AS a\nFROM scratch\n"), decline("a second FROM (a multi-stage build)"));
        assert_eq!(
            run("FROM scratch\nCOPY --chown=app conf /a\n"),
            decline("COPY --chown=app (a user name, which only the image's /etc/passwd resolves)")
        );
        assert_eq!(
            run("FROM scratch\nUSER app\nWORKDIR /x\n").replace("Dockerfile:3", "Dockerfile:2"),
            decline("WORKDIR after USER app (BuildKit makes the directory that user's, whom only the image's /etc/passwd names)")
        );
        assert_eq!(run("FROM scratch\nCOPY --from=build / /\n"), decline("COPY --from"));
        expect_test::expect![
            "error: Dockerfile:1: no build stage in current context; docker build refuses this Dockerfile too: fix that line"
        ]
        .assert_eq(&run("COPY a /a\n"));
        expect_test::expect!["error: Dockerfile:1: file with no instructions; docker build refuses this Dockerfile too: fix that line"]
            .assert_eq(&run("# only a comment\n"));
        expect_test::expect!["error: Dockerfile:2: COPY source `missing` is not in the build context, or .dockerignore leaves it out, and BuildKit would not find it either: fix the path (it is relative to the context) or the ignore file"].assert_eq(&run("FROM scratch\nCOPY missing /m\n"));
        expect_test::expect![[r#"error: Dockerfile:2: failed to process "${A:?required}": A: required; docker build refuses this Dockerfile too: fix that line"#]].assert_eq(&run("FROM scratch\nENV B=${A:?required}\n"));
        expect_test::expect!["error: Dockerfile:2: invalid signal: SIGNOPE; docker build refuses this Dockerfile too: fix that line"]
            .assert_eq(&run("FROM scratch\nSTOPSIGNAL SIGNOPE\n"));
        // Valid, with BuildKit's fallbacks: invalid JSON is the shell form, a 1.5s duration is one.
        assert_eq!(run("FROM scratch\nCMD ['/app']\nHEALTHCHECK --interval=1.5s CMD true\n"), "built");
    }

    #[test]
    fn arguments_are_scoped_as_in_buildkit() {
        let text = "ARG A=1\nARG B=${A}2 C\nFROM scratch\nARG B\nARG D=4 E=5\nARG TARGETARCH\nENV R=[$A][$B][$C][$D][$E][$TARGETARCH]\n";
        let args = [("C".to_string(), "given".to_string()), ("TARGETARCH".to_string(), "arm64".to_string())];
        let evaluated =
            plan(text, "Dockerfile", &args).unwrap().evaluate(&ContainerConfig::default(), &mut FsTree::new(), &context(), 0).unwrap();
        assert_eq!(evaluated.config.env[1], "R=[][12][][4][5][arm64]");
    }

    #[test]
    fn copy_sources_and_base_images() {
        let text = "ARG BASE=registry.example/base\nFROM $BASE:1\nARG DIR=docs\nENV BIN=bin/api\nCOPY $DIR/readme ${BIN} /srv/\n";
        let plan = plan(text, "Dockerfile", &[]).unwrap();
        assert_eq!(plan.base, Base::Image { image: "registry.example/base:1".into(), line: 2 });
        assert_eq!(plan.copy_sources(), ["docs/readme", "bin/api"]);
        let stages = "ARG RUST=1.80\nARG BASE\nFROM rust:${RUST} AS build\nRUN cargo build\nFROM build AS test\nFROM --platform=$BUILDPLATFORM $BASE\nFROM scratch\n";
        let args = [("BASE".to_string(), "registry.example/debian:12".to_string())];
        assert_eq!(base_images(stages, &args), ["rust:1.80", "registry.example/debian:12"]);
        assert!(runs_commands(stages));
        assert!(!runs_commands("FROM scratch\n# RUN nothing\nCOPY a /a\n"));
        assert!(!runs_commands("FROM scratch\nCOPY <<EOF /a\nRUN this is a heredoc body\nEOF\n"));
    }

    #[test]
    fn scratch_is_replaced_only_in_from() {
        let text =
            "ARG X\nFROM scratch AS build\nRUN echo scratch\n  from --platform=linux/arm64 SCRATCH\nFROM debian\nCOPY --from=build / /\n";
        expect_test::expect![[r#"
            ARG X
            FROM xtask/scratch:linux-arm64 AS build
            RUN echo scratch
              from --platform=linux/arm64 xtask/scratch:linux-arm64
            FROM debian
            COPY --from=build / /
        "#]]
        .assert_eq(&replace_scratch(text, "xtask/scratch:linux-arm64"));
    }

    #[test]
    fn the_final_base_is_followed_through_stage_names() {
        let check = |text: &str, expected: Option<&str>| {
            let found = final_base(text, &[("TAG".into(), "12-slim".into())]).map(|base| match base {
                Base::Scratch => "scratch".to_string(),
                Base::Image { image, line } => format!("{image}:{line}"),
            });
            assert_eq!(found.as_deref(), expected, "{text}");
        };
        check("FROM rust AS build\nRUN cargo build\nFROM debian:bookworm-slim\nCOPY --from=build /x /x\n", Some("debian:bookworm-slim:3"));
        check("ARG TAG\nFROM debian:${TAG} AS runtime\nFROM rust AS build\nFROM runtime\n", Some("debian:12-slim:2"));
        check("FROM rust AS build\nFROM scratch AS out\nFROM out\n", Some("scratch"));
        check("FROM scratch AS debian\nFROM DEBIAN\n", Some("scratch"));
        check("FROM\n", None);
    }

    #[test]
    fn a_target_stage_leaves_out_the_stages_after_it() {
        let text = "FROM rust AS build\nRUN cargo build --release\n\nFROM debian AS Runtime\nCOPY --from=build /a /a\n# debug image\nFROM runtime AS debug\nRUN apt-get install -y gdb\n";
        assert_eq!(
            up_to_stage(text, "Dockerfile", "runtime").unwrap(),
            "FROM rust AS build\nRUN cargo build --release\n\nFROM debian AS Runtime\nCOPY --from=build /a /a\n# debug image\n\n\n"
        );
        assert_eq!(up_to_stage(text, "Dockerfile", "debug").unwrap(), text);
        assert_eq!(
            up_to_stage(text, "docker/Dockerfile.unified", "release").unwrap_err().to_string(),
            "docker/Dockerfile.unified has no stage named `release` (its named stages: build, runtime, debug): give the name of a `FROM ... AS <name>` line as the image's target"
        );
    }
}
