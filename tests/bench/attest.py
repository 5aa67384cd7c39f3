#!/usr/bin/env python3
"""Attestation benchmark: `release --all --sign KEY` (attestations are the default: an SBOM and a
signed provenance statement attached to every platform image, each index signed as cosign does)
against the same release with `--no-attest` and no key, in one run, against a local distribution registry (no referrers API: the
tag schema is used).

Three cases, each timed with and without attestations and signing, the runs alternating:
- `code change`: a commit that edits worker's source, then `release --all` (cargo compiles worker
  for both targets, every image is rewritten for the commit's time and pushed);
- `docs commit`: a docs commit, then `release --all` (nothing to compile, every image pushed);
- `unchanged`: `release --all` again of that commit (everything present; the attachments and
  signatures are looked up, none written).
Each repository gets only one variant.

`--quick` runs each case once (one run, both variants: the plain release is the cheap peer), so
that tests/ci.sh keeps the benchmark working; like the full run it exits non-zero, with the
failing command's output, when a command fails.
Usage: python3 tests/bench/attest.py [--runs N] [--quick]
"""
import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from push import Registry  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def timed(command, cwd, env):
    start = time.perf_counter()
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"{' '.join(command)} failed:\n{result.stdout}\n{result.stderr}")
    return time.perf_counter() - start


def registry_cpu(registry):
    """Seconds of CPU the registry process has used so far (user and system)."""
    with open(f"/proc/{registry.proc.pid}/stat") as f:
        fields = f.read().rsplit(") ", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def commit(ws, path, text):
    with open(os.path.join(ws, path), "a") as f:
        f.write(text)
    git = ["git", "-c", "user.name=bench", "-c", "user.email=bench@example.com"]
    subprocess.run([*git, "add", path], cwd=ws, check=True)
    subprocess.run([*git, "commit", "-qm", f"edit {path}"], cwd=ws, check=True)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="one run of each case (for tests/ci.sh)")
    args = parser.parse_args()
    if args.quick:
        args.runs = 1
    wall = time.perf_counter()
    for tool in ("docker-registry", "git", "openssl"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} is missing: bash tests/ci.sh installs it")
    subprocess.run(["cargo", "build", "--quiet", "-p", "xtask"], cwd=ROOT, check=True)
    xtask = os.path.join(ROOT, "target", "debug", "xtask")
    tmp = tempfile.mkdtemp(prefix="xtask-bench-attest-")
    registry = Registry()
    try:
        ws = os.path.join(tmp, "ws")
        subprocess.run(["git", "clone", "-q", ROOT, ws], check=True)
        env = dict(os.environ, CARGO_TARGET_DIR=os.path.join(tmp, "target"))
        for name in ("XTASK_REPOSITORY", "XTASK_PLATFORMS", "GITHUB_ACTIONS"):
            env.pop(name, None)
        key = os.path.join(tmp, "cosign.key")
        subprocess.run(f"openssl ecparam -name prime256v1 -genkey -noout | openssl pkcs8 -topk8 -nocrypt -out {key}", shell=True, check=True)
        variants = {"plain": ["--no-attest"], "attest": ["--sign", key]}
        repositories = {name: f"{registry.host}/acme/{name}" for name in variants}
        for name, extra in variants.items():
            variant_env = dict(env, CARGO_TARGET_DIR=os.path.join(tmp, f"target-{name}"))
            timed([xtask, "release", "--all", "--repository", repositories[name], *extra], ws, variant_env)
        cases = ("code change", "docs commit", "unchanged")
        times = {(case, name): [] for case in cases for name in variants}
        # Requests and registry CPU of each release, to say where the difference goes.
        load = {(case, name): [] for case in cases for name in variants}

        def measured(case, name, release, variant_env):
            requests, cpu = len(registry.requests()), registry_cpu(registry)
            times[(case, name)].append(timed(release, ws, variant_env))
            load[(case, name)].append((len(registry.requests()) - requests, registry_cpu(registry) - cpu))

        for run in range(args.runs):
            # Each variant compiles the change in its own target directory: neither finds it built.
            commit(ws, "crates/worker/src/main.rs", f"// change {run}\n")
            for name, extra in variants.items():
                release = [xtask, "release", "--all", "--repository", repositories[name], *extra]
                variant_env = dict(env, CARGO_TARGET_DIR=os.path.join(tmp, f"target-{name}"))
                measured("code change", name, release, variant_env)
            commit(ws, "NOTES.md", f"docs {run}\n")
            for name, extra in variants.items():
                release = [xtask, "release", "--all", "--repository", repositories[name], *extra]
                variant_env = dict(env, CARGO_TARGET_DIR=os.path.join(tmp, f"target-{name}"))
                measured("docs commit", name, release, variant_env)
                measured("unchanged", name, release, variant_env)
        print(f"release --all of the sample ({len(variants)} variants, 2 platforms) against docker-registry, median of {args.runs}")
        print(f"{'case':<12} {'plain':>9} {'attested+signed':>16} {'difference':>12} {'ratio':>7}")
        for case in cases:
            plain = statistics.median(times[(case, "plain")])
            attest = statistics.median(times[(case, "attest")])
            print(f"{case:<12} {plain:>7.3f} s {attest:>14.3f} s {attest - plain:>+10.3f} s {attest / plain:>6.2f}x")
        print("goal: at most 10% more wall time for a release, at most 0.1 s more when nothing changed")
        print(f"{'case':<12} {'requests plain/attested':>24} {'registry CPU plain/attested':>29}")
        for case in cases:
            requests = [statistics.median(n for n, _ in load[(case, name)]) for name in variants]
            cpu = [statistics.median(c for _, c in load[(case, name)]) for name in variants]
            print(f"{case:<12} {requests[0]:>11.0f} / {requests[1]:<10.0f} {cpu[0]:>14.2f} s / {cpu[1]:.2f} s")
        if args.quick:
            print(f"\nbenchmark wall time: {time.perf_counter() - wall:.1f} s (--quick)")
    finally:
        registry.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
