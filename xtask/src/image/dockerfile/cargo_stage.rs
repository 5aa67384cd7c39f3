//! Builder stages that compile the app with cargo, replaced by the xtask's own build. Real Rust
//! Dockerfiles compile in a stage of their own (`FROM rust AS builder`, `COPY . .`, `RUN cargo
//! build --release -p gateway`) and copy the binary into a runtime stage (`COPY --from=builder
//! /src/target/release/gateway /usr/local/bin/`). Built as written, the builder stage runs cargo
//! under emulation for every other architecture; the xtask cross-compiles the same package
//! natively instead, stages the binary under `target/stage/<platform>/`, and builds the
//! Dockerfile rewritten without its builder stages, each such COPY reading the staged binary.
//!
//! The rewrite applies only when it gives the image the same files: the builder stage's RUN
//! lines are cargo builds the xtask makes exactly (`cargo build --release`, a package, binaries;
//! cargo-chef's `cook`, which only builds dependencies), and the later stages copy nothing from
//! it but those binaries. Anything else is a `Kept` reason, and the whole Dockerfile goes to the
//! engine as it is.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::Result;

use super::instructions::{copy_commit_message, AddInstruction, CopyInstruction, Instruction, Stage};
use super::run_line::{self, is_assignment};
use super::{lookup_in, meta_args, read, shell, workdir_after};

/// What a Dockerfile's builder stages become.
#[derive(Debug, PartialEq, Eq)]
pub enum CargoStages {
    /// No stage runs cargo.
    None,
    /// Stages run cargo, but not in a way the xtask can replace: why, with the line.
    Kept(String),
    Replaced(Box<Replacement>),
}

/// The name of the build context that holds `target/stage/` where the workspace's context cannot
/// (buildx's `--build-context xtask-stage=target/stage`).
pub const STAGE_CONTEXT: &str = "xtask-stage";

#[derive(Debug, PartialEq, Eq)]
pub struct Replacement {
    /// The Dockerfile without the builder stages (and the stages only they used), each COPY of a
    /// cargo output reading the staged binary from the build context instead:
    /// `target/stage/<platform>/<bin>` when the stages left read the workspace as their context,
    /// else `<platform>/<bin>`, with `target/stage/` as the whole context.
    pub text: String,
    /// When the stages left read the build context: the text and `history` with each rewritten
    /// COPY reading the binaries from the named build context [`STAGE_CONTEXT`] (`COPY
    /// --from=xtask-stage <platform>/<bin>`), `target/stage/`, for a context whose .dockerignore
    /// leaves that directory out.
    pub in_stage_context: Option<(String, Vec<(String, String)>)>,
    /// Whether the stages left copy from the build context besides the binaries.
    pub reads_context: bool,
    /// The package the builder stage builds (`-p`), when it names one.
    pub package: Option<String>,
    /// The binaries the later stages copy.
    pub bins: BTreeSet<String>,
    /// Whether its cargo build names a musl target (`--target x86_64-unknown-linux-musl`): the
    /// binary is then static whatever the base, as the Dockerfile has it.
    pub musl: bool,
    /// Its cargo build's profile and features.
    pub options: CargoOptions,
    /// What the left-out stages copied from the build context (`COPY migrations ./migrations`,
    /// `COPY . .`), as written there: the xtask's build reads the same files from the workspace.
    pub builder_sources: Vec<String>,
    /// For each rewritten COPY, the history entry BuildKit records for it and the one it records
    /// for the COPY as written (`COPY /src/target/release/api /usr/local/bin/ # buildkit`), which
    /// the image gets instead: the same config as the Dockerfile's own build.
    pub history: Vec<(String, String)>,
    /// One line for `--explain`.
    pub why: String,
}

/// How a builder stage's cargo build builds its package besides the target: the profile and
/// the features, which the xtask's build of the package then uses too.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct CargoOptions {
    /// `release`, `dev`, or a custom profile of the workspace.
    pub profile: String,
    /// `--features`, each a feature of the package itself.
    pub features: Vec<String>,
    pub no_default_features: bool,
    pub all_features: bool,
    /// `RUSTFLAGS` of the build (`--cfg tokio_unstable`), without those that choose the linker,
    /// which the xtask chooses for the target.
    pub rustflags: Vec<String>,
    /// Profile settings given as variables (`CARGO_PROFILE_RELEASE_DEBUG=false`).
    pub profile_env: Vec<(String, String)>,
    /// The variables of cargo's environment in the stage that its build scripts and macros may
    /// read (`SQLX_OFFLINE=true`), which the xtask's build gets too (`carried_to_the_build`).
    pub env: Vec<(String, String)>,
    /// What a `strip` after the build took out of the binary: `symbols` or `debuginfo`, as the
    /// profile's `strip` setting takes them out.
    pub strip: Option<String>,
}

impl Default for CargoOptions {
    fn default() -> CargoOptions {
        CargoOptions {
            profile: "release".into(),
            features: Vec::new(),
            no_default_features: false,
            all_features: false,
            rustflags: Vec::new(),
            profile_env: Vec::new(),
            env: Vec::new(),
            strip: None,
        }
    }
}

impl CargoOptions {
    /// cargo's arguments for these options.
    pub fn cargo_args(&self) -> Vec<String> {
        let mut args = match self.profile.as_str() {
            "release" => vec!["--release".to_string()],
            profile => vec!["--profile".to_string(), profile.to_string()],
        };
        if !self.features.is_empty() {
            args.extend(["--features".to_string(), self.features.join(",")]);
        }
        if self.no_default_features {
            args.push("--no-default-features".into());
        }
        if self.all_features {
            args.push("--all-features".into());
        }
        if let Some(strip) = &self.strip {
            args.extend(["--config".to_string(), format!("profile.{}.strip=\"{strip}\"", self.profile)]);
        }
        args
    }

    /// The directory of the target directory the profile's binaries land in.
    pub fn profile_dir(&self) -> &str {
        match self.profile.as_str() {
            "dev" | "test" => "debug",
            "bench" => "release",
            other => other,
        }
    }
}

impl std::fmt::Display for CargoOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "profile {}", self.profile)?;
        if !self.features.is_empty() {
            write!(f, ", features {}", self.features.join(","))?;
        }
        if self.no_default_features {
            write!(f, ", no default features")?;
        }
        if self.all_features {
            write!(f, ", all features")?;
        }
        if !self.rustflags.is_empty() {
            write!(f, ", RUSTFLAGS {}", self.rustflags.join(" "))?;
        }
        for (key, value) in self.profile_env.iter().chain(&self.env) {
            write!(f, ", {key}={value}")?;
        }
        if let Some(strip) = &self.strip {
            write!(f, ", stripped of {strip}")?;
        }
        Ok(())
    }
}

/// The cargo build a RUN line makes.
#[derive(Debug, Default, PartialEq, Eq)]
struct CargoBuild {
    package: Option<String>,
    bins: Vec<String>,
    options: CargoOptions,
    /// Where the binaries land, absolute: `<workdir>/<target dir>[/<target>]/release`.
    out_dir: String,
    /// The Rust target it names (`--target`), if any.
    triple: Option<String>,
    /// Where later commands of the stage copied or moved binaries to: (absolute path, binary);
    /// an empty binary when the path ends in a pattern (`/usr/bin/ss*`), whose every binary it
    /// matches is there under its own name.
    copies: Vec<(String, String)>,
}

impl CargoBuild {
    /// The binary at the absolute `path` of the builder stage, if one is there.
    fn binary_at(&self, path: &str) -> Option<String> {
        let built = path.strip_prefix(&format!("{}/", self.out_dir)).filter(|bin| {
            (self.bins.is_empty() || self.bins.iter().any(|known| known == bin))
                && !bin.contains('/')
                && !crate::image::fstree::has_wildcard(bin)
        });
        let name = path.rsplit('/').next().unwrap_or(path);
        let is_bin = |name: &str| self.bins.is_empty() || self.bins.iter().any(|known| known == name);
        built.map(str::to_string).or_else(|| {
            self.copies.iter().rev().find_map(|(copy, bin)| match bin.is_empty() {
                false => (copy == path).then(|| bin.clone()),
                true => (is_bin(name) && crate::image::fstree::go_match(copy, path).unwrap_or(false)).then(|| name.to_string()),
            })
        })
    }
}

