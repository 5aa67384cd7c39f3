#!/usr/bin/env python3
"""Per-app compile benchmark: what the xtask's cargo runs (one per target, shared by the apps
only where their features agree, else one per app and target, so that no app's features leak
into another's binary) cost against the single `cargo build -p A -p B --target X --target Y` they
replaced, in the same run.

Both compile the sample apps (hello-api, worker) for both release targets, each case from an
empty target directory (cold) and then again with nothing to do (warm: cargo's start-up per
run). The apps' features disagree on one shared crate (`common`'s `ascii-logs`, hello-api only),
so the xtask runs each app alone and compiles `common` twice, as it must; the `agreeing` case
leaves that feature out of hello-api in a copy of the workspace, where the xtask runs both apps
together once per target.

`--quick` runs each case once (both feature cases, the single cargo run still alongside, cold and
warm), so that tests/ci.sh keeps the benchmark working; like the full run it exits non-zero, with
the failing command's output, when a command fails.
Usage: python3 tests/bench/perapp.py [--runs N] [--quick]
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
APPS = ["hello-api", "worker"]
TRIPLES = ["x86_64-unknown-linux-musl", "aarch64-unknown-linux-musl"]
LINKERS = [f"--config=target.{triple}.linker=\"rust-lld\"" for triple in TRIPLES]


def cargo(ws, target_dir, args):
    env = dict(os.environ, CARGO_TARGET_DIR=target_dir)
    result = subprocess.run(["cargo", "build", "--release", "--locked", "--offline", "--quiet"] + LINKERS + args, cwd=ws, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"cargo build {' '.join(args)} failed:\n{result.stderr[-3000:]}")


def single(ws, target_dir):
    cargo(ws, target_dir, [a for app in APPS for a in ("-p", app)] + [a for t in TRIPLES for a in ("--target", t)])


def per_app(ws, target_dir):
    for triple in TRIPLES:
        for app in APPS:
            cargo(ws, target_dir, ["-p", app, "--target", triple])


def per_target(ws, target_dir):
    for triple in TRIPLES:
        cargo(ws, target_dir, [a for app in APPS for a in ("-p", app)] + ["--target", triple])


def timed(build, ws, tmp, runs):
    cold, warm = [], []
    for run in range(runs):
        target_dir = os.path.join(tmp, f"target-{build.__name__}-{run}")
        start = time.perf_counter()
        build(ws, target_dir)
        cold.append(time.perf_counter() - start)
        start = time.perf_counter()
        build(ws, target_dir)
        warm.append(time.perf_counter() - start)
        shutil.rmtree(target_dir, ignore_errors=True)
    return statistics.median(cold), statistics.median(warm)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="one run of each case (for tests/ci.sh)")
    args = parser.parse_args()
    if args.quick:
        args.runs = 1
    wall = time.perf_counter()
    tmp = tempfile.mkdtemp(prefix="xtask-bench-perapp-")
    try:
        disagreeing = os.path.join(tmp, "ws")
        subprocess.run(["git", "clone", "-q", ROOT, disagreeing], check=True)
        agreeing = os.path.join(tmp, "ws-agreeing")
        subprocess.run(["git", "clone", "-q", ROOT, agreeing], check=True)
        manifest = os.path.join(agreeing, "crates", "hello-api", "Cargo.toml")
        with open(manifest) as f:
            text = f.read()
        with open(manifest, "w") as f:
            f.write(text.replace(', features = ["ascii-logs"]', ""))
        print(f"sample apps {', '.join(APPS)} for {', '.join(TRIPLES)}, median of {args.runs}, seconds")
        print(f"{'features':<12} {'single run cold':>16} {'xtask cold':>11} {'ratio':>6} {'single warm':>12} {'xtask warm':>11} {'ratio':>6}")
        for name, ws, xtask_runs in [("disagreeing", disagreeing, per_app), ("agreeing", agreeing, per_target)]:
            single_cold, single_warm = timed(single, ws, tmp, args.runs)
            app_cold, app_warm = timed(xtask_runs, ws, tmp, args.runs)
            print(f"{name:<12} {single_cold:>16.2f} {app_cold:>11.2f} {app_cold / single_cold:>5.2f}x {single_warm:>12.2f} {app_warm:>11.2f} {app_warm / single_warm:>5.2f}x")
        print("goal: at most 1.2x of the single run when features agree")
        if args.quick:
            print(f"\nbenchmark wall time: {time.perf_counter() - wall:.1f} s (--quick)")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
