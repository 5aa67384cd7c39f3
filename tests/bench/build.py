#!/usr/bin/env python3
"""Build benchmark: the native builder next to the Docker engine, in the same run.

1. multi-arch from clean: `xtask build worker` (cross-compiles the worker and its two library
   crates for amd64 and arm64 from an empty target directory, then assembles both images)
   against `docker build --no-cache` of the arm64 image alone with `RUN cargo build` under qemu,
   the usual route for a multi-arch Rust image without cross-compilation.
2. assembly of a RUN-less Dockerfile, binaries already compiled: `xtask build worker` (which
   runs cargo, finds nothing to do, and reads the input digests' dependency graph from its
   cache) against the same `cargo build` + `docker build --no-cache` + `docker save` of the
   same Dockerfile for both platforms (and the xtask's own `--builder engine`, which is that
   plus the conversion).
3. streaming: peak RSS of `xtask build` when the image COPYs a 16 MiB or a 512 MiB file.

The arm64 Rust image of case 1 is made here without Docker Hub: rustup's aarch64 toolchain
(with the musl target) on top of Debian's arm64 glibc (libc6-arm64-cross) and zlib (zlib1g:arm64,
fetched with apt-get download after `dpkg --add-architecture arm64`). Needs root, dockerd, qemu
binfmt for arm64. Usage: python3 tests/bench/build.py [--runs N]
"""
import argparse
import glob
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RUST_IMAGE = "xtask-bench/rust:linux-arm64"
TRIPLES = {"linux/amd64": "x86_64-unknown-linux-musl", "linux/arm64": "aarch64-unknown-linux-musl"}


