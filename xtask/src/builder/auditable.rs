//! The dependency list every app binary carries, in cargo-auditable's format: the packages the
//! app's build compiles for the target (`Resolver::compiled_graph`, the crates of the image's
//! SBOM), as cargo-auditable's JSON (`auditable-serde`), zlib-compressed, in the `.dep-v0`
//! section of an ELF object that the binary's link takes in. `cargo audit bin`, Trivy, Grype,
//! Syft and rust-audit-info read it from there.
//!
//! The objects are written before cargo runs; cargo then runs the xtask as its rustc wrapper for
//! the workspace's crates (`RUSTC_WORKSPACE_WRAPPER`), and the wrapper adds the object of the
//! binary rustc links to its link arguments. One object per app and target, so an app's binary
//! is the same whichever apps share its cargo run. The wrapper is named by a fixed name found on
//! `PATH`: cargo hashes the wrapper, as written, into each workspace crate's metadata and so into
//! the binary, and an absolute path would make binaries differ between checkouts.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context as _, Result};
use auditable_serde::{DependencyKind, Package, Source, VersionInfo};

use crate::workspace::graph::{CompiledGraph, Resolver};
use crate::workspace::{Member, Workspace};

/// The name cargo runs the wrapper by (a link to the xtask's own executable).
pub const WRAPPER: &str = "xtask-rustc-wrapper";
/// Where the wrapper finds the objects: `<dir>/<target>/<crate name>.o`.
const OBJECTS_VARIABLE: &str = "XTASK_AUDITABLE_OBJECTS";
/// The symbol that names the section, which the link is told to keep.
const SYMBOL: &str = "AUDITABLE_VERSION_INFO";
const SECTION: &str = ".dep-v0";

/// cargo-auditable's JSON of one app's build for one target: the app as the root, every package
/// compiled into its binary with its dependencies among them, sorted as `compiled_graph` sorts
/// them. Format 1, whose readers take the packages as the binary's runtime crates; the build
/// scripts and proc macros, which run on the host, are not listed (nor are they in the SBOM).
pub fn version_info(graph: &CompiledGraph) -> Result<VersionInfo> {
    let packages = graph
        .packages
        .iter()
        .zip(&graph.dependencies)
        .enumerate()
        .map(|(index, (package, dependencies))| {
            Ok(Package {
                name: package.name.clone(),
                version: package.version.parse().with_context(|| format!("{} has no semantic version", package.name))?,
                source: source(package.source.as_deref()),
                kind: DependencyKind::Runtime,
                dependencies: dependencies.iter().copied().collect(),
                root: index == 0,
            })
        })
        .collect::<Result<_>>()?;
    Ok(VersionInfo { packages, format: 1 })
}

/// cargo-auditable's names for where a package comes from.
fn source(source: Option<&str>) -> Source {
    match source {
        None => Source::Local,
        Some("registry+https://github.com/rust-lang/crates.io-index" | "sparse+https://index.crates.io/") => Source::CratesIo,
        Some(other) => match other.split('+').next() {
            Some("git") => Source::Git,
            Some("registry" | "sparse") => Source::Registry,
            _ => Source::Other(other.to_string()),
        },
    }
}

/// The zlib-compressed JSON the section holds.
pub fn compressed(info: &VersionInfo) -> Result<Vec<u8>> {
    let json = serde_json::to_vec(info)?;
    let mut encoder = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::new(7));
    encoder.write_all(&json)?;
    Ok(encoder.finish()?)
}

