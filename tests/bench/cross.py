#!/usr/bin/env python3
"""Cross-compilation benchmark: an app whose graph compiles C, built for both platforms from this
x86_64 host, next to its two peers, in the same run.

The app is tests/e2e/fixtures/c-app's `sealer` (`ring`'s C and assembly, `zstd-sys`'s bundled
zstd), on `scratch`: static musl binaries for linux/amd64 and linux/arm64.

1. cold: `xtask build sealer --platform linux/amd64,linux/arm64` from an empty target directory
   and an empty zig cache (cargo-zigbuild's zig then builds musl's libc, compiler-rt and
   libunwind for each target; the xtask links with rustc's own musl runtime), against plain `cargo zigbuild --release --target x86_64-unknown-linux-musl --target
   aarch64-unknown-linux-musl` (PyPI's cargo-zigbuild, the same zig, also cold): the goal is
   <=1.1x, the xtask adding no cost to the compile it wraps, though it also reads the
   workspace's metadata, embeds the dependency lists and assembles both images.
2. against `docker build` with `RUN cargo build --release` of the same app in a Rust image under
   qemu, arm64 only (the usual route without cross-compilation): goal >=10x. The Rust image is
   made here without Docker Hub, as the official `rust:bookworm` is made: Debian bookworm arm64
   with gcc (debootstrap, its second stage under qemu; made once, kept as a Docker image) and
   rustup's aarch64 toolchain. The build's context is the app's workspace with its crates.io
   dependencies vendored.
3. `--aws-lc`: the same app with aws-lc-rs (rustls's default provider) added, built by the xtask
   and by cargo-zigbuild for both targets; says whether cmake was needed (it is not on PATH here)
   and the time. Its lockfile is resolved here, from crates.io.

`--quick` builds for linux/arm64 only, with zig's cache warm for both sides, the xtask and
cargo-zigbuild once each, without the qemu peer, so that tests/ci.sh keeps the benchmark working; like the full run it
exits non-zero when a command fails. Needs zig and cargo-zigbuild (PyPI's ziglang and
cargo-zigbuild in /opt/xtask-zig, as tests/ci.sh installs them), and for the qemu peer root,
dockerd, debootstrap and qemu's binfmt handler for arm64.
Usage: python3 tests/bench/cross.py [--runs N] [--quick] [--aws-lc]
"""
import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

from build import run, rust_version, timed, vendor_into

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FIXTURE = "tests/e2e/fixtures/c-app"
APP = "sealer"
TRIPLES = {"linux/amd64": "x86_64-unknown-linux-musl", "linux/arm64": "aarch64-unknown-linux-musl"}
ZIG_VENV = os.environ.get("XTASK_BENCH_ZIG_VENV", "/opt/xtask-zig")
GCC_ROOTFS = "/opt/xtask-bench/bookworm-arm64-gcc"
RUST_IMAGE = "xtask-bench/rust-gcc:{version}-linux-arm64"


def copy_fixture(into):
    files = run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard", FIXTURE], cwd=ROOT).stdout.split("\0")
    for path in filter(None, files):
        destination = os.path.join(into, os.path.relpath(path, FIXTURE))
        os.makedirs(os.path.dirname(destination), exist_ok=True)
        shutil.copy2(os.path.join(ROOT, path), destination)
    commit(into, "fixture")


def commit(ws, message):
    if not os.path.isdir(os.path.join(ws, ".git")):
        run(["git", "init", "-q", "-b", "main"], cwd=ws)
    run(["git", "add", "-A"], cwd=ws)
    run(["git", "-c", "user.name=bench", "-c", "user.email=bench@example.com", "commit", "-q", "-m", message], cwd=ws)


