"""Folder layouts (`root/<class>/*` or `root/train|validation|test/<class>/*`) and splitting."""

import os

import numpy as np

from kerasrecipes.data.scan import (
    IMAGE_EXTENSIONS,
    display_path,
    is_ignored_folder,
    is_image_name,
    list_images,
)

SPLIT_ALIASES = {
    "train": "train",
    "training": "train",
    "validation": "validation",
    "val": "validation",
    "valid": "validation",
    "test": "test",
    "testing": "test",
}


def _listdir(folder):
    try:
        return os.listdir(folder)
    except PermissionError as error:
        raise ValueError(
            f"Cannot read the folder {display_path(folder)!r}: permission denied. Fix its "
            "permissions (e.g. chmod a+rx) or pass another folder."
        ) from error


def class_dirs(folder):
    """Sorted names of the sub-folders of `folder` (hidden and tool folders left out)."""
    return sorted(
        d for d in _listdir(folder)
        if not is_ignored_folder(d) and os.path.isdir(os.path.join(folder, d))
    )


def loose_images(folder):
    """Sorted paths of the image files lying directly in `folder` (not in a class folder)."""
    return sorted(
        os.path.join(folder, f) for f in _listdir(folder)
        if is_image_name(f) and not os.path.isdir(os.path.join(folder, f))
    )


def detect_layout(root):
    """Returns `{split: folder}`: `{"train": root}` for `root/<class>/*`, else the split folders."""
    subdirs = class_dirs(root)
    split_dirs = {d: SPLIT_ALIASES[d.lower()] for d in subdirs if d.lower() in SPLIT_ALIASES}
    if "train" not in split_dirs.values():
        return {"train": root}
    others = [d for d in subdirs if d not in split_dirs]
    if others:
        raise ValueError(
            f"The folder {root!r} mixes split folders {sorted(split_dirs)} with other folders "
            f"{others}. Use either root/<class>/<images> or root/train|validation|test/<class>/"
            "<images>."
        )
    layout = {}
    for folder, split in sorted(split_dirs.items()):
        if split in layout:
            raise ValueError(
                f"The folder {root!r} has two folders for the {split!r} split: "
                f"{os.path.basename(layout[split])!r} and {folder!r}. Keep one."
            )
        layout[split] = os.path.join(root, folder)
    return layout


def collect_split(folder, class_names, split, notes=None):
    """Returns `(paths, labels)` of the images in `folder/<class>/` for the known `class_names`.

    Messages about skipped folder links go to the list `notes` (see `list_images`).
    """
    present = class_dirs(folder)
    unknown = sorted(set(present) - set(class_names))
    if unknown:
        raise ValueError(
            f"The {split} folder {folder!r} has class folders the train split lacks: {unknown}. "
            f"Train classes: {class_names}. Rename or remove them (or add them to train) so "
            "every split uses the same class names."
        )
    paths, labels = [], []
    for label, name in enumerate(class_names):
        class_dir = os.path.join(folder, name)
        if not os.path.isdir(class_dir):
            continue
        found = list_images(class_dir, notes)
        if not found:
            raise ValueError(
                f"The class folder {class_dir!r} has no image files (extensions: "
                f"{', '.join(IMAGE_EXTENSIONS)}). Add images or remove the folder."
            )
        paths.extend(found)
        labels.extend([label] * len(found))
    return paths, labels


def stratified_split(labels, fraction, seed):
    """Returns `(train_idx, val_idx)`: `round(n * fraction)` of each class goes to validation."""
    rng = np.random.default_rng(seed)
    labels = np.asarray(labels)
    train_idx, val_idx = [], []
    for label in np.unique(labels):
        idx = np.flatnonzero(labels == label)
        idx = idx[rng.permutation(len(idx))]
        n_val = int(round(len(idx) * fraction))
        n_val = min(n_val, len(idx) - 1)  # Keep at least one training image per class.
        val_idx.extend(idx[:n_val])
        train_idx.extend(idx[n_val:])
    return np.sort(np.asarray(train_idx, int)), np.sort(np.asarray(val_idx, int))
