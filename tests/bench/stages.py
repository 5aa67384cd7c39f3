#!/usr/bin/env python3
"""Builder-stage benchmark: a real-shaped multi-stage Rust Dockerfile built for linux/amd64 and
linux/arm64 from clean, by the xtask and by its two peers, in the same run.

The app is the workspace's own `worker`, with crates/worker/Dockerfile written as Rust
repositories write theirs:

    FROM bench/rust AS builder                   # Debian bookworm + gcc + rustup's toolchain
    WORKDIR /src
    COPY . .
    RUN cargo build --release --locked --offline -p worker
    FROM 127.0.0.1:PORT/bench/debian:bookworm    # glibc Debian, amd64 and arm64
    RUN useradd --system --no-create-home worker
    COPY --from=builder /src/target/release/worker /usr/local/bin/worker
    USER worker
    ENTRYPOINT ["/usr/local/bin/worker"]

1. `xtask build worker --platform linux/amd64,linux/arm64` with an empty target directory and an
   empty zig cache: it replaces the builder stage by its own cross-compilation (gnu binaries
   linked by zig against the base's glibc, which it reads from the base's layers in the
   registry; no qemu) and builds the runtime stage, whose RUN needs an engine, with the Docker
   engine (the arm64 RUN under qemu; the engine's layer cache is used when it has the step, as
   the xtask runs `docker build` without --no-cache).
2. "qemu": `docker build --no-cache` of the same Dockerfile as written, once per platform: the
   builder stage's `cargo build` runs natively for amd64 and under qemu for arm64, the usual
   route to a multi-arch image without cross-compilation. Goal: the xtask >=10x faster.
3. "zig in Dockerfile": the same app with the builder stage written the best-practice way for
   cross-compiling inside the Dockerfile: `FROM --platform=$BUILDPLATFORM` an amd64 Rust image
   with zig and cargo-zigbuild, `ARG TARGETARCH` mapped by a shell `case` to the Rust target,
   `cargo zigbuild --release --locked --offline -p worker --target <triple>.2.36` (gnu, pinned to
   bookworm's glibc 2.36, as the runtime is glibc Debian), the binary copied out to the same
   runtime stage; `docker build --no-cache` once per platform (zig's cache in the build is empty
   too). Goal: the xtask >=1.5x faster.
Each image then runs once per platform (`docker run`, the worker with empty input prints its
summary line; arm64 under qemu's binfmt handler; the xtask's layout is pushed to the registry
for that, its base's layers fetched back into it). Docker is this machine's engine (20.10). The
peers build with its BuildKit (v0.8, through Docker 26's buildx plugin, XTASK_TEST_DOCKER26_BUILDX,
build.py's default path): its legacy builder cannot build a stage whose FROM names another
platform than --platform (the stage's COPY fails: "image ... does not match the specified
platform"); BuildKit also sets BUILDPLATFORM and TARGETARCH. The xtask runs the runtime stage
with the engine as it finds it (the legacy builder, no buildx plugin in the default Docker
configuration). The docker builds' context is build.py's `sample_project`: the files git tracks
less the members the worker does not reach, crates.io dependencies vendored.

Made here, without Docker Hub, once per machine and kept: the builder images
xtask-bench/rust-gcc:<rust>-linux-amd64 (debootstrap amd64 minbase with gcc and libc6-dev in
/opt/xtask-bench/bookworm-amd64-gcc, plus this machine's x86_64 toolchain) and
-linux-arm64 (cross.py's), xtask-bench/rust-zig:<rust>-zig<zig>-linux-amd64 (the amd64 one plus
PyPI's zig and cargo-zigbuild from /opt/xtask-zig and the aarch64-unknown-linux-gnu std), and the
runtime bases xtask-bench/debian:bookworm-linux-amd64 (/opt/xtask-rootfs/bookworm-amd64.tar,
tests/ci.sh) and -linux-arm64 (debootstrap arm64 minbase in /opt/xtask-bench/bookworm-arm64).
Each run pushes the bases to a docker-registry on a free loopback port as one manifest list,
bench/debian:bookworm (the xtask reads its base from a registry, and its engine route pulls it
per platform). Needs root, dockerd, qemu binfmt for arm64, debootstrap (first run), skopeo,
docker-registry, the buildx plugin, zig and cargo-zigbuild in /opt/xtask-zig (tests/ci.sh
installs them).

`--quick` (for tests/ci.sh, offline, well under a minute) builds with the xtask only, for
linux/amd64 only, with the zig cache as it is; without the docker peers. With Docker, skopeo,
docker-registry, zig and the Debian tar it builds the real-shaped Dockerfile on the registry's
amd64 base (its RUN by the engine); otherwise the same builder stage before a `FROM scratch`
runtime stage without RUN (assembled natively), and says so. Like the full run it exits non-zero
when a command fails.
Usage: python3 tests/bench/stages.py [--runs N] [--quick]
"""
import argparse
import glob
import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

