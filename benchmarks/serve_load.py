"""Load test of `kerasrecipes serve`: batch 1 vs. dynamic batching, 1/8/32 clients, in-process ceiling.

    python benchmarks/serve_load.py [--model SAVED_MODEL_DIR] [--images DIR] [--requests 800]
        [--repeats 3] [--clients 1,8,32] [--batch-timeout-ms 10] [--quick]
    python benchmarks/serve_load.py --frameworks      # Starlette vs FastAPI, one tiny endpoint
    python benchmarks/serve_load.py --decode          # the server's decode, 1 vs 2 TF calls

`--quick` (both modes) runs everything on a few requests, in about a minute: a check that the
benchmark works, not a measurement.

Without `--model` it exports an untrained `build_classifier("efficientnet_lite0", 10 classes,
128 px)` (real ImageNet backbone weights, offline): the same cost per request as the demo model
that `kerasrecipes finetune` writes. The payload is real photos (`--images`, default the demo
validation photos, 128 px on the short side), one per request, sent as TF Serving JSON
`{"instances": [{"b64": ...}]}`.

Two servers are started on 127.0.0.1 (free ports): `--max-batch 1`, and `--max-batch 32
--batch-timeout-ms T`. Each run drives one of them with N concurrent clients: each keeps one
HTTP/1.1 connection and sends its next request when the last one is answered, until
`--requests` requests were answered or `--max-seconds` passed (the run stops by itself either
way). Measured per run: requests/s, latencies, errors (non-200 answers, failed connections,
answers whose class differs from the in-process one), the server's CPU seconds per request and
mean batch size (`GET /stats` before and after), the client's CPU per request. At the end each
server's peak RSS (VmHWM) is read and it is stopped with SIGTERM, and must exit 0.

The ceiling is measured **just before every run**, by a worker process that loaded the same
model (idle while the servers run, as they are while it runs), at the batch size the same number
of concurrent items allows (`min(max batch, clients)`): the model alone on decoded images
("model only"); the server's decode (the training pipeline's decode and resize) then the model,
in one thread ("decode then model"); and decode in a thread pool overlapping the model on the
previous batch, as the server does ("decode ∥ model"). The server's overhead is `1 - req/s ÷
the better of the last two` (the same work in-process, done the fastest way we have), and also
given against the model alone (which does no decoding). The VM's speed drifts by up to 2×
within minutes, so rows are medians of `--repeats` interleaved runs, each against its own ceiling. The
load client is a small asyncio HTTP/1.1 client (not httpx): on 2 cores every CPU millisecond it
spends is taken from the server, so it is kept as cheap as possible (its CPU is printed).
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
# In-process ceilings, measured by a worker process between the server runs (`--_ceiling`).


def _ceiling_worker(model_dir, blobs_dir):
    """Loads the model, prints the expected classes, then answers `BATCH SECONDS` lines on stdin
    with the three in-process rates (images/s) as one JSON line each."""
    import concurrent.futures

    from kerasrecipes.serving import ServedModel

    blobs = [open(os.path.join(blobs_dir, f), "rb").read() for f in sorted(os.listdir(blobs_dir))]
    model = ServedModel(model_dir)
    print(json.dumps([r["class_index"] for r in model.predict([model.decode(b) for b in blobs])]),
          flush=True)
    pool = concurrent.futures.ThreadPoolExecutor(os.cpu_count() or 1)  # as the server decodes

    def rate(step, batch, seconds):
        step(0)  # warm-up
        start, k = time.perf_counter(), 0
        while time.perf_counter() - start < seconds or k < 3:
            step(k)
            k += 1
        return batch * k / (time.perf_counter() - start)

    for line in sys.stdin:
        batch, seconds = int(line.split()[0]), float(line.split()[1])
        pool_blobs = blobs * -(-batch // len(blobs))  # fewer photos than a batch: repeated
        groups = [pool_blobs[i: i + batch] for i in range(0, len(pool_blobs) - batch + 1, batch)]
        decoded = [model.decode(b) for b in groups[0]]
        pending = None

        def pipelined(k):  # decode batch k + 1 in the pool while the model runs batch k
            nonlocal pending
            images = [f.result() for f in pending or
                      [pool.submit(model.decode, b) for b in groups[k % len(groups)]]]
            pending = [pool.submit(model.decode, b) for b in groups[(k + 1) % len(groups)]]
            model.predict(images)

        result = {
            "model_only": rate(lambda k: model.predict(decoded), batch, seconds),
            "serial": rate(lambda k: model.predict([model.decode(b) for b in
                                                    groups[k % len(groups)]]), batch, seconds),
            "pipelined": rate(pipelined, batch, seconds),
        }
        for future in pending:
            future.result()
        print(json.dumps(result), flush=True)


class _Ceiling:
    """The ceiling worker process: `measure(batch, seconds)` between server runs."""

    def __init__(self, model_dir, blobs_dir):
        self.process = subprocess.Popen([PYTHON, __file__, "--_ceiling", model_dir, blobs_dir],
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        stderr=subprocess.DEVNULL, text=True)
        self.expected = json.loads(self._line())

    def _line(self):
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError("the ceiling worker died")
        return line

    def measure(self, batch, seconds):
        self.process.stdin.write(f"{batch} {seconds}\n")
        self.process.stdin.flush()
        return json.loads(self._line())

    def close(self):
        self.process.stdin.close()
        self.process.wait(60)


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


def _load_test(args):
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
    name = os.path.basename(os.path.normpath(model_dir))
    path = f"/v1/models/{name}:predict"
    clients = [int(c) for c in args.clients.split(",")]
    settings = [("batch 1", ["--max-batch", "1"], 1),
                (f"dynamic ≤ 32, {args.batch_timeout_ms:g} ms",
                 ["--max-batch", "32", "--batch-timeout-ms", str(args.batch_timeout_ms)], 32)]
    ceiling = _Ceiling(model_dir, blobs_dir)
    servers = {label: _Server([PYTHON, "-m", "kerasrecipes.cli", "serve", model_dir, "--port",
                               "0", *flags], f"/v1/models/{name}")
               for label, flags, _ in settings}
    runs = []
    try:
        for repeat in range(args.repeats):
            for n in clients:
                for label, _, max_batch in settings:
                    # The in-process ceiling at the batch the same number of concurrent items
                    # allows, measured just before this run.
                    ceil = ceiling.measure(min(max_batch, n), args.ceiling_seconds)
                    server = servers[label]
                    stats0 = asyncio.run(_get_json(server.host, server.port, "/stats"))[1]
                    cpu0, client0 = server.cpu_seconds(), resource.getrusage(resource.RUSAGE_SELF)
                    lat, errors, seconds, sent = asyncio.run(_drive(
                        server.host, server.port, path, bodies, ceiling.expected, n,
                        args.requests, args.max_seconds))
                    client1 = resource.getrusage(resource.RUSAGE_SELF)
                    cpu = server.cpu_seconds() - cpu0
                    stats1 = asyncio.run(_get_json(server.host, server.port, "/stats"))[1]
                    done = len(lat)
                    rps = done / seconds
                    batches = stats1["batches"] - stats0["batches"]
                    run = {
                        "label": label, "clients": n, "done": done, "rps": rps, "lat": lat,
                        "errors": errors, "ceiling": ceil,
                        "lost": sent - done - sum(v for k, v in errors.items()
                                                  if k.startswith("connection")),
                        "mean_batch": (stats1["images"] - stats0["images"]) / max(batches, 1),
                        "cpu_ms": 1e3 * cpu / max(done, 1),
                        "client_cpu_ms": 1e3 * (client1.ru_utime + client1.ru_stime
                                                - client0.ru_utime - client0.ru_stime)
                        / max(done, 1),
                        "best": max(ceil["serial"], ceil["pipelined"]),
                    }
                    # And at the batch size the server formed (closed-loop clients split into
                    # groups that alternate: 32 clients make batches of about 16).
                    same = max(1, round(run["mean_batch"]))
                    same_ceil = ceil if same == min(max_batch, n) else ceiling.measure(
                        same, args.ceiling_seconds)
                    run["best_same"] = max(same_ceil["serial"], same_ceil["pipelined"])
                    runs.append(run)
                    print(f"[bench] run {repeat + 1}/{args.repeats} {label}, {n} clients: "
                          f"{rps:.1f} req/s, mean batch {run['mean_batch']:.2f}, errors "
                          f"{errors or 0}; in-process img/s: model only "
                          f"{ceil['model_only']:.1f}, decode then model {ceil['serial']:.1f}, "
                          f"decode ∥ model {ceil['pipelined']:.1f} → overhead "
                          f"{1 - rps / run['best']:+.0%}; at batch {same}: "
                          f"{run['best_same']:.1f} → {1 - rps / run['best_same']:+.0%}",
                          flush=True)
    finally:
        ceiling.close()
        rss = {label: server.peak_rss_mib() for label, server in servers.items()}
        status = {label: server.stop() for label, server in servers.items()}

    print(f"\n{name}: {len(blobs)} photos from {images_dir} "
          f"({statistics.mean(len(b) for b in blobs) / 1024:.1f} KB mean), 1 per request, "
          f"{os.cpu_count()} CPUs; {args.repeats} interleaved runs of {args.requests} requests "
          "per row, each after its own in-process ceiling; medians")
    header = ("server", "clients", "requests", "req/s", "p50 ms", "p95 ms", "p99 ms", "errors",
              "lost", "mean batch", "server CPU ms/req", "client CPU ms/req",
              "in-process batch", "model only img/s", "decode then model img/s",
              "decode ∥ model img/s", "overhead vs best in-process", "overhead vs model only",
              "best in-process at the server's mean batch img/s", "overhead vs it",
              "peak RSS MiB", "SIGTERM exit")
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    median = statistics.median
    rates = {}
    for label, _, max_batch in settings:
        for n in clients:
            mine = [r for r in runs if r["label"] == label and r["clients"] == n]
            lat = [x for r in mine for x in r["lat"]]
            errors = sum(sum(r["errors"].values()) for r in mine)
            rates[label, n] = median(r["rps"] for r in mine)
            row = [
                label, str(n), str(sum(r["done"] for r in mine)), f"{rates[label, n]:.1f}",
                *(f"{np.percentile(lat, q) * 1e3:.0f}" for q in (50, 95, 99)), str(errors),
                str(sum(r["lost"] for r in mine)), f"{median(r['mean_batch'] for r in mine):.2f}",
                f"{median(r['cpu_ms'] for r in mine):.1f}",
                f"{median(r['client_cpu_ms'] for r in mine):.2f}", str(min(max_batch, n)),
                *(f"{median(r['ceiling'][k] for r in mine):.1f}"
                  for k in ("model_only", "serial", "pipelined")),
                f"{median(1 - r['rps'] / r['best'] for r in mine):+.0%}",
                f"{median(1 - r['rps'] / r['ceiling']['model_only'] for r in mine):+.0%}",
                f"{median(r['best_same'] for r in mine):.1f}",
                f"{median(1 - r['rps'] / r['best_same'] for r in mine):+.0%}",
                f"{rss[label]:.0f}", str(status[label]),
            ]
            print("| " + " | ".join(row) + " |")
    dynamic, single = settings[1][0], settings[0][0]
    for n in clients:
        print(f"dynamic / batch 1 at {n} clients: {rates[dynamic, n] / rates[single, n]:.2f}×")


def _decode_paths(args):
    """The server's decode of one photo: decode then resize (two TensorFlow calls, what the
    server did first) vs. `decode_bytes(image_size=...)` (one call); medians of interleaved
    blocks."""
    from kerasrecipes.data.decode import decode_bytes, resize_uint8

    images_dir, blobs = _payload(args.images, args.photos)
    size = (128, 128)
    paths = {
        "decode, then resize (2 TF calls)": lambda b: resize_uint8(decode_bytes(b), size),
        "decode_bytes(image_size=...) (1 TF call)": lambda b: decode_bytes(b, image_size=size),
    }
    two, one = paths.values()
    assert all(np.array_equal(two(b), one(b)) for b in blobs)  # traces both, and they agree
    times = {name: [] for name in paths}
    for _ in range(args.repeats * 3):
        for name, fn in paths.items():
            start = time.perf_counter()
            for b in blobs:
                fn(b)
            times[name].append((time.perf_counter() - start) / len(blobs) * 1e3)
    print(f"\n{len(blobs)} photos from {images_dir} to {size}, {args.repeats * 3} interleaved "
          "blocks, medians (the same pixels both ways)")
    print("| path | ms per photo |\n|---|---|")
    for name, values in times.items():
        print(f"| {name} | {statistics.median(values):.2f} |")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=None, help="SavedModel dir (default: export an "
                        "untrained efficientnet_lite0 at 128 px)")
    parser.add_argument("--images", default=None, help="folder of <class>/*.jpg photos "
                        "(default: the demo validation photos)")
    parser.add_argument("--photos", type=int, default=64, help="distinct photos in the payload")
    parser.add_argument("--requests", type=int, default=800, help="requests per run")
    parser.add_argument("--max-seconds", type=float, default=60.0, help="time limit per run")
    parser.add_argument("--clients", default="1,8,32")
    parser.add_argument("--batch-timeout-ms", type=float, default=10.0)
    parser.add_argument("--ceiling-seconds", type=float, default=2.0,
                        help="seconds per in-process ceiling (three before each run)")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved runs per row")
    parser.add_argument("--frameworks", action="store_true",
                        help="compare Starlette and FastAPI on one tiny endpoint instead")
    parser.add_argument("--decode", action="store_true",
                        help="time the server's decode paths (one photo at a time) instead")
    parser.add_argument("--quick", action="store_true",
                        help="a few requests from 8 clients: checks the benchmark runs (CI)")
    parser.add_argument("--_ceiling", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--_tiny-app", dest="tiny_app", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args._ceiling:
        return _ceiling_worker(*args._ceiling)
    if args.tiny_app:
        return _tiny_app(args.tiny_app)
    if args.quick:  # the whole path in about a minute (CI): not a measurement
        args.requests, args.max_seconds, args.ceiling_seconds, args.repeats = 40, 20.0, 0.5, 1
        args.clients, args.photos = "8", 16
    if args.frameworks:
        return _frameworks(args)
    if args.decode:
        return _decode_paths(args)
    return _load_test(args)


if __name__ == "__main__":
    main()
