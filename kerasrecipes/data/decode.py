"""How image bytes become RGB uint8 pixels: the one source of truth for decoding.

Used by the pre-training scan and `load_image`, by the `tf.data` pipelines (the TensorFlow byte
decoders), by the HTTP server (`decode_bytes`: the same, from bytes in Python) and, through
`kerasrecipes.data.graph_decode`, by the exported `serve_bytes` signature (TensorFlow ops only).

- JPEG (RGB or grayscale): TensorFlow's native decoder with `dct_method="INTEGER_ACCURATE"`, which
  is bit-identical to PIL/libjpeg-turbo (the default "fast" IDCT is off by up to 4 levels).
- PNG, 8-bit without transparency (RGB, grayscale, palette): TensorFlow's native decoder.
- PNG with an alpha channel or a `tRNS` transparency chunk, or 16 bits per channel: TensorFlow
  decodes 16-bit RGBA, which is composited on white and rounded to 8 bits
  (`round(v / 257)` for opaque pixels) with exact integer arithmetic.
- Everything else goes through PIL inside `tf.numpy_function`: GIF (first frame), BMP, WebP, TIFF,
  CMYK JPEG, any image with an EXIF orientation to apply, JPEG and PNG files TensorFlow's decoder
  rejects (`pipeline_decodes`), and other formats PIL reads. Transparency is composited on
  white; grayscale and palette images become RGB.

Which of these paths (`KINDS`) a file takes is decided by the scan (`kerasrecipes.data.scan`,
with `pick_kind` and `pipeline_decodes`), which checks each file with the decoder it will take.

In the graph, without PIL (the exported `serve_bytes`): `graph_headers` reads each item's header
and `graph_decode` decodes it to the same pixels as here, or refuses it with a reason.
TensorFlow is imported inside the functions that need it.
"""

import functools
import io

import numpy as np

KINDS = ("jpeg", "png", "png_wide", "pil")  # Decode paths; the index is what the pipeline carries.


