//! What the Rust toolchain needs before cargo cross-compiles: each target's standard library
//! (added with rustup when missing) and the linker cargo is configured with for it. Both are
//! checked before compiling, so a missing cross linker is one sentence naming the setting and
//! the package, not a page of linker output after the build.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use xshell::{cmd, Shell};

/// Adds missing rustup targets, as a user would have to anyway, and checks that the linker
/// configured for each target can be found, but for the targets zig links (`linked_by_zig`).
/// Returns the linker variables of the musl targets no configuration gives a linker
/// (`CARGO_TARGET_<T>_LINKER=rust-lld`): cargo's default, the host's `cc`, links no other
/// architecture, while rust-lld with Rust's own musl runtime links every one from any host, as
/// the xtask's own workspace configures it; and the configured rustflags that give way where the
/// xtask chooses the linker, read from the same files.
pub fn prepare_targets(sh: &Shell, workspace_root: &Path, triples: &[&String], linked_by_zig: &[&String]) -> Result<PreparedTargets> {
    let configs = config_files(workspace_root);
    let env = |key: &str| std::env::var(key).ok();
    let prepared = PreparedTargets {
        default_linkers: default_linkers(&configs, &env, triples),
        rustflags_without_linker: triples
            .iter()
            .filter_map(|triple| Some((triple.to_string(), configured_rustflags_without_linker(&configs, triple)?)))
            .collect(),
    };
    // Without rustc on PATH cargo's own error says what is missing.
    let Ok(sysroot) = cmd!(sh, "rustc --print sysroot").quiet().ignore_stderr().read() else {
        return Ok(prepared);
    };
    let rustlib = Path::new(sysroot.trim()).join("lib/rustlib");
    install_missing_targets(sh, &rustlib, triples)?;
    for triple in triples.iter().filter(|triple| !linked_by_zig.contains(triple)) {
        let Some(linker) = configured_linker(&configs, &env, triple) else { continue };
        if !linker_exists(&linker.program, &rustlib) {
            bail!(
                "the linker `{}` that {} sets for {triple} is not installed: {}, or set another linker there",
                linker.program,
                linker.origin,
                install_hint(&linker.program)
            );
        }
    }
    Ok(prepared)
}

/// What cargo's configuration leaves for the xtask to set per target (`prepare_targets`).
pub struct PreparedTargets {
    /// The linker variables of the musl targets no configuration gives a linker.
    pub default_linkers: Vec<(String, String)>,
    /// Per target whose configured rustflags choose a linker, the rest of them
    /// (`configured_rustflags_without_linker`).
    pub rustflags_without_linker: BTreeMap<String, Vec<String>>,
}

impl PreparedTargets {
    /// Whether `triple` gets rust-lld because nothing configures its linker.
    pub fn links_with_rust_lld(&self, triple: &str) -> bool {
        let variable = linker_variable(triple);
        self.default_linkers.iter().any(|(key, _)| *key == variable)
    }
}

/// The linker variables of the musl targets among `triples` whose linker neither the
/// environment nor a configuration file sets (see `prepare_targets`). A `cfg(...)` table's
/// linker may apply to any of them: then cargo decides alone.
fn default_linkers(configs: &[ConfigFile], env: &dyn Fn(&str) -> Option<String>, triples: &[&String]) -> Vec<(String, String)> {
    if cfg_linker_configured(configs) {
        return Vec::new();
    }
    triples
        .iter()
        .filter(|triple| triple.contains("-musl") && configured_linker(configs, env, triple).is_none())
        .map(|triple| (linker_variable(triple), "rust-lld".to_string()))
        .collect()
}

/// cargo's variable for the linker of `triple`.
fn linker_variable(triple: &str) -> String {
    format!("CARGO_TARGET_{}_LINKER", triple.to_uppercase().replace(['-', '.'], "_"))
}

/// Whether a configuration file sets a linker in a `[target.'cfg(...)']` table, which cargo
/// evaluates and the xtask leaves to it.
fn cfg_linker_configured(configs: &[ConfigFile]) -> bool {
    configs.iter().any(|config| {
        toml::from_str::<toml::Value>(&config.text).ok().is_some_and(|value| {
            value
                .get("target")
                .and_then(toml::Value::as_table)
                .is_some_and(|targets| targets.iter().any(|(key, table)| key.starts_with("cfg(") && table.get("linker").is_some()))
        })
    })
}

