//! The C toolchain for every Linux target, from any host: zig. A crate graph that compiles C
//! (`ring`, `zstd-sys`, `aws-lc-sys`, bundled SQLite, vendored OpenSSL), and every glibc target,
//! gets `zig cc -target <arch>-linux-<libc>[.<glibc>]` as its C and C++ compiler, archiver and
//! linker. zig carries the headers and libraries of musl and of every glibc version, so a glibc
//! binary is linked against exactly the version its base image has, and its output does not
//! depend on the host's compilers. Pure-Rust apps for musl keep rust-lld (`.cargo/config.toml`),
//! which needs no zig at all and links as fast.
//!
//! cargo and the build scripts' `cc` crate take one program per tool, so each target gets small
//! scripts under `target/xtask/zig/<zig target>/` that run this executable as `__zig`: it
//! rewrites the few arguments rustc and cc-rs give a GNU compiler driver that zig's does not
//! take (`compiler_arguments`), then runs zig.

use std::ffi::OsString;
use std::fmt::Write as _;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use xshell::{cmd, Shell};

use crate::image::libc::GlibcVersion;

/// The zig release the xtask's images are checked with: another one may compile C code
/// differently, so images of C apps made with it may differ from those made elsewhere.
pub const PINNED_VERSION: &str = "0.15.2";

/// The first argument that makes this executable a compiler wrapper (`run_as_compiler`).
const WRAPPER_ARGUMENT: &str = "__zig";

/// A zig found on this machine.
pub struct Zig {
    pub program: PathBuf,
    pub version: String,
}

impl Zig {
    /// `XTASK_ZIG`, else `zig` on PATH, else PyPI's `ziglang` package of `python3` (where `pip
    /// install ziglang` puts it). None of them: an error naming the one command that installs it.
    pub fn locate(sh: &Shell, why: &str) -> Result<Zig> {
        let configured = std::env::var_os("XTASK_ZIG").filter(|value| !value.is_empty()).map(PathBuf::from);
        let on_path = || {
            std::env::var_os("PATH")
                .and_then(|path| std::env::split_paths(&path).map(|dir| dir.join("zig")).find(|candidate| candidate.is_file()))
        };
        let from_pypi = || {
            let script = "import os, ziglang; print(os.path.dirname(ziglang.__file__))";
            let dir = cmd!(sh, "python3 -c {script}").quiet().ignore_stderr().read().ok()?;
            Some(Path::new(dir.trim()).join("zig")).filter(|program| program.is_file())
        };
        let Some(program) = configured.or_else(on_path).or_else(from_pypi) else {
            bail!(
                "{why}, and zig is the C toolchain the xtask builds them with, on any host and for every target: install it with `pip3 install ziglang=={PINNED_VERSION}` (PyPI's zig, found without being on PATH), or put zig {PINNED_VERSION} on PATH, or set XTASK_ZIG to its path"
            );
        };
        let version = cmd!(sh, "{program} version").quiet().read().with_context(|| {
            format!("cannot run {} (the zig the build found): check it, or set XTASK_ZIG to another", program.display())
        })?;
        let version = version.trim().to_string();
        if version != PINNED_VERSION {
            eprintln!(
                "note: zig {version} ({}) is not zig {PINNED_VERSION}, the version the xtask is checked with: images of apps that compile C may differ from those built with {PINNED_VERSION}",
                program.display()
            );
        }
        Ok(Zig { program, version })
    }
}

/// zig's name for a Rust Linux target, with the glibc version a gnu target links against:
/// `aarch64-unknown-linux-gnu` and 2.36 are `aarch64-linux-gnu.2.36`.
pub fn zig_target(triple: &str, glibc: Option<GlibcVersion>) -> Result<String> {
    let parts: Vec<&str> = triple.split('-').collect();
    let (arch, abi) = match parts.as_slice() {
        [arch, _vendor, "linux", abi] => (*arch, *abi),
        _ => bail!("`{triple}` is not a Linux target: the xtask builds images' binaries for Linux targets only (`<arch>-unknown-linux-<musl|gnu>`)"),
    };
    let arch = match arch {
        "riscv64gc" => "riscv64",
        "i586" | "i686" => "x86",
        arch if arch.starts_with("armv7") || arch.starts_with("thumbv7") => "arm",
        arch => arch,
    };
    Ok(match (abi.starts_with("gnu"), glibc) {
        (true, Some(version)) => format!("{arch}-linux-{abi}.{version}"),
        _ => format!("{arch}-linux-{abi}"),
    })
}