def _scale16_to_8(values):
    """Rounds 16-bit values to 8 bits: `round(v * 255 / 65535) = round(v / 257)`, exactly."""
    values = np.asarray(values, dtype=np.int64)
    return ((2 * values + 257) // 514).astype(np.uint8)


def composite_on_white(rgba, max_value=255):
    """Composites `[..., 4]` integer RGBA (0..max_value) on white; returns rounded uint8 RGB.

    `round(255 * (c * a + m * (m - a)) / m**2)` in integer arithmetic, so 8- and 16-bit inputs and
    the TensorFlow twin of this function give identical results (the exact value is never a tie).
    """
    rgba = np.asarray(rgba, dtype=np.int64)
    m = int(max_value)
    color, alpha = rgba[..., :3], rgba[..., 3:4]
    num = 255 * (color * alpha + m * (m - alpha))
    return ((2 * num + m * m) // (2 * m * m)).astype(np.uint8)


def pil_to_rgb(img):
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
        return composite_on_white(np.asarray(img.convert("RGBA")))
    if mode != "RGB":
        img = img.convert("RGB")
    return np.asarray(img, dtype=np.uint8).reshape(img.size[1], img.size[0], 3)


def pil_decode(path):
    """Decodes `path` (a file name or a binary file object) with PIL to uint8 RGB `[H, W, 3]`."""
    from PIL import Image

    with Image.open(path) as img:
        return np.ascontiguousarray(pil_to_rgb(img))


class ImageDecodeError(ValueError):
    """Encoded bytes that are not a usable image; the message says why (empty, too large…)."""


def decode_bytes(data, max_image_pixels=None, limit_name="max_image_pixels", image_size=None,
                 crop_to_aspect_ratio=False):
    """Decodes one encoded image (`bytes`) to uint8 RGB `[H, W, 3]` as training does.

    The bytes-level twin of `kr.load_image`, in Python: the decode path the scan would pick
    (`pick_kind`), TensorFlow's decoder for JPEG and PNG when TensorFlow is installed (PIL for a
    file it rejects), PIL for the other formats; so every format PIL reads, the first frame of an
    animation, EXIF orientation applied, transparency composited on white. An image with more
    than `max_image_pixels` pixels is refused from its header, before decoding.

    Args:
        data: bytes. The encoded file.
        max_image_pixels: int or `None` (no limit of ours; PIL's own bomb guard still applies).
            Defaults to `None`.
        limit_name: str. How the refusal names the limit (e.g. a command-line flag). Defaults
            to `"max_image_pixels"`.
        image_size: `(height, width)` or `None`. Resizes like training (`tf_resize`); with
            TensorFlow's decoders, decoding and resizing are one TensorFlow call. Defaults to
            `None` (the decoded size).
        crop_to_aspect_ratio: bool. With `image_size`, crops the centre to its aspect ratio
            first, as training does. Defaults to `False`.

    Returns:
        numpy uint8 array `[height, width, 3]`.

    Raises:
        ImageDecodeError: empty, not an image, too many pixels, truncated or corrupt; the
            message says which.

    Example:

    >>> import io
    >>> from PIL import Image
    >>> buffer = io.BytesIO()
    >>> Image.new("RGB", (4, 3), (255, 0, 0)).save(buffer, "PNG")
    >>> decode_bytes(buffer.getvalue()).shape
    (3, 4, 3)
    """
    from PIL import Image, UnidentifiedImageError

    if not data:
        raise ImageDecodeError("empty image (0 bytes)")
    try:
        with Image.open(io.BytesIO(data)) as img:  # Parses the header only.
            width, height = img.size
            if max_image_pixels is not None and width * height > max_image_pixels:
                raise ImageDecodeError(
                    f"image too large: {width}×{height} = {width * height:,} pixels, over the "
                    f"limit of {max_image_pixels:,} ({limit_name}); send it resized")
            kind = pick_kind(img.format, img.mode, img.getexif().get(0x0112, 1),
                             "transparency" in img.info, data[:26])
            size = None if image_size is None else tuple(int(v) for v in image_size)
            image = _tf_decode(data, kind, size=size, crop=bool(crop_to_aspect_ratio))
            if image is None or image is False:
                image = pil_to_rgb(img)
                if size is not None:
                    image = resize_uint8(image, size, crop_to_aspect_ratio)
            return np.ascontiguousarray(image)
    except ImageDecodeError:
        raise
    except UnidentifiedImageError:
        raise ImageDecodeError("not an image in a format kerasrecipes reads (JPEG, PNG, GIF, BMP, "
                               "WebP, TIFF)") from None
    except Image.DecompressionBombError as error:  # PIL's own limit
        raise ImageDecodeError(f"image too large ({error})") from None
    except Exception as error:  # any decoder failure means this image is unusable
        message = str(error) or type(error).__name__
        if "truncated" in message.lower() or isinstance(error, EOFError):
            raise ImageDecodeError(f"truncated image ({message})") from None
        raise ImageDecodeError(f"corrupt image ({type(error).__name__}: {message})") from None


def png_header(head):
    """Returns `(bit_depth, color_type)` from a PNG's IHDR chunk, or `(None, None)`.

    `head` is the file's bytes (at least its first 26), so the scan reads each file only once.
    """
    if len(head) < 26 or head[12:16] != b"IHDR":
        return None, None
    return head[24], head[25]


def pick_kind(fmt, mode, orientation, has_transparency, head):
    """The decode path (one of `KINDS`) of a file PIL opened, from what its header says.

    Args:
        fmt: str. PIL's format name (`img.format`).
        mode: str. PIL's mode (`img.mode`).
        orientation: int or None. The EXIF orientation (1 or None: upright).
        has_transparency: bool. Whether PIL found a transparency chunk or key.
        head: bytes. At least the file's first 26 bytes.
    """
    if orientation not in (None, 1):
        return "pil"  # TensorFlow's file decoders ignore EXIF orientation.
    if fmt in ("JPEG", "MPO") and mode in ("RGB", "L"):
        return "jpeg"
    if fmt == "PNG":
        bit_depth, color_type = png_header(head)
        if bit_depth is None:
            return "pil"
        if bit_depth == 16 or color_type in (4, 6) or has_transparency:
            return "png_wide"
        return "png"
    return "pil"


def _tf_decode(data, kind, scan=False, size=None, crop=False):
    """TensorFlow's pipeline decoder for `kind` on `data`: uint8 numpy `[H, W, 3]`, `False` when
    it rejects the bytes, `None` for `"pil"` or without TensorFlow. `scan`: JPEGs at 1/8 scale.
    `size` (a tuple): resized like training, in the same TensorFlow call."""
    tf = optional_tensorflow()
    if kind == "pil" or tf is None:
        return None
    try:
        if scan and kind == "jpeg":
            return tf.io.decode_jpeg(data, channels=3, ratio=8,
                                     dct_method="INTEGER_ACCURATE").numpy()
        if size is None:
            return tf_byte_decoders()[KINDS.index(kind)](data).numpy()
        return _tf_function(kind, size, crop)(tf.constant(data)).numpy()
    except tf.errors.OpError:
        return False


@functools.lru_cache(maxsize=64)
def _tf_function(kind, size, crop):
    """A traced TensorFlow function: `kind`'s decoder then `tf_resize` to `size`, on bytes (or
    `tf_resize` alone on a uint8 image for `kind=None`). One call instead of two: 1.14 instead
    of 1.36 ms for a small photo (BENCHMARKS.md, "Serving")."""
    import tensorflow as tf

    if kind is None:
        fn, spec = (lambda image: tf_resize(image, size, crop)), tf.TensorSpec([None, None, 3],
                                                                                tf.uint8)
    else:
        decode = tf_byte_decoders()[KINDS.index(kind)]
        fn, spec = (lambda data: tf_resize(decode(data), size, crop)), tf.TensorSpec([], tf.string)
    return tf.function(fn, input_signature=[spec]).get_concrete_function()


def resize_uint8(image, image_size, crop_to_aspect_ratio=False):
    """Resizes numpy uint8 `[H, W, 3]` like training (`tf_resize`; `pil_resize` without
    TensorFlow); returns numpy."""
    size = tuple(int(v) for v in image_size)
    if image.shape[:2] == size and not crop_to_aspect_ratio:
        return image
    tf = optional_tensorflow()
    if tf is None:
        return pil_resize(image, size, crop_to_aspect_ratio)
    return _tf_function(None, size, bool(crop_to_aspect_ratio))(tf.constant(image)).numpy()


def pipeline_decodes(data, kind):
    """Whether the pipeline's TensorFlow decoder for `kind` reads `data` (a file's bytes).

    TensorFlow's JPEG and PNG decoders reject some files PIL reads (a bad PNG chunk CRC, JPEG
    data libjpeg-turbo calls invalid): the scan sends those down the PIL path. JPEGs are decoded
    at 1/8 scale, which reads the whole entropy-coded stream (the same files fail as at full
    scale) with 1/64 of the memory.

    Returns:
        True or False for the TensorFlow kinds; `None` for `"pil"` or when TensorFlow is not
        installed (PIL is then the decoder, and the check).
    """
    decoded = _tf_decode(data, kind, scan=True)
    return None if decoded is None else decoded is not False


def optional_tensorflow():
    """Returns the `tensorflow` module, or `None` when it is not installed."""
    try:
        import tensorflow as tf
    except ImportError:
        return None
    return tf


def tf_byte_decoders():
    """Returns the decode functions `encoded bytes -> uint8 [H, W, 3]`, indexed like `KINDS`."""
    import tensorflow as tf

    def jpeg(data):
        return tf.io.decode_jpeg(data, channels=3, dct_method="INTEGER_ACCURATE")

    def png(data):
        return tf.io.decode_png(data, channels=3)

    def png_wide(data):
        return tf_composite_on_white(tf.io.decode_png(data, channels=4, dtype=tf.uint16))

    def pil(data):
        # As uint8 values: numpy_function would turn a graph string into `np.bytes_`, which drops
        # trailing NUL bytes (and so breaks a WebP file ending in one).
        return tf.numpy_function(
            lambda raw: pil_decode(io.BytesIO(raw.tobytes())), [tf.io.decode_raw(data, tf.uint8)],
            tf.uint8, stateful=False,
        )

    def with_shape(fn):
        def decode(data):
            image = fn(data)
            image.set_shape([None, None, 3])
            return image

        return decode

    return [with_shape(fn) for fn in (jpeg, png, png_wide, pil)]


def tf_decoders():
    """Returns the decode functions `path -> uint8 [H, W, 3]`, indexed like `KINDS`."""
    import tensorflow as tf

    return [lambda path, fn=fn: fn(tf.io.read_file(path)) for fn in tf_byte_decoders()]


def tf_resize(image, image_size, crop_to_aspect_ratio=False):
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


def pil_resize(image, image_size, crop_to_aspect_ratio=False):
    """PIL twin of `tf_resize` (bilinear) for uint8 `[H, W, 3]`, for when TensorFlow is missing."""
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


def tf_composite_on_white(rgba, max_value=65535):
    """TensorFlow twin of `composite_on_white` for integer RGBA; returns uint8 RGB."""
    import tensorflow as tf

    x = tf.cast(rgba, tf.int64)
    color, alpha = x[..., :3], x[..., 3:4]
    m = tf.constant(max_value, tf.int64)
    num = 255 * (color * alpha + m * (m - alpha))
    return tf.cast((2 * num + m * m) // (2 * m * m), tf.uint8)
