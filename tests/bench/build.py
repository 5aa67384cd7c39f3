#!/usr/bin/env python3
"""Build benchmark: the native builder next to the Docker engine, in the same run.

1. multi-arch from clean: `xtask build worker` (cross-compiles the worker and its library
   crates for amd64 and arm64 from an empty target directory, then assembles both images)
   against `docker build --no-cache` of the arm64 image alone with `RUN cargo build` under qemu,
   the usual route for a multi-arch Rust image without cross-compilation. That build's context
   is the workspace as git tracks it (`git ls-files`, so every file a build script or macro
   reads is there: `.sqlx/`, `shared/`, `api/`), less the members the worker does not reach
   through path dependencies (the xtask), with its crates.io dependencies vendored.
2. assembly of a RUN-less Dockerfile, binaries already compiled: `xtask build worker` (which
   runs cargo, finds nothing to do, and reads the input digests' dependency graph from its
   cache) against the same `cargo build` followed by, for the same Dockerfile and both
   platforms, `docker build --no-cache` + `docker save` (the legacy builder, Docker 20.10) and
   `docker buildx build --no-cache` + `docker save` (BuildKit, Docker 26, when it runs: see
   tests/ci.sh), and the xtask's own `--builder engine`, which is the legacy route plus the
   conversion. `xtask assemble` (the same Dockerfile, no cargo) is timed against the two
   engines' builds without the `cargo build`.
3. streaming: peak RSS of `xtask build` when the image COPYs a 16 MiB or a 512 MiB file.

The arm64 Rust image of case 1 is made here without Docker Hub: rustup's aarch64 toolchain
(with the musl target) on top of Debian's arm64 glibc (libc6-arm64-cross) and zlib (zlib1g:arm64,
fetched with apt-get download after `dpkg --add-architecture arm64`). Needs root, dockerd, qemu
binfmt for arm64. The image has no C compiler: what it links for its own platform (the proc
macro) is linked by the toolchain's rust-lld, which the image names with
CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER over the gcc cross linker `.cargo/config.toml`
sets for that target (the host inside the image).

`--quick` runs each case once with its smallest size and without the qemu peer of case 1, in
well under a minute, so that tests/ci.sh keeps the benchmark working; like the full run it exits
non-zero when a command fails. Docker 26 is `XTASK_TEST_DOCKER26` (default
unix:///run/xtask-docker26/docker.sock) with the buildx plugin `XTASK_TEST_DOCKER26_BUILDX`;
without it the BuildKit peer is skipped with a note.
Usage: python3 tests/bench/build.py [--runs N] [--quick]
"""
import argparse
import glob
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RUST_IMAGE = "xtask-bench/rust:{version}-linux-arm64"
TRIPLES = {"linux/amd64": "x86_64-unknown-linux-musl", "linux/arm64": "aarch64-unknown-linux-musl"}
APP = "worker"
DOCKER26_HOST = os.environ.get("XTASK_TEST_DOCKER26") or "unix:///run/xtask-docker26/docker.sock"
DOCKER26_BUILDX = os.environ.get("XTASK_TEST_DOCKER26_BUILDX") or "/opt/xtask-docker26/usr/libexec/docker/cli-plugins/docker-buildx"


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


def timed_parts(action, runs):
    """For an action that returns the seconds of its two parts (cargo, then the engine): the
    median of each part and of their sum."""
    parts = [action() for _ in range(runs)]
    return tuple(statistics.median(values) for values in ([p[0] for p in parts], [p[1] for p in parts], [p[0] + p[1] for p in parts]))


def rust_version():
    return re.search(r"rustc (\d+\.\d+\.\d+)", run(["rustc", "--version"]).stdout).group(1)