/// One target's tools: the scripts cargo and the build scripts run.
#[derive(Debug)]
pub struct Toolchain {
    pub zig_target: String,
    cc: PathBuf,
    cxx: PathBuf,
    ar: PathBuf,
    ranlib: PathBuf,
}

impl Toolchain {
    /// Writes the scripts for `zig_target` under `dir`, each running `exe` (this executable) as
    /// the wrapper of `zig` (the archivers need no rewriting and run zig itself).
    pub fn write(dir: &Path, exe: &Path, zig: &Zig, zig_target: &str) -> Result<Toolchain> {
        let dir = dir.join(zig_target);
        std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let quote = |path: &Path| format!("'{}'", path.display().to_string().replace('\'', r"'\''"));
        let (exe, zig_program) = (quote(exe), quote(&zig.program));
        let script = |name: &str, command: String| -> Result<PathBuf> {
            let path = dir.join(name);
            let text =
                format!("#!/bin/sh\n# Written by cargo xtask: {name} for {zig_target}, with zig {}.\nexec {command} \"$@\"\n", zig.version);
            // Written beside and renamed: a build script may be running the old one.
            let temporary = dir.join(format!(".{name}.{}", std::process::id()));
            std::fs::write(&temporary, text)?;
            std::fs::set_permissions(&temporary, std::fs::Permissions::from_mode(0o755))?;
            std::fs::rename(&temporary, &path).with_context(|| format!("cannot write {}", path.display()))?;
            Ok(path)
        };
        Ok(Toolchain {
            zig_target: zig_target.to_string(),
            cc: script("cc", format!("{exe} {WRAPPER_ARGUMENT} cc {zig_program} {zig_target}"))?,
            cxx: script("c++", format!("{exe} {WRAPPER_ARGUMENT} c++ {zig_program} {zig_target}"))?,
            ar: script("ar", format!("{zig_program} ar"))?,
            ranlib: script("ranlib", format!("{zig_program} ranlib"))?,
        })
    }