/// Reads the Dockerfile for builder stages and rewrites it for `platform` (`linux/arm64`).
pub fn replace(text: &str, file: &str, build_args: &[(String, String)], platform: &str) -> Result<CargoStages> {
    let read = read(text, file)?;
    if read.stages.len() < 2 {
        return Ok(CargoStages::None);
    }
    let meta = meta_args(&read, build_args)?;
    let lex = shell::Lex::new(read.escape);
    // Each stage's variables and cargo build, where it has one, in order: a stage starts from
    // what the stage it is FROM left (its ENVs, WORKDIR, where it put the build context). What
    // cannot be read matters only for the stages the image needs.
    let mut scopes: Vec<Vec<Scope>> = Vec::new();
    let mut builds: Vec<Result<Option<CargoBuild>, String>> = Vec::new();
    let mut ends: Vec<StageEnd> = Vec::new();
    for stage in &read.stages {
        let base = lex.process_word(&stage.base_name, &lookup_in(&meta)).unwrap_or_default();
        let start = ends
            .iter()
            .zip(&read.stages)
            .rev()
            .find(|(_, earlier)| earlier.name.as_deref().is_some_and(|name| name.eq_ignore_ascii_case(&base)))
            .map(|(end, _)| end.clone())
            .unwrap_or_default();
        let stage_scopes = stage_scopes(stage, &lex, &meta, build_args, &start.env);
        let (build, end) = stage_build(stage, &lex, &stage_scopes, platform, start);
        scopes.push(stage_scopes);
        builds.push(build);
        ends.push(end);
    }
    if builds.iter().all(|build| matches!(build, Ok(None))) {
        return Ok(CargoStages::None);
    }
    let stage_index = |reference: &str| -> Option<usize> {
        read.stages
            .iter()
            .position(|stage| stage.name.as_deref().is_some_and(|name| name.eq_ignore_ascii_case(reference)))
            .or_else(|| reference.parse::<usize>().ok().filter(|index| *index < read.stages.len()))
    };
    // The stages that use a builder stage, other than through COPY --from, keep it.
    let base_of = |stage: &Stage| stage_index(&stage.base_name);
    // Lines left out become blank, so that every line keeps its number for later messages.
    let mut lines: Vec<String> = text.split('\n').map(str::to_string).collect();
    let mut bins = BTreeSet::new();
    let mut history: Vec<(String, String)> = Vec::new();
    let mut package = None;
    let mut reads_context = false;
    // Where the staged binaries are is known once every stage left is read.
    const STAGED: &str = "\u{0}staged\u{0}";
    // Where a rewritten COPY names the named build context, when it reads one.
    const STAGED_FROM: &str = "\u{0}from\u{0}";
    let last = read.stages.len() - 1;
    // The stages the last one needs after the rewrite: its base chain and what it copies from.
    let mut needed = BTreeSet::from([last]);
    let mut pending = vec![last];
    while let Some(index) = pending.pop() {
        let stage = &read.stages[index];
        let build = match &builds[index] {
            Ok(build) => build,
            Err(why) => return Ok(CargoStages::Kept(format!("{file}:{why}"))),
        };
        if build.is_some() {
            let line = stage.location.start_line;
            return Ok(CargoStages::Kept(format!(
                "{file}:{line}: the image is the stage that runs cargo build, not a stage that copies its binary"
            )));
        }
        let mut uses = Vec::new();
        if let Some(base) = base_of(stage).filter(|base| *base < index) {
            if matches!(builds[base], Ok(Some(_))) {
                let line = stage.location.start_line;
                return Ok(CargoStages::Kept(format!(
                    "{file}:{line}: a stage starts FROM the builder stage, so it needs more than the binaries"
                )));
            }
            uses.push(base);
        }
        for (command, scope) in stage.commands.iter().zip(&scopes[index]) {
            let line = command.location.start_line;
            // COPY's flags and paths are expanded with the stage's ARGs and ENVs, as BuildKit does.
            let expand = |word: &str| lex.process_word(word, &lookup_in(scope)).map_err(|err| format!("{file}:{line}: {}", err.0));
            match &command.instruction {
                Instruction::Copy(copy) if copy.from.is_some() => {
                    let from = match expand(copy.from.as_deref().unwrap_or_default()) {
                        Ok(from) => from,
                        Err(why) => return Ok(CargoStages::Kept(why)),
                    };
                    let Some(source_stage) = stage_index(&from).filter(|source| *source < index) else { continue };
                    let build = match &builds[source_stage] {
                        Ok(Some(build)) => build,
                        Ok(None) => {
                            uses.push(source_stage);
                            continue;
                        }
                        Err(why) => return Ok(CargoStages::Kept(format!("{file}:{why}"))),
                    };
                    let mut copied = Vec::new();
                    // Files the stage has from the build context, as paths in the context.
                    let mut from_context = Vec::new();
                    let mut expanded_sources = Vec::new();
                    for source in &copy.sources {
                        let source = match expand(source) {
                            Ok(source) => source,
                            Err(why) => return Ok(CargoStages::Kept(why)),
                        };
                        // BuildKit reads a COPY --from source from the stage's root, whatever its WORKDIR.
                        let path = super::normalize("/", &source);
                        expanded_sources.push(source.clone());
                        match (build.binary_at(&path), context_file(&ends[source_stage], build, &path)) {
                            (Some(bin), _) => copied.push(bin),
                            (None, Some(in_context)) => from_context.push(in_context),
                            (None, None) => {
                                return Ok(CargoStages::Kept(format!(
                                    "{file}:{line}: COPY --from={from} {source} copies what is not a binary the stage's cargo build makes ({}/<bin>) nor a file of the build context it copied",
                                    build.out_dir
                                )))
                            }
                        }
                    }
                    if !copied.is_empty() && !from_context.is_empty() {
                        return Ok(CargoStages::Kept(format!(
                            "{file}:{line}: COPY --from={from} copies both binaries cargo built and files of the build context"
                        )));
                    }
                    if !copy.contents.is_empty() {
                        return Ok(CargoStages::Kept(format!(
                            "{file}:{line}: COPY --from={from} with a heredoc writes more than the binaries"
                        )));
                    }
                    package = package.or_else(|| build.package.clone());
                    let mut flags = String::new();
                    for (flag, value) in [("--chown", &copy.chown), ("--chmod", &copy.chmod)] {
                        if !value.is_empty() {
                            flags.push_str(&format!("{flag}={value} "));
                        }
                    }
                    if copy.link {
                        flags.push_str("--link ");
                    }
                    // A file of the context the builder stage copied is read from the context, as
                    // BuildKit would have copied it there and out again, owner and mode alike.
                    let (sources, from_stage) = match from_context.is_empty() {
                        true => (copied.iter().map(|bin| format!("{STAGED}{platform}/{bin}")).collect::<Vec<_>>(), STAGED_FROM),
                        false => (from_context, ""),
                    };
                    reads_context |= from_stage.is_empty();
                    let rewritten = format!("COPY {from_stage}{flags}{} {}", sources.join(" "), copy.dest);
                    // The history BuildKit records for the COPY as written, and for the rewritten one.
                    let (chown, chmod, dest) = match (expand(&copy.chown), expand(&copy.chmod), expand(&copy.dest)) {
                        (Ok(chown), Ok(chmod), Ok(dest)) => (chown, chmod, dest),
                        (Err(why), _, _) | (_, Err(why), _) | (_, _, Err(why)) => return Ok(CargoStages::Kept(why)),
                    };
                    let message = |sources: &[String]| copy_commit_message("COPY", &chown, &chmod, sources, &[], &dest);
                    history.push((message(&sources), message(&expanded_sources)));
                    for at in command.location.start_line..=command.location.end_line {
                        lines[at - 1].clear();
                    }
                    lines[command.location.start_line - 1] = rewritten;
                    bins.extend(copied);
                }
                Instruction::Copy(_) | Instruction::Add(_) => reads_context = true,
                Instruction::Run(run) if run.mount_specs.iter().any(|spec| spec.contains("from=")) => {
                    return Ok(CargoStages::Kept(format!("{file}:{line}: RUN --mount=from= reads another stage")));
                }
                _ => {}
            }
        }
        for used in uses {
            if needed.insert(used) {
                pending.push(used);
            }
        }
    }
    if bins.is_empty() {
        return Ok(CargoStages::None);
    }
    // Every stage the rewritten Dockerfile does not need is left out, builder stages included;
    // what they copied from the build context is kept as what the xtask's build reads.
    let mut builder_sources = BTreeSet::new();
    for (index, stage) in read.stages.iter().enumerate() {
        if needed.contains(&index) {
            continue;
        }
        for (command, scope) in stage.commands.iter().zip(&scopes[index]) {
            let (Instruction::Copy(CopyInstruction { from: None, sources, .. }) | Instruction::Add(AddInstruction { sources, .. })) =
                &command.instruction
            else {
                continue;
            };
            builder_sources.extend(sources.iter().filter_map(|source| lex.process_word(source, &lookup_in(scope)).ok()));
        }
        let end = read.stages.get(index + 1).map_or(lines.len(), |next| next.location.start_line - 1);
        for line in stage.location.start_line..=end {
            lines[line - 1].clear();
        }
    }
    let render = |prefix: &str, from: &str| -> (String, Vec<(String, String)>) {
        let text: Vec<String> = lines.iter().map(|line| line.replace(STAGED, prefix).replace(STAGED_FROM, from)).collect();
        let history = history.iter().map(|(rewritten, original)| (rewritten.replace(STAGED, prefix), original.clone())).collect();
        (text.join("\n"), history)
    };
    let (text, history) = render(if reads_context { "target/stage/" } else { "" }, "");
    let in_stage_context = reads_context.then(|| render("", &format!("--from={STAGE_CONTEXT} ")));
    let builder = builds.iter().position(|build| matches!(build, Ok(Some(_)))).expect("a builder stage");
    let stage = &read.stages[builder];
    let named = stage.name.as_deref().map_or(String::new(), |name| format!(" `{name}`"));
    let why =
        format!("the builder stage{named} ({file}:{}) runs cargo build, which the xtask cross-compiles instead", stage.location.start_line);
    let Ok(Some(build)) = &builds[builder] else { unreachable!("found above") };
    let musl = build.triple.as_deref().is_some_and(|triple| triple.contains("-musl"));
    let options = build.options.clone();
    let builder_sources = builder_sources.into_iter().collect();
    Ok(CargoStages::Replaced(Box::new(Replacement {
        text,
        in_stage_context,
        reads_context,
        package,
        bins,
        musl,
        options,
        history,
        builder_sources,
        why,
    })))
}

/// Where file `path` of a builder stage is in the build context: under the directory a plain
/// `COPY . <dir>` put the whole context (`StageEnd::whole_context`, forgotten once anything may
/// have written there), and neither the context's root itself nor in a `target` directory, where
/// cargo writes (zksync-era's `core/target/release/zksync_server` is a build's output).
fn context_file(end: &StageEnd, build: &CargoBuild, path: &str) -> Option<String> {
    let root = end.whole_context.as_deref()?.trim_end_matches('/');
    let in_context = if root.is_empty() { path.strip_prefix('/') } else { path.strip_prefix(&format!("{root}/")) }?;
    let in_output = in_context.split('/').any(|part| part == "target") || path.starts_with(&format!("{}/", build.out_dir));
    (!in_context.is_empty() && !in_output).then(|| in_context.to_string())
}

/// The variables one command of a stage sees, each set or unset.
type Scope = Vec<(String, Option<String>)>;

/// The variables each command of `stage` sees, as BuildKit gives them: the ENVs of the stage it
/// starts FROM (`inherited`), then the stage's own ARGs (a build argument, else the default,
/// else the meta ARG of that name) and ENVs before it. The meta ARGs are not visible in a stage
/// that does not declare them again.
fn stage_scopes(
    stage: &Stage,
    lex: &shell::Lex,
    meta: &[(String, Option<String>)],
    build_args: &[(String, String)],
    inherited: &Scope,
) -> Vec<Scope> {
    let given = |name: &str| build_args.iter().rev().find(|(key, _)| key == name).map(|(_, value)| value.clone());
    let mut scope: Scope = inherited.clone();
    let mut scopes = Vec::with_capacity(stage.commands.len());
    for command in &stage.commands {
        scopes.push(scope.clone());
        let lookup = lookup_in(&scope);
        let defined: Scope = match &command.instruction {
            Instruction::Env { pairs } => {
                pairs.iter().map(|(key, value)| (key.clone(), Some(lex.process_word(value, &lookup).unwrap_or_default()))).collect()
            }
            Instruction::Arg { args } => args
                .iter()
                .map(|(name, default)| {
                    let default = default.as_ref().map(|default| lex.process_word(default, &lookup).unwrap_or_default());
                    (name.clone(), given(name).or(default).or_else(|| lookup_in(meta)(name)))
                })
                .collect(),
            _ => continue,
        };
        drop(lookup);
        scope.extend(defined);
    }
    scopes
}

/// What a stage leaves to the stages that start FROM it.
#[derive(Debug, Clone)]
struct StageEnd {
    /// Its ENVs (ARGs end with the stage).
    env: Scope,
    workdir: String,
    /// Where it copied the build context (`COPY . .`), or the context's root manifest (`COPY
    /// Cargo.toml Cargo.lock ./`, then each crate's directory): the workspace root, where
    /// cargo's target directory is unless told otherwise.
    context_root: Option<String>,
    /// The directories it made: a binary copied into one keeps its name.
    dirs: Vec<String>,
    /// The first command that ran on the copied sources and may have changed what cargo reads
    /// (`may_change_sources`), as `line: why`: a build after it cannot be replaced.
    sources_changed: Option<String>,
    /// Where a plain `COPY . <dir>` put the whole build context, as long as no COPY or ADD after
    /// it wrote over it: a file there is the context's own, which a later stage's `COPY --from`
    /// can read from the context instead.
    whole_context: Option<String>,
}

impl Default for StageEnd {
    fn default() -> StageEnd {
        StageEnd { env: Vec::new(), workdir: "/".into(), context_root: None, dirs: Vec::new(), sources_changed: None, whole_context: None }
    }
}

/// The cargo build of one stage, starting from what its base stage left (`start`): `None` when
/// no RUN line runs cargo; an error (`line: why`) when one does more than the xtask reproduces.
/// `scopes` are the variables each command sees.
fn stage_build(
    stage: &Stage,
    lex: &shell::Lex,
    scopes: &[Scope],
    platform: &str,
    start: StageEnd,
) -> (Result<Option<CargoBuild>, String>, StageEnd) {
    let mut end = start;
    let build = stage_build_from(stage, lex, scopes, platform, &mut end);
    (build, end)
}

