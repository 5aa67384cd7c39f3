//! Crate graphs with C code, cross-compiled from this x86_64 host for both platforms with zig as
//! the C toolchain (no C cross-compiler is installed here): an app with `ring` and `zstd`'s
//! bundled C (tests/e2e/fixtures/c-app), static on `scratch`, and against glibc on glibc bases,
//! never needing a newer glibc than the base has.

use std::path::Path;
use std::process::Command;

use crate::laptop::{built_digest, copied_cargo_home};
use crate::support::harness::{push_base_image_with, run, stderr, stdout, Registry, Scratch};

const BOTH: &str = "linux/amd64,linux/arm64";

/// Whether this machine runs arm64 binaries (qemu's binfmt handler, which tests/ci.sh registers
/// and then requires with `XTASK_TEST_REQUIRE_EMULATION`).
fn runs_arm64() -> bool {
    let handler = std::fs::read_to_string("/proc/sys/fs/binfmt_misc/qemu-aarch64").unwrap_or_default();
    let runs = handler.starts_with("enabled") || std::env::consts::ARCH == "aarch64";
    assert!(
        runs || std::env::var_os("XTASK_TEST_REQUIRE_EMULATION").is_none(),
        "XTASK_TEST_REQUIRE_EMULATION is set but qemu-aarch64 is not registered"
    );
    runs
}

/// What the sealer prints for its default text, on any platform.
const SEALED: &str = "sealed 42 bytes into 51 with sha256 1a2308174cc544ad1e624b275722b8c19f5fe609c490ac901e97f8b82b3f41b2\n";

fn run_binary(path: &Path) -> String {
    let output = run(&mut Command::new(path));
    assert!(output.status.success(), "{} failed: {}", path.display(), stderr(&output));
    stdout(&output)
}

/// The highest `GLIBC_x.y` version a binary's dynamic symbols require (`readelf -V`, which reads
/// any architecture's ELF), or `None` for a static binary.
fn highest_glibc_required(path: &Path) -> Option<(u32, u32)> {
    let output = run(Command::new("readelf").arg("-V").arg("--wide").arg(path));
    assert!(output.status.success(), "readelf failed: {}", stderr(&output));
    stdout(&output)
        .split(|c: char| c.is_whitespace())
        .filter_map(|word| word.strip_prefix("GLIBC_"))
        .filter_map(|version| {
            let mut parts = version.split('.').map(|part| part.parse::<u32>().ok());
            Some((parts.next()??, parts.next().flatten().unwrap_or(0)))
        })
        .max()
}

