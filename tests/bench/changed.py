#!/usr/bin/env python3
"""Change-detection benchmark: `cargo xtask changed` on a generated 500-crate workspace with
10,000 files and a 100-commit history, against `cargo metadata` alone, in one run.

The generated workspace has 500 crates under crates/ (every tenth an app with a Dockerfile),
each depending on up to three lower-numbered crates, 20 files each. Three changes are detected:
- `files`: a commit that edits three files of a library deep in the graph;
- `docs`: a commit that edits only a README;
- `manifest`: a commit that sets the release profile's `codegen-units` in the root Cargo.toml,
  judged by its effect: every app's settings read at both commits, and both commits' graphs
  resolved and simulated per app and target;
- `resolve`: a commit that adds a `[workspace.dependencies]` entry no member inherits: the
  members' manifests tell that no member's entry, so no graph, changed;
- `inherited`: a commit that changes a `[workspace.dependencies]` entry the last app inherits
  (set up by a commit before it): both commits' graphs are resolved and the apps that can reach
  a changed package simulated;
- `lockfile`: a commit that adds a path dependency, so a manifest and Cargo.lock change: the
  head's graph is resolved and every app's build simulated per target, the lockfiles compared;
- `registry`: the same commit with `--against-registry` and an empty repository, so every app's
  inputs are digested and its last changes looked up (the self-healing check of `release`).
Each is timed as the median of N runs of the compiled xtask binary (`changed --json`), next to
the median of as many runs of `cargo metadata --format-version 1` (what any Cargo-aware tool
pays at least once), the two alternating.

`--quick` runs each case once on a small workspace (70 crates, 1,400 files, 10 commits: the
fewest crates where an app, c069, reaches the changed library; `--crates` still applies), with
`cargo metadata` still alongside, so that tests/ci.sh keeps the benchmark working; like the full
run it exits non-zero, with the failing command's output, when a command fails.
Usage: python3 tests/bench/changed.py [--runs N] [--crates N] [--keep DIR] [--quick]
"""
import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FILES_PER_CRATE = 20


def git(ws, *args):
    subprocess.run(["git", *args], cwd=ws, check=True, stdout=subprocess.DEVNULL)


def write(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)


def crate_name(i):
    return f"c{i:03}"