/// Where the remapping flags go: cargo reads `CARGO_ENCODED_RUSTFLAGS` or `RUSTFLAGS` instead of
/// any configured rustflags, so when either is set the flags join it; otherwise they join each
/// release target's configured rustflags (`--config`: cargo concatenates lists across sources).
#[derive(Debug, PartialEq)]
pub enum RemapFlags {
    /// `CARGO_ENCODED_RUSTFLAGS`: the user's flags, then ours, separated by 0x1f.
    Environment(String),
    /// Arguments of `cargo build`.
    Config(Vec<String>),
}

/// The rustc flags that keep host paths out of the binaries, so that the same commit gives the
/// same images on every machine: panic locations in registry crates carry their source path
/// under `CARGO_HOME`, and absolute paths under the workspace (a build script's `OUT_DIR`) can
/// reach a binary too. Each prefix is remapped as given and canonicalised, to `/cargo` and
/// `/workspace`; rustc applies the last matching flag, so the workspace comes last.
pub fn remap_flags(workspace_root: &Path, cargo_home: &Path, triples: &[&String], env: &dyn Fn(&str) -> Option<String>) -> RemapFlags {
    let flags: Vec<String> = remap_prefixes(workspace_root, cargo_home)
        .into_iter()
        .map(|(path, replacement)| format!("--remap-path-prefix={}={replacement}", path.display()))
        .collect();
    let from_env = env("CARGO_ENCODED_RUSTFLAGS")
        .map(|encoded| encoded.split('\x1f').filter(|flag| !flag.is_empty()).map(str::to_string).collect::<Vec<_>>())
        .or_else(|| env("RUSTFLAGS").map(|text| text.split_whitespace().map(str::to_string).collect()));
    if let Some(mut user) = from_env {
        user.extend(flags);
        return RemapFlags::Environment(user.join("\x1f"));
    }
    let list = serde_json::to_string(&flags).expect("strings serialise");
    RemapFlags::Config(triples.iter().flat_map(|triple| ["--config".to_string(), format!("target.{triple}.rustflags={list}")]).collect())
}

/// The rustflags cargo's configuration gives `triple` (`[target.<triple>] rustflags` of every
/// file, the most specific last, as cargo joins them) without those that choose the linker, when
/// some do (`-C linker=clang -C link-arg=-fuse-ld=lld`, as zero2prod configures its host): where
/// the xtask chooses the linker, the configured flags, coming after its own, would take its place
/// and link against the host's C library. `None` when none does, or when what applies cannot be
/// told here (a `cfg(..)` table's rustflags, flags the builder stage rules would refuse).
fn configured_rustflags_without_linker(configs: &[ConfigFile], triple: &str) -> Option<Vec<String>> {
    let mut flags: Vec<String> = Vec::new();
    for config in configs.iter().rev() {
        let Ok(table) = config.text.parse::<toml::Table>() else { continue };
        let Some(targets) = table.get("target").and_then(toml::Value::as_table) else { continue };
        if targets.iter().any(|(key, value)| key.starts_with("cfg(") && value.get("rustflags").is_some()) {
            return None;
        }
        match targets.get(triple).and_then(|target| target.get("rustflags")) {
            Some(toml::Value::String(text)) => flags.extend(text.split_whitespace().map(str::to_string)),
            Some(toml::Value::Array(items)) => flags.extend(items.iter().filter_map(|item| item.as_str().map(str::to_string))),
            _ => {}
        }
    }
    let kept = crate::image::dockerfile::cargo_stage::build_rustflags(&flags).ok()?;
    (kept.len() != flags.len()).then_some(kept)
}

/// The host prefixes `remap_flags` replaces, each with its replacement, in that order; C
/// compilers get the same (`zig::Toolchain::environment`).
pub fn remap_prefixes(workspace_root: &Path, cargo_home: &Path) -> Vec<(PathBuf, &'static str)> {
    let mut prefixes = Vec::new();
    for (prefix, replacement) in [(cargo_home, "/cargo"), (workspace_root, "/workspace")] {
        let canonical = prefix.canonicalize().unwrap_or_else(|_| prefix.to_path_buf());
        for path in [prefix.to_path_buf(), canonical] {
            if !prefixes.contains(&(path.clone(), replacement)) {
                prefixes.push((path, replacement));
            }
        }
    }
    prefixes
}