from build import DOCKER26_BUILDX, run, rust_version, sample_project, timed
from cross import commit, make_rust_image as make_arm64_rust_image

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
APP = "worker"
PLATFORMS = ["linux/amd64", "linux/arm64"]
ZIG_VENV = os.environ.get("XTASK_BENCH_ZIG_VENV", "/opt/xtask-zig")
ZIG_DIR = os.path.join(ZIG_VENV, "lib", "python3.11", "site-packages", "ziglang")
AMD64_GCC_ROOTFS = "/opt/xtask-bench/bookworm-amd64-gcc"
ARM64_ROOTFS = "/opt/xtask-bench/bookworm-arm64"
AMD64_ROOTFS_TAR = "/opt/xtask-rootfs/bookworm-amd64.tar"
RUST_IMAGE = "xtask-bench/rust-gcc:{version}-linux-amd64"
ZIG_IMAGE = "xtask-bench/rust-zig:{version}-zig{zig}-linux-amd64"
DEBIAN_IMAGE = "xtask-bench/debian:bookworm-{slug}"
REPLACED = "runs cargo build, which the xtask cross-compiles instead"

RUNTIME_STAGE = (
    "FROM {base}\n"
    "RUN useradd --system --no-create-home worker\n"
    "COPY --from=builder {binary} /usr/local/bin/worker\n"
    "USER worker\n"
    'ENTRYPOINT ["/usr/local/bin/worker"]\n'
)
REAL_SHAPED = (
    "FROM bench/rust AS builder\n"
    "WORKDIR /src\n"
    "COPY . .\n"
    f"RUN cargo build --release --locked --offline -p {APP}\n"
) + RUNTIME_STAGE.replace("{binary}", f"/src/target/release/{APP}")
ZIG_SHAPED = (
    "FROM --platform=$BUILDPLATFORM bench/rust-zig AS builder\n"
    "ARG TARGETARCH\n"
    "WORKDIR /src\n"
    "COPY . .\n"
    'RUN case "$TARGETARCH" in \\\n'
    "      amd64) target=x86_64-unknown-linux-gnu ;; \\\n"
    "      arm64) target=aarch64-unknown-linux-gnu ;; \\\n"
    '      *) echo "unsupported architecture $TARGETARCH" >&2; exit 1 ;; \\\n'
    "    esac \\\n"
    f" && cargo zigbuild --release --locked --offline -p {APP} --target $target.2.36 \\\n"
    f" && cp target/$target/release/{APP} /{APP}\n"
) + RUNTIME_STAGE.replace("{binary}", f"/{APP}")
# --quick without an engine: the same builder stage, a runtime stage the xtask assembles natively.
SCRATCH_SHAPED = REAL_SHAPED.split("FROM {base}")[0] + (
    "FROM scratch\n"
    f"COPY --from=builder /src/target/release/{APP} /usr/local/bin/{APP}\n"
    "USER 65532:65532\n"
    f'ENTRYPOINT ["/usr/local/bin/{APP}"]\n'
)


def slug(platform):
    return platform.replace("/", "-")


def image_exists(image):
    return subprocess.run(["docker", "image", "inspect", image], capture_output=True).returncode == 0


def build_image(context, dockerfile, platform, image):
    """`docker build` of a Dockerfile given as text, for one platform. A build whose first step
    writes files records the platform asked for (`docker import` of Docker 20.10 records the host's)."""
    run(["docker", "build", "-q", "--platform", platform, "-t", image, "-f", "-", context], input=dockerfile)


