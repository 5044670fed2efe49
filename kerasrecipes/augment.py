"""Augmentation presets made of core `keras.layers` (they run only when `training=True`).

A preset is a `keras.Sequential` named `"augment"`. It runs either **inside the model** (the
`augment` sub-model of `kr.build_classifier(augment=...)`: on the accelerator, batched, free on a
GPU) or **in the `tf.data` pipeline** (`augment_dataset`: on the CPU, overlapped with training by
prefetching). On a GPU/TPU in-model is faster (free on the accelerator, while the CPU is usually
the bottleneck, busy decoding); on a CPU-only machine augment in tf.data, on batches (not per
image), which overlaps with training and scales with the cores — see BENCHMARKS.md for figures.
For image files, `kr.image_folder_datasets(..., augment="standard")` is the fastest tf.data path:
it fuses the random-resized-crop into decoding (a JPEG decodes only the crop window) and runs the
colour layers on the batches, compiled with XLA.

The layers Keras lacks for the classic ImageNet recipe are small registered layers written with
`keras.ops` (any backend): `RandomResizedCrop`, `ColorJitter` (multiplicative brightness / contrast
/ saturation) and `PCALighting` (AlexNet's colour noise).
"""

import math

import keras
from keras import ops

from kerasrecipes.utils import image_size_pair
from kerasrecipes.validate import check_choice

PRESETS = ("none", "light", "standard", "strong")

# ImageNet RGB covariance eigen-decomposition (0–1 pixels), as used by AlexNet and fb.resnet.torch.
_IMAGENET_EIGVAL = (0.2175, 0.0188, 0.0045)
_IMAGENET_EIGVEC = (
    (-0.5675, 0.7192, 0.4009),
    (-0.5808, -0.0045, -0.8140),
    (-0.5836, -0.6948, 0.4203),
)


def _check_range(name, value, low, high):
    if (
        not isinstance(value, (tuple, list)) or len(value) != 2
        or not low <= value[0] <= value[1] <= high
    ):
        raise ValueError(
            f"{name} must be a pair (min, max) with {low} <= min <= max <= {high}. "
            f"Received: {name}={value!r}"
        )
    return (float(value[0]), float(value[1]))


def _check_strength(name, value):
    if not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
        raise ValueError(f"{name} must be a float in [0, 1). Received: {name}={value!r}")
    return float(value)


def crop_boxes(batch_size, image_height, image_width, scale, ratio, seed, attempts=10):
    """Random-resized-crop boxes `(y0, x0, h, w)` in pixels, one per image.

    Samples `attempts` (area fraction, log-aspect) pairs per image, keeps the first that fits in
    the image, and falls back to the central crop with the aspect ratio clamped to `ratio` (the
    torchvision algorithm, vectorised).

    Args:
        batch_size: int or scalar tensor. Number of boxes.
        image_height, image_width: int or scalar tensor. Image size in pixels.
        scale: (min, max) area fraction.
        ratio: (min, max) aspect ratio width / height.
        seed: `keras.random.SeedGenerator` or int.
        attempts: int. Samples per image. Defaults to `10`.

    Returns:
        Four float32 tensors of shape `[batch_size]`.
    """
    h_img = ops.cast(image_height, "float32")
    w_img = ops.cast(image_width, "float32")
    area = h_img * w_img
    shape = (batch_size, attempts)
    target = area * keras.random.uniform(shape, scale[0], scale[1], seed=seed)
    log_ratio = keras.random.uniform(
        shape, math.log(ratio[0]), math.log(ratio[1]), seed=seed
    )
    aspect = ops.exp(log_ratio)
    w = ops.sqrt(target * aspect)
    h = ops.sqrt(target / aspect)
    fits = ops.logical_and(w <= w_img, h <= h_img)
    first = ops.argmax(ops.cast(fits, "int32"), axis=1)
    any_fit = ops.any(fits, axis=1)
    pick = ops.one_hot(first, attempts)
    w = ops.sum(w * pick, axis=1)
    h = ops.sum(h * pick, axis=1)
    # Fallback: the whole image, aspect clamped to `ratio`, centred.
    in_ratio = w_img / h_img
    fb_w = ops.where(in_ratio < ratio[0], w_img, ops.where(in_ratio > ratio[1], h_img * ratio[1], w_img))
    fb_h = ops.where(in_ratio < ratio[0], w_img / ratio[0], h_img)
    w = ops.where(any_fit, w, fb_w)
    h = ops.where(any_fit, h, fb_h)
    y0 = keras.random.uniform((batch_size,), seed=seed) * (h_img - h)
    x0 = keras.random.uniform((batch_size,), seed=seed) * (w_img - w)
    y0 = ops.where(any_fit, y0, (h_img - h) / 2)
    x0 = ops.where(any_fit, x0, (w_img - w) / 2)
    return y0, x0, h, w