    /// The variables that make cargo's run for `triple` use these tools: the `cc` crate's
    /// `CC_<target>` family (a value the user set is kept), with C flags that keep host paths
    /// out of objects as rustc's remapping keeps them out of Rust code (`remap`: prefix and
    /// replacement), and cargo's linker for the target when `link` (else the configured one).
    pub fn environment(
        &self,
        triple: &str,
        link: bool,
        remap: &[(PathBuf, &str)],
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Vec<(String, String)> {
        let suffix = triple.replace('-', "_");
        let set_by_user = |name: &str| env(&format!("{name}_{suffix}")).or_else(|| env(&format!("{name}_{triple}"))).is_some();
        let mut variables = Vec::new();
        for (name, tool) in [("CC", &self.cc), ("CXX", &self.cxx), ("AR", &self.ar), ("RANLIB", &self.ranlib)] {
            if !set_by_user(name) {
                variables.push((format!("{name}_{suffix}"), tool.display().to_string()));
            }
        }
        let mut prefix_maps = String::new();
        for (prefix, replacement) in remap {
            let _ = write!(prefix_maps, " -ffile-prefix-map={}={replacement}", prefix.display());
        }
        for name in ["CFLAGS", "CXXFLAGS"] {
            // cc-rs reads the first of these it finds: the user's flags come first.
            let user = env(&format!("{name}_{suffix}"))
                .or_else(|| env(&format!("{name}_{triple}")))
                .or_else(|| env(&format!("TARGET_{name}")))
                .or_else(|| env(name))
                .unwrap_or_default();
            variables.push((format!("{name}_{suffix}"), format!("{user}{prefix_maps}").trim().to_string()));
        }
        let linker = format!("CARGO_TARGET_{}_LINKER", suffix.to_uppercase());
        if link && env(&linker).is_none() {
            variables.push((linker, self.cc.display().to_string()));
        }
        variables
    }
}

/// When cargo or a build script runs this executable as a compiler (`__zig cc|c++ ZIG TARGET
/// ARGS...`, from the scripts `Toolchain::write` makes), runs zig with the arguments rewritten;
/// `None` when this is no such run.
pub fn run_as_compiler() -> Option<ExitCode> {
    let mut arguments = std::env::args_os().skip(1);
    if arguments.next()? != WRAPPER_ARGUMENT {
        return None;
    }
    let mut next = || arguments.next().map(|value| value.to_string_lossy().into_owned());
    let (Some(tool), Some(zig), Some(target)) = (next(), next(), next()) else {
        eprintln!("error: the xtask's compiler wrapper was run without its tool, zig and target");
        return Some(ExitCode::from(2));
    };
    let given: Vec<OsString> = std::env::args_os().skip(5).collect();
    let mut expanded = Vec::new();
    for argument in given {
        let text = argument.to_string_lossy().into_owned();
        // rustc hands a long link line over in a response file.
        match text.strip_prefix('@').map(std::fs::read_to_string) {
            Some(Ok(content)) => expanded.extend(response_file_arguments(&content)),
            _ => expanded.push(text),
        }
    }
    let is_file = |path: &str| Path::new(path).is_file();
    let zig_with = |runtime: Runtime| {
        let mut command = std::process::Command::new(&zig);
        command.arg(&tool).arg("-target").arg(&target).args(compiler_arguments(&target, &expanded, &is_file, runtime));
        command
    };
    if is_link(&expanded) {
        // The lean link first; a link it cannot make (a builtin only compiler-rt has) is made
        // again with zig's runtime, and only that one's messages count.
        match zig_with(Runtime::Lean).output() {
            Ok(output) if output.status.success() => {
                use std::io::Write as _;
                let _ = std::io::stdout().write_all(&output.stdout);
                let _ = std::io::stderr().write_all(&output.stderr);
                return Some(ExitCode::SUCCESS);
            }
            _ => {}
        }
    }
    use std::os::unix::process::CommandExt;
    let err = zig_with(Runtime::Zigs).exec();
    eprintln!("error: the xtask's compiler wrapper cannot run {zig}: {err}");
    Some(ExitCode::from(2))
}

/// The arguments of a GNU compiler driver as zig's takes them. rustc and cc-rs are written for
/// gcc and clang; zig refuses or mislinks with a few of theirs:
/// - `--target=` (cc-rs passes Rust's triple): zig's `-target` is given instead.
/// - `-lgcc_s`: zig links its own libunwind.
/// - linker options zig's linker does not know, which change nothing it makes.
/// - `-Wl,--undefined=SYM`: zig takes the same as `-u`.
/// - `-Wl,<file>`: a file passed through to the linker; zig takes it as an input.
/// - preprocessor options behind `-Wp,` other than dependency files.
///
/// A link with `Runtime::Lean` makes zig build nothing first; see `Runtime`. C compiles leave out
/// zig's default undefined-behaviour sanitizer (on at `-O0`), whose runtime a lean link lacks.
fn compiler_arguments(zig_target: &str, arguments: &[String], is_file: &dyn Fn(&str) -> bool, runtime: Runtime) -> Vec<String> {
    let musl = zig_target.contains("-musl");
    let linking = is_link(arguments);
    let cxx_runtime = arguments.iter().any(|argument| matches!(argument.as_str(), "-lstdc++" | "-lc++" | "-lc++abi"));
    let lean = linking && runtime == Runtime::Lean && !cxx_runtime;
    // rustc's self-contained directory, where its musl start files come from.
    let rust_runtime = (musl && lean)
        .then(|| {
            arguments.iter().find_map(|argument| {
                let path = Path::new(argument.strip_prefix("-L").unwrap_or(argument).trim_start());
                let dir = if argument.ends_with(".o") { path.parent()? } else { path };
                dir.ends_with("self-contained").then(|| dir.display().to_string())
            })
        })
        .flatten();
    let mut out = Vec::with_capacity(arguments.len());
    for argument in arguments {
        let argument = argument.as_str();
        let start_file = argument.ends_with(".o") && argument.contains("self-contained") && argument.contains("crt");
        let dropped = argument.starts_with("--target=")
            || matches!(argument, "-Wl,--no-undefined-version" | "-Wl,-znostart-stop-gc" | "-Wl,--fix-cortex-a53-843419")
            || argument.starts_with("-Wl,-plugin-opt")
            || (argument.starts_with("-Wp,") && !["-Wp,-MD", "-Wp,-MMD", "-Wp,-MT"].iter().any(|kept| argument.starts_with(kept)))
            || (musl && rust_runtime.is_none() && (argument == "-lc" || start_file))
            // musl's libc.a is also its libm, libpthread, libdl...; zig would build its own.
            || (rust_runtime.is_some() && matches!(argument, "-lm" | "-lpthread" | "-ldl" | "-lrt" | "-lutil" | "-lresolv" | "-lcrypt" | "-lxnet"));
        if dropped {
            continue;
        }
        if let (Some(dir), Some(library @ ("c" | "unwind"))) = (&rust_runtime, argument.strip_prefix("-l")) {
            // By path: zig takes `-lc` and `-lunwind` as asking for its own.
            out.push(format!("{dir}/lib{library}.a"));
        } else if rust_runtime.is_some() && argument == "-static-pie" {
            // zig takes `-static-pie` for `-static` alone, and rustc's start file for a static
            // PIE then crashes relocating a binary that is none.
            out.extend(["-static", "-pie"].map(String::from));
        } else if argument == "-lgcc_s" {
            out.push("-lunwind".to_string());
        } else if let Some(symbol) = argument.strip_prefix("-Wl,--undefined=") {
            out.push(format!("-Wl,-u,{symbol}"));
        } else if let Some(file) =
            argument.strip_prefix("-Wl,").filter(|rest| !rest.starts_with('-') && !rest.contains(',') && is_file(rest))
        {
            out.push(file.to_string());
        } else {
            out.push(argument.to_string());
        }
    }
    if rust_runtime.is_some() {
        out.push("-nostdlib".to_string());
    }
    if (lean && (rust_runtime.is_some() || !musl)) || !linking {
        out.push("-fno-sanitize=undefined".to_string());
    }
    if lean && (rust_runtime.is_some() || !musl) {
        out.push("-rtlib=none".to_string());
    }
    out
}

/// What a link takes from zig besides its linker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Runtime {
    /// Nothing zig builds first: for musl, the C runtime rustc brings (its self-contained musl
    /// libc.a, libunwind.a and start files, which pure-Rust apps are linked with too); for glibc,
    /// zig's stubs of the pinned version; and no compiler-rt (Rust's `compiler_builtins` has the
    /// builtins) or sanitizer runtime. zig builds musl, compiler-rt and its UBSan runtime in
    /// about 20 s of a cold build per musl target, compiler-rt and UBSan's in about 3 s per glibc
    /// one, for C code that seldom needs them. Not for a link that brings a C++ runtime
    /// (`-lstdc++`, `-lc++`): zig's libc++ is built on its own musl.
    Lean,
    /// zig's own musl, compiler-rt and UBSan runtime: for the links a lean one cannot make.
    Zigs,
}