fn stage_build_from(
    stage: &Stage,
    lex: &shell::Lex,
    scopes: &[Scope],
    platform: &str,
    end: &mut StageEnd,
) -> Result<Option<CargoBuild>, String> {
    let mut build: Option<CargoBuild> = None;
    for (command, scope) in stage.commands.iter().zip(scopes) {
        let line = command.location.start_line;
        let lookup = lookup_in(scope);
        match &command.instruction {
            Instruction::Workdir { path } => {
                let path = lex.process_word(path, &lookup).map_err(|err| format!("{line}: {}", err.0))?;
                end.workdir = workdir_after(&end.workdir, &path);
                end.dirs.push(end.workdir.clone());
            }
            Instruction::Env { pairs } => {
                if let Some((key, value)) =
                    pairs.iter().find(|(key, value)| changes_the_build(key, &lex.process_word(value, &lookup).unwrap_or_default()))
                {
                    if runs_cargo(stage) {
                        return Err(format!("{line}: ENV {key}={value} changes what cargo builds"));
                    }
                }
                for (key, value) in pairs {
                    end.env.push((key.clone(), Some(lex.process_word(value, &lookup).unwrap_or_default())));
                }
            }
            Instruction::Copy(copy) if copy.from.is_none() && copy.sources.iter().any(|source| matches!(source.as_str(), "." | "./")) => {
                let dest = lex.process_word(&copy.dest, &lookup).unwrap_or_default();
                end.context_root = Some(super::normalize(&end.workdir, &dest));
                // Files keep the context's owner and mode only when the COPY sets neither.
                let plain = copy.sources.len() == 1
                    && copy.chown.is_empty()
                    && copy.chmod.is_empty()
                    && copy.excludes.is_empty()
                    && !copy.parents
                    && copy.contents.is_empty();
                end.whole_context = plain.then(|| end.context_root.clone()).flatten();
            }
            Instruction::Copy(copy)
                if copy.from.is_none() && copy.sources.iter().any(|source| matches!(source.as_str(), "Cargo.toml" | "./Cargo.toml")) =>
            {
                end.whole_context = None;
                // Into a directory (`./`, `.`, or with other sources), or as a file named so.
                let dest = lex.process_word(&copy.dest, &lookup).unwrap_or_default();
                let dest = super::normalize(&end.workdir, &dest);
                let into_dir = copy.sources.len() > 1 || copy.dest.ends_with('/') || matches!(copy.dest.as_str(), "." | "./");
                let root = if into_dir {
                    Some(dest)
                } else {
                    dest.strip_suffix("/Cargo.toml").map(|dir| if dir.is_empty() { "/".to_string() } else { dir.to_string() })
                };
                if let Some(root) = root {
                    end.context_root = Some(root);
                }
            }
            Instruction::Copy(_) | Instruction::Add(_) => end.whole_context = None,
            Instruction::Run(run) => {
                let written = run.cmd_line.join(" ");
                let commands = if run.prepend_shell {
                    if !run.files.is_empty() {
                        if mentions_cargo_build(&written) {
                            return Err(format!("{line}: a RUN heredoc that runs cargo"));
                        }
                        continue;
                    }
                    run_line::commands(lex, &written, &lookup).map_err(|why| format!("{line}: {why}"))?
                } else {
                    vec![run.cmd_line.clone()]
                };
                let runs_cargo = commands.iter().any(|words| program(words).is_some_and(|(name, _)| name == "cargo"));
                if !runs_cargo && build.is_none() {
                    if mentions_cargo_build(&written) {
                        return Err(format!("{line}: cargo runs through a script the xtask cannot read"));
                    }
                    if end.sources_changed.is_none() {
                        end.sources_changed =
                            commands.iter().find_map(|words| may_change_sources(words, end)).map(|why| format!("{line}: {why}"));
                    }
                    let workdir = end.workdir.clone();
                    for words in &commands {
                        forget_context_if_written(end, words, &workdir);
                    }
                    continue;
                }
                // `cd` and `export` hold to the end of the RUN line.
                let mut cwd = end.workdir.clone();
                let mut target_dir = lookup("CARGO_TARGET_DIR");
                // Where `cargo install` puts binaries: CARGO_INSTALL_ROOT, else CARGO_HOME.
                let (mut install_root, mut cargo_home) = (lookup("CARGO_INSTALL_ROOT"), lookup("CARGO_HOME"));
                let mut profile_assignments: Vec<(String, String)> = Vec::new();
                // What `export` put into the environment of the commands after it.
                let mut exported_env: Vec<(String, String)> = Vec::new();
                let mut rustflags = lookup("CARGO_ENCODED_RUSTFLAGS")
                    .map(|encoded| encoded.split('\x1f').map(str::to_string).collect::<Vec<_>>())
                    .or_else(|| lookup("RUSTFLAGS").map(|text| text.split_whitespace().map(str::to_string).collect()));
                for words in &commands {
                    let Some((name, args)) = program(words) else { continue };
                    if name != "cargo" {
                        forget_context_if_written(end, words, &cwd);
                    }
                    let assignments = words.iter().take_while(|word| is_assignment(word));
                    let exported = args.iter().filter(|word| name == "export" && is_assignment(word));
                    for (key, value) in exported.clone().filter_map(|word| word.split_once('=')) {
                        exported_env.retain(|(known, _)| known != key);
                        exported_env.push((key.to_string(), value.to_string()));
                    }
                    for (key, value) in assignments.chain(exported).filter_map(|word| word.split_once('=')) {
                        let followed =
                            matches!(key, "CARGO_TARGET_DIR" | "CARGO_INSTALL_ROOT" | "CARGO_HOME") || key.starts_with("CARGO_PROFILE_");
                        if let Some(name) = run_line::unknown_in(value).filter(|_| followed) {
                            return Err(format!("{line}: {key} is set from `${name}`, {UNKNOWN_VALUE}"));
                        }
                        if changes_the_build(key, value) {
                            return Err(format!("{line}: {key}={value} changes what cargo builds"));
                        }
                        match key {
                            "CARGO_TARGET_DIR" => target_dir = Some(value.to_string()),
                            "CARGO_INSTALL_ROOT" => install_root = Some(value.to_string()),
                            "CARGO_HOME" => cargo_home = Some(value.to_string()),
                            "RUSTFLAGS" => rustflags = Some(value.split_whitespace().map(str::to_string).collect()),
                            _ if key.starts_with("CARGO_PROFILE_") => profile_assignments.push((key.to_string(), value.to_string())),
                            _ => {}
                        }
                    }
                    match name {
                        "export" => {}
                        "cd" => {
                            let dir = args.first().map_or("/root", String::as_str);
                            if let Some(name) = run_line::unknown_in(dir) {
                                return Err(format!("{line}: `cd` reads `${name}`, {UNKNOWN_VALUE}"));
                            }
                            cwd = workdir_after(&cwd, dir);
                        }
                        "cargo" => {
                            if let Some(name) = args.iter().find_map(|arg| run_line::unknown_in(arg)) {
                                return Err(format!("{line}: cargo reads `${name}`, {UNKNOWN_VALUE}"));
                            }
                            if let Some(arg) = args.iter().find(|arg| arg.contains("$(") || arg.contains('`')) {
                                return Err(format!(
                                    "{line}: cargo's argument `{arg}` is a command substitution's output, which the xtask does not know"
                                ));
                            }
                            // cargo-strip strips the binaries of the target directory, which the
                            // profile's strip setting does in the link.
                            if let (Some(build), ["strip"]) =
                                (build.as_mut(), args.iter().map(String::as_str).collect::<Vec<_>>().as_slice())
                            {
                                build.options.strip = Some("symbols".into());
                                continue;
                            }
                            let places = Places {
                                cwd: &cwd,
                                target_dir: target_dir.as_deref(),
                                context_root: end.context_root.as_deref(),
                                install_root: install_root.as_deref().or(cargo_home.as_deref()),
                            };
                            let found = parse_cargo(args, &places);
                            let Some(mut found) = found.map_err(|why| format!("{line}: {why}"))? else { continue };
                            if let Some(why) = &end.sources_changed {
                                return Err(why.clone());
                            }
                            found.options.rustflags =
                                build_rustflags(rustflags.as_deref().unwrap_or_default()).map_err(|why| format!("{line}: {why}"))?;
                            // The flags that choose the linker are gone: the xtask chooses it.
                            if let Some(name) = found.options.rustflags.iter().find_map(|flag| run_line::unknown_in(flag)) {
                                return Err(format!("{line}: RUSTFLAGS reads `${name}`, {UNKNOWN_VALUE}"));
                            }
                            let profile_vars = scope
                                .iter()
                                .filter_map(|(key, value)| Some((key.clone(), value.clone()?)))
                                .chain(profile_assignments.iter().cloned());
                            let mut profile_env: Vec<(String, String)> = Vec::new();
                            for (key, value) in profile_vars.filter(|(key, _)| key.starts_with("CARGO_PROFILE_")) {
                                profile_env.retain(|(known, _)| *known != key);
                                profile_env.push((key, value));
                            }
                            profile_env.sort();
                            found.options.profile_env = profile_env;
                            // cargo's environment: the stage's ARGs and ENVs, what the line
                            // exported, and the assignments that lead the command.
                            let leading = words.iter().take_while(|word| is_assignment(word)).filter_map(|word| word.split_once('='));
                            let mut env: BTreeMap<String, String> = BTreeMap::new();
                            let stage_env = scope.iter().filter_map(|(key, value)| Some((key.clone(), value.clone()?)));
                            for (key, value) in stage_env
                                .chain(exported_env.iter().cloned())
                                .chain(leading.map(|(key, value)| (key.to_string(), value.to_string())))
                            {
                                env.insert(key, value);
                            }
                            if let Some((key, name)) = env
                                .iter()
                                .find_map(|(key, value)| Some((key, run_line::unknown_in(value)?)))
                                .filter(|(key, _)| carried_name(key))
                            {
                                return Err(format!("{line}: {key} is set from `${name}`, {UNKNOWN_VALUE}"));
                            }
                            found.options.env = env.into_iter().filter(|(key, value)| carried_to_the_build(key, value)).collect();
                            if let Some(triple) = found.triple.as_deref().filter(|triple| !builds_for(triple, platform)) {
                                return Err(format!(
                                    "{line}: `cargo build --target {triple}` builds for another architecture than the image's ({platform})"
                                ));
                            }
                            build = Some(match build.take() {
                                None => found,
                                // A build of the same package with the same options again (the
                                // dependencies first, against a stub `main.rs`, then the app)
                                // leaves the binaries of both.
                                Some(mut earlier)
                                    if earlier.package == found.package
                                        && earlier.options == found.options
                                        && earlier.out_dir == found.out_dir =>
                                {
                                    if earlier.bins.is_empty() || found.bins.is_empty() {
                                        earlier.bins.clear();
                                    } else {
                                        earlier.bins.extend(found.bins);
                                    }
                                    earlier
                                }
                                Some(_) => {
                                    return Err(format!(
                                        "{line}: a second cargo build in the stage, of another package or with other options"
                                    ))
                                }
                            });
                        }
                        // Before the build, as on a RUN line of its own.
                        _ if build.is_none() => {
                            if end.sources_changed.is_none() {
                                end.sources_changed = may_change_sources(words, end).map(|why| format!("{line}: {why}"));
                            }
                        }
                        _ => {
                            let build = build.as_mut().expect("after the build");
                            after_build(build, name, args, &cwd, &end.dirs).map_err(|why| format!("{line}: {why}"))?;
                            if name == "mkdir" {
                                end.dirs.extend(args.iter().filter(|arg| !arg.starts_with('-')).map(|arg| super::normalize(&cwd, arg)));
                            }
                        }
                    }
                }
            }
            _ => {}
        }
    }
    Ok(build)
}

