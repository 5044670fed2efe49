"""The ASGI app: TensorFlow Serving's REST API and a multipart upload, over one `ServedModel`.

Routes (`<name>` is the served model's name, `[/versions/<v>]` optional as in TF Serving):

- `GET /v1/models/<name>`: status (`model_version_status`);
- `GET /v1/models/<name>/metadata`: the SignatureDefMap, plus a `kerasrecipes` section;
- `POST /v1/models/<name>:predict`: `{"instances": [...]}` (row form, answered with
  `{"predictions": [...]}`) or `{"inputs": ...}` (columnar, answered with `{"outputs": {...}}`).
  An item is an encoded image `{"b64": "..."}` or a nested list of uint8 values `[H][W][3]`,
  bare or under its input's name (`{"images": ...}`, `{"image_bytes": {"b64": ...}}`);
- `POST /predict`: multipart files (`curl -F file=@a.jpg`) or one raw image body;
- `GET /stats`: batches and images so far, mean batch size, queue length, settings.

Errors are JSON `{"error": "..."}` naming the item. In the row form and in `/predict` one bad item
does not fail the others: its prediction is `{"error": "instances[3]: ..."}` and the request still
answers 200 (TF Serving would fail the whole request); only when every item is bad is the answer
a 400. The columnar form is one tensor, so any bad item makes it a 400. A full batch queue
answers 503 with `Retry-After`; so does every request once the server is draining (SIGTERM).
Nothing in a request names a file: the model directory is fixed at start.

Starlette rather than FastAPI: on the same one-line JSON endpoint under uvicorn it answered
about as many requests a second (see BENCHMARKS.md, "Serving"), and this app needs none of
FastAPI's extras — its inputs are TF Serving's JSON, checked item by item, not a pydantic schema.
"""

import asyncio
import base64
import binascii
import concurrent.futures
import json
import logging
import os
import re
import time

from kerasrecipes.serving.batcher import DynamicBatcher, QueueFull
from kerasrecipes.serving.model import ItemError

logger = logging.getLogger("kerasrecipes.serving")

DEFAULT_MAX_REQUEST_BYTES = 32 * 2**20
RETRY_AFTER_SECONDS = 1
_SIGNATURES = {"": "serve", "serving_default": "serve", "serve": "serve",
               "serve_bytes": "serve_bytes"}
_INPUT_NAMES = ("images", "image_bytes")
_MAX_ERRORS_SHOWN = 5


class ServerState:
    """What the HTTP layer and the process share: draining flag, in-flight count, batcher."""

    def __init__(self):
        self.draining_since = None
        self.in_flight = 0
        self.batcher = None
        self.started = time.time()

    @property
    def draining(self):
        return self.draining_since is not None

    def drain(self):
        """Refuses new requests (503) and closes batches without waiting from now on."""
        if self.draining_since is None:
            self.draining_since = time.monotonic()
            if self.batcher is not None:
                self.batcher.flush = True

    def idle(self):
        """Whether no request is in flight and nothing is queued or running."""
        return self.in_flight == 0 and (self.batcher is None or self.batcher.idle())


