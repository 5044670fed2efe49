"""Input pipelines: image folders, TensorFlow Datasets and arrays → batches of uint8 images.

Every entry point returns an `ImageData`: `train`, `validation` and `test` datasets yielding
`(images, labels)` batches where `images` is uint8 `[B, H, W, 3]` (RGB, resized to `image_size`) and
`labels` is int32 `[B]`, plus the class names and per-split counts. Pixels stay in 0–255: scaling is
the model's job (its `preprocess` sub-model), so the same data feeds any backbone.

Decoding rules (shared by the pipelines and `load_image`):

- JPEG (RGB or grayscale): TensorFlow's native decoder with `dct_method="INTEGER_ACCURATE"`, which
  is bit-identical to PIL/libjpeg-turbo (the default "fast" IDCT is off by up to 4 levels).
- PNG, 8-bit without transparency (RGB, grayscale, palette): TensorFlow's native decoder.
- PNG with an alpha channel or a `tRNS` transparency chunk, or 16 bits per channel: TensorFlow
  decodes 16-bit RGBA, which is composited on white and rounded to 8 bits
  (`round(v / 257)` for opaque pixels) with exact integer arithmetic.
- Everything else goes through PIL inside `tf.numpy_function`: GIF (first frame), BMP, WebP, TIFF,
  CMYK JPEG, any image with an EXIF orientation to apply, and other formats PIL reads.
  Transparency is composited on white; grayscale and palette images become RGB.

With `image_folder_datasets(augment=...)` the training split is augmented in `tf.data`. A leading
random-resized-crop is fused into decoding: the crop window is drawn from the file's size (seeded,
torchvision's algorithm), a JPEG decodes only that window with `tf.io.decode_and_crop_jpeg` — at
1/2, 1/4 or 1/8 scale in the DCT domain when the window is that many times the output — other
formats decode whole and are sliced, and the window is resized straight to `image_size`.

Which path a file takes is decided once, while scanning: the scan fully decodes every file with PIL
(in a thread pool), so empty, truncated, mislabelled and unsupported files are reported before
training starts instead of crashing it mid-epoch.

TensorFlow is imported inside the functions that need it: `import kerasrecipes.data` works without
it, and `array_datasets` falls back to a `keras.utils.PyDataset` when it is missing.
"""

import concurrent.futures
import dataclasses
import math
import os
import struct
import warnings

import numpy as np