/// The flags of a builder stage's `RUSTFLAGS` that the xtask's build takes: all but those that
/// choose the linker (`-C linker=clang`, `-C link-arg=-fuse-ld=mold`), which the xtask chooses for
/// each target; `-C target-cpu=native` names the machine that builds, which is no target.
pub fn build_rustflags(flags: &[String]) -> Result<Vec<String>, String> {
    let mut kept = Vec::new();
    let mut words = flags.iter().filter(|flag| !flag.is_empty());
    while let Some(flag) = words.next() {
        // `-C opt` and `-Copt` are one codegen option.
        let option = match flag.as_str() {
            "-C" | "--codegen" => format!("-C{}", words.next().map(String::as_str).unwrap_or_default()),
            _ => flag.clone(),
        };
        let codegen = option.strip_prefix("-C").unwrap_or_default();
        if codegen.starts_with("linker=") || codegen.starts_with("link-arg=-fuse-ld=") || codegen.starts_with("linker-flavor=") {
            continue;
        }
        if codegen == "target-cpu=native" {
            return Err("RUSTFLAGS with -C target-cpu=native builds for the machine that builds, not for the image's platform".into());
        }
        kept.push(option);
    }
    Ok(kept)
}

/// A simple command's program (by its name, when run by its absolute path, as an installed
/// program is) and arguments, after the variable assignments that lead it. `mold -run COMMAND`
/// is COMMAND: mold only links it, and the xtask chooses each target's linker itself.
fn program(words: &[String]) -> Option<(&str, &[String])> {
    let at = words.iter().position(|word| !is_assignment(word))?;
    let word = words[at].as_str();
    let name = if word.starts_with('/') { word.rsplit('/').next().unwrap_or_default() } else { word };
    let args = &words[at + 1..];
    match (name, args.first().map(String::as_str)) {
        ("mold", Some("-run")) => program(&args[1..]),
        _ => Some((name, args)),
    }
}

/// Whether a Rust target triple builds for `platform`'s architecture (`linux/arm64`).
fn builds_for(triple: &str, platform: &str) -> bool {
    let architecture = platform.split('/').nth(1).unwrap_or_default();
    let arch = triple.split('-').next().unwrap_or_default();
    match architecture {
        "amd64" => arch == "x86_64",
        "arm64" => arch == "aarch64",
        "arm" => arch.starts_with("armv7") || arch == "thumbv7neon",
        "riscv64" => arch.starts_with("riscv64"),
        "386" => matches!(arch, "i686" | "i586"),
        "ppc64le" => arch == "powerpc64le",
        "s390x" => arch == "s390x",
        _ => false,
    }
}

/// The directories a binary copied into under its own name (`cp app /usr/local/bin`) surely
/// is: the standard ones; the stage's WORKDIRs and `mkdir`s are added as they come.
const STANDARD_DIRS: [&str; 14] = [
    "/",
    "/bin",
    "/sbin",
    "/usr",
    "/usr/bin",
    "/usr/sbin",
    "/usr/local",
    "/usr/local/bin",
    "/usr/local/sbin",
    "/usr/local/cargo/bin",
    "/opt",
    "/tmp",
    "/root",
    "/srv",
];

/// A command after the stage's cargo build: copies and moves of the binaries are followed, so
/// that a later `COPY --from` of where they went reads the staged binary; commands that cannot
/// change a binary are let through; anything else may change it, and keeps the Dockerfile whole.
fn after_build(build: &mut CargoBuild, name: &str, args: &[String], cwd: &str, dirs: &[String]) -> Result<(), String> {
    let is_binary = |build: &CargoBuild, arg: &str| build.binary_at(&super::normalize(cwd, arg)).is_some();
    match name {
        "cp" | "mv" | "install" => {
            let mut target_directory: Option<String> = None;
            let mut no_target_directory = false;
            let mut paths: Vec<&String> = Vec::new();
            let mut words = args.iter();
            while let Some(word) = words.next() {
                match word.as_str() {
                    "-t" => target_directory = words.next().cloned(),
                    "-T" | "--no-target-directory" => no_target_directory = true,
                    "-s" | "--strip" if name == "install" => build.options.strip = Some("symbols".into()),
                    "-m" | "--mode" | "-o" | "--owner" | "-g" | "--group" | "-S" | "--suffix" if name == "install" => {
                        let value = words.next().map(String::as_str).unwrap_or_default();
                        if matches!(word.as_str(), "-m" | "--mode") && !grants_execution(value) {
                            return Err(format!("`install -m {value}` gives the binary another mode than the staged one's (0755)"));
                        }
                    }
                    option if option.starts_with("--target-directory=") => {
                        target_directory = option.split_once('=').map(|(_, dir)| dir.to_string())
                    }
                    option if option.starts_with('-') => {}
                    _ => paths.push(word),
                }
            }
            let (sources, destination): (&[&String], String) = match target_directory {
                Some(dir) => (&paths, dir),
                None => match paths.split_last() {
                    Some((destination, sources)) => (sources, destination.to_string()),
                    None => return Ok(()),
                },
            };
            let into = super::normalize(cwd, &destination);
            let is_dir = !no_target_directory
                && (destination.ends_with('/')
                    || sources.len() > 1
                    || STANDARD_DIRS.contains(&into.as_str())
                    || dirs.iter().any(|dir| *dir == into || dir.starts_with(&format!("{into}/"))));
            for source in sources {
                let file_name = source.trim_end_matches('/').rsplit('/').next().unwrap_or(source).to_string();
                let path = super::normalize(cwd, source);
                // `mv target/release/ss* /usr/bin/`: each binary the pattern names goes there.
                if crate::image::fstree::has_wildcard(&file_name) {
                    if is_dir && path.rsplit_once('/').is_some_and(|(dir, _)| dir == build.out_dir) {
                        build.copies.push((format!("{}/{file_name}", into.trim_end_matches('/')), String::new()));
                    }
                    continue;
                }
                let Some(bin) = build.binary_at(&path) else { continue };
                let as_dir = (format!("{}/{file_name}", into.trim_end_matches('/')), bin.clone());
                match is_dir {
                    true => build.copies.push(as_dir),
                    // A destination that may or may not be a directory of the base image.
                    false if no_target_directory => build.copies.push((into.clone(), bin)),
                    false => build.copies.extend([(into.clone(), bin), as_dir]),
                }
            }
            Ok(())
        }
        "chmod" => match args.iter().find(|arg| !arg.starts_with('-')) {
            Some(mode) if !grants_execution(mode) && args.iter().any(|arg| is_binary(build, arg)) => {
                Err(format!("`chmod {mode}` gives the binary another mode than the staged one's (0755)"))
            }
            _ => Ok(()),
        },
        "mkdir" | "ls" | "echo" | "true" | "rm" | "du" | "file" | "ldd" | "sha256sum" | "apt-get" | "apk" | "rustup" | "sccache" => Ok(()),
        // What `strip` takes out, the profile's `strip` setting takes out in the link.
        "strip" | "llvm-strip" if args.iter().all(|arg| arg.starts_with('-') || is_binary(build, arg)) => {
            const DEBUG_ONLY: [&str; 4] = ["-g", "-S", "-d", "--strip-debug"];
            const ALL: [&str; 5] = ["-s", "--strip-all", "--strip-unneeded", "-x", "--discard-all"];
            let options: Vec<&str> = args.iter().map(String::as_str).filter(|arg| arg.starts_with('-')).collect();
            if let Some(other) = options.iter().find(|option| !DEBUG_ONLY.contains(option) && !ALL.contains(option)) {
                return Err(format!("`{name} {other}` changes the binary in a way the profile's strip setting does not"));
            }
            let debug_only = options.iter().any(|option| DEBUG_ONLY.contains(option));
            build.options.strip = Some(if debug_only { "debuginfo" } else { "symbols" }.to_string());
            Ok(())
        }
        "strip" | "llvm-strip" | "objcopy" | "upx" if args.iter().any(|arg| is_binary(build, arg)) => {
            Err(format!("`{name}` changes the binary cargo built in a way the xtask does not"))
        }
        other => Err(format!("`{other}` runs after cargo build, and may change the binary")),
    }
}

/// The program of a command run before the build that may make or change files cargo reads
/// (web assets it embeds, generated code, a patched manifest): once the sources are in the stage
/// (`StageEnd::context_root`), any but those that install tools and system packages, make users
/// and directories, only read, or set the environment (`. "$HOME/.cargo/env"`). The xtask builds
/// from the work tree, which holds none of what such a command made.
fn may_change_sources(words: &[String], end: &StageEnd) -> Option<String> {
    // Commands that touch only the paths they are given: harmless when those all lie outside the
    // sources (`rm -rf /var/lib/apt/lists/*`).
    const FILE_TOOLS: &str = "rm cp mv tar unzip touch install";
    let (name, args) = program(words)?;
    let root = end.context_root.as_deref()?;
    let outside_sources = |arg: &String| arg.starts_with('/') && !lies_within(&super::normalize("/", arg), root);
    let only_outside = listed(FILE_TOOLS, name) && args.iter().filter(|arg| !arg.starts_with('-')).all(outside_sources);
    (!listed(WRITE_NOTHING_THERE, name) && !listed(PREPARE_THE_MACHINE, name) && !only_outside).then(|| {
        format!("`{name}` runs before cargo build on the copied sources, and may make or change files the build reads, which the xtask's build from the work tree would not have")
    })
}

/// Forgets where the whole build context is in the stage (`StageEnd::whole_context`) once a
/// command run in `cwd` may write there: one that redirects its output, or any but those that
/// only read or change the environment and the system, run there or naming a path there. The
/// files there may then no longer be the context's.
fn forget_context_if_written(end: &mut StageEnd, words: &[String], cwd: &str) {
    let Some(root) = end.whole_context.as_deref() else { return };
    let Some((name, args)) = program(words) else { return };
    let redirects = words.iter().any(|word| word.contains('>'));
    let names_it =
        lies_within(cwd, root) || args.iter().filter(|arg| !arg.starts_with('-')).any(|arg| lies_within(&super::normalize(cwd, arg), root));
    if redirects || (names_it && !listed(WRITE_NOTHING_THERE, name)) {
        end.whole_context = None;
    }
}

/// Commands that write nothing into a stage's sources: they read, set the environment, or change
/// the system (its packages, users, certificates).
const WRITE_NOTHING_THERE: &str = "cd export set . source echo printf ls cat du test [ true which command env id uname pwd \
    sccache apt-get apt apk yum dnf microdnf tdnf zypper pacman dpkg rustup rustc update-ca-certificates ldconfig \
    locale-gen useradd adduser groupadd addgroup usermod gpg apt-key";

/// Commands that, before the build, prepare the machine: install tools where tools go, make
/// directories and links.
const PREPARE_THE_MACHINE: &str = "pip pip3 pipx cargo-binstall curl wget update-alternatives mkdir chmod chown ln";

/// Whether the program `name` is in `list` (names split by whitespace).
fn listed(list: &str, name: &str) -> bool {
    list.split_whitespace().any(|listed| listed == name)
}

/// Whether `path` (absolute, normalised) is directory `root` or lies under it.
fn lies_within(path: &str, root: &str) -> bool {
    let root = root.trim_end_matches('/');
    root.is_empty() || path == root || path.starts_with(&format!("{root}/"))
}