def make_rust_image(tmp):
    """An arm64 image with rustc and cargo, from rustup's aarch64 toolchain and Debian's libs,
    named after the host's Rust version. It has no C compiler: what is linked for its own
    platform (proc macros, build scripts) is linked by the toolchain's rust-lld, which finds the
    libraries rustc names (`-lc`...) through links put into the target's rustlib directory."""
    version = rust_version()
    image = RUST_IMAGE.format(version=version)
    if subprocess.run(["docker", "image", "inspect", image], capture_output=True).returncode == 0:
        return image
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
    linked = ("libc.so.6", "libdl.so.2", "libpthread.so.0", "libm.so.6", "librt.so.1", "libutil.so.1", "libgcc_s.so.1")
    for name in ("ld-linux-aarch64.so.1",) + linked:
        shutil.copy(os.path.join(cross, name), libs)
    rustlib = os.path.join(context, "rust", "lib", "rustlib", "aarch64-unknown-linux-gnu", "lib")
    for name in linked:
        os.symlink(f"/lib/aarch64-linux-gnu/{name}", os.path.join(rustlib, name.split(".so")[0] + ".so"))
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
            "ENV CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=rust-lld\n"
        )
    run(["docker", "build", "--platform", "linux/arm64", "-t", image, "."], cwd=context)
    run(["docker", "run", "--rm", "--platform", "linux/arm64", image, "rustc", "--version"])
    return image


def sample_project(ws, tmp, rust_image):
    """The worker's workspace as a project of its own, to compile inside the engine: every file
    git tracks (so what build scripts and macros read is there, whatever it is), less the
    workspace members the worker does not reach through path dependencies (the xtask: its
    crates.io graph is not in the engine), with the remaining crates.io dependencies vendored."""
    meta = json.loads(run(["cargo", "metadata", "--format-version", "1", "--no-deps", "--offline"], cwd=ws).stdout)
    root = os.path.realpath(ws)
    packages = {package["id"]: package for package in meta["packages"]}
    members = {os.path.dirname(os.path.realpath(packages[id]["manifest_path"])): packages[id] for id in meta["workspace_members"]}
    apps = [directory for directory, package in members.items() if package["name"] == APP]
    if not apps:
        sys.exit(f"no workspace member is named {APP}")
    keep, todo = set(), apps
    while todo:
        directory = todo.pop()
        if directory in keep:
            continue
        keep.add(directory)
        for dependency in members[directory]["dependencies"]:
            path = dependency.get("path") and os.path.realpath(dependency["path"])
            if path in members:
                todo.append(path)
    dropped = [os.path.relpath(directory, root) for directory in members if directory not in keep and directory != root]

    project = os.path.join(tmp, "qemu-project")
    files = run(["git", "ls-files", "-z"], cwd=ws).stdout.split("\0")
    for path in filter(None, files):
        if any(path == d or path.startswith(d + "/") for d in dropped):
            continue
        destination = os.path.join(project, path)
        os.makedirs(os.path.dirname(destination), exist_ok=True)
        shutil.copy2(os.path.join(ws, path), destination, follow_symlinks=False)
    manifest = os.path.join(project, "Cargo.toml")
    with open(manifest) as f:
        text = f.read()
    kept = sorted(os.path.relpath(directory, root) for directory in keep)
    text, count = re.subn(r"(?ms)^members\s*=\s*\[.*?\]", "members = " + json.dumps(kept), text, count=1)
    if count != 1:
        sys.exit(f"no `members = [...]` in the workspace's Cargo.toml")
    text = re.sub(r"(?ms)^default-members\s*=\s*\[.*?\]\n?", "", text)
    with open(manifest, "w") as f:
        f.write(text)
    # The crates.io dependencies left (the lockfile pruned to them), from this machine's cargo cache.
    vendor_into(project)
    with open(os.path.join(project, "bench-qemu.Dockerfile"), "w") as f:
        f.write(
            f"FROM {rust_image} AS build\n"
            "WORKDIR /src\n"
            "COPY . .\n"
            f'RUN ["cargo", "build", "--release", "--offline", "--locked", "--target", "aarch64-unknown-linux-musl", "-p", "{APP}"]\n'
            "FROM xtask/scratch:linux-arm64\n"
            f"COPY --from=build /src/target/aarch64-unknown-linux-musl/release/{APP} /{APP}\n"
            f'ENTRYPOINT ["/{APP}"]\n'
        )
    return project, dropped


def vendor_into(project):
    """Vendors a project's crates.io dependencies (from this machine's cargo cache when it has
    them) into `vendor/`, and points its `.cargo/config.toml` there, for a build in an engine."""
    vendor = subprocess.run(["cargo", "vendor", "--offline", "vendor"], cwd=project, capture_output=True, text=True)
    if vendor.returncode != 0:
        vendor = run(["cargo", "vendor", "vendor"], cwd=project)
    if "vendored-sources" not in vendor.stdout:
        sys.exit(f"cargo vendor printed no source replacement:\n{vendor.stdout}\n{vendor.stderr[-3000:]}")
    os.makedirs(os.path.join(project, ".cargo"), exist_ok=True)
    with open(os.path.join(project, ".cargo", "config.toml"), "a") as f:
        f.write("\n" + vendor.stdout)


