"""The served model: a kerasrecipes SavedModel loaded once, its inputs checked item by item.

Encoded images are decoded in Python as the training pipeline decodes files
(`kerasrecipes.data.decode.decode_bytes`: every format `image_folder_datasets` reads, EXIF
orientation applied, transparency on white) and resized with its TensorFlow resize, so the
server sees the pixels training saw. Each item that cannot be used raises `ItemError` with the
reason; the others go on.
"""

import io
import json
import os
import re
import warnings

import numpy as np

from kerasrecipes.data.graph_decode import SERVE_MAX_IMAGE_PIXELS

# Refused by the header, before decoding: 50 Mpx is a 8660 × 5773 photo, 150 MB of RGB. The same
# default as the exported `serve_bytes` signature's.
DEFAULT_MAX_IMAGE_PIXELS = SERVE_MAX_IMAGE_PIXELS


class ItemError(ValueError):
    """One input item (an image, an array) that cannot be served, and why."""


def resolve_model_dir(path):
    """Returns `(SavedModel directory, version)` for an export or a TF Serving base directory.

    A directory holding `saved_model.pb` is version 1; a TF Serving model base directory (numeric
    sub-directories `1/`, `2/` …, each a SavedModel) gives its highest version.
    """
    path = os.path.abspath(os.fspath(path))
    if not os.path.isdir(path):
        raise ValueError(f"No such model directory: {path!r} (a SavedModel from "
                         "`kerasrecipes finetune` or `kr.export_saved_model`).")
    if os.path.isfile(os.path.join(path, "saved_model.pb")):
        return path, 1
    versions = sorted(int(d) for d in os.listdir(path)
                      if d.isdigit() and os.path.isfile(os.path.join(path, d, "saved_model.pb")))
    if not versions:
        raise ValueError(f"{path!r} is not a SavedModel directory (no saved_model.pb, and no "
                         "numeric version sub-directories holding one).")
    return os.path.join(path, str(versions[-1])), versions[-1]


def _tiny_image(fmt):
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (3, 2), (128, 64, 32)).save(buffer, fmt)
    return buffer.getvalue()