/// Whether a mode (`chmod`'s, `install -m`'s) leaves the binary as the staged one is: 0755.
fn grants_execution(mode: &str) -> bool {
    matches!(mode, "+x" | "a+x" | "u+x" | "ugo+x" | "755" | "0755" | "u+x,g+x,o+x")
}

/// The variables of a builder stage that describe the container it runs in.
const CONTAINER: [&str; 14] = [
    "PATH",
    "HOME",
    "USER",
    "SHELL",
    "TERM",
    "HOSTNAME",
    "PWD",
    "TZ",
    "LANG",
    "LANGUAGE",
    "DEBIAN_FRONTEND",
    "RUST_LOG",
    "RUST_BACKTRACE",
    "RUST_VERSION",
];
/// What the names of the variables for cargo, rustc, the C toolchain and pkg-config start with.
const PREFIXES: [&str; 16] = [
    "CARGO",
    "RUSTC",
    "RUSTUP",
    "RUSTDOC",
    "RUSTFLAGS",
    "LC_",
    "CC",
    "CXX",
    "AR",
    "CFLAGS",
    "CXXFLAGS",
    "CPPFLAGS",
    "LDFLAGS",
    "LD_",
    "PKG_CONFIG",
    "SCCACHE",
];
/// The platform's automatic build arguments.
const PLATFORM: [&str; 8] =
    ["TARGETPLATFORM", "TARGETOS", "TARGETARCH", "TARGETVARIANT", "BUILDPLATFORM", "BUILDOS", "BUILDARCH", "BUILDVARIANT"];

/// Whether a variable of cargo's environment in the builder stage is given to the xtask's build
/// too: what build scripts and macros may read (`SQLX_OFFLINE=true`, a version for `vergen`). Not
/// what describes the container (`PATH`, `HOME`, locale, a path inside it), the C toolchain and
/// pkg-config (the xtask chooses them per target), what cargo and rustc read themselves (followed
/// where it matters), or the platform's automatic build arguments (the xtask builds per platform);
/// nor an empty value, which a build script takes for unset.
fn carried_to_the_build(key: &str, value: &str) -> bool {
    !value.is_empty() && !value.starts_with('/') && carried_name(key)
}

/// Whether a variable of that name is given to the xtask's build when its value is (see
/// `carried_to_the_build`).
fn carried_name(key: &str) -> bool {
    !CONTAINER.contains(&key) && !PLATFORM.contains(&key) && !PREFIXES.iter().any(|prefix| key.starts_with(prefix))
}

/// Whether setting `key` to `value` in the builder stage changes the binaries cargo makes in a
/// way the xtask does not follow: profiles set by variables, the build target, another compiler. Where cargo keeps its files,
/// how many jobs it runs, how it talks, the linkers of cross builds (the xtask links with its
/// own) and sccache, a compile cache, do not.
fn changes_the_build(key: &str, value: &str) -> bool {
    // RUSTFLAGS, CARGO_ENCODED_RUSTFLAGS and CARGO_PROFILE_* are read where cargo runs
    // (`build_rustflags`, `CargoOptions::profile_env`).
    const CHANGING: [&str; 6] =
        ["CARGO_BUILD_RUSTFLAGS", "CARGO_BUILD_TARGET", "CARGO_BUILD_RUSTC", "CARGO_UNSTABLE_", "RUSTC", "CARGO_BUILD_RUSTC_WRAPPER"];
    let target_rustflags = key.starts_with("CARGO_TARGET_") && key.ends_with("_RUSTFLAGS");
    let wrapper = matches!(key, "RUSTC_WRAPPER" | "CARGO_BUILD_RUSTC_WRAPPER" | "RUSTC_WORKSPACE_WRAPPER");
    if wrapper {
        return !(value.is_empty() || value.contains("sccache"));
    }
    target_rustflags || CHANGING.iter().any(|changing| if changing.ends_with('_') { key.starts_with(changing) } else { key == *changing })
}

fn runs_cargo(stage: &Stage) -> bool {
    stage
        .commands
        .iter()
        .any(|command| matches!(&command.instruction, Instruction::Run(run) if mentions_cargo_build(&run.cmd_line.join(" "))))
}

/// Why a value the build reads keeps the Dockerfile when it comes from `run_line`'s unknowns.
const UNKNOWN_VALUE: &str = "whose value the RUN line sets by a command substitution (`$(...)`) or in a branch the xtask cannot follow";

/// Whether `text` has the words of a cargo command that builds (`cargo build`, `xx-cargo
/// build`, not an apk package list's `cargo build-base`).
fn mentions_cargo_build(text: &str) -> bool {
    let words: Vec<&str> = text.split_whitespace().collect();
    let cargo = |word: &str| word == "cargo" || word.ends_with("-cargo") || word.ends_with("/cargo");
    words.windows(2).any(|pair| cargo(pair[0]) && matches!(pair[1], "build" | "install" | "zigbuild"))
        || words.windows(3).any(|triple| cargo(triple[0]) && triple[1..] == ["auditable", "build"])
}

/// Where a cargo command of a RUN line runs and puts things.
struct Places<'a> {
    /// Its working directory.
    cwd: &'a str,
    /// The `CARGO_TARGET_DIR` it sees.
    target_dir: Option<&'a str>,
    /// Where the stage copied the build context: the workspace's root.
    context_root: Option<&'a str>,
    /// Where `cargo install` puts `bin/`: `CARGO_INSTALL_ROOT`, else `CARGO_HOME`.
    install_root: Option<&'a str>,
}

/// The `CARGO_HOME` of the official `rust` image, which nearly every Rust Dockerfile's builder
/// starts from, for a `cargo install` whose stage sets none. A guess that cannot go wrong: a
/// COPY that reads the binary elsewhere keeps the Dockerfile.
const RUST_IMAGE_CARGO_HOME: &str = "/usr/local/cargo";

/// cargo's arguments in a RUN line: the build the xtask reproduces (`cargo build`, or `cargo
/// install --path` of a workspace package, whose binaries land in `<root>/bin`); `None` for
/// cargo commands that build nothing the image gets (`cargo chef cook`, `cargo fetch`,
/// installing a tool); or why not.
fn parse_cargo(args: &[String], places: &Places<'_>) -> Result<Option<CargoBuild>, String> {
    let (cwd, context_root) = (places.cwd, places.context_root);
    let mut args = args.iter().peekable();
    let mut subcommand = args.next().map(String::as_str).unwrap_or_default();
    // cargo-auditable embeds the dependency list, as the xtask's build does.
    if subcommand == "auditable" && args.peek().is_some_and(|next| matches!(next.as_str(), "build" | "zigbuild" | "install")) {
        subcommand = args.next().map(String::as_str).unwrap_or_default();
    }
    let installs = subcommand == "install";
    let command = if installs { "cargo install" } else { "cargo build" };
    match subcommand {
        // cargo-zigbuild links with zig, as the xtask's build does.
        "build" | "b" | "zigbuild" => {}
        // The app, from the build context; the binaries it copies name the package.
        "install" if args.clone().any(|arg| arg == "--path" || arg.starts_with("--path=")) => {}
        "update" => return Err("`cargo update` changes the lockfile the build resolves".into()),
        // Installing a tool, preparing or checking: no binary of the image.
        "chef" | "fetch" | "install" | "binstall" | "new" | "init" | "clean" | "vendor" | "generate-lockfile" | "metadata" | "tree"
        | "test" | "check" | "clippy" | "fmt" | "doc" | "sweep" | "--version" | "-V" | "version" | "deny" | "audit" => return Ok(None),
        other => return Err(format!("`cargo {other}` is not a cargo build the xtask makes")),
    }
    let mut build = CargoBuild::default();
    let mut profile: Option<String> = None;
    let mut target_dir = places.target_dir.map(|dir| super::normalize(cwd, dir));
    let mut install_root = places.install_root.unwrap_or(RUST_IMAGE_CARGO_HOME).to_string();
    let mut manifest_dir = cwd.to_string();
    while let Some(arg) = args.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((flag, value)) if flag.starts_with("--") => (flag, Some(value.to_string())),
            _ => (arg.as_str(), None),
        };
        let mut value = || {
            let value = inline
                .clone()
                .or_else(|| args.next().cloned())
                .ok_or_else(|| format!("`{command} {flag}` is given no value (an ARG it names without a value?)"))?;
            // Only an empty list of features means something to cargo.
            if value.is_empty() && !matches!(flag, "--features" | "-F") {
                return Err(format!(
                    "`{command} {flag}` is given an empty value (an ARG without a value, or a variable the RUN line does not set for this platform)"
                ));
            }
            Ok(value)
        };
        match flag {
            "--release" | "-r" => profile = Some("release".into()),
            "--path" if installs => {
                value()?;
            }
            "--root" if installs => install_root = value()?,
            "--debug" if installs => profile = Some("dev".into()),
            "--force" | "-f" | "--no-track" if installs => {}
            "--locked" | "--frozen" | "--offline" | "-q" | "--quiet" | "-v" | "-vv" | "--verbose" | "--bins" | "--workspace" | "--all" => {}
            "-j" | "--jobs" | "--color" | "--message-format" => {
                value()?;
            }
            "-p" | "--package" => build.package = Some(value()?),
            "--bin" => build.bins.push(value()?),
            "--target-dir" => target_dir = Some(super::normalize(cwd, &value()?)),
            // cargo-zigbuild's glibc version suffix (`x86_64-unknown-linux-gnu.2.17`) is not
            // part of the target's directory.
            "--target" => build.triple = Some(value()?.split('.').next().unwrap_or_default().to_string()),
            "--profile" => profile = Some(value()?),
            "--manifest-path" => {
                let manifest = super::normalize(cwd, &value()?);
                manifest_dir =
                    manifest.rsplit_once('/').map_or("/".to_string(), |(dir, _)| if dir.is_empty() { "/".into() } else { dir.to_string() });
            }
            "-F" | "--features" => {
                // `dep/feat` turns on a feature of a dependency, as it does for cargo.
                for feature in value()?.split([',', ' ']).filter(|feature| !feature.is_empty()) {
                    build.options.features.push(feature.to_string());
                }
            }
            "--no-default-features" => build.options.no_default_features = true,
            "--all-features" => build.options.all_features = true,
            _ => return Err(format!("`{command} {arg}` is an option the xtask does not reproduce")),
        }
    }
    build.options.features.sort();
    build.options.features.dedup();
    // `cargo install` builds with the release profile unless told otherwise.
    build.options.profile = profile.unwrap_or_else(|| if installs { "release" } else { "dev" }.into());
    // cargo's own target directory is at the workspace's root: where the build context went,
    // when the package is inside it.
    let within = |root: &&str| *root == manifest_dir || manifest_dir.starts_with(&format!("{}/", root.trim_end_matches('/')));
    let target_dir =
        target_dir.unwrap_or_else(|| format!("{}/target", context_root.filter(within).unwrap_or(&manifest_dir).trim_end_matches('/')));
    let profile_dir = build.options.profile_dir();
    build.out_dir = match &build.triple {
        _ if installs => format!("{}/bin", super::normalize(cwd, &install_root).trim_end_matches('/')),
        Some(triple) => format!("{target_dir}/{triple}/{profile_dir}"),
        None => format!("{target_dir}/{profile_dir}"),
    };
    Ok(Some(build))
}

#[cfg(test)]
mod tests {
    use expect_test::expect;

    use super::*;

    fn check(dockerfile: &str, expected: expect_test::Expect) {
        check_with(dockerfile, &[], expected)
    }