def generate(ws, crates, commits=100):
    """Writes the workspace and commits it in `commits` commits of crates/commits crates each."""
    rng = random.Random(7)
    os.makedirs(ws)
    git(ws, "init", "-q", "-b", "main")
    git(ws, "config", "user.email", "bench@example.com")
    git(ws, "config", "user.name", "bench")
    write(os.path.join(ws, "Cargo.toml"), '[workspace]\nmembers = ["crates/*"]\nresolver = "2"\n')
    write(os.path.join(ws, "README.md"), "bench workspace\n")
    write(os.path.join(ws, ".gitignore"), "/target\n")
    deps = {}
    # Up to three dependencies on lower-numbered crates: a DAG where low crates have many dependents.
    for i in range(crates):
        deps[i] = sorted(rng.sample(range(i), min(i, rng.randint(0, 3))))
    per_commit = max(1, crates // commits)
    for start in range(0, crates, per_commit):
        for i in range(start, min(crates, start + per_commit)):
            write_crate(ws, i, deps[i])
        if start + per_commit >= crates:
            locked = subprocess.run(["cargo", "generate-lockfile", "--offline"], cwd=ws, stderr=subprocess.PIPE, text=True)
            if locked.returncode != 0:
                sys.exit(f"cargo generate-lockfile --offline failed:\n{locked.stderr}")
        git(ws, "add", "-A")
        git(ws, "commit", "-q", "-m", f"crates from {start}")


def write_crate(ws, i, deps):
    name = crate_name(i)
    d = os.path.join(ws, "crates", name)
    is_app = i % 10 == 9
    dependencies = "".join(f'{crate_name(j)} = {{ path = "../{crate_name(j)}" }}\n' for j in deps)
    write(os.path.join(d, "Cargo.toml"),
          f'[package]\nname = "{name}"\nversion = "0.1.0"\nedition = "2021"\n\n[dependencies]\n{dependencies}')
    files = FILES_PER_CRATE
    if is_app:
        write(os.path.join(d, "Dockerfile"), f"FROM scratch\nARG TARGETPLATFORM\nCOPY target/stage/${{TARGETPLATFORM}}/{name} /{name}\nENTRYPOINT [\"/{name}\"]\n")
        write(os.path.join(d, "src", "main.rs"), "fn main() {}\n")
        files -= 3
    else:
        files -= 2
    write(os.path.join(d, "src", "lib.rs"), "".join(f"pub mod m{k};\n" for k in range(files)))
    for k in range(files):
        write(os.path.join(d, "src", f"m{k}.rs"), f"pub fn f{k}() -> u32 {{ {k} }}\n")


def replace(path, old, new):
    with open(path) as f:
        text = f.read()
    if old not in text:
        sys.exit(f"{path} has no `{old}`")
    with open(path, "w") as f:
        f.write(text.replace(old, new, 1))


def median_time(command, cwd, runs, env=None):
    times = []
    output = None
    for _ in range(runs):
        start = time.perf_counter()
        result = subprocess.run(command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        times.append(time.perf_counter() - start)
        if result.returncode != 0:
            sys.exit(f"{' '.join(command)} failed: {result.stderr.decode()}")
        output = result.stdout
    return statistics.median(times), output


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--crates", type=int)
    parser.add_argument("--keep", help="generate the workspace here and leave it")
    parser.add_argument("--quick", action="store_true", help="one run of each case, 70 crates in 10 commits (for tests/ci.sh)")
    args = parser.parse_args()
    if args.crates is None:
        args.crates = 70 if args.quick else 500
    if args.quick:
        args.runs = 1
    wall = time.perf_counter()

    subprocess.run(["cargo", "build", "--quiet", "-p", "xtask"], cwd=ROOT, check=True)
    xtask = os.path.join(ROOT, "target", "debug", "xtask")
    tmp = tempfile.mkdtemp(prefix="xtask-bench-changed-")
    ws = args.keep or os.path.join(tmp, "ws")
    try:
        started = time.perf_counter()
        generate(ws, args.crates, 10 if args.quick else 100)
        files = subprocess.run(["git", "ls-files"], cwd=ws, check=True, stdout=subprocess.PIPE).stdout.count(b"\n")
        commits = subprocess.run(["git", "rev-list", "--count", "HEAD"], cwd=ws, check=True, stdout=subprocess.PIPE).stdout.decode().strip()
        print(f"workspace: {args.crates} crates, {files} files, {commits} commits (generated in {time.perf_counter() - started:.1f} s)")
        # `cargo xtask` runs the xtask with CARGO set to the toolchain's cargo, past rustup's
        # proxy; both sides here use that cargo.
        cargo = toolchain_cargo()
        env = dict(os.environ, CARGO_TARGET_DIR=os.path.join(tmp, "target"), CARGO=cargo)

        # A low-numbered library, which many apps reach through the graph.
        library = 3
        for k in range(3):
            path = os.path.join(ws, "crates", crate_name(library), "src", f"m{k}.rs")
            with open(path, "a") as f:
                f.write("// changed\n")
        git(ws, "commit", "-qam", "library change")
        scenarios = [("files", "3 files of a library")]
        results = {}
        results["files"] = measure(xtask, ws, env, args.runs)

        with open(os.path.join(ws, "README.md"), "a") as f:
            f.write("more\n")
        git(ws, "commit", "-qam", "docs")
        scenarios.append(("docs", "a README"))
        results["docs"] = measure(xtask, ws, env, args.runs)

        # The root manifest: judged by its effect, each app's build resolved at both commits.
        with open(os.path.join(ws, "Cargo.toml"), "a") as f:
            f.write('\n[profile.release]\ncodegen-units = 1\n')
        git(ws, "commit", "-qam", "root manifest change")
        scenarios.append(("manifest", "root Cargo.toml: a profile"))
        results["manifest"] = measure(xtask, ws, env, args.runs)

        # A change to what cargo resolves from: both commits' graphs resolved, the apps that can
        # reach a changed package simulated.
        with open(os.path.join(ws, "Cargo.toml"), "a") as f:
            f.write(f'\n[workspace.dependencies]\n{crate_name(1)} = {{ path = "crates/{crate_name(1)}" }}\n')
        git(ws, "commit", "-qam", "workspace dependency")
        scenarios.append(("resolve", "root Cargo.toml: a dependency"))
        results["resolve"] = measure(xtask, ws, env, args.runs)

        # The last app inherits that dependency (with its Cargo.lock), then the root manifest
        # changes the entry: both graphs are resolved.
        app = crate_name(args.crates - 1)
        replace(os.path.join(ws, "crates", app, "Cargo.toml"), "[dependencies]\n", f"[build-dependencies]\n{crate_name(1)} = {{ workspace = true }}\n\n[dependencies]\n")
        subprocess.run(["cargo", "metadata", "--offline", "--format-version", "1"], cwd=ws, check=True, stdout=subprocess.DEVNULL)
        git(ws, "commit", "-qam", "an app inherits the workspace dependency")
        replace(os.path.join(ws, "Cargo.toml"), f'path = "crates/{crate_name(1)}" }}', f'path = "crates/{crate_name(1)}", default-features = false }}')
        git(ws, "commit", "-qam", "inherited workspace dependency")
        scenarios.append(("inherited", "root Cargo.toml: inherited dep"))
        results["inherited"] = measure(xtask, ws, env, args.runs)

        with open(os.path.join(ws, "crates", app, "Cargo.toml"), "a") as f:
            f.write(f'{crate_name(0)}-renamed = {{ path = "../{crate_name(0)}", package = "{crate_name(0)}" }}\n')
        subprocess.run(["cargo", "metadata", "--offline", "--format-version", "1"], cwd=ws, check=True, stdout=subprocess.DEVNULL)
        git(ws, "commit", "-qam", "manifest and lockfile change")
        scenarios.append(("lockfile", "a manifest and Cargo.lock"))
        results["lockfile"] = measure(xtask, ws, env, args.runs)

        empty = os.path.join(tmp, "empty-repository")
        scenarios.append(("registry", "--against-registry, empty"))
        results["registry"] = measure(xtask, ws, env, args.runs, ["--against-registry", "--repository", f"oci:{empty}"])

        print(f"cargo metadata: measured alternately with each case's runs, median of {args.runs}")
        print(f"{'change':<10} {'changes':<30} {'apps':>5} {'xtask changed':>14} {'cargo metadata':>15} {'/ metadata':>11}")
        for key, what in scenarios:
            elapsed, metadata, apps = results[key]
            print(f"{key:<10} {what:<30} {apps:>5} {elapsed:>12.3f} s {metadata:>13.3f} s {elapsed / metadata:>10.2f}x")
        print("goal: under 2 s and within 1.5x of cargo metadata (the lockfile case resolves the head's graph); the root manifest cases within 2x (a dependency resolves two graphs)")
        if args.quick:
            print(f"\nbenchmark wall time: {time.perf_counter() - wall:.1f} s (--quick)")
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)


def toolchain_cargo():
    """The cargo binary rustup's proxy would run here, or `cargo` without rustup."""
    found = subprocess.run(["rustup", "which", "cargo"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    return found.stdout.strip() if found.returncode == 0 else "cargo"


def measure(xtask, ws, env, runs, extra=()):
    """Medians of `xtask changed` and of `cargo metadata`, run alternately so that the machine's
    load at the time weighs on both alike."""
    ours, theirs, output = [], [], None
    for _ in range(runs):
        elapsed, output = median_time([xtask, "changed", "--json", *extra], ws, 1, env)
        ours.append(elapsed)
        theirs.append(median_time([env["CARGO"], "metadata", "--format-version", "1"], ws, 1, env)[0])
    return statistics.median(ours), statistics.median(theirs), len(json.loads(output)["apps"])


if __name__ == "__main__":
    main()
