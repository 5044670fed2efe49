"""Keras-functional model builders.

Every model takes uint8 images `[B, H, W, 3]` (0–255) and is made of four named sub-models:
`augment` (active only in training) → `preprocess` (the backbone's own normalisation) →
`backbone` → `head`. Reach them with `model.get_layer("backbone")`, never by index.
"""

import keras

from kerasrecipes.freezing import (  # noqa: F401  (re-exported: kerasrecipes.models.X)
    batch_norm_layers,
    freeze_batch_norm,
)
from kerasrecipes.layers import NormalizeImage
from kerasrecipes.registry import BackboneSpec, get_backbone
from kerasrecipes.tasks import task_of  # noqa: F401  (re-exported: kerasrecipes.models.task_of)
from kerasrecipes.utils import image_size_pair

TASKS = ("multiclass", "binary", "multilabel")
ACTIVATIONS = ("relu", "leaky_relu", "elu", "selu", "swish", "gelu")


def build_classifier(
    backbone,
    num_classes,
    image_size=None,
    weights="imagenet",
    augment=None,
    dropout=0.2,
    hidden_units=(),
    task="multiclass",
    freeze_bn=None,
    name="classifier",
):
    """Builds a transfer-learning image classifier around a registered backbone.

    Args:
        backbone: str or `BackboneSpec`. A name from `kr.list_backbones()` or
            `"hub:<keras-hub preset or local directory>"`.
        num_classes: int. Number of classes (2 or more; for `task="binary"` 1 or 2).
        image_size: optional int or (height, width). Defaults to the backbone's own size.
        weights: `"imagenet"`, `None` (random init) or the path of a weights file for the backbone.
            Defaults to `"imagenet"`.
        augment: `None`, a preset name (`"light"`, `"standard"`, see `kr.augmentation`), a Keras
            layer or a list of layers. Runs on the accelerator, only while training.
            Defaults to `None`.
        dropout: float. Dropout before the last layer. Defaults to `0.2`.
        hidden_units: tuple of ints. Extra Dense+ReLU+Dropout layers in the head. Defaults to `()`.
        task: str. `"multiclass"` (softmax, sparse categorical cross-entropy), `"binary"` (one
            sigmoid unit) or `"multilabel"` (one sigmoid per class). Defaults to `"multiclass"`.
        freeze_bn: optional bool. Make the backbone's BatchNorm layers non-trainable, so they
            always run in inference mode on their pretrained moving statistics — also after
            `fine_tune` unfreezes the rest (the Keras transfer-learning guide's advice; in Keras 3
            calling the backbone with `training=False` inside a functional model does not do this,
            since `fit` passes `training=True` down). Defaults to `True` for pretrained weights,
            `False` for `weights=None`.
        name: str. The model's name. Defaults to `"classifier"`.

    Returns:
        A `keras.Model` taking uint8 images.

    Example:
    >>> model = build_classifier("mobilenetv3small", num_classes=3, image_size=64, weights=None)
    >>> model(np.zeros((2, 64, 64, 3), "uint8")).shape  # (2, 3)
    """
    _check_task(task, num_classes)
    spec, size, features = backbone_features(backbone, image_size, weights, freeze_bn)
    head = _head(features.output.shape, num_classes, task, dropout, hidden_units)
    return _assemble(size, augment, spec.preprocessor(), features, head, name)


def backbone_features(backbone, image_size=None, weights="imagenet", freeze_bn=None):
    """Builds a registered backbone as the `backbone` sub-model; returns `(spec, size, model)`.

    With pretrained weights (`freeze_bn=None` and `weights` not None) its BatchNorm layers are
    made non-trainable, as `build_classifier` documents.
    """
    spec = backbone if isinstance(backbone, BackboneSpec) else get_backbone(backbone)
    size = image_size_pair(image_size or spec.image_size)
    features = spec.build(size, weights=weights)
    if freeze_bn is None:
        freeze_bn = weights is not None
    if freeze_bn:
        freeze_batch_norm(features)
    return spec, size, features