    fn check_with(dockerfile: &str, build_args: &[(&str, &str)], expected: expect_test::Expect) {
        let build_args: Vec<(String, String)> = build_args.iter().map(|(key, value)| (key.to_string(), value.to_string())).collect();
        let shown = match replace(dockerfile, "Dockerfile", &build_args, "linux/arm64").unwrap() {
            CargoStages::None => "none".to_string(),
            CargoStages::Kept(why) => format!("kept: {why}"),
            CargoStages::Replaced(replacement) => {
                assert_eq!(replacement.text.split('\n').count(), dockerfile.split('\n').count(), "every line keeps its number");
                let lines: Vec<&str> = replacement.text.lines().filter(|line| !line.is_empty()).collect();
                format!(
                    "package {:?}, bins {:?}, reads the context: {}\n{}\n---\n{}",
                    replacement.package,
                    replacement.bins,
                    replacement.reads_context,
                    replacement.why,
                    lines.join("\n")
                )
            }
        };
        expected.assert_eq(&shown);
    }

    #[test]
    fn a_builder_stage_gives_way_to_the_staged_binary() {
        check(
            r#"FROM rust:1.85 AS builder
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p gateway
FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y ca-certificates
COPY --from=builder /src/target/release/gateway /usr/local/bin/
ENTRYPOINT ["gateway"]"#,
            expect![[r#"
                package Some("gateway"), bins {"gateway"}, reads the context: false
                the builder stage `builder` (Dockerfile:1) runs cargo build, which the xtask cross-compiles instead
                ---
                FROM debian:bookworm-slim
                RUN apt-get update && apt-get install -y ca-certificates
                COPY linux/arm64/gateway /usr/local/bin/
                ENTRYPOINT ["gateway"]"#]],
        );
    }

    /// cargo-chef's recipe as its README writes it, up to the builder stage's own build.
    const CHEF: &str = "ARG RUST=1\nFROM lukemathwalker/cargo-chef:latest-rust-${RUST} AS chef\nWORKDIR /app\nFROM chef AS planner\nCOPY . .\nRUN cargo chef prepare --recipe-path recipe.json\nFROM chef AS builder\nCOPY --from=planner /app/recipe.json recipe.json\nRUN cargo chef cook --release --recipe-path recipe.json\nCOPY . .\n";

    #[test]
    fn cargo_chef_stages_go_with_the_builder() {
        check(
            &format!(
                "{CHEF}RUN cargo build --release --bin api --bin worker && cargo build --release -p x\nFROM gcr.io/distroless/cc-debian12\nCOPY --from=builder /app/target/release/api /app/target/release/worker /usr/local/bin/\n"
            ),
            expect!["kept: Dockerfile:11: a second cargo build in the stage, of another package or with other options"],
        );
        check(
            &format!(
                "{CHEF}RUN [\"cargo\", \"build\", \"--release\", \"--bin\", \"api\", \"--target-dir\", \"/out\"]\nFROM gcr.io/distroless/cc-debian12 AS runtime\nWORKDIR /app\nCOPY --from=builder --chmod=755 /out/release/api ./\nENTRYPOINT [\"/app/api\"]\n"
            ),
            expect![[r#"
                package None, bins {"api"}, reads the context: false
                the builder stage `builder` (Dockerfile:7) runs cargo build, which the xtask cross-compiles instead
                ---
                ARG RUST=1
                FROM gcr.io/distroless/cc-debian12 AS runtime
                WORKDIR /app
                COPY --chmod=755 linux/arm64/api ./
                ENTRYPOINT ["/app/api"]"#]],
        );
    }

    #[test]
    fn what_the_xtask_cannot_reproduce_keeps_the_dockerfile_whole() {
        let with =
            |builder: &str, runtime: &str| format!("FROM rust AS build\nWORKDIR /src\nCOPY . .\n{builder}\nFROM debian\n{runtime}\n");
        let copy = "COPY --from=build /src/target/release/app /app";
        check(
            &with("RUN cargo build --keep-going --release", copy),
            expect![[r#"kept: Dockerfile:4: `cargo build --keep-going` is an option the xtask does not reproduce"#]],
        );
        check(
            &with("RUN cargo build --release && strip --remove-section=.comment target/release/app", copy),
            expect![
                "kept: Dockerfile:4: `strip --remove-section=.comment` changes the binary in a way the profile's strip setting does not"
            ],
        );
        // A file the builder stage has from the context is read from the context, as long as
        // nothing may have written over it (pgcat's `COPY --from=builder /app/pgcat.toml`).
        check(
            &with("RUN cargo build --release", &format!("{copy}\nCOPY --from=build --chmod=644 /src/config.toml /src/static /etc/app/")),
            expect![[r#"
                package None, bins {"app"}, reads the context: true
                the builder stage `build` (Dockerfile:1) runs cargo build, which the xtask cross-compiles instead
                ---
                FROM debian
                COPY target/stage/linux/arm64/app /app
                COPY --chmod=644 config.toml static /etc/app/"#]],
        );
        check(
            &with("RUN cargo build --release && cp config.example.toml config.toml", &format!("{copy}\nCOPY --from=build /src/config.toml /etc/app.toml")),
            expect!["kept: Dockerfile:7: COPY --from=build /src/config.toml copies what is not a binary the stage's cargo build makes (/src/target/release/<bin>) nor a file of the build context it copied"],
        );
        check(
            &with("RUN cargo build --release", &format!("{copy}\nCOPY --from=build /src/target/release/app /src/config.toml /etc/app/")),
            expect!["kept: Dockerfile:7: COPY --from=build copies both binaries cargo built and files of the build context"],
        );
        check(
            "FROM rust AS build\nWORKDIR /src\nCOPY --chown=1000 . .\nRUN cargo build --release\nFROM debian\nCOPY --from=build /src/target/release/app /app\nCOPY --from=build /src/config.toml /etc/app.toml\n",
            expect!["kept: Dockerfile:7: COPY --from=build /src/config.toml copies what is not a binary the stage's cargo build makes (/src/target/release/<bin>) nor a file of the build context it copied"],
        );
        check(
            &with("RUN cargo build --release", "COPY --from=build /src/target/release/* /bin/"),
            expect!["kept: Dockerfile:6: COPY --from=build /src/target/release/* copies what is not a binary the stage's cargo build makes (/src/target/release/<bin>) nor a file of the build context it copied"],
        );
        check(
            &with("ENV RUSTFLAGS=-Ctarget-cpu=native\nRUN cargo build --release", copy),
            expect![
                "kept: Dockerfile:5: RUSTFLAGS with -C target-cpu=native builds for the machine that builds, not for the image's platform"
            ],
        );
        check(&with("RUN ./build.sh", copy), expect!["none"]);
        // What runs on the copied sources before the build may make files cargo reads (the web
        // assets a server embeds), which the work tree the xtask builds from does not hold.
        check(
            &with("RUN npm --prefix web ci && npm --prefix web run build\nRUN cargo build --release", copy),
            expect!["kept: Dockerfile:4: `npm` runs before cargo build on the copied sources, and may make or change files the build reads, which the xtask's build from the work tree would not have"],
        );
        check(
            &with("RUN sed -i '/\"benches\"/d' Cargo.toml && cargo build --release", copy),
            expect!["kept: Dockerfile:4: `sed` runs before cargo build on the copied sources, and may make or change files the build reads, which the xtask's build from the work tree would not have"],
        );
        // Before the sources are in, it only prepares the machine.
        check(
            "FROM rust AS build\nRUN npm install -g wasm-pack\nWORKDIR /src\nCOPY . .\nRUN cargo build --release\nFROM debian\nCOPY --from=build /src/target/release/app /app\n",
            expect![[r#"
                package None, bins {"app"}, reads the context: false
                the builder stage `build` (Dockerfile:1) runs cargo build, which the xtask cross-compiles instead
                ---
                FROM debian
                COPY linux/arm64/app /app"#]],
        );
        check(
            "FROM rust AS sources\nWORKDIR /src\nCOPY . .\nRUN make assets\nFROM sources AS build\nRUN cargo build --release\nFROM debian\nCOPY --from=build /src/target/release/app /app\n",
            expect!["kept: Dockerfile:4: `make` runs before cargo build on the copied sources, and may make or change files the build reads, which the xtask's build from the work tree would not have"],
        );
        check(
            &with("RUN cargo build --release", "COPY --from=build /src/target/release/app <<EOF /srv/\nnote\nEOF"),
            expect!["kept: Dockerfile:6: COPY --from=build with a heredoc writes more than the binaries"],
        );
        check(
            &with(
                "ENV CARGO_TARGET_DIR=/build CARGO_HOME=/cargo\nRUN cargo build -r --locked --bin app",
                "COPY config.toml /etc/app.toml\nCOPY --from=build /build/release/app /app",
            ),
            expect![[r#"
                package None, bins {"app"}, reads the context: true
                the builder stage `build` (Dockerfile:1) runs cargo build, which the xtask cross-compiles instead
                ---
                FROM debian
                COPY config.toml /etc/app.toml
                COPY target/stage/linux/arm64/app /app"#]],
        );
        check("FROM rust\nRUN cargo build --release\n", expect!["none"]);
        check(
            "FROM rust AS build\nRUN cargo build --release -p app\nFROM build AS test\nRUN cargo test\nFROM debian\nCOPY --from=build /target/release/app /app\n",
            expect![[r#"
                package Some("app"), bins {"app"}, reads the context: false
                the builder stage `build` (Dockerfile:1) runs cargo build, which the xtask cross-compiles instead
                ---
                FROM debian
                COPY linux/arm64/app /app"#]],
        );
    }

    #[test]
    fn cargo_install_of_a_workspace_package_is_its_build() {
        let with = |run: &str, copy: &str| {
            format!("FROM rust:1.85 AS builder\nWORKDIR /usr/src/app\nCOPY . .\n{run}\nFROM debian:bookworm-slim\n{copy}\n")
        };
        // The rust image's CARGO_HOME, --root, and CARGO_INSTALL_ROOT over CARGO_HOME.
        check(
            &with("RUN cargo install --path crates/api --locked", "COPY --from=builder /usr/local/cargo/bin/api /usr/local/bin/api"),
            expect![[r#"
                package None, bins {"api"}, reads the context: false
                the builder stage `builder` (Dockerfile:1) runs cargo build, which the xtask cross-compiles instead
                ---
                FROM debian:bookworm-slim
                COPY linux/arm64/api /usr/local/bin/api"#]],
        );
        check(
            &with("RUN cargo install --path . --root /usr/local --bin api", "COPY --from=builder /usr/local/bin/api /api"),
            expect![[r#"
                package None, bins {"api"}, reads the context: false
                the builder stage `builder` (Dockerfile:1) runs cargo build, which the xtask cross-compiles instead
                ---
                FROM debian:bookworm-slim
                COPY linux/arm64/api /api"#]],
        );
        check(
            &with(
                "ENV CARGO_HOME=/cargo\nRUN CARGO_INSTALL_ROOT=out cargo install --path crates/api",
                "COPY --from=builder /usr/src/app/out/bin/api /api",
            ),
            expect![[r#"
                package None, bins {"api"}, reads the context: false
                the builder stage `builder` (Dockerfile:1) runs cargo build, which the xtask cross-compiles instead
                ---
                FROM debian:bookworm-slim
                COPY linux/arm64/api /api"#]],
        );
        // A user's own CARGO_HOME the stage does not set: the COPY reads no cargo output.
        check(
            &with("RUN cargo install --path crates/api", "COPY --from=builder /root/.cargo/bin/api /api"),
            expect!["kept: Dockerfile:6: COPY --from=builder /root/.cargo/bin/api copies what is not a binary the stage's cargo build makes (/usr/local/cargo/bin/<bin>) nor a file of the build context it copied"],
        );
        check(
            &with("RUN cargo install --path crates/api --git https://example.com/x", "COPY --from=builder /usr/local/cargo/bin/api /api"),
            expect!["kept: Dockerfile:4: `cargo install --git` is an option the xtask does not reproduce"],
        );
        // Installed with the release profile, or dev with --debug.
        let options = |text: &str| match replace(text, "Dockerfile", &[], "linux/amd64").unwrap() {
            CargoStages::Replaced(replacement) => replacement.options.to_string(),
            other => format!("{other:?}"),
        };
        assert_eq!(
            options(&with("RUN cargo install --path crates/api -F tls", "COPY --from=builder /usr/local/cargo/bin/api /api")),
            "profile release, features tls"
        );
        assert_eq!(
            options(&with("RUN cargo install --debug --path crates/api", "COPY --from=builder /usr/local/cargo/bin/api /api")),
            "profile dev"
        );
        // Through cargo-auditable, which embeds the dependency list as the xtask's build does:
        // the app's install, and a tool's (neon's build tools), which is no binary of the image.
        assert_eq!(
            options(&with("RUN cargo auditable install --path crates/api --locked", "COPY --from=builder /usr/local/cargo/bin/api /api")),
            "profile release"
        );
        assert_eq!(
            options(&with(
                "RUN cargo auditable install cargo-hakari --locked && cargo auditable build --release",
                "COPY --from=builder /usr/src/app/target/release/api /api"
            )),
            "profile release"
        );
    }

    /// One Dockerfile for several images, the binary chosen by a build argument (PostHog's shape).
    const BY_ARG: &str = r#"FROM rust:1.85 AS builder
ARG BIN
WORKDIR /app
COPY . .
RUN cargo build --release --bin $BIN
FROM debian:bookworm-slim
ARG BIN
COPY --from=builder /app/target/release/${BIN} /usr/local/bin/$BIN
ENV ENTRYPOINT=/usr/local/bin/$BIN"#;

    #[test]
    fn a_build_argument_names_the_binary() {
        check_with(
            BY_ARG,
            &[("BIN", "capture")],
            expect![[r#"
                package None, bins {"capture"}, reads the context: false
                the builder stage `builder` (Dockerfile:1) runs cargo build, which the xtask cross-compiles instead
                ---
                FROM debian:bookworm-slim
                ARG BIN
                COPY linux/arm64/capture /usr/local/bin/$BIN
                ENV ENTRYPOINT=/usr/local/bin/$BIN"#]],
        );
        // Without the argument, cargo is given no binary to build.
        check(BY_ARG, expect!["kept: Dockerfile:5: `cargo build --bin` is given no value (an ARG it names without a value?)"]);
        // A meta ARG reaches a stage only where the stage declares it again, as in BuildKit.
        check_with(
            "ARG BIN=api\nFROM rust AS build\nRUN cargo build --release --bin $BIN\nFROM scratch\nCOPY --from=build /target/release/$BIN /\n",
            &[],
            expect!["kept: Dockerfile:3: `cargo build --bin` is given no value (an ARG it names without a value?)"],
        );
        check_with(
            "ARG BIN=api\nFROM rust AS build\nARG BIN\nRUN cargo build --release --bin $BIN\nFROM scratch\nARG BIN\nCOPY --from=build /target/release/$BIN /\n",
            &[],
            expect![[r#"
                package None, bins {"api"}, reads the context: false
                the builder stage `build` (Dockerfile:2) runs cargo build, which the xtask cross-compiles instead
                ---
                ARG BIN=api
                FROM scratch
                ARG BIN
                COPY linux/arm64/api /"#]],
        );
    }

    /// The shapes of real builder stages around the cargo build: a cache mount on the target
    /// directory with the binary copied out in the same RUN line, `cd` into the crate, a musl
    /// target, variables set for cargo alone.
    #[test]
    fn the_binary_is_followed_where_the_stage_copies_or_moves_it() {
        let with =
            |builder: &str, runtime: &str| format!("FROM rust AS build\nWORKDIR /src\nCOPY . .\n{builder}\nFROM debian\n{runtime}\n");
        check(
            &with(
                "RUN --mount=type=cache,target=/src/target --mount=type=cache,target=/usr/local/cargo/registry \\\n    cargo build --release --locked --bin api && cp target/release/api /usr/local/bin/",
                "COPY --from=build /usr/local/bin/api /api",
            ),
            expect![[r#"
                package None, bins {"api"}, reads the context: false
                the builder stage `build` (Dockerfile:1) runs cargo build, which the xtask cross-compiles instead
                ---
                FROM debian
                COPY linux/arm64/api /api"#]],
        );
        check(
            &with(
                "RUN cd crates/api && CARGO_TARGET_DIR=/out cargo build -r --target aarch64-unknown-linux-musl\nRUN mkdir -p /dist && mv /out/aarch64-unknown-linux-musl/release/api /dist && chmod +x /dist/api",
                "COPY --from=build /dist/api /usr/local/bin/api",
            ),
            expect![[r#"
                package None, bins {"api"}, reads the context: false
                the builder stage `build` (Dockerfile:1) runs cargo build, which the xtask cross-compiles instead
                ---
                FROM debian
                COPY linux/arm64/api /usr/local/bin/api"#]],
        );
        // shadowsocks': a pattern moves every binary it names, each under its own name; the
        // runtime stage copies two.
        check(
            &with(
                "RUN cargo build --release --target aarch64-unknown-linux-musl && mv target/aarch64-unknown-linux-musl/release/ss* target/release/",
                "COPY --from=build /src/target/release/sslocal /src/target/release/ssserver /usr/bin/",
            ),
            expect![[r#"
                package None, bins {"sslocal", "ssserver"}, reads the context: false
                the builder stage `build` (Dockerfile:1) runs cargo build, which the xtask cross-compiles instead
                ---
                FROM debian
                COPY linux/arm64/sslocal linux/arm64/ssserver /usr/bin/"#]],
        );
        // A file destination, and a COPY --from source relative to the stage's root.
        check(
            &with("RUN cargo build --release -p api\nRUN cp /src/target/release/api /server", "COPY --from=build server /srv/"),
            expect![[r#"
                package Some("api"), bins {"api"}, reads the context: false
                the builder stage `build` (Dockerfile:1) runs cargo build, which the xtask cross-compiles instead
                ---
                FROM debian
                COPY linux/arm64/api /srv/"#]],
        );
        let copy = "COPY --from=build /src/target/release/api /api";
        for (builder, expected) in [
            (
                "RUN cargo build --release --target x86_64-unknown-linux-musl",
                expect!["kept: Dockerfile:4: `cargo build --target x86_64-unknown-linux-musl` builds for another architecture than the image's (linux/arm64)"],
            ),
            ("RUN RUSTFLAGS=-Ctarget-cpu=native cargo build --release", expect!["kept: Dockerfile:4: RUSTFLAGS with -C target-cpu=native builds for the machine that builds, not for the image's platform"]),
            ("RUN export CARGO_BUILD_TARGET=x86_64-unknown-linux-gnu && cargo build --release", expect!["kept: Dockerfile:4: CARGO_BUILD_TARGET=x86_64-unknown-linux-gnu changes what cargo builds"]),
            ("RUN cargo build --release && ./package.sh", expect!["kept: Dockerfile:4: `./package.sh` runs after cargo build, and may change the binary"]),
            ("RUN cargo build --release\nRUN upx --best target/release/api", expect!["kept: Dockerfile:5: `upx` changes the binary cargo built in a way the xtask does not"]),
            (
                "RUN cargo build --release && install -m 700 target/release/api /usr/bin/",
                expect!["kept: Dockerfile:4: `install -m 700` gives the binary another mode than the staged one's (0755)"],
            ),
        ] {
            check(&with(builder, copy), expected);
        }
        // What was built for musl stays static.
        let CargoStages::Replaced(replacement) = replace(
            &with(
                "RUN cargo build --release --target aarch64-unknown-linux-musl",
                "COPY --from=build /src/target/aarch64-unknown-linux-musl/release/api /api",
            ),
            "Dockerfile",
            &[],
            "linux/arm64",
        )
        .unwrap() else {
            panic!("replaced")
        };
        assert!(replacement.musl);
    }

    /// The profile and features of the builder stage's cargo build are the xtask's build's.
    #[test]
    fn the_profile_and_features_of_the_build_are_read() {
        let options = |builder: &str, out_dir: &str| {
            let dockerfile =
                format!("FROM rust AS build\nWORKDIR /src\nCOPY . .\n{builder}\nFROM debian\nCOPY --from=build {out_dir}/app /app\n");
            match replace(&dockerfile, "Dockerfile", &[], "linux/arm64").unwrap() {
                CargoStages::Replaced(replacement) => replacement.options.to_string(),
                other => format!("{other:?}"),
            }
        };
        expect![[r#"
            profile release
            profile release, features metrics,tls
            profile dist, no default features
            profile dev, all features
            profile release, features a,b,c
            profile release, features serde/derive,tls
            profile release, GIT_SHA=abc1234, SQLX_OFFLINE=true, VERSION=1.2
            profile maxperf
            profile release, stripped of symbols"#]]
        .assert_eq(
            &[
                options("RUN cargo build --release", "/src/target/release"),
                options("RUN cargo build -r --features tls --features metrics", "/src/target/release"),
                options("RUN cargo build --profile=dist --no-default-features", "/src/target/dist"),
                options("RUN cargo build --all-features", "/src/target/debug"),
                options("RUN cargo build --release -F 'c b,a'", "/src/target/release"),
                // A dependency's feature, as cargo takes it.
                options("RUN cargo build --release --features tls,serde/derive", "/src/target/release"),
                // zero2prod's: what the build's macros and scripts read goes to the xtask's build;
                // the container's paths and the C toolchain do not.
                options(
                    "ENV SQLX_OFFLINE true\nENV PATH=/usr/local/cargo/bin:$PATH OPENSSL_DIR=/usr CC=clang\nRUN export GIT_SHA=abc1234 && VERSION=1.2 cargo build --release",
                    "/src/target/release",
                ),
                // reth's: an empty build argument, quoted, is no feature, and --locked a flag.
                options("ARG FEATURES=\"\"\nRUN cargo build --profile maxperf --features \"$FEATURES\" --locked", "/src/target/maxperf"),
                // komodo's: cargo-strip strips what the build made.
                options("RUN cargo build --release && cargo strip", "/src/target/release"),
            ]
            .join("\n"),
        );
        assert_eq!(
            CargoOptions {
                profile: "dist".into(),
                features: vec!["tls".into()],
                no_default_features: true,
                strip: Some("symbols".into()),
                ..CargoOptions::default()
            }
            .cargo_args(),
            ["--profile", "dist", "--features", "tls", "--no-default-features", "--config", "profile.dist.strip=\"symbols\""]
        );
    }

    /// A stage starts from what the stage it is FROM left: its WORKDIR, ENVs and where it put
    /// the build context, whose root holds cargo's target directory.
    #[test]
    fn a_builder_stage_starts_where_its_base_stage_left_off() {
        check(
            "FROM rust AS chef\nWORKDIR /app\nENV CARGO_HOME=/cargo RUSTFLAGS=\"--cfg tokio_unstable -C linker=clang -C link-arg=-fuse-ld=mold\"\nFROM chef AS builder\nCOPY . .\nRUN cargo build --release --bin api\nFROM debian\nCOPY --from=builder /app/target/release/api /api\n",
            expect![[r#"
                package None, bins {"api"}, reads the context: false
                the builder stage `builder` (Dockerfile:4) runs cargo build, which the xtask cross-compiles instead
                ---
                FROM debian
                COPY linux/arm64/api /api"#]],
        );
        // A stub build of the dependencies, then the app's; and a build from a crate's
        // directory, whose target directory is at the workspace's root.
        check(
            "FROM rust AS build\nWORKDIR /src\nCOPY Cargo.toml Cargo.lock ./\nRUN cargo new --bin api && cargo build --release --locked\nCOPY . .\nRUN cd crates/api && cargo build --release --locked --bin api\nFROM debian\nCOPY --from=build /src/target/release/api /api\n",
            expect![[r#"
                package None, bins {"api"}, reads the context: false
                the builder stage `build` (Dockerfile:1) runs cargo build, which the xtask cross-compiles instead
                ---
                FROM debian
                COPY linux/arm64/api /api"#]],
        );
        check(
            "FROM rust AS build\nWORKDIR /src\nCOPY . .\nRUN cargo build --release --manifest-path crates/api/Cargo.toml\nFROM debian\nCOPY --from=build /src/target/release/api /api\n",
            expect![[r#"
                package None, bins {"api"}, reads the context: false
                the builder stage `build` (Dockerfile:1) runs cargo build, which the xtask cross-compiles instead
                ---
                FROM debian
                COPY linux/arm64/api /api"#]],
        );
        let options = |dockerfile: &str| match replace(dockerfile, "Dockerfile", &[], "linux/arm64").unwrap() {
            CargoStages::Replaced(replacement) => replacement.options.to_string(),
            other => format!("{other:?}"),
        };
        // The workspace's root is also where the root manifest went, when the stage copies the
        // crates one by one (datafusion-ballista's and quiche's shapes).
        for (copies, build) in [
            ("COPY ./Cargo.toml /src/Cargo.toml\nCOPY ./crates/api /src/crates/api\nWORKDIR /src/crates/api", "RUN cargo build --release"),
            (
                "WORKDIR /src\nCOPY Cargo.toml Cargo.lock ./\nCOPY crates/ ./crates/",
                "RUN cargo build --release --manifest-path crates/api/Cargo.toml",
            ),
            ("WORKDIR /src\nCOPY Cargo.toml .\nCOPY crates crates", "RUN cd crates/api && cargo build --release"),
        ] {
            let dockerfile =
                format!("FROM rust AS build\n{copies}\n{build}\nFROM debian\nCOPY --from=build /src/target/release/api /api\n");
            assert_eq!(options(&dockerfile), "profile release", "{dockerfile}");
        }
        assert_eq!(
            options("FROM rust AS chef\nENV RUSTFLAGS=\"--cfg tokio_unstable -C linker=clang -Clink-arg=-fuse-ld=mold -C force-frame-pointers=yes\" RUSTC_WRAPPER=/usr/local/bin/sccache\nFROM chef AS build\nRUN cargo build -r && sccache --show-stats\nFROM debian\nCOPY --from=build /target/release/api /api\n"),
            "profile release, RUSTFLAGS --cfg tokio_unstable -Cforce-frame-pointers=yes"
        );
        // strip and profile variables become the profile's settings.
        assert_eq!(
            options("FROM rust AS build\nENV CARGO_PROFILE_RELEASE_LTO=true\nRUN CARGO_PROFILE_RELEASE_CODEGEN_UNITS=1 cargo build -r && strip target/release/api\nFROM debian\nCOPY --from=build /target/release/api /api\n"),
            "profile release, CARGO_PROFILE_RELEASE_CODEGEN_UNITS=1, CARGO_PROFILE_RELEASE_LTO=true, stripped of symbols"
        );
        assert_eq!(
            options("FROM rust AS build\nRUN cargo build -r && install -s -m 755 target/release/api /usr/local/bin/\nFROM debian\nCOPY --from=build /usr/local/bin/api /api\n"),
            "profile release, stripped of symbols"
        );
        assert_eq!(
            options("FROM rust AS build\nRUN cargo build -r && strip --strip-debug target/release/api\nFROM debian\nCOPY --from=build /target/release/api /api\n"),
            "profile release, stripped of debuginfo"
        );
    }

    /// A builder stage is told by its commands' words: sozu's installs the packages `cargo` and
    /// `build-base` before its build, which is replaced; a wrapper's build (`xx-cargo build`)
    /// keeps the Dockerfile, with the reason.
    #[test]
    fn a_cargo_build_is_told_by_its_words() {
        let dockerfile = |build: &str| {
            format!("FROM alpine AS builder\nRUN apk add --no-cache --virtual .build-dependencies \\\n  cargo \\\n  build-base\nWORKDIR /src\nCOPY . .\n{build}\nFROM alpine\nCOPY --from=builder /src/target/release/sozu /usr/local/bin/sozu\n")
        };
        check(
            &dockerfile("RUN cargo build --release"),
            expect![[r#"
            package None, bins {"sozu"}, reads the context: false
            the builder stage `builder` (Dockerfile:1) runs cargo build, which the xtask cross-compiles instead
            ---
            FROM alpine
            COPY linux/arm64/sozu /usr/local/bin/sozu"#]],
        );
        check(
            &dockerfile("RUN xx-cargo build --release"),
            expect!["kept: Dockerfile:7: cargo runs through a script the xtask cannot read"],
        );
    }

    /// A RUN line's `if` blocks whose conditions the build arguments decide are followed
    /// (AppFlowy's and Lemmy's shapes), as are cargo run by its path and under `mold -run`; a
    /// condition only the running shell can tell keeps the Dockerfile.
    #[test]
    fn shell_logic_the_build_arguments_decide_is_followed() {
        let shown = |run: &str, copied: &str, build_args: &[(&str, &str)]| {
            let dockerfile = format!(
                "FROM rust AS build\nARG PROFILE=release\nARG CAP=75\nWORKDIR /src\nCOPY . .\n{run}\nFROM debian\nCOPY --from=build {copied} /app\n"
            );
            let build_args: Vec<(String, String)> = build_args.iter().map(|(key, value)| (key.to_string(), value.to_string())).collect();
            match replace(&dockerfile, "Dockerfile", &build_args, "linux/arm64").unwrap() {
                CargoStages::Replaced(replacement) => format!("{:?} {}", replacement.bins, replacement.options),
                CargoStages::Kept(why) => format!("kept: {}", why.split_once(": ").map_or(why.as_str(), |(_, why)| why)),
                CargoStages::None => "none".into(),
            }
        };
        let if_profile = "RUN if [ \"$PROFILE\" = \"release\" ]; then \\\n  cargo build --release --bin api; \\\nelse \\\n  cargo build --bin api; \\\nfi";
        let rows = [
            shown(if_profile, "/src/target/release/api", &[]),
            shown(if_profile, "/src/target/debug/api", &[("PROFILE", "debug")]),
            shown(
                "RUN if [ $CAP -ge 80 ]; then cargo build -r --bin api -F fast; elif [ -n \"$PROFILE\" ]; then cargo build -r --bin api -F turing && mv target/release/api /api; else exit 1; fi",
                "/api",
                &[],
            ),
            shown("RUN if [ ! -z \"$PROFILE\" ]; then if [ \"$CAP\" != 75 ]; then exit 1; fi; cargo build -r --bin api; fi", "/src/target/release/api", &[]),
            shown("RUN /usr/local/cargo/bin/cargo build -r --bin api && cp target/release/api /bin", "/bin/api", &[]),
            shown("RUN /usr/bin/mold -run cargo build --bin api --release", "/src/target/release/api", &[]),
            // shadowsocks': the target a `case` on the platform sets, then the build that uses it.
            shown(
                "ARG TARGETARCH\nRUN case \"$TARGETARCH\" in amd64) T=x86_64-unknown-linux-musl ;; arm64) T=aarch64-unknown-linux-musl ;; esac && cargo build -r --bin api --target \"$T\"",
                "/src/target/aarch64-unknown-linux-musl/release/api",
                &[("TARGETARCH", "arm64")],
            ),
            // astria's: for another platform the branch runs `$(uname -m)`.
            shown(
                "ARG TARGETPLATFORM\nRUN if [ \"$TARGETPLATFORM\" = linux/amd64 ]; then T=x86_64-unknown-linux-gnu; else T=$(uname -m)-unknown-linux-gnu; fi; cargo build -r --bin api --target $T",
                "/src/target/aarch64-unknown-linux-gnu/release/api",
                &[("TARGETPLATFORM", "linux/arm64")],
            ),
            shown("RUN if [ -f Cargo.lock ]; then cargo build -r --bin api; fi", "/src/target/release/api", &[]),
            shown("RUN if [ \"$PROFILE\" = \"release\" ]; then cargo build -r --bin api; fi; fi", "/src/target/release/api", &[]),
        ];
        expect![[r#"
            {"api"} profile release, CAP=75, PROFILE=release
            {"api"} profile dev, CAP=75, PROFILE=debug
            {"api"} profile release, features turing, CAP=75, PROFILE=release
            {"api"} profile release, CAP=75, PROFILE=release
            {"api"} profile release, CAP=75, PROFILE=release
            {"api"} profile release, CAP=75, PROFILE=release
            {"api"} profile release, CAP=75, PROFILE=release
            kept: cargo reads `$T`, whose value the RUN line sets by a command substitution (`$(...)`) or in a branch the xtask cannot follow
            kept: cargo runs through a script the xtask cannot read
            kept: cargo runs through a script the xtask cannot read"#]]
        .assert_eq(&rows.join("\n"));
    }

    /// reth's shape: a labs frontend, whose `COPY --exclude` the planner stage uses.
    #[test]
    fn a_newer_frontends_flags_are_read() {
        check(
            "# syntax=docker.io/docker/dockerfile:1.7-labs\nFROM lukemathwalker/cargo-chef:latest-rust-1 AS chef\nWORKDIR /app\nFROM chef AS planner\nCOPY --exclude=.git --exclude=dist . .\nRUN cargo chef prepare --recipe-path recipe.json\nFROM chef AS builder\nCOPY --from=planner /app/recipe.json recipe.json\nRUN cargo chef cook --release --recipe-path recipe.json\nCOPY --exclude=.git --exclude=dist . .\nRUN cargo build --release --locked --bin reth\nFROM ubuntu AS runtime\nCOPY --from=builder /app/target/release/reth /usr/local/bin\n",
            expect![[r#"
                package None, bins {"reth"}, reads the context: false
                the builder stage `builder` (Dockerfile:7) runs cargo build, which the xtask cross-compiles instead
                ---
                # syntax=docker.io/docker/dockerfile:1.7-labs
                FROM ubuntu AS runtime
                COPY linux/arm64/reth /usr/local/bin"#]],
        );
    }

    /// The image records each rewritten COPY as BuildKit records the COPY as written.
    #[test]
    fn the_history_of_a_rewritten_copy_is_the_written_ones() {
        let CargoStages::Replaced(replacement) =
            replace(BY_ARG, "Dockerfile", &[("BIN".to_string(), "capture".to_string())], "linux/arm64").unwrap()
        else {
            panic!("replaced")
        };
        assert_eq!(
            replacement.history,
            [(
                "COPY linux/arm64/capture /usr/local/bin/capture # buildkit".to_string(),
                "COPY /app/target/release/capture /usr/local/bin/capture # buildkit".to_string()
            )]
        );
    }
}
