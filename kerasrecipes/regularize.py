"""Batch-level regularizers and the losses they need.

- `BatchMixer` / `mix_dataset`: MixUp, CutMix and a random switch between them, as a `tf.data`
  batch map. Integer labels are turned into one-hot (soft) labels; multi-label (multi-hot) targets
  mix the same way. Images stay uint8.
- `CrossEntropy` and `Accuracy`: a loss (with label smoothing) and a metric that accept both
  integer and one-hot/soft labels, so soft training labels and integer validation labels share
  one compiled model. `kr.fine_tune`/`kr.fit` pick them when the training labels are soft or
  `label_smoothing > 0`.
- `add_weight_regularization`: L1/L2 penalties on kernels (biases and BatchNorm excluded).
- Cutout / random erasing is `keras.layers.RandomErasing` (the `"strong"` augmentation preset);
  decoupled weight decay that skips BatchNorm parameters and biases is the default of
  `kr.get_optimizer`.
"""

import keras
from keras import ops

from kerasrecipes.walk import walk_layers


def one_hot_labels(labels, num_classes, label_smoothing=0.0):
    """Integer labels `[B]` → float32 one-hot `[B, num_classes]`; soft `[B, C]` labels pass through.

    Args:
        labels: int tensor `[B]` (or `[B, 1]`), or float `[B, C]`.
        num_classes: int.
        label_smoothing: float in [0, 1). Mixes the targets with the uniform distribution:
            `y * (1 - ε) + ε / C`. Defaults to `0.0`.

    Example:
    >>> one_hot_labels(np.array([0, 2]), 3, label_smoothing=0.1)
    """
    labels = ops.convert_to_tensor(labels)
    if len(labels.shape) == 2 and labels.shape[-1] == 1 and num_classes != 1:
        labels = ops.squeeze(labels, -1)
    if len(labels.shape) == 1:
        labels = ops.one_hot(ops.cast(labels, "int32"), num_classes)
    labels = ops.cast(labels, "float32")
    if label_smoothing:
        labels = labels * (1.0 - label_smoothing) + label_smoothing / num_classes
    return labels


def mixup(images, labels, lam):
    """MixUp of a batch with its reverse: `λ·x + (1-λ)·x[::-1]`, same for the labels.

    Args:
        images: float tensor `[B, H, W, C]`.
        labels: float tensor `[B, K]` (one-hot, soft or multi-hot).
        lam: float tensor `[B]`, the weight of each image's own content.

    Returns:
        `(images, labels)`, mixed.

    Reference: Zhang et al., "mixup: Beyond Empirical Risk Minimization" (2017).

    Example:
    >>> x, y = mixup(np.ones((2, 4, 4, 3)), np.eye(2), np.array([0.7, 0.7]))
    """
    images = ops.cast(images, "float32")
    labels = ops.cast(labels, "float32")
    lam = ops.cast(lam, "float32")
    lam_x = ops.reshape(lam, (-1, 1, 1, 1))
    lam_y = ops.reshape(lam, (-1, 1))
    mixed = lam_x * images + (1.0 - lam_x) * ops.flip(images, axis=0)
    return mixed, lam_y * labels + (1.0 - lam_y) * ops.flip(labels, axis=0)


def cutmix_boxes(lam, height, width, center_y, center_x):
    """The CutMix boxes `(y0, y1, x0, x1)` of area ≈ `(1 - λ)·H·W` around the given centres.

    Boxes are clipped to the image; the label weight must use the clipped area (`cutmix` does).
    """
    h = ops.cast(height, "float32")
    w = ops.cast(width, "float32")
    cut = ops.sqrt(1.0 - ops.cast(lam, "float32"))
    half_h = ops.round(h * cut) / 2.0
    half_w = ops.round(w * cut) / 2.0
    y0 = ops.clip(ops.round(center_y - half_h), 0.0, h)
    y1 = ops.clip(ops.round(center_y + half_h), 0.0, h)
    x0 = ops.clip(ops.round(center_x - half_w), 0.0, w)
    x1 = ops.clip(ops.round(center_x + half_w), 0.0, w)
    return y0, y1, x0, x1


