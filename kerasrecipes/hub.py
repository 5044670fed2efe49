"""keras-hub image-classifier presets as registry entries (`"hub:<preset or directory>"`).

Importing this module registers the `"hub:"` resolver into `kerasrecipes.registry`.
"""

import os

from kerasrecipes.registry import BackboneSpec, register_resolver


def _keras_hub():
    try:
        import keras_hub
    except ImportError:
        raise ImportError(
            "keras-hub backbones need the keras-hub package: pip install keras-hub"
        ) from None
    return keras_hub


def hub_backbone(preset):
    """A `BackboneSpec` for a keras-hub preset name (downloads once) or a local preset directory.

    The backbone comes from `keras_hub.models.Backbone.from_preset` and the preprocessing is the
    preset's own `ImageConverter` (its scale/offset; images already arrive at the model's size).
    Layer groups are four even, contiguous slices of the backbone's layers.

    Args:
        preset: str. e.g. `"resnet_50_imagenet"`, or a directory written by `save_to_preset`.
    """
    keras_hub = _keras_hub()
    if not preset:
        raise ValueError("Give a keras-hub preset after 'hub:', e.g. 'hub:resnet_50_imagenet'.")
    if os.path.sep in preset and not os.path.isdir(preset):
        raise ValueError(f"keras-hub preset directory {preset!r} does not exist.")
    converter = keras_hub.layers.ImageConverter.from_preset(preset)
    image_size = converter.image_size[0] if converter.image_size else 224

    def constructor(input_shape, weights):
        if weights not in (None, "imagenet"):
            raise ValueError(
                f"keras-hub backbones take weights='imagenet' (the preset's) or None. "
                f"Received: weights={weights!r}"
            )
        return keras_hub.models.Backbone.from_preset(preset, load_weights=weights is not None)

    def preprocessor():
        layer = keras_hub.layers.ImageConverter.from_preset(preset)
        # Images arrive already resized to the model's input size: only rescale.
        layer.image_size = None
        return layer

    return BackboneSpec(
        name=f"hub:{preset}",
        constructor=constructor,
        image_size=image_size,
        preprocessing=preprocessor,
        layer_groups=(),
        source="keras-hub preset",
    )


register_resolver("hub:", hub_backbone, hint="'hub:<keras-hub preset or local preset directory>'")