/// Whether a compiler driver's arguments link (rather than compile, assemble or preprocess).
fn is_link(arguments: &[String]) -> bool {
    !arguments.iter().any(|argument| matches!(argument.as_str(), "-c" | "-S" | "-E"))
}

/// The arguments of a GNU-style response file: separated by white space, with single and
/// double quotes and backslash escapes, as rustc writes them.
fn response_file_arguments(content: &str) -> Vec<String> {
    let mut arguments = Vec::new();
    let mut current: Option<String> = None;
    let mut quote: Option<char> = None;
    let mut chars = content.chars();
    while let Some(c) = chars.next() {
        match (c, quote) {
            ('\\', _) => current.get_or_insert_with(String::new).extend(chars.next()),
            (c, Some(open)) if c == open => quote = None,
            (c, Some(_)) => current.get_or_insert_with(String::new).push(c),
            ('"' | '\'', None) => {
                quote = Some(c);
                current.get_or_insert_with(String::new);
            }
            (c, None) if c.is_whitespace() => arguments.extend(current.take()),
            (c, None) => current.get_or_insert_with(String::new).push(c),
        }
    }
    arguments.extend(current);
    arguments
}

#[cfg(test)]
mod tests {
    use expect_test::expect;

    use super::*;

    fn check(zig_target: &str, arguments: &str, expected: expect_test::Expect) {
        check_with(Runtime::Lean, zig_target, arguments, expected);
    }

    fn check_with(runtime: Runtime, zig_target: &str, arguments: &str, expected: expect_test::Expect) {
        let arguments: Vec<String> = arguments.split_whitespace().map(str::to_string).collect();
        let rewritten = compiler_arguments(zig_target, &arguments, &|path| path.starts_with("/existing/"), runtime);
        expected.assert_eq(&rewritten.join(" "));
    }