def build_scratch_cnn(
    num_classes,
    image_size=(32, 32),
    filters=32,
    stages=3,
    convs_per_stage=2,
    activation="relu",
    kernel_initializer=None,
    batch_norm=True,
    downsample="maxpool",
    dense_units=(128,),
    dropout=0.3,
    spatial_dropout=0.0,
    augment=None,
    task="multiclass",
    normalization_data=None,
    name="scratch_cnn",
):
    """Builds a CNN from scratch by the classic design rules.

    Stages of `convs_per_stage` × (3×3 conv → BatchNorm → activation), each followed by a
    downsample (and optionally spatial dropout), with filters doubling per stage (32 → 64 → 128 by
    default), then global average pooling and `dense_units` Dense layers with dropout.
    `preprocess` normalises each channel with the mean/std of the **training** images, stored in
    the model so validation, test and serving reuse them.

    Args:
        num_classes: int. Number of classes.
        image_size: int or (height, width). Defaults to `(32, 32)`.
        filters: int. Filters of the first stage, a power of two. Defaults to `32`.
        stages: int. Number of stages (1–6). Defaults to `3`.
        convs_per_stage: int. Conv layers per stage (2–4). Defaults to `2`.
        activation: str. One of `"relu"`, `"leaky_relu"`, `"elu"`, `"selu"`, `"swish"`, `"gelu"`.
            Defaults to `"relu"`.
        kernel_initializer: optional str. `"he_normal"`, `"glorot_normal"` or `"lecun_normal"`.
            Defaults to He-normal for ReLU-like activations and LeCun-normal for SELU.
        batch_norm: bool. BatchNorm after each conv. Defaults to `True`.
        downsample: str. `"maxpool"` (2×2 max-pool) or `"stride"` (the stage's last conv has
            stride 2). Defaults to `"maxpool"`.
        dense_units: tuple of ints. Hidden Dense layers (0 to 3) before the classifier.
            Defaults to `(128,)`.
        dropout: float in [0, 1). Dropout before each Dense layer of the head (the hidden ones
            and the classifier); `0` adds none. Defaults to `0.3`.
        spatial_dropout: float in [0, 1). `SpatialDropout2D` rate after each stage's downsample:
            it drops whole feature maps, which regularises conv features better than
            element-wise dropout because neighbouring pixels are correlated; `0` adds none.
            Active only in training. Defaults to `0.0`.
        augment: like `build_classifier`. Defaults to `None`.
        task: str. Like `build_classifier`. Defaults to `"multiclass"`.
        normalization_data: optional training images (array or dataset) to compute the channel
            mean/std from now; otherwise `fit`/`fine_tune` compute them on their training data.
            Defaults to `None`.
        name: str. Defaults to `"scratch_cnn"`.

    Reference: Tompson et al., "Efficient Object Localization Using Convolutional Networks"
    (2015) for spatial dropout.

    Example:
    >>> model = build_scratch_cnn(10, image_size=32, spatial_dropout=0.1,
    ...                           normalization_data=x_train)
    """
    size = image_size_pair(image_size)
    _check_task(task, num_classes)
    check_rate("dropout", dropout)
    check_rate("spatial_dropout", spatial_dropout)
    _check_int("stages", stages, 1, 6)
    _check_int("convs_per_stage", convs_per_stage, 2, 4)
    if not isinstance(filters, int) or filters < 1 or filters & (filters - 1):
        raise ValueError(f"filters must be a power of two (e.g. 32). Received: filters={filters!r}")
    if downsample not in ("maxpool", "stride"):
        raise ValueError(
            f"downsample must be 'maxpool' or 'stride'. Received: downsample={downsample!r}"
        )
    if min(size) < 2**stages:
        raise ValueError(
            f"image_size={size} is too small for stages={stages}: each stage halves the "
            f"resolution, so use images of at least {2**stages} px or fewer stages."
        )
    if not isinstance(dense_units, (tuple, list)) or len(dense_units) > 3:
        raise ValueError(
            f"dense_units must be a tuple of 0 to 3 ints. Received: dense_units={dense_units!r}"
        )
    initializer = _initializer(activation, kernel_initializer)

    inputs = keras.Input((*size, 3), name="pixels")
    x = inputs
    for stage in range(1, stages + 1):
        width = filters * 2 ** (stage - 1)
        for i in range(1, convs_per_stage + 1):
            strided = downsample == "stride" and i == convs_per_stage
            x = keras.layers.Conv2D(
                width, 3, strides=2 if strided else 1, padding="same",
                use_bias=not batch_norm, kernel_initializer=initializer,
                name=f"stage{stage}_conv{i}",
            )(x)
            if batch_norm:
                x = keras.layers.BatchNormalization(name=f"stage{stage}_bn{i}")(x)
            x = keras.layers.Activation(activation, name=f"stage{stage}_act{i}")(x)
        if downsample == "maxpool":
            x = keras.layers.MaxPooling2D(name=f"stage{stage}_pool")(x)
        if spatial_dropout:
            x = keras.layers.SpatialDropout2D(spatial_dropout, name=f"stage{stage}_dropout")(x)
    features = keras.Model(inputs, x, name="backbone")

    head = _head(
        features.output.shape, num_classes, task, dropout, dense_units,
        activation=activation, initializer=initializer,
    )
    normalize = NormalizeImage(scale=1.0, mean=None, std=None, name="normalize")
    if normalization_data is not None:
        normalize.adapt(normalization_data)
    return _assemble(size, augment, normalize, features, head, name)


