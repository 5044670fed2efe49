"""In-memory image arrays as datasets (`tf.data`, or a `keras.utils.PyDataset` without TF)."""

import math

import numpy as np

from kerasrecipes.data.arguments import check_batch_size, check_validation_split
from kerasrecipes.data.decode import composite_on_white, optional_tensorflow, pil_resize
from kerasrecipes.data.image_data import ImageData
from kerasrecipes.data.layout import stratified_split
from kerasrecipes.utils import check_image_size


def _check_images(x, arg):
    """Validates and converts an image array to uint8 `[N, H, W, 3]`."""
    x = np.asarray(x)
    if x.ndim == 3:
        x = x[..., None]
    if x.ndim != 4 or x.shape[-1] not in (1, 3, 4):
        raise ValueError(
            f"{arg} must be an array of images shaped (N, H, W, 3), (N, H, W, 1) or (N, H, W). "
            f"Received: {arg}.shape={x.shape}"
        )
    if x.dtype == np.uint8:
        pass
    elif np.issubdtype(x.dtype, np.floating):
        lo, hi = (float(np.nanmin(x)), float(np.nanmax(x))) if x.size else (0.0, 0.0)
        if np.isnan(x).any() or lo < 0 or hi > 255:
            raise ValueError(
                f"{arg} must hold pixel values in [0, 255]. Received: {arg} with values in "
                f"[{lo}, {hi}]"
            )
        if 0 < hi <= 1.0:
            raise ValueError(
                f"{arg} holds floats in [0, 1]; pass pixel values in 0–255 (e.g. "
                f"`{arg} * 255`): the model scales pixels itself. Received: {arg} with values in "
                f"[{lo}, {hi}]"
            )
        x = np.clip(np.round(x), 0, 255).astype(np.uint8)
    elif np.issubdtype(x.dtype, np.integer):
        lo, hi = (int(x.min()), int(x.max())) if x.size else (0, 0)
        if lo < 0 or hi > 255:
            raise ValueError(
                f"{arg} must hold pixel values in [0, 255]. Received: {arg} ({x.dtype}) with "
                f"values in [{lo}, {hi}]"
            )
        x = x.astype(np.uint8)
    else:
        raise ValueError(
            f"{arg} must be uint8 (or numbers in 0–255). Received: {arg}.dtype={x.dtype}"
        )
    if x.shape[-1] == 1:
        x = np.repeat(x, 3, axis=-1)
    elif x.shape[-1] == 4:
        x = composite_on_white(x)
    return np.ascontiguousarray(x)


def _check_labels(y, n, arg, x_arg):
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise ValueError(
            f"{arg} must be integer class indices shaped (N,); for one-hot labels pass "
            f"`{arg}.argmax(-1)`. Received: {arg}.shape={y.shape}"
        )
    if len(y) != n:
        raise ValueError(
            f"{arg} and {x_arg} must have the same length. Received: len({arg})={len(y)}, "
            f"len({x_arg})={n}"
        )
    if not (np.issubdtype(y.dtype, np.integer) or (
        np.issubdtype(y.dtype, np.floating) and np.all(np.mod(y, 1) == 0)
    )):
        raise ValueError(f"{arg} must hold integer class indices. Received: {arg}.dtype={y.dtype}")
    y = y.astype(np.int64)
    if y.size and y.min() < 0:
        raise ValueError(f"{arg} must be >= 0. Received: a label {int(y.min())} in {arg}")
    return y


def _resize_array(x, image_size, tf, chunk=256):
    """Resizes uint8 `[N, H, W, 3]` like `tf_resize` (or PIL without TensorFlow)."""
    if x.shape[1:3] == tuple(image_size):
        return x
    if tf is None:
        return np.stack([pil_resize(im, image_size) for im in x])
    out = []
    for start in range(0, len(x), chunk):
        resized = tf.image.resize(
            tf.cast(x[start : start + chunk], tf.float32), image_size, "bilinear", antialias=True
        )
        out.append(tf.cast(tf.clip_by_value(tf.round(resized), 0, 255), tf.uint8).numpy())
    return np.concatenate(out)


def _array_pydataset_class():
    import keras

    class ArrayBatches(keras.utils.PyDataset):
        """Batches of in-memory arrays, reshuffled each epoch when `shuffle`."""

        def __init__(self, x, y, batch_size, shuffle, seed):
            super().__init__()
            self.x, self.y = x, y.astype(np.int32)
            self.batch_size = batch_size
            self.shuffle = shuffle
            self._rng = np.random.default_rng(seed)
            self._order = self._rng.permutation(len(x)) if shuffle else np.arange(len(x))

        def __len__(self):
            return math.ceil(len(self.x) / self.batch_size)

        def __getitem__(self, index):
            idx = self._order[index * self.batch_size : (index + 1) * self.batch_size]
            return self.x[idx], self.y[idx]

        def on_epoch_end(self):
            if self.shuffle:
                self._order = self._rng.permutation(len(self.x))

    return ArrayBatches


