#!/usr/bin/env python3
"""Release sharding benchmark: one `release --all` of a generated 50-app monorepo against the
jobs `changed --all --json --shards 4` plans, each run the way a CI runner runs it, in one run.

The generated workspace has 10 libraries and 50 apps (native builder: FROM scratch and the
cross-compiled binary), each app depending on two libraries and having code of its own
(`--handlers` functions; 0 leaves a bare main, where the libraries every job compiles weigh most). Every job gets a fresh clone and
an empty target directory (a runner without a warm cache) and releases into a local OCI layout,
so the network is not measured. The single job releases every app for linux/amd64 and
linux/arm64; each shard releases its apps for its platforms. The jobs run one after another on
this machine, so each is timed alone, as on a runner of its own; each job runs --runs times and
its shortest run counts.
Prints each job's wall time, the slowest shard's share of the single job (the goal: at most 1/3)
and the sum over the shards (what the runners spend together).

`--quick` runs each job once on 8 apps with 4 handlers each (still 4 shards, the single job
alongside; `--apps`, `--handlers` and `--shards` still apply), so that tests/ci.sh keeps the
benchmark working; like the full run it exits non-zero, with the failing command's output, when
a command fails.
Usage: python3 tests/bench/shards.py [--apps N] [--shards N] [--handlers N] [--runs N] [--keep DIR] [--quick]
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LIBRARIES = 10


def write(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)


def generate(ws, apps, args_handlers):
    os.makedirs(ws)
    write(os.path.join(ws, "Cargo.toml"), '[workspace]\nmembers = ["crates/*"]\nresolver = "2"\n\n'
          '[workspace.metadata.xtask]\nplatforms = ["linux/amd64", "linux/arm64"]\n\n[profile.release]\nstrip = true\n')
    # The sample's linker settings: rust-lld for both musl targets.
    os.makedirs(os.path.join(ws, ".cargo"))
    shutil.copy(os.path.join(ROOT, ".cargo", "config.toml"), os.path.join(ws, ".cargo", "config.toml"))
    write(os.path.join(ws, ".gitignore"), "/target\n")
    for i in range(LIBRARIES):
        name = f"lib{i}"
        write(os.path.join(ws, "crates", name, "Cargo.toml"), f'[package]\nname = "{name}"\nversion = "0.1.0"\nedition = "2021"\n')
        body = "".join(f"pub fn f{k}(x: u64) -> u64 {{ x.wrapping_mul({k + 3}).rotate_left({k % 7}) ^ {i} }}\n" for k in range(200))
        write(os.path.join(ws, "crates", name, "src", "lib.rs"), body)
    for i in range(apps):
        name = f"app{i:02}"
        deps = [f"lib{i % LIBRARIES}", f"lib{(i * 3 + 1) % LIBRARIES}"]
        dependencies = "".join(f'{dep} = {{ path = "../{dep}" }}\n' for dep in sorted(set(deps)))
        write(os.path.join(ws, "crates", name, "Cargo.toml"),
              f'[package]\nname = "{name}"\nversion = "0.1.0"\nedition = "2021"\n\n[dependencies]\n{dependencies}')
        calls = " + ".join(f"{dep}::f{i % 200}(n)" for dep in sorted(set(deps)))
        # The app's own code: handlers, each formatting its answer, all reachable from main.
        handlers = "".join(f'fn handle{k}(n: u64) -> String {{ format!("{name} {k} {{}}", n.wrapping_mul({k + 1}) ^ {i}) }}\n'
                           for k in range(args_handlers))
        table = ", ".join(f"handle{k}" for k in range(args_handlers))
        write(os.path.join(ws, "crates", name, "src", "main.rs"),
              f'{handlers}const HANDLERS: &[fn(u64) -> String] = &[{table}];\n'
              f'fn main() {{\n    let n = std::env::args().count() as u64;\n    println!("{{}} {{}}", {calls}, HANDLERS[n as usize % HANDLERS.len()](n));\n}}\n')
        write(os.path.join(ws, "crates", name, "Dockerfile"),
              f'FROM scratch\nARG TARGETPLATFORM\nCOPY target/stage/${{TARGETPLATFORM}}/{name} /{name}\nENTRYPOINT ["/{name}"]\n')
    locked = subprocess.run(["cargo", "generate-lockfile", "--offline"], cwd=ws, stderr=subprocess.PIPE, text=True)
    if locked.returncode != 0:
        sys.exit(f"cargo generate-lockfile --offline failed:\n{locked.stderr}")
    for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["-c", "user.name=bench", "-c", "user.email=bench@example.com", "commit", "-qm", "apps"]):
        subprocess.run(["git", *args], cwd=ws, check=True)


def job(xtask, ws, tmp, name, apps, platforms, runs):
    """The shortest of `runs` releases of `apps` for `platforms`, each from a fresh clone with an
    empty target directory into an empty repository."""
    return min(job_once(xtask, ws, tmp, f"{name}-{run}", apps, platforms) for run in range(runs))


def job_once(xtask, ws, tmp, name, apps, platforms):
    clone = os.path.join(tmp, f"clone-{name}")
    subprocess.run(["git", "clone", "-q", ws, clone], check=True)
    env = dict(os.environ, CARGO_TARGET_DIR=os.path.join(tmp, f"target-{name}"))
    command = [xtask, "release", *apps, "--platform", platforms, "--repository", f"oci:{os.path.join(tmp, 'registry-' + name)}"]
    started = time.perf_counter()
    result = subprocess.run(command, cwd=clone, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    elapsed = time.perf_counter() - started
    if result.returncode != 0:
        sys.exit(f"{name}: {' '.join(command)} failed: {result.stderr.decode()[-2000:]}")
    return elapsed


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--apps", type=int)
    parser.add_argument("--shards", type=int, default=4)
    parser.add_argument("--handlers", type=int, help="functions of each app's own code")
    parser.add_argument("--runs", type=int, default=2, help="runs of each job; the shortest counts")
    parser.add_argument("--keep", help="generate the workspace here and leave it")
    parser.add_argument("--quick", action="store_true", help="one run of each job, 8 apps with 4 handlers (for tests/ci.sh)")
    args = parser.parse_args()
    if args.apps is None:
        args.apps = 8 if args.quick else 50
    if args.handlers is None:
        args.handlers = 4 if args.quick else 40
    if args.quick:
        args.runs = 1
    wall = time.perf_counter()

    subprocess.run(["cargo", "build", "--quiet", "-p", "xtask"], cwd=ROOT, check=True)
    xtask = os.path.join(ROOT, "target", "debug", "xtask")
    tmp = tempfile.mkdtemp(prefix="xtask-bench-shards-")
    ws = args.keep or os.path.join(tmp, "ws")
    try:
        generate(ws, args.apps, args.handlers)
        plan = subprocess.run([xtask, "changed", "--all", "--json", "--shards", str(args.shards)], cwd=ws, check=True,
                              stdout=subprocess.PIPE, env=dict(os.environ, CARGO_TARGET_DIR=os.path.join(tmp, "target-plan")))
        shards = json.loads(plan.stdout)["shards"]
        print(f"workspace: {args.apps} apps ({args.handlers} handlers each) on {LIBRARIES} libraries; {len(shards)} shards planned")
        single = job(xtask, ws, tmp, "single", ["--all"], "linux/amd64,linux/arm64", args.runs)
        print(f"{'job':<8} {'apps':>5} {'platforms':<24} {'wall':>9}")
        print(f"{'single':<8} {args.apps:>5} {'linux/amd64,linux/arm64':<24} {single:>7.1f} s")
        times = []
        for number, shard in enumerate(shards, start=1):
            elapsed = job(xtask, ws, tmp, f"shard{number}", shard["apps"], shard["platforms"], args.runs)
            times.append(elapsed)
            print(f"{'shard ' + str(number):<8} {len(shard['apps']):>5} {shard['platforms']:<24} {elapsed:>7.1f} s")
        slowest = max(times)
        print(f"slowest shard / single job: {slowest / single:.2f} (goal: at most 0.33); "
              f"sum over shards: {sum(times):.1f} s ({sum(times) / single:.2f}x the single job's runner time)")
        if args.quick:
            print(f"\nbenchmark wall time: {time.perf_counter() - wall:.1f} s (--quick)")
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
