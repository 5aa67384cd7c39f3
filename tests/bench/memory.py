#!/usr/bin/env python3
"""Memory benchmark: `cargo xtask images worker` against a hostile registry on loopback that
serves 1000 tag pages of 4 MiB (each with unique tags and a link to the next page) and, for
worker-latest, an index listing one 4 MiB manifest 10,000 times.

Printed side by side, from the same run: what an unbounded reader would have kept (every page,
every listed manifest), what the server sent, and the xtask's peak RSS (/usr/bin/time), against the
goal of 128 MiB.

`--quick` serves 20 pages of 1 MiB and an index listing a 1 MiB manifest 1000 times, so that
tests/ci.sh keeps the benchmark working; like the full run it exits non-zero when `images` fails
or goes over the goal.
Usage: python3 tests/bench/memory.py [--quick]
"""
import argparse
import hashlib
import json
import os
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
GOAL_MIB = 128


class Hostile:
    """The registry's answers, made once: a page template whose page number is a fixed-width
    field, the large manifest, its config and the index over it."""

    def __init__(self, pages, page_bytes, manifest_bytes, listed):
        self.pages = pages
        self.sent = 0
        self.pages_served = 0
        self.manifest_reads = 0
        self.lock = threading.Lock()
        config = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}}).encode()
        self.config = config
        self.config_digest = "sha256:" + hashlib.sha256(config).hexdigest()
        manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": self.config_digest,
                               "size": len(config)},
                    "layers": [], "annotations": {"padding": ""}}
        padding = manifest_bytes - len(json.dumps(manifest, separators=(",", ":")))
        manifest["annotations"]["padding"] = "x" * padding
        self.manifest = json.dumps(manifest, separators=(",", ":")).encode()
        self.manifest_digest = "sha256:" + hashlib.sha256(self.manifest).hexdigest()
        entry = {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": self.manifest_digest,
                 "size": len(self.manifest), "platform": {"architecture": "amd64", "os": "linux"}}
        self.index = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                                 "manifests": [entry] * listed}).encode()
        # Tags `xPPPP-NNNNNN` (no app's, so that `images` reads no manifest of theirs): the page number
        # is replaced in the bytes for each page.
        head, tail = b'{"name":"acme/prod","tags":["worker-latest"', b"]}"
        count = (page_bytes - len(head) - len(tail)) // len(b',"xPPPP-000000"')
        self.template = head + b"".join(b',"xPPPP-%06d"' % i for i in range(count)) + tail
        self.tags_per_page = count + 1

    def page(self, number):
        return self.template.replace(b"PPPP", b"%04d" % number)


def serve(hostile):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *_):
            pass

        def answer(self, status, body, content_type="application/json", headers=()):
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            for name, value in headers:
                self.send_header(name, value)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)
                with hostile.lock:
                    hostile.sent += len(body)

        def do_HEAD(self):
            self.do_GET()

        def do_GET(self):
            path, _, query = self.path.partition("?")
            if path == "/v2/":
                return self.answer(200, b"{}")
            if path == "/v2/acme/prod/tags/list":
                number = 0
                for part in query.split("&"):
                    if part.startswith("last=p"):
                        number = int(part[len("last=p"):])
                headers = []
                if number + 1 < hostile.pages:
                    headers.append(("Link", f'</v2/acme/prod/tags/list?n=1000&last=p{number + 1}>; rel="next"'))
                with hostile.lock:
                    hostile.pages_served += 1
                return self.answer(200, hostile.page(number), headers=headers)
            if path == "/v2/acme/prod/manifests/worker-latest":
                return self.answer(200, hostile.index, "application/vnd.oci.image.index.v1+json",
                                   [("Docker-Content-Digest", "sha256:" + hashlib.sha256(hostile.index).hexdigest())])
            if path == f"/v2/acme/prod/manifests/{hostile.manifest_digest}":
                with hostile.lock:
                    hostile.manifest_reads += 1
                return self.answer(200, hostile.manifest, "application/vnd.oci.image.manifest.v1+json",
                                   [("Docker-Content-Digest", hostile.manifest_digest)])
            if path == f"/v2/acme/prod/blobs/{hostile.config_digest}":
                return self.answer(200, hostile.config, "application/octet-stream")
            body = json.dumps({"errors": [{"code": "MANIFEST_UNKNOWN", "message": "unknown"}]}).encode()
            return self.answer(404, body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="small sizes (for tests/ci.sh)")
    args = parser.parse_args()
    mib = 1 << 20
    pages, page_bytes, manifest_bytes, listed = (20, mib, mib, 1000) if args.quick else (1000, 4 * mib - 1024, 4 * mib - 1024, 10_000)
    subprocess.run(["cargo", "build", "--quiet", "-p", "xtask"], cwd=ROOT, check=True)
    xtask = os.path.join(ROOT, "target", "debug", "xtask")
    hostile = Hostile(pages, page_bytes, manifest_bytes, listed)
    server = serve(hostile)
    host = f"127.0.0.1:{server.server_address[1]}"
    env = dict(os.environ)
    for name in ("XTASK_REPOSITORY", "HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
        env.pop(name, None)
    rss_file = os.path.join(ROOT, "target", "memory-bench-rss")
    start = time.perf_counter()
    # /usr/bin/time gives the command's own peak RSS (cargo's build above is not counted).
    child = subprocess.run(["/usr/bin/time", "-f", "%M", "-o", rss_file, xtask, "images", "worker", "--repository",
                            f"{host}/acme/prod"], cwd=ROOT, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    server.shutdown()
    if child.returncode != 0:
        sys.exit(f"images failed:\n{child.stdout}\n{child.stderr}")
    with open(rss_file) as f:
        rss_mib = int(f.read().split()[-1]) / 1024
    os.remove(rss_file)
    unbounded = pages * len(hostile.page(0)) + listed * len(hostile.manifest)
    print(f"images worker against a hostile registry: {pages} tag pages of {page_bytes / mib:.1f} MiB "
          f"({hostile.tags_per_page} tags each), an index listing a {manifest_bytes / mib:.1f} MiB manifest {listed} times")
    print(f"{'what an unbounded reader keeps':<40} {unbounded / mib:>10.0f} MiB")
    print(f"{'what the server sent':<40} {hostile.sent / mib:>10.0f} MiB "
          f"({hostile.pages_served} pages, the manifest read {hostile.manifest_reads} times)")
    print(f"{'xtask peak RSS':<40} {rss_mib:>10.1f} MiB  (goal < {GOAL_MIB} MiB; {seconds:.1f} s)")
    print(f"unbounded / RSS: {unbounded / mib / rss_mib:.0f}x")
    notes = [line for line in child.stderr.splitlines() if "cut" in line]
    for line in notes:
        print(f"  {line}")
    if rss_mib >= GOAL_MIB:
        sys.exit(f"peak RSS {rss_mib:.1f} MiB is over the goal of {GOAL_MIB} MiB")


if __name__ == "__main__":
    main()
