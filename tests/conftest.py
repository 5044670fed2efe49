"""Shared fixtures: tiny in-memory images and tiny image folders written to `tmp_path`.

- `tiny_images`: `(images, labels)`: uint8 `(8, 32, 32, 3)` and int `(8,)` labels `0, 1, 0, 1…`.
- `make_image_folder`: a factory writing `root/<class>/<i>.jpg|png` (or with splits) and returning
  the root; every class has its own colour, so a label can be checked against its pixels.
- `image_folder`: `make_image_folder()` with its defaults: 3 classes (`cat`, `dog`, `fox`),
  4 images each, half JPEG and half PNG, 24×32 and 32×24 pixels.
"""

import os

import numpy as np
import pytest
from PIL import Image

# One colour per class: tests can tell a label from the pixels (JPEG keeps them within a few
# levels).
CLASS_COLORS = ((220, 40, 40), (40, 200, 40), (40, 40, 220), (220, 200, 40), (200, 40, 200))


def class_color(label):
    """The base RGB colour of the images of class `label` written by `make_image_folder`."""
    return CLASS_COLORS[label % len(CLASS_COLORS)]


def write_class_images(folder, label, count, formats=("jpg", "png"), seed=0, start=0):
    """Writes `count` small noisy images of `class_color(label)` into `folder`; returns paths."""
    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(seed * 1000 + label)
    paths = []
    for i in range(start, start + count):
        size = (24, 32) if i % 2 == 0 else (32, 24)  # (height, width): exercise resizing.
        noise = rng.integers(-12, 13, size + (3,))
        pixels = np.clip(np.array(class_color(label)) + noise, 0, 255).astype(np.uint8)
        ext = formats[i % len(formats)]
        path = os.path.join(folder, f"{i:03d}.{ext}")
        options = {"quality": 95} if ext in ("jpg", "jpeg") else {}
        Image.fromarray(pixels).save(path, **options)
        paths.append(path)
    return paths


@pytest.fixture
def tiny_images():
    """`(images, labels)`: uint8 `(8, 32, 32, 3)` random pixels and int64 labels `[0, 1] * 4`."""
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (8, 32, 32, 3), dtype=np.uint8)
    labels = np.arange(8) % 2
    return images, labels


@pytest.fixture
def make_image_folder(tmp_path):
    """Factory: `make(name="photos", classes=("cat", "dog", "fox"), per_class=4, splits=None)`.

    With `splits=None` it writes `root/<class>/*`; with e.g. `splits={"train": 4, "val": 2}` it
    writes `root/<split>/<class>/*` with that many images per class. Returns the root as `str`.
    """

    def make(name="photos", classes=("cat", "dog", "fox"), per_class=4, splits=None,
             formats=("jpg", "png"), seed=0):
        root = tmp_path / name
        if splits is None:
            for label, class_name in enumerate(classes):
                write_class_images(root / class_name, label, per_class, formats, seed)
        else:
            for s, (split, count) in enumerate(splits.items()):
                for label, class_name in enumerate(classes):
                    write_class_images(root / split / class_name, label, count, formats, seed + s)
        return str(root)

    return make


@pytest.fixture
def image_folder(make_image_folder):
    """`root/{cat,dog,fox}/` with 4 small JPEG/PNG images each; returns the root as `str`."""
    return make_image_folder()
