"""The backbone registry: one frozen entry of facts per pretrained feature extractor.

A leaf module: it knows what an entry is and keeps them; the modules that define backbones
register into it (`kerasrecipes.backbones` the keras.applications entries,
`kerasrecipes.efficientnet_lite` the Lite entries, `kerasrecipes.hub` the `"hub:"` resolver),
and `import kerasrecipes` imports them all. Each entry says how to build the backbone (without
its ImageNet classifier), its default image size, how its pixels must be preprocessed (as a
Keras layer) and how its layers split into named groups (`stem`, `stage1`…, `top`) for freezing
and discriminative learning rates. Adding a backbone is adding one entry.
"""

import dataclasses
import os
import re
from typing import Callable

import keras

from kerasrecipes.layers import NormalizeImage
from kerasrecipes.utils import image_size_pair

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
        height, width = image_size_pair(image_size or self.image_size)
        _check_weights(weights, self.name)
        model = self.constructor((height, width, 3), weights)
        return keras.Model(model.input, model.output, name="backbone")

    def preprocessor(self):
        """The preprocessing layer that matches this backbone's weights."""
        if isinstance(self.preprocessing, Preprocessing):
            return self.preprocessing.layer()
        return self.preprocessing()


def _check_weights(weights, name):
    if weights is None or weights == "imagenet":
        return
    if not isinstance(weights, (str, os.PathLike)) or not os.path.isfile(weights):
        raise ValueError(
            f"weights must be None, 'imagenet' or the path of a weights file. "
            f"Received: weights={weights!r} for backbone {name!r}"
            + ("" if not isinstance(weights, (str, os.PathLike)) else " (no such file)")
        )


_REGISTRY = {}
_RESOLVERS = {}  # name prefix → (resolve(rest) -> BackboneSpec, how the error message names it)


def register_backbone(spec):
    """Adds a `BackboneSpec` to the registry (replacing one of the same name) and returns it."""
    _REGISTRY[registry_key(spec.name)] = spec
    return spec


def register_resolver(prefix, resolve, hint):
    """Resolves names starting with `prefix` (e.g. `"hub:"`) on demand with `resolve(rest)`.

    Args:
        prefix: str. The name prefix.
        resolve: callable `str -> BackboneSpec`, given the name without the prefix.
        hint: str. How an error message about an unknown name mentions this kind of name.
    """
    _RESOLVERS[prefix] = (resolve, hint)


def registry_key(name):
    """The lookup key of a name: lower case, `-`, `_` and other punctuation dropped."""
    return re.sub(r"[^a-z0-9]", "", name.lower())


def registered_backbones():
    """The registered `BackboneSpec`s, in registration order."""
    return list(_REGISTRY.values())


def get_backbone(name):
    """Returns the `BackboneSpec` for a registry name or a keras-hub preset.

    Args:
        name: str. A registry name (case, `-` and `_` ignored: `"EfficientNet-Lite0"` works), or
            `"hub:<preset>"` for a keras-hub image classifier preset, by name (needs internet once)
            or by local directory (as written by `save_to_preset`).
    """
    if not isinstance(name, str):
        raise ValueError(f"backbone must be a name (str). Received: backbone={name!r}")
    for prefix, (resolve, _) in _RESOLVERS.items():
        if name.startswith(prefix):
            return resolve(name[len(prefix):])
    spec = _REGISTRY.get(registry_key(name))
    if spec is None:
        hints = "".join(f", or {hint}" for _, hint in _RESOLVERS.values())
        raise ValueError(
            f"Unknown backbone {name!r}. Choose one of {', '.join(list_backbones())}{hints}."
        )
    return spec


def list_backbones():
    """Names of the registered backbones."""
    return sorted(spec.name for spec in _REGISTRY.values())
