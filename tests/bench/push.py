#!/usr/bin/env python3
"""Push benchmark: `cargo xtask push` against skopeo and a curl floor, side by side in one run.

Each run pushes a layout of 4 x 64 MiB incompressible layers to an empty distribution registry
on loopback (a fresh one per run), alternating the order of the tools; the medians of 5 runs
and their ratios are printed. Then the peak RSS of the xtask for a 1 GiB layer, and what a
repeated push sends.

`--quick` pushes 4 x 1 MiB layers once with each tool (skopeo and curl still alongside), then the
re-push and a 16 MiB layer for the RSS (`--layer-mib` and `--big-mib` still apply), so that
tests/ci.sh keeps the benchmark working; like the full run it exits non-zero, with the failing
command's output, when a command fails.
Usage: python3 tests/bench/push.py [--runs N] [--layer-mib N] [--big-mib N] [--quick]
"""
import argparse
import hashlib
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def write_blob(layout, data_or_path):
    blobs = os.path.join(layout, "blobs", "sha256")
    os.makedirs(blobs, exist_ok=True)
    if isinstance(data_or_path, bytes):
        digest = hashlib.sha256(data_or_path).hexdigest()
        with open(os.path.join(blobs, digest), "wb") as f:
            f.write(data_or_path)
        return "sha256:" + digest, len(data_or_path)
    return data_or_path


def random_layer(layout, size):
    """Streams os.urandom into a blob file, hashing on the way, without holding it in memory."""
    blobs = os.path.join(layout, "blobs", "sha256")
    os.makedirs(blobs, exist_ok=True)
    tmp = os.path.join(blobs, "partial")
    h = hashlib.sha256()
    with open(tmp, "wb") as f:
        left = size
        while left:
            chunk = os.urandom(min(left, 8 << 20))
            h.update(chunk)
            f.write(chunk)
            left -= len(chunk)
    os.rename(tmp, os.path.join(blobs, h.hexdigest()))
    return "sha256:" + h.hexdigest(), size


def make_layout(layout, layer_sizes):
    layers = [random_layer(layout, size) for size in layer_sizes]
    config = json.dumps({"architecture": "amd64", "os": "linux",
                         "rootfs": {"type": "layers", "diff_ids": [d for d, _ in layers]}}).encode()
    config_desc = write_blob(layout, config)
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_desc[0], "size": config_desc[1]},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": d, "size": s} for d, s in layers],
    }).encode()
    manifest_desc = write_blob(layout, manifest)
    index = {"schemaVersion": 2, "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
             "digest": manifest_desc[0], "size": manifest_desc[1], "annotations": {"org.opencontainers.image.ref.name": "bench"}}]}
    with open(os.path.join(layout, "index.json"), "w") as f:
        json.dump(index, f)
    with open(os.path.join(layout, "oci-layout"), "w") as f:
        f.write('{"imageLayoutVersion":"1.0.0"}')
    blobs = layers + [config_desc]
    return blobs, manifest


class Registry:
    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="bench-registry-")
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.host = f"127.0.0.1:{self.port}"
        with open(os.path.join(self.dir, "config.yml"), "w") as f:
            f.write(f"version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: false\nstorage:\n"
                    f"  filesystem:\n    rootdirectory: {self.dir}/data\nhttp:\n  addr: {self.host}\n")
        self.log = open(os.path.join(self.dir, "log"), "w")
        self.proc = subprocess.Popen(["docker-registry", "serve", os.path.join(self.dir, "config.yml")],
                                     stdout=self.log, stderr=self.log)
        deadline = time.time() + 15
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                break
            except OSError:
                if time.time() > deadline:
                    sys.exit("docker-registry did not start")
                time.sleep(0.05)

    def requests(self):
        with open(os.path.join(self.dir, "log")) as f:
            return [line.split(' "', 1)[1] for line in f if ' "' in line and line.split(' "', 1)[1][:1].isupper()]

    def stop(self):
        self.proc.kill()
        self.proc.wait()
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def timed(cmd, **kwargs):
    """Runs cmd under /usr/bin/time; returns (seconds, peak RSS in KiB)."""
    start = time.perf_counter()
    proc = subprocess.run(["/usr/bin/time", "-f", "%M"] + cmd, capture_output=True, text=True, **kwargs)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{proc.stdout}\n{proc.stderr}")
    return seconds, int(proc.stderr.strip().splitlines()[-1])