def cutmix(images, labels, lam, center_y, center_x):
    """CutMix: pastes a box of the reversed batch into each image; labels by the pasted area.

    Args:
        images: tensor `[B, H, W, C]`.
        labels: float tensor `[B, K]`.
        lam: float tensor `[B]`, the target fraction of each image's own pixels.
        center_y, center_x: float tensors `[B]`, box centres in pixels.

    Returns:
        `(images, labels, lam)`: `lam` is the exact fraction of own pixels after clipping, and
        the labels are `lam·y + (1 - lam)·y[::-1]`.

    Reference: Yun et al., "CutMix: Regularization Strategy to Train Strong Classifiers with
    Localizable Features" (2019).

    Example:
    >>> x, y, lam = cutmix(np.ones((2, 8, 8, 3)), np.eye(2), np.array([.5, .5]), np.array([4., 4.]),
    ...                    np.array([4., 4.]))
    """
    shape = ops.shape(images)
    height, width = shape[1], shape[2]
    y0, y1, x0, x1 = cutmix_boxes(lam, height, width, center_y, center_x)
    rows = ops.cast(ops.arange(height), "float32")[None, :, None]
    cols = ops.cast(ops.arange(width), "float32")[None, None, :]
    inside = ops.logical_and(
        ops.logical_and(rows >= y0[:, None, None], rows < y1[:, None, None]),
        ops.logical_and(cols >= x0[:, None, None], cols < x1[:, None, None]),
    )
    mixed = ops.where(inside[..., None], ops.flip(images, axis=0), images)
    area = ops.cast(height, "float32") * ops.cast(width, "float32")
    own = 1.0 - (y1 - y0) * (x1 - x0) / area
    labels = ops.cast(labels, "float32")
    own_y = own[:, None]
    return mixed, own_y * labels + (1.0 - own_y) * ops.flip(labels, axis=0), own