IMAGE_EXTENSIONS = (
    ".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff",
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
_SHUFFLE_BUFFER = 2048  # Decoded images held for shuffling after a cache; file lists shuffle fully.
_PROGRESS_MIN_FILES = 300
_KINDS = ("jpeg", "png", "png_wide", "pil")  # Decode paths; the index is what the pipeline carries.


@dataclasses.dataclass(repr=False)
class ImageData:
    """Datasets of one image-classification problem, as returned by the loaders of this module.

    Args:
        train: `tf.data.Dataset` (or `keras.utils.PyDataset`) of `(uint8 [B, H, W, 3], int32 [B])`
            batches, shuffled each epoch.
        validation: same, not shuffled, or `None`.
        test: same, not shuffled, or `None`.
        class_names: list of str. Label `i` is `class_names[i]`.
        image_size: tuple `(height, width)` of every image.
        num_examples: dict. Split name (`"train"`, `"validation"`, `"test"`) → number of images,
            for the splits present.
        skipped: list of `(path, reason)` for image files left out because they could not be read.
        files: dict. Split name → list of `(path, label)` in dataset order (train: before
            shuffling). Empty for tfds and arrays.

    Example:

    >>> import numpy as np
    >>> data = array_datasets(np.zeros((8, 32, 32, 3), "uint8"), np.arange(8) % 2, batch_size=4)
    >>> data.num_classes, data.num_examples
    (2, {'train': 8})
    """

    train: object
    validation: object = None
    test: object = None
    class_names: list = dataclasses.field(default_factory=list)
    image_size: tuple = None
    num_examples: dict = dataclasses.field(default_factory=dict)
    skipped: list = dataclasses.field(default_factory=list)
    files: dict = dataclasses.field(default_factory=dict)

    @property
    def num_classes(self):
        return len(self.class_names)

    def __repr__(self):
        return (
            f"ImageData(class_names={self.class_names!r}, image_size={self.image_size}, "
            f"num_examples={self.num_examples}, skipped={len(self.skipped)})"
        )


# --------------------------------------------------------------------------------------------
# Argument checks.


def _check_image_size(image_size, allow_none=False):
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


def _check_batch_size(batch_size):
    is_int = isinstance(batch_size, (int, np.integer)) and not isinstance(batch_size, bool)
    if not is_int or batch_size < 1:
        raise ValueError(f"batch_size must be an int >= 1. Received: batch_size={batch_size!r}")
    return int(batch_size)


def _check_validation_split(validation_split):
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


def _check_cache(cache):
    if not isinstance(cache, (bool, str, os.PathLike)):
        raise ValueError(
            f"cache must be True (memory), False or a file path. Received: cache={cache!r}"
        )
    return os.fspath(cache) if isinstance(cache, os.PathLike) else cache


def _check_augment(augment, image_size, seed):
    """Resolves `augment` (None, preset name or Keras layer) to a Keras layer or `None`."""
    if augment is None:
        return None
    from kerasrecipes.augment import _resolve_augment
    from kerasrecipes.augment import _split_leading_crop

    layer = _resolve_augment(augment, seed=seed)
    crop, _ = _split_leading_crop(layer)
    if crop is not None and (crop.height or image_size[0], crop.width or image_size[1]) != tuple(
        image_size
    ):
        raise ValueError(
            "The random-resized-crop of augment must output image_size (or leave its height and "
            f"width None). Received: crop size ({crop.height}, {crop.width}), "
            f"image_size={image_size}"
        )
    return layer


# --------------------------------------------------------------------------------------------
# Pure numpy helpers (shared by the PIL path, `load_image` and the tests).


def _scale16_to_8(values):
    """Rounds 16-bit values to 8 bits: `round(v * 255 / 65535) = round(v / 257)`, exactly."""
    values = np.asarray(values, dtype=np.int64)
    return ((2 * values + 257) // 514).astype(np.uint8)


def _composite_on_white(rgba, max_value=255):
    """Composites `[..., 4]` integer RGBA (0..max_value) on white; returns rounded uint8 RGB.

    `round(255 * (c * a + m * (m - a)) / m**2)` in integer arithmetic, so 8- and 16-bit inputs and
    the TensorFlow twin of this function give identical results (the exact value is never a tie).
    """
    rgba = np.asarray(rgba, dtype=np.int64)
    m = int(max_value)
    color, alpha = rgba[..., :3], rgba[..., 3:4]
    num = 255 * (color * alpha + m * (m - alpha))
    return ((2 * num + m * m) // (2 * m * m)).astype(np.uint8)


def _pil_to_rgb(img):
    """Converts an opened PIL image to uint8 RGB `[H, W, 3]` following this module's rules."""
    from PIL import ImageOps

    if getattr(img, "n_frames", 1) > 1:
        img.seek(0)  # Animated GIF/WebP/PNG: the first frame.
    img = ImageOps.exif_transpose(img)
    mode = img.mode
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        # 16-bit grayscale (PNG, TIFF). `convert("L")` would clip every value above 255.
        arr = np.clip(np.asarray(img, dtype=np.int64), 0, 65535)
        arr = _scale16_to_8(arr)
        return np.repeat(arr[..., None], 3, axis=-1)
    if mode == "F":
        arr = np.asarray(img, dtype=np.float64)
        arr = arr * 255.0 if arr.size and np.nanmax(arr) <= 1.0 else arr
        arr = np.clip(np.round(np.nan_to_num(arr)), 0, 255).astype(np.uint8)
        return np.repeat(arr[..., None], 3, axis=-1)
    if mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in img.info:
        return _composite_on_white(np.asarray(img.convert("RGBA")))
    if mode != "RGB":
        img = img.convert("RGB")
    return np.asarray(img, dtype=np.uint8).reshape(img.size[1], img.size[0], 3)


def _pil_decode(path):
    """Decodes `path` (a file name or a binary file object) with PIL to uint8 RGB `[H, W, 3]`."""
    from PIL import Image

    with Image.open(path) as img:
        return np.ascontiguousarray(_pil_to_rgb(img))


def _png_header(path):
    """Returns `(bit_depth, color_type)` from a PNG's IHDR chunk, or `(None, None)`."""
    with open(path, "rb") as f:
        head = f.read(26)
    if len(head) < 26 or head[12:16] != b"IHDR":
        return None, None
    return head[24], head[25]


# --------------------------------------------------------------------------------------------
# Scanning: find the image files, check each one and choose its decode path.


def _sniff_reason(path):
    """Explains a file PIL cannot identify: text, HEIC, or an unknown format."""
    with open(path, "rb") as f:
        head = f.read(512)
    if head[4:12] in (b"ftypheic", b"ftypheix", b"ftypmif1", b"ftyphevc", b"ftypavif"):
        return "unsupported format: HEIC/AVIF (convert it to JPEG or PNG)"
    if head.lstrip().startswith(b"<svg") or b"<svg" in head[:256]:
        return "unsupported format: SVG vector image (export it to PNG)"
    try:
        head.decode("utf-8")
        if all(32 <= b < 127 or b in (9, 10, 13) for b in head[:64]):
            return "not an image: the file holds text"
    except UnicodeDecodeError:
        pass
    return "unsupported or unrecognised image format"


def _inspect(path):
    """Fully decodes `path` with PIL; returns `(kind, None)` or `(None, reason)`."""
    from PIL import Image
    from PIL import UnidentifiedImageError

    try:
        if os.path.getsize(path) == 0:
            return None, "empty file (0 bytes)"
        with Image.open(path) as img:
            fmt, mode = img.format, img.mode
            orientation = img.getexif().get(0x0112, 1)
            has_transparency = "transparency" in img.info
            if fmt in ("JPEG", "MPO"):
                # Decoding at 1/8 scale still reads the whole entropy-coded stream, so
                # truncation is caught at a fraction of the cost.
                img.draft(mode, (max(1, img.size[0] // 8), max(1, img.size[1] // 8)))
            img.load()
    except Image.DecompressionBombError as e:
        return None, f"image too large ({e})"
    except UnidentifiedImageError:
        return None, _sniff_reason(path)
    except (OSError, SyntaxError, ValueError, EOFError, struct.error) as e:
        message = str(e)
        if "truncated" in message.lower() or isinstance(e, EOFError):
            return None, f"truncated image ({message or 'unexpected end of file'})"
        return None, f"corrupt image ({type(e).__name__}: {message})"
    except Exception as e:  # Any PIL plugin failure means the file is unusable, not a crash.
        return None, f"corrupt image ({type(e).__name__}: {e})"

    if orientation not in (None, 1):
        return "pil", None  # TensorFlow ignores EXIF orientation.
    if fmt in ("JPEG", "MPO") and mode in ("RGB", "L"):
        return "jpeg", None
    if fmt == "PNG":
        bit_depth, color_type = _png_header(path)
        if bit_depth is None:
            return "pil", None
        if bit_depth == 16 or color_type in (4, 6) or has_transparency:
            return "png_wide", None
        return "png", None
    return "pil", None


def _scan_files(paths, verbose=False, desc="Scanning images"):
    """Inspects `paths` in a thread pool; returns a list of `(kind, reason)` in the same order."""
    if not paths:
        return []
    results = [None] * len(paths)
    progbar = None
    if verbose and len(paths) > _PROGRESS_MIN_FILES:
        import keras

        print(f"{desc}: {len(paths)} files")
        progbar = keras.utils.Progbar(len(paths), unit_name="file")
    workers = min(32, 4 * (os.cpu_count() or 1))
    # PIL's chatter (EXIF, palette, size warnings) is silenced around the whole pool: real
    # problems raise, and `catch_warnings` is not thread-safe, so never enter it per thread.
    with warnings.catch_warnings(), concurrent.futures.ThreadPoolExecutor(workers) as pool:
        warnings.filterwarnings("ignore", module=r"PIL(\..*)?$")
        futures = {pool.submit(_inspect, p): i for i, p in enumerate(paths)}
        done = 0
        for future in concurrent.futures.as_completed(futures):
            results[futures[future]] = future.result()
            done += 1
            if progbar is not None and (done % 50 == 0 or done == len(paths)):
                progbar.update(done)
    return results


def _is_image_name(name):
    # Hidden files with an image extension (e.g. macOS `._photo.jpg` resource forks) are
    # scanned like any other, so a bad one is reported rather than silently dropped.
    return name.lower().endswith(IMAGE_EXTENSIONS)


def _list_images(folder):
    """Sorted paths of files with an image extension under `folder` (recursive, no dot folders)."""
    paths = []
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        paths.extend(os.path.join(dirpath, f) for f in sorted(filenames) if _is_image_name(f))
    return paths


def _class_dirs(folder):
    return sorted(
        d for d in os.listdir(folder)
        if not d.startswith(".") and os.path.isdir(os.path.join(folder, d))
    )


def _detect_layout(root):
    """Returns `{split: folder}`: `{"train": root}` for `root/<class>/*`, else the split folders."""
    subdirs = _class_dirs(root)
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


def _collect_split(folder, class_names, split):
    """Returns `(paths, labels)` of the images in `folder/<class>/` for the known `class_names`."""
    present = _class_dirs(folder)
    unknown = sorted(set(present) - set(class_names))
    if unknown:
        raise ValueError(
            f"The {split} folder {folder!r} has class folders the train split lacks: {unknown}. "
            f"Train classes: {class_names}. Rename or remove them so every split uses the same "
            "class names."
        )
    paths, labels = [], []
    for label, name in enumerate(class_names):
        class_dir = os.path.join(folder, name)
        if not os.path.isdir(class_dir):
            continue
        found = _list_images(class_dir)
        if not found:
            raise ValueError(
                f"The class folder {class_dir!r} has no image files (extensions: "
                f"{', '.join(IMAGE_EXTENSIONS)}). Add images or remove the folder."
            )
        paths.extend(found)
        labels.extend([label] * len(found))
    return paths, labels


def _stratified_split(labels, fraction, seed):
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


def _format_bad(bad, limit):
    lines = [f"  {path}: {reason}" for path, reason in bad[:limit]]
    if len(bad) > limit:
        lines.append(f"  ... and {len(bad) - limit} more")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# TensorFlow pipeline pieces.


def _optional_tensorflow():
    """Returns the `tensorflow` module, or `None` when it is not installed."""
    try:
        import tensorflow as tf
    except ImportError:
        return None
    return tf


def _tf_composite_on_white(rgba16):
    """TensorFlow twin of `_composite_on_white` for uint16 RGBA; returns uint8 RGB."""
    import tensorflow as tf

    x = tf.cast(rgba16, tf.int64)
    color, alpha = x[..., :3], x[..., 3:4]
    m = tf.constant(65535, tf.int64)
    num = 255 * (color * alpha + m * (m - alpha))
    return tf.cast((2 * num + m * m) // (2 * m * m), tf.uint8)


def _tf_byte_decoders():
    """Returns the decode functions `encoded bytes -> uint8 [H, W, 3]`, indexed like `_KINDS`."""
    import io

    import tensorflow as tf

    def jpeg(data):
        return tf.io.decode_jpeg(data, channels=3, dct_method="INTEGER_ACCURATE")

    def png(data):
        return tf.io.decode_png(data, channels=3)

    def png_wide(data):
        return _tf_composite_on_white(tf.io.decode_png(data, channels=4, dtype=tf.uint16))

    def pil(data):
        # As uint8 values: numpy_function would turn a graph string into `np.bytes_`, which drops
        # trailing NUL bytes (and so breaks a WebP file ending in one).
        return tf.numpy_function(
            lambda raw: _pil_decode(io.BytesIO(raw.tobytes())), [tf.io.decode_raw(data, tf.uint8)],
            tf.uint8, stateful=False,
        )

    def with_shape(fn):
        def decode(data):
            image = fn(data)
            image.set_shape([None, None, 3])
            return image

        return decode

    return [with_shape(fn) for fn in (jpeg, png, png_wide, pil)]


def _tf_decoders():
    """Returns the decode functions `path -> uint8 [H, W, 3]`, indexed like `_KINDS`."""
    import tensorflow as tf

    return [lambda path, fn=fn: fn(tf.io.read_file(path)) for fn in _tf_byte_decoders()]


def decode_image_bytes(data):
    """Decodes one encoded image (scalar `tf.string`) to uint8 RGB `[H, W, 3]` with TF ops only.

    The graph-only twin of the file pipeline, for serving: JPEG as in training (integer-accurate
    DCT), PNG of any depth with transparency composited on white, GIF (first frame) and BMP.
    Formats that need PIL in training (CMYK JPEG, WebP, TIFF) are not decodable here.
    """
    import tensorflow as tf

    def jpeg():
        return tf.io.decode_jpeg(data, channels=3, dct_method="INTEGER_ACCURATE")

    def png():
        return _tf_composite_on_white(tf.io.decode_png(data, channels=4, dtype=tf.uint16))

    def other():
        return tf.io.decode_image(data, channels=3, expand_animations=False)

    magic = tf.strings.substr(data, 0, 4)
    image = tf.case(
        [
            (tf.equal(tf.strings.substr(magic, 0, 3), b"\xff\xd8\xff"), jpeg),
            (tf.equal(magic, b"\x89PNG"), png),
        ],
        default=other,
    )
    image.set_shape([None, None, 3])
    return image


def _tf_resize(image, image_size, crop_to_aspect_ratio=False):
    """Resizes uint8 `[H, W, 3]` to `image_size` (bilinear, antialiased); returns uint8."""
    import tensorflow as tf

    height, width = image_size
    if crop_to_aspect_ratio:
        # Like keras.preprocessing: the largest centred window with the target aspect ratio.
        shape = tf.shape(image)
        h, w = tf.cast(shape[0], tf.float64), tf.cast(shape[1], tf.float64)
        crop_h = tf.minimum(h, tf.round(w * height / width))
        crop_w = tf.minimum(w, tf.round(h * width / height))
        crop_h = tf.maximum(tf.cast(crop_h, tf.int32), 1)
        crop_w = tf.maximum(tf.cast(crop_w, tf.int32), 1)
        top = (shape[0] - crop_h) // 2
        left = (shape[1] - crop_w) // 2
        image = image[top : top + crop_h, left : left + crop_w]

    def resize():
        resized = tf.image.resize(
            tf.cast(image, tf.float32), (height, width), method="bilinear", antialias=True
        )
        return tf.cast(tf.clip_by_value(tf.round(resized), 0, 255), tf.uint8)

    shape = tf.shape(image)
    same = tf.logical_and(tf.equal(shape[0], height), tf.equal(shape[1], width))
    out = tf.cond(same, lambda: tf.identity(image), resize)
    out.set_shape([height, width, 3])
    return out


def _decode_jpeg_window(data, window, image_size):
    """Decodes only `window` (`[y0, x0, h, w]`) of a JPEG; uint8 `[h', w', 3]`.

    When the window is at least 2, 4 or 8 times `image_size` in both dimensions, libjpeg scales it
    down by that factor in the DCT domain (a 4×4, 2×2 or 1×1 inverse DCT of each 8×8 block's
    lowest frequencies: a low-pass filter, and less work), so the resize that follows shrinks by
    less than 2× in one dimension (less than 2 × 4/3 in the other for crops with aspect in
    3/4–4/3) and the decoded size never drops below `image_size`. The window's corners then snap
    to multiples of the factor: less than one output pixel.
    """
    import tensorflow as tf

    y0, x0, h, w = tf.unstack(window)
    fit = tf.minimum(h // image_size[0], w // image_size[1])
    level = tf.add_n([tf.cast(fit >= k, tf.int32) for k in (2, 4, 8)])

    def at(ratio):
        def decode():
            # With `ratio`, the crop window is given in the scaled image's pixels.
            scaled = tf.stack([y0 // ratio, x0 // ratio, h // ratio, w // ratio])
            return tf.io.decode_and_crop_jpeg(
                data, scaled, channels=3, ratio=ratio, dct_method="INTEGER_ACCURATE"
            )

        return decode

    image = tf.switch_case(level, [at(1), at(2), at(4), at(8)])
    image.set_shape([None, None, 3])
    return image


def _random_crop_decoder(crop, image_size, used):
    """`(data, kind, seed) -> uint8 [H, W, 3]`: decode and random-resized-crop in one step.

    JPEG files decode only their crop window (`_decode_jpeg_window`); other formats decode whole
    and are sliced to a window drawn the same way. Then a bilinear resize to `image_size`
    (antialiased only when it shrinks more than 3×) and, if `crop.horizontal_flip`, a mirror of
    half the images. `crop` is the `RandomResizedCrop` layer whose `scale`/`ratio` are used.
    """
    import tensorflow as tf

    from kerasrecipes.augment import _tf_crop_window

    decoders = _tf_byte_decoders()
    jpeg = _KINDS.index("jpeg")
    height, width = image_size

    def window_of(seed, shape):
        return _tf_crop_window(seed, shape[0], shape[1], crop.scale, crop.ratio)

    def branch(kind, data, seed):
        if kind == jpeg:
            def run():
                window, flip_draw = window_of(seed, tf.image.extract_jpeg_shape(data))
                return _decode_jpeg_window(data, window, image_size), flip_draw
        else:
            def run():
                image = decoders[kind](data)
                window, flip_draw = window_of(seed, tf.shape(image))
                y0, x0, h, w = tf.unstack(window)
                return image[y0 : y0 + h, x0 : x0 + w], flip_draw
        return run

    def decode(data, kind, seed):
        if len(used) == 1:
            image, flip_draw = branch(used[0], data, seed)()
        else:
            image, flip_draw = tf.switch_case(
                kind, [branch(k, data, seed) for k in range(len(_KINDS))]
            )
        image.set_shape([None, None, 3])
        shape = tf.shape(image)
        shrink = tf.logical_or(shape[0] > 3 * height, shape[1] > 3 * width)
        # Plain bilinear, as in TF's ImageNet pipeline: an antialiased resize costs as much as
        # decoding the crop. The DCT scaling leaves at most 2 × 4/3 to shrink for a JPEG crop;
        # beyond 3× (other formats, huge images) the resize is antialiased.
        resized = tf.cond(
            shrink,
            lambda: tf.image.resize(image, image_size, "bilinear", antialias=True),
            lambda: tf.image.resize(image, image_size, "bilinear"),
        )
        out = tf.cast(tf.clip_by_value(tf.round(resized), 0, 255), tf.uint8)
        if crop.horizontal_flip:
            out = tf.cond(flip_draw < 0.5, lambda: tf.reverse(out, [1]), lambda: out)
        out.set_shape([height, width, 3])
        return out

    return decode


def _files_dataset(paths, labels, kinds, image_size, batch_size, training, seed, cache,
                   crop_to_aspect_ratio, augment=None):
    """Builds the `tf.data` pipeline for one split of scanned files.

    `augment` (a Keras layer, training split only) is applied to the batches; a leading
    `RandomResizedCrop` is instead fused into decoding, and then the cache holds the encoded
    files (the crops change every epoch).
    """
    import tensorflow as tf

    from kerasrecipes.augment import _map_batches
    from kerasrecipes.augment import _split_leading_crop

    autotune = tf.data.AUTOTUNE
    decoders = _tf_decoders()
    kind_ids = np.asarray([_KINDS.index(k) for k in kinds], np.int32)
    used = sorted(set(kind_ids.tolist()))
    n = len(paths)
    crop, rest = (None, []) if augment is None else _split_leading_crop(augment)

    def load(path, label, kind):
        if len(used) == 1:
            image = decoders[used[0]](path)
        else:
            image = tf.switch_case(kind, [lambda fn=fn: fn(path) for fn in decoders])
            image.set_shape([None, None, 3])
        return _tf_resize(image, image_size, crop_to_aspect_ratio), label

    order = np.arange(n)
    if training and cache:
        # Cached elements are decoded images (or encoded files): mix the file order once here,
        # then reshuffle each epoch within a bounded buffer (below) so the shuffle does not hold
        # a second copy.
        order = np.random.default_rng(seed).permutation(n)
    ds = tf.data.Dataset.from_tensor_slices(
        (
            tf.constant([paths[i] for i in order], tf.string),
            tf.constant(np.asarray(labels, np.int32)[order]),
            tf.constant(kind_ids[order]),
        )
    )
    if training and not cache:
        ds = ds.shuffle(n, seed=seed, reshuffle_each_iteration=True)  # Paths: cheap to hold.
    if crop is None:
        ds = ds.map(load, num_parallel_calls=autotune, deterministic=True)
        # Safety net: the scan caught every bad file, but one can still break later (edited or
        # deleted while training). Drop it with a logged warning instead of stopping mid-epoch,
        # and top the epoch up from the next pass so it keeps exactly `n` images: a known length
        # lets Keras and learning-rate schedules count steps without reading the data first.
        ds = ds.ignore_errors(log_warning=True).repeat().take(n)
        if cache:
            ds = ds.cache("" if cache is True else cache)
            if training:
                ds = ds.shuffle(min(n, _SHUFFLE_BUFFER), seed=seed, reshuffle_each_iteration=True)
    else:
        decode = _random_crop_decoder(crop, image_size, used)
        ds = ds.map(lambda path, label, kind: (tf.io.read_file(path), label, kind),
                    num_parallel_calls=autotune, deterministic=True)
        if cache:
            ds = ds.ignore_errors(log_warning=True).cache("" if cache is True else cache)
            ds = ds.shuffle(min(n, _SHUFFLE_BUFFER), seed=seed, reshuffle_each_iteration=True)
        # One random number per image, a new stream every epoch, reproducible with `seed`: each
        # crop uses stateless ops, so parallel decoding keeps the results deterministic.
        draws = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True)
        ds = tf.data.Dataset.zip((ds, draws)).map(
            lambda element, r: (
                decode(element[0], element[2], tf.stack([r, tf.constant(0, tf.int64)])),
                element[1],
            ),
            num_parallel_calls=autotune,
            deterministic=True,
        )
        ds = ds.ignore_errors(log_warning=True).repeat().take(n)  # As above.
    ds = ds.batch(batch_size)
    if rest:
        # One batch at a time, so the layers' random draws are reproducible with `seed`; the
        # decoding above stays parallel and is most of the work.
        ds = _map_batches(ds, rest, parallel=False)
    return ds.prefetch(autotune)


# --------------------------------------------------------------------------------------------
# Public API.


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
    image_size = _check_image_size(image_size, allow_none=True)
    if not os.path.isfile(path):
        raise ValueError(f"Image file not found. Received: path={path!r}")
    kind, reason = _scan_files([path])[0]
    if reason is not None:
        raise ValueError(f"Cannot read the image {path!r}: {reason}.")
    tf = _optional_tensorflow()
    if tf is None:
        image = _pil_decode(path)
        if image_size is not None:
            image = _pil_resize(image, image_size, crop_to_aspect_ratio)
        return image
    image = _tf_decoders()[_KINDS.index(kind)](tf.constant(path))
    if image_size is not None:
        image = _tf_resize(image, image_size, crop_to_aspect_ratio)
    return image.numpy()


def _pil_resize(image, image_size, crop_to_aspect_ratio=False):
    from PIL import Image

    height, width = image_size
    h, w = image.shape[:2]
    if crop_to_aspect_ratio:
        crop_h = max(1, min(h, round(w * height / width)))
        crop_w = max(1, min(w, round(h * width / height)))
        top, left = (h - crop_h) // 2, (w - crop_w) // 2
        image = image[top : top + crop_h, left : left + crop_w]
    if image.shape[:2] == (height, width):
        return image
    resized = Image.fromarray(image).resize((width, height), Image.Resampling.BILINEAR)
    return np.asarray(resized, dtype=np.uint8)


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
    `.skipped`. Files without an image extension (`.txt`, `.DS_Store`) are ignored. See the module
    docstring for how each format is decoded.

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
    image_size = _check_image_size(image_size)
    batch_size = _check_batch_size(batch_size)
    validation_split = _check_validation_split(validation_split)
    cache = _check_cache(cache)
    augment = _check_augment(augment, image_size, seed)
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

    layout = _detect_layout(root)
    train_dir = layout["train"]
    found = _class_dirs(train_dir)
    if not found:
        loose = [f for f in os.listdir(train_dir) if _is_image_name(f)]
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
            splits[split] = _collect_split(layout[split], class_names, split)
    all_paths = [p for paths, _ in splits.values() for p in paths]
    if not all_paths:
        raise ValueError(
            f"No image files found under {root!r} (extensions: {', '.join(IMAGE_EXTENSIONS)})."
        )

    results = dict(zip(all_paths, _scan_files(all_paths, verbose=verbose)))
    skipped = [(p, results[p][1]) for p in all_paths if results[p][1] is not None]
    if skipped and on_bad_file == "raise":
        raise ValueError(
            f"{len(skipped)} image file(s) under {root!r} cannot be read. Fix or remove them, "
            f"or pass on_bad_file='skip':\n{_format_bad(skipped, 20)}"
        )
    if skipped:
        warnings.warn(
            f"Skipped {len(skipped)} unreadable image file(s) under {root!r} (full list in "
            f"`.skipped`):\n{_format_bad(skipped, 5)}",
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
        train_idx, val_idx = _stratified_split([l for _, l in train], validation_split, seed)
        if len(val_idx) == 0:
            raise ValueError(
                f"validation_split={validation_split} leaves no validation images out of "
                f"{len(train)}; use a larger fraction or add images."
            )
        kept["train"] = [train[i] for i in train_idx]
        kept["validation"] = [train[i] for i in val_idx]

    datasets = {}
    for split, items in kept.items():
        datasets[split] = _files_dataset(
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


def tfds_datasets(
    name,
    image_size=(224, 224),
    batch_size=32,
    splits=None,
    data_dir=None,
    download=True,
    seed=None,
    cache=True,
    crop_to_aspect_ratio=False,
):
    """Builds train/validation/test datasets from a TensorFlow Datasets image-classification set.

    Images are decoded by tfds, turned into RGB (grayscale is repeated, alpha composited on
    white) and resized to uint8 `image_size`; class names come from the label's `ClassLabel`.

    Args:
        name: str. tfds name, e.g. `"cifar10"`, `"tf_flowers"` or `"mnist:3.0.1"`.
        image_size: int or `(height, width)`. Defaults to `(224, 224)`.
        batch_size: int. Defaults to `32`.
        splits: sequence of 1–3 tfds split strings used as train, validation and test, in that
            order; slicing works (`("train[:90%]", "train[90%:]", "test")`). Defaults to `None`:
            `"train"` plus `"validation"` when the set has one, else `"test"`.
        data_dir: str or `None`. Where tfds keeps its data. Defaults to `None` (tfds' default).
        download: bool. Download and prepare the data set if missing. Defaults to `True`.
        seed: int or `None`. Seeds the file and example shuffling of the train split.
            Defaults to `None`.
        cache: bool or str. As in `image_folder_datasets`. Defaults to `True`.
        crop_to_aspect_ratio: bool. As in `image_folder_datasets`. Defaults to `False`.

    Returns:
        `ImageData`; `num_examples` counts the split (slice) sizes.

    Example:

    >>> import tensorflow_datasets as tfds
    >>> with tfds.testing.mock_data(num_examples=8):
    ...     data = tfds_datasets("mnist", image_size=32, batch_size=4, splits=("train", "test"))
    >>> data.class_names[:3], data.num_examples
    (['0', '1', '2'], {'train': 8, 'validation': 8})
    """
    import tensorflow as tf
    import tensorflow_datasets as tfds

    image_size = _check_image_size(image_size)
    batch_size = _check_batch_size(batch_size)
    cache = _check_cache(cache)
    builder = tfds.builder(name, data_dir=data_dir)
    if download:
        builder.download_and_prepare()
    info = builder.info
    if splits is None:
        available = set(info.splits.keys())
        if not available:
            # Split sizes are unknown before preparation metadata exists (e.g. under
            # `tfds.testing.mock_data`); most image sets have train and test.
            available = {"train", "test"}
        if "train" not in available:
            raise ValueError(
                f"tfds data set {name!r} has no 'train' split; pass splits=. "
                f"Available: {sorted(available)}. Received: splits=None"
            )
        splits = ("train", "validation" if "validation" in available else "test")
        splits = tuple(s for s in splits if s in available)
    if isinstance(splits, str) or not 1 <= len(splits) <= 3:
        raise ValueError(
            "splits must be a sequence of 1 to 3 split names (train, validation, test). "
            f"Received: splits={splits!r}"
        )

    image_key, label_key = _tfds_keys(info, name)
    class_names = list(info.features[label_key].names)
    datasets, counts = {}, {}
    for role, split in zip(("train", "validation", "test"), splits):
        training = role == "train"
        try:
            ds = builder.as_dataset(
                split=split,
                shuffle_files=training,
                read_config=tfds.ReadConfig(shuffle_seed=seed),
            )
        except (AssertionError, tf.errors.NotFoundError, FileNotFoundError) as e:
            raise ValueError(
                f"Cannot read split {split!r} of tfds data set {name!r} from "
                f"data_dir={data_dir!r} ({e}). Pass download=True or check the split name."
            ) from e
        n = int(ds.cardinality())
        if n < 0:
            n = info.splits[split].num_examples
        counts[role] = n

        def prepare(example):
            image = example[image_key]
            channels = image.shape[-1]
            if channels == 1:
                image = tf.image.grayscale_to_rgb(image)
            elif channels == 4:
                image = _tf_composite_on_white(tf.cast(image, tf.uint16) * 257)
            image.set_shape([None, None, 3])
            image = _tf_resize(image, image_size, crop_to_aspect_ratio)
            return image, tf.cast(example[label_key], tf.int32)

        ds = ds.map(prepare, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        if cache:
            ds = ds.cache("" if cache is True else f"{cache}_{role}")
        if training:
            ds = ds.shuffle(max(1, min(n, _SHUFFLE_BUFFER)), seed=seed,
                            reshuffle_each_iteration=True)
        datasets[role] = ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)
    return ImageData(
        train=datasets["train"],
        validation=datasets.get("validation"),
        test=datasets.get("test"),
        class_names=class_names,
        image_size=image_size,
        num_examples=counts,
    )


def _tfds_keys(info, name):
    """Finds the image and label feature names of a tfds data set."""
    import tensorflow_datasets as tfds

    features = info.features
    if info.supervised_keys and len(info.supervised_keys) == 2:
        image_key, label_key = info.supervised_keys
        if isinstance(image_key, str) and isinstance(label_key, str):
            if isinstance(features[label_key], tfds.features.ClassLabel):
                return image_key, label_key
    image_keys = [k for k, f in features.items() if isinstance(f, tfds.features.Image)]
    label_keys = [k for k, f in features.items() if isinstance(f, tfds.features.ClassLabel)]
    if not image_keys or not label_keys:
        raise ValueError(
            f"tfds data set {name!r} has no Image feature with a ClassLabel label; "
            f"features: {list(features.keys())}. Received: name={name!r}"
        )
    return image_keys[0], label_keys[0]


def _check_images(x, arg):
    """Validates and converts an image array to uint8 `[N, H, W, 3]`."""
    x = np.asarray(x)
    if x.ndim == 3:
        x = x[..., None]
    if x.ndim != 4 or x.shape[-1] not in (1, 3, 4):
        raise ValueError(
            f"{arg} must be an array of images shaped (N, H, W, 3), (N, H, W, 1) or (N, H, W). "
            f"Received: {arg}.shape={x.shape}"
        )
    if x.dtype == np.uint8:
        pass
    elif np.issubdtype(x.dtype, np.floating):
        lo, hi = (float(np.nanmin(x)), float(np.nanmax(x))) if x.size else (0.0, 0.0)
        if np.isnan(x).any() or lo < 0 or hi > 255:
            raise ValueError(
                f"{arg} must hold pixel values in [0, 255]. Received: {arg} with values in "
                f"[{lo}, {hi}]"
            )
        if 0 < hi <= 1.0:
            raise ValueError(
                f"{arg} holds floats in [0, 1]; pass pixel values in 0–255 (e.g. "
                f"`{arg} * 255`): the model scales pixels itself. Received: {arg} with values in "
                f"[{lo}, {hi}]"
            )
        x = np.clip(np.round(x), 0, 255).astype(np.uint8)
    elif np.issubdtype(x.dtype, np.integer):
        lo, hi = (int(x.min()), int(x.max())) if x.size else (0, 0)
        if lo < 0 or hi > 255:
            raise ValueError(
                f"{arg} must hold pixel values in [0, 255]. Received: {arg} ({x.dtype}) with "
                f"values in [{lo}, {hi}]"
            )
        x = x.astype(np.uint8)
    else:
        raise ValueError(
            f"{arg} must be uint8 (or numbers in 0–255). Received: {arg}.dtype={x.dtype}"
        )
    if x.shape[-1] == 1:
        x = np.repeat(x, 3, axis=-1)
    elif x.shape[-1] == 4:
        x = _composite_on_white(x)
    return np.ascontiguousarray(x)


def _check_labels(y, n, arg, x_arg):
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise ValueError(
            f"{arg} must be integer class indices shaped (N,); for one-hot labels pass "
            f"`{arg}.argmax(-1)`. Received: {arg}.shape={y.shape}"
        )
    if len(y) != n:
        raise ValueError(
            f"{arg} and {x_arg} must have the same length. Received: len({arg})={len(y)}, "
            f"len({x_arg})={n}"
        )
    if not (np.issubdtype(y.dtype, np.integer) or (
        np.issubdtype(y.dtype, np.floating) and np.all(np.mod(y, 1) == 0)
    )):
        raise ValueError(f"{arg} must hold integer class indices. Received: {arg}.dtype={y.dtype}")
    y = y.astype(np.int64)
    if y.size and y.min() < 0:
        raise ValueError(f"{arg} must be >= 0. Received: a label {int(y.min())} in {arg}")
    return y


def _resize_array(x, image_size, tf, chunk=256):
    """Resizes uint8 `[N, H, W, 3]` like `_tf_resize` (or PIL without TensorFlow)."""
    if x.shape[1:3] == tuple(image_size):
        return x
    if tf is None:
        return np.stack([_pil_resize(im, image_size) for im in x])
    out = []
    for start in range(0, len(x), chunk):
        resized = tf.image.resize(
            tf.cast(x[start : start + chunk], tf.float32), image_size, "bilinear", antialias=True
        )
        out.append(tf.cast(tf.clip_by_value(tf.round(resized), 0, 255), tf.uint8).numpy())
    return np.concatenate(out)


def _array_pydataset_class():
    import keras

    class ArrayBatches(keras.utils.PyDataset):
        """Batches of in-memory arrays, reshuffled each epoch when `shuffle`."""

        def __init__(self, x, y, batch_size, shuffle, seed):
            super().__init__()
            self.x, self.y = x, y.astype(np.int32)
            self.batch_size = batch_size
            self.shuffle = shuffle
            self._rng = np.random.default_rng(seed)
            self._order = self._rng.permutation(len(x)) if shuffle else np.arange(len(x))

        def __len__(self):
            return math.ceil(len(self.x) / self.batch_size)

        def __getitem__(self, index):
            idx = self._order[index * self.batch_size : (index + 1) * self.batch_size]
            return self.x[idx], self.y[idx]

        def on_epoch_end(self):
            if self.shuffle:
                self._order = self._rng.permutation(len(self.x))

    return ArrayBatches


def _array_dataset(x, y, batch_size, training, seed, tf):
    if tf is None:
        return _array_pydataset_class()(x, y, batch_size, shuffle=training, seed=seed)
    images = tf.constant(x)
    labels = tf.constant(y.astype(np.int32))
    ds = tf.data.Dataset.range(len(x))
    if training:
        ds = ds.shuffle(len(x), seed=seed, reshuffle_each_iteration=True)
    # Batch indices, then gather: the shuffle buffer holds integers, not copies of the images.
    ds = ds.batch(batch_size).map(
        lambda idx: (tf.gather(images, idx), tf.gather(labels, idx)),
        num_parallel_calls=tf.data.AUTOTUNE,
    )
    return ds.prefetch(tf.data.AUTOTUNE)


def array_datasets(
    x_train,
    y_train,
    x_val=None,
    y_val=None,
    validation_split=None,
    class_names=None,
    batch_size=32,
    seed=None,
    image_size=None,
):
    """Builds train/validation datasets from in-memory arrays.

    Images must be pixel values in 0–255: uint8, or integers/floats in that range (rounded to
    uint8). Floats whose maximum is at most 1 are rejected, because `[0, 1]` data would train on
    nearly black images: multiply by 255 first. Grayscale `(N, H, W)`/`(N, H, W, 1)` becomes RGB,
    RGBA is composited on white. With TensorFlow installed the result holds `tf.data` datasets;
    without it (e.g. `KERAS_BACKEND=jax`) it holds `keras.utils.PyDataset`s yielding the same
    batches of numpy arrays.

    Args:
        x_train: array `(N, H, W, 3)`, `(N, H, W, 1)` or `(N, H, W)`. Training images.
        y_train: int array `(N,)` (or `(N, 1)`). Class indices.
        x_val: array or `None`. Validation images. Defaults to `None`.
        y_val: int array or `None`. Validation labels, required with `x_val`. Defaults to `None`.
        validation_split: float in (0, 1) or `None`. Holds out this fraction of each class of the
            training arrays (seeded) when `x_val` is not given. Defaults to `None`.
        class_names: list of str or `None`. Names of the labels; `None` uses `"0"`, `"1"`, …
            up to the largest label. Defaults to `None`.
        batch_size: int. Defaults to `32`.
        seed: int or `None`. Seeds the validation split and the training shuffle.
            Defaults to `None`.
        image_size: int, `(height, width)` or `None`. Resize the arrays once, up front (bilinear,
            antialiased). Defaults to `None` (keep their size).

    Returns:
        `ImageData` with `train` and, when requested, `validation`.

    Example:

    >>> import numpy as np
    >>> x = np.random.randint(0, 256, (10, 32, 32, 3), dtype="uint8")
    >>> data = array_datasets(x, np.arange(10) % 2, validation_split=0.2, batch_size=4, seed=0)
    >>> data.class_names, data.num_examples
    (['0', '1'], {'train': 8, 'validation': 2})
    """
    batch_size = _check_batch_size(batch_size)
    validation_split = _check_validation_split(validation_split)
    image_size = _check_image_size(image_size, allow_none=True)
    x_train = _check_images(x_train, "x_train")
    y_train = _check_labels(y_train, len(x_train), "y_train", "x_train")
    if len(x_train) == 0:
        raise ValueError(f"x_train is empty. Received: x_train.shape={x_train.shape}")
    if (x_val is None) != (y_val is None):
        raise ValueError(
            "Pass x_val and y_val together. Received: "
            f"x_val={'None' if x_val is None else 'an array'}, "
            f"y_val={'None' if y_val is None else 'an array'}"
        )
    if x_val is not None and validation_split is not None:
        raise ValueError(
            "Pass either x_val/y_val or validation_split, not both. "
            f"Received: validation_split={validation_split}"
        )
    if x_val is not None:
        x_val = _check_images(x_val, "x_val")
        y_val = _check_labels(y_val, len(x_val), "y_val", "x_val")
        if image_size is None and x_val.shape[1:] != x_train.shape[1:]:
            raise ValueError(
                "x_val images must have the size of x_train images (or pass image_size=). "
                f"Received: x_train.shape={x_train.shape}, x_val.shape={x_val.shape}"
            )
    labels_max = int(y_train.max())
    if y_val is not None and len(y_val):
        labels_max = max(labels_max, int(y_val.max()))
    if class_names is None:
        class_names = [str(i) for i in range(labels_max + 1)]
    else:
        class_names = [str(c) for c in class_names]
        if labels_max >= len(class_names):
            raise ValueError(
                f"Labels must be < len(class_names)={len(class_names)}. Received: a label "
                f"{labels_max} with class_names={class_names}"
            )
    if validation_split is not None:
        train_idx, val_idx = _stratified_split(y_train, validation_split, seed)
        if len(val_idx) == 0:
            raise ValueError(
                f"validation_split={validation_split} leaves no validation images out of "
                f"{len(x_train)}; use a larger fraction."
            )
        x_train, y_train, x_val, y_val = (
            x_train[train_idx], y_train[train_idx], x_train[val_idx], y_train[val_idx]
        )

    tf = _optional_tensorflow()
    if image_size is not None:
        x_train = _resize_array(x_train, image_size, tf)
        x_val = None if x_val is None else _resize_array(x_val, image_size, tf)
    return ImageData(
        train=_array_dataset(x_train, y_train, batch_size, True, seed, tf),
        validation=(
            None if x_val is None else _array_dataset(x_val, y_val, batch_size, False, seed, tf)
        ),
        class_names=class_names,
        image_size=tuple(x_train.shape[1:3]),
        num_examples={"train": len(x_train),
                      **({} if x_val is None else {"validation": len(x_val)})},
    )


def albumentations_map(compose, image_size=None, seed=None):
    """A `tf.data` batch map that applies an albumentations `A.Compose` to every image.

    The whole batch goes through **one** `tf.numpy_function` call (one Python round-trip per
    batch, not per image), and the outputs get static shapes again, so Keras sees
    `[B, H, W, 3]` uint8. Elements are `(images, labels)` or `(images, labels, targets)` where
    `targets` is a dict with `"mask"` (`[B, H, W]` or `[B, H, W, K]` uint8) and/or `"bboxes"`
    (`[B, N, 4]` float32 in the compose's `bbox_params` format, rows of -1 are padding); masks and
    boxes are passed to the compose only when given (boxes keep their padded shape; boxes the
    compose drops become -1 rows). Use `A.Compose(..., bbox_params=A.BboxParams(format=...,
    label_fields=["bbox_ids"]))` for boxes.

    Args:
        compose: `albumentations.Compose` (or any callable `compose(image=...) -> dict`).
        image_size: optional int or (height, width). The images' size after the compose (when it
            crops or resizes). Defaults to `None` (the input size).
        seed: optional int. Seeds the compose (`set_random_seed(seed + batch_index)`), so a
            sequentially mapped dataset (`dataset.map(fn)`, no `num_parallel_calls`) is
            reproducible. Defaults to `None`.

    Returns:
        A function for `dataset.map`.

    Example:
    >>> import albumentations as A
    >>> fn = albumentations_map(A.Compose([A.HorizontalFlip(), A.RandomBrightnessContrast()]))
    >>> train = data.train.map(fn, num_parallel_calls=tf.data.AUTOTUNE)
    """
    import threading

    import tensorflow as tf

    if not callable(compose):
        raise ValueError(f"compose must be an albumentations Compose. Received: compose={compose!r}")
    if seed is not None and not isinstance(seed, int):
        raise ValueError(f"seed must be an int or None. Received: seed={seed!r}")
    size = None if image_size is None else _check_image_size(image_size)
    state = {"batch": 0}
    lock = threading.Lock()

    def run(images, masks=None, boxes=None):
        out_images, out_masks, out_boxes = [], [], []
        with lock:
            if seed is not None and hasattr(compose, "set_random_seed"):
                compose.set_random_seed(seed + state["batch"])
            state["batch"] += 1
            for i in range(len(images)):
                kwargs = {"image": images[i]}
                if masks is not None:
                    kwargs["mask"] = masks[i]
                if boxes is not None:
                    valid = ~np.all(boxes[i] == -1, axis=-1)
                    kwargs["bboxes"] = boxes[i][valid]
                    kwargs["bbox_ids"] = np.nonzero(valid)[0]
                result = compose(**kwargs)
                out_images.append(np.asarray(result["image"], dtype=np.uint8))
                if masks is not None:
                    out_masks.append(np.asarray(result["mask"], dtype=masks.dtype))
                if boxes is not None:
                    padded = np.full(boxes[i].shape, -1.0, np.float32)
                    kept = np.asarray(result["bboxes"], np.float32).reshape(-1, 4)
                    padded[: len(kept)] = kept
                    out_boxes.append(padded)
        results = [np.stack(out_images)]
        if masks is not None:
            results.append(np.stack(out_masks))
        if boxes is not None:
            results.append(np.stack(out_boxes))
        return tuple(results)

    def apply(images, labels, targets=None):
        targets = dict(targets or {})
        unknown = set(targets) - {"mask", "bboxes"}
        if unknown:
            raise ValueError(f"targets may hold 'mask' and 'bboxes'. Received keys: {sorted(unknown)}")
        keys = [k for k in ("mask", "bboxes") if k in targets]
        inputs = [images] + [targets[k] for k in keys]
        dtypes = [tf.uint8] + [targets[k].dtype for k in keys]

        def numpy_run(*arrays):
            named = dict(zip(keys, arrays[1:]))
            return run(arrays[0], named.get("mask"), named.get("bboxes"))

        outputs = tf.numpy_function(numpy_run, inputs, dtypes, stateful=True)
        height, width = size or (images.shape[1], images.shape[2])
        outputs[0].set_shape([images.shape[0], height, width, 3])
        out_targets = {}
        for key, tensor, original in zip(keys, outputs[1:], inputs[1:]):
            if key == "mask":
                tensor.set_shape([original.shape[0], height, width, *original.shape[3:]])
            else:
                tensor.set_shape(original.shape)
            out_targets[key] = tensor
        if targets:
            return outputs[0], labels, out_targets
        return outputs[0], labels

    return apply
