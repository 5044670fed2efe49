"""The keras.applications backbones as registry entries, and a built backbone's layer groups.

The registry itself (`BackboneSpec`, `register_backbone`, `get_backbone`, `list_backbones`) is
`kerasrecipes.registry`; this module registers the keras.applications entries into it (each:
how to build the backbone without its ImageNet classifier, its default image size, its
preprocessing and how its layers split into named groups `stem`, `stage1`…, `top`) and finds the
groups of a built backbone. keras-hub presets are resolved on demand (`"hub:<preset or
directory>"`, `kerasrecipes.hub`).
"""

import os
import re

import keras

from kerasrecipes.registry import (  # noqa: F401  (re-exported: kerasrecipes.backbones.X)
    CAFFE_STYLE,
    IMAGENET_MEAN,
    IMAGENET_STD,
    LITE_STYLE,
    TF_STYLE,
    TORCH_STYLE,
    BackboneSpec,
    Preprocessing,
    get_backbone,
    list_backbones,
    register_backbone,
    registered_backbones,
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
    best, best_hits = None, 0
    for spec in registered_backbones():
        patterns = [re.compile(regex) for _, regex in spec.layer_groups]
        hits = sum(any(p.search(layer.name) for p in patterns) for layer in weighted)
        if hits > best_hits:
            best, best_hits = spec, hits
    if best is not None and best_hits >= 0.5 * len(weighted):
        return layer_groups(backbone, best)
    return _even_groups(backbone)
