"""Export a trained classifier as a TensorFlow SavedModel for serving.

The served graph always runs in inference mode (`training=False`): no augmentation, BatchNorm on
its moving statistics. The export is written to a temporary directory next to `path` and renamed
into place, so a failure leaves a previous export intact.
"""

import json
import os
import shutil
import tempfile

import keras
import numpy as np

from kerasrecipes.data.graph_decode import SERVE_MAX_IMAGE_PIXELS, decode_image_batch
from kerasrecipes.saving import replace_dir, write_atomically

METADATA_FILE = "kerasrecipes.json"
LABELS_FILE = "labels.txt"


def export_saved_model(model, path, class_names=None, metadata=None, crop_to_aspect_ratio=False,
                       max_image_pixels=SERVE_MAX_IMAGE_PIXELS):
    """Writes `model` as a SavedModel that serves uint8 images and encoded image bytes.

    Two signatures, both in inference mode (no augmentation, BatchNorm on moving statistics):

    - `serve`: `images`, uint8 `[N, H, W, 3]`;
    - `serve_bytes`: `image_bytes`, string `[N]` of encoded files (JPEG, PNG, GIF, BMP, WebP),
      decoded and resized to the model's size as `kr.image_folder_datasets` does in training
      (same pixels; EXIF orientation applied), with TensorFlow ops only
      (`kerasrecipes.data.graph_decode.decode_image_batch`).

    Both return `probabilities` (`[N, classes]`), `class_index` (`[N]`) and, when `class_names`
    is given, `class_name` (`[N]`). `serve_bytes` gives a verdict per item, so one bad file
    never fails the others: it also returns `ok` (bool `[N]`) and `error` (string `[N]`, empty
    where `ok`, else why: empty, not an image, corrupt or truncated, too many pixels — refused
    from the header before decoding —, or a variant it cannot decode as training does, such as
    TIFF or a transparent GIF). Where not `ok`, `probabilities` (and a regression `value`) are
    0, `class_index` is -1 and `class_name` is empty. The same bytes always give the same
    outputs. `labels.txt` (one class name a line) and `kerasrecipes.json` (image size,
    preprocessing, class names, your `metadata`, library versions) are written beside them.
    Needs the TensorFlow backend.

    A multi-task model (`kr.build_multitask`, a dict output) returns the same outputs per task,
    prefixed with the task's name: `<task>_probabilities`, `<task>_class_index` (multiclass and
    binary heads) and `<task>_class_name` (when its class names are given) for classification
    heads, `<task>_value` (`[N, units]`) for regression heads. Each task's class names go to
    `labels_<task>.txt`, and `kerasrecipes.json` describes every task under `"tasks"`.

    Args:
        model: keras.Model taking uint8 images, e.g. from `kr.build_classifier` or
            `kr.build_multitask`.
        path: str. The SavedModel directory; replaced atomically if it exists.
        class_names: optional list of str, one per output class; for a multi-task model a dict
            task → list of str, for any of its classification tasks.
        metadata: optional JSON-serializable dict stored in `kerasrecipes.json` (e.g. backbone,
            training metrics).
        crop_to_aspect_ratio: bool. What `serve_bytes` does to images of another aspect ratio;
            use the value the training data was loaded with. Defaults to `False` (stretch).
        max_image_pixels: int or None. `serve_bytes` refuses images with more pixels (width ×
            height read from the header; for an animated GIF, frames × width × height) before
            decoding them. Defaults to `SERVE_MAX_IMAGE_PIXELS` (50 million).

    Returns:
        The export directory, `path`.

    Example:
    >>> kr.export_saved_model(model, "saved_models/photos", class_names=data.class_names)
    >>> served = tf.saved_model.load("saved_models/photos")
    >>> served.serve(images)["class_name"]
    >>> out = served.serve_bytes(tf.constant([open("cat.jpg", "rb").read(), b"junk"]))
    >>> out["ok"].numpy(), out["error"].numpy()[1]
    (array([ True, False]), b'not an image in a format serve_bytes decodes (JPEG, PNG, ...)')
    """
    if keras.backend.backend() != "tensorflow":
        raise RuntimeError(
            "export_saved_model needs the TensorFlow backend (KERAS_BACKEND=tensorflow); "
            f"the current backend is {keras.backend.backend()!r}."
        )
    import tensorflow as tf

    if max_image_pixels is not None and (isinstance(max_image_pixels, bool) or not isinstance(
            max_image_pixels, int) or max_image_pixels < 1):
        raise ValueError("max_image_pixels must be a positive int or None (no limit). "
                         f"Received: max_image_pixels={max_image_pixels!r}")
    height, width, channels = model.input_shape[1:]
    if channels != 3:
        raise ValueError(f"The model must take RGB images [N, H, W, 3]; its input shape is "
                         f"{model.input_shape}.")
    if isinstance(getattr(model, "output", None), dict):
        tasks = _task_heads(model, class_names)
        class_names = {task: head["class_names"] for task, head in tasks.items()
                       if head["class_names"]}
    else:
        if isinstance(class_names, dict):
            raise ValueError(
                "class_names is a dict, but the model has a single output: pass a list of "
                f"names. Received: class_names={class_names}"
            )
        units = model.output_shape[-1]
        kind = "binary" if units == 1 else "multiclass"
        tasks = {"": _head_info("", kind, units, class_names, "class_names")}
        class_names = tasks[""]["class_names"]
    path = os.path.abspath(os.fspath(path))
    parent = os.path.dirname(path)
    os.makedirs(parent, exist_ok=True)

    names = {task: tf.constant(head["class_names"]) if head["class_names"] else None
             for task, head in tasks.items()}

    def serve(images):
        predictions = model(images, training=False)
        outputs = {}
        for task, head in tasks.items():
            prefix = f"{task}_" if task else ""
            values = predictions[task] if task else predictions
            if head["kind"] == "regression":
                outputs[prefix + "value"] = values
                continue
            outputs[prefix + "probabilities"] = values
            if head["kind"] == "multilabel":
                continue
            if head["kind"] == "binary":
                index = tf.cast(values[:, 0] > 0.5, tf.int32)
            else:
                index = tf.argmax(values, axis=-1, output_type=tf.int32)
            outputs[prefix + "class_index"] = index
            if names[task] is not None:
                outputs[prefix + "class_name"] = tf.gather(names[task], index)
        return outputs

    def serve_bytes(image_bytes):
        images, ok, error = decode_image_batch(image_bytes, (height, width),
                                               crop_to_aspect_ratio, max_image_pixels)
        # At least one row through the model (an empty request gets empty outputs).
        n = tf.shape(images)[0]
        padded = tf.concat([images, tf.zeros([1, height, width, channels], tf.uint8)], 0)
        outputs = {}
        for key, value in serve(padded[:tf.maximum(n, 1)]).items():
            value = value[:n]  # the items not decoded get neutral values:
            if value.dtype == tf.string:
                fill = tf.constant("")
            elif key.endswith("class_index"):
                fill = tf.constant(-1, value.dtype)
            else:
                fill = tf.zeros([], value.dtype)
            mask = tf.reshape(ok, [-1] + [1] * (value.shape.rank - 1))
            outputs[key] = tf.where(mask, value, fill)
        outputs["ok"], outputs["error"] = ok, error
        return outputs

    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(
        "serve",
        serve,
        input_signature=[tf.TensorSpec([None, height, width, channels], tf.uint8, name="images")],
    )
    archive.add_endpoint(
        "serve_bytes",
        serve_bytes,
        input_signature=[tf.TensorSpec([None], tf.string, name="image_bytes")],
    )
    info = {
        "image_size": [height, width],
        "input": "uint8 RGB images [N, H, W, 3], 0-255",
        "crop_to_aspect_ratio": crop_to_aspect_ratio,
        "max_image_pixels": max_image_pixels,
        "preprocessing": _preprocessing_config(model),
        "class_names": class_names,
        "versions": {"keras": keras.__version__, "tensorflow": tf.__version__},
        "metadata": metadata or {},
    }
    if "" not in tasks:
        info["tasks"] = {
            task: {"kind": head["kind"], "units": head["units"],
                   "class_names": head["class_names"], "outputs": head["outputs"]}
            for task, head in tasks.items()
        }
    staging = tempfile.mkdtemp(prefix=".export-", dir=parent)
    try:
        archive.write_out(staging, verbose=False)
        for task, head in tasks.items():
            if head["class_names"]:
                filename = f"labels_{task}.txt" if task else LABELS_FILE
                with open(os.path.join(staging, filename), "w") as f:
                    f.write("\n".join(head["class_names"]) + "\n")
        with open(os.path.join(staging, METADATA_FILE), "w") as f:
            json.dump(info, f, indent=2)
        replace_dir(staging, path)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return path