class BatchMixer:
    """MixUp / CutMix / their random switch for `(images, labels)` batches (a `tf.data` map).

    Each image of a batch is paired with the image at the mirrored position (`x[::-1]`), gets
    its own λ ~ Beta(α, α), and is mixed with probability `prob` (otherwise left as is); with both
    alphas > 0 each image uses CutMix with probability `switch_prob`, MixUp otherwise (the timm
    recipe). Integer labels become one-hot, so the model needs a loss for soft labels
    (`kr.fine_tune`/`kr.fit` switch to one automatically).

    Args:
        num_classes: int. Number of classes (the width of the one-hot labels).
        mixup_alpha: float >= 0. MixUp's Beta parameter; `0` disables MixUp. Defaults to `0.2`.
        cutmix_alpha: float >= 0. CutMix's Beta parameter; `0` disables CutMix. Defaults to `1.0`.
        switch_prob: float in [0, 1]. Probability of CutMix when both are on. Defaults to `0.5`.
        prob: float in [0, 1]. Probability that an image is mixed at all. Defaults to `1.0`.
        label_smoothing: float in [0, 1). Smooths the one-hot labels before mixing. Defaults to
            `0.0` (prefer the loss's `label_smoothing`).
        seed: optional int. Defaults to `None`.

    Example:
    >>> mixer = BatchMixer(num_classes=10, mixup_alpha=0.2, cutmix_alpha=1.0)
    >>> images, soft_labels = mixer(np.zeros((4, 32, 32, 3), "uint8"), np.array([0, 1, 2, 3]))
    """

    def __init__(self, num_classes, mixup_alpha=0.2, cutmix_alpha=1.0, switch_prob=0.5, prob=1.0,
                 label_smoothing=0.0, seed=None):
        if not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError(f"num_classes must be a positive int. Received: num_classes={num_classes!r}")
        for name, value in (("mixup_alpha", mixup_alpha), ("cutmix_alpha", cutmix_alpha)):
            if not isinstance(value, (int, float)) or value < 0:
                raise ValueError(f"{name} must be a float >= 0. Received: {name}={value!r}")
        if not mixup_alpha and not cutmix_alpha:
            raise ValueError("mixup_alpha and cutmix_alpha are both 0: nothing to mix.")
        for name, value in (("switch_prob", switch_prob), ("prob", prob)):
            if not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be in [0, 1]. Received: {name}={value!r}")
        if not isinstance(label_smoothing, (int, float)) or not 0.0 <= label_smoothing < 1.0:
            raise ValueError(
                f"label_smoothing must be in [0, 1). Received: label_smoothing={label_smoothing!r}"
            )
        self.num_classes = num_classes
        self.mixup_alpha = float(mixup_alpha)
        self.cutmix_alpha = float(cutmix_alpha)
        self.switch_prob = float(switch_prob) if mixup_alpha and cutmix_alpha else (
            1.0 if cutmix_alpha else 0.0)
        self.prob = float(prob)
        self.label_smoothing = float(label_smoothing)
        self.seed_generator = keras.random.SeedGenerator(seed)

    def _beta(self, alpha, n):
        if not alpha:
            return ops.ones((n,), "float32")
        return ops.cast(keras.random.beta((n,), alpha, alpha, seed=self.seed_generator), "float32")

    def __call__(self, images, labels):
        dtype = images.dtype
        labels = one_hot_labels(labels, self.num_classes, self.label_smoothing)
        shape = ops.shape(images)
        n = shape[0]
        x = ops.cast(images, "float32")
        apply = keras.random.uniform((n,), seed=self.seed_generator) < self.prob
        use_cut = keras.random.uniform((n,), seed=self.seed_generator) < self.switch_prob
        lam_mix = ops.where(apply, self._beta(self.mixup_alpha, n), 1.0)
        lam_cut = ops.where(apply, self._beta(self.cutmix_alpha, n), 1.0)
        center_y = keras.random.uniform((n,), seed=self.seed_generator) * ops.cast(shape[1], "float32")
        center_x = keras.random.uniform((n,), seed=self.seed_generator) * ops.cast(shape[2], "float32")
        mixed_x, mixed_y = mixup(x, labels, lam_mix)
        cut_x, cut_y, _ = cutmix(x, labels, lam_cut, center_y, center_x)
        out_x = ops.where(use_cut[:, None, None, None], cut_x, mixed_x)
        out_y = ops.where(use_cut[:, None], cut_y, mixed_y)
        if "int" in str(dtype):
            out_x = ops.cast(ops.clip(ops.round(out_x), 0, 255), dtype)
        return out_x, out_y


def mix_dataset(dataset, num_classes, mixup_alpha=0.2, cutmix_alpha=1.0, switch_prob=0.5,
                prob=1.0, label_smoothing=0.0, seed=None):
    """Applies `BatchMixer` to a `tf.data` dataset of `(images, labels)` batches.

    Args:
        dataset: `tf.data.Dataset` of `(uint8 images, int or multi-hot labels)` batches, e.g.
            `data.train`. Mix the training split only.
        num_classes, mixup_alpha, cutmix_alpha, switch_prob, prob, label_smoothing, seed: as in
            `BatchMixer`.

    Returns:
        `tf.data.Dataset` of `(uint8 images, float32 soft labels [B, num_classes])`.

    Example:
    >>> train = mix_dataset(data.train, num_classes=len(data.class_names))
    >>> kr.fine_tune(model, train, data.validation)  # picks a soft-label loss
    """
    import tensorflow as tf

    if not isinstance(dataset, tf.data.Dataset):
        raise ValueError(f"dataset must be a tf.data.Dataset. Received: dataset={type(dataset).__name__}")
    mixer = BatchMixer(num_classes, mixup_alpha, cutmix_alpha, switch_prob, prob,
                       label_smoothing, seed)
    return dataset.map(lambda x, y: mixer(x, y), num_parallel_calls=tf.data.AUTOTUNE)


def _dense_targets(y_true, y_pred, label_smoothing):
    num_classes = y_pred.shape[-1]
    if len(y_true.shape) == len(y_pred.shape) and y_true.shape[-1] == num_classes:
        y_true = ops.cast(y_true, y_pred.dtype)
        if label_smoothing:
            y_true = y_true * (1.0 - label_smoothing) + label_smoothing / num_classes
        return y_true
    return ops.cast(one_hot_labels(ops.reshape(y_true, (-1,)), num_classes, label_smoothing),
                    y_pred.dtype)