def _array_dataset(x, y, batch_size, training, seed, tf):
    if tf is None:
        return _array_pydataset_class()(x, y, batch_size, shuffle=training, seed=seed)
    images = tf.constant(x)
    labels = tf.constant(y.astype(np.int32))
    ds = tf.data.Dataset.range(len(x))
    if training:
        ds = ds.shuffle(len(x), seed=seed, reshuffle_each_iteration=True)
    # Batch indices, then gather: the shuffle buffer holds integers, not copies of the images.
    ds = ds.batch(batch_size).map(
        lambda idx: (tf.gather(images, idx), tf.gather(labels, idx)),
        num_parallel_calls=tf.data.AUTOTUNE,
    )
    return ds.prefetch(tf.data.AUTOTUNE)


def array_datasets(
    x_train,
    y_train,
    x_val=None,
    y_val=None,
    validation_split=None,
    class_names=None,
    batch_size=32,
    seed=None,
    image_size=None,
):
    """Builds train/validation datasets from in-memory arrays.

    Images must be pixel values in 0–255: uint8, or integers/floats in that range (rounded to
    uint8). Floats whose maximum is at most 1 are rejected, because `[0, 1]` data would train on
    nearly black images: multiply by 255 first. Grayscale `(N, H, W)`/`(N, H, W, 1)` becomes RGB,
    RGBA is composited on white. With TensorFlow installed the result holds `tf.data` datasets;
    without it (e.g. `KERAS_BACKEND=jax`) it holds `keras.utils.PyDataset`s yielding the same
    batches of numpy arrays.

    Args:
        x_train: array `(N, H, W, 3)`, `(N, H, W, 1)` or `(N, H, W)`. Training images.
        y_train: int array `(N,)` (or `(N, 1)`). Class indices.
        x_val: array or `None`. Validation images. Defaults to `None`.
        y_val: int array or `None`. Validation labels, required with `x_val`. Defaults to `None`.
        validation_split: float in (0, 1) or `None`. Holds out this fraction of each class of the
            training arrays (seeded) when `x_val` is not given. Defaults to `None`.
        class_names: list of str or `None`. Names of the labels; `None` uses `"0"`, `"1"`, …
            up to the largest label. Defaults to `None`.
        batch_size: int. Defaults to `32`.
        seed: int or `None`. Seeds the validation split and the training shuffle.
            Defaults to `None`.
        image_size: int, `(height, width)` or `None`. Resize the arrays once, up front (bilinear,
            antialiased). Defaults to `None` (keep their size).

    Returns:
        `ImageData` with `train` and, when requested, `validation`.

    Example:

    >>> import numpy as np
    >>> x = np.random.randint(0, 256, (10, 32, 32, 3), dtype="uint8")
    >>> data = array_datasets(x, np.arange(10) % 2, validation_split=0.2, batch_size=4, seed=0)
    >>> data.class_names, data.num_examples
    (['0', '1'], {'train': 8, 'validation': 2})
    """
    batch_size = check_batch_size(batch_size)
    validation_split = check_validation_split(validation_split)
    image_size = check_image_size(image_size, allow_none=True)
    x_train = _check_images(x_train, "x_train")
    y_train = _check_labels(y_train, len(x_train), "y_train", "x_train")
    if len(x_train) == 0:
        raise ValueError(f"x_train is empty. Received: x_train.shape={x_train.shape}")
    if (x_val is None) != (y_val is None):
        raise ValueError(
            "Pass x_val and y_val together. Received: "
            f"x_val={'None' if x_val is None else 'an array'}, "
            f"y_val={'None' if y_val is None else 'an array'}"
        )
    if x_val is not None and validation_split is not None:
        raise ValueError(
            "Pass either x_val/y_val or validation_split, not both. "
            f"Received: validation_split={validation_split}"
        )
    if x_val is not None:
        x_val = _check_images(x_val, "x_val")
        y_val = _check_labels(y_val, len(x_val), "y_val", "x_val")
        if image_size is None and x_val.shape[1:] != x_train.shape[1:]:
            raise ValueError(
                "x_val images must have the size of x_train images (or pass image_size=). "
                f"Received: x_train.shape={x_train.shape}, x_val.shape={x_val.shape}"
            )
    labels_max = int(y_train.max())
    if y_val is not None and len(y_val):
        labels_max = max(labels_max, int(y_val.max()))
    if class_names is None:
        class_names = [str(i) for i in range(labels_max + 1)]
    else:
        class_names = [str(c) for c in class_names]
        if labels_max >= len(class_names):
            raise ValueError(
                f"Labels must be < len(class_names)={len(class_names)}. Received: a label "
                f"{labels_max} with class_names={class_names}"
            )
    if validation_split is not None:
        train_idx, val_idx = stratified_split(y_train, validation_split, seed)
        if len(val_idx) == 0:
            raise ValueError(
                f"validation_split={validation_split} leaves no validation images out of "
                f"{len(x_train)}; use a larger fraction."
            )
        x_train, y_train, x_val, y_val = (
            x_train[train_idx], y_train[train_idx], x_train[val_idx], y_train[val_idx]
        )

    tf = optional_tensorflow()
    if image_size is not None:
        x_train = _resize_array(x_train, image_size, tf)
        x_val = None if x_val is None else _resize_array(x_val, image_size, tf)
    return ImageData(
        train=_array_dataset(x_train, y_train, batch_size, True, seed, tf),
        validation=(
            None if x_val is None else _array_dataset(x_val, y_val, batch_size, False, seed, tf)
        ),
        class_names=class_names,
        image_size=tuple(x_train.shape[1:3]),
        num_examples={"train": len(x_train),
                      **({} if x_val is None else {"validation": len(x_val)})},
    )