def _task_heads(model, class_names):
    """Per task of a multi-task model: kind, units, class names and served output names."""
    from kerasrecipes.tasks import task_kinds

    kinds = task_kinds(model)
    if class_names is not None and not isinstance(class_names, dict):
        raise ValueError(
            "The model is multi-task: class_names must be a dict task → list of names "
            f"(tasks: {list(kinds)}). Received: class_names={class_names!r}"
        )
    class_names = dict(class_names or {})
    unknown = sorted(set(class_names) - set(kinds))
    if unknown:
        raise ValueError(
            f"class_names names unknown tasks {unknown}; the model's tasks are {list(kinds)}."
        )
    return {
        task: _head_info(task, kind, model.output[task].shape[-1], class_names.get(task),
                         f"class_names[{task!r}]")
        for task, kind in kinds.items()
    }


def _head_info(task, kind, units, class_names, argument):
    prefix = f"{task}_" if task else ""
    if kind == "regression":
        if class_names is not None:
            raise ValueError(
                f"Task {task!r} is a regression head: it has no class names. "
                f"Received: {argument}={class_names!r}"
            )
        return {"kind": kind, "units": units, "class_names": None, "outputs": [prefix + "value"]}
    if class_names is not None:
        class_names = [str(name) for name in class_names]
        expected = 2 if kind == "binary" else units
        if len(class_names) != expected:
            raise ValueError(
                f"{argument} has {len(class_names)} names but the model has {expected} "
                f"classes. Received: {argument}={class_names}"
            )
    outputs = [prefix + "probabilities"]
    if kind != "multilabel":
        outputs.append(prefix + "class_index")
        if class_names:
            outputs.append(prefix + "class_name")
    return {"kind": kind, "units": units, "class_names": class_names, "outputs": outputs}