/// A target is installed when the toolchain's sysroot holds its standard library, which one
/// `rustc --print sysroot` tells faster than rustup lists targets.
fn install_missing_targets(sh: &Shell, rustlib: &Path, triples: &[&String]) -> Result<()> {
    let missing: Vec<&str> = triples.iter().map(|t| t.as_str()).filter(|t| !rustlib.join(t).join("lib").is_dir()).collect();
    if missing.is_empty() {
        return Ok(());
    }
    let listed = missing.join(" ");
    eprintln!("installing missing Rust targets: rustup target add {listed}");
    cmd!(sh, "rustup target add {missing...}")
        .run()
        .with_context(|| format!("cannot install the Rust targets the platforms need: run `rustup target add {listed}` and try again"))
}

/// A cargo configuration file, its name for messages (relative to the workspace root when it
/// is inside) and its text.
struct ConfigFile {
    path: PathBuf,
    shown: String,
    text: String,
}

/// Cargo's configuration files in the order it reads them, most specific first: `.cargo/` in the
/// workspace root and each parent directory, then `$CARGO_HOME`.
fn config_files(workspace_root: &Path) -> Vec<ConfigFile> {
    let mut dirs: Vec<PathBuf> = workspace_root.ancestors().map(|dir| dir.join(".cargo")).collect();
    let cargo_home = crate::workspace::cargo_home();
    dirs.extend(cargo_home.filter(|home| !dirs.contains(home)));
    dirs.iter()
        .flat_map(|dir| [dir.join("config.toml"), dir.join("config")])
        .filter_map(|path| {
            let text = std::fs::read_to_string(&path).ok()?;
            let shown = path.strip_prefix(workspace_root).unwrap_or(&path).display().to_string();
            Some(ConfigFile { path, shown, text })
        })
        .collect()
}

#[derive(Debug, PartialEq)]
struct ConfiguredLinker {
    program: String,
    /// Where it is set: `CARGO_TARGET_<TRIPLE>_LINKER` or `file:line`.
    origin: String,
}

/// The linker cargo uses for `triple`: the environment variable wins over the files, and the
/// first file that sets it wins over later ones. Only `[target.<triple>]` is read; a `cfg(..)`
/// table is left to cargo.
fn configured_linker(configs: &[ConfigFile], env: &dyn Fn(&str) -> Option<String>, triple: &str) -> Option<ConfiguredLinker> {
    let variable = linker_variable(triple);
    if let Some(program) = env(&variable).filter(|program| !program.is_empty()) {
        return Some(ConfiguredLinker { program, origin: variable });
    }
    #[derive(serde::Deserialize)]
    struct Config {
        #[serde(default)]
        target: std::collections::BTreeMap<String, Target>,
    }
    #[derive(serde::Deserialize)]
    struct Target {
        linker: Option<toml::Spanned<String>>,
    }
    configs.iter().find_map(|config| {
        // A file cargo cannot read makes cargo fail with a better message than ours.
        let parsed: Config = toml::from_str(&config.text).ok()?;
        let linker = parsed.target.get(triple)?.linker.as_ref()?;
        let line = config.text[..linker.span().start].lines().count().max(1);
        let program = linker.get_ref().clone();
        // A relative path with a slash is relative to the directory holding `.cargo`.
        let program = match program.contains('/') && !program.starts_with('/') {
            true => config.path.parent().and_then(Path::parent).unwrap_or(Path::new(".")).join(&program).display().to_string(),
            false => program,
        };
        Some(ConfiguredLinker { program, origin: format!("{}:{line}", config.shown) })
    })
}

/// Found as a path, on PATH, or among the tools the toolchain ships (`rust-lld`).
fn linker_exists(program: &str, rustlib: &Path) -> bool {
    if program.contains('/') {
        return Path::new(program).is_file();
    }
    let on_path = std::env::var_os("PATH").is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(program).is_file()));
    let shipped = std::fs::read_dir(rustlib)
        .map(|entries| entries.flatten().any(|entry| entry.path().join("bin").join(program).is_file()))
        .unwrap_or(false);
    on_path || shipped
}

