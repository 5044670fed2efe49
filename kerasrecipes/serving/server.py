"""Running the app under uvicorn: one process, or several sharing one socket; SIGTERM drains.

On the first SIGTERM (or Ctrl-C) a process stops taking work: new requests get 503 with
`Retry-After` and `Connection: close`, queued batches close at once, and the requests already in
flight finish. The process exits (status 0) when none is left, or after `drain_timeout` seconds.
A second signal falls back to uvicorn's own shutdown (a third Ctrl-C forces it).
"""

import logging
import os
import signal
import socket
import sys
import time

logger = logging.getLogger("kerasrecipes.serving")


def _graceful_server_class():
    import uvicorn

    class GracefulServer(uvicorn.Server):
        """uvicorn's server, draining on the first signal instead of closing connections."""

        def __init__(self, config, state, drain_timeout):
            super().__init__(config)
            self.state = state
            self.drain_timeout = drain_timeout

        def handle_exit(self, sig, frame):
            if not self.state.draining:
                self.state.drain()
                return
            super().handle_exit(sig, frame)

        async def on_tick(self, counter):
            state = self.state
            if state.draining and not self.should_exit and (
                    state.idle() or time.monotonic() - state.draining_since > self.drain_timeout):
                self.should_exit = True
            return await super().on_tick(counter)

    return GracefulServer


def bind_socket(host, port):
    """A listening TCP socket on `host:port` (`port=0`: a free one), shared by the workers."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as error:
        sock.close()
        raise ValueError(f"Cannot listen on {host}:{port}: {error.strerror} (is another server "
                         "running there? pick another --port)") from None
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def serve_forever(model_dir, sock, name=None, max_batch=32, batch_timeout_ms=10.0, max_queue=256,
                  max_request_bytes=None, max_image_pixels=None, drain_timeout=30.0,
                  log_level="warning", announce=True):
    """Loads the model and serves it on `sock` in this process until a signal drains it."""
    import uvicorn

    from kerasrecipes.serving.app import DEFAULT_MAX_REQUEST_BYTES, ServerState, create_app
    from kerasrecipes.serving.model import DEFAULT_MAX_IMAGE_PIXELS, ServedModel

    model = ServedModel(model_dir, name=name,
                        max_image_pixels=max_image_pixels or DEFAULT_MAX_IMAGE_PIXELS)
    state = ServerState()
    app = create_app(model, max_batch=max_batch, batch_timeout_ms=batch_timeout_ms,
                     max_queue=max_queue,
                     max_request_bytes=max_request_bytes or DEFAULT_MAX_REQUEST_BYTES,
                     state=state)
    config = uvicorn.Config(app, log_level=log_level, access_log=log_level in ("info", "debug"),
                            timeout_graceful_shutdown=drain_timeout, lifespan="on")
    server = _graceful_server_class()(config, state, drain_timeout)
    if announce:
        host, port = sock.getsockname()[:2]
        shown = f"[{host}]" if ":" in host else host
        print(f"[kerasrecipes] serving {model.name} (version {model.version}, "
              f"{model.image_shape[0]}×{model.image_shape[1]} px) on http://{shown}:{port}  "
              f"pid {os.getpid()}; POST /v1/models/{model.name}:predict or /predict",
              flush=True)
    server.run(sockets=[sock])
    return 0


def _worker(model_dir, sock, options):
    sys.exit(serve_forever(model_dir, sock, announce=False, **options))


def run(model_dir, host="127.0.0.1", port=8501, workers=1, **options):
    """Serves `model_dir` on `host:port` with `workers` processes; returns the exit status.

    Each worker process loads the model and batches its own requests; the kernel spreads the
    connections over them. `options` are those of `serve_forever`.
    """
    from kerasrecipes.serving.model import resolve_model_dir

    from kerasrecipes.serving.batcher import DynamicBatcher

    for key in ("workers", "max_request_bytes", "max_image_pixels"):
        value = workers if key == "workers" else options.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                  or value < 1):
            raise ValueError(f"{key} must be a positive integer. Received: {key}={value!r}")
    drain_timeout = options.get("drain_timeout", 30.0)
    if not isinstance(drain_timeout, (int, float)) or drain_timeout < 0:
        raise ValueError("drain_timeout must be a number of seconds >= 0. "
                         f"Received: drain_timeout={drain_timeout!r}")
    # The batching arguments, checked by the batcher itself before any model is loaded.
    DynamicBatcher(list, **{k: options[k] for k in ("max_batch", "max_queue") if k in options},
                   **({"timeout_ms": options["batch_timeout_ms"]}
                      if "batch_timeout_ms" in options else {}))
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise ValueError(f"port must be an integer in [0, 65535]. Received: port={port!r}")
    resolve_model_dir(model_dir)  # a wrong directory fails here, before any process starts
    sock = bind_socket(host, port)
    if workers == 1:
        return serve_forever(model_dir, sock, **options)
    return _supervise(model_dir, sock, workers, options)


def _supervise(model_dir, sock, workers, options):
    """Starts `workers` processes on `sock`, restarts one that dies, drains all on a signal."""
    import multiprocessing

    context = multiprocessing.get_context("spawn")  # TensorFlow does not survive fork
    stopping = []

    def start():
        # The socket travels pickled (multiprocessing duplicates its descriptor).
        process = context.Process(target=_worker,
                                  args=(os.path.abspath(model_dir), sock, options))
        process.start()
        return process

    def on_signal(sig, frame):
        stopping.append(sig)

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        processes = [start() for _ in range(workers)]
        host, port = sock.getsockname()[:2]
        print(f"[kerasrecipes] serving {os.path.basename(os.path.abspath(model_dir))} on "
              f"http://{host}:{port} with {workers} worker processes "
              f"(pids {', '.join(str(p.pid) for p in processes)})", flush=True)
        while not stopping:
            time.sleep(0.2)
            for i, process in enumerate(processes):
                if not process.is_alive() and not stopping:
                    logger.warning("worker %s exited with status %s: restarting it",
                                   process.pid, process.exitcode)
                    print(f"[kerasrecipes] worker {process.pid} exited with status "
                          f"{process.exitcode}: restarting it", file=sys.stderr, flush=True)
                    processes[i] = start()
        for process in processes:
            if process.is_alive():
                os.kill(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + float(options.get("drain_timeout", 30.0)) + 10
        for process in processes:
            process.join(max(0.1, deadline - time.monotonic()))
            if process.is_alive():
                process.kill()
                process.join()
        return 0 if all(p.exitcode == 0 for p in processes) else 1
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        sock.close()