def toolchain_copy(destination, targets):
    """This machine's Rust toolchain (rustc --print sysroot) without its docs and tools, with the
    std of `targets` only."""
    sysroot = run(["rustc", "--print", "sysroot"]).stdout.strip()
    os.makedirs(os.path.join(destination, "bin"))
    for name in ("cargo", "rustc", "rustdoc"):
        shutil.copy2(os.path.join(sysroot, "bin", name), os.path.join(destination, "bin"))
    os.makedirs(os.path.join(destination, "lib", "rustlib"))
    for path in glob.glob(os.path.join(sysroot, "lib", "*.so*")):
        shutil.copy2(path, os.path.join(destination, "lib"), follow_symlinks=False)
    for target in targets:
        source = os.path.join(sysroot, "lib", "rustlib", target)
        if not os.path.isdir(source):
            sys.exit(f"{source} is missing: rustup target add {target}")
        shutil.copytree(source, os.path.join(destination, "lib", "rustlib", target), symlinks=True)


def make_amd64_rust_image(tmp):
    """Debian bookworm amd64 with gcc and libc6-dev (debootstrap), then this machine's x86_64
    toolchain: what the official rust:bookworm image holds for a build (cross.py makes arm64's)."""
    image = RUST_IMAGE.format(version=rust_version())
    if image_exists(image):
        return image
    if not os.path.exists(os.path.join(AMD64_GCC_ROOTFS, "usr/bin/gcc")):
        print("making Debian bookworm amd64 with gcc (debootstrap, once per machine)", file=sys.stderr)
        shutil.rmtree(AMD64_GCC_ROOTFS, ignore_errors=True)
        run(["debootstrap", "--arch=amd64", "--variant=minbase", "--include=gcc,libc6-dev", "bookworm", AMD64_GCC_ROOTFS, "http://deb.debian.org/debian"])
    context = os.path.join(tmp, "rust-image-amd64")
    toolchain_copy(os.path.join(context, "rust"), ["x86_64-unknown-linux-gnu"])
    run(["tar", "--numeric-owner", "-C", AMD64_GCC_ROOTFS, "-cf", os.path.join(context, "rootfs.tar"), "."])
    build_image(context, (
        "FROM scratch\n"
        "ADD rootfs.tar /\n"
        "COPY rust/ /usr/local/rust/\n"
        "ENV PATH=/usr/local/rust/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin CARGO_HOME=/cargo\n"
    ), "linux/amd64", image)
    run(["docker", "run", "--rm", "--platform", "linux/amd64", image, "sh", "-c", "rustc --version && gcc --version"])
    shutil.rmtree(context, ignore_errors=True)
    return image


def zig_version():
    return run([os.path.join(ZIG_DIR, "zig"), "version"]).stdout.strip()


def make_zig_image(tmp, rust_image):
    """The amd64 Rust image plus PyPI's zig (its binary and lib/), cargo-zigbuild and the std of
    aarch64-unknown-linux-gnu: a builder image for cross-compiling inside a Dockerfile."""
    image = ZIG_IMAGE.format(version=rust_version(), zig=zig_version())
    if image_exists(image):
        return image
    context = os.path.join(tmp, "zig-image")
    os.makedirs(os.path.join(context, "zig"))
    shutil.copy2(os.path.join(ZIG_DIR, "zig"), os.path.join(context, "zig"))
    shutil.copytree(os.path.join(ZIG_DIR, "lib"), os.path.join(context, "zig", "lib"), symlinks=True)
    shutil.copy2(os.path.join(ZIG_VENV, "bin", "cargo-zigbuild"), context)
    toolchain_copy(os.path.join(context, "rust"), ["aarch64-unknown-linux-gnu"])
    build_image(context, (
        f"FROM {rust_image}\n"
        "COPY zig/ /usr/local/zig/\n"
        "COPY cargo-zigbuild /usr/local/bin/cargo-zigbuild\n"
        "COPY rust/lib/rustlib/aarch64-unknown-linux-gnu/ /usr/local/rust/lib/rustlib/aarch64-unknown-linux-gnu/\n"
        "ENV PATH=/usr/local/zig:/usr/local/rust/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n"
    ), "linux/amd64", image)
    run(["docker", "run", "--rm", "--platform", "linux/amd64", image, "sh", "-c", "zig version && cargo-zigbuild --version && rustc --version"])
    shutil.rmtree(context, ignore_errors=True)
    return image


