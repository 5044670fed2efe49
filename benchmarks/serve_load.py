"""Load test of `kerasrecipes serve`: batch 1 vs. dynamic batching, 1/8/32 clients, in-process ceiling.

    python benchmarks/serve_load.py [--model SAVED_MODEL_DIR] [--images DIR] [--requests 600]
        [--max-seconds 90] [--clients 1,8,32] [--quick]
    python benchmarks/serve_load.py --frameworks      # Starlette vs FastAPI, one tiny endpoint

`--quick` (both modes) runs everything on a few requests, in about a minute: a check that the
benchmark works, not a measurement.

Without `--model` it exports an untrained `build_classifier("efficientnet_lite0", 10 classes,
128 px)` (real ImageNet backbone weights, offline): the same cost per request as the demo model
that `kerasrecipes finetune` writes. The payload is real photos (`--images`, default the demo
validation photos, 128 px on the short side), one per request, sent as TF Serving JSON
`{"instances": [{"b64": ...}]}`.

For each server setting (`--max-batch 1`, and `--max-batch 32 --batch-timeout-ms T`) a server is
started on 127.0.0.1 on a free port and driven by N concurrent clients: each keeps one HTTP/1.1
connection and sends its next request when the last one is answered, until `--requests` requests
were answered or `--max-seconds` passed (the run stops by itself either way). Printed: requests/s,
p50/p95/p99 latency, errors (non-200 answers, failed connections, answers whose class differs
from the in-process one), the server's peak RSS (VmHWM) and CPU seconds per request, the
client's CPU per request, and the mean batch size (`GET /stats`). The server is then stopped
with SIGTERM and must exit 0.

The ceilings are measured in their own process before the servers start, at batch 1 and 32:
the model called in a loop on decoded uint8 images (model only), and the same with the server's
decode (PIL + the training resize) done serially before each call (decode + model, one thread).
Overhead is `1 - server req/s ÷ ceiling img/s` at the server's batch size (1, or 32 for dynamic
batching); the server decodes in threads while the model runs, so it can beat the second one. The load client
is a small asyncio HTTP/1.1 client (not httpx): on 2 cores every CPU millisecond it spends is
taken from the server, so it is kept as cheap as possible (its CPU per request is printed).
"""

import argparse
import asyncio
import base64
import glob
import json
import os
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

PYTHON = sys.executable


# ---------------------------------------------------------------------------------------------
# A minimal HTTP/1.1 keep-alive client.


