#!/usr/bin/env python3
"""No-change release benchmark: how long `cargo xtask release` takes, and what it sends, when
there is nothing to release, against a local distribution registry, with skopeo alongside.

A clone of this workspace is released once (`release --all`, which compiles the apps), then:
- `nothing changed`: a docs-only commit, then `release` (change detection and the registry check
  for unreleased apps, no build);
- `re-release`: `release --all` of that commit (build, then every blob and tag found present);
- `skopeo inspect`: an independent client reading each app's `-latest` index, the least a
  shell workflow does to learn that nothing needs pushing.
Each is the median of N runs of the compiled xtask; blob bytes sent are counted from the
registry's access log.

`--quick` times each case once (after its untimed first run, skopeo still alongside), so that
tests/ci.sh keeps the benchmark working; like the full run it exits non-zero, with the failing
command's output, when a command fails.
Usage: python3 tests/bench/release.py [--runs N] [--quick]
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
APPS = ["hello-api", "worker"]


def median_run(commands, cwd, runs, env):
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        for command in commands:
            result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)
            if result.returncode != 0:
                sys.exit(f"{' '.join(command)} failed:\n{result.stdout}\n{result.stderr}")
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def blob_writes(registry, since):
    """Requests after `since` that send blob bytes (upload PATCHes and PUTs)."""
    return [r for r in registry.requests()[since:] if "/blobs/uploads/" in r and r.split(" ")[0] in ("PUT", "PATCH")]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="one timed run of each case (for tests/ci.sh)")
    args = parser.parse_args()
    if args.quick:
        args.runs = 1
    wall = time.perf_counter()
    for tool in ("docker-registry", "skopeo", "git"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} is missing: bash tests/ci.sh installs it")

    subprocess.run(["cargo", "build", "--quiet", "-p", "xtask"], cwd=ROOT, check=True)
    xtask = os.path.join(ROOT, "target", "debug", "xtask")
    tmp = tempfile.mkdtemp(prefix="xtask-bench-release-")
    registry = Registry()
    try:
        ws = os.path.join(tmp, "ws")
        subprocess.run(["git", "clone", "-q", ROOT, ws], check=True)
        env = dict(os.environ, CARGO_TARGET_DIR=os.path.join(tmp, "target"))
        for name in ("XTASK_REPOSITORY", "XTASK_PLATFORMS", "GITHUB_ACTIONS"):
            env.pop(name, None)
        repository = f"{registry.host}/acme/prod"
        released = subprocess.run([xtask, "release", "--all", "--repository", repository], cwd=ws, env=env, capture_output=True, text=True)
        if released.returncode != 0:
            sys.exit(f"{xtask} release --all --repository {repository} failed:\n{released.stdout}\n{released.stderr}")
        with open(os.path.join(ws, "NOTES.md"), "w") as f:
            f.write("docs only\n")
        subprocess.run(["git", "-c", "user.name=bench", "-c", "user.email=bench@example.com", "add", "NOTES.md"], cwd=ws, check=True)
        subprocess.run(["git", "-c", "user.name=bench", "-c", "user.email=bench@example.com", "commit", "-qm", "docs"], cwd=ws, check=True)

        # Each case runs once untimed first: the first re-release of a new commit uploads that
        # commit's configs and layers (their timestamps are the commit's), later ones nothing.
        rows = []
        cases = [
            ("nothing changed", [[xtask, "release", "--repository", repository]]),
            ("re-release", [[xtask, "release", "--all", "--repository", repository]]),
            ("skopeo inspect", [["skopeo", "inspect", "--tls-verify=false", "--raw", f"docker://{repository}:{app}-latest"] for app in APPS]),
        ]
        for name, commands in cases:
            since = len(registry.requests())
            median_run(commands, ws, 1, env)
            first_writes = blob_writes(registry, since)
            since = len(registry.requests())
            seconds = median_run(commands, ws, args.runs, env)
            rows.append((name, seconds, first_writes, blob_writes(registry, since), (len(registry.requests()) - since) / args.runs))
        skopeo = rows[-1][1]

        print(f"release of {len(APPS)} apps (2 platforms each) against docker-registry on loopback, median of {args.runs}")
        print(f"{'case':<16} {'seconds':>8} {'/ skopeo':>9} {'blob writes, first run':>23} {'later runs':>11} {'requests/run':>13}")
        for name, seconds, first, later, requests in rows:
            print(f"{name:<16} {seconds:>8.3f} {seconds / skopeo:>8.2f}x {len(first):>23} {len(later):>11} {requests:>13.1f}")
        print("goal: nothing changed under 1 s, sending no blob bytes")
        if args.quick:
            print(f"\nbenchmark wall time: {time.perf_counter() - wall:.1f} s (--quick)")
    finally:
        registry.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
