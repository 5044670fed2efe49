"""Image folders as datasets (`image_folder_datasets`), and one image file (`load_image`)."""

import os
import warnings

from kerasrecipes.data.arguments import (
    check_augment,
    check_batch_size,
    check_cache,
    check_validation_split,
)
from kerasrecipes.data.decode import (
    KINDS,
    optional_tensorflow,
    pil_decode,
    pil_resize,
    tf_decoders,
    tf_resize,
)
from kerasrecipes.data.image_data import ImageData
from kerasrecipes.data.layout import class_dirs, collect_split, detect_layout, stratified_split
from kerasrecipes.data.pipeline import files_dataset
from kerasrecipes.data.scan import IMAGE_EXTENSIONS, format_bad, is_image_name, scan_files
from kerasrecipes.utils import check_image_size


def load_image(path, image_size=None, crop_to_aspect_ratio=False):
    """Reads one image file as uint8 RGB pixels, decoded exactly like the training pipelines.

    Transparency is composited on white, grayscale and palette images become RGB, 16-bit images
    are rounded to 8 bits, animated images give their first frame and EXIF orientation is
    applied. With TensorFlow installed the same decode and resize ops as `image_folder_datasets`
    run, so a prediction sees the pixels training saw; without it PIL decodes (identical except
    16-bit RGB PNGs, off by at most 1) and PIL's bilinear filter resizes.

    Args:
        path: str or path-like. The image file.
        image_size: int or `(height, width)`, or `None` to keep the file's size. Defaults to `None`.
        crop_to_aspect_ratio: bool. Centre-crop to the aspect ratio of `image_size` before resizing
            instead of stretching. Defaults to `False`.

    Returns:
        numpy uint8 array `[height, width, 3]`.

    Example:

    >>> import os, tempfile
    >>> from PIL import Image
    >>> path = os.path.join(tempfile.mkdtemp(), "cat.png")
    >>> Image.new("RGBA", (40, 30), (255, 0, 0, 0)).save(path)
    >>> pixels = load_image(path, image_size=(16, 16))
    >>> pixels.shape, pixels.dtype, pixels[0, 0].tolist()
    ((16, 16, 3), dtype('uint8'), [255, 255, 255])
    """
    path = os.fspath(path)
    image_size = check_image_size(image_size, allow_none=True)
    if not os.path.isfile(path):
        raise ValueError(f"Image file not found. Received: path={path!r}")
    kind, reason = scan_files([path])[0]
    if reason is not None:
        raise ValueError(f"Cannot read the image {path!r}: {reason}.")
    tf = optional_tensorflow()
    if tf is None:
        image = pil_decode(path)
        if image_size is not None:
            image = pil_resize(image, image_size, crop_to_aspect_ratio)
        return image
    image = tf_decoders()[KINDS.index(kind)](tf.constant(path))
    if image_size is not None:
        image = tf_resize(image, image_size, crop_to_aspect_ratio)
    return image.numpy()