def _preprocessing_config(model):
    try:
        preprocess = model.get_layer("preprocess")
    except ValueError:
        return None
    return [
        {"class_name": type(layer).__name__, "config": _jsonable(layer.get_config())}
        for layer in preprocess.layers
    ]


def _jsonable(value):
    return json.loads(json.dumps(value, default=str))


def _inference_function(model):
    """A tf.function running `model` in inference mode on uint8 images, and its input spec."""
    import tensorflow as tf

    spec = tf.TensorSpec([None, *model.input_shape[1:]], tf.uint8, name="images")

    @tf.function(input_signature=[spec])
    def predict(images):
        return model(images, training=False)

    return predict, spec


class _InferenceModel(keras.Model):
    """Calls the wrapped model with `training=False`, whatever the caller passes."""

    def __init__(self, model, **kwargs):
        super().__init__(name=f"{model.name}_inference", **kwargs)
        self.wrapped = model

    def call(self, images):
        return self.wrapped(images, training=False)


def inference_model(model):
    """Returns `(wrapper, input_signature)` for Keras' own `model.export(format=...)`.

    Keras' exporters trace the model's call as it is: Keras 3 augmentation layers default to
    `training=True`, so `model.export(path, format="litert")` keeps them in the graph (outputs
    off by up to 2e-3 on a model with `augment="light"`), and the ONNX and OpenVINO exporters
    meet their random ops and fail. The wrapper calls `model(images, training=False)`; the
    signature is uint8 `images [None, H, W, 3]`.
    """
    import tensorflow as tf

    wrapper = _InferenceModel(model)
    shape = model.input_shape[1:]
    wrapper(np.zeros((1, *shape), np.uint8))  # built, as Keras' exporters require
    spec = tf.TensorSpec([None, *shape], tf.uint8, name="images")
    return wrapper, [spec]


