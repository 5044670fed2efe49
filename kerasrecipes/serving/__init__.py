"""Serving an exported model over HTTP: TensorFlow Serving's REST API, with dynamic batching.

`kerasrecipes serve SAVED_MODEL_DIR` runs it; in Python:

>>> from kerasrecipes import serving
>>> serving.run("saved_models/photos", port=8501)            # blocks; SIGTERM drains  # doctest: +SKIP

or build the ASGI app and run it under any ASGI server:

>>> model = serving.ServedModel("saved_models/photos")       # doctest: +SKIP
>>> app = serving.create_app(model, max_batch=32)             # doctest: +SKIP

Modules: `batcher` (the dynamic batcher, no TensorFlow), `model` (the SavedModel and per-item
decoding), `app` (the Starlette routes), `server` (uvicorn, worker processes, SIGTERM).
"""

from kerasrecipes.serving.app import ServerState, create_app
from kerasrecipes.serving.batcher import DynamicBatcher, QueueFull
from kerasrecipes.serving.model import DEFAULT_MAX_IMAGE_PIXELS, ItemError, ServedModel
from kerasrecipes.serving.server import run

__all__ = ["DEFAULT_MAX_IMAGE_PIXELS", "DynamicBatcher", "ItemError", "QueueFull",
           "ServedModel", "ServerState", "create_app", "run"]