/// An ELF relocatable object for `triple` that holds `contents` in a `.dep-v0` section named by
/// a global symbol; `None` for an architecture this does not know how to describe.
pub fn object_file(triple: &str, contents: &[u8]) -> Option<Vec<u8>> {
    use object::write::{Object, Symbol, SymbolSection};
    use object::{elf, Architecture, BinaryFormat, Endianness, FileFlags, SectionFlags, SectionKind, SymbolKind, SymbolScope};

    let arch = triple.split('-').next()?;
    let none = elf::FileFlags(0);
    let (architecture, endianness, e_flags) = match arch {
        "x86_64" => (Architecture::X86_64, Endianness::Little, none),
        "aarch64" => (Architecture::Aarch64, Endianness::Little, none),
        "i586" | "i686" => (Architecture::I386, Endianness::Little, none),
        _ if arch.starts_with("arm") && !arch.ends_with("eb") => (Architecture::Arm, Endianness::Little, none),
        "powerpc64le" => (Architecture::PowerPc64, Endianness::Little, none),
        "s390x" => (Architecture::S390x, Endianness::Big, none),
        // Linux's riscv64 targets are rv64gc: compressed instructions, double-float ABI.
        "riscv64gc" => (Architecture::Riscv64, Endianness::Little, elf::EF_RISCV_RVC | elf::EF_RISCV_FLOAT_ABI_DOUBLE),
        _ => return None,
    };
    let mut file = Object::new(BinaryFormat::Elf, architecture, endianness);
    file.flags = FileFlags::Elf { os_abi: elf::ELFOSABI_NONE, abi_version: 0, e_flags };
    let section = file.add_section(Vec::new(), SECTION.as_bytes().to_vec(), SectionKind::ReadOnlyData);
    // Not allocated: the list is in the file, not loaded into the process.
    file.section_mut(section).flags = SectionFlags::Elf { sh_type: elf::SHT_PROGBITS, sh_flags: elf::SectionFlags(0) };
    let offset = file.append_section_data(section, contents, 1);
    file.add_symbol(Symbol {
        name: SYMBOL.as_bytes().to_vec(),
        value: offset,
        size: contents.len() as u64,
        kind: SymbolKind::Data,
        scope: SymbolScope::Dynamic,
        weak: false,
        section: SymbolSection::Section(section),
        flags: object::SymbolFlags::None,
    });
    file.write().ok()
}

/// The objects of one build, and the environment its cargo runs take them with.
pub struct Embedding {
    objects: PathBuf,
    wrapper_dir: PathBuf,
}

impl Embedding {
    /// Writes the object of each app's binary for each target under
    /// `target/xtask/auditable/`, and the link cargo runs as the wrapper. A target whose
    /// architecture has no object description gets a note and binaries without the list.
    pub fn prepare(workspace: &Workspace, resolver: &Resolver, members: &[&Member], triples: &[&String]) -> Result<Embedding> {
        let root = workspace.target_dir.join("xtask/auditable");
        let objects = root.join("objects");
        for triple in triples {
            let dir = objects.join(triple);
            fs::create_dir_all(&dir)?;
            for member in members {
                let bin = member.bin.as_deref().expect("checked before compiling");
                let graph = resolver.compiled_graph(&member.name, triple)?;
                let contents = compressed(&version_info(&graph)?)?;
                let Some(object) = object_file(triple, &contents) else {
                    eprintln!("note: the binaries for {triple} carry no dependency list (cargo-auditable's .dep-v0): its architecture is not one the xtask writes objects for");
                    break;
                };
                write_if_changed(&dir.join(format!("{}.o", bin.replace('-', "_"))), &object)?;
            }
        }
        let wrapper_dir = root.join("bin");
        link_wrapper(&wrapper_dir)?;
        Ok(Embedding { objects, wrapper_dir })
    }

    /// The variables of a cargo run whose binaries carry the lists.
    pub fn environment(&self) -> Result<BTreeMap<&'static str, OsString>> {
        let path = std::env::var_os("PATH").unwrap_or_default();
        let path = std::env::join_paths(std::iter::once(self.wrapper_dir.clone()).chain(std::env::split_paths(&path)))
            .context("PATH cannot take the target directory")?;
        Ok(BTreeMap::from([
            ("PATH", path),
            ("RUSTC_WORKSPACE_WRAPPER", WRAPPER.into()),
            (OBJECTS_VARIABLE, self.objects.clone().into_os_string()),
        ]))
    }
}