def make_debian_images(tmp, platforms):
    """The runtime bases, one image per platform: amd64 from tests/ci.sh's Debian tar, arm64 from
    a debootstrap (its second stage under qemu; made once per machine)."""
    images = {}
    for platform in platforms:
        image = DEBIAN_IMAGE.format(slug=slug(platform))
        images[platform] = image
        if image_exists(image):
            continue
        if platform == "linux/amd64":
            if not os.path.isfile(AMD64_ROOTFS_TAR):
                sys.exit(f"{AMD64_ROOTFS_TAR} is missing: tests/ci.sh makes it")
            context, tar = os.path.dirname(AMD64_ROOTFS_TAR), os.path.basename(AMD64_ROOTFS_TAR)
        else:
            if not os.path.exists(os.path.join(ARM64_ROOTFS, "usr/bin/apt-get")):
                print("making Debian bookworm arm64 (debootstrap under qemu, once per machine)", file=sys.stderr)
                shutil.rmtree(ARM64_ROOTFS, ignore_errors=True)
                run(["debootstrap", "--arch=arm64", "--variant=minbase", "bookworm", ARM64_ROOTFS, "http://deb.debian.org/debian"])
            context, tar = os.path.join(tmp, "debian-arm64"), "rootfs.tar"
            os.makedirs(context)
            run(["tar", "--numeric-owner", "-C", ARM64_ROOTFS, "-cf", os.path.join(context, tar), "."])
        build_image(context, f'FROM scratch\nADD {tar} /\nCMD ["bash"]\n', platform, image)
    return images


class Registry:
    """Debian's docker-registry on a free loopback port, its storage in `directory`."""

    def __init__(self, directory):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        self.host = f"127.0.0.1:{port}"
        os.makedirs(directory)
        config = os.path.join(directory, "config.yml")
        with open(config, "w") as f:
            f.write(
                "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n"
                f"    rootdirectory: {os.path.join(directory, 'data')}\nhttp:\n  addr: {self.host}\n"
            )
        self.log = open(os.path.join(directory, "log"), "w")
        self.process = subprocess.Popen(["docker-registry", "serve", config], stdout=self.log, stderr=self.log)
        deadline = time.time() + 15
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.time() > deadline or self.process.poll() is not None:
                    sys.exit(f"docker-registry did not start:\n{open(os.path.join(directory, 'log')).read()[-3000:]}")
                time.sleep(0.05)

    def push_index(self, repository, tag, images):
        """Pushes each platform's image with skopeo, then a manifest list of them as `tag`."""
        entries = []
        for platform, image in images.items():
            arch_tag = f"{tag}-{slug(platform)}"
            run(["skopeo", "copy", "-q", "--dest-tls-verify=false", f"docker-daemon:{image}", f"docker://{self.host}/{repository}:{arch_tag}"])
            request = urllib.request.Request(
                f"http://{self.host}/v2/{repository}/manifests/{arch_tag}",
                headers={"Accept": "application/vnd.docker.distribution.manifest.v2+json"},
            )
            with urllib.request.urlopen(request) as response:
                body, media_type = response.read(), response.headers["Content-Type"]
            os_name, architecture = platform.split("/")
            entry_platform = {"architecture": architecture, "os": os_name}
            if architecture == "arm64":
                entry_platform["variant"] = "v8"
            entries.append({"mediaType": media_type, "digest": "sha256:" + hashlib.sha256(body).hexdigest(), "size": len(body), "platform": entry_platform})
        index = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.list.v2+json", "manifests": entries}).encode()
        request = urllib.request.Request(
            f"http://{self.host}/v2/{repository}/manifests/{tag}", data=index, method="PUT",
            headers={"Content-Type": "application/vnd.docker.distribution.manifest.list.v2+json"},
        )
        with urllib.request.urlopen(request) as response:
            if response.status != 201:
                sys.exit(f"PUT of the manifest list answered {response.status}")
        return f"{self.host}/{repository}:{tag}"

    def stop(self):
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self.log.close()