_RESNET_PRESETS = {
    "resnet18": ("basic", (2, 2, 2, 2)),
    "resnet34": ("basic", (3, 4, 6, 3)),
    "resnet50": ("bottleneck", (3, 4, 6, 3)),
}


def build_resnet(
    num_classes,
    depth="resnet18",
    image_size=(32, 32),
    filters=64,
    widen_factor=1,
    stem="small",
    activation="relu",
    dropout=0.0,
    spatial_dropout=0.0,
    augment=None,
    task="multiclass",
    normalization_data=None,
    name=None,
):
    """Builds a residual network from scratch.

    Args:
        num_classes: int. Number of classes.
        depth: str or tuple. `"resnet9"` (the DAWNBench CIFAR net: conv64, then conv128+pool with a
            residual block, conv256+pool, conv512+pool with a residual block), `"resnet18"`,
            `"resnet34"` (basic blocks), `"resnet50"` (bottleneck blocks), or
            `("basic"|"bottleneck", (blocks per stage, ...))`. Defaults to `"resnet18"`.
        image_size: int or (height, width). Defaults to `(32, 32)`.
        filters: int. Filters of the first stage; doubled per stage. Defaults to `64`.
        widen_factor: int. Multiplies every stage's width (wide ResNets, Zagoruyko 2016).
            Defaults to `1`.
        stem: str. `"small"` (one 3×3 conv, for 32–64 px images) or `"imagenet"` (7×7 stride-2
            conv and max-pool). Defaults to `"small"`.
        activation: str. One of `ACTIVATIONS`. Defaults to `"relu"`.
        dropout: float in [0, 1). Dropout before the classifier. Defaults to `0.0`.
        spatial_dropout: float in [0, 1). `SpatialDropout2D` inside every residual block,
            between its convolutions (where Wide ResNets put their dropout), dropping whole
            feature maps; the shortcut is never dropped. `0` adds none. Active only in training.
            Defaults to `0.0`.
        augment: like `build_classifier`.
        task: str. Like `build_classifier`.
        normalization_data: like `build_scratch_cnn`.
        name: optional str. Defaults to the depth's name.

    Reference: He et al., "Deep Residual Learning for Image Recognition" (2015); Zagoruyko &
    Komodakis, "Wide Residual Networks" (2016) for dropout inside the blocks.

    Example:
    >>> model = build_resnet(10, "resnet9", image_size=32, normalization_data=x_train)
    """
    size = image_size_pair(image_size)
    _check_task(task, num_classes)
    check_rate("dropout", dropout)
    check_rate("spatial_dropout", spatial_dropout)
    initializer = _initializer(activation, None)
    if stem not in ("small", "imagenet"):
        raise ValueError(f"stem must be 'small' or 'imagenet'. Received: stem={stem!r}")
    _check_int("widen_factor", widen_factor, 1, 16)

    def conv_bn(x, width, kernel, strides, prefix, act=True):
        x = keras.layers.Conv2D(
            width, kernel, strides=strides, padding="same", use_bias=False,
            kernel_initializer=initializer, name=f"{prefix}_conv",
        )(x)
        x = keras.layers.BatchNormalization(name=f"{prefix}_bn")(x)
        return keras.layers.Activation(activation, name=f"{prefix}_act")(x) if act else x

    def block_dropout(x, prefix):
        if not spatial_dropout:
            return x
        return keras.layers.SpatialDropout2D(spatial_dropout, name=f"{prefix}_dropout")(x)

    inputs = keras.Input((*size, 3), name="pixels")
    if depth == "resnet9":
        x = conv_bn(inputs, filters * widen_factor, 3, 1, "stem")
        for stage, residual in ((1, True), (2, False), (3, True)):
            width = filters * 2**stage * widen_factor
            x = conv_bn(x, width, 3, 1, f"stage{stage}_prep")
            x = keras.layers.MaxPooling2D(name=f"stage{stage}_pool")(x)
            if residual:
                y = conv_bn(x, width, 3, 1, f"stage{stage}_res1")
                y = block_dropout(y, f"stage{stage}_res")
                y = conv_bn(y, width, 3, 1, f"stage{stage}_res2")
                x = keras.layers.Add(name=f"stage{stage}_add")([x, y])
    else:
        block, stage_depths = _resnet_layout(depth)
        if stem == "small":
            x = conv_bn(inputs, filters, 3, 1, "stem")
        else:
            x = conv_bn(inputs, filters, 7, 2, "stem")
            x = keras.layers.MaxPooling2D(3, strides=2, padding="same", name="stem_pool")(x)
        expansion = 4 if block == "bottleneck" else 1
        for stage, blocks in enumerate(stage_depths, start=1):
            width = filters * 2 ** (stage - 1) * widen_factor
            for b in range(1, blocks + 1):
                prefix = f"stage{stage}_block{b}"
                strides = 2 if (b == 1 and stage > 1) else 1
                shortcut = x
                if strides != 1 or x.shape[-1] != width * expansion:
                    shortcut = conv_bn(x, width * expansion, 1, strides, f"{prefix}_proj", False)
                if block == "basic":
                    y = conv_bn(x, width, 3, strides, f"{prefix}_1")
                    y = block_dropout(y, prefix)
                    y = conv_bn(y, width, 3, 1, f"{prefix}_2", act=False)
                else:
                    y = conv_bn(x, width, 1, 1, f"{prefix}_1")
                    y = conv_bn(y, width, 3, strides, f"{prefix}_2")
                    y = block_dropout(y, prefix)
                    y = conv_bn(y, width * expansion, 1, 1, f"{prefix}_3", act=False)
                x = keras.layers.Add(name=f"{prefix}_add")([shortcut, y])
                x = keras.layers.Activation(activation, name=f"{prefix}_out")(x)
    features = keras.Model(inputs, x, name="backbone")

    head = _head(features.output.shape, num_classes, task, dropout, ())
    normalize = NormalizeImage(scale=1.0, mean=None, std=None, name="normalize")
    if normalization_data is not None:
        normalize.adapt(normalization_data)
    model_name = name or (depth if isinstance(depth, str) else "resnet")
    return _assemble(size, augment, normalize, features, head, model_name)