@keras.saving.register_keras_serializable(package="kerasrecipes")
class CrossEntropy(keras.losses.Loss):
    """Categorical cross-entropy for integer **or** one-hot/soft labels, with label smoothing.

    Args:
        label_smoothing: float in [0, 1). Targets become `y·(1 - ε) + ε / C`. Defaults to `0.0`.
        from_logits: bool. Defaults to `False` (the models output softmax probabilities).

    Reference: Szegedy et al., "Rethinking the Inception Architecture" (2016) — label smoothing.

    Example:
    >>> loss = CrossEntropy(label_smoothing=0.1)
    >>> loss(np.array([1]), np.array([[0.1, 0.9]]))
    """

    def __init__(self, label_smoothing=0.0, from_logits=False, name="cross_entropy",
                 reduction="sum_over_batch_size", dtype=None):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        if not isinstance(label_smoothing, (int, float)) or not 0.0 <= label_smoothing < 1.0:
            raise ValueError(
                f"label_smoothing must be in [0, 1). Received: label_smoothing={label_smoothing!r}"
            )
        self.label_smoothing = float(label_smoothing)
        self.from_logits = bool(from_logits)

    def call(self, y_true, y_pred):
        targets = _dense_targets(y_true, y_pred, self.label_smoothing)
        return keras.losses.categorical_crossentropy(targets, y_pred, from_logits=self.from_logits)

    def get_config(self):
        config = super().get_config()
        config.update(label_smoothing=self.label_smoothing, from_logits=self.from_logits)
        return config


def _accuracy(y_true, y_pred):
    targets = _dense_targets(y_true, y_pred, 0.0)
    return ops.cast(ops.argmax(targets, -1) == ops.argmax(y_pred, -1), "float32")


@keras.saving.register_keras_serializable(package="kerasrecipes")
class Accuracy(keras.metrics.MeanMetricWrapper):
    """Top-1 accuracy for integer or one-hot/soft labels (a soft label's class is its argmax).

    Example:
    >>> metric = Accuracy()
    >>> metric.update_state(np.array([[0.3, 0.7]]), np.array([[0.2, 0.8]]))
    """

    def __init__(self, name="accuracy", dtype=None):
        super().__init__(fn=_accuracy, name=name, dtype=dtype)

    def get_config(self):
        return {"name": self.name, "dtype": self.dtype}


def add_weight_regularization(model, l1=0.0, l2=0.0):
    """Adds L1/L2 penalties to every kernel of a model (biases and BatchNorm are left alone).

    The penalties join `model.losses`, so `fit` adds them to the loss. Prefer decoupled weight
    decay (`kr.get_optimizer("adamw", ...)`) with adaptive optimizers; L2 in the loss is the
    classic SGD recipe. Call before `compile` / `kr.fit`.

    Args:
        model: keras.Model (nested sub-models included).
        l1: float >= 0. Defaults to `0.0`.
        l2: float >= 0. Defaults to `0.0`.

    Returns:
        int, the number of kernels regularized.

    Example:
    >>> add_weight_regularization(model, l2=1e-4)
    """
    for name, value in (("l1", l1), ("l2", l2)):
        if not isinstance(value, (int, float)) or value < 0:
            raise ValueError(f"{name} must be a float >= 0. Received: {name}={value!r}")
    regularizer = keras.regularizers.L1L2(l1=float(l1), l2=float(l2)) if (l1 or l2) else None
    count = 0
    for layer in walk_layers(model):
        for attribute in ("kernel", "depthwise_kernel", "pointwise_kernel"):
            variable = getattr(layer, attribute, None)
            if isinstance(variable, keras.Variable):
                variable.regularizer = regularizer
                if hasattr(layer, f"{attribute}_regularizer"):
                    setattr(layer, f"{attribute}_regularizer", regularizer)
                count += 1
    return count
