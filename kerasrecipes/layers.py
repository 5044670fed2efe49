"""Serializable Keras layers that kerasrecipes models are made of."""

import keras
import numpy as np
from keras import ops


def _floats(value):
    if value is None:
        return None
    if isinstance(value, (list, tuple, np.ndarray)):
        return [float(v) for v in value]
    return float(value)


@keras.saving.register_keras_serializable(package="kerasrecipes")
class NormalizeImage(keras.layers.Layer):
    """Turns 0–255 pixels into what a backbone was trained on: `(x * scale - mean) / std`.

    One layer covers every convention in use: "tf" (`scale=1/127.5, mean=1`), "torch"
    (`scale=1/255`, ImageNet mean/std), "caffe" (`channel_order="bgr"`, mean pixel, std 1) and
    EfficientNet-Lite's `(x - 127) / 128`. It casts any input dtype (uint8 included) to its compute
    dtype first, so a model can take uint8 images directly.

    Args:
        scale: float. Multiplies the pixels first. Defaults to `1/255`.
        mean: float, 3 floats or `None`. Subtracted after scaling, per channel (in output channel
            order). `None` means "not known yet": call `adapt()` on training images first.
            Defaults to `0.0`.
        std: float or 3 floats. Divides after subtracting the mean. Defaults to `1.0`.
        channel_order: str. `"rgb"` keeps the channels, `"bgr"` reverses them (caffe-style
            ResNet50). Defaults to `"rgb"`.

    Example:
    >>> layer = NormalizeImage(scale=1 / 127.5, mean=1.0)
    >>> layer(np.full((1, 2, 2, 3), 255, "uint8"))[0, 0, 0]  # -> [1., 1., 1.]
    """

    def __init__(self, scale=1.0 / 255, mean=0.0, std=1.0, channel_order="rgb", **kwargs):
        super().__init__(**kwargs)
        if channel_order not in ("rgb", "bgr"):
            raise ValueError(
                f"channel_order must be 'rgb' or 'bgr'. Received: channel_order={channel_order!r}"
            )
        std_values = std if isinstance(std, (list, tuple)) else [std]
        if std is not None and any(s <= 0 for s in std_values):
            raise ValueError(f"std must be positive. Received: std={std}")
        self.scale = float(scale)
        self.mean = _floats(mean)
        self.std = _floats(std)
        self.channel_order = channel_order

    @property
    def adapted(self):
        """False until the per-channel mean is known."""
        return self.mean is not None

    def adapt(self, data, max_batches=None):
        """Sets `mean` and `std` per channel from training images (after `scale`).

        Args:
            data: uint8/float images `[N, H, W, 3]`, or an iterable (e.g. `tf.data.Dataset`,
                `keras.utils.PyDataset`) of image batches or `(images, labels)` batches.
            max_batches: optional int. Stop after this many batches. Defaults to `None` (all).
        """
        total = np.zeros(3)
        total_sq = np.zeros(3)
        count = 0
        batches = [data] if isinstance(data, np.ndarray) else data
        for i, batch in enumerate(batches):
            if max_batches is not None and i >= max_batches:
                break
            images = batch[0] if isinstance(batch, (tuple, list)) else batch
            images = np.asarray(images, dtype="float64").reshape(-1, 3) * self.scale
            if self.channel_order == "bgr":
                images = images[:, ::-1]
            total += images.sum(axis=0)
            total_sq += (images**2).sum(axis=0)
            count += len(images)
        if count == 0:
            raise ValueError("adapt() received no images: the data is empty.")
        mean = total / count
        std = np.sqrt(np.maximum(total_sq / count - mean**2, 0.0))
        self.mean = mean.tolist()
        self.std = np.maximum(std, 1e-3 * self.scale * 255).tolist()

    def call(self, inputs):
        if self.mean is None:
            raise ValueError(
                f"Layer {self.name!r} has no mean/std yet: call `adapt()` on the training images "
                "(kerasrecipes.fit and fine_tune do it for you on the training split)."
            )
        x = ops.cast(inputs, self.compute_dtype)
        if self.channel_order == "bgr":
            x = ops.flip(x, axis=-1)
        mean = ops.convert_to_tensor(self.mean, self.compute_dtype)
        std = ops.convert_to_tensor(self.std, self.compute_dtype)
        return (x * self.scale - mean) / std

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(
            scale=self.scale, mean=self.mean, std=self.std, channel_order=self.channel_order
        )
        return config


def adapt_normalization(model, data):
    """Computes the statistics of every not yet adapted `NormalizeImage` in `preprocess`.

    What the training recipes do first for a scratch model (`build_scratch_cnn`,
    `build_resnet`): its per-channel mean/std come from the training split. A model without a
    `preprocess` sub-model is left alone.

    Args:
        model: keras.Model.
        data: dataset of `(uint8 images, labels)` batches, the training split.
    """
    try:
        preprocess = model.get_layer("preprocess")
    except ValueError:
        return
    for layer in preprocess.layers:
        if isinstance(layer, NormalizeImage) and not layer.adapted:
            print("[kerasrecipes] computing per-channel mean/std on the training split")
            layer.adapt(data)
