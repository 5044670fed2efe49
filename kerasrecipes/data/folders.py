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
from kerasrecipes.data.layout import (
    class_dirs,
    collect_split,
    detect_layout,
    loose_images,
    stratified_split,
)
from kerasrecipes.data.pipeline import files_dataset
from kerasrecipes.data.scan import (
    DEFAULT_MAX_IMAGE_PIXELS,
    IMAGE_EXTENSIONS,
    DataReport,
    balance_warnings,
    check_max_image_pixels,
    class_counts,
    dedupe_plan,
    display_path,
    duplicate_warnings,
    find_duplicates,
    format_bad,
    scan_files,
)
from kerasrecipes.utils import check_image_size


def load_image(path, image_size=None, crop_to_aspect_ratio=False,
               max_image_pixels=DEFAULT_MAX_IMAGE_PIXELS):
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
        max_image_pixels: int or `None`. A larger image (width × height, read from its header) is
            refused before decoding. Defaults to PIL's limit (89,478,485).

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
    max_image_pixels = check_max_image_pixels(max_image_pixels)
    if not os.path.isfile(path):
        raise ValueError(f"Image file not found. Received: path={path!r}")
    kind, reason, _ = scan_files([path], max_image_pixels=max_image_pixels)[0]
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
    dedupe=False,
    max_image_pixels=DEFAULT_MAX_IMAGE_PIXELS,
    verbose=True,
):
    """Builds train/validation/test datasets from a folder of images, one sub-folder per class.

    Two layouts are detected automatically:

    - `directory/<class>/<images>`: everything is training data, unless `validation_split`
      carves out a stratified, seeded validation subset (the same fraction of every class).
    - `directory/train/<class>/...` with optional `validation/` (or `val/`, `valid/`) and
      `test/` folders. `validation_split` may still carve validation out of `train/` when there
      is no validation folder.

    Every file with an image extension is read and fully decoded once by a scan before any dataset
    is built; files that cannot be used (empty, truncated, text or an unsupported format behind an
    image extension, permission denied, a broken symbolic link, more than `max_image_pixels`
    pixels) are skipped with a warning or raise, as `on_bad_file` says, and are listed in
    `.skipped`. Files without an image extension (`.txt`, `.DS_Store`) are ignored. See
    `kerasrecipes.data.decode` for how each format is decoded.

    What the folder walk does (details in `kerasrecipes.data.scan`): sub-folders of a class
    folder belong to the class; hidden folders (`.ipynb_checkpoints`) and `__MACOSX`/`@eaDir`
    are ignored; symbolic links are followed and loops skipped with a warning; image files lying
    next to the class folders (in no class) are left out with a warning; a folder that cannot be
    read is an error naming it. Any file name works (spaces, quotes, newlines, non-ASCII,
    undecodable bytes); messages quote unusual names.

    The scan hashes the bytes it reads, so the returned `.report` (a `DataReport`) lists exact
    duplicates inside a split and across splits (leakage) without reading any file twice, and
    the images per class and split; a warning is emitted for each problem (duplicates, a class
    under 5% of the largest, a validation/test split missing a class, ignored files).

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
        dedupe: bool. Drop exact duplicates (same bytes) before splitting: a copy outside the
            most held-out split of its group is dropped (the train copy when an image is also in
            validation or test, the validation copy when also in test), so evaluation data stays
            as it is and training loses the leaked copy; inside one split the first copy in path
            order is kept, or every copy when they carry different labels. Dropped files are
            listed in `.report.dropped`. Defaults to `False` (duplicates are only reported).
        max_image_pixels: int or `None`. Images with more pixels (width × height, read from the
            header) are refused before decoding, so a decompression bomb never reaches memory;
            `None` for no limit. Defaults to PIL's limit (89,478,485, about 9,459 × 9,459).
        verbose: bool. Show a progress bar while scanning more than 300 files.
            Defaults to `True`.

    Returns:
        `ImageData` whose datasets yield `(uint8 [B, H, W, 3], int32 [B])` batches, with the
        `DataReport` of the scan as `.report`.

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
    max_image_pixels = check_max_image_pixels(max_image_pixels)
    if not isinstance(dedupe, bool):
        raise ValueError(f"dedupe must be True or False. Received: dedupe={dedupe!r}")
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
        loose = loose_images(train_dir)
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

    notes = []  # Every warning about the data, emitted at the end and kept in the report.
    ignored = sorted({p for folder in {root, *layout.values()} for p in loose_images(folder)})
    if ignored:
        shown = ", ".join(display_path(p) for p in ignored[:5])
        notes.append(
            f"{len(ignored)} image file(s) lie outside any class folder and are not used: "
            f"{shown}{' …' if len(ignored) > 5 else ''}. Move each into the folder of its class "
            "(root/<class>/ or root/<split>/<class>/)."
        )
    splits = {}
    for split in ("train", "validation", "test"):
        if split in layout:
            splits[split] = collect_split(layout[split], class_names, split, notes)
    all_paths = [p for paths, _ in splits.values() for p in paths]
    if not all_paths:
        raise ValueError(
            f"No image files found under {root!r} (extensions: {', '.join(IMAGE_EXTENSIONS)})."
        )

    results = dict(zip(all_paths, scan_files(all_paths, verbose=verbose,
                                             max_image_pixels=max_image_pixels)))
    skipped = [(p, results[p].reason) for p in all_paths if results[p].reason is not None]
    if skipped and on_bad_file == "raise":
        raise ValueError(
            f"{len(skipped)} image file(s) under {root!r} cannot be read. Fix or remove them, "
            f"or pass on_bad_file='skip':\n{format_bad(skipped, 20)}"
        )
    if skipped:
        message = (f"Skipped {len(skipped)} unreadable image file(s) under {root!r} (full list "
                   f"in `.skipped`):\n{format_bad(skipped, 5)}")
        warnings.warn(message, stacklevel=2)
        notes.insert(0, message)

    kept = {}
    for split, (paths, labels) in splits.items():
        good = [(p, l) for p, l in zip(paths, labels) if results[p].reason is None]
        for label, name in enumerate(class_names):
            class_dir = os.path.join(layout[split], name)
            if os.path.isdir(class_dir) and not any(l == label for _, l in good):
                raise ValueError(
                    f"The class folder {class_dir!r} has no readable images (all were skipped, "
                    "see the warning above). Add valid images or remove the folder."
                )
        kept[split] = good

    digests = {p: check.digest for p, check in results.items() if check.reason is None}

    def items():
        return [(split, p, l) for split, pairs in kept.items() for p, l in pairs]

    dropped = []
    if dedupe:
        # Before carving a validation split, so that no copy lands on both sides of it.
        duplicates = find_duplicates(items(), digests)
        dropped = dedupe_plan(duplicates)
        gone = {p for p, _ in dropped}
        kept = {split: [(p, l) for p, l in pairs if p not in gone] for split, pairs in kept.items()}
        emptied = [name for label, name in enumerate(class_names)
                   if not any(l == label for _, l in kept["train"])]
        if emptied:
            raise ValueError(
                f"dedupe=True leaves no training images of class(es) {emptied}: every one is a "
                "copy of a validation/test image or carries two labels (see the report). Add "
                "images or fix the labels."
            )
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

    if not dedupe:
        duplicates = find_duplicates(items(), digests)  # After the split: leakage across it too.
        notes.extend(duplicate_warnings(duplicates))
    counts = class_counts(items(), class_names)
    notes.extend(balance_warnings(counts, class_names))
    for message in notes[1 if skipped else 0:]:
        warnings.warn(message, stacklevel=2)
    report = DataReport(class_names=list(class_names), counts=counts, duplicates=duplicates,
                        dropped=dropped, skipped=skipped, ignored=ignored, warnings=notes)

    datasets = {}
    for split, pairs in kept.items():
        datasets[split] = files_dataset(
            # As bytes: a file name need not be valid UTF-8 (os.walk gives it surrogates).
            [os.fsencode(p) for p, _ in pairs],
            [l for _, l in pairs],
            [results[p].kind for p, _ in pairs],
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
        files={split: list(pairs) for split, pairs in kept.items()},
        report=report,
    )
