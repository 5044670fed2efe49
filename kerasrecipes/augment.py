"""Augmentation presets made of core `keras.layers` (they run only when `training=True`)."""

import keras

PRESETS = ("none", "light", "standard")


def augmentation(preset="light", flip=True, seed=None):
    """Returns a `keras.Sequential` named `"augment"` for a preset.

    Args:
        preset: str. `"none"`; `"light"` (horizontal flip, ±10% translation and zoom);
            `"standard"` (light plus ±5% rotation, contrast and brightness jitter).
            Defaults to `"light"`.
        flip: bool. Horizontal flips; turn off for data where mirroring changes the class
            (digits, text). Defaults to `True`.
        seed: optional int. Seed of the random layers. Defaults to `None`.

    Example:
    >>> augment = augmentation("standard", flip=False)
    """
    if preset not in PRESETS:
        raise ValueError(f"preset must be one of {PRESETS}. Received: preset={preset!r}")
    layers = []
    if preset != "none":
        if flip:
            layers.append(keras.layers.RandomFlip("horizontal", seed=seed))
        layers += [
            keras.layers.RandomTranslation(0.1, 0.1, fill_mode="reflect", seed=seed),
            keras.layers.RandomZoom(0.1, fill_mode="reflect", seed=seed),
        ]
    if preset == "standard":
        layers += [
            keras.layers.RandomRotation(0.05, fill_mode="reflect", seed=seed),
            keras.layers.RandomContrast(0.2, value_range=(0, 255), seed=seed),
            keras.layers.RandomBrightness(0.2, value_range=(0, 255), seed=seed),
        ]
    if not layers:
        layers = [keras.layers.Identity(name="no_augmentation")]
    return keras.Sequential(layers, name="augment")