def make_rust_image(tmp):
    """Debian bookworm arm64 with gcc and libc6-dev (debootstrap, the second stage under qemu),
    then rustup's aarch64 toolchain: what the official rust:bookworm image holds for a build."""
    version = rust_version()
    image = RUST_IMAGE.format(version=version)
    if subprocess.run(["docker", "image", "inspect", image], capture_output=True).returncode == 0:
        return image
    if not os.path.exists(os.path.join(GCC_ROOTFS, "usr/bin/gcc")):
        print("making Debian bookworm arm64 with gcc (debootstrap under qemu, once per machine)", file=sys.stderr)
        shutil.rmtree(GCC_ROOTFS, ignore_errors=True)
        run(["debootstrap", "--arch=arm64", "--variant=minbase", "--include=gcc,libc6-dev", "bookworm", GCC_ROOTFS, "http://deb.debian.org/debian"])
    toolchain = f"{version}-aarch64-unknown-linux-gnu"
    run(["rustup", "toolchain", "install", toolchain, "--profile", "minimal", "--force-non-host"])
    home = run(["rustup", "show", "home"]).stdout.strip()
    context = os.path.join(tmp, "rust-image")
    shutil.copytree(os.path.join(home, "toolchains", toolchain), os.path.join(context, "rust"), symlinks=True)
    run(["tar", "--numeric-owner", "-C", GCC_ROOTFS, "-cf", os.path.join(context, "rootfs.tar"), "."])
    # `docker import` of Docker 20.10 records the host's architecture whatever --platform says;
    # a build whose first step writes files records the platform asked for.
    with open(os.path.join(context, "Dockerfile"), "w") as f:
        f.write(
            "FROM scratch\n"
            "ADD rootfs.tar /\n"
            "COPY rust/ /usr/local/rust/\n"
            "ENV PATH=/usr/local/rust/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin CARGO_HOME=/cargo\n"
        )
    run(["docker", "build", "--platform", "linux/arm64", "-t", image, "."], cwd=context)
    run(["docker", "run", "--rm", "--platform", "linux/arm64", image, "sh", "-c", "rustc --version && gcc --version"])
    return image


def qemu_project(ws, tmp, image):
    """The app's workspace with its crates.io dependencies vendored, and a Dockerfile that runs
    `cargo build --release` in the Rust image."""
    project = os.path.join(tmp, "qemu-project")
    shutil.copytree(ws, project, ignore=shutil.ignore_patterns(".git", "target"))
    vendor_into(project)
    with open(os.path.join(project, "bench-qemu.Dockerfile"), "w") as f:
        f.write(
            f"FROM {image} AS build\n"
            "WORKDIR /src\n"
            "COPY . .\n"
            f'RUN ["cargo", "build", "--release", "--offline", "--locked", "-p", "{APP}"]\n'
        )
    return project