class _HTTPError(Exception):
    def __init__(self, status, message, headers=None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


def _json_response(content, status=200, headers=None):
    from starlette.responses import Response

    body = json.dumps(content, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    return Response(body, status_code=status, headers=headers, media_type="application/json")


def _error_response(status, message, headers=None):
    return _json_response({"error": message}, status, headers)


class _Gate:
    """ASGI middleware: 503 while draining, 413 on a declared oversize body, in-flight count."""

    def __init__(self, app, state, max_request_bytes):
        self.app = app
        self.state = state
        self.max_request_bytes = max_request_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        if self.state.draining:
            response = _error_response(
                503, "the server is shutting down; retry on another replica",
                {"Retry-After": str(RETRY_AFTER_SECONDS), "Connection": "close"})
            return await response(scope, receive, send)
        length = dict(scope.get("headers") or ()).get(b"content-length")
        if length is not None:
            try:
                too_big = int(length) > self.max_request_bytes
            except ValueError:
                response = _error_response(400, f"invalid Content-Length: {length!r}")
                return await response(scope, receive, send)
            if too_big:
                response = _error_response(
                    413, f"request body of {int(length):,} bytes is over the limit of "
                    f"{self.max_request_bytes:,} (--max-request-bytes)", {"Connection": "close"})
                return await response(scope, receive, send)
        self.state.in_flight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.state.in_flight -= 1


def create_app(model, max_batch=32, batch_timeout_ms=10.0, max_queue=256,
               max_request_bytes=DEFAULT_MAX_REQUEST_BYTES, decode_threads=None, state=None):
    """The ASGI application serving `model` (a `ServedModel`) with dynamic batching.

    Args:
        model: `kerasrecipes.serving.ServedModel`.
        max_batch: int. Most images in one model call; `1` turns batching off. Defaults to `32`.
        batch_timeout_ms: float. How long a batch waits for more images after its first (only
            while other requests are arriving). Defaults to `10.0`.
        max_queue: int. Most images waiting for the model; beyond it requests get 503.
            Defaults to `256`.
        max_request_bytes: int. Largest request body; larger ones get 413. Defaults to 32 MiB.
        decode_threads: int or None. Threads decoding images. Defaults to the CPU count.
        state: `ServerState` or None, shared with the process (SIGTERM draining).

    Returns:
        The ASGI app; `app.state.server` is its `ServerState`.
    """
    import contextlib

    from starlette.applications import Starlette
    from starlette.routing import Route

    if isinstance(max_request_bytes, bool) or not isinstance(max_request_bytes, int) \
            or max_request_bytes < 1:
        raise ValueError("max_request_bytes must be a positive integer. "
                         f"Received: max_request_bytes={max_request_bytes!r}")
    state = state or ServerState()
    api = _API(model, state, max_request_bytes)
    # Checked here, before the first request, rather than when the event loop starts.
    batcher = api.batcher = DynamicBatcher(
        model.predict, max_batch=max_batch, timeout_ms=batch_timeout_ms, max_queue=max_queue,
        incoming=lambda: api.arriving)
    decoder = api.decoder = concurrent.futures.ThreadPoolExecutor(
        decode_threads or os.cpu_count() or 1, thread_name_prefix="decode")

    @contextlib.asynccontextmanager
    async def lifespan(app):
        await batcher.start()
        state.batcher = batcher
        try:
            yield
        finally:
            await batcher.stop()
            decoder.shutdown(wait=True)

    app = Starlette(
        routes=[
            Route("/", api.index, methods=["GET"]),
            Route("/predict", api.upload, methods=["POST"]),
            Route("/stats", api.stats, methods=["GET"]),
            Route("/v1/models/{rest:path}", api.models, methods=["GET", "POST"]),
        ],
        lifespan=lifespan,
        exception_handlers={404: _not_found, 405: _not_allowed},
    )
    app.state.server = state
    app.add_middleware(_Gate, state=state, max_request_bytes=max_request_bytes)
    return app


class _API:
    def __init__(self, model, state, max_request_bytes):
        self.model = model
        self.batcher = self.decoder = None  # set by `create_app`
        self.state = state
        self.max_request_bytes = max_request_bytes
        self.arriving = 0  # POST requests received and not yet batched (body, JSON, decoding)

    # ---------------------------------------------------------------------------------------
    # Routes.

    async def index(self, request):
        name = self.model.name
        return _json_response({
            "model": name, "version": str(self.model.version),
            "endpoints": {
                "status": f"GET /v1/models/{name}",
                "metadata": f"GET /v1/models/{name}/metadata",
                "predict": f"POST /v1/models/{name}:predict "
                           '{"instances": [{"b64": "<base64 JPEG/PNG>"}]}',
                "upload": "POST /predict (multipart: curl -F file=@photo.jpg)",
            },
        })

    async def stats(self, request):
        batcher = self.batcher
        return _json_response({
            "pid": os.getpid(), "model": self.model.name, "version": str(self.model.version),
            "batches": batcher.batches, "images": batcher.items,
            "mean_batch": round(batcher.items / batcher.batches, 2) if batcher.batches else None,
            "queued": batcher.queued, "running": batcher.running,
            "in_flight_requests": self.state.in_flight - 1,  # not counting this one
            "max_batch": batcher.max_batch, "batch_timeout_ms": batcher.timeout * 1000,
            "max_queue": batcher.max_queue, "uptime_s": round(time.time() - self.state.started, 1),
        })

    async def models(self, request):
        return await self._answer(self._models, request)

    async def upload(self, request):
        return await self._answer(self._upload, request)

    async def _answer(self, handler, request):
        # A POST is "arriving" until its images are batched (`_run`) or it fails: the batcher
        # waits for arriving requests, and only for them.
        request.state.arriving = request.method == "POST"
        self.arriving += request.state.arriving
        try:
            return await handler(request)
        except _HTTPError as error:
            return _error_response(error.status, error.message, error.headers)
        except Exception as error:  # a bug or a model failure: answer, log, keep serving
            logger.exception("internal error")
            return _error_response(500, f"internal error: {type(error).__name__}: {error}")
        finally:
            self._arrived(request)

    def _arrived(self, request):
        if request.state.arriving:
            request.state.arriving = False
            self.arriving -= 1
            if not self.arriving:
                self.batcher.wake()

    async def _models(self, request):
        rest = request.path_params["rest"]
        method = None
        if ":" in rest:
            rest, method = rest.rsplit(":", 1)
        parts = rest.split("/")
        name, parts = parts[0], parts[1:]
        if name != self.model.name:
            raise _HTTPError(404, f"Servable not found for request: Latest({name}); this "
                             f"server serves {self.model.name!r}")
        if len(parts) >= 2 and parts[0] in ("versions", "labels"):
            if parts[0] == "versions" and parts[1] != str(self.model.version):
                raise _HTTPError(404, f"Servable not found for request: Specific({name}, "
                                 f"{parts[1]}); the served version is {self.model.version}")
            parts = parts[2:]
        if method is not None:
            if parts:
                raise _HTTPError(404, f"no such endpoint: {request.url.path}")
            if request.method != "POST":
                raise _HTTPError(405, f":{method} takes POST")
            if method != "predict":
                raise _HTTPError(400, f":{method} is not served: this server answers :predict "
                                 "(classify and regress take tf.Example inputs)")
            return await self._predict(request)
        if request.method != "GET":
            raise _HTTPError(405, f"{request.url.path} takes GET")
        if not parts:
            return _json_response(self.model.status())
        if parts == ["metadata"]:
            return _json_response(self.model.metadata())
        raise _HTTPError(404, f"no such endpoint: {request.url.path}")

    # ---------------------------------------------------------------------------------------
    # :predict (TF Serving JSON).

    async def _predict(self, request):
        body = await self._read_body(request)
        try:
            payload = json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise _HTTPError(400, f"the request body is not valid JSON: {error}") from None
        if not isinstance(payload, dict) or ("instances" in payload) == ("inputs" in payload):
            raise _HTTPError(400, 'the request must be a JSON object with either "instances" '
                             '(a list of items) or "inputs"; an item is {"b64": "<base64 '
                             'image>"} or nested uint8 lists [H][W][3]')
        signature = payload.get("signature_name", "")
        if signature not in _SIGNATURES:
            raise _HTTPError(400, f"unknown signature_name {signature!r}: this model has "
                             f"{sorted(k for k in _SIGNATURES if k)}")
        if "instances" in payload:
            items = payload["instances"]
            if not isinstance(items, list):
                raise _HTTPError(400, f'"instances" must be a list of items. Received a '
                                 f"{type(items).__name__}")
            labels = [f"instances[{i}]" for i in range(len(items))]
        else:
            items = payload["inputs"]
            if isinstance(items, dict):
                if len(items) != 1 or next(iter(items)) not in _INPUT_NAMES:
                    raise _HTTPError(400, f'"inputs" as an object takes one input named '
                                     f"{' or '.join(_INPUT_NAMES)}. Received: {sorted(items)}")
                key, items = next(iter(items.items()))
                prefix = f"inputs.{key}"
            else:
                prefix = "inputs"
            if not isinstance(items, list):
                raise _HTTPError(400, f'"{prefix}" must be a list of items. Received a '
                                 f"{type(items).__name__}")
            labels = [f"{prefix}[{i}]" for i in range(len(items))]
        if not items:
            raise _HTTPError(400, "the request has no items")
        results = await self._run(request, list(zip(labels, items)), _json_item)
        if "instances" in payload:
            return self._row_response(results, labels)
        errors = [result for result in results if isinstance(result, ItemError)]
        if errors:
            raise _HTTPError(400, _join_errors(errors, len(results)))
        return _json_response({"outputs": {key: [result[key] for result in results]
                                           for key in self.model.output_names}})

    def _row_response(self, results, labels, extra=None):
        errors = [result for result in results if isinstance(result, ItemError)]
        if len(errors) == len(results):
            raise _HTTPError(400, _join_errors(errors, len(results)))
        predictions = []
        for i, result in enumerate(results):
            entry = dict(extra[i]) if extra else {}
            if isinstance(result, ItemError):
                entry["error"] = str(result)
            else:
                entry.update(result)
            predictions.append(entry)
        return _json_response({"predictions": predictions})

    # ---------------------------------------------------------------------------------------
    # /predict (multipart upload or one raw image).

    async def _upload(self, request):
        body = await self._read_body(request)
        content_type = request.headers.get("content-type", "")
        if content_type.startswith("multipart/form-data"):
            parts = _parse_multipart(body, content_type)
            if not parts:
                raise _HTTPError(400, "the multipart request has no files: send "
                                 "`curl -F file=@photo.jpg ...`")
            names = [filename or field for field, filename, _ in parts]
            labels = [f"file {name!r}" for name in names]
            blobs = [data for _, _, data in parts]
        elif content_type.startswith(("image/", "application/octet-stream")):
            names, labels, blobs = ["body"], ["the request body"], [body]
        else:
            raise _HTTPError(415, "POST /predict takes multipart/form-data files (curl -F "
                             "file=@photo.jpg) or one image body (Content-Type: image/jpeg, "
                             f"image/png …). Received: Content-Type {content_type!r}")
        results = await self._run(request, list(zip(labels, blobs)), _bytes_item)
        results = [self._with_top(result) for result in results]
        return self._row_response(results, labels, extra=[{"file": n} for n in names])

    def _with_top(self, result, k=5):
        names = self.model.class_names
        if isinstance(result, ItemError) or not isinstance(names, list) \
                or "probabilities" not in result:
            return result
        probabilities = result["probabilities"]
        order = sorted(range(len(probabilities)), key=lambda i: -probabilities[i])[:k]
        result = dict(result)
        result["top"] = [{"class_name": names[i], "probability": probabilities[i]}
                         for i in order]
        return result

    # ---------------------------------------------------------------------------------------
    # Shared: read, decode, batch.

    async def _read_body(self, request):
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > self.max_request_bytes:
                raise _HTTPError(413, f"request body over the limit of "
                                 f"{self.max_request_bytes:,} bytes (--max-request-bytes)",
                                 {"Connection": "close"})
            chunks.append(chunk)
        return b"".join(chunks)

    def _check_room(self, count):
        batcher = self.batcher
        if count > batcher.max_queue:
            raise _HTTPError(413, f"the request has {count} images; this server takes at most "
                             f"{batcher.max_queue} per request (--max-queue)")
        if batcher.queued + count > batcher.max_queue:
            raise _HTTPError(503, f"the batch queue is full ({batcher.queued} of "
                             f"{batcher.max_queue} images queued); retry shortly",
                             {"Retry-After": str(RETRY_AFTER_SECONDS)})

    async def _run(self, request, labelled_items, to_image):
        """Decodes the items in the thread pool, batches the good ones; one result per item:
        the model's outputs (a dict) or the `ItemError` naming the item."""
        self._check_room(len(labelled_items))  # before spending CPU on decoding
        loop = asyncio.get_running_loop()

        def convert(label, item):
            try:
                return to_image(self.model, item)
            except ItemError as error:
                return ItemError(f"{label}: {error}")

        if len(labelled_items) == 1:
            images = [await loop.run_in_executor(self.decoder, convert, *labelled_items[0])]
        else:
            images = await asyncio.gather(*(loop.run_in_executor(self.decoder, convert, *item)
                                            for item in labelled_items))
        good = [i for i, image in enumerate(images) if not isinstance(image, ItemError)]
        results = list(images)
        self._arrived(request)  # no `await` until `submit` has queued the images
        if good:
            try:
                outputs = await self.batcher.submit([images[i] for i in good])
            except QueueFull as error:
                raise _HTTPError(503, f"{error}; retry shortly",
                                 {"Retry-After": str(RETRY_AFTER_SECONDS)}) from None
            for i, output in zip(good, outputs):
                results[i] = output
        return results


async def _not_found(request, exc):
    return _error_response(404, f"no such endpoint: {request.method} {request.url.path} (this "
                           "server answers /v1/models/<name>[:predict|/metadata] and /predict)")


async def _not_allowed(request, exc):
    return _error_response(405, f"{request.url.path} does not take {request.method}")


def _join_errors(errors, total):
    shown = "; ".join(str(e) for e in errors[:_MAX_ERRORS_SHOWN])
    more = len(errors) - _MAX_ERRORS_SHOWN
    prefix = "" if total == 1 else f"all {total} items failed: " if len(errors) == total \
        else f"{len(errors)} of {total} items failed: "
    return prefix + shown + (f"; and {more} more" if more > 0 else "")


def _json_item(model, item):
    """One TF Serving JSON item to a uint8 image at the model's size (raises `ItemError`)."""
    if isinstance(item, dict):
        if set(item) == {"b64"}:
            return _bytes_item(model, _b64(item["b64"]))
        if len(item) == 1 and next(iter(item)) in _INPUT_NAMES:
            return _json_item(model, next(iter(item.values())))
        raise ItemError(f'an object item must be {{"b64": "..."}} or have one key, '
                        f"{' or '.join(_INPUT_NAMES)}. Received keys: {sorted(item)[:5]}")
    if isinstance(item, list):
        return model.check_array(item)
    if isinstance(item, str):
        raise ItemError('a bare string: send encoded images as {"b64": "<base64>"}')
    raise ItemError(f"expected {{\"b64\": ...}} or nested uint8 lists, got "
                    f"{type(item).__name__} {json.dumps(item)[:40]}")


def _b64(value):
    if not isinstance(value, str):
        raise ItemError(f'"b64" must be a base64 string, got {type(value).__name__}')
    value = "".join(value.split())  # line-wrapped base64 (`base64` wraps at 76 columns)
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as error:
        if re.fullmatch(r"[A-Za-z0-9_-]*={0,2}", value):  # the URL-safe alphabet
            try:
                return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
            except (binascii.Error, ValueError):
                pass
        raise ItemError(f"invalid base64 ({error})") from None


def _bytes_item(model, data):
    return model.decode(data)


def _parse_multipart(body, content_type):
    """`[(field name, file name or None, bytes)]` of a multipart/form-data body, in memory."""
    from python_multipart.exceptions import MultipartParseError
    from python_multipart.multipart import MultipartParser, parse_options_header

    _, params = parse_options_header(content_type)
    boundary = params.get(b"boundary")
    if not boundary:
        raise _HTTPError(400, "multipart/form-data without a boundary in Content-Type")
    parts = []
    current = {}

    def on_part_begin():
        current.clear()
        current.update(headers={}, data=[], field=b"", value=b"")

    def on_header_field(data, start, end):
        current["field"] += data[start:end]

    def on_header_value(data, start, end):
        current["value"] += data[start:end]

    def on_header_end():
        current["headers"][current["field"].lower()] = current["value"]
        current["field"], current["value"] = b"", b""

    def on_part_data(data, start, end):
        current["data"].append(data[start:end])

    def on_part_end():
        _, disposition = parse_options_header(current["headers"].get(b"content-disposition"))
        field = disposition.get(b"name", b"").decode("utf-8", "replace")
        filename = disposition.get(b"filename")
        filename = filename.decode("utf-8", "replace") if filename is not None else None
        parts.append((field, filename, b"".join(current["data"])))

    parser = MultipartParser(boundary, {
        "on_part_begin": on_part_begin, "on_header_field": on_header_field,
        "on_header_value": on_header_value, "on_header_end": on_header_end,
        "on_part_data": on_part_data, "on_part_end": on_part_end,
    })
    try:
        parser.write(body)
        parser.finalize()
    except MultipartParseError as error:
        raise _HTTPError(400, f"malformed multipart body: {error}") from None
    return parts
