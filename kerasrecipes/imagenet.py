"""ImageNet-1k (ILSVRC-2012) class names, offline, and top-k decoding of predictions.

The 1000 names (`assets/imagenet_classes.txt`, one a line, in the standard class-index order:
0 "tench" … 285 "Egyptian cat" … 967 "espresso" … 999 "toilet tissue") are the short readable
names torchvision ships (`torchvision.models._meta._IMAGENET_CATEGORIES`, BSD-3-Clause).
"""

import functools
import importlib.resources

import numpy as np

NUM_CLASSES = 1000


@functools.lru_cache(maxsize=1)
def _names():
    resource = importlib.resources.files("kerasrecipes") / "assets" / "imagenet_classes.txt"
    text = resource.read_text(encoding="utf-8")
    names = tuple(line for line in text.splitlines() if line)
    if len(names) != NUM_CLASSES:  # a broken install, not a user error
        raise RuntimeError(
            f"imagenet_classes.txt holds {len(names)} names, expected {NUM_CLASSES}."
        )
    return names


def class_names():
    """The 1000 ImageNet-1k class names, in class-index order.

    Returns:
        list of 1000 str.

    Example:
    >>> class_names()[285]
    'Egyptian cat'
    """
    return list(_names())


def decode_predictions(probs, top=5):
    """Turns a batch of ImageNet predictions into the `top` most likely classes per image.

    Works on probabilities or logits alike (the ranking is the same); the score returned is
    whatever the input holds.

    Args:
        probs: array-like of shape `(batch, 1000)` (or `(1000,)` for one image). Scores per class.
        top: int. How many classes to return per image, most likely first. Defaults to `5`.

    Returns:
        list (one entry per image) of lists of `(index, name, score)` tuples.

    Example:
    >>> probs = np.random.dirichlet(np.ones(1000), size=2)
    >>> decode_predictions(probs, top=3)[0]  # [(index, name, prob), ...] x 3
    """
    probs = np.asarray(probs)
    if probs.ndim == 1:
        probs = probs[None]
    if probs.ndim != 2 or probs.shape[-1] != NUM_CLASSES:
        raise ValueError(
            f"probs must have shape (batch, {NUM_CLASSES}) or ({NUM_CLASSES},). "
            f"Received: probs.shape={probs.shape}"
        )
    if not isinstance(top, int) or isinstance(top, bool) or not 1 <= top <= NUM_CLASSES:
        raise ValueError(f"top must be an int in [1, {NUM_CLASSES}]. Received: top={top!r}")
    names = _names()
    # Stable sort on the negated scores: ties keep the lower class index first.
    order = np.argsort(-probs, axis=-1, kind="stable")[:, :top]
    return [
        [(int(i), names[i], float(row[i])) for i in indices]
        for row, indices in zip(probs, order, strict=True)
    ]
