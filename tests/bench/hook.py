#!/usr/bin/env python3
"""Pre-push hook benchmark: what `cargo xtask hook install` adds to a `git push` that changes no
app (a docs-only commit), against the same push without the hook.

A clone of this workspace gets a bare remote on disk and the hook; then, N times, a docs-only
commit is pushed with the hook (`git push`, which runs `cargo xtask hook run` as installed:
cargo's own start-up included) and another without it (`git push --no-verify`, the peer: what a
push costs anyway). The xtask is compiled first, so this is the warm case.

`--quick` pushes once with the hook and once without it (after the warm-up push, which checks
that the hook says no app changed), so that tests/ci.sh keeps the benchmark working; like the
full run it exits non-zero, with the failing command's output, when a command fails.
Usage: python3 tests/bench/hook.py [--runs N] [--quick]
"""
import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
GIT = ["git", "-c", "user.name=bench", "-c", "user.email=bench@example.com"]


def timed_push(ws, env, count, extra):
    """Commits a docs-only change and pushes it; returns the seconds the push took."""
    with open(os.path.join(ws, "NOTES.md"), "a") as f:
        f.write(f"note {count}\n")
    subprocess.run(GIT + ["commit", "-qam", f"docs {count}"], cwd=ws, check=True)
    start = time.perf_counter()
    result = subprocess.run(GIT + ["push", "-q", "origin", "main"] + extra, cwd=ws, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        sys.exit(f"git push failed:\n{result.stderr}")
    return seconds, result.stderr


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--quick", action="store_true", help="one push with the hook and one without (for tests/ci.sh)")
    args = parser.parse_args()
    if args.quick:
        args.runs = 1
    wall = time.perf_counter()
    tmp = tempfile.mkdtemp(prefix="xtask-bench-hook-")
    try:
        ws, remote = os.path.join(tmp, "ws"), os.path.join(tmp, "remote.git")
        subprocess.run(["git", "clone", "-q", ROOT, ws], check=True)
        subprocess.run(["git", "init", "-q", "--bare", remote], check=True)
        subprocess.run(["git", "remote", "set-url", "origin", remote], cwd=ws, check=True)
        with open(os.path.join(ws, "NOTES.md"), "w") as f:
            f.write("notes\n")
        subprocess.run(GIT + ["add", "NOTES.md"], cwd=ws, check=True)
        subprocess.run(GIT + ["commit", "-qm", "notes"], cwd=ws, check=True)
        subprocess.run(GIT + ["push", "-q", "origin", "HEAD:main"], cwd=ws, check=True)
        subprocess.run(["git", "branch", "-q", "--set-upstream-to=origin/main"], cwd=ws, check=False)
        env = dict(os.environ, CARGO_TARGET_DIR=os.path.join(ROOT, "target"))
        installed = subprocess.run(["cargo", "xtask", "hook", "install"], cwd=ws, env=env, capture_output=True, text=True)
        if installed.returncode != 0:
            sys.exit(f"cargo xtask hook install failed:\n{installed.stdout[-3000:]}\n{installed.stderr[-3000:]}")
        # Warm-up: the first run compiles nothing new but fills caches.
        _, log = timed_push(ws, env, 0, [])
        if "no app changed" not in log:
            sys.exit(f"the hook did not say that no app changed:\n{log}")
        hook, plain = [], []
        for run in range(args.runs):
            hook.append(timed_push(ws, env, 2 * run + 1, [])[0])
            plain.append(timed_push(ws, env, 2 * run + 2, ["--no-verify"])[0])
        hook, plain = statistics.median(hook), statistics.median(plain)
        print(f"git push of a docs-only commit to a bare remote on disk, median of {args.runs}")
        print(f"{'case':<28} {'seconds':>8} {'/ plain push':>13}")
        print(f"{'with the pre-push hook':<28} {hook:>8.3f} {hook / plain:>12.2f}x")
        print(f"{'git push --no-verify (peer)':<28} {plain:>8.3f} {1:>12.2f}x")
        print(f"the hook adds {hook - plain:.3f} s; goal: under 1 s warm")
        if args.quick:
            print(f"\nbenchmark wall time: {time.perf_counter() - wall:.1f} s (--quick)")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
