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

from kerasrecipes.data import _tf_resize, decode_image_bytes

METADATA_FILE = "kerasrecipes.json"
LABELS_FILE = "labels.txt"


def export_saved_model(model, path, class_names=None, metadata=None, crop_to_aspect_ratio=False):
    """Writes `model` as a SavedModel that serves uint8 images and encoded image bytes.

    Two signatures, both in inference mode (no augmentation, BatchNorm on moving statistics):

    - `serve`: `images`, uint8 `[N, H, W, 3]`;
    - `serve_bytes`: `image_bytes`, string `[N]` of encoded JPEG/PNG/GIF/BMP files, decoded and
      resized to the model's size exactly as `kr.image_folder_datasets` does in training.

    Both return `probabilities` (`[N, classes]`), `class_index` (`[N]`) and, when `class_names`
    is given, `class_name` (`[N]`). `labels.txt` (one class name a line) and `kerasrecipes.json`
    (image size, preprocessing, class names, your `metadata`, library versions) are written beside
    them. Needs the TensorFlow backend.

    Args:
        model: keras.Model taking uint8 images, e.g. from `kr.build_classifier`.
        path: str. The SavedModel directory; replaced atomically if it exists.
        class_names: optional list of str, one per output class.
        metadata: optional JSON-serializable dict stored in `kerasrecipes.json` (e.g. backbone,
            training metrics).
        crop_to_aspect_ratio: bool. What `serve_bytes` does to images of another aspect ratio;
            use the value the training data was loaded with. Defaults to `False` (stretch).

    Returns:
        The export directory, `path`.

    Example:
    >>> kr.export_saved_model(model, "saved_models/photos", class_names=data.class_names)
    >>> served = tf.saved_model.load("saved_models/photos")
    >>> served.serve(images)["class_name"]
    """
    if keras.backend.backend() != "tensorflow":
        raise RuntimeError(
            "export_saved_model needs the TensorFlow backend (KERAS_BACKEND=tensorflow); "
            f"the current backend is {keras.backend.backend()!r}."
        )
    import tensorflow as tf

    height, width, channels = model.input_shape[1:]
    num_outputs = model.output_shape[-1]
    if class_names is not None:
        class_names = [str(name) for name in class_names]
        expected = 2 if num_outputs == 1 else num_outputs
        if len(class_names) != expected:
            raise ValueError(
                f"class_names has {len(class_names)} names but the model has {expected} classes. "
                f"Received: class_names={class_names}"
            )
    path = os.path.abspath(os.fspath(path))
    parent = os.path.dirname(path)
    os.makedirs(parent, exist_ok=True)

    names = tf.constant(class_names) if class_names else None

    def serve(images):
        probabilities = model(images, training=False)
        if num_outputs == 1:
            index = tf.cast(probabilities[:, 0] > 0.5, tf.int32)
        else:
            index = tf.argmax(probabilities, axis=-1, output_type=tf.int32)
        outputs = {"probabilities": probabilities, "class_index": index}
        if names is not None:
            outputs["class_name"] = tf.gather(names, index)
        return outputs

    def serve_bytes(image_bytes):
        images = tf.map_fn(
            lambda data: _tf_resize(decode_image_bytes(data), (height, width),
                                    crop_to_aspect_ratio),
            image_bytes,
            fn_output_signature=tf.TensorSpec([height, width, channels], tf.uint8),
        )
        return serve(images)

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
        "preprocessing": _preprocessing_config(model),
        "class_names": class_names,
        "versions": {"keras": keras.__version__, "tensorflow": tf.__version__},
        "metadata": metadata or {},
    }
    staging = tempfile.mkdtemp(prefix=".export-", dir=parent)
    try:
        archive.write_out(staging, verbose=False)
        if class_names:
            with open(os.path.join(staging, LABELS_FILE), "w") as f:
                f.write("\n".join(class_names) + "\n")
        with open(os.path.join(staging, METADATA_FILE), "w") as f:
            json.dump(info, f, indent=2)
        _replace_dir(staging, path)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return path


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


def export_tflite(model, path, quantize=None):
    """Writes a TensorFlow Lite flatbuffer of `model` (uint8 images in, probabilities out).

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
    path = os.path.abspath(os.fspath(path))
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=os.path.dirname(path))
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def _replace_dir(new, path):
    """Moves directory `new` to `path`, keeping the old `path` until the move succeeded."""
    old = None
    if os.path.exists(path):
        old = path + ".old"
        shutil.rmtree(old, ignore_errors=True)
        os.rename(path, old)
    try:
        os.rename(new, path)
    except BaseException:
        if old:
            os.rename(old, path)
        raise
    if old:
        shutil.rmtree(old, ignore_errors=True)


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
