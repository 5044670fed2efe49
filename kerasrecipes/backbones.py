"""The backbone registry: one frozen entry of facts per pretrained feature extractor.

Each entry says how to build the backbone (without its ImageNet classifier), its default image
size, how its pixels must be preprocessed (as a Keras layer) and how its layers split into named
groups (`stem`, `stage1`…, `top`) for freezing and discriminative learning rates. Adding a backbone
is adding one entry. keras-hub presets are resolved on demand (`"hub:<preset or directory>"`).
"""

import dataclasses
import os
import re
from typing import Callable

import keras

from kerasrecipes.layers import NormalizeImage

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclasses.dataclass(frozen=True)
class Preprocessing:
    """How 0–255 RGB pixels become a backbone's input: `(x * scale - mean) / std`."""

    scale: float = 1.0 / 255
    mean: tuple = (0.0, 0.0, 0.0)
    std: tuple = (1.0, 1.0, 1.0)
    channel_order: str = "rgb"

    def layer(self, name="normalize"):
        return NormalizeImage(
            scale=self.scale,
            mean=list(self.mean),
            std=list(self.std),
            channel_order=self.channel_order,
            name=name,
        )


TF_STYLE = Preprocessing(scale=1 / 127.5, mean=(1.0, 1.0, 1.0))  # -> [-1, 1]
TORCH_STYLE = Preprocessing(scale=1 / 255, mean=IMAGENET_MEAN, std=IMAGENET_STD)
CAFFE_STYLE = Preprocessing(scale=1.0, mean=(103.939, 116.779, 123.68), channel_order="bgr")
# The TF EfficientNet-Lite checkpoints were trained on (x - 127) / 128 (MEAN_RGB=127, STDDEV_RGB=128).
LITE_STYLE = Preprocessing(scale=1.0, mean=(127.0, 127.0, 127.0), std=(128.0, 128.0, 128.0))


@dataclasses.dataclass(frozen=True)
class BackboneSpec:
    """Facts about one backbone.

    Args:
        name: str. Registry name, e.g. `"resnet50"`.
        constructor: callable `(input_shape, weights) -> keras.Model` returning the feature
            extractor (no classifier top, no built-in preprocessing).
        image_size: int. The resolution the pretrained weights were trained at.
        preprocessing: `Preprocessing` (what the pretrained weights expect), or a callable
            returning the preprocessing Keras layer.
        layer_groups: tuple of `(group_name, regex)`. A layer whose name matches a group's regex
            belongs to it; a layer matching none (e.g. an unnamed `Add`) joins the group of the
            layer before it. Order is input → output.
        source: str. Where the weights come from, for `list_backbones()`.
        classifier: optional callable `(input_shape, weights) -> keras.Model` with the ImageNet
            top, for backbones we can predict ImageNet classes with offline.
    """

    name: str
    constructor: Callable
    image_size: int
    preprocessing: Preprocessing
    layer_groups: tuple
    source: str = "keras.applications"
    classifier: Callable = None

    def build(self, image_size=None, weights=None):
        """Builds the feature extractor, named `"backbone"`, for `image_size` (int or (h, w))."""
        height, width = _pair(image_size or self.image_size)
        _check_weights(weights, self.name)
        model = self.constructor((height, width, 3), weights)
        return keras.Model(model.input, model.output, name="backbone")

    def preprocessor(self):
        """The preprocessing layer that matches this backbone's weights."""
        if isinstance(self.preprocessing, Preprocessing):
            return self.preprocessing.layer()
        return self.preprocessing()


def _pair(size):
    if isinstance(size, int):
        return size, size
    if isinstance(size, (tuple, list)) and len(size) == 2 and all(isinstance(s, int) for s in size):
        return tuple(size)
    raise ValueError(f"image_size must be an int or (height, width). Received: image_size={size!r}")


def _check_weights(weights, name):
    if weights is None or weights == "imagenet":
        return
    if not isinstance(weights, (str, os.PathLike)) or not os.path.isfile(weights):
        raise ValueError(
            f"weights must be None, 'imagenet' or the path of a weights file. "
            f"Received: weights={weights!r} for backbone {name!r}"
            + ("" if not isinstance(weights, (str, os.PathLike)) else " (no such file)")
        )