class _Connection:
    def __init__(self, host, port):
        self.host, self.port = host, port
        self.reader = self.writer = None

    async def open(self):
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)

    def close(self):
        if self.writer is not None:
            self.writer.close()
            self.reader = self.writer = None

    async def request(self, method, path, body=b"", content_type="application/json"):
        if self.writer is None:
            await self.open()
        head = (f"{method} {path} HTTP/1.1\r\nHost: {self.host}\r\n"
                f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n\r\n")
        self.writer.write(head.encode() + body)
        raw = await self.reader.readuntil(b"\r\n\r\n")
        lines = raw.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {k.strip().lower(): v.strip() for k, v in
                   (line.split(":", 1) for line in lines[1:] if ":" in line)}
        payload = await self.reader.readexactly(int(headers.get("content-length", 0)))
        if headers.get("connection", "").lower() == "close":
            self.close()
        return status, payload


async def _drive(host, port, path, bodies, expected, clients, count, max_seconds):
    """`clients` connections send `count` requests in all; returns latencies and errors."""
    latencies, errors = [], {}
    sent = [0]
    deadline = time.monotonic() + max_seconds

    def error(kind):
        errors[kind] = errors.get(kind, 0) + 1

    async def client():
        connection = _Connection(host, port)
        while sent[0] < count and time.monotonic() < deadline:
            i = sent[0]
            sent[0] += 1
            start = time.perf_counter()
            try:
                status, payload = await connection.request("POST", path, bodies[i % len(bodies)])
            except (OSError, asyncio.IncompleteReadError, ValueError) as e:
                error(f"connection: {type(e).__name__}")
                connection.close()
                continue
            latencies.append(time.perf_counter() - start)
            if status != 200:
                error(f"HTTP {status}")
            elif expected is not None:
                answer = json.loads(payload)["predictions"][0]
                if answer.get("class_index") != expected[i % len(bodies)]:
                    error("wrong class")
        connection.close()

    start = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    return latencies, errors, time.perf_counter() - start, sent[0]


async def _get_json(host, port, path):
    connection = _Connection(host, port)
    try:
        status, payload = await connection.request("GET", path)
        return status, json.loads(payload)
    finally:
        connection.close()


# ---------------------------------------------------------------------------------------------
# Server processes.


class _Server:
    def __init__(self, command, ready_path):
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE,
                                        stderr=subprocess.DEVNULL, text=True)
        deadline = time.monotonic() + 180
        line = ""
        while "http://" not in line:
            line = self.process.stdout.readline()
            if (not line and self.process.poll() is not None) or time.monotonic() > deadline:
                self.process.kill()
                raise RuntimeError(f"server did not start: {' '.join(command)}")
        url = line.split("http://")[1].split()[0]
        self.host, port = url.rsplit(":", 1)
        self.port = int(port)
        while True:
            try:
                if asyncio.run(_get_json(self.host, self.port, ready_path))[0] == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                self.process.kill()
                raise RuntimeError("server did not answer")
            time.sleep(0.2)

    def cpu_seconds(self):
        with open(f"/proc/{self.process.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def peak_rss_mib(self):
        with open(f"/proc/{self.process.pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
        return float("nan")

    def stop(self):
        """SIGTERM; returns the exit status (0: drained and exited cleanly)."""
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return "killed"


# ---------------------------------------------------------------------------------------------
# In-process ceiling (run in its own process: `--_ceiling`).


def _ceiling(model_dir, blobs_dir, out_file, seconds):
    from kerasrecipes.serving import ServedModel

    blobs = [open(os.path.join(blobs_dir, f), "rb").read() for f in sorted(os.listdir(blobs_dir))]
    model = ServedModel(model_dir)
    expected = [r["class_index"] for r in model.predict([model.decode(b) for b in blobs])]
    result = {"expected": expected}
    for batch in (1, 32):
        pool = blobs * -(-batch // len(blobs))  # fewer photos than a batch: repeated
        groups = [pool[i: i + batch] for i in range(0, len(pool) - batch + 1, batch)]
        model.predict([model.decode(b) for b in groups[0]])  # warm-up
        start, k = time.perf_counter(), 0
        while time.perf_counter() - start < seconds or k < 3:
            model.predict([model.decode(b) for b in groups[k % len(groups)]])
            k += 1
        full = batch * k / (time.perf_counter() - start)
        decoded = [model.decode(b) for b in groups[0]]
        start, k = time.perf_counter(), 0
        while time.perf_counter() - start < seconds / 2 or k < 3:
            model.predict(decoded)
            k += 1
        result[str(batch)] = {"img_per_s": full,
                              "model_only_img_per_s": batch * k / (time.perf_counter() - start)}
    with open(out_file, "w") as f:
        json.dump(result, f)


# ---------------------------------------------------------------------------------------------
# Tiny apps for the framework comparison (`--_tiny-app starlette|fastapi`).


def _tiny_app(framework):
    import socket

    import uvicorn

    if framework == "starlette":
        from starlette.applications import Starlette
        from starlette.responses import JSONResponse
        from starlette.routing import Route

        async def echo(request):
            body = await request.body()
            return JSONResponse({"ok": True, "bytes": len(body)})

        async def status(request):
            return JSONResponse({"ok": True})

        app = Starlette(routes=[Route("/echo", echo, methods=["POST"]),
                                Route("/status", status)])
    else:
        from fastapi import FastAPI, Request

        app = FastAPI()

        @app.post("/echo")
        async def echo(request: Request):
            body = await request.body()
            return {"ok": True, "bytes": len(body)}

        @app.get("/status")
        async def status():
            return {"ok": True}

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    print(f"tiny {framework} on http://127.0.0.1:{sock.getsockname()[1]}", flush=True)
    uvicorn.run(app, fd=sock.fileno(), log_level="warning", access_log=False)


def _frameworks(args):
    import importlib.util

    body = json.dumps({"instances": [{"b64": base64.b64encode(os.urandom(6000)).decode()}]})
    rows = []
    frameworks = [f for f in ("starlette", "fastapi") if importlib.util.find_spec(f) is not None]
    for framework in {"starlette", "fastapi"} - set(frameworks):
        print(f"[bench] {framework} is not installed: skipped")
    for _ in range(args.repeats):
        for framework in frameworks:
            server = _Server([PYTHON, __file__, "--_tiny-app", framework], "/status")
            try:
                lat, errors, seconds, sent = asyncio.run(_drive(
                    server.host, server.port, "/echo", [body.encode()], None, 32,
                    args.requests * 10, args.max_seconds))
            finally:
                server.stop()
            rows.append((framework, len(lat) / seconds, np.percentile(lat, 50) * 1e3,
                         np.percentile(lat, 99) * 1e3, sum(errors.values())))
    print("\nOne JSON endpoint (POST /echo, 8 KB body), uvicorn, 32 clients, "
          f"{args.requests * 10} requests a run, {args.repeats} runs each, interleaved")
    print("| framework | req/s (median) | p50 ms | p99 ms | errors |")
    print("|---|---|---|---|---|")
    for framework in ("starlette", "fastapi"):
        mine = [r for r in rows if r[0] == framework]
        if mine:
            print(f"| {framework} | {statistics.median(r[1] for r in mine):.0f} | "
                  f"{statistics.median(r[2] for r in mine):.1f} | "
                  f"{statistics.median(r[3] for r in mine):.1f} | {sum(r[4] for r in mine)} |")


# ---------------------------------------------------------------------------------------------


def _payload(images_dir, count):
    import kerasrecipes as kr

    if images_dir is None:
        images_dir = os.path.join(kr.datasets.demo_dir(), "validation")
    files = sorted(glob.glob(os.path.join(images_dir, "*", "*.jp*g")))
    if not files:
        raise SystemExit(f"no JPEG files under {images_dir}/<class>/")
    files = files[:: max(1, len(files) // count)][:count]
    return images_dir, [open(f, "rb").read() for f in files]


def _export_demo_model(workdir):
    import kerasrecipes as kr

    model = kr.build_classifier("efficientnet_lite0", num_classes=10, image_size=128)
    path = os.path.join(workdir, "demo")
    kr.export_saved_model(model, path, class_names=[f"class{i}" for i in range(10)])
    return path


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=None, help="SavedModel dir (default: export an "
                        "untrained efficientnet_lite0 at 128 px)")
    parser.add_argument("--images", default=None, help="folder of <class>/*.jpg photos "
                        "(default: the demo validation photos)")
    parser.add_argument("--photos", type=int, default=64, help="distinct photos in the payload")
    parser.add_argument("--requests", type=int, default=600, help="requests per setting")
    parser.add_argument("--max-seconds", type=float, default=90.0, help="time limit per setting")
    parser.add_argument("--clients", default="1,8,32")
    parser.add_argument("--batch-timeout-ms", type=float, default=2.0)
    parser.add_argument("--ceiling-seconds", type=float, default=10.0)
    parser.add_argument("--repeats", type=int, default=3, help="runs per framework "
                        "(--frameworks)")
    parser.add_argument("--frameworks", action="store_true",
                        help="compare Starlette and FastAPI on one tiny endpoint instead")
    parser.add_argument("--quick", action="store_true",
                        help="40 requests from 8 clients: checks the benchmark runs (CI)")
    parser.add_argument("--_ceiling", nargs=3, help=argparse.SUPPRESS)
    parser.add_argument("--_tiny-app", dest="tiny_app", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args._ceiling:
        return _ceiling(*args._ceiling, seconds=args.ceiling_seconds)
    if args.tiny_app:
        return _tiny_app(args.tiny_app)
    if args.quick:  # the whole path in about a minute (CI): not a measurement
        args.requests, args.max_seconds, args.ceiling_seconds, args.repeats = 40, 20.0, 1.0, 1
        args.clients, args.photos = "8", 16
    if args.frameworks:
        return _frameworks(args)

    workdir = tempfile.mkdtemp(prefix="serve-load-")
    model_dir = args.model or _export_demo_model(workdir)
    images_dir, blobs = _payload(args.images, args.photos)
    bodies = [json.dumps({"instances": [{"b64": base64.b64encode(b).decode()}]}).encode()
              for b in blobs]
    blobs_dir = os.path.join(workdir, "blobs")
    os.makedirs(blobs_dir)
    for i, blob in enumerate(blobs):
        with open(os.path.join(blobs_dir, f"{i:04d}.jpg"), "wb") as f:
            f.write(blob)
    ceiling_file = os.path.join(workdir, "ceiling.json")
    subprocess.run([PYTHON, __file__, "--ceiling-seconds", str(args.ceiling_seconds),
                    "--_ceiling", model_dir, blobs_dir, ceiling_file],
                   check=True, stderr=subprocess.DEVNULL)
    with open(ceiling_file) as f:
        ceiling = json.load(f)
    expected = ceiling["expected"]
    name = os.path.basename(os.path.normpath(model_dir))
    path = f"/v1/models/{name}:predict"
    clients = [int(c) for c in args.clients.split(",")]
    settings = [("batch 1", ["--max-batch", "1"], "1"),
                ("dynamic ≤32", ["--max-batch", "32", "--batch-timeout-ms",
                                 str(args.batch_timeout_ms)], "32")]
    rows = []
    for label, flags, ceiling_key in settings:
        for n in clients:
            server = _Server([PYTHON, "-m", "kerasrecipes.cli", "serve", model_dir, "--port",
                              "0", *flags], f"/v1/models/{name}")
            try:
                cpu0, client0 = server.cpu_seconds(), resource.getrusage(resource.RUSAGE_SELF)
                lat, errors, seconds, sent = asyncio.run(_drive(
                    server.host, server.port, path, bodies, expected, n, args.requests,
                    args.max_seconds))
                client1 = resource.getrusage(resource.RUSAGE_SELF)
                server_cpu = server.cpu_seconds() - cpu0
                stats = asyncio.run(_get_json(server.host, server.port, "/stats"))[1]
                rss = server.peak_rss_mib()
            finally:
                status = server.stop()
            done = len(lat)
            rps = done / seconds
            ceiling_rps = ceiling[ceiling_key]["img_per_s"]
            model_rps = ceiling[ceiling_key]["model_only_img_per_s"]
            client_cpu = (client1.ru_utime + client1.ru_stime - client0.ru_utime
                          - client0.ru_stime)
            lost = sent - done - sum(v for k, v in errors.items() if k.startswith("connection"))
            rows.append([
                label, str(n), f"{done}", f"{rps:.1f}",
                *(f"{np.percentile(lat, q) * 1e3:.0f}" for q in (50, 95, 99)),
                str(sum(errors.values())) + (f" ({errors})" if errors else ""),
                str(lost), f"{stats['mean_batch']}", f"{rss:.0f}",
                f"{1e3 * server_cpu / max(done, 1):.1f}", f"{1e3 * client_cpu / max(done, 1):.2f}",
                f"{model_rps:.1f}", f"{1 - rps / model_rps:+.0%}", f"{ceiling_rps:.1f}",
                f"{1 - rps / ceiling_rps:+.0%}", str(status),
            ])
            print("[bench]", " | ".join(rows[-1]), flush=True)
    header = ("server", "clients", "requests", "req/s", "p50 ms", "p95 ms", "p99 ms", "errors",
              "lost", "mean batch", "peak RSS MiB", "server CPU ms/req", "client CPU ms/req",
              "model-only ceiling img/s", "overhead vs it", "decode+model ceiling img/s",
              "overhead vs it", "SIGTERM exit")
    print(f"\n{name}: {len(blobs)} photos from {images_dir} "
          f"({statistics.mean(len(b) for b in blobs) / 1024:.1f} KB mean), 1 per request, "
          f"{os.cpu_count()} CPUs")
    print(f"In-process ceiling (decode + model): batch 1 {ceiling['1']['img_per_s']:.1f} img/s, "
          f"batch 32 {ceiling['32']['img_per_s']:.1f} img/s; model only: batch 1 "
          f"{ceiling['1']['model_only_img_per_s']:.1f}, batch 32 "
          f"{ceiling['32']['model_only_img_per_s']:.1f} img/s")
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in rows:
        print("| " + " | ".join(row) + " |")
    dynamic = {r[1]: float(r[3]) for r in rows if r[0].startswith("dynamic")}
    single = {r[1]: float(r[3]) for r in rows if r[0] == "batch 1"}
    for n in sorted(set(dynamic) & set(single), key=int):
        print(f"dynamic / batch 1 at {n} clients: {dynamic[n] / single[n]:.2f}×")


if __name__ == "__main__":
    main()