def cargo_build(ws, platforms, env):
    """What `xtask build` runs first, and so the engines' peers too: with the binaries compiled,
    cargo finds nothing to do. The peers compile in a target directory of their own: the xtask
    adds `--remap-path-prefix` flags, and a plain `cargo build` in its directory would compile
    again after each xtask build (and the xtask after it)."""
    targets = []
    for platform in platforms:
        targets += ["--target", TRIPLES[platform]]
    run(["cargo", "build", "--release", "--locked", "--package", APP] + targets, cwd=ws, env=env)


def docker_build_and_save(ws, tmp, platforms, env):
    """The peer of `xtask build` with compiled binaries: the same `cargo build` (nothing to do),
    then what the legacy builder needs for the worker's Dockerfile, per platform: build, save.
    Returns the seconds of the two parts."""
    start = time.perf_counter()
    cargo_build(ws, platforms, env)
    cargo = time.perf_counter() - start
    with open(os.path.join(ws, "crates", APP, "Dockerfile")) as f:
        text = f.read()
    for platform in platforms:
        slug = platform.replace("/", "-")
        dockerfile = text.replace("FROM scratch", f"FROM xtask/scratch:{slug}")
        args = ["docker", "build", "--no-cache", "-q", "--platform", platform, "--build-arg", f"TARGETPLATFORM={platform}", "-t", f"bench/{APP}:{slug}", "-f", "-", "."]
        run(args, cwd=ws, input=dockerfile)
        run(["docker", "save", "-o", os.path.join(tmp, f"{slug}.tar"), f"bench/{APP}:{slug}"])
    return cargo, time.perf_counter() - start - cargo


def docker26(tmp, env):
    """The environment for Docker 26 with its buildx plugin, and a description; or None and why not."""
    if not os.path.isfile(DOCKER26_BUILDX):
        return None, f"no buildx plugin at {DOCKER26_BUILDX}"
    config = os.path.join(tmp, "docker26-config")
    os.makedirs(os.path.join(config, "cli-plugins"), exist_ok=True)
    link = os.path.join(config, "cli-plugins", "docker-buildx")
    if not os.path.lexists(link):
        os.symlink(DOCKER26_BUILDX, link)
    env26 = dict(env, DOCKER_HOST=DOCKER26_HOST, DOCKER_CONFIG=config)
    version = subprocess.run(["docker", "version", "--format", "{{.Server.Version}}"], env=env26, capture_output=True, text=True)
    if version.returncode != 0:
        return None, f"no Docker engine answers on {DOCKER26_HOST} (tests/ci.sh starts it as root)"
    buildx = subprocess.run(["docker", "buildx", "version"], env=env26, capture_output=True, text=True)
    if buildx.returncode != 0:
        return None, f"the buildx plugin {DOCKER26_BUILDX} does not run: {buildx.stderr.strip()}"
    return env26, f"Docker {version.stdout.strip()}, buildx {buildx.stdout.split()[1] if len(buildx.stdout.split()) > 1 else '?'}"


def buildx_command(platform, tag):
    return ["docker", "buildx", "build", "--no-cache", "-q", "--platform", platform, "--output", "type=docker", "-t", tag, "-f", f"crates/{APP}/Dockerfile", "."]


def buildx_multi_platform(ws, platforms, env26):
    """Whether one `buildx build` can export both platforms: only with the containerd image store
    (or another driver); the default `docker` driver refuses to export a manifest list."""
    result = subprocess.run(buildx_command(",".join(platforms), f"bench/{APP}:buildx"), cwd=ws, env=env26, capture_output=True, text=True)
    if result.returncode == 0:
        return True
    if "manifest list" not in result.stderr:
        sys.exit(f"docker buildx build (Docker 26) failed:\n{result.stderr[-3000:]}")
    return False