def curl_floor_script(layout, blobs, manifest, host, jobs):
    """A bash script that uploads the blobs with curl, `jobs` at a time (POST, then one PUT)."""
    lines = ["set -e", "up() {",
             f'  loc=$(curl -sS -o /dev/null -D - -X POST http://{host}/v2/bench/img/blobs/uploads/ | tr -d "\\r" | sed -n "s/^[Ll]ocation: //p")',
             '  case "$loc" in http*) ;; *) loc="http://' + host + '$loc";; esac',
             '  curl -sS -f -o /dev/null -X PUT -H "Content-Type: application/octet-stream" -T "$2" "$loc&digest=$1"',
             "}"]
    for i, (digest, _) in enumerate(blobs):
        lines.append(f'up {digest} {layout}/blobs/sha256/{digest[7:]} &')
        if (i + 1) % jobs == 0:
            lines.append("wait")
    lines.append("wait")
    manifest_file = os.path.join(layout, "manifest.json")
    with open(manifest_file, "wb") as f:
        f.write(manifest)
    lines.append(f'curl -sS -f -o /dev/null -X PUT -H "Content-Type: application/vnd.oci.image.manifest.v1+json" '
                 f'--data-binary @{manifest_file} http://{host}/v2/bench/img/manifests/bench')
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--layer-mib", type=int)
    parser.add_argument("--big-mib", type=int)
    parser.add_argument("--quick", action="store_true", help="one run, 4 x 1 MiB layers, a 16 MiB layer for the RSS (for tests/ci.sh)")
    args = parser.parse_args()
    if args.layer_mib is None:
        args.layer_mib = 1 if args.quick else 64
    if args.big_mib is None:
        args.big_mib = 16 if args.quick else 1024
    if args.quick:
        args.runs = 1
    wall = time.perf_counter()
    for tool in ("docker-registry", "skopeo", "curl", "/usr/bin/time"):
        if not shutil.which(tool):
            sys.exit(f"{tool} is missing: run `bash tests/ci.sh` (or apt-get install docker-registry skopeo curl time)")

    subprocess.run(["cargo", "build", "-q", "-p", "xtask"], cwd=ROOT, check=True)
    xtask = os.path.join(ROOT, "target", "debug", "xtask")
    work = tempfile.mkdtemp(prefix="bench-push-")
    try:
        layout = os.path.join(work, "layout")
        blobs, manifest = make_layout(layout, [args.layer_mib << 20] * 4)
        tools = {
            "xtask": lambda host: [xtask, "push", layout, f"{host}/bench/img:bench"],
            "skopeo": lambda host: ["skopeo", "copy", "-q", "--dest-tls-verify=false", f"oci:{layout}:bench", f"docker://{host}/bench/img:bench"],
            "curl": lambda host: ["bash", "-c", curl_floor_script(layout, blobs, manifest, host, 4)],
        }
        times = {name: [] for name in tools}
        rss = {name: [] for name in tools}
        order = list(tools)
        for run in range(args.runs):
            for name in order[run % 3:] + order[:run % 3]:
                registry = Registry()
                try:
                    seconds, kib = timed(tools[name](registry.host))
                finally:
                    registry.stop()
                times[name].append(seconds)
                rss[name].append(kib)
        med = {name: statistics.median(values) for name, values in times.items()}
        print(f"push of 4 x {args.layer_mib} MiB incompressible layers to an empty local registry, median of {args.runs} alternating runs:")
        for name in tools:
            print(f"  {name:7} {med[name]:7.3f} s   peak RSS {max(rss[name]) / 1024:6.1f} MiB   runs: {', '.join(f'{t:.3f}' for t in times[name])}")
        print(f"  skopeo / xtask = {med['skopeo'] / med['xtask']:.2f}x   (goal: at least 1.5x)")
        print(f"  xtask / curl floor = {med['xtask'] / med['curl']:.2f}x   (goal: at most 1.15x)")

        registry = Registry()
        try:
            timed(tools["xtask"](registry.host))
            before = len(registry.requests())
            seconds, _ = timed(tools["xtask"](registry.host))
            second = registry.requests()[before:]
        finally:
            registry.stop()
        writes = [r for r in second if r.startswith(("POST", "PUT", "PATCH"))]
        heads = [r for r in second if r.startswith("HEAD")]
        print(f"re-push of the same layout: {seconds:.3f} s, {len(heads)} HEAD requests for {len(blobs)} blobs and 1 tag, "
              f"{len(writes)} writes (goal: 0 writes, one HEAD per blob and per tag)")

        shutil.rmtree(layout)
        big = os.path.join(work, "big")
        make_layout(big, [args.big_mib << 20])
        registry = Registry()
        try:
            seconds, kib = timed([xtask, "push", big, f"{registry.host}/bench/big:bench"])
        finally:
            registry.stop()
        print(f"push of one {args.big_mib} MiB layer: {seconds:.3f} s, xtask peak RSS {kib / 1024:.1f} MiB (goal: under 64 MiB)")
        if args.quick:
            print(f"\nbenchmark wall time: {time.perf_counter() - wall:.1f} s (--quick)")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
