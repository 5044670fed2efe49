"""How image bytes become RGB uint8 pixels: the one source of truth for decoding.

Used by the pre-training scan and `load_image` (the PIL path), by the `tf.data` pipelines (the
TensorFlow byte decoders) and by the exported `serve_bytes` signature (`decode_image_bytes`).

- JPEG (RGB or grayscale): TensorFlow's native decoder with `dct_method="INTEGER_ACCURATE"`, which
  is bit-identical to PIL/libjpeg-turbo (the default "fast" IDCT is off by up to 4 levels).
- PNG, 8-bit without transparency (RGB, grayscale, palette): TensorFlow's native decoder.
- PNG with an alpha channel or a `tRNS` transparency chunk, or 16 bits per channel: TensorFlow
  decodes 16-bit RGBA, which is composited on white and rounded to 8 bits
  (`round(v / 257)` for opaque pixels) with exact integer arithmetic.
- Everything else goes through PIL inside `tf.numpy_function`: GIF (first frame), BMP, WebP, TIFF,
  CMYK JPEG, any image with an EXIF orientation to apply, and other formats PIL reads.
  Transparency is composited on white; grayscale and palette images become RGB.

Which of these paths (`KINDS`) a file takes is decided by the scan (`kerasrecipes.data.scan`).
TensorFlow is imported inside the functions that need it.
"""

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


def png_header(head):
    """Returns `(bit_depth, color_type)` from a PNG's IHDR chunk, or `(None, None)`.

    `head` is the file's bytes (at least its first 26), so the scan reads each file only once.
    """
    if len(head) < 26 or head[12:16] != b"IHDR":
        return None, None
    return head[24], head[25]


def optional_tensorflow():
    """Returns the `tensorflow` module, or `None` when it is not installed."""
    try:
        import tensorflow as tf
    except ImportError:
        return None
    return tf


def tf_composite_on_white(rgba16):
    """TensorFlow twin of `composite_on_white` for uint16 RGBA; returns uint8 RGB."""
    import tensorflow as tf

    x = tf.cast(rgba16, tf.int64)
    color, alpha = x[..., :3], x[..., 3:4]
    m = tf.constant(65535, tf.int64)
    num = 255 * (color * alpha + m * (m - alpha))
    return tf.cast((2 * num + m * m) // (2 * m * m), tf.uint8)


def tf_byte_decoders():
    """Returns the decode functions `encoded bytes -> uint8 [H, W, 3]`, indexed like `KINDS`."""
    import io

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
        return tf_composite_on_white(tf.io.decode_png(data, channels=4, dtype=tf.uint16))

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