#[test]
fn an_app_with_c_code_builds_for_both_platforms_with_zig_and_the_same_on_any_checkout() {
    let first = Scratch::fixture("c-app");
    let build = ["build", "sealer", "--platform", BOTH];
    let output = first.xtask(&build);
    let log = stderr(&output);
    assert!(output.status.success(), "{log}");
    for triple in ["x86_64-unknown-linux-musl", "aarch64-unknown-linux-musl"] {
        assert!(log.contains(&format!("{triple}: sealer compiled and linked with zig")), "{log}");
    }
    let stage = first.path().join("target/stage");
    assert_eq!(highest_glibc_required(&stage.join("linux/amd64/sealer")), None, "static on scratch");
    assert_eq!(run_binary(&stage.join("linux/amd64/sealer")), SEALED);
    if runs_arm64() {
        assert_eq!(run_binary(&stage.join("linux/arm64/sealer")), SEALED);
    }

    // Another checkout path and CARGO_HOME: the same images, C objects included.
    let second = Scratch::clone_of(&first);
    let cargo_home = tempfile::tempdir().unwrap();
    copied_cargo_home(cargo_home.path());
    let output = second.xtask_with_env(&build, &[("CARGO_HOME", cargo_home.path().to_str().unwrap()), ("CARGO_NET_OFFLINE", "true")]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(built_digest(&first, "sealer"), built_digest(&second, "sealer"), "the C app differs between the two checkouts");
}

/// zig adds nothing of its own to a link unless it must: a C builtin Rust's `compiler_builtins`
/// lacks (long double complex multiplication, `__mulxc3` and `__multc3`, in the fixture's
/// `cpufeat`) makes the lean link fail, and the link is made again with zig's runtime. Both
/// binaries run and compute.
#[test]
fn a_link_that_needs_zigs_own_runtime_gets_it() {
    let scratch = Scratch::fixture("c-app");
    let output = scratch.xtask(&["build", "cpufeat", "--platform", BOTH]);
    assert!(output.status.success(), "{}", stderr(&output));
    let stage = scratch.path().join("target/stage");
    assert_eq!(run_binary(&stage.join("linux/amd64/cpufeat")), "long double complex product: 4\n");
    if runs_arm64() {
        assert_eq!(run_binary(&stage.join("linux/arm64/cpufeat")), "long double complex product: 4\n");
    }
}

/// A base image whose `libc.so.6` states `version` in glibc's banner, in Debian's multiarch
/// directory, for amd64 and arm64.
fn push_glibc_base(scratch: &Scratch, reference: &str, version: &str) {
    push_base_image_with(scratch, reference, &["amd64", "arm64"], &|arch| {
        let multiarch = if arch == "amd64" { "x86_64-linux-gnu" } else { "aarch64-linux-gnu" };
        let banner = format!("\x7fELF...GNU C Library (Debian GLIBC {version}-13) stable release version {version}.\n");
        vec![
            ("usr/".to_string(), String::new()),
            ("usr/lib/".to_string(), String::new()),
            (format!("usr/lib/{multiarch}/"), String::new()),
            (format!("usr/lib/{multiarch}/libc.so.6"), banner),
        ]
    });
}

#[test]
fn an_app_on_a_glibc_base_gets_a_gnu_binary_that_needs_no_newer_glibc_than_the_base() {
    let registry = Registry::start();
    let scratch = Scratch::fixture("c-app");
    let base = format!("{}/base/debian-like:11", registry.host);
    push_glibc_base(&scratch, &base, "2.31");
    scratch.edit("sealer/Dockerfile", |text| text.replace("FROM scratch", &format!("FROM {base}")));
    scratch.commit("sealer runs on a glibc 2.31 base");

    let output = scratch.xtask(&["build", "sealer", "--platform", BOTH]);
    let log = stderr(&output);
    assert!(output.status.success(), "{log}");
    for (platform, triple) in [("linux/amd64", "x86_64-unknown-linux-gnu"), ("linux/arm64", "aarch64-unknown-linux-gnu")] {
        assert!(log.contains(&format!("{triple}: sealer linked against glibc 2.31 by zig")), "{log}");
        let binary = scratch.path().join("target/stage").join(platform).join("sealer");
        let required = highest_glibc_required(&binary).expect("a gnu binary is dynamically linked");
        assert!(required <= (2, 31), "{platform}: needs GLIBC_{}.{}, more than the base's 2.31", required.0, required.1);
    }
    // The host's glibc (Debian 12's 2.36) runs it.
    assert_eq!(run_binary(&scratch.path().join("target/stage/linux/amd64/sealer")), SEALED);

    // `libc = "musl"` keeps every app static, on any base.
    scratch.edit("Cargo.toml", |text| text.replace("[workspace.metadata.xtask]\n", "[workspace.metadata.xtask]\nlibc = \"musl\"\n"));
    scratch.commit("static everywhere");
    let output = scratch.xtask(&["build", "sealer", "--platform", "linux/amd64"]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(highest_glibc_required(&scratch.path().join("target/stage/linux/amd64/sealer")), None);
}

/// The real Debian 12 root file system tests/ci.sh makes with debootstrap (`XTASK_TEST_ROOTFS`):
/// its glibc's version is read from its own `libc.so.6`, and the binary runs in it.
#[test]
fn an_app_on_real_debian_is_linked_against_its_glibc_and_runs_there() {
    let Some(rootfs) = std::env::var_os("XTASK_TEST_ROOTFS") else {
        eprintln!("XTASK_TEST_ROOTFS is not set (tests/ci.sh sets it): skipping the real Debian test");
        return;
    };
    let registry = Registry::start();
    let scratch = Scratch::fixture("c-app");
    let base = format!("{}/base/debian:bookworm", registry.host);
    push_rootfs(&scratch, Path::new(&rootfs), &base);
    scratch.edit("sealer/Dockerfile", |text| text.replace("FROM scratch", &format!("FROM {base}")));
    scratch.commit("sealer runs on Debian");
    let output = scratch.xtask(&["build", "sealer", "--platform", "linux/amd64"]);
    let log = stderr(&output);
    assert!(output.status.success(), "{log}");
    assert!(log.contains("x86_64-unknown-linux-gnu: sealer linked against glibc 2.36 by zig"), "{log}");
    let binary = scratch.path().join("target/stage/linux/amd64/sealer");
    assert!(highest_glibc_required(&binary).is_some_and(|required| required <= (2, 36)));
    // Run with Debian's own loader and libraries, as the image would.
    let unpacked = tempfile::tempdir().unwrap();
    let extract =
        run(Command::new("tar").arg("-xf").arg(&rootfs).arg("-C").arg(unpacked.path()).args(["./usr/lib/x86_64-linux-gnu", "./usr/lib64"]));
    assert!(extract.status.success(), "{}", stderr(&extract));
    let libraries = unpacked.path().join("usr/lib/x86_64-linux-gnu");
    let output = run(Command::new(libraries.join("ld-linux-x86-64.so.2")).arg("--library-path").arg(&libraries).arg(&binary));
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(stdout(&output), SEALED);
}

/// Pushes a root file system tar as a one-layer linux/amd64 image.
fn push_rootfs(scratch: &Scratch, rootfs: &Path, reference: &str) {
    use sha2::{Digest as _, Sha256};
    let dir = tempfile::tempdir().unwrap();
    let blobs = dir.path().join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    let write_blob = |bytes: &[u8], media_type: &str| {
        let digest = format!("sha256:{:x}", Sha256::digest(bytes));
        std::fs::write(blobs.join(&digest[7..]), bytes).unwrap();
        serde_json::json!({"mediaType": media_type, "digest": digest, "size": bytes.len()})
    };
    let tar = std::fs::read(rootfs).unwrap();
    let layer = write_blob(&tar, "application/vnd.oci.image.layer.v1.tar");
    let config = serde_json::json!({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": [layer["digest"]]}});
    let config = write_blob(config.to_string().as_bytes(), "application/vnd.oci.image.config.v1+json");
    let manifest = serde_json::json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json", "config": config, "layers": [layer]});
    let mut entry = write_blob(manifest.to_string().as_bytes(), "application/vnd.oci.image.manifest.v1+json");
    entry["annotations"] = serde_json::json!({"org.opencontainers.image.ref.name": "debian"});
    std::fs::write(dir.path().join("index.json"), serde_json::json!({"schemaVersion": 2, "manifests": [entry]}).to_string()).unwrap();
    std::fs::write(dir.path().join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    scratch.xtask_ok(&["push", dir.path().to_str().unwrap(), reference]);
}

/// Without zig anywhere the xtask looks (XTASK_ZIG, PATH, PyPI's ziglang for python3), the build
/// stops before compiling, with the one command that installs it.
#[test]
fn without_zig_the_build_names_the_command_that_installs_it() {
    let scratch = Scratch::fixture("c-app");
    let bin = tempfile::tempdir().unwrap();
    let python = bin.path().join("python3");
    std::fs::write(&python, "#!/bin/sh\nexit 1\n").unwrap();
    std::fs::set_permissions(&python, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let path = std::env::var_os("PATH").unwrap();
    let dirs = std::iter::once(bin.path().to_path_buf()).chain(std::env::split_paths(&path).filter(|dir| !dir.join("zig").exists()));
    let path = std::env::join_paths(dirs).unwrap();
    let output =
        scratch.xtask_with_env(&["build", "sealer", "--platform", "linux/arm64"], &[("XTASK_ZIG", ""), ("PATH", path.to_str().unwrap())]);
    let message = stderr(&output);
    assert_eq!(output.status.code(), Some(2), "{message}");
    assert!(
        message.contains("error: the apps' builds compile C code for aarch64-unknown-linux-musl, and zig is the C toolchain the xtask builds them with, on any host and for every target: install it with `pip3 install ziglang==0.15.2`"),
        "{message}"
    );
    assert!(!message.contains("Compiling"), "nothing was compiled: {message}");
}
