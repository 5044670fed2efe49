"""The keras.applications backbones as registry entries.

The registry itself (`BackboneSpec`, `register_backbone`, `get_backbone`, `list_backbones`) is
`kerasrecipes.registry`; this module registers the keras.applications entries into it (each:
how to build the backbone without its ImageNet classifier, its default image size, its
preprocessing and how its layers split into named groups `stem`, `stage1`…, `top`). Finding the
groups of a built backbone (`infer_layer_groups`, `layer_groups`) is `kerasrecipes.freezing`'s,
re-exported here. keras-hub presets are resolved on demand (`"hub:<preset or directory>"`,
`kerasrecipes.hub`).

To add a backbone: one `register_backbone(BackboneSpec(...))` entry (here for keras.applications,
or in a module of its own like `efficientnet_lite.py`, imported by `kerasrecipes/__init__.py`).
"""

import os

import keras

from kerasrecipes.freezing import infer_layer_groups, layer_groups  # noqa: F401  (re-exported)
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