def export_openvino(model, path):
    """Writes an OpenVINO IR of `model` (uint8 `images` in, probabilities out) for CPU serving.

    Converted from the ONNX graph of `export_onnx` (tf2onnx) by `openvino.convert_model`, with
    float32 weights. Keras' own `model.export(format="openvino")` (on `inference_model`, since
    as is it fails on the augmentation's random ops) gives the same outputs, but its TensorFlow
    front end leaves a stray scalar output in the graph (a `strided_slice` of the augmentation
    layers); through ONNX the outputs are exactly the model's, named as in `export_onnx` (one
    per task for a multi-task model). See BENCHMARKS.md, "Export formats".

    Args:
        model: keras.Model taking uint8 images.
        path: str. The `.xml` file; the weights go to the same name ending in `.bin`. Both are
            written to a temporary directory first, then moved in place (weights first).

    Returns:
        The `.xml` path. Run it with `openvino.Core().compile_model(path, "CPU")(images)[0]`.
    """
    try:
        import openvino as ov
    except ImportError:
        raise ImportError(
            'OpenVINO export needs openvino: pip install "kerasrecipes[openvino]"') from None
    path = os.path.abspath(os.fspath(path))
    if not path.endswith(".xml"):
        raise ValueError(f"path must end in .xml (the OpenVINO IR graph; the weights go to "
                         f"the .bin beside it). Received: path={path!r}")
    parent = os.path.dirname(path)
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=".openvino-", dir=parent)
    try:
        onnx_path = export_onnx(model, os.path.join(staging, "model.onnx"))
        staged = os.path.join(staging, "model.xml")
        ov.save_model(ov.convert_model(onnx_path), staged, compress_to_fp16=False)
        os.replace(staged[:-4] + ".bin", path[:-4] + ".bin")
        os.replace(staged, path)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return path


def export_tflite(model, path, quantize=None):
    """Writes a TensorFlow Lite flatbuffer of `model` (uint8 images in, probabilities out).

    A multi-task model's `serve` signature has one output per task, named after it: read them
    with `interpreter.get_signature_runner("serve")(images=x)` rather than by output index.

    Args:
        model: keras.Model taking uint8 images.
        path: str. The `.tflite` file (written atomically).
        quantize: `None` (float32) or `"dynamic"` (dynamic-range int8 weights, ~4× smaller).
            Defaults to `None`.

    Returns:
        The file path. Run it with `tf.lite.Interpreter` (or `ai_edge_litert`).
    """
    import tensorflow as tf

    if quantize not in (None, "dynamic"):
        raise ValueError(f"quantize must be None or 'dynamic'. Received: quantize={quantize!r}")
    # Through a SavedModel: converting the concrete function directly drops the variables of
    # larger models (NaN outputs, a file smaller than the weights).
    with tempfile.TemporaryDirectory(prefix="tflite-") as staging:
        archive = keras.export.ExportArchive()
        archive.track(model)
        archive.add_endpoint(
            "serve",
            lambda images: model(images, training=False),
            input_signature=[tf.TensorSpec([None, *model.input_shape[1:]], tf.uint8,
                                           name="images")],
        )
        archive.write_out(staging, verbose=False)
        converter = tf.lite.TFLiteConverter.from_saved_model(staging, signature_keys=["serve"])
        if quantize == "dynamic":
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
        _write_atomic(path, converter.convert())
    return os.fspath(path)


def export_onnx(model, path, opset=17):
    """Writes an ONNX model of `model` (uint8 `images` in, probabilities out) with tf2onnx.

    A multi-task model gets one output per task, named after it (`session.get_outputs()`).

    Args:
        model: keras.Model taking uint8 images.
        path: str. The `.onnx` file (written atomically).
        opset: int. ONNX opset. Defaults to `17`.

    Returns:
        The file path. Run it with `onnxruntime.InferenceSession(path)`.
    """
    try:
        import tf2onnx
    except ImportError:
        raise ImportError("ONNX export needs tf2onnx: pip install tf2onnx onnxruntime") from None
    predict, spec = _inference_function(model)
    proto, _ = tf2onnx.convert.from_function(predict, input_signature=[spec], opset=opset)
    _write_atomic(path, proto.SerializeToString())
    return os.fspath(path)


def _write_atomic(path, data):
    def write(tmp):
        with open(tmp, "wb") as f:
            f.write(data)

    write_atomically(path, write, suffix=os.path.splitext(os.fspath(path))[1])


def load_exported(path):
    """Loads an export: returns `(loaded SavedModel, info dict)`; call `loaded.serve(images)`.

    Keep the loaded object alive while you use `serve`: it owns the variables.
    """
    import tensorflow as tf

    info_path = os.path.join(path, METADATA_FILE)
    if not os.path.isfile(os.path.join(path, "saved_model.pb")):
        raise ValueError(f"{path!r} is not a SavedModel directory (no saved_model.pb).")
    info = {}
    if os.path.isfile(info_path):
        with open(info_path) as f:
            info = json.load(f)
    return tf.saved_model.load(path), info