def xtask_layout(ws, target):
    for directory in (os.path.join(ws, "target"), target):
        path = os.path.join(directory, "xtask", "oci", APP)
        if os.path.isfile(os.path.join(path, "index.json")):
            return path
    sys.exit(f"no OCI layout of {APP} under {ws}/target or {target}")


def complete_layout(layout, registry, repository):
    """The xtask's layout leaves out the base's layers (they are in the base's registry, where a
    push mounts them): fetches those blobs from the registry, so that skopeo can copy the images
    out of the layout into the engine."""
    def blob(digest):
        return os.path.join(layout, "blobs", *digest.split(":", 1))

    def walk(descriptor):
        if not os.path.exists(blob(descriptor["digest"])):
            if registry is None:
                sys.exit(f"{descriptor['digest']} is not in {layout}")
            with urllib.request.urlopen(f"http://{registry.host}/v2/{repository}/blobs/{descriptor['digest']}") as response:
                data = response.read()
            with open(blob(descriptor["digest"]), "wb") as f:
                f.write(data)
        if "manifest" in descriptor.get("mediaType", "") or "index" in descriptor.get("mediaType", ""):
            with open(blob(descriptor["digest"])) as f:
                document = json.load(f)
            for child in document.get("manifests", []) + document.get("layers", []) + ([document["config"]] if "config" in document else []):
                walk(child)

    with open(os.path.join(layout, "index.json")) as f:
        for descriptor in json.load(f)["manifests"]:
            walk(descriptor)