def _applications(fn_name, **extra):
    """A constructor for a keras.applications model without top and built-in preprocessing."""

    def constructor(input_shape, weights):
        fn = getattr(keras.applications, fn_name)
        local_file = weights not in (None, "imagenet")
        model = fn(
            include_top=False,
            weights=None if local_file else weights,
            input_shape=input_shape,
            **extra,
        )
        if local_file:
            model.load_weights(os.fspath(weights))
        return model

    constructor.__name__ = fn_name
    return constructor


def _stages(stem, stages, top=None):
    groups = [("stem", stem)] + [(f"stage{i + 1}", s) for i, s in enumerate(stages)]
    return tuple(groups + ([("top", top)] if top else []))


_RESNET_GROUPS = _stages(r"^(conv1|pool1)_", [rf"^conv{i}_" for i in range(2, 6)], r"^post_")
_EFFV2_GROUPS = _stages(r"^stem_", [rf"^block{i}" for i in range(1, 7)], r"^top_")
_DENSENET_GROUPS = _stages(
    r"^(zero_padding2d|conv1|pool1)",
    [r"^conv2_", r"^(pool2_|conv3_)", r"^(pool3_|conv4_)", r"^(pool4_|conv5_)"],
    r"^(bn|relu)$",
)
_XCEPTION_GROUPS = _stages(
    r"^block1_",
    [r"^block[2-4]_", r"^block([5-8])_", r"^block(9|10|11|12)_", r"^block1[34]_"],
)
_CONVNEXT_GROUPS = _stages(
    r"_stem",
    [r"_stage_0_", r"_(downsampling_block_0|stage_1_)", r"_(downsampling_block_1|stage_2_)",
     r"_(downsampling_block_2|stage_3_)"],
    r"^layer_normalization",
)


def _mobilenet_v3_groups(stage_starts, last_block):
    """Groups for MobileNetV3, whose blocks are `expanded_conv`, `expanded_conv_1`, …"""
    def block(i):
        return r"expanded_conv_(?!\d)" if i == 0 else f"expanded_conv_{i}_"

    stages = []
    bounds = list(stage_starts) + [last_block + 1]
    for start, end in zip(bounds[:-1], bounds[1:]):
        stages.append("^(" + "|".join(block(i) for i in range(start, end)) + ")")
    return _stages(r"^(conv|conv_bn)$", stages, r"^conv_1")


_REGISTRY = {}


def register_backbone(spec):
    """Adds a `BackboneSpec` to the registry (replacing one of the same name) and returns it."""
    _REGISTRY[_key(spec.name)] = spec
    return spec


def _key(name):
    return re.sub(r"[^a-z0-9]", "", name.lower())


for _name, _fn, _size, _pre, _groups, _extra in [
    ("resnet50", "ResNet50", 224, CAFFE_STYLE, _RESNET_GROUPS, {}),
    ("resnet50v2", "ResNet50V2", 224, TF_STYLE, _RESNET_GROUPS, {}),
    ("mobilenetv3small", "MobileNetV3Small", 224, TF_STYLE,
     _mobilenet_v3_groups([0, 1, 3, 8], 10), {"include_preprocessing": False}),
    ("mobilenetv3large", "MobileNetV3Large", 224, TF_STYLE,
     _mobilenet_v3_groups([0, 1, 3, 6, 12], 14), {"include_preprocessing": False}),
    ("efficientnetv2b0", "EfficientNetV2B0", 224, TORCH_STYLE, _EFFV2_GROUPS,
     {"include_preprocessing": False}),
    ("efficientnetv2b1", "EfficientNetV2B1", 240, TORCH_STYLE, _EFFV2_GROUPS,
     {"include_preprocessing": False}),
    ("efficientnetv2b2", "EfficientNetV2B2", 260, TORCH_STYLE, _EFFV2_GROUPS,
     {"include_preprocessing": False}),
    ("efficientnetv2b3", "EfficientNetV2B3", 300, TORCH_STYLE, _EFFV2_GROUPS,
     {"include_preprocessing": False}),
    ("convnext_tiny", "ConvNeXtTiny", 224, TORCH_STYLE, _CONVNEXT_GROUPS,
     {"include_preprocessing": False}),
    ("densenet121", "DenseNet121", 224, TORCH_STYLE, _DENSENET_GROUPS, {}),
    ("xception", "Xception", 299, TF_STYLE, _XCEPTION_GROUPS, {}),
]:
    register_backbone(
        BackboneSpec(
            name=_name,
            constructor=_applications(_fn, **_extra),
            image_size=_size,
            preprocessing=_pre,
            layer_groups=_groups,
        )
    )