def run(command, **kwargs):
    result = subprocess.run(command, capture_output=True, text=True, **kwargs)
    if result.returncode != 0:
        sys.exit(f"{' '.join(command)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return result


def timed(action, runs):
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        action()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def rust_version():
    return re.search(r"rustc (\d+\.\d+\.\d+)", run(["rustc", "--version"]).stdout).group(1)


def make_rust_image(tmp):
    """An arm64 image with rustc and cargo, from rustup's aarch64 toolchain and Debian's libs."""
    if subprocess.run(["docker", "image", "inspect", RUST_IMAGE], capture_output=True).returncode == 0:
        return
    version = rust_version()
    toolchain = f"{version}-aarch64-unknown-linux-gnu"
    run(["rustup", "toolchain", "install", toolchain, "--profile", "minimal", "--force-non-host"])
    run(["rustup", "target", "add", "aarch64-unknown-linux-musl", "--toolchain", toolchain])
    home = run(["rustup", "show", "home"]).stdout.strip()
    context = os.path.join(tmp, "rust-image")
    libs = os.path.join(context, "lib")
    os.makedirs(libs)
    shutil.copytree(os.path.join(home, "toolchains", toolchain), os.path.join(context, "rust"), symlinks=True)
    cross = "/usr/aarch64-linux-gnu/lib"
    if not os.path.exists(os.path.join(cross, "libc.so.6")):
        run(["apt-get", "install", "-y", "-qq", "libc6-arm64-cross", "libgcc-s1-arm64-cross"])
    for name in ("ld-linux-aarch64.so.1", "libc.so.6", "libdl.so.2", "libpthread.so.0", "libm.so.6", "librt.so.1", "libgcc_s.so.1"):
        shutil.copy(os.path.join(cross, name), libs)
    debs = os.path.join(tmp, "debs")
    os.makedirs(debs)
    if "arm64" not in run(["dpkg", "--print-foreign-architectures"]).stdout:
        run(["dpkg", "--add-architecture", "arm64"])
        run(["apt-get", "update", "-qq"])
    run(["apt-get", "download", "zlib1g:arm64"], cwd=debs)
    run(["dpkg-deb", "-x", glob.glob(os.path.join(debs, "zlib1g_*.deb"))[0], os.path.join(debs, "root")])
    for path in glob.glob(os.path.join(debs, "root", "**", "libz.so.1*"), recursive=True):
        shutil.copy(path, libs, follow_symlinks=True)
    with open(os.path.join(context, "Dockerfile"), "w") as f:
        f.write(
            "FROM xtask/scratch:linux-arm64\n"
            "COPY lib/ /lib/aarch64-linux-gnu/\n"
            "COPY lib/ld-linux-aarch64.so.1 /lib/ld-linux-aarch64.so.1\n"
            "COPY rust/ /usr/local/rust/\n"
            "ENV PATH=/usr/local/rust/bin LD_LIBRARY_PATH=/lib/aarch64-linux-gnu CARGO_HOME=/cargo\n"
        )
    run(["docker", "build", "--platform", "linux/arm64", "-t", RUST_IMAGE, "."], cwd=context)
    run(["docker", "run", "--rm", "--platform", "linux/arm64", RUST_IMAGE, "rustc", "--version"])


def sample_project(tmp):
    """The worker and its libraries as a project of their own, to compile inside the engine."""
    project = os.path.join(tmp, "qemu-project")
    for crate in ("common", "wordcount", "worker"):
        shutil.copytree(os.path.join(ROOT, "crates", crate), os.path.join(project, "crates", crate), ignore=shutil.ignore_patterns("Dockerfile"))
    with open(os.path.join(project, "Cargo.toml"), "w") as f:
        f.write('[workspace]\nmembers = ["crates/*"]\nresolver = "2"\n\n[workspace.package]\nedition = "2021"\nlicense = "MIT"\npublish = false\n')
    os.makedirs(os.path.join(project, ".cargo"))
    with open(os.path.join(project, ".cargo", "config.toml"), "w") as f:
        f.write('[target.aarch64-unknown-linux-musl]\nlinker = "rust-lld"\n')
    with open(os.path.join(project, "Dockerfile"), "w") as f:
        f.write(
            f"FROM {RUST_IMAGE} AS build\n"
            "WORKDIR /src\n"
            "COPY . .\n"
            'RUN ["cargo", "build", "--release", "--offline", "--target", "aarch64-unknown-linux-musl", "-p", "worker"]\n'
            "FROM xtask/scratch:linux-arm64\n"
            "COPY --from=build /src/target/aarch64-unknown-linux-musl/release/worker /worker\n"
            'ENTRYPOINT ["/worker"]\n'
        )
    return project


def docker_build_and_save(ws, tmp, platforms, env):
    """The peer of `xtask build` with compiled binaries: the same `cargo build` (nothing to do),
    then what the legacy builder needs for the worker's Dockerfile, per platform: build, save."""
    targets = []
    for platform in platforms:
        targets += ["--target", TRIPLES[platform]]
    run(["cargo", "build", "--release", "--locked", "--package", "worker"] + targets, cwd=ws, env=env)
    with open(os.path.join(ws, "crates", "worker", "Dockerfile")) as f:
        text = f.read()
    for platform in platforms:
        slug = platform.replace("/", "-")
        dockerfile = text.replace("FROM scratch", f"FROM xtask/scratch:{slug}")
        args = ["docker", "build", "--no-cache", "-q", "--platform", platform, "--build-arg", f"TARGETPLATFORM={platform}", "-t", f"bench/worker:{slug}", "-f", "-", "."]
        result = subprocess.run(args, cwd=ws, input=dockerfile, capture_output=True, text=True)
        if result.returncode != 0:
            sys.exit(f"docker build failed:\n{result.stderr}")
        run(["docker", "save", "-o", os.path.join(tmp, f"{slug}.tar"), f"bench/worker:{slug}"])


def peak_rss_kib(command, cwd, env):
    result = subprocess.run(["/usr/bin/time", "-v"] + command, cwd=cwd, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"{' '.join(command)} failed:\n{result.stderr[-3000:]}")
    return int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", result.stderr).group(1))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    for tool in ("docker", "git", "rustup", "/usr/bin/time"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} is missing")
    if subprocess.run(["docker", "info"], capture_output=True).returncode != 0:
        sys.exit("no Docker engine answers: start dockerd")

    run(["cargo", "build", "--quiet", "-p", "xtask"], cwd=ROOT)
    xtask = os.path.join(ROOT, "target", "debug", "xtask")
    tmp = tempfile.mkdtemp(prefix="xtask-bench-build-", dir="/dev/shm" if os.path.isdir("/dev/shm") else None)
    try:
        ws = os.path.join(tmp, "ws")
        run(["git", "clone", "-q", ROOT, ws])
        target = os.path.join(tmp, "target")
        env = dict(os.environ, CARGO_TARGET_DIR=target)
        for name in ("XTASK_REPOSITORY", "XTASK_PLATFORMS", "GITHUB_ACTIONS", "SOURCE_DATE_EPOCH"):
            env.pop(name, None)
        both = ["linux/amd64", "linux/arm64"]
        # Warm-up: compiles once (so later "binaries compiled" cases are warm) and makes the
        # engine's empty platform images.
        run([xtask, "build", "worker", "--builder", "engine"], cwd=ws, env=env)
        make_rust_image(tmp)
        project = sample_project(tmp)

        rows = []

        def native_from_clean():
            for triple in ("x86_64-unknown-linux-musl", "aarch64-unknown-linux-musl"):
                shutil.rmtree(os.path.join(target, triple), ignore_errors=True)
            run([xtask, "build", "worker"], cwd=ws, env=env)

        def qemu_cargo_build():
            run(["docker", "build", "--no-cache", "-q", "--platform", "linux/arm64", "-t", "bench/worker-qemu", "."], cwd=project)

        native = timed(native_from_clean, args.runs)
        qemu = timed(qemu_cargo_build, args.runs)
        rows.append(("multi-arch from clean: xtask build (amd64+arm64, cross-compiled)", native, None))
        rows.append(("  docker build, RUN cargo build under qemu (arm64 only)", qemu, qemu / native))

        assemble = timed(lambda: run([xtask, "build", "worker"], cwd=ws, env=env), args.runs)
        engine = timed(lambda: run([xtask, "build", "worker", "--builder", "engine"], cwd=ws, env=env), args.runs)
        docker = timed(lambda: docker_build_and_save(ws, tmp, both, env), args.runs)
        rows.append(("assembly, binaries compiled: xtask build (native, amd64+arm64)", assemble, None))
        rows.append(("  cargo build + docker build --no-cache + docker save (amd64+arm64)", docker, docker / assemble))
        rows.append(("  xtask build --builder engine (docker build + save + conversion)", engine, engine / assemble))

        print(f"{'case':<72} {'seconds':>8} {'ratio':>7}")
        for name, seconds, ratio in rows:
            print(f"{name:<72} {seconds:>8.2f} {('%.1fx' % ratio) if ratio else '':>7}")

        # Streaming: the same build with a small and a large file in the image.
        dockerfile = os.path.join(ws, "crates", "worker", "Dockerfile")
        with open(dockerfile) as f:
            original = f.read()
        with open(dockerfile, "w") as f:
            f.write(original.replace("ENTRYPOINT", "COPY crates/worker/payload.bin /payload.bin\nENTRYPOINT", 1))
        print()
        for mib in (16, 512):
            with open(os.path.join(ws, "crates", "worker", "payload.bin"), "wb") as f:
                for _ in range(mib):
                    f.write(os.urandom(1 << 20))
            rss = peak_rss_kib([xtask, "build", "worker", "--platform", "linux/amd64"], ws, env)
            print(f"peak RSS of xtask build with a {mib:>3} MiB file in the image (cargo metadata and cargo included): {rss / 1024:.0f} MiB")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