def _resnet_layout(depth):
    if isinstance(depth, str) and depth in _RESNET_PRESETS:
        return _RESNET_PRESETS[depth]
    if (
        isinstance(depth, (tuple, list)) and len(depth) == 2
        and depth[0] in ("basic", "bottleneck")
        and all(isinstance(n, int) and n >= 1 for n in depth[1])
    ):
        return depth[0], tuple(depth[1])
    raise ValueError(
        "depth must be 'resnet9', 'resnet18', 'resnet34', 'resnet50' or "
        f"('basic'|'bottleneck', (blocks per stage, ...)). Received: depth={depth!r}"
    )


def _assemble(size, augment, preprocess, features, head, name):
    """Chains the four named sub-models into one functional model on uint8 images."""
    inputs = keras.Input((*size, 3), dtype="uint8", name="image")
    x = augment_model(augment)(inputs)
    x = keras.Sequential([preprocess], name="preprocess")(x)
    return keras.Model(inputs, head(features(x)), name=name)


def augment_model(augment):
    """The `augment` sub-model: `None`/`"none"`, a preset name, a Keras layer or a list of them."""
    if augment is None or augment == "none":
        layers = [keras.layers.Identity(name="no_augmentation")]
    elif isinstance(augment, str):
        from kerasrecipes.augment import augmentation

        layers = augmentation(augment).layers
    elif isinstance(augment, keras.layers.Layer):
        layers = [augment]
    elif isinstance(augment, (list, tuple)) and all(
        isinstance(layer, keras.layers.Layer) for layer in augment
    ):
        layers = list(augment)
    else:
        raise ValueError(
            "augment must be None, a preset name, a Keras layer or a list of layers. "
            f"Received: augment={augment!r}"
        )
    return keras.Sequential(layers, name="augment")