class ServedModel:
    """A kerasrecipes SavedModel, loaded once, serving lists of uint8 images.

    Args:
        path: str. The export directory (`kr.export_saved_model`), or a TF Serving base
            directory with numeric version sub-directories (the highest is served).
        name: str or None. The model name in URLs. Defaults to the directory's name.
        max_image_pixels: int. Encoded images with more pixels (read from the header) are refused
            before decoding. Defaults to `DEFAULT_MAX_IMAGE_PIXELS` (50 million).
    """

    def __init__(self, path, name=None, max_image_pixels=DEFAULT_MAX_IMAGE_PIXELS):
        import tensorflow as tf

        from kerasrecipes.export import load_exported

        if isinstance(max_image_pixels, bool) or not isinstance(max_image_pixels, int) \
                or max_image_pixels < 1:
            raise ValueError("max_image_pixels must be a positive integer. "
                             f"Received: max_image_pixels={max_image_pixels!r}")
        base = os.path.abspath(os.fspath(path))
        self.path, self.version = resolve_model_dir(base)
        self.name = name or os.path.basename(base.rstrip(os.sep))
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", self.name):
            raise ValueError("The model name must be letters, digits, '_', '.' or '-'. "
                             f"Received: name={self.name!r}")
        self.max_image_pixels = max_image_pixels
        self._loaded, self.info = load_exported(self.path)
        if "serve" not in self._loaded.signatures:
            raise ValueError(
                f"{self.path!r} has no 'serve' signature taking uint8 images (signatures: "
                f"{sorted(self._loaded.signatures)}): export it with kr.export_saved_model.")
        signature = self._loaded.signatures["serve"]
        spec = signature.structured_input_signature[1]["images"]
        if spec.dtype != tf.uint8 or spec.shape.rank != 4 or None in spec.shape[1:]:
            raise ValueError(f"{self.path!r}: the 'serve' signature must take uint8 images "
                             f"[N, H, W, C]. Received: {spec}")
        self.image_shape = tuple(int(d) for d in spec.shape[1:])
        self.output_names = sorted(signature.structured_outputs)
        self.string_outputs = {k for k, v in signature.structured_outputs.items()
                               if v.dtype == tf.string}
        self.class_names = self.info.get("class_names")
        self.crop_to_aspect_ratio = bool(self.info.get("crop_to_aspect_ratio", False))
        self._serve = self._loaded.serve
        # PIL's EXIF / palette / size chatter: real problems raise. Set once for the process:
        # `warnings.catch_warnings` is not thread-safe and decoding runs in a thread pool.
        warnings.filterwarnings("ignore", module=r"PIL(\..*)?$")
        # Trace and warm up the JPEG and PNG decoders and the model now, not on first requests.
        self.predict([self.decode(_tiny_image(fmt)) for fmt in ("JPEG", "PNG")])

    def decode(self, data):
        """Decodes one encoded image (bytes) to uint8 `[H, W, 3]` at the model's size.

        `kerasrecipes.data.decode.decode_bytes`, the training pipeline's decoding and resize
        (one TensorFlow call for JPEG and PNG).

        Raises:
            ItemError: empty, not an image, too many pixels, truncated or corrupt.
        """
        from kerasrecipes.data.decode import ImageDecodeError, decode_bytes

        try:
            return decode_bytes(data, self.max_image_pixels, limit_name="--max-image-pixels",
                                image_size=self.image_shape[:2],
                                crop_to_aspect_ratio=self.crop_to_aspect_ratio)
        except ImageDecodeError as error:
            raise ItemError(str(error)) from None

    def check_array(self, value):
        """Checks one image given as nested lists of 0–255 integers; returns uint8 `[H, W, C]`.

        Raises:
            ItemError: ragged lists, wrong shape, non-integers or values outside 0–255.
        """
        try:
            array = np.asarray(value)
        except (ValueError, TypeError) as error:
            raise ItemError(f"not a rectangular array ({error})") from None
        if array.shape != self.image_shape:
            raise ItemError(
                f"wrong shape {list(array.shape)}: the model takes uint8 images of shape "
                f"{list(self.image_shape)} (send other sizes encoded, as {{\"b64\": ...}})")
        if array.dtype.kind not in "iu":
            raise ItemError(f"values must be integers 0-255 (got {array.dtype.name} values)")
        if array.size and (array.min() < 0 or array.max() > 255):
            raise ItemError(f"values must be integers 0-255 (got {array.min()}..{array.max()})")
        return array.astype(np.uint8)

    def predict(self, images):
        """Runs the model on a list of uint8 images; returns one dict of outputs per image.

        Values are JSON-ready: lists of floats, ints, and str for the class names.
        """
        outputs = self._serve(np.stack(images))
        arrays = {k: np.asarray(outputs[k]) for k in self.output_names}
        columns = {}
        for key, array in arrays.items():
            if key in self.string_outputs:
                columns[key] = [v.decode("utf-8", "replace") for v in array.tolist()]
            else:
                columns[key] = array.tolist()
        return [{key: columns[key][i] for key in self.output_names} for i in range(len(images))]

    def status(self, state="AVAILABLE"):
        """The TF Serving model status (`GET /v1/models/<name>`)."""
        return {"model_version_status": [{
            "version": str(self.version), "state": state,
            "status": {"error_code": "OK", "error_message": ""},
        }]}

    def metadata(self):
        """The TF Serving model metadata (`GET /v1/models/<name>/metadata`), plus ours.

        `metadata.signature_def` is the SavedModel's SignatureDefMap in TF Serving's JSON form;
        `kerasrecipes` adds the image size, class names and the export's `kerasrecipes.json`.
        """
        from google.protobuf import json_format
        from tensorflow.core.protobuf import saved_model_pb2

        proto = saved_model_pb2.SavedModel()
        with open(os.path.join(self.path, "saved_model.pb"), "rb") as f:
            proto.ParseFromString(f.read())
        signatures = {
            key: json_format.MessageToDict(value, preserving_proto_field_name=True,
                                           always_print_fields_with_no_presence=True)
            for key, value in proto.meta_graphs[0].signature_def.items()
            if not key.startswith("__")
        }
        return {
            "model_spec": {"name": self.name, "signature_name": "", "version": str(self.version)},
            "metadata": {"signature_def": {"signature_def": signatures}},
            "kerasrecipes": {
                "image_shape": list(self.image_shape),
                "class_names": self.class_names,
                "outputs": self.output_names,
                "max_image_pixels": self.max_image_pixels,
                "export": json.loads(json.dumps(self.info, default=str)),
            },
        }
