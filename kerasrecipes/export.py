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

METADATA_FILE = "kerasrecipes.json"
LABELS_FILE = "labels.txt"


def export_saved_model(model, path, class_names=None, metadata=None):
    """Writes `model` as a SavedModel with a uint8-image serving signature.

    The `serve` signature takes `images`: uint8 `[N, H, W, 3]` and returns `probabilities`
    (`[N, classes]`), `class_index` (`[N]`) and `class_name` (`[N]`, when `class_names` is given).
    `labels.txt` (one class name a line) and `kerasrecipes.json` (image size, class names, your
    `metadata`, library versions) are written beside it. Needs the TensorFlow backend.

    Args:
        model: keras.Model taking uint8 images, e.g. from `kr.build_classifier`.
        path: str. The SavedModel directory; replaced atomically if it exists.
        class_names: optional list of str, one per output class.
        metadata: optional JSON-serializable dict stored in `kerasrecipes.json`.

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

    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(
        "serve",
        serve,
        input_signature=[tf.TensorSpec([None, height, width, channels], tf.uint8, name="images")],
    )
    info = {
        "image_size": [height, width],
        "input": "uint8 RGB images [N, H, W, 3], 0-255",
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