def image_folder_datasets(
    directory,
    image_size=(224, 224),
    batch_size=32,
    validation_split=None,
    seed=None,
    class_names=None,
    on_bad_file="skip",
    cache=True,
    crop_to_aspect_ratio=False,
    augment=None,
    verbose=True,
):
    """Builds train/validation/test datasets from a folder of images, one sub-folder per class.

    Two layouts are detected automatically:

    - `directory/<class>/<images>`: everything is training data, unless `validation_split`
      carves out a stratified, seeded validation subset (the same fraction of every class).
    - `directory/train/<class>/...` with optional `validation/` (or `val/`, `valid/`) and
      `test/` folders. `validation_split` may still carve validation out of `train/` when there
      is no validation folder.

    Every file with an image extension is fully decoded once by a scan before any dataset is built;
    files that cannot be read (empty, truncated, text or an unsupported format behind an image
    extension) are skipped with a warning or raise, as `on_bad_file` says, and are listed in
    `.skipped`. Files without an image extension (`.txt`, `.DS_Store`) are ignored. See
    `kerasrecipes.data.decode` for how each format is decoded.

    Args:
        directory: str or path-like. The root folder.
        image_size: int or `(height, width)`. Every image is resized to it (bilinear, antialiased,
            rounded back to uint8). Defaults to `(224, 224)`.
        batch_size: int. Images per batch. Defaults to `32`.
        validation_split: float in (0, 1) or `None`. Fraction of each class held out for
            validation when the folder has no validation split. Defaults to `None`.
        seed: int or `None`. Seeds the validation split and the training shuffle (which still
            changes every epoch); `None` makes both random. Defaults to `None`.
        class_names: list of str or `None`. Fixes the label order; must name exactly the class
            folders. Defaults to `None` (sorted folder names).
        on_bad_file: `"skip"` or `"raise"`. What to do with unreadable image files.
            Defaults to `"skip"`.
        cache: bool or str. `True` keeps decoded, resized images in memory after the first epoch;
            a path caches them on disk (one file per split: `<path>_train`, `<path>_validation`,
            `<path>_test`); `False` decodes every epoch. Defaults to `True`.
        crop_to_aspect_ratio: bool. Centre-crop each image to the aspect ratio of `image_size`
            before resizing instead of stretching it (like Keras). Defaults to `False`.
        augment: `None`, a preset name of `kr.augmentation` (`"light"`, `"standard"`, …) or a
            Keras layer (e.g. `kr.augmentation("standard", flip=False)`). Augments the training
            split in `tf.data`, on the CPU, fresh every epoch (validation and test are untouched);
            the alternative is the model's `augment` sub-model, on the accelerator. A leading
            random-resized-crop (`"standard"`, `"strong"`) is fused into decoding: each file is
            cropped at full resolution straight to `image_size`, and a JPEG decodes only the crop
            window (also at 1/2–1/8 scale in the DCT domain when the window is that many times
            `image_size`), seeded by `seed`. The other layers run on the batches. With a fused
            crop, `cache` keeps the encoded training files instead of decoded images.
            Defaults to `None`.
        verbose: bool. Show a progress bar while scanning more than 300 files.
            Defaults to `True`.

    Returns:
        `ImageData` whose datasets yield `(uint8 [B, H, W, 3], int32 [B])` batches.

    Example:

    >>> import os, tempfile
    >>> import numpy as np
    >>> from PIL import Image
    >>> root = tempfile.mkdtemp()
    >>> for name in ["cat", "dog"]:
    ...     os.makedirs(os.path.join(root, name))
    ...     for i in range(5):
    ...         pixels = np.random.randint(0, 256, (40, 50, 3), dtype="uint8")
    ...         Image.fromarray(pixels).save(os.path.join(root, name, f"{i}.jpg"))
    >>> data = image_folder_datasets(root, image_size=32, batch_size=4, validation_split=0.2,
    ...                              seed=1)
    >>> data.class_names, data.num_examples
    (['cat', 'dog'], {'train': 8, 'validation': 2})
    >>> images, labels = next(iter(data.train))
    >>> images.shape, images.dtype.name, labels.dtype.name
    (TensorShape([4, 32, 32, 3]), 'uint8', 'int32')
    """
    root = os.fspath(directory)
    image_size = check_image_size(image_size)
    batch_size = check_batch_size(batch_size)
    validation_split = check_validation_split(validation_split)
    cache = check_cache(cache)
    augment = check_augment(augment, image_size, seed)
    if on_bad_file not in ("skip", "raise"):
        raise ValueError(
            f"on_bad_file must be 'skip' or 'raise'. Received: on_bad_file={on_bad_file!r}"
        )
    if not os.path.isdir(root):
        what = "is a file, not a folder" if os.path.exists(root) else "does not exist"
        raise ValueError(
            f"The image folder {what}. Pass a folder laid out as root/<class>/<images>. "
            f"Received: directory={root!r}"
        )

    layout = detect_layout(root)
    train_dir = layout["train"]
    found = class_dirs(train_dir)
    if not found:
        loose = [f for f in os.listdir(train_dir) if is_image_name(f)]
        hint = (
            f" It holds {len(loose)} image files directly: move them into one sub-folder per class."
            if loose
            else ""
        )
        raise ValueError(
            f"No class folders in {train_dir!r}: expected {train_dir}/<class>/<images>.{hint}"
        )
    if class_names is None:
        class_names = found
    else:
        class_names = [str(c) for c in class_names]
        if len(set(class_names)) != len(class_names) or set(class_names) != set(found):
            raise ValueError(
                f"class_names must name each class folder of {train_dir!r} exactly once. "
                f"Folders: {found}. Received: class_names={class_names}"
            )
    if len(class_names) < 2:
        raise ValueError(
            f"Found a single class folder {class_names} in {train_dir!r}; a classifier needs at "
            "least two classes. Add a folder of images per class."
        )
    if validation_split is not None and "validation" in layout:
        raise ValueError(
            f"{root!r} already has a validation folder ({layout['validation']!r}); drop "
            f"validation_split or the folder. Received: validation_split={validation_split}"
        )

    splits = {}
    for split in ("train", "validation", "test"):
        if split in layout:
            splits[split] = collect_split(layout[split], class_names, split)
    all_paths = [p for paths, _ in splits.values() for p in paths]
    if not all_paths:
        raise ValueError(
            f"No image files found under {root!r} (extensions: {', '.join(IMAGE_EXTENSIONS)})."
        )

    results = dict(zip(all_paths, scan_files(all_paths, verbose=verbose)))
    skipped = [(p, results[p][1]) for p in all_paths if results[p][1] is not None]
    if skipped and on_bad_file == "raise":
        raise ValueError(
            f"{len(skipped)} image file(s) under {root!r} cannot be read. Fix or remove them, "
            f"or pass on_bad_file='skip':\n{format_bad(skipped, 20)}"
        )
    if skipped:
        warnings.warn(
            f"Skipped {len(skipped)} unreadable image file(s) under {root!r} (full list in "
            f"`.skipped`):\n{format_bad(skipped, 5)}",
            stacklevel=2,
        )

    kept = {}
    for split, (paths, labels) in splits.items():
        good = [(p, l) for p, l in zip(paths, labels) if results[p][1] is None]
        for label, name in enumerate(class_names):
            class_dir = os.path.join(layout[split], name)
            if os.path.isdir(class_dir) and not any(l == label for _, l in good):
                raise ValueError(
                    f"The class folder {class_dir!r} has no readable images (all were skipped, "
                    "see the warning above). Add valid images or remove the folder."
                )
        kept[split] = good
    if validation_split is not None:
        train = kept["train"]
        train_idx, val_idx = stratified_split([l for _, l in train], validation_split, seed)
        if len(val_idx) == 0:
            raise ValueError(
                f"validation_split={validation_split} leaves no validation images out of "
                f"{len(train)}; use a larger fraction or add images."
            )
        kept["train"] = [train[i] for i in train_idx]
        kept["validation"] = [train[i] for i in val_idx]

    datasets = {}
    for split, items in kept.items():
        datasets[split] = files_dataset(
            [p for p, _ in items],
            [l for _, l in items],
            [results[p][0] for p, _ in items],
            image_size,
            batch_size,
            training=(split == "train"),
            seed=seed,
            cache=(f"{cache}_{split}" if isinstance(cache, str) else cache),
            crop_to_aspect_ratio=crop_to_aspect_ratio,
            augment=augment if split == "train" else None,
        )
    return ImageData(
        train=datasets["train"],
        validation=datasets.get("validation"),
        test=datasets.get("test"),
        class_names=list(class_names),
        image_size=image_size,
        num_examples={split: len(kept[split]) for split in ("train", "validation", "test")
                      if split in kept},
        skipped=skipped,
        files={split: list(items) for split, items in kept.items()},
    )
