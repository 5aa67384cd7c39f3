#!/usr/bin/env python3
"""Pre-push hook benchmark: what `cargo xtask hook install` adds to a `git push` that changes no
app (a docs-only commit), against the same push without the hook.

A clone of this workspace gets a bare remote on disk and the hook; then, N times, a docs-only
commit is pushed with the hook (`git push`, which runs `cargo xtask hook run` as installed:
cargo's own start-up included) and another without it (`git push --no-verify`, the peer: what a
push costs anyway). The xtask is compiled first, so this is the warm case.
Usage: python3 tests/bench/hook.py [--runs N]
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
    args = parser.parse_args()
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
        subprocess.run(["cargo", "xtask", "hook", "install"], cwd=ws, env=env, check=True, capture_output=True)
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
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
