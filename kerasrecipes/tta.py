"""Test-time augmentation: average a model's predictions over flipped and cropped views."""

import keras
import numpy as np
from keras import ops

_CROPS = ("full", "center", "top_left", "bottom_right", "top_right", "bottom_left")


def tta_view(images, index, flip=True, crop_fraction=0.875):
    """The `index`-th deterministic view of a batch of images, resized back to their size.

    Views alternate un-flipped / flipped (when `flip`), cycling through the full image, a central
    crop and the four corner crops of `crop_fraction` of each side.

    Args:
        images: tensor `[B, H, W, C]`.
        index: int >= 0.
        flip: bool. Include horizontal flips. Defaults to `True`.
        crop_fraction: float in (0, 1]. Side of the crops relative to the image. Defaults to `0.875`.

    Returns:
        Tensor like `images` (same dtype and shape).
    """
    per_crop = 2 if flip else 1
    crop = _CROPS[(index // per_crop) % len(_CROPS)]
    mirrored = flip and index % 2 == 1
    dtype = images.dtype
    x = images
    if crop != "full":
        height, width = int(images.shape[1]), int(images.shape[2])
        ch, cw = max(1, round(height * crop_fraction)), max(1, round(width * crop_fraction))
        top = {"center": (height - ch) // 2, "top_left": 0, "top_right": 0}.get(crop, height - ch)
        left = {"center": (width - cw) // 2, "top_left": 0, "bottom_left": 0}.get(crop, width - cw)
        x = ops.cast(x[:, top:top + ch, left:left + cw, :], "float32")
        x = ops.image.resize(x, (height, width))
        if "int" in str(dtype):
            x = ops.cast(ops.clip(ops.round(x), 0, 255), dtype)
    if mirrored:
        x = ops.flip(x, axis=2)
    return x


@keras.saving.register_keras_serializable(package="kerasrecipes")
class TTAView(keras.layers.Layer):
    """A layer producing the `index`-th deterministic TTA view (see `tta_view`)."""

    def __init__(self, index, flip=True, crop_fraction=0.875, **kwargs):
        super().__init__(**kwargs)
        self.index, self.flip, self.crop_fraction = int(index), bool(flip), float(crop_fraction)

    def call(self, images):
        return tta_view(images, self.index, self.flip, self.crop_fraction)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(index=self.index, flip=self.flip, crop_fraction=self.crop_fraction)
        return config


def tta_model(model, n=8, flip=True, crop_fraction=0.875):
    """Wraps `model` into one model that averages its predictions over `n` TTA views.

    The result takes the same uint8 images, is saveable and exports as one SavedModel
    (`kr.export_saved_model(tta_model(model), ...)`); it equals `predict_tta(model, images, n)`.

    Example:
    >>> served = kr.tta_model(model, n=2)  # the image and its mirror
    """
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive int. Received: n={n!r}")
    inputs = keras.Input(model.input_shape[1:], dtype=model.input.dtype, name="image")
    outputs = [model(TTAView(i, flip, crop_fraction, name=f"tta_view_{i}")(inputs))
               for i in range(n)]
    averaged = outputs[0] if n == 1 else keras.layers.Average(name="tta_average")(outputs)
    return keras.Model(inputs, averaged, name=f"{model.name}_tta")


def predict_tta(model, images, n=8, flip=True, crop_fraction=0.875, batch_size=32):
    """Predicts with test-time augmentation: the mean of the model's outputs over `n` views.

    Args:
        model: keras.Model taking images (e.g. from `kr.build_classifier`).
        images: array `[N, H, W, C]`, or a `tf.data.Dataset` / iterable of image batches or
            `(images, labels)` batches.
        n: int >= 1. Number of views (1 = plain prediction): the image, its mirror, then the
            central and corner crops and their mirrors. Defaults to `8`.
        flip: bool. Use mirrored views; turn off where mirroring changes the class.
            Defaults to `True`.
        crop_fraction: float in (0, 1]. Side of the crops. Defaults to `0.875`.
        batch_size: int. Batch size for arrays. Defaults to `32`.

    Returns:
        numpy array of averaged outputs `[N, ...]` (probabilities for kerasrecipes models).

    Example:
    >>> probs = predict_tta(model, np.zeros((4, 64, 64, 3), "uint8"), n=4)
    """
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be an int >= 1. Received: n={n!r}")
    if not 0.0 < crop_fraction <= 1.0:
        raise ValueError(f"crop_fraction must be in (0, 1]. Received: crop_fraction={crop_fraction!r}")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int. Received: batch_size={batch_size!r}")
    outputs = []
    for batch in _image_batches(images, batch_size):
        total = None
        for index in range(n):
            out = model(tta_view(batch, index, flip, crop_fraction), training=False)
            out = keras.ops.convert_to_numpy(out).astype("float64")
            total = out if total is None else total + out
        outputs.append(total / n)
    if not outputs:
        raise ValueError("images is empty: nothing to predict.")
    return np.concatenate(outputs).astype("float32")


def tta_accuracy(model, dataset, n=8, flip=True, crop_fraction=0.875):
    """Top-1 accuracy of a classifier without and with TTA on `(images, int labels)` batches.

    Returns:
        dict with `accuracy` (plain, 1 view), `tta_accuracy` (`n` views) and `delta`.

    Example:
    >>> tta_accuracy(model, data.validation, n=8)
    """
    labels, plain, tta = [], [], []
    for images, y in dataset:
        labels.append(np.asarray(y).reshape(-1))
        plain.append(predict_tta(model, images, n=1).argmax(-1))
        tta.append(predict_tta(model, images, n=n, flip=flip, crop_fraction=crop_fraction).argmax(-1))
    labels, plain, tta = (np.concatenate(v) for v in (labels, plain, tta))
    acc, tta_acc = float((plain == labels).mean()), float((tta == labels).mean())
    return {"accuracy": acc, "tta_accuracy": tta_acc, "delta": tta_acc - acc}


def _image_batches(images, batch_size):
    if isinstance(images, np.ndarray) or hasattr(images, "shape") and len(images.shape) == 4:
        array = images
        for start in range(0, int(array.shape[0]), batch_size):
            yield ops.convert_to_tensor(array[start:start + batch_size])
        return
    for batch in images:
        if isinstance(batch, (tuple, list)):
            batch = batch[0]
        yield ops.convert_to_tensor(batch)