    #[test]
    fn compile_lines_lose_only_the_rust_target() {
        check(
            "aarch64-linux-musl",
            "-O3 -ffunction-sections -fdata-sections -fPIC --target=aarch64-unknown-linux-musl -I include -Wall -o out/x.o -c x.c",
            expect!["-O3 -ffunction-sections -fdata-sections -fPIC -I include -Wall -o out/x.o -c x.c -fno-sanitize=undefined"],
        );
        check(
            "x86_64-linux-gnu.2.28",
            "-Wp,-MD,dep.d -Wp,-U_FORTIFY_SOURCE -c y.c",
            expect!["-Wp,-MD,dep.d -c y.c -fno-sanitize=undefined"],
        );
    }

    /// A musl link line as rustc writes it (`/rl` standing for the toolchain's rustlib), with
    /// what the C code's build scripts add.
    const MUSL_LINK: &str = "-m64 /rl/self-contained/crt1.o /rl/self-contained/crti.o /rl/self-contained/crtbegin.o /tmp/rustc/symbols.o app.o -Wl,--as-needed -Wl,-Bstatic -lzstd -lm -lunwind -lc -Wl,--undefined=_AUDITABLE_VERSION_INFO -Wl,/existing/libfoo.a -nostartfiles -L /rl/self-contained -L /rl -o app -static -no-pie -nodefaultlibs -Wl,--no-undefined-version /rl/self-contained/crtend.o /rl/self-contained/crtn.o";

    #[test]
    fn a_musl_link_line_keeps_rusts_runtime() {
        check(
            "x86_64-linux-musl",
            MUSL_LINK,
            expect!["-m64 /rl/self-contained/crt1.o /rl/self-contained/crti.o /rl/self-contained/crtbegin.o /tmp/rustc/symbols.o app.o -Wl,--as-needed -Wl,-Bstatic -lzstd /rl/self-contained/libunwind.a /rl/self-contained/libc.a -Wl,-u,_AUDITABLE_VERSION_INFO /existing/libfoo.a -nostartfiles -L /rl/self-contained -L /rl -o app -static -no-pie -nodefaultlibs /rl/self-contained/crtend.o /rl/self-contained/crtn.o -nostdlib -fno-sanitize=undefined -rtlib=none"],
        );
    }

    #[test]
    fn a_musl_link_line_with_a_cxx_runtime_takes_zigs() {
        check(
            "x86_64-linux-musl",
            &MUSL_LINK.replace("-lzstd", "-lsnappy -lstdc++"),
            expect!["-m64 /tmp/rustc/symbols.o app.o -Wl,--as-needed -Wl,-Bstatic -lsnappy -lstdc++ -lm -lunwind -Wl,-u,_AUDITABLE_VERSION_INFO /existing/libfoo.a -nostartfiles -L /rl/self-contained -L /rl -o app -static -no-pie -nodefaultlibs"],
        );
        check("aarch64-linux-musl", "-O0 -c x.c -o x.o", expect!["-O0 -c x.c -o x.o -fno-sanitize=undefined"]);
    }

    #[test]
    fn a_link_a_lean_runtime_cannot_make_takes_zigs() {
        check_with(Runtime::Zigs, "x86_64-linux-musl", MUSL_LINK, expect!["-m64 /tmp/rustc/symbols.o app.o -Wl,--as-needed -Wl,-Bstatic -lzstd -lm -lunwind -Wl,-u,_AUDITABLE_VERSION_INFO /existing/libfoo.a -nostartfiles -L /rl/self-contained -L /rl -o app -static -no-pie -nodefaultlibs"]);
        check_with(Runtime::Zigs, "aarch64-linux-gnu.2.36", "app.o -lgcc_s -lc -o app", expect!["app.o -lunwind -lc -o app"]);
    }

    #[test]
    fn a_static_pie_stays_one() {
        let pie = MUSL_LINK.replace("crt1.o", "rcrt1.o").replace("-static -no-pie", "-static-pie");
        check("x86_64-linux-musl", &pie, expect!["-m64 /rl/self-contained/rcrt1.o /rl/self-contained/crti.o /rl/self-contained/crtbegin.o /tmp/rustc/symbols.o app.o -Wl,--as-needed -Wl,-Bstatic -lzstd /rl/self-contained/libunwind.a /rl/self-contained/libc.a -Wl,-u,_AUDITABLE_VERSION_INFO /existing/libfoo.a -nostartfiles -L /rl/self-contained -L /rl -o app -static -pie -nodefaultlibs /rl/self-contained/crtend.o /rl/self-contained/crtn.o -nostdlib -fno-sanitize=undefined -rtlib=none"]);
    }