def buildx_build_and_save(ws, tmp, platforms, env, env26, multi):
    """The BuildKit peer: the same `cargo build`, then `docker buildx build` of the same
    Dockerfile for both platforms (one build when the engine can export a manifest list, one per
    platform otherwise), exported with `docker save`. Returns the seconds of the two parts."""
    start = time.perf_counter()
    cargo_build(ws, platforms, env)
    cargo = time.perf_counter() - start
    if multi:
        tags = [f"bench/{APP}:buildx"]
        run(buildx_command(",".join(platforms), tags[0]), cwd=ws, env=env26)
    else:
        tags = []
        for platform in platforms:
            tags.append(f"bench/{APP}:buildx-{platform.replace('/', '-')}")
            run(buildx_command(platform, tags[-1]), cwd=ws, env=env26)
    run(["docker", "save", "-o", os.path.join(tmp, "buildx.tar")] + tags, env=env26)
    return cargo, time.perf_counter() - start - cargo


def peak_rss_kib(command, cwd, env):
    result = subprocess.run(["/usr/bin/time", "-v"] + command, cwd=cwd, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"{' '.join(command)} failed:\n{result.stderr[-3000:]}")
    return int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", result.stderr).group(1))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="one run of each case, smallest sizes, no qemu peer (for tests/ci.sh)")
    args = parser.parse_args()
    runs = 1 if args.quick else args.runs
    wall = time.perf_counter()
    for tool in ("docker", "git", "rustup", "/usr/bin/time"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} is missing")
    if subprocess.run(["docker", "info"], capture_output=True).returncode != 0:
        sys.exit("no Docker engine answers: start dockerd")

    run(["cargo", "build", "--quiet", "-p", "xtask"], cwd=ROOT)
    xtask = os.path.join(ROOT, "target", "debug", "xtask")
    tmp = tempfile.mkdtemp(prefix="xtask-bench-build-", dir="/dev/shm" if os.path.isdir("/dev/shm") else None)
    env26 = None
    try:
        ws = os.path.join(tmp, "ws")
        run(["git", "clone", "-q", ROOT, ws])
        target = os.path.join(tmp, "target")
        env = dict(os.environ, CARGO_TARGET_DIR=target)
        for name in ("XTASK_REPOSITORY", "XTASK_PLATFORMS", "GITHUB_ACTIONS", "SOURCE_DATE_EPOCH"):
            env.pop(name, None)
        peers = dict(env, CARGO_TARGET_DIR=os.path.join(tmp, "target-peers"))
        both = ["linux/amd64", "linux/arm64"]
        legacy = run(["docker", "version", "--format", "{{.Server.Version}}"]).stdout.strip()
        has_assemble = re.search(r"^\s+assemble\s", run([xtask, "--help"]).stdout, re.M) is not None
        # Warm-up: compiles once (so later "binaries compiled" cases are warm) and makes the
        # engine's empty platform images; BuildKit builds once, which also tells whether one
        # build can export both platforms.
        run([xtask, "build", APP, "--builder", "engine"], cwd=ws, env=env)
        cargo_build(ws, both, peers)
        env26, about26 = docker26(tmp, env)
        if env26 is not None:
            multi = buildx_multi_platform(ws, both, env26)
            buildx_build_and_save(ws, tmp, both, peers, env26, multi)
            about26 += ", one build for both platforms" if multi else ", one build per platform (its `docker` driver cannot export a manifest list)"
        if not args.quick:
            project, dropped = sample_project(ws, tmp, make_rust_image(tmp))

        rows = []

        def native_from_clean():
            for triple in TRIPLES.values():
                shutil.rmtree(os.path.join(target, triple), ignore_errors=True)
            run([xtask, "build", APP], cwd=ws, env=env)

        def qemu_cargo_build():
            run(["docker", "build", "--no-cache", "-q", "--platform", "linux/arm64", "-f", "bench-qemu.Dockerfile", "-t", f"bench/{APP}-qemu", "."], cwd=project)

        native = timed(native_from_clean, runs)
        rows.append(("multi-arch from clean: xtask build (amd64+arm64, cross-compiled)", native, None))
        if args.quick:
            rows.append(("  docker build, RUN cargo build under qemu: skipped (--quick)", None, None))
        else:
            qemu = timed(qemu_cargo_build, runs)
            rows.append(("  docker build, RUN cargo build under qemu (arm64 only)", qemu, qemu / native))

        assemble = timed(lambda: run([xtask, "build", APP], cwd=ws, env=env), runs)
        engine = timed(lambda: run([xtask, "build", APP, "--builder", "engine"], cwd=ws, env=env), runs)
        docker_cargo, docker_engine, docker = timed_parts(lambda: docker_build_and_save(ws, tmp, both, peers), runs)
        if env26 is not None:
            buildx_cargo, buildx_engine, buildx = timed_parts(lambda: buildx_build_and_save(ws, tmp, both, peers, env26, multi), runs)
        output = os.path.join(tmp, "assembled")

        def assemble_alone():
            shutil.rmtree(output, ignore_errors=True)
            run([xtask, "assemble", ".", "--file", f"crates/{APP}/Dockerfile", "--output", output], cwd=ws, env=env)

        alone = timed(assemble_alone, runs) if has_assemble else None

        rows.append(("assembly, binaries compiled: xtask build (native, amd64+arm64)", assemble, None))
        rows.append(("  cargo build + docker build --no-cache + docker save (legacy)", docker, docker / assemble))
        if env26 is not None:
            rows.append(("  cargo build + docker buildx build --no-cache + docker save (BuildKit)", buildx, buildx / assemble))
        else:
            rows.append(("  cargo build + docker buildx build + docker save: skipped, see below", None, None))
        rows.append(("  xtask build --builder engine (docker build + save + conversion)", engine, engine / assemble))
        if alone is not None:
            rows.append(("assembly alone, no cargo: xtask assemble (amd64+arm64)", alone, None))
            rows.append(("  docker build --no-cache + docker save (legacy)", docker_engine, docker_engine / alone))
            if env26 is not None:
                rows.append(("  docker buildx build --no-cache + docker save (BuildKit)", buildx_engine, buildx_engine / alone))
        rows.append(("cargo build alone, nothing to compile (the peers' first step)", docker_cargo, None))

        print(f"{'case':<76} {'seconds':>8} {'ratio':>7}")
        for name, seconds, ratio in rows:
            shown = f"{seconds:>8.2f}" if seconds is not None else f"{'':>8}"
            print(f"{name:<76} {shown} {('%.1fx' % ratio) if ratio else '':>7}")
        print(f"\n{'one run' if runs == 1 else f'median of {runs} runs'}; legacy: Docker {legacy}'s builder", end="")
        if env26 is not None:
            print(f"; BuildKit: {about26}")
            # The goal is about assembling an image (xtask assemble against buildx's build and
            # export); `xtask build` also runs cargo and reads the workspace's metadata, shown apart.
            if alone is not None:
                ratio = buildx_engine / alone
                print(f"goal, native assembly >=5x faster than docker buildx build + export: xtask assemble {ratio:.1f}x"
                      + (" (met)" if ratio >= 5 else " (NOT met)"))
            print(f"the whole `xtask build`, cargo and cargo metadata included, against cargo build + buildx: {buildx / assemble:.1f}x")
        else:
            print(f"\nnote: the BuildKit peer (Docker 26) is skipped: {about26}")
        if alone is None:
            print("note: this xtask has no `assemble` command; the assembly-alone figure is skipped")
        if not args.quick:
            print(f"the qemu build's context: the files git tracks, less {', '.join(dropped) or 'nothing'}, crates.io dependencies vendored")

        # Streaming: the same build with a small and a large file in the image.
        dockerfile = os.path.join(ws, "crates", APP, "Dockerfile")
        with open(dockerfile) as f:
            original = f.read()
        with open(dockerfile, "w") as f:
            f.write(original.replace("ENTRYPOINT", f"COPY crates/{APP}/payload.bin /payload.bin\nENTRYPOINT", 1))
        print()
        for mib in (16,) if args.quick else (16, 512):
            with open(os.path.join(ws, "crates", APP, "payload.bin"), "wb") as f:
                for _ in range(mib):
                    f.write(os.urandom(1 << 20))
            rss = peak_rss_kib([xtask, "build", APP, "--platform", "linux/amd64"], ws, env)
            print(f"peak RSS of xtask build with a {mib:>3} MiB file in the image (cargo metadata and cargo included): {rss / 1024:.0f} MiB")
        print(f"\nbenchmark wall time: {time.perf_counter() - wall:.1f} s{' (--quick)' if args.quick else ''}")
    finally:
        if env26 is not None:
            tags = [f"bench/{APP}:buildx"] + [f"bench/{APP}:buildx-{p.replace('/', '-')}" for p in TRIPLES]
            subprocess.run(["docker", "rmi", "-f"] + tags, env=env26, capture_output=True)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
