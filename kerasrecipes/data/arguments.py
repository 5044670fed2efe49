"""Checks of the arguments the data loaders share (each error names the argument and value)."""

import os

import numpy as np


def check_batch_size(batch_size):
    """Returns `batch_size` as an int >= 1, or raises naming it."""
    is_int = isinstance(batch_size, (int, np.integer)) and not isinstance(batch_size, bool)
    if not is_int or batch_size < 1:
        raise ValueError(f"batch_size must be an int >= 1. Received: batch_size={batch_size!r}")
    return int(batch_size)


def check_validation_split(validation_split):
    """Returns `validation_split` as a float in (0, 1), or `None`; raises naming it otherwise."""
    if validation_split is None:
        return None
    if isinstance(validation_split, bool) or not isinstance(validation_split, (int, float)) or not (
        0 < validation_split < 1
    ):
        raise ValueError(
            "validation_split must be a float in (0, 1), e.g. 0.1, or None. "
            f"Received: validation_split={validation_split!r}"
        )
    return float(validation_split)


def check_cache(cache):
    """Returns `cache` (`True`, `False` or a path as str), or raises naming it."""
    if not isinstance(cache, (bool, str, os.PathLike)):
        raise ValueError(
            f"cache must be True (memory), False or a file path. Received: cache={cache!r}"
        )
    return os.fspath(cache) if isinstance(cache, os.PathLike) else cache


def check_augment(augment, image_size, seed):
    """Resolves `augment` (None, preset name or Keras layer) to a Keras layer or `None`."""
    if augment is None:
        return None
    from kerasrecipes.augment import resolve_augment
    from kerasrecipes.augment import split_leading_crop

    layer = resolve_augment(augment, seed=seed)
    crop, _ = split_leading_crop(layer)
    if crop is not None and (crop.height or image_size[0], crop.width or image_size[1]) != tuple(
        image_size
    ):
        raise ValueError(
            "The random-resized-crop of augment must output image_size (or leave its height and "
            f"width None). Received: crop size ({crop.height}, {crop.width}), "
            f"image_size={image_size}"
        )
    return layer