    #[test]
    fn a_glibc_link_line_keeps_libc() {
        check(
            "aarch64-linux-gnu.2.36",
            "app.o -Wl,-znostart-stop-gc -lgcc_s -lutil -lrt -lpthread -lm -ldl -lc -Wl,-z,relro,-z,now -Wl,-O1 -Wl,/missing/file -pie -o app",
            expect!["app.o -lunwind -lutil -lrt -lpthread -lm -ldl -lc -Wl,-z,relro,-z,now -Wl,-O1 -Wl,/missing/file -pie -o app -fno-sanitize=undefined -rtlib=none"],
        );
    }

    #[test]
    fn zig_targets_name_the_glibc_version() {
        let glibc = GlibcVersion::parse("2.36");
        let check = |triple: &str, glibc: Option<GlibcVersion>| zig_target(triple, glibc).unwrap_or_else(|err| format!("error: {err}"));
        assert_eq!(check("x86_64-unknown-linux-musl", glibc), "x86_64-linux-musl");
        assert_eq!(check("aarch64-unknown-linux-gnu", glibc), "aarch64-linux-gnu.2.36");
        assert_eq!(check("aarch64-unknown-linux-gnu", None), "aarch64-linux-gnu");
        assert_eq!(check("armv7-unknown-linux-gnueabihf", GlibcVersion::parse("2.31")), "arm-linux-gnueabihf.2.31");
        assert_eq!(check("riscv64gc-unknown-linux-musl", None), "riscv64-linux-musl");
        assert!(check("aarch64-apple-darwin", None).starts_with("error: `aarch64-apple-darwin` is not a Linux target"));
    }

    #[test]
    fn response_files_split_as_rustc_writes_them() {
        assert_eq!(
            response_file_arguments("-o\n/out dir/app\n\"/path with space/a.o\"\n'-Wl,x'\nplain\\ escaped\n\n"),
            ["-o", "/out", "dir/app", "/path with space/a.o", "-Wl,x", "plain escaped"]
        );
    }

    #[test]
    fn the_environment_keeps_what_the_user_set() {
        let toolchain = Toolchain {
            zig_target: "aarch64-linux-gnu.2.36".into(),
            cc: "/t/cc".into(),
            cxx: "/t/c++".into(),
            ar: "/t/ar".into(),
            ranlib: "/t/ranlib".into(),
        };
        let env = |key: &str| match key {
            "CXX_aarch64-unknown-linux-gnu" => Some("clang++".to_string()),
            "CFLAGS" => Some("-O2".to_string()),
            _ => None,
        };
        let remap = [(PathBuf::from("/home/u/.cargo"), "/cargo"), (PathBuf::from("/src/ws"), "/workspace")];
        let variables = toolchain.environment("aarch64-unknown-linux-gnu", true, &remap, &env);
        let linker_set =
            |key: &str| if key == "CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER" { Some("mold".to_string()) } else { env(key) };
        let kept = toolchain.environment("aarch64-unknown-linux-gnu", true, &remap, &linker_set);
        assert!(kept.iter().all(|(key, _)| !key.starts_with("CARGO_TARGET_")), "the user's linker stays: {kept:?}");
        let text: Vec<String> = variables.iter().map(|(key, value)| format!("{key}={value}")).collect();
        expect![[r#"
            CC_aarch64_unknown_linux_gnu=/t/cc
            AR_aarch64_unknown_linux_gnu=/t/ar
            RANLIB_aarch64_unknown_linux_gnu=/t/ranlib
            CFLAGS_aarch64_unknown_linux_gnu=-O2 -ffile-prefix-map=/home/u/.cargo=/cargo -ffile-prefix-map=/src/ws=/workspace
            CXXFLAGS_aarch64_unknown_linux_gnu=-ffile-prefix-map=/home/u/.cargo=/cargo -ffile-prefix-map=/src/ws=/workspace
            CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=/t/cc"#]]
        .assert_eq(&text.join("\n"));
    }
}