/// How to install a linker, for the names Debian and Ubuntu package: `<triple>-gcc` comes with
/// `gcc-<triple>` (underscores become dashes: `gcc-x86-64-linux-gnu`).
fn install_hint(program: &str) -> String {
    let name = program.rsplit('/').next().unwrap_or(program);
    match name.strip_suffix("-gcc") {
        Some(prefix) if prefix.contains("-linux-") => {
            format!("install it with `apt-get install gcc-{}` (Debian and Ubuntu)", prefix.replace('_', "-"))
        }
        _ => format!("install `{name}`"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_remap(env: &[(&str, &str)], expected: expect_test::Expect) {
        let env = |key: &str| env.iter().find(|(name, _)| *name == key).map(|(_, value)| value.to_string());
        let triples = ["x86_64-unknown-linux-musl".to_string(), "aarch64-unknown-linux-musl".to_string()];
        let remap =
            remap_flags(Path::new("/nonexistent/ws"), Path::new("/nonexistent/home/.cargo"), &triples.iter().collect::<Vec<_>>(), &env);
        expected.assert_debug_eq(&remap);
    }

    #[test]
    fn host_paths_are_remapped_beside_the_users_flags() {
        check_remap(
            &[],
            expect_test::expect![[r#"
                Config(
                    [
                        "--config",
                        "target.x86_64-unknown-linux-musl.rustflags=[\"--remap-path-prefix=/nonexistent/home/.cargo=/cargo\",\"--remap-path-prefix=/nonexistent/ws=/workspace\"]",
                        "--config",
                        "target.aarch64-unknown-linux-musl.rustflags=[\"--remap-path-prefix=/nonexistent/home/.cargo=/cargo\",\"--remap-path-prefix=/nonexistent/ws=/workspace\"]",
                    ],
                )
            "#]],
        );
        check_remap(
            &[("RUSTFLAGS", "-C target-cpu=native")],
            expect_test::expect![[r#"
                Environment(
                    "-C\u{1f}target-cpu=native\u{1f}--remap-path-prefix=/nonexistent/home/.cargo=/cargo\u{1f}--remap-path-prefix=/nonexistent/ws=/workspace",
                )
            "#]],
        );
        check_remap(
            &[("CARGO_ENCODED_RUSTFLAGS", "-Cdebuginfo=1"), ("RUSTFLAGS", "ignored, as cargo does")],
            expect_test::expect![[r#"
                Environment(
                    "-Cdebuginfo=1\u{1f}--remap-path-prefix=/nonexistent/home/.cargo=/cargo\u{1f}--remap-path-prefix=/nonexistent/ws=/workspace",
                )
            "#]],
        );
    }

    fn check(configs: &[(&str, &str)], env: &[(&str, &str)], triple: &str, expected: Option<(&str, &str)>) {
        let configs: Vec<ConfigFile> = configs
            .iter()
            .map(|(path, text)| ConfigFile { path: PathBuf::from(path), shown: path.to_string(), text: text.to_string() })
            .collect();
        let env = |key: &str| env.iter().find(|(name, _)| *name == key).map(|(_, value)| value.to_string());
        let found = configured_linker(&configs, &env, triple);
        let expected = expected.map(|(program, origin)| ConfiguredLinker { program: program.into(), origin: origin.into() });
        assert_eq!(found, expected);
    }

    const WORKSPACE: &str = "[alias]\nxtask = \"run\"\n\n[target.aarch64-unknown-linux-gnu]\nlinker = \"aarch64-linux-gnu-gcc\"\n";

    #[test]
    fn the_linker_comes_from_the_environment_then_the_first_file_that_sets_it() {
        let home = ("/home/ci/.cargo/config.toml", "[target.aarch64-unknown-linux-gnu]\nlinker = \"clang\"\n");
        let workspace = ("/ws/.cargo/config.toml", WORKSPACE);
        check(&[workspace, home], &[], "aarch64-unknown-linux-gnu", Some(("aarch64-linux-gnu-gcc", "/ws/.cargo/config.toml:5")));
        check(&[home], &[], "aarch64-unknown-linux-gnu", Some(("clang", "/home/ci/.cargo/config.toml:2")));
        check(
            &[workspace],
            &[("CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER", "mold")],
            "aarch64-unknown-linux-gnu",
            Some(("mold", "CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER")),
        );
        check(&[workspace], &[], "x86_64-unknown-linux-musl", None);
        check(&[("/ws/.cargo/config.toml", "not toml [")], &[], "aarch64-unknown-linux-gnu", None);
        check(
            &[("/ws/.cargo/config.toml", "[target.aarch64-unknown-linux-gnu]\nlinker = \"tools/ld\"\n")],
            &[],
            "aarch64-unknown-linux-gnu",
            Some(("/ws/tools/ld", "/ws/.cargo/config.toml:2")),
        );
    }

    #[test]
    fn configured_flags_that_choose_the_linker_give_way_where_the_xtask_links() {
        let file = |path: &str, text: &str| ConfigFile { path: PathBuf::from(path), shown: path.to_string(), text: text.to_string() };
        let zero2prod = || {
            file("/ws/.cargo/config.toml", "[target.x86_64-unknown-linux-gnu]\nrustflags = [\"-C\", \"linker=clang\", \"-C\", \"link-arg=-fuse-ld=lld\", \"--cfg\", \"tokio_unstable\"]\n")
        };
        let home = || file("/home/ci/.cargo/config.toml", "[target.x86_64-unknown-linux-gnu]\nrustflags = \"-Ctarget-feature=+aes\"\n");
        let check =
            |configs: &[ConfigFile], triple: &str| configured_rustflags_without_linker(configs, triple).map(|flags| flags.join(" "));
        assert_eq!(check(&[zero2prod()], "x86_64-unknown-linux-gnu").as_deref(), Some("--cfg tokio_unstable"));
        // Every file's, the most specific last, as cargo joins them.
        assert_eq!(
            check(&[zero2prod(), home()], "x86_64-unknown-linux-gnu").as_deref(),
            Some("-Ctarget-feature=+aes --cfg tokio_unstable")
        );
        assert_eq!(check(&[zero2prod()], "aarch64-unknown-linux-gnu"), None, "no flags for that target");
        assert_eq!(check(&[home()], "x86_64-unknown-linux-gnu"), None, "no flag chooses the linker");
        let cfg = file("/ws/.cargo/config.toml", "[target.'cfg(target_os = \"linux\")']\nrustflags = [\"-C\", \"linker=clang\"]\n");
        assert_eq!(check(&[zero2prod(), cfg], "x86_64-unknown-linux-gnu"), None, "a cfg table is not evaluated");
    }

    #[test]
    fn a_musl_target_no_configuration_links_gets_rust_lld() {
        let defaults = |configs: &[(&str, &str)], env: &[(&str, &str)]| {
            let configs: Vec<ConfigFile> = configs
                .iter()
                .map(|(path, text)| ConfigFile { path: PathBuf::from(path), shown: path.to_string(), text: text.to_string() })
                .collect();
            let env = |key: &str| env.iter().find(|(name, _)| *name == key).map(|(_, value)| value.to_string());
            let triples = ["x86_64-unknown-linux-musl", "aarch64-unknown-linux-musl", "aarch64-unknown-linux-gnu"].map(String::from);
            let defaults = default_linkers(&configs, &env, &triples.iter().collect::<Vec<_>>());
            defaults.iter().map(|(key, value)| format!("{key}={value}")).collect::<Vec<_>>().join(" ")
        };
        assert_eq!(
            defaults(&[("/ws/.cargo/config.toml", WORKSPACE)], &[]),
            "CARGO_TARGET_X86_64_UNKNOWN_LINUX_MUSL_LINKER=rust-lld CARGO_TARGET_AARCH64_UNKNOWN_LINUX_MUSL_LINKER=rust-lld"
        );
        let musl_configured = ("/ws/.cargo/config.toml", "[target.x86_64-unknown-linux-musl]\nlinker = \"musl-gcc\"\n");
        assert_eq!(defaults(&[musl_configured], &[("CARGO_TARGET_AARCH64_UNKNOWN_LINUX_MUSL_LINKER", "clang")]), "");
        assert_eq!(defaults(&[("/ws/.cargo/config.toml", "[target.'cfg(target_env = \"musl\")']\nlinker = \"clang\"\n")], &[]), "");
    }

    #[test]
    fn install_hints_name_the_debian_package() {
        assert_eq!(install_hint("aarch64-linux-gnu-gcc"), "install it with `apt-get install gcc-aarch64-linux-gnu` (Debian and Ubuntu)");
        assert_eq!(install_hint("x86_64-linux-gnu-gcc"), "install it with `apt-get install gcc-x86-64-linux-gnu` (Debian and Ubuntu)");
        assert_eq!(install_hint("/opt/zig/zig-cc"), "install `zig-cc`");
    }
}
