"""`kerasrecipes serve`: the real server in a subprocess, spoken to over HTTP on 127.0.0.1.

A tiny classifier is exported to a temporary directory; each server is started with
`python -m kerasrecipes.cli serve EXPORT --port 0` and its answers are checked against the same
export loaded in this process. Every request is bounded (timeouts) and only goes to 127.0.0.1.
"""

import asyncio
import base64
import io
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import zlib

import numpy as np
import pytest
from PIL import Image

import kerasrecipes as kr
from tiny_models import TINY

httpx = pytest.importorskip("httpx")
pytest.importorskip("starlette")
pytest.importorskip("uvicorn")

NAMES = ["cat", "dog", "fox"]
TIMEOUT = 30  # seconds, any single request


# ---------------------------------------------------------------------------------------------
# Fixtures: an export, images, a running server.


@pytest.fixture(scope="module")
def export_dir(tmp_path_factory, photos):
    import keras

    keras.utils.set_random_seed(0)
    model = kr.build_classifier(TINY, num_classes=3, weights=None, augment="light")
    # Large output weights, and biases centring the logits over the test photos: different
    # photos get different classes.
    dense = model.get_layer("head").get_layer("predictions")
    dense.kernel.assign(np.random.default_rng(1).normal(0, 20, dense.kernel.shape)
                        .astype("float32"))
    images = np.stack([np.asarray(Image.open(io.BytesIO(b)).convert("RGB").resize((16, 16)))
                       for b in photos])
    features = model.get_layer("backbone")(model.get_layer("preprocess")(images))
    pooled = keras.ops.convert_to_numpy(keras.ops.mean(features, axis=(1, 2)))
    dense.bias.assign(-(pooled @ keras.ops.convert_to_numpy(dense.kernel)).mean(0))
    return kr.export_saved_model(model, tmp_path_factory.mktemp("serve") / "tiny",
                                 class_names=NAMES)


@pytest.fixture(scope="module")
def served(export_dir):
    """The export loaded in this process: the reference answers."""
    import tensorflow as tf

    return tf.saved_model.load(export_dir)


def _encode(pixels, fmt="JPEG"):
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format=fmt, **({"quality": 95} if fmt == "JPEG" else {}))
    return buffer.getvalue()


@pytest.fixture(scope="module")
def photos():
    """Eight encoded images of different sizes and formats, with their expected pixels."""
    rng = np.random.default_rng(0)
    blobs = []
    for i in range(8):
        size = (20 + 3 * i, 30 - 2 * i)
        base = np.zeros(size + (3,), np.int64)
        base[..., i % 3] = 200
        pixels = np.clip(base + rng.integers(0, 50, size + (3,)), 0, 255).astype("uint8")
        blobs.append(_encode(pixels, ("JPEG", "PNG", "BMP", "GIF")[i % 4]))
    return blobs


def _expected(served, blobs, tmp_path):
    """What the export answers for `blobs` decoded by the training pipeline (kr.load_image)."""
    images = []
    for i, blob in enumerate(blobs):
        path = tmp_path / f"img{i}"
        path.write_bytes(blob)
        images.append(kr.load_image(path, image_size=16))
    out = served.serve(np.stack(images))
    return out["probabilities"].numpy(), out["class_index"].numpy()


def _b64(blob):
    return base64.b64encode(blob).decode()