def tf_crop_window(seed, image_height, image_width, scale, ratio, attempts=10):
    """TensorFlow twin of `crop_boxes` for one image, on whole pixels, with a stateless seed.

    The file pipeline uses it to decode only the crop window of a JPEG. Same algorithm as
    torchvision's `RandomResizedCrop.get_params`: area uniform in `scale`, log-aspect uniform in
    `ratio`, sizes rounded to pixels, the first of `attempts` that fits, else the centred crop of
    the whole image with its aspect clamped to `ratio`; the offset is uniform over whole pixels.

    Args:
        seed: int64 tensor of shape `[2]`. Stateless seed (`tf.random.stateless_uniform`).
        image_height, image_width: int32 scalar tensors. Image size in pixels.
        scale: (min, max) area fraction.
        ratio: (min, max) aspect ratio width / height.
        attempts: int. Samples before the fallback. Defaults to `10`.

    Returns:
        `(window, flip_draw)`: int32 `[y0, x0, h, w]` and a float32 scalar uniform in [0, 1)
        left over for the caller's horizontal flip.
    """
    import tensorflow as tf

    u = tf.random.stateless_uniform([2 * attempts + 3], seed=seed)
    h_img = tf.cast(image_height, tf.float32)
    w_img = tf.cast(image_width, tf.float32)
    target = h_img * w_img * (scale[0] + (scale[1] - scale[0]) * u[:attempts])
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    aspect = tf.exp(log_lo + (log_hi - log_lo) * u[attempts : 2 * attempts])
    w = tf.round(tf.sqrt(target * aspect))
    h = tf.round(tf.sqrt(target / aspect))
    fits = (w >= 1) & (w <= w_img) & (h >= 1) & (h <= h_img)
    first = tf.argmax(tf.cast(fits, tf.int32), output_type=tf.int32)
    any_fit = tf.reduce_any(fits)
    # Fallback: the whole image, aspect clamped to `ratio`, centred.
    in_ratio = w_img / h_img
    fb_w = tf.where(in_ratio > ratio[1], tf.round(h_img * ratio[1]), w_img)
    fb_h = tf.where(in_ratio < ratio[0], tf.round(w_img / ratio[0]), h_img)
    h = tf.cast(tf.maximum(tf.where(any_fit, h[first], fb_h), 1.0), tf.int32)
    w = tf.cast(tf.maximum(tf.where(any_fit, w[first], fb_w), 1.0), tf.int32)
    y_room = image_height - h
    x_room = image_width - w
    y0 = tf.where(any_fit, tf.cast(u[-3] * tf.cast(y_room + 1, tf.float32), tf.int32), y_room // 2)
    x0 = tf.where(any_fit, tf.cast(u[-2] * tf.cast(x_room + 1, tf.float32), tf.int32), x_room // 2)
    window = tf.stack([tf.minimum(y0, y_room), tf.minimum(x0, x_room), h, w])
    return window, u[-1]


@keras.saving.register_keras_serializable(package="kerasrecipes")
class RandomResizedCrop(keras.layers.Layer):
    """Crops a random area and aspect ratio of each image and resizes it (Inception crop).

    Args:
        height: optional int. Output height. Defaults to `None` (the input's height).
        width: optional int. Output width. Defaults to `None` (the input's width).
        scale: (min, max) fraction of the image area kept. Defaults to `(0.08, 1.0)`.
        ratio: (min, max) aspect ratio (width / height) of the crop. Defaults to `(3/4, 4/3)`.
        horizontal_flip: bool. Also mirror half of the crops, at no extra cost (the crop is
            sampled right to left). Defaults to `False`.
        seed: optional int. Defaults to `None`.

    Reference: Szegedy et al., "Going Deeper with Convolutions" (2015).

    Example:
    >>> layer = RandomResizedCrop(224, 224)
    >>> layer(np.zeros((2, 500, 400, 3), "uint8"), training=True).shape  # (2, 224, 224, 3)
    """

    def __init__(self, height=None, width=None, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3),
                 horizontal_flip=False, seed=None, **kwargs):
        super().__init__(**kwargs)
        for name, value in (("height", height), ("width", width)):
            if value is not None and (not isinstance(value, int) or value < 1):
                raise ValueError(f"{name} must be a positive int or None. Received: {name}={value!r}")
        self.height = height
        self.width = width
        self.scale = _check_range("scale", scale, 1e-6, 1.0)
        self.ratio = _check_range("ratio", ratio, 1e-3, 1e3)
        if not isinstance(horizontal_flip, bool):
            raise ValueError(
                f"horizontal_flip must be True or False. Received: horizontal_flip={horizontal_flip!r}"
            )
        self.horizontal_flip = horizontal_flip
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def _output_size(self, input_shape):
        return (self.height or input_shape[-3], self.width or input_shape[-2])

    def call(self, images, training=True):
        unbatched = len(images.shape) == 3
        if unbatched:
            images = ops.expand_dims(images, 0)
        dtype = images.dtype
        shape = ops.shape(images)
        out_h, out_w = self._output_size(images.shape)
        if out_h is None or out_w is None:
            out_h, out_w = shape[1], shape[2]
        x = ops.cast(images, "float32")
        if training:
            y0, x0, h, w = crop_boxes(shape[0], shape[1], shape[2], self.scale, self.ratio,
                                      self.seed_generator)
            if self.horizontal_flip:
                # A box sampled right to left is a mirrored crop.
                flip = keras.random.uniform((shape[0],), seed=self.seed_generator) < 0.5
                x0 = ops.where(flip, x0 + w, x0)
                w = ops.where(flip, -w, w)
            x = _crop_and_resize(x, y0, x0, h, w, out_h, out_w)
        elif images.shape[1] != out_h or images.shape[2] != out_w:
            x = ops.image.resize(x, (out_h, out_w))
        x = _restore_dtype(x, dtype)
        return x[0] if unbatched else x

    def compute_output_shape(self, input_shape):
        out_h, out_w = self._output_size(input_shape)
        return (*input_shape[:-3], out_h, out_w, input_shape[-1])

    def get_config(self):
        config = super().get_config()
        config.update(height=self.height, width=self.width, scale=list(self.scale),
                      ratio=list(self.ratio), horizontal_flip=self.horizontal_flip, seed=self.seed)
        return config


def _crop_and_resize(x, y0, x0, h, w, out_h, out_w):
    """Bilinear crop of box `(y0, x0, h, w)` (pixels) of each image, resized to `out_h × out_w`."""
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        shape = tf.cast(tf.shape(x), tf.float32)
        # crop_and_resize samples box corners as pixel centres: map [y0, y0 + h] onto them.
        # (x0 + w - 1 with a negative w: a box from right to left, mirrored by crop_and_resize.)
        one = tf.sign(w)
        boxes = tf.stack([y0 / (shape[1] - 1), (x0 - (1 - one) / 2) / (shape[2] - 1),
                          (y0 + h - 1) / (shape[1] - 1), (x0 + w - one - (1 - one) / 2) / (shape[2] - 1)],
                         axis=1)
        return tf.image.crop_and_resize(x, boxes, tf.range(tf.shape(x)[0]), (out_h, out_w))
    return _affine_crop_and_resize(x, y0, x0, h, w, out_h, out_w)


def _affine_crop_and_resize(x, y0, x0, h, w, out_h, out_w):
    """Backend-independent crop: one batched affine warp at the input size, then a resize."""
    in_h = ops.cast(ops.shape(x)[1], "float32")
    in_w = ops.cast(ops.shape(x)[2], "float32")
    zeros = ops.zeros_like(h)
    transform = ops.stack([w / in_w, zeros, x0, zeros, h / in_h, y0, zeros, zeros], axis=1)
    x = ops.image.affine_transform(x, transform, fill_mode="reflect")
    if x.shape[1] != out_h or x.shape[2] != out_w:
        x = ops.image.resize(x, (out_h, out_w))
    return x


def _restore_dtype(x, dtype, clipped=False):
    """Rounds float pixels back to an integer `dtype` (clipped to 0–255 unless `clipped`)."""
    if "int" in str(dtype):
        x = ops.round(x)
        return ops.cast(x if clipped else ops.clip(x, 0, 255), dtype)
    return x


def _clip_to(x, value_range):
    """Clips to `value_range`; returns `(x, clipped)`, `clipped` when that range is in 0–255."""
    low, high = value_range
    return ops.clip(x, low, high), 0 <= low and high <= 255


@keras.saving.register_keras_serializable(package="kerasrecipes")
class ColorJitter(keras.layers.Layer):
    """Scales brightness, contrast and saturation of each image by random factors.

    Each factor is drawn uniformly from `[1 - s, 1 + s]`: brightness multiplies the pixels,
    contrast blends with the image's mean grey level, saturation with the per-pixel grey
    (luma) — the fb.resnet.torch / torchvision recipe.

    Args:
        brightness: float in [0, 1). Defaults to `0.4` (factors 0.6–1.4).
        contrast: float in [0, 1). Defaults to `0.4`.
        saturation: float in [0, 1). Defaults to `0.4`.
        value_range: (min, max) of the pixels. Defaults to `(0, 255)`.
        seed: optional int. Defaults to `None`.

    Reference: Krizhevsky et al., "ImageNet Classification with Deep CNNs" (2012); Goyal et al.,
    "Accurate, Large Minibatch SGD" (2017), fb.resnet.torch.

    Example:
    >>> ColorJitter(0.4, 0.4, 0.4)(np.full((2, 8, 8, 3), 100, "uint8"), training=True).shape
    """

    def __init__(self, brightness=0.4, contrast=0.4, saturation=0.4, value_range=(0, 255),
                 seed=None, **kwargs):
        super().__init__(**kwargs)
        self.brightness = _check_strength("brightness", brightness)
        self.contrast = _check_strength("contrast", contrast)
        self.saturation = _check_strength("saturation", saturation)
        self.value_range = _check_range("value_range", value_range, -1e9, 1e9)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def _factor(self, batch, strength):
        if not strength:
            return ops.ones((batch, 1, 1, 1), "float32")
        return keras.random.uniform((batch, 1, 1, 1), 1 - strength, 1 + strength,
                                    seed=self.seed_generator)

    def call(self, images, training=True):
        if not training:
            return images
        dtype = images.dtype
        x = ops.cast(images, "float32")
        batch = ops.shape(x)[0]
        b = self._factor(batch, self.brightness)
        c = self._factor(batch, self.contrast)
        s = self._factor(batch, self.saturation)
        # brightness → contrast → saturation, fused into one affine map of the pixel and its luma
        # g: s·c·b·x + (1 - s)·c·b·g + (1 - c)·b·mean(g) (one pass instead of three).
        luma = ops.convert_to_tensor([[0.299], [0.587], [0.114]], "float32")
        gray = ops.matmul(x, luma)  # [B, H, W, 1]
        mean = ops.mean(gray, axis=(1, 2), keepdims=True)
        # The single-channel terms are summed first: two full-size passes instead of three.
        x = (s * c * b) * x + (((1 - s) * c * b) * gray + (1 - c) * b * mean)
        x, clipped = _clip_to(x, self.value_range)
        return _restore_dtype(x, dtype, clipped)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(brightness=self.brightness, contrast=self.contrast,
                      saturation=self.saturation, value_range=list(self.value_range),
                      seed=self.seed)
        return config


@keras.saving.register_keras_serializable(package="kerasrecipes")
class PCALighting(keras.layers.Layer):
    """AlexNet "PCA lighting" noise: adds `eigvec @ (alpha * eigval)`, `alpha ~ N(0, std)`.

    Shifts each image's colour along the principal components of ImageNet's RGB covariance.

    Args:
        std: float >= 0. Standard deviation of `alpha`. Defaults to `0.1`.
        value_range: (min, max) of the pixels. Defaults to `(0, 255)`.
        seed: optional int. Defaults to `None`.

    Reference: Krizhevsky et al., "ImageNet Classification with Deep CNNs" (2012).

    Example:
    >>> PCALighting(0.1)(np.full((2, 8, 8, 3), 100, "uint8"), training=True).shape
    """

    def __init__(self, std=0.1, value_range=(0, 255), seed=None, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(std, (int, float)) or std < 0:
            raise ValueError(f"std must be a float >= 0. Received: std={std!r}")
        self.std = float(std)
        self.value_range = _check_range("value_range", value_range, -1e9, 1e9)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, images, training=True):
        if not training or not self.std:
            return images
        dtype = images.dtype
        x = ops.cast(images, "float32")
        alpha = keras.random.normal((ops.shape(x)[0], 3), stddev=self.std, seed=self.seed_generator)
        eigval = ops.convert_to_tensor(_IMAGENET_EIGVAL, "float32")
        eigvec = ops.convert_to_tensor(_IMAGENET_EIGVEC, "float32")
        span = self.value_range[1] - self.value_range[0]
        rgb = ops.matmul(alpha * eigval, ops.transpose(eigvec)) * span  # [B, 3]
        x = x + rgb[:, None, None, :]
        x, clipped = _clip_to(x, self.value_range)
        return _restore_dtype(x, dtype, clipped)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(std=self.std, value_range=list(self.value_range), seed=self.seed)
        return config


def augmentation(preset="light", flip=True, seed=None, image_size=None):
    """Returns a `keras.Sequential` named `"augment"` for a preset.

    Args:
        preset: str. `"none"`; `"light"` (horizontal flip, ±10% translation and zoom);
            `"standard"` (the classic ImageNet recipe: random-resized-crop with 8–100% of the area
            and aspect 3/4–4/3, horizontal flip, brightness / contrast / saturation scaled by
            0.6–1.4, AlexNet PCA lighting noise σ = 0.1); `"strong"` (standard's crop and flip,
            then RandAugment with 2 ops at magnitude 0.5, then random erasing). Defaults to
            `"light"`.
        flip: bool. Horizontal flips; turn off for data where mirroring changes the class
            (digits, text, MNIST). Defaults to `True`.
        seed: optional int. Seed of the random layers. Defaults to `None`.
        image_size: optional int or (height, width). Output size of the random-resized-crop
            (`"standard"`, `"strong"`); use it in `tf.data` to crop full-size images straight to
            the training size. Defaults to `None` (the input size, for in-model use).

    Example:
    >>> augment = augmentation("standard", flip=False)
    >>> augment(np.zeros((2, 64, 64, 3), "uint8"), training=True).shape  # (2, 64, 64, 3)
    """
    check_choice("preset", preset, PRESETS)
    if not isinstance(flip, bool):
        raise ValueError(f"flip must be True or False. Received: flip={flip!r}")
    height = width = None
    if image_size is not None:
        height, width = image_size_pair(image_size)
    layers = []
    if preset == "light":
        if flip:
            layers.append(keras.layers.RandomFlip("horizontal", seed=seed))
        layers += [
            keras.layers.RandomTranslation(0.1, 0.1, fill_mode="reflect", seed=seed),
            keras.layers.RandomZoom(0.1, fill_mode="reflect", seed=seed),
        ]
        if height is not None:
            layers.append(keras.layers.Resizing(height, width))
    elif preset in ("standard", "strong"):
        layers.append(RandomResizedCrop(height, width, horizontal_flip=flip, seed=seed,
                                        name="random_resized_crop"))
        if preset == "standard":
            layers += [
                ColorJitter(0.4, 0.4, 0.4, seed=seed, name="color_jitter"),
                PCALighting(0.1, seed=seed, name="pca_lighting"),
            ]
        else:
            layers += [
                keras.layers.RandAugment(value_range=(0, 255), num_ops=2, factor=0.5, seed=seed),
                keras.layers.RandomErasing(factor=0.5, value_range=(0, 255), seed=seed),
            ]
    if not layers:
        layers = [keras.layers.Identity(name="no_augmentation")]
    return keras.Sequential(layers, name="augment")


def augment_dataset(dataset, augment="standard", flip=True, seed=None, image_size=None):
    """Applies an augmentation preset (or layer) to a `tf.data` dataset of image batches.

    The images stay uint8 (rounded and clipped), so the model's input contract holds; labels and
    anything else in the elements pass through. Use it instead of the in-model `augment`
    sub-model when the accelerator is busy or when cropping full-size images to `image_size`.
    For a folder of image files, `image_folder_datasets(..., augment=...)` is faster: it crops
    while decoding (only the crop window of a JPEG is decoded) instead of decoding, resizing and
    then cropping.

    Args:
        dataset: `tf.data.Dataset` of `(images, labels, ...)` batches (or of image batches).
        augment: str (a preset of `augmentation`) or a Keras layer. Defaults to `"standard"`.
        flip: bool. As in `augmentation`. Defaults to `True`.
        seed: optional int. Defaults to `None`.
        image_size: optional int or (height, width). As in `augmentation`. Defaults to `None`.

    Returns:
        The mapped `tf.data.Dataset`.

    Example:
    >>> train = augment_dataset(data.train, "standard")
    """
    import tensorflow as tf

    layer = resolve_augment(augment, flip=flip, seed=seed, image_size=image_size)
    if not isinstance(dataset, tf.data.Dataset):
        raise ValueError(
            f"dataset must be a tf.data.Dataset. Received: dataset={type(dataset).__name__}"
        )
    return map_batches(dataset, [layer])


def resolve_augment(augment, flip=True, seed=None, image_size=None):
    """A preset name or a Keras layer → the Keras layer."""
    if isinstance(augment, str):
        return augmentation(augment, flip=flip, seed=seed, image_size=image_size)
    if isinstance(augment, keras.layers.Layer):
        return augment
    raise ValueError(
        f"augment must be a preset name or a Keras layer. Received: augment={augment!r}"
    )


def split_leading_crop(layer):
    """Splits an augmentation into its leading `RandomResizedCrop` (or `None`) and the rest.

    The file pipeline fuses that crop into decoding and applies the other layers to batches.
    """
    if isinstance(layer, RandomResizedCrop):
        return layer, []
    if isinstance(layer, keras.Sequential):
        layers = layer.layers
        if layers and isinstance(layers[0], RandomResizedCrop):
            return layers[0], list(layers[1:])
        if all(isinstance(lyr, keras.layers.Identity) for lyr in layers):
            return None, []
    return None, [layer]


def map_batches(dataset, layers, parallel=True):
    """Maps `layers` (in training mode) over the image batches of `dataset`, keeping the dtype.

    Runs of `ColorJitter` / `PCALighting` are compiled with XLA: their element-wise passes fuse
    into one loop (on the CPU, both together took 0.3 instead of 1.5 ms per 224 px image); XLA
    compiles once per batch shape, about a second. With `parallel=False` the batches are mapped
    one at a time, so the layers' seed generators advance in batch order and a seeded pipeline
    is reproducible (parallel calls race for them).
    """
    import tensorflow as tf

    flat = []
    for layer in layers:
        flat.extend(layer.layers if isinstance(layer, keras.Sequential) else [layer])
    steps = []
    for layer in flat:
        compiled = isinstance(layer, (ColorJitter, PCALighting))
        if steps and steps[-1][0] == compiled:
            steps[-1][1].append(layer)
        else:
            steps.append((compiled, [layer]))

    def chain(run_layers):
        def run(x):
            for layer in run_layers:
                x = layer(x, training=True)
            return x

        return run

    runs = [tf.function(chain(group), jit_compile=True) if compiled else chain(group)
            for compiled, group in steps]

    def apply(images):
        out = images
        for run in runs:
            out = run(out)
        if out.dtype != images.dtype:
            out = tf.cast(tf.clip_by_value(tf.round(out), 0, 255), images.dtype)
        return out

    def map_element(*element):
        if len(element) == 1:
            return apply(element[0])
        return (apply(element[0]), *element[1:])

    return dataset.map(map_element, num_parallel_calls=tf.data.AUTOTUNE if parallel else None)