def get_backbone(name):
    """Returns the `BackboneSpec` for a registry name or a keras-hub preset.

    Args:
        name: str. A registry name (case, `-` and `_` ignored: `"EfficientNet-Lite0"` works), or
            `"hub:<preset>"` for a keras-hub image classifier preset, by name (needs internet once)
            or by local directory (as written by `save_to_preset`).
    """
    if not isinstance(name, str):
        raise ValueError(f"backbone must be a name (str). Received: backbone={name!r}")
    if name.startswith("hub:"):
        from kerasrecipes.hub import hub_backbone

        return hub_backbone(name[len("hub:"):])
    _ensure_lite_registered()
    spec = _REGISTRY.get(_key(name))
    if spec is None:
        raise ValueError(
            f"Unknown backbone {name!r}. Choose one of {', '.join(list_backbones())}, "
            "or 'hub:<keras-hub preset or local preset directory>'."
        )
    return spec


def list_backbones():
    """Names of the registered backbones."""
    _ensure_lite_registered()
    return sorted(spec.name for spec in _REGISTRY.values())


def _ensure_lite_registered():
    # Imported late so `backbones` has no import cycle with the module that registers Lite.
    import kerasrecipes.efficientnet_lite  # noqa: F401


def layer_groups(backbone, spec):
    """Splits a built backbone's layers into the spec's named groups, input → output.

    Args:
        backbone: keras.Model. Built by `spec.build()`.
        spec: `BackboneSpec`.

    Returns:
        dict mapping group name → list of layers (only layers that own weights), in order.
        Groups without weighted layers are left out.
    """
    patterns = [(group, re.compile(regex)) for group, regex in spec.layer_groups]
    if not patterns:
        return _even_groups(backbone)
    groups = {group: [] for group, _ in patterns}
    current = patterns[0][0]
    for layer in backbone.layers:
        for group, regex in patterns:
            if regex.search(layer.name):
                current = group
                break
        if layer.weights:
            groups[current].append(layer)
    return {group: layers for group, layers in groups.items() if layers}


def _even_groups(backbone, count=4):
    """Fallback for backbones without group facts: `count` contiguous groups of weighted layers."""
    weighted = [layer for layer in backbone.layers if layer.weights]
    size = max(1, -(-len(weighted) // count))
    names = ["stem"] + [f"stage{i}" for i in range(1, count)]
    return {
        names[i]: weighted[i * size:(i + 1) * size]
        for i in range(count)
        if weighted[i * size:(i + 1) * size]
    }


_GENERIC_GROUPS = ((None, r"^(stem|stage\d+|top)_"),)


def infer_layer_groups(backbone):
    """Named layer groups of a built backbone, from its layer names alone.

    Works for our own builders (`stem_…`, `stageN_…`, `top_…` layer names) and for every
    registered backbone: the registry entry whose group patterns name the most layers wins
    (so it also works on a model re-loaded from a `.keras` file). Falls back to four even,
    contiguous groups.
    """
    weighted = [layer for layer in backbone.layers if layer.weights]
    if weighted and all(re.match(_GENERIC_GROUPS[0][1], layer.name) for layer in weighted):
        groups = {}
        for layer in weighted:
            groups.setdefault(layer.name.split("_")[0], []).append(layer)
        return groups
    _ensure_lite_registered()
    best, best_hits = None, 0
    for spec in _REGISTRY.values():
        patterns = [re.compile(regex) for _, regex in spec.layer_groups]
        hits = sum(any(p.search(layer.name) for p in patterns) for layer in weighted)
        if hits > best_hits:
            best, best_hits = spec, hits
    if best is not None and best_hits >= 0.5 * len(weighted):
        return layer_groups(backbone, best)
    return _even_groups(backbone)