class Server:
    """`kerasrecipes serve` in a subprocess on a free port of 127.0.0.1."""

    def __init__(self, export_dir, cwd, *args):
        self.log = open(os.path.join(cwd, "server.log"), "w+")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "kerasrecipes.cli", "serve", str(export_dir), "--port", "0",
             *args],
            cwd=cwd, stdout=subprocess.PIPE, stderr=self.log, text=True,
        )
        deadline = time.monotonic() + 120
        line = ""
        while "http://" not in line:
            line = self.process.stdout.readline()
            if not line and self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the server did not start: {self.stderr()}")
        self.url = line.split(" on ")[1].split()[0]
        self.port = int(self.url.rsplit(":", 1)[1])
        # Ready when the status answers (the model is loaded before the line is printed).
        while True:
            try:
                if httpx.get(self.url + "/v1/models/tiny", timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline or self.process.poll() is not None:
                self.stop()
                raise RuntimeError(f"the server did not answer: {self.stderr()}")
            time.sleep(0.1)

    def stderr(self):
        self.log.flush()
        self.log.seek(0)
        return self.log.read()[-3000:]

    def post(self, path, **kwargs):
        return httpx.post(self.url + path, timeout=TIMEOUT, **kwargs)

    def get(self, path):
        return httpx.get(self.url + path, timeout=TIMEOUT)

    def predict(self, payload, path="/v1/models/tiny:predict"):
        return self.post(path, content=json.dumps(payload),
                         headers={"Content-Type": "application/json"})

    def stop(self):
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(30)
        self.log.close()


@pytest.fixture(scope="module")
def server(export_dir, tmp_path_factory):
    # A 50 ms batch window, so that concurrent requests are seen to share model calls.
    cwd = tmp_path_factory.mktemp("cwd")
    running = Server(export_dir, cwd, "--batch-timeout-ms", "50", "--max-batch", "8",
                     "--max-request-bytes", "1000000", "--max-image-pixels", "1000000")
    yield running
    running.stop()


# ---------------------------------------------------------------------------------------------
# TF Serving's REST API: status, metadata, predict.


def test_status_and_metadata_speak_tf_serving(server):
    status = server.get("/v1/models/tiny")
    assert status.status_code == 200
    assert status.json() == {"model_version_status": [
        {"version": "1", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}]}
    assert server.get("/v1/models/tiny/versions/1").json() == status.json()
    meta = server.get("/v1/models/tiny/metadata").json()
    assert meta["model_spec"] == {"name": "tiny", "signature_name": "", "version": "1"}
    signatures = meta["metadata"]["signature_def"]["signature_def"]
    assert {"serving_default", "serve", "serve_bytes"} <= set(signatures)
    images = signatures["serve"]["inputs"]["images"]
    assert images["dtype"] == "DT_UINT8"
    assert [d["size"] for d in images["tensor_shape"]["dim"]] == ["-1", "16", "16", "3"]
    assert signatures["serve_bytes"]["inputs"]["image_bytes"]["dtype"] == "DT_STRING"
    assert set(signatures["serve"]["outputs"]) == {"probabilities", "class_index", "class_name"}
    assert signatures["serve"]["method_name"] == "tensorflow/serving/predict"
    assert meta["kerasrecipes"]["class_names"] == NAMES
    assert meta["kerasrecipes"]["image_shape"] == [16, 16, 3]

    for path in ("/v1/models/other", "/v1/models/tiny/versions/2",
                 "/v1/models/tiny/versions/2/metadata", "/v1/models/../../etc/passwd",
                 "/v1/models/tiny/nothing"):
        answer = server.get(path)
        assert answer.status_code == 404, path
        assert "error" in answer.json()
    assert "Servable not found" in server.get("/v1/models/other").json()["error"]


def test_predict_b64_matches_the_export_in_process(server, served, photos, tmp_path):
    probabilities, index = _expected(served, photos, tmp_path)
    assert len(set(index.tolist())) > 1
    for payload in (
        {"instances": [{"b64": _b64(b)} for b in photos]},
        {"signature_name": "serve_bytes",
         "instances": [{"image_bytes": {"b64": _b64(b)}} for b in photos]},
    ):
        answer = server.predict(payload)
        assert answer.status_code == 200, answer.text
        predictions = answer.json()["predictions"]
        assert len(predictions) == len(photos)
        np.testing.assert_allclose([p["probabilities"] for p in predictions], probabilities,
                                   atol=1e-6)
        assert [p["class_index"] for p in predictions] == index.tolist()
        assert [p["class_name"] for p in predictions] == [NAMES[i] for i in index]
    # Columnar form: {"inputs": ...} answered with {"outputs": {...}}.
    answer = server.predict({"inputs": {"image_bytes": [{"b64": _b64(b)} for b in photos]}})
    assert answer.status_code == 200, answer.text
    outputs = answer.json()["outputs"]
    np.testing.assert_allclose(outputs["probabilities"], probabilities, atol=1e-6)
    assert outputs["class_name"] == [NAMES[i] for i in index]


def test_predict_uint8_lists_as_in_the_tf_serving_tutorial(server, served):
    """The request of TF Serving's REST tutorial: `json.dumps({"signature_name":
    "serving_default", "instances": images.tolist()})`, then `json.loads(text)["predictions"]`."""
    images = np.random.default_rng(3).integers(0, 256, (3, 16, 16, 3)).astype("uint8")
    data = json.dumps({"signature_name": "serving_default", "instances": images.tolist()})
    answer = server.post("/v1/models/tiny:predict", content=data,
                         headers={"content-type": "application/json"})
    assert answer.status_code == 200, answer.text
    predictions = json.loads(answer.text)["predictions"]
    np.testing.assert_allclose([p["probabilities"] for p in predictions],
                               served.serve(images)["probabilities"].numpy(), atol=1e-6)
    columnar = server.predict({"inputs": images.tolist()}).json()["outputs"]
    np.testing.assert_allclose(columnar["probabilities"],
                               served.serve(images)["probabilities"].numpy(), atol=1e-6)
    versioned = server.predict({"instances": [{"images": images[0].tolist()}]},
                               path="/v1/models/tiny/versions/1:predict")
    assert versioned.status_code == 200
    assert versioned.json()["predictions"][0]["class_index"] == predictions[0]["class_index"]


def test_a_request_built_from_tensorflow_serving_api_protos(server, served, photos, tmp_path):
    """A client holding a `predict_pb2.PredictRequest` (the tensorflow-serving-api package)
    sends its tensors as TF Serving's REST mapping says: columnar `inputs`, DT_STRING values as
    `{"b64": ...}`, uint8 tensors as nested lists."""
    predict_pb2 = pytest.importorskip("tensorflow_serving.apis.predict_pb2")
    import tensorflow as tf

    request = predict_pb2.PredictRequest()
    request.model_spec.name = "tiny"
    request.model_spec.signature_name = "serve_bytes"
    request.inputs["image_bytes"].CopyFrom(tf.make_tensor_proto(photos[:4], dtype=tf.string))

    def rest_json(request):
        inputs = {}
        for key, proto in request.inputs.items():
            value = tf.make_ndarray(proto)
            inputs[key] = ([{"b64": _b64(v)} for v in value.tolist()]
                           if proto.dtype == tf.string.as_datatype_enum else value.tolist())
        return {"signature_name": request.model_spec.signature_name, "inputs": inputs}

    answer = server.predict(rest_json(request), path=f"/v1/models/{request.model_spec.name}"
                            ":predict")
    assert answer.status_code == 200, answer.text
    probabilities, _ = _expected(served, photos[:4], tmp_path)
    np.testing.assert_allclose(answer.json()["outputs"]["probabilities"], probabilities,
                               atol=1e-6)

    images = np.random.default_rng(4).integers(0, 256, (2, 16, 16, 3)).astype("uint8")
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "tiny"
    request.model_spec.signature_name = "serving_default"
    request.inputs["images"].CopyFrom(tf.make_tensor_proto(images))
    answer = server.predict(rest_json(request))
    assert answer.status_code == 200, answer.text
    np.testing.assert_allclose(answer.json()["outputs"]["probabilities"],
                               served.serve(images)["probabilities"].numpy(), atol=1e-6)


# ---------------------------------------------------------------------------------------------
# Bad input: 400 naming the item; the good items of a request are still answered.


def _png_header_only(width, height):
    """The header of a `width` × `height` RGB PNG: signature, IHDR and the start of an IDAT
    chunk of 1 MB, cut after 16 bytes. Only a decoder that trusts it would allocate the image."""
    ihdr = (width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([8, 2, 0, 0, 0]))
    chunk = b"IHDR" + ihdr
    return (b"\x89PNG\r\n\x1a\n" + len(ihdr).to_bytes(4, "big") + chunk
            + zlib.crc32(chunk).to_bytes(4, "big") + (2**20).to_bytes(4, "big") + b"IDAT"
            + zlib.compress(b"\0" * 1000)[:16])


def test_bad_items_are_named_and_the_good_ones_answered(server, served, photos, tmp_path):
    jpeg = photos[0]
    bad = {
        1: (b"this is not an image", "not an image"),
        2: (b"", "empty image (0 bytes)"),
        3: (jpeg[: len(jpeg) // 2], "truncated"),
        4: (_png_header_only(2000, 1000), "image too large: 2000×1000 = 2,000,000 pixels, "
            "over the limit of 1,000,000 (--max-image-pixels)"),
        5: (_png_header_only(30000, 30000), "image too large (Image size (900000000 pixels)"),
    }
    tiny = _encode(np.full((1, 1, 3), 200, "uint8"), "PNG")  # 1×1: fine, resized
    blobs = [jpeg] + [b for b, _ in bad.values()] + [tiny, photos[1]]
    answer = server.predict({"instances": [{"b64": _b64(b)} for b in blobs]})
    assert answer.status_code == 200, answer.text
    predictions = answer.json()["predictions"]
    assert len(predictions) == len(blobs)
    for i, (_, message) in bad.items():
        assert set(predictions[i]) == {"error"}
        assert predictions[i]["error"].startswith(f"instances[{i}]: ")
        assert message in predictions[i]["error"]
    good = [0, 6, 7]
    probabilities, _ = _expected(served, [blobs[i] for i in good], tmp_path)
    np.testing.assert_allclose([predictions[i]["probabilities"] for i in good], probabilities,
                               atol=1e-6)
    # The same request again: identical answers.
    assert server.predict({"instances": [{"b64": _b64(b)} for b in blobs]}).json() == {
        "predictions": predictions}


@pytest.mark.parametrize("payload, status, message", [
    ("{not json", 400, "not valid JSON"),
    ([1, 2], 400, 'either "instances"'),
    ({"instances": [], "inputs": []}, 400, 'either "instances"'),
    ({"instances": []}, 400, "the request has no items"),
    ({"instances": {"b64": "x"}}, 400, '"instances" must be a list'),
    ({"signature_name": "classify", "instances": [[0]]}, 400, "unknown signature_name"),
    ({"instances": [{"b64": "%%%"}]}, 400, "instances[0]: invalid base64"),
    ({"instances": ["abc"]}, 400, 'instances[0]: a bare string: send encoded images as {"b64"'),
    ({"instances": [7]}, 400, "instances[0]: expected"),
    ({"instances": [{"pixels": [1]}]}, 400, "instances[0]: an object item must be"),
    ({"instances": [np.zeros((8, 8, 3), int).tolist()]}, 400,
     "instances[0]: wrong shape [8, 8, 3]: the model takes uint8 images of shape [16, 16, 3]"),
    ({"instances": [[[[0, 0, 0]] * 16] * 15 + [[[0, 0]] * 16]]}, 400,
     "instances[0]: not a rectangular array"),
    ({"instances": [np.full((16, 16, 3), 300).tolist()]}, 400,
     "instances[0]: values must be integers 0-255 (got 300..300)"),
    ({"instances": [np.full((16, 16, 3), 0.5).tolist()]}, 400,
     "instances[0]: values must be integers 0-255 (got float64 values)"),
    ({"inputs": {"pixels": []}}, 400, '"inputs" as an object takes one input named'),
    ({"instances": [{"b64": "AAAA"}, {"b64": ""}]}, 400, "all 2 items failed: instances[0]: "),
    ({"inputs": [{"b64": _b64(b"junk")}, np.zeros((16, 16, 3), int).tolist()]}, 400,
     "1 of 2 items failed: inputs[0]: not an image"),
])
def test_bad_requests_get_a_400_that_says_why(server, payload, status, message):
    body = payload if isinstance(payload, str) else json.dumps(payload)
    answer = server.post("/v1/models/tiny:predict", content=body)
    assert answer.status_code == status, answer.text
    assert message in answer.json()["error"]


def test_limits_methods_and_routes(server):
    big = json.dumps({"instances": [{"b64": "A" * 1_100_000}]})
    answer = server.post("/v1/models/tiny:predict", content=big)
    assert answer.status_code == 413
    assert "over the limit of 1,000,000" in answer.json()["error"]

    def chunks():  # no Content-Length: the limit holds while streaming
        for _ in range(20):
            yield b"x" * 100_000

    assert server.post("/v1/models/tiny:predict", content=chunks()).status_code == 413
    answer = server.predict({"instances": [[0]] * 300})
    assert answer.status_code == 413 and "at most 256 per request" in answer.json()["error"]
    assert server.get("/v1/models/tiny:predict").status_code == 405
    answer = server.predict({"instances": [[0]]}, path="/v1/models/tiny:classify")
    assert answer.status_code == 400 and ":classify is not served" in answer.json()["error"]
    assert server.get("/nothing/here").status_code == 404


def test_multipart_upload_names_each_file(server, served, photos, tmp_path):
    files = [("file", ("a.jpg", photos[0], "image/jpeg")),
             ("file", ("../../notes.txt", b"hello", "text/plain")),
             ("file", ("b.png", photos[1], "image/png"))]
    answer = server.post("/predict", files=files)
    assert answer.status_code == 200, answer.text
    predictions = answer.json()["predictions"]
    assert [p["file"] for p in predictions] == ["a.jpg", "../../notes.txt", "b.png"]
    assert predictions[1] == {"file": "../../notes.txt", "error": "file '../../notes.txt': not "
                              "an image in a format kerasrecipes reads (JPEG, PNG, GIF, BMP, "
                              "WebP, TIFF)"}
    probabilities, index = _expected(served, photos[:2], tmp_path)
    for p, probs, i in zip((predictions[0], predictions[2]), probabilities, index):
        np.testing.assert_allclose(p["probabilities"], probs, atol=1e-6)
        assert p["class_name"] == NAMES[i]
        assert p["top"][0] == {"class_name": NAMES[i], "probability": p["probabilities"][i]}
        assert len(p["top"]) == 3
    raw = server.post("/predict", content=photos[0], headers={"Content-Type": "image/jpeg"})
    assert raw.status_code == 200
    assert raw.json()["predictions"][0]["class_index"] == predictions[0]["class_index"]
    answer = server.post("/predict", files=[("file", ("x.txt", b"hello", "text/plain"))])
    assert answer.status_code == 400 and "file 'x.txt': not an image" in answer.json()["error"]
    answer = server.post("/predict", content=b"{}", headers={"Content-Type": "application/json"})
    assert answer.status_code == 415 and "curl -F file=@photo.jpg" in answer.json()["error"]
    # Nothing a request sends reaches the filesystem: the server's working directory holds
    # only its log, and the export is unchanged.
    assert sorted(os.listdir(os.path.dirname(server.log.name))) == ["server.log"]


def test_concurrent_requests_are_batched_and_each_gets_its_own_answer(server, served, photos,
                                                                      tmp_path):
    probabilities, _ = _expected(served, photos, tmp_path)
    before = server.get("/stats").json()

    async def clients():
        async with httpx.AsyncClient(timeout=TIMEOUT) as client:
            async def one(i):
                blob = photos[i % len(photos)]
                answer = await client.post(server.url + "/v1/models/tiny:predict",
                                           json={"instances": [{"b64": _b64(blob)}]})
                return i, answer

            return await asyncio.gather(*(one(i) for i in range(24)))

    for i, answer in asyncio.run(clients()):
        assert answer.status_code == 200, answer.text
        np.testing.assert_allclose(answer.json()["predictions"][0]["probabilities"],
                                   probabilities[i % len(photos)], atol=1e-6)
    after = server.get("/stats").json()
    images, batches = after["images"] - before["images"], after["batches"] - before["batches"]
    assert images == 24
    assert batches < 24  # several requests shared a model call
    assert after["queued"] == 0 and after["max_batch"] == 8


# ---------------------------------------------------------------------------------------------
# A full queue, then SIGTERM: in-flight requests finish, new ones get 503, exit status 0.


def _slow_request(port, body, path="/v1/models/tiny:predict"):
    """Opens a connection and sends the headers and half the body; returns (socket, rest)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
    head = (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode()
    sock.sendall(head + body[: len(body) // 2])
    return sock, body[len(body) // 2:]


def _read_response(sock):
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)
    head, rest = data.split(b"\r\n\r\n", 1)
    length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                      if line.lower().startswith(b"content-length")))
    while len(rest) < length:
        rest += sock.recv(65536)
    return int(head.split()[1]), json.loads(rest[:length])


def test_full_queue_503_then_sigterm_drains(export_dir, photos, tmp_path):
    server = Server(export_dir, tmp_path, "--max-batch", "8", "--batch-timeout-ms", "3000",
                    "--max-queue", "4")
    try:
        # Alone, a request does not wait out the 3 s batch window: nothing else is arriving.
        start = time.monotonic()
        assert server.predict({"instances": [{"b64": _b64(photos[0])}]}).status_code == 200
        assert time.monotonic() - start < 2.5
        # A request still uploading is arriving: the batch waits for it (up to the window), so
        # a first request's images wait in the queue, and the next request finds it full.
        uploading, rest = _slow_request(server.port, json.dumps(
            {"instances": [{"b64": _b64(photos[1])}]}).encode())
        results = {}
        first = threading.Thread(target=lambda: results.update(first=server.predict(
            {"instances": [{"b64": _b64(b)} for b in photos[:3]]})))
        first.start()
        deadline = time.monotonic() + 10
        while server.get("/stats").json()["queued"] < 3 and time.monotonic() < deadline:
            time.sleep(0.02)
        full = server.predict({"instances": [{"b64": _b64(b)} for b in photos[:2]]})
        assert full.status_code == 503
        assert full.headers["retry-after"] == "1"
        assert "the batch queue is full (3 of 4 images queued)" in full.json()["error"]
        uploading.sendall(rest)  # the last one arriving: the batch of 4 closes
        status, answer = _read_response(uploading)
        uploading.close()
        assert status == 200 and len(answer["predictions"]) == 1
        first.join(TIMEOUT)
        assert results["first"].status_code == 200
        assert len(results["first"].json()["predictions"]) == 3
        assert server.get("/stats").json()["mean_batch"] == 2.5  # 1, then 4 together

        # In flight: a request whose body is half sent when SIGTERM arrives.
        body = json.dumps({"instances": [{"b64": _b64(photos[0])}]}).encode()
        sock, rest = _slow_request(server.port, body)
        time.sleep(0.3)
        server.process.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        refused = server.get("/v1/models/tiny")
        assert refused.status_code == 503
        assert refused.headers["retry-after"] == "1"
        assert "shutting down" in refused.json()["error"]
        assert server.process.poll() is None  # still serving the slow request
        sock.sendall(rest)
        status, answer = _read_response(sock)
        sock.close()
        assert status == 200 and len(answer["predictions"]) == 1
        assert server.process.wait(60) == 0
        with pytest.raises(httpx.TransportError):
            httpx.get(server.url + "/v1/models/tiny", timeout=5)
    finally:
        server.stop()


def test_cli_refuses_bad_arguments_before_loading(tmp_path, export_dir):
    from kerasrecipes import cli

    assert cli.main(["serve", str(tmp_path / "missing")]) == 2
    os.makedirs(tmp_path / "empty")
    assert cli.main(["serve", str(tmp_path / "empty")]) == 2
    for flag, value in (("--max-batch", "0"), ("--max-queue", "-1"), ("--workers", "0"),
                        ("--batch-timeout-ms", "-5"), ("--port", "70000")):
        assert cli.main(["serve", str(export_dir), flag, value]) == 2


def test_tf_serving_version_directories(export_dir, tmp_path):
    import shutil

    from kerasrecipes.serving.model import resolve_model_dir

    base = tmp_path / "photos"
    for version in ("1", "7", "10"):
        shutil.copytree(export_dir, base / version)
    os.makedirs(base / "tmp")
    assert resolve_model_dir(base) == (str(base / "10"), 10)
    assert resolve_model_dir(export_dir) == (str(export_dir), 1)


@pytest.mark.slow
def test_two_worker_processes_share_the_port_and_drain(export_dir, photos, tmp_path):
    server = Server(export_dir, tmp_path, "--workers", "2")
    try:
        pids = set()
        deadline = time.monotonic() + 60
        while len(pids) < 2 and time.monotonic() < deadline:
            with httpx.Client(timeout=TIMEOUT) as client:  # a new connection each time
                pids.add(client.get(server.url + "/stats").json()["pid"])
        assert len(pids) == 2
        answer = server.predict({"instances": [{"b64": _b64(photos[0])}]})
        assert answer.status_code == 200
        server.process.send_signal(signal.SIGTERM)
        assert server.process.wait(60) == 0
    finally:
        server.stop()


# ---------------------------------------------------------------------------------------------
# Fuzz: mutated JPEG/PNG/GIF/BMP bytes through the server's decoder and the file path.


def _seed_images():
    """Small valid files of each format the fuzzer mutates (with alpha, palette, grayscale)."""
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (12, 10, 3)).astype("uint8")
    seeds = [_encode(rgb, "JPEG"), _encode(rgb, "PNG"), _encode(rgb, "BMP"), _encode(rgb, "GIF")]
    buffer = io.BytesIO()
    Image.fromarray(np.dstack([rgb, rgb[..., :1]]), "RGBA").save(buffer, "PNG")
    seeds.append(buffer.getvalue())
    buffer = io.BytesIO()
    Image.fromarray(rgb[..., 0], "L").save(buffer, "JPEG", progressive=True)
    seeds.append(buffer.getvalue())
    buffer = io.BytesIO()
    Image.fromarray(rgb).convert("P").save(buffer, "PNG")
    seeds.append(buffer.getvalue())
    return seeds


class _Hang(Exception):
    pass


def _mutations(seeds):
    """A hypothesis strategy: 1–4 mutations (bit flips, overwritten header bytes, cuts,
    insertions, splices with another seed) of one of `seeds`."""
    from hypothesis import strategies as st

    @st.composite
    def mutated(draw):
        data = bytearray(draw(st.sampled_from(seeds)))
        for _ in range(draw(st.integers(1, 4))):
            kind = draw(st.sampled_from(["flip", "header", "cut", "insert", "splice"]))
            if not data:
                break
            at = draw(st.integers(0, len(data) - 1))
            if kind == "flip":
                data[at] ^= 1 << draw(st.integers(0, 7))
            elif kind == "header":  # sizes, depths, chunk lengths live in the first bytes
                at = draw(st.integers(0, min(len(data), 40) - 1))
                data[at] = draw(st.integers(0, 255))
            elif kind == "cut":
                del data[at:]
            elif kind == "insert":
                data[at:at] = draw(st.binary(min_size=1, max_size=16))
            else:
                other = draw(st.sampled_from(seeds))
                data[at:] = other[draw(st.integers(0, len(other) - 1)):]
        return bytes(data)

    return mutated()


def _fuzz(decode, examples=3000):
    """Runs `decode(blob)` on `examples` mutated images, 10 s each at most. `decode` returns
    True (decoded) or False (refused with a message) and raises on anything else. Returns the
    counts of both outcomes."""
    pytest.importorskip("hypothesis")
    from hypothesis import HealthCheck, given, settings

    outcomes = {True: 0, False: 0}

    def on_alarm(signum, frame):
        raise _Hang()

    @settings(max_examples=examples, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(_mutations(_seed_images()))
    def check(blob):
        signal.alarm(10)
        try:
            outcomes[decode(blob)] += 1
        except _Hang:
            pytest.fail(f"decoding hung on {blob[:64]!r}… ({len(blob)} bytes)")
        finally:
            signal.alarm(0)

    previous = signal.signal(signal.SIGALRM, on_alarm)
    try:
        check()
    finally:
        signal.signal(signal.SIGALRM, previous)
    return outcomes


@pytest.mark.slow
def test_fuzz_the_server_decoder(export_dir):
    """3,000 mutations of JPEG, PNG, GIF and BMP files: the server's decoder returns 16×16 RGB
    uint8 or refuses with an `ItemError` and its reason, within 10 s; never anything else."""
    from kerasrecipes.serving import ItemError, ServedModel

    model = ServedModel(export_dir, max_image_pixels=4_000_000)

    def decode(blob):
        try:
            image = model.decode(blob)
        except ItemError as error:
            assert str(error)
            return False
        assert image.shape == (16, 16, 3) and image.dtype == np.uint8
        return True

    outcomes = _fuzz(decode)
    # Both outcomes are exercised: the mutations are neither all harmless nor all fatal.
    assert outcomes[True] > 100 and outcomes[False] > 100, outcomes


@pytest.mark.slow
def test_fuzz_serve_bytes(export_dir, served):
    """The same mutations through the export's in-graph `serve_bytes`, each next to a good
    image: the call never raises or hangs, the good image's answer never changes, and a mutated
    item is either refused (`ok=False`, a reason, neutral outputs) or served with the outputs of
    `serve` on the pixels training decodes from the same bytes (`decode_bytes`; for the few that
    only TensorFlow reads, `decode_image_batch`'s)."""
    import tensorflow as tf

    from kerasrecipes.data.decode import ImageDecodeError, decode_bytes, tf_resize
    from kerasrecipes.data.graph_decode import decode_image_batch

    good = _seed_images()[0]
    reference = served.serve_bytes(tf.constant([good]))["probabilities"].numpy()[0]
    decode = tf.function(lambda blobs: decode_image_batch(blobs, (16, 16)))

    def check(blob):
        out = served.serve_bytes(tf.constant([blob, good]))
        ok, error = out["ok"].numpy(), out["error"].numpy()
        probabilities = out["probabilities"].numpy()
        assert ok[1] and error[1] == b""
        np.testing.assert_allclose(probabilities[1], reference, atol=1e-6)
        if not ok[0]:
            assert error[0] and not probabilities[0].any() and out["class_index"][0] == -1
            return False
        assert error[0] == b""
        try:
            pixels = tf_resize(decode_bytes(blob), (16, 16))[None]
        except ImageDecodeError:
            pixels = decode(tf.constant([blob]))[0]
        expected = served.serve(pixels)["probabilities"].numpy()[0]
        np.testing.assert_allclose(probabilities[0], expected, atol=1e-6)
        return True

    outcomes = _fuzz(check)
    assert outcomes[True] > 100 and outcomes[False] > 100, outcomes


@pytest.mark.slow
def test_fuzz_load_image(tmp_path):
    """The same mutations through `kr.load_image` (the scan, then the training decoders):
    16×16 RGB uint8 or a ValueError naming the file. The scan checks each file with the decoder
    the pipeline uses for it, so a file TensorFlow's JPEG/PNG decoder rejects but PIL reads
    takes the PIL path instead of failing later (it did, as an `InvalidArgumentError`)."""
    path = tmp_path / "case.img"

    def decode(blob):
        path.write_bytes(blob)
        try:
            image = kr.load_image(path, image_size=16)
        except ValueError as error:
            assert str(path) in str(error)
            return False
        assert image.shape == (16, 16, 3) and image.dtype == np.uint8
        return True

    outcomes = _fuzz(decode)
    assert outcomes[True] > 100 and outcomes[False] > 100, outcomes