/// Writes an object unless it is already there, atomically: two runs may share the target
/// directory, and a linker must never read half a file.
fn write_if_changed(path: &Path, contents: &[u8]) -> Result<()> {
    if fs::read(path).is_ok_and(|existing| existing == contents) {
        return Ok(());
    }
    let dir = path.parent().expect("an object lives in a directory");
    let mut file = tempfile::NamedTempFile::new_in(dir)?;
    file.write_all(contents)?;
    file.persist(path).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

/// `<dir>/xtask-rustc-wrapper`, a symbolic link to this executable, replaced atomically (two
/// runs may share the target directory).
fn link_wrapper(dir: &Path) -> Result<()> {
    fs::create_dir_all(dir)?;
    let exe = std::env::current_exe().context("cannot find the xtask's own executable for cargo to run as its rustc wrapper")?;
    let link = dir.join(WRAPPER);
    if fs::read_link(&link).is_ok_and(|target| target == exe) {
        return Ok(());
    }
    let temporary = dir.join(format!(".{WRAPPER}.{}", std::process::id()));
    let _ = fs::remove_file(&temporary);
    #[cfg(unix)]
    std::os::unix::fs::symlink(&exe, &temporary)?;
    #[cfg(not(unix))]
    fs::copy(&exe, &temporary)?;
    fs::rename(&temporary, &link).with_context(|| format!("cannot write {}", link.display()))
}

/// When cargo runs this executable as its workspace rustc wrapper (by the name `WRAPPER`), runs
/// rustc with cargo's arguments plus, for a binary that has an object, the object and the symbol
/// the linker keeps. `None` when this is no such run.
pub fn run_as_rustc_wrapper() -> Option<ExitCode> {
    let mut arguments = std::env::args_os();
    let program = PathBuf::from(arguments.next()?);
    if program.file_name()? != WRAPPER {
        return None;
    }
    let rustc = arguments.next()?;
    let mut arguments: Vec<OsString> = arguments.collect();
    if let Some(objects) = std::env::var_os(OBJECTS_VARIABLE) {
        let text: Vec<String> = arguments.iter().map(|argument| argument.to_string_lossy().into_owned()).collect();
        arguments.extend(link_arguments(&text, Path::new(&objects)));
    }
    let status = std::process::Command::new(&rustc).args(&arguments).status();
    match status {
        Ok(status) => Some(ExitCode::from(status.code().unwrap_or(1).clamp(0, 255) as u8)),
        Err(err) => {
            eprintln!("error: the xtask's rustc wrapper cannot run {}: {err}", rustc.to_string_lossy());
            Some(ExitCode::from(2))
        }
    }
}

/// The arguments that link a binary's object (`<objects>/<target>/<crate>.o`) into it: none for
/// another kind of crate, a crate with no object, or a compilation for the host (build scripts).
fn link_arguments(rustc_arguments: &[String], objects: &Path) -> Vec<OsString> {
    let value = |name: &str| {
        let at = rustc_arguments.iter().position(|argument| argument == name)?;
        rustc_arguments.get(at + 1).map(String::as_str)
    };
    let codegen = |option: &str| {
        rustc_arguments.iter().enumerate().find_map(|(at, argument)| {
            let setting =
                argument
                    .strip_prefix("-C")
                    .map(|rest| if rest.is_empty() { rustc_arguments.get(at + 1).map(String::as_str) } else { Some(rest) });
            setting.flatten()?.strip_prefix(option)
        })
    };
    let is_bin = rustc_arguments.windows(2).any(|pair| pair[0] == "--crate-type" && pair[1].split(',').any(|kind| kind == "bin"));
    let (Some(crate_name), Some(target)) = (value("--crate-name"), value("--target")) else { return Vec::new() };
    let object = objects.join(target).join(format!("{crate_name}.o"));
    if !is_bin || !object.is_file() {
        return Vec::new();
    }
    let mut link = OsString::from("-Clink-arg=");
    link.push(&object);
    // A linker run directly (rust-lld, ld) takes `-u`; a compiler driver takes it through -Wl.
    let bare_linker = codegen("linker=").is_some_and(|linker| linker.ends_with("ld"));
    if bare_linker {
        vec![link, "-Clink-arg=-u".into(), format!("-Clink-arg={SYMBOL}").into()]
    } else {
        vec![link, format!("-Clink-arg=-Wl,-u,{SYMBOL}").into()]
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use expect_test::expect;

    use super::*;
    use crate::image::attestation::CompiledPackage;

    fn package(name: &str, version: &str, source: Option<&str>) -> CompiledPackage {
        CompiledPackage { name: name.into(), version: version.into(), source: source.map(String::from), checksum: None, license: None }
    }

    #[test]
    fn the_list_is_cargo_auditables_json_with_the_app_as_its_root() {
        let crates_io = Some("registry+https://github.com/rust-lang/crates.io-index");
        let graph = CompiledGraph {
            packages: vec![
                package("worker", "0.1.0", None),
                package("itoa", "1.0.15", crates_io),
                package("shared", "0.1.0", None),
                package("tracing", "0.1.0", Some("git+https://example.com/tracing?rev=1#abc")),
            ],
            dependencies: vec![BTreeSet::from([1, 2, 3]), BTreeSet::new(), BTreeSet::from([1]), BTreeSet::new()],
        };
        let info = version_info(&graph).unwrap();
        expect![[r#"{"packages":[{"name":"worker","version":"0.1.0","source":"local","dependencies":[1,2,3],"root":true},{"name":"itoa","version":"1.0.15","source":"crates.io"},{"name":"shared","version":"0.1.0","source":"local","dependencies":[1]},{"name":"tracing","version":"0.1.0","source":"git"}],"format":1}"#]]
        .assert_eq(&serde_json::to_string(&info).unwrap());
        // What readers deserialise (one root, no cycle) comes back equal.
        let text = serde_json::to_string(&info).unwrap();
        assert_eq!(text.parse::<VersionInfo>().ok(), Some(info));
    }

    #[test]
    fn the_object_is_an_elf_relocatable_of_the_targets_architecture_with_the_section() {
        use object::{Object as _, ObjectSection as _, ObjectSymbol as _};

        for (triple, architecture) in [
            ("x86_64-unknown-linux-musl", object::Architecture::X86_64),
            ("aarch64-unknown-linux-musl", object::Architecture::Aarch64),
            ("riscv64gc-unknown-linux-gnu", object::Architecture::Riscv64),
        ] {
            let bytes = object_file(triple, b"zlib bytes").unwrap();
            let file = object::File::parse(&*bytes).unwrap();
            assert_eq!((file.format(), file.architecture()), (object::BinaryFormat::Elf, architecture));
            let section = file.section_by_name(SECTION).unwrap();
            assert_eq!(section.data().unwrap(), b"zlib bytes");
            let symbol = file.symbols().find(|symbol| symbol.name() == Ok(SYMBOL)).unwrap();
            assert_eq!((symbol.section_index(), symbol.size(), symbol.is_global()), (Some(section.index()), 10, true));
        }
        assert_eq!(object_file("wasm32-unknown-unknown", b""), None);
    }

    #[test]
    fn only_a_binary_with_an_object_for_its_target_gets_link_arguments() {
        let objects = tempfile::tempdir().unwrap();
        fs::create_dir_all(objects.path().join("aarch64-unknown-linux-musl")).unwrap();
        fs::write(objects.path().join("aarch64-unknown-linux-musl/hello_api.o"), b"").unwrap();
        let check = |arguments: &str, expected: expect_test::Expect| {
            let arguments: Vec<String> = arguments.split(' ').map(String::from).collect();
            let added: Vec<String> = link_arguments(&arguments, objects.path())
                .iter()
                .map(|argument| argument.to_string_lossy().replace(&*objects.path().to_string_lossy(), "OBJECTS"))
                .collect();
            expected.assert_eq(&added.join(" "));
        };
        let bin = "--crate-name hello_api --edition=2021 src/main.rs --crate-type bin --target aarch64-unknown-linux-musl";
        check(
            &format!("{bin} -C linker=rust-lld"),
            expect!["-Clink-arg=OBJECTS/aarch64-unknown-linux-musl/hello_api.o -Clink-arg=-u -Clink-arg=AUDITABLE_VERSION_INFO"],
        );
        check(
            &format!("{bin} -Clinker=aarch64-linux-gnu-gcc"),
            expect!["-Clink-arg=OBJECTS/aarch64-unknown-linux-musl/hello_api.o -Clink-arg=-Wl,-u,AUDITABLE_VERSION_INFO"],
        );
        check("--crate-name hello_api src/lib.rs --crate-type lib --target aarch64-unknown-linux-musl", expect![""]);
        check("--crate-name build_script_build build.rs --crate-type bin", expect![""]);
        check("--crate-name hello_api src/main.rs --crate-type bin --target x86_64-unknown-linux-musl", expect![""]);
    }
}