def _head(feature_shape, num_classes, task, dropout, hidden_units, activation="relu",
          initializer="glorot_uniform"):
    check_rate("dropout", dropout)
    layers = []
    if len(feature_shape) == 4:
        layers.append(keras.layers.GlobalAveragePooling2D(name="avg_pool"))
    elif len(feature_shape) == 3:
        layers.append(keras.layers.GlobalAveragePooling1D(name="avg_pool"))
    for i, units in enumerate(hidden_units, start=1):
        if not isinstance(units, int) or units < 1:
            raise ValueError(f"hidden units must be positive ints. Received: {hidden_units!r}")
        if dropout:
            layers.append(keras.layers.Dropout(dropout, name=f"dropout{i}"))
        layers.append(
            keras.layers.Dense(
                units, activation=activation, kernel_initializer=initializer, name=f"dense{i}"
            )
        )
    if dropout:
        layers.append(keras.layers.Dropout(dropout, name="dropout"))
    units = 1 if task == "binary" else num_classes
    output_activation = "softmax" if task == "multiclass" else "sigmoid"
    # Small initial logits: the untrained model predicts uniformly, so the initial loss is ln(N)
    # and large random logits do not disturb the first steps. float32 outputs keep the loss
    # stable under mixed precision.
    layers.append(
        keras.layers.Dense(
            units, activation=output_activation, dtype="float32", name="predictions",
            kernel_initializer=keras.initializers.RandomNormal(stddev=0.01),
        )
    )
    return keras.Sequential(layers, name="head")


def _check_task(task, num_classes):
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}. Received: task={task!r}")
    minimum = 1 if task == "binary" else 2
    if not isinstance(num_classes, int) or num_classes < minimum:
        raise ValueError(
            f"num_classes must be an int >= {minimum} for task={task!r}. "
            f"Received: num_classes={num_classes!r}"
        )
    if task == "binary" and num_classes > 2:
        raise ValueError(
            f"task='binary' has 1 or 2 classes. Received: num_classes={num_classes}; "
            "use task='multiclass' or 'multilabel'."
        )


def _check_int(name, value, low, high):
    if not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"{name} must be an int in [{low}, {high}]. Received: {name}={value!r}")


def check_rate(name, value):
    """Checks that a dropout-like rate `value` of the argument `name` is a number in [0, 1)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
        raise ValueError(f"{name} must be in [0, 1). Received: {name}={value!r}")


def _initializer(activation, kernel_initializer):
    if activation not in ACTIVATIONS:
        raise ValueError(
            f"activation must be one of {ACTIVATIONS}. Received: activation={activation!r}"
        )
    if kernel_initializer is None:
        # He init keeps ReLU-family variances stable; SELU's self-normalisation needs LeCun.
        return "lecun_normal" if activation == "selu" else "he_normal"
    if kernel_initializer not in ("he_normal", "glorot_normal", "lecun_normal"):
        raise ValueError(
            "kernel_initializer must be 'he_normal', 'glorot_normal' or 'lecun_normal'. "
            f"Received: kernel_initializer={kernel_initializer!r}"
        )
    return kernel_initializer