def add_aws_lc(ws):
    """aws-lc-rs beside ring in the app, its lockfile resolved from crates.io."""
    manifest = os.path.join(ws, APP, "Cargo.toml")
    with open(manifest) as f:
        text = f.read()
    with open(manifest, "w") as f:
        f.write(text.replace("[dependencies]\n", '[dependencies]\naws-lc-rs = "1"\n', 1))
    main = os.path.join(ws, APP, "src", "main.rs")
    with open(main) as f:
        text = f.read()
    with open(main, "w") as f:
        f.write(text.replace(
            "    println!(",
            "    let other = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &packed);\n"
            "    assert_eq!(other.as_ref(), digest.as_ref());\n    println!(",
            1,
        ))
    run(["cargo", "update", "--workspace", "--quiet"], cwd=ws)
    run(["cargo", "fetch", "--locked", "--quiet"], cwd=ws)
    commit(ws, "aws-lc-rs")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=1, help="each cold build takes a minute or more")
    parser.add_argument("--quick", action="store_true", help="arm64 only, warm zig cache, no qemu peer (for tests/ci.sh)")
    parser.add_argument("--aws-lc", action="store_true", help="also build the app with aws-lc-rs")
    args = parser.parse_args()
    runs = 1 if args.quick else args.runs
    wall = time.perf_counter()
    zigbuild = os.path.join(ZIG_VENV, "bin", "cargo-zigbuild")
    if not os.path.exists(zigbuild):
        sys.exit(f"{zigbuild} is missing: pip install ziglang==0.15.2 cargo-zigbuild into {ZIG_VENV} (tests/ci.sh does)")
    run(["cargo", "build", "--quiet", "-p", "xtask"], cwd=ROOT)
    xtask = os.path.join(ROOT, "target", "debug", "xtask")
    tmp = tempfile.mkdtemp(prefix="xtask-bench-cross-")
    try:
        ws = os.path.join(tmp, "ws")
        copy_fixture(ws)
        run(["cargo", "fetch", "--locked", "--quiet"], cwd=ws)
        # cargo-zigbuild and the xtask find the same zig: PyPI's, through the venv's python3.
        path = os.path.join(ZIG_VENV, "bin") + os.pathsep + os.environ["PATH"]
        base_env = dict(os.environ, PATH=path, CARGO_NET_OFFLINE="true")
        for name in ("XTASK_REPOSITORY", "XTASK_PLATFORMS", "XTASK_ZIG", "GITHUB_ACTIONS", "SOURCE_DATE_EPOCH", "RUSTFLAGS", "CARGO_TARGET_DIR"):
            base_env.pop(name, None)
        platforms = ["linux/arm64"] if args.quick else ["linux/amd64", "linux/arm64"]
        zig_version = run([os.path.join(ZIG_VENV, "bin", "python"), "-m", "ziglang", "version"]).stdout.strip()
        zigbuild_version = run([zigbuild, "--version"], env=base_env).stdout.strip()

        toolchain_cache = None

        def fresh_env(name):
            """An empty target directory and, for a cold build, an empty zig cache (or, once
            `toolchain_cache` is set, a copy of it)."""
            target = os.path.join(tmp, f"target-{name}")
            shutil.rmtree(target, ignore_errors=True)
            env = dict(base_env, CARGO_TARGET_DIR=target)
            if not args.quick:
                cache = os.path.join(tmp, f"zig-cache-{name}")
                shutil.rmtree(cache, ignore_errors=True)
                if toolchain_cache:
                    shutil.copytree(toolchain_cache, cache, symlinks=True)
                env["ZIG_GLOBAL_CACHE_DIR"] = cache
            return env

        def xtask_build():
            run([xtask, "build", APP, "--platform", ",".join(platforms)], cwd=ws, env=fresh_env("xtask"))

        def cargo_zigbuild():
            targets = [flag for platform in platforms for flag in ("--target", TRIPLES[platform])]
            run([zigbuild, "zigbuild", "--release", "--locked", "-p", APP] + targets, cwd=ws, env=fresh_env("zigbuild"))

        def warm_toolchain_cache():
            """zig's cache after it linked one C program per target: musl's libc, its C runtime,
            compiler-rt and libunwind built, as on a machine (or a CI cache) that built before;
            none of the app's own C objects."""
            cache = os.path.join(tmp, "zig-cache-toolchain")
            hello = os.path.join(tmp, "hello.c")
            with open(hello, "w") as f:
                f.write("int main(void) { return 0; }\n")
            zig = os.path.join(ZIG_VENV, "bin", "python")
            for platform in platforms:
                zig_target = TRIPLES[platform].replace("-unknown-", "-")
                run([zig, "-m", "ziglang", "cc", "-target", zig_target, "-O2", hello, "-lunwind", "-o", os.path.join(tmp, "hello")],
                    env=dict(base_env, ZIG_GLOBAL_CACHE_DIR=cache))
            return cache

        if args.quick:
            # Warm zig's cache (musl's libc for the target, and each C object under the flags
            # each side compiles it with), as on a machine that built once.
            xtask_build()
            cargo_zigbuild()
        rows = []
        print(f"{'case':<72} {'seconds':>8} {'ratio':>7}", flush=True)

        def row(name, seconds, ratio):
            rows.append((name, seconds, ratio))
            shown = f"{seconds:>8.2f}" if seconds is not None else f"{'':>8}"
            print(f"{name:<72} {shown} {('%.2fx' % ratio) if ratio else '':>7}", flush=True)
        shown_platforms = "+".join(p.split("/")[1] for p in platforms)
        native = timed(xtask_build, runs)
        row(f"{'warm' if args.quick else 'cold'}: xtask build ({shown_platforms}, zig for C)", native, None)
        peer = timed(cargo_zigbuild, runs)
        row(f"  cargo zigbuild --release ({shown_platforms})", peer, peer / native)
        # The binaries run: amd64 here, arm64 under qemu's binfmt handler when registered.
        for platform in platforms:
            binary = os.path.join(ws, "target", "stage", platform, APP)
            if platform == "linux/amd64" or os.path.exists("/proc/sys/fs/binfmt_misc/qemu-aarch64"):
                printed = run([binary]).stdout.strip()
                print(f"{platform}: {printed}")
        qemu = None
        if args.quick:
            row("  docker build, RUN cargo build under qemu: skipped (--quick)", None, None)
        elif os.geteuid() != 0 or subprocess.run(["docker", "info"], capture_output=True).returncode != 0:
            row("  docker build, RUN cargo build under qemu: skipped (needs root and dockerd)", None, None)
        else:
            project = qemu_project(ws, tmp, make_rust_image(tmp))

            def qemu_cargo_build():
                run(["docker", "build", "--no-cache", "-q", "--platform", "linux/arm64", "-f", "bench-qemu.Dockerfile", "-t", f"bench/{APP}-qemu", "."], cwd=project)

            qemu = timed(qemu_cargo_build, runs)
            row("  docker build, RUN cargo build --release under qemu (arm64 only)", qemu, qemu / native)
        if not args.quick:
            toolchain_cache = warm_toolchain_cache()
            warm = timed(xtask_build, runs)
            row(f"zig's libc built once, target empty: xtask build ({shown_platforms})", warm, None)
            warm_peer = timed(cargo_zigbuild, runs)
            row(f"  cargo zigbuild --release ({shown_platforms})", warm_peer, warm_peer / warm)
            if qemu is not None:
                row("  docker build, RUN cargo build --release under qemu (arm64 only)", qemu, qemu / warm)
            toolchain_cache = None
        if args.aws_lc:
            add_aws_lc(ws)
            cmake = shutil.which("cmake")
            native_lc = timed(xtask_build, runs)
            row(f"with aws-lc-rs, cold: xtask build ({shown_platforms})", native_lc, None)
            peer_lc = timed(cargo_zigbuild, runs)
            row(f"  cargo zigbuild --release ({shown_platforms})", peer_lc, peer_lc / native_lc)
            lock = open(os.path.join(ws, "Cargo.lock")).read()
            sys_version = re.search(r'name = "aws-lc-sys"\nversion = "([^"]+)"', lock)
            print(f"aws-lc-sys {sys_version.group(1) if sys_version else '?'} built with cmake {'on PATH (' + cmake + ')' if cmake else 'absent: not needed'}")

        print(f"\n{'one run' if runs == 1 else f'median of {runs} runs'}; zig {zig_version}, {zigbuild_version}")
        print(f"goal, the xtask adds no cost (<=1.1x cargo zigbuild): {native / peer:.2f}x" + (" (met)" if native / peer <= 1.1 else " (NOT met)"))
        qemu_rows = [ratio for name, _, ratio in rows if "qemu" in name and ratio]
        if qemu_rows:
            print(f"goal, >=10x RUN cargo build under qemu: {qemu_rows[0]:.1f}x" + (" (met)" if qemu_rows[0] >= 10 else " (NOT met)"))
        print(f"\nbenchmark wall time: {time.perf_counter() - wall:.1f} s{' (--quick)' if args.quick else ''}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