def run_image(image, platform):
    """The worker with empty input prints its summary line (words=0 platform=...)."""
    printed = run(["docker", "run", "--rm", "--platform", platform, image], stdin=subprocess.DEVNULL).stdout.strip().splitlines()
    return printed[-1] if printed else ""


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=1, help="each build from clean takes a minute or more")
    parser.add_argument("--quick", action="store_true", help="the xtask only, linux/amd64 only, no docker peers (for tests/ci.sh)")
    args = parser.parse_args()
    runs = 1 if args.quick else args.runs
    wall = time.perf_counter()
    zig = os.path.join(ZIG_DIR, "zig")
    engine = shutil.which("docker") is not None and subprocess.run(["docker", "info"], capture_output=True).returncode == 0
    missing = [what for what, there in (
        ("a Docker engine", engine),
        ("skopeo", shutil.which("skopeo")),
        ("docker-registry", shutil.which("docker-registry")),
        (zig, os.path.isfile(zig)),
        (AMD64_ROOTFS_TAR, os.path.isfile(AMD64_ROOTFS_TAR)),
    ) if not there]
    if not args.quick:
        if os.geteuid() != 0:
            missing.append("root")
        for tool in ("debootstrap", os.path.join(ZIG_VENV, "bin", "cargo-zigbuild"), DOCKER26_BUILDX):
            if shutil.which(tool) is None and not os.path.isfile(tool):
                missing.append(tool)
        if not os.path.exists("/proc/sys/fs/binfmt_misc/qemu-aarch64"):
            missing.append("qemu's binfmt handler for arm64")
        if missing:
            sys.exit(f"missing: {', '.join(missing)} (see the docstring; --quick needs none of them)")
    platforms = ["linux/amd64"] if args.quick else PLATFORMS
    # --quick on a machine without the engine or the base: a runtime stage the xtask assembles.
    with_base = not missing

    run(["cargo", "build", "--quiet", "-p", "xtask"], cwd=ROOT)
    xtask = os.path.join(ROOT, "target", "debug", "xtask")
    tmp = tempfile.mkdtemp(prefix="xtask-bench-stages-")
    registry = None
    made_tags = []
    try:
        ws = os.path.join(tmp, "ws")
        run(["git", "clone", "-q", ROOT, ws])
        base = None
        if with_base:
            debian = make_debian_images(tmp, platforms)
            registry = Registry(os.path.join(tmp, "registry"))
            base = registry.push_index("bench/debian", "bookworm", debian)
            made_tags.append(base)
            dockerfile = REAL_SHAPED.replace("{base}", base)
        else:
            dockerfile = SCRATCH_SHAPED
        with open(os.path.join(ws, "crates", APP, "Dockerfile"), "w") as f:
            f.write(dockerfile)
        commit(ws, "worker compiles in a builder stage")

        if not args.quick:
            # The peers build with BuildKit (the legacy builder cannot build a stage of another
            # platform than --platform: its COPY fails), the engine's own through the buildx plugin.
            config = os.path.join(tmp, "docker-config")
            os.makedirs(os.path.join(config, "cli-plugins"))
            os.symlink(DOCKER26_BUILDX, os.path.join(config, "cli-plugins", "docker-buildx"))
            buildkit = dict(os.environ, DOCKER_BUILDKIT="1", DOCKER_CONFIG=config)
            buildx = run(["docker", "buildx", "version"], env=buildkit).stdout.split()
            about_buildkit = run(["docker", "buildx", "inspect", "default"], env=buildkit).stdout
            about_buildkit = next((line.split(":", 1)[1].strip() for line in about_buildkit.splitlines() if line.startswith("BuildKit")), "?")
            rust_images = {"linux/amd64": make_amd64_rust_image(tmp), "linux/arm64": make_arm64_rust_image(tmp)}
            zig_image = make_zig_image(tmp, rust_images["linux/amd64"])
            run(["docker", "tag", zig_image, "bench/rust-zig:latest"])
            made_tags.append("bench/rust-zig:latest")
            project, dropped = sample_project(ws, tmp, rust_images["linux/arm64"])
            with open(os.path.join(project, "stages-qemu.Dockerfile"), "w") as f:
                f.write(dockerfile)
            with open(os.path.join(project, "stages-zig.Dockerfile"), "w") as f:
                f.write(ZIG_SHAPED.replace("{base}", base))

        env = dict(os.environ, XTASK_ZIG=zig) if os.path.isfile(zig) else dict(os.environ)
        for name in ("XTASK_REPOSITORY", "XTASK_PLATFORMS", "GITHUB_ACTIONS", "SOURCE_DATE_EPOCH", "RUSTFLAGS"):
            env.pop(name, None)
        logs = []

        def xtask_build():
            """From clean: an empty target directory and (full run) an empty zig cache, as the
            peers' builds in the engine have."""
            target = os.path.join(tmp, "target-xtask")
            shutil.rmtree(target, ignore_errors=True)
            shutil.rmtree(os.path.join(ws, "target"), ignore_errors=True)
            build_env = dict(env, CARGO_TARGET_DIR=target)
            if not args.quick:
                cache = os.path.join(tmp, "zig-cache-xtask")
                shutil.rmtree(cache, ignore_errors=True)
                build_env["ZIG_GLOBAL_CACHE_DIR"] = cache
            logs.append(run([xtask, "build", APP, "--platform", ",".join(platforms)], cwd=ws, env=build_env).stderr)

        per_platform = {}

        def docker_builds(route, dockerfile_name, prepare):
            def action():
                for platform in platforms:
                    prepare(platform)
                    start = time.perf_counter()
                    run(["docker", "build", "--no-cache", "-q", "--platform", platform,
                         "-f", dockerfile_name, "-t", f"bench-stages/{APP}-{route}:{slug(platform)}", "."], cwd=project, env=buildkit)
                    per_platform.setdefault((route, platform), []).append(time.perf_counter() - start)
                    made_tags.append(f"bench-stages/{APP}-{route}:{slug(platform)}")
            return action

        def tag_rust(platform):
            run(["docker", "tag", rust_images[platform], "bench/rust:latest"])
            if "bench/rust:latest" not in made_tags:
                made_tags.append("bench/rust:latest")

        rows = []
        shown = "+".join(p.split("/")[1] for p in platforms)
        print(f"{'case':<76} {'seconds':>8} {'ratio':>7}", flush=True)

        def row(name, seconds, ratio=None):
            rows.append((name, seconds, ratio))
            text = f"{seconds:>8.2f}" if seconds is not None else f"{'':>8}"
            print(f"{name:<76} {text} {('%.1fx' % ratio) if ratio else '':>7}", flush=True)

        native = timed(xtask_build, runs)
        log = logs[-1]
        if REPLACED not in log:
            sys.exit(f"the xtask did not replace the builder stage:\n{log[-3000:]}")
        how = "runtime RUN by Docker" if with_base else "FROM scratch, assembled"
        row(f"from clean: xtask build ({shown}; cross-compiled, {how})", native)
        qemu = zigged = None
        if args.quick:
            row("  docker build as written (cargo build, qemu for arm64): skipped (--quick)", None)
            row("  docker build, zig in Dockerfile (cargo zigbuild): skipped (--quick)", None)
        else:
            qemu = timed(docker_builds("qemu", "stages-qemu.Dockerfile", tag_rust), runs)
            row("  docker build --no-cache x2, as written (cargo build, qemu for arm64)", qemu, qemu / native)
            for platform in platforms:
                seconds = sorted(per_platform[("qemu", platform)])[len(per_platform[("qemu", platform)]) // 2]
                row(f"    of which {platform}", seconds)
            zigged = timed(docker_builds("zig", "stages-zig.Dockerfile", lambda platform: None), runs)
            row("  docker build --no-cache x2, zig in Dockerfile (cargo zigbuild on amd64)", zigged, zigged / native)
            for platform in platforms:
                seconds = sorted(per_platform[("zig", platform)])[len(per_platform[("zig", platform)]) // 2]
                row(f"    of which {platform}", seconds)

        # Each route's image runs once per platform (arm64 under qemu's binfmt handler).
        print()
        stage_lines = [line.strip() for line in log.splitlines() if REPLACED in line]
        print(f"xtask: {stage_lines[0] if stage_lines else ''}")
        if engine:
            layout = xtask_layout(ws, os.path.join(tmp, "target-xtask"))
            complete_layout(layout, registry, "bench/debian")
            # skopeo cannot convert the layout's manifests for docker-daemon: (docker layer media
            # types in OCI manifests); the engine pulls them from the registry as they are.
            if registry is not None:
                image = f"{registry.host}/bench/{APP}-xtask:latest"
                run(["skopeo", "copy", "-q", "--all", "--dest-tls-verify=false", f"oci:{layout}", f"docker://{image}"])
                for platform in platforms:
                    if platform == "linux/amd64" or os.path.exists("/proc/sys/fs/binfmt_misc/qemu-aarch64"):
                        run(["docker", "pull", "-q", "--platform", platform, image])
                        made_tags.append(image)
                        print(f"  xtask {platform}: {run_image(image, platform)}")
            if not args.quick:
                for route in ("qemu", "zig"):
                    for platform in platforms:
                        print(f"  {route} {platform}: {run_image(f'bench-stages/{APP}-{route}:{slug(platform)}', platform)}")

        print(f"\n{'one run' if runs == 1 else f'median of {runs} runs'}; Docker {run(['docker', 'version', '--format', '{{.Server.Version}}']).stdout.strip() if engine else '(none)'}"
              f"{f', peers by its BuildKit {about_buildkit} (buildx {buildx[1] if len(buildx) > 1 else buildx})' if not args.quick else ''}; zig {zig_version() if os.path.isfile(zig) else '(none)'}"
              f"{'; the xtask and the zig peer both start with an empty zig cache' if not args.quick else ''}")
        if not with_base:
            print(f"note: without {', '.join(missing)}, the runtime stage is FROM scratch without RUN")
        if not args.quick:
            print(f"the docker builds' context: the files git tracks, less {', '.join(dropped) or 'nothing'}, crates.io dependencies vendored")
            print(f"goal, xtask >=10x faster than docker build as written (qemu): {qemu / native:.1f}x" + (" (met)" if qemu / native >= 10 else " (NOT met)"))
            print(f"goal, xtask >=1.5x faster than zig in Dockerfile: {zigged / native:.2f}x" + (" (met)" if zigged / native >= 1.5 else " (NOT met)"))
        print(f"\nbenchmark wall time: {time.perf_counter() - wall:.1f} s{' (--quick)' if args.quick else ''}")
    finally:
        if registry is not None:
            registry.stop()
        if engine and made_tags:
            subprocess.run(["docker", "rmi"] + sorted(set(made_tags)), capture_output=True)
        if engine and registry is not None:
            # A pull from the registry also left digest references (repository@sha256:...).
            listed = subprocess.run(["docker", "images", "--digests", "--format", "{{.Repository}}@{{.Digest}}"], capture_output=True, text=True).stdout
            pulled = [line for line in listed.split() if line.startswith(registry.host + "/") and "@sha256:" in line]
            if pulled:
                subprocess.run(["docker", "rmi"] + pulled, capture_output=True)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
