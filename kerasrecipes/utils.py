"""Small shared helpers."""

import os

import numpy as np


def cache_dir():
    """The kerasrecipes cache folder: `$KERASRECIPES_CACHE` or `~/.cache/kerasrecipes`.

    Converted weights and the extracted demo data live here.

    Example:
    >>> os.path.basename(cache_dir())  # 'kerasrecipes' unless $KERASRECIPES_CACHE is set
    """
    path = os.environ.get("KERASRECIPES_CACHE") or os.path.join(
        os.path.expanduser("~"), ".cache", "kerasrecipes"
    )
    return os.path.abspath(path)


def image_size_pair(size):
    """`(height, width)` from an int or a pair of ints.

    Example:
    >>> image_size_pair(224), image_size_pair((240, 320))
    ((224, 224), (240, 320))
    """
    if isinstance(size, int):
        return size, size
    if isinstance(size, (tuple, list)) and len(size) == 2 and all(isinstance(s, int) for s in size):
        return tuple(size)
    raise ValueError(f"image_size must be an int or (height, width). Received: image_size={size!r}")


def check_image_size(image_size, allow_none=False):
    """`(height, width)` of positive ints from an int or a pair (numpy ints too), or `None`.

    The data loaders' check: stricter than `image_size_pair` (sizes must be positive; `bool` is
    not a size), and `None` passes through when `allow_none`.
    """
    if image_size is None and allow_none:
        return None
    size = image_size
    if isinstance(size, (int, np.integer)) and not isinstance(size, bool):
        size = (size, size)
    if (
        isinstance(size, (tuple, list))
        and len(size) == 2
        and all(isinstance(s, (int, np.integer)) and not isinstance(s, bool) for s in size)
        and all(s > 0 for s in size)
    ):
        return (int(size[0]), int(size[1]))
    raise ValueError(
        "image_size must be a positive int or a (height, width) pair of positive ints. "
        f"Received: image_size={image_size!r}"
    )
