"""How image bytes become RGB uint8 pixels: the one source of truth for decoding.

Used by the pre-training scan and `load_image`, by the `tf.data` pipelines (the TensorFlow byte
decoders), by the HTTP server (`decode_bytes`: the same, from bytes in Python) and by the
exported `serve_bytes` signature (`decode_image_batch`: TensorFlow ops only).

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

In the graph (`serve_bytes`), without PIL: each item's header is read first
(`inspect_image_bytes`: format, size, EXIF orientation), so an image with too many pixels is
refused before decoding; then JPEG, PNG, GIF, BMP and WebP decode to the same pixels as above
(EXIF orientation applied with `tf_orient`), and what TensorFlow would decode differently is
refused with a reason (`DECODE_ERRORS`). TensorFlow is imported inside the functions that need it.
"""

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


def decode_bytes(data, max_image_pixels=None, limit_name="max_image_pixels"):
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
            image = _tf_decode(data, kind)
            if image is None or image is False:
                image = pil_to_rgb(img)
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


def _tf_decode(data, kind, scan=False):
    """TensorFlow's pipeline decoder for `kind` on `data`: uint8 numpy `[H, W, 3]`, `False` when
    it rejects the bytes, `None` for `"pil"` or without TensorFlow. `scan`: JPEGs at 1/8 scale."""
    tf = optional_tensorflow()
    if kind == "pil" or tf is None:
        return None
    try:
        if scan and kind == "jpeg":
            return tf.io.decode_jpeg(data, channels=3, ratio=8,
                                     dct_method="INTEGER_ACCURATE").numpy()
        return tf_byte_decoders()[KINDS.index(kind)](data).numpy()
    except tf.errors.OpError:
        return False


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


# ---------------------------------------------------------------------------------------------
# In-graph decoding for serving (`serve_bytes`): TensorFlow ops only, one verdict per item.
#
# The header of each item is read first (format, size, EXIF orientation, the variants TensorFlow
# would decode differently from training), so that an image too large is refused before any
# pixel is decoded; then the items that pass are decoded. Both steps run in `tf.data` with
# `ignore_errors()` over `(index, bytes)` pairs, so a decoder error drops that item only, and the
# survivors are put back in place by index.

SERVE_MAX_IMAGE_PIXELS = 50_000_000  # A 8660 × 5773 photo: 150 MB as RGB.

_JPEG, _PNG, _GIF, _BMP, _WEBP, _TIFF = range(1, 7)  # In-graph format codes (0: unknown).
# Why an item is not decoded, by status code (0: decoded). Codes 5 and 6 get the sizes appended.
_OK, _EMPTY, _UNKNOWN, _TIFF_FORMAT, _BAD_HEADER, _TOO_LARGE, _GIF_TOO_LARGE = range(7)
_GIF_TRANSPARENT, _GIF_PARTIAL, _BMP_VARIANT, _DECODE_FAILED = range(7, 11)
DECODE_ERRORS = (
    "",
    "empty image (0 bytes)",
    "not an image in a format serve_bytes decodes (JPEG, PNG, GIF, BMP, WebP)",
    "TIFF: serve_bytes does not decode it (send JPEG or PNG)",
    "corrupt image: its header cannot be read",
    "image too large",
    "animated GIF too large to decode",
    "GIF with transparency: serve_bytes cannot composite it on white as training does "
    "(send it as PNG)",
    "GIF whose first frame does not cover the whole image: serve_bytes cannot decode it as "
    "training does (send it as PNG)",
    "BMP with a colour palette, under 24 bits per pixel or compressed: serve_bytes does not "
    "decode it (send it as PNG)",
    "corrupt or truncated image: the decoder failed",
)
_XMP_HEADER = b"http://ns.adobe.com/xap/1.0/\x00"
_IFD_ENTRIES = 128  # IFD0 entries searched for the orientation tag (cameras write ~10-30).
_MAX_STEPS = 1 << 20  # Bound on every header walk (markers, chunks, GIF blocks).


class _Bytes:
    """Bounds-safe reads of one scalar `tf.string`: bytes past the end read as zeros.

    The bytes are copied once into a zero-padded uint8 vector; a read is one `gather`, so the
    header walks below (a few ops per marker, chunk or GIF sub-block) stay cheap.
    """

    _PAD = 2048  # >= the longest read

    def __init__(self, data):
        import tensorflow as tf

        self.tf = tf
        self.data = data
        raw = tf.io.decode_raw(data, tf.uint8)
        self.length = tf.shape(raw, out_type=tf.int64)[0]
        self.raw = tf.concat([raw, tf.zeros([self._PAD], tf.uint8)], 0)

    def _clip(self, pos):
        return self.tf.clip_by_value(self.tf.cast(pos, self.tf.int64), 0, self.length)

    def read(self, pos, size):
        """`size` (a Python int) bytes from `pos` as int64 `[size]`."""
        tf = self.tf
        index = self._clip(pos) + tf.range(size, dtype=tf.int64)
        return tf.cast(tf.gather(self.raw, index), tf.int64)

    def byte(self, pos):
        """The byte at `pos` as an int64 scalar."""
        return self.tf.cast(self.tf.gather(self.raw, self._clip(pos)), self.tf.int64)

    def equals(self, pos, literal):
        """Whether the bytes at `pos` are `literal` (bytes)."""
        tf = self.tf
        expected = tf.constant(list(literal), tf.int64)
        return tf.reduce_all(tf.equal(self.read(pos, len(literal)), expected))

    def substr(self, pos, size):
        tf = self.tf
        pos = self._clip(pos)
        return tf.strings.substr(self.data, pos,
                                 tf.clip_by_value(tf.cast(size, tf.int64), 0, self.length - pos))


def _be(b, start, size):
    value = b[start]
    for i in range(1, size):
        value = value * 256 + b[start + i]
    return value


def _le(b, start, size):
    value = b[start + size - 1]
    for i in range(size - 2, -1, -1):
        value = value * 256 + b[start + i]
    return value


def _walk(cond, body, state):
    """`tf.while_loop` over `state` (a tuple) with a step counter bounded by `_MAX_STEPS`."""
    import tensorflow as tf

    out = tf.while_loop(
        lambda steps, *s: tf.logical_and(steps < _MAX_STEPS, cond(*s)),
        lambda steps, *s: (steps + 1, *body(*s)),
        (tf.constant(0, tf.int64), *state),
    )
    return out[1:]


def _tiff_orientation(reader, base):
    """`(orientation, found)` from the TIFF structure (EXIF) at `base`: IFD0's tag 0x0112.

    Like PIL: a SHORT or LONG with one value is the orientation; another type or count is no
    orientation (the image stays as stored), but the tag is still found.
    """
    tf = reader.tf
    head = reader.read(base, 8)
    little = tf.logical_and(tf.equal(head[0], 0x49), tf.equal(head[1], 0x49))
    big = tf.logical_and(tf.equal(head[0], 0x4D), tf.equal(head[1], 0x4D))

    def number(b, start, size):
        return tf.where(little, _le(b, start, size), _be(b, start, size))

    ifd = base + number(head, 4, 4)
    count = number(reader.read(ifd, 2), 0, 2)
    entries = tf.reshape(reader.read(ifd + 2, 12 * _IFD_ENTRIES), [_IFD_ENTRIES, 12])
    columns = [entries[:, i] for i in range(12)]
    tag, kind, values = number(columns, 0, 2), number(columns, 2, 2), number(columns, 4, 4)
    match = tf.logical_and(tf.range(_IFD_ENTRIES, dtype=tf.int64) < count, tf.equal(tag, 0x0112))
    found = tf.logical_and(tf.logical_or(little, big), tf.reduce_any(match))
    first = tf.argmax(tf.cast(match, tf.int32), output_type=tf.int32)
    single = tf.equal(values[first], 1)
    value = tf.where(
        tf.logical_and(single, tf.equal(kind[first], 3)), number(columns, 8, 2)[first],
        tf.where(tf.logical_and(single, tf.equal(kind[first], 4)), number(columns, 8, 4)[first],
                 tf.constant(0, tf.int64)))
    return tf.where(found, value, tf.constant(1, tf.int64)), found


def _jpeg_header(reader):
    """`(height, width, exif_at, xmp_orientation)` of a JPEG: its markers up to the first scan.

    As in PIL, the orientation is IFD0's in the first APP1 `Exif` segment (at `exif_at`, -1
    without one), else `tiff:Orientation` in the (last) XMP segment (`xmp_orientation`, 1 without
    one).
    """
    tf = reader.tf
    sof = tf.constant([0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE,
                       0xCF], tf.int64)
    minus_one = tf.constant(-1, tf.int64)
    zero = tf.constant(0, tf.int64)

    def body(pos, done, height, width, exif_at, xmp_at, xmp_len):
        b = reader.read(pos, 10)
        marker = b[1]
        # Bytes before a marker that are not 0xFF, and 0xFF 0x00 (an escaped 0xFF), are skipped
        # one by one, as PIL and libjpeg do.
        junk = tf.logical_or(tf.not_equal(b[0], 0xFF), tf.equal(marker, 0))
        stop = tf.reduce_any([pos >= reader.length, tf.logical_and(
            tf.logical_not(junk), tf.logical_or(tf.equal(marker, 0xDA), tf.equal(marker, 0xD9)))])
        fill = tf.logical_or(junk, tf.equal(marker, 0xFF))
        standalone = tf.reduce_any([tf.equal(marker, 0xD8), tf.equal(marker, 0x01),
                                    tf.logical_and(marker >= 0xD0, marker <= 0xD7)])
        segment = tf.logical_not(tf.reduce_any([stop, fill, standalone]))
        length = _be(b, 2, 2)
        is_sof = tf.reduce_all([segment, tf.reduce_any(tf.equal(marker, sof)),
                                tf.equal(height, 0)])
        height = tf.where(is_sof, _be(b, 5, 2), height)
        width = tf.where(is_sof, _be(b, 7, 2), width)
        app1 = tf.logical_and(segment, tf.equal(marker, 0xE1))
        is_exif = tf.reduce_all([app1, exif_at < 0, reader.equals(pos + 4, b"Exif\0\0")])
        exif_at = tf.where(is_exif, pos + 10, exif_at)
        is_xmp = tf.logical_and(app1, reader.equals(pos + 4, _XMP_HEADER))
        xmp_at = tf.where(is_xmp, pos + 4 + len(_XMP_HEADER), xmp_at)
        xmp_len = tf.where(is_xmp, length - 2 - len(_XMP_HEADER), xmp_len)
        step = tf.where(fill, tf.constant(1, tf.int64),
                        tf.where(standalone, tf.constant(2, tf.int64), 2 + length))
        return pos + step, stop, height, width, exif_at, xmp_at, xmp_len

    _, _, height, width, exif_at, xmp_at, xmp_len = _walk(
        lambda pos, done, *rest: tf.logical_not(done), body,
        (tf.constant(2, tf.int64), tf.constant(False), zero, zero, minus_one, minus_one, zero))
    # PIL's fallback: `re.search(rb'tiff:Orientation(="|>)([0-9])', xmp)`.
    xmp = reader.substr(xmp_at, xmp_len)
    pattern = r'(?s).*?tiff:Orientation(?:="|>)([0-9]).*'
    in_xmp = tf.logical_and(xmp_at >= 0, tf.strings.regex_full_match(xmp, pattern))
    digit = tf.strings.substr(tf.strings.regex_replace(xmp, pattern, r"\1"), 0, 1)
    digit = tf.cast(tf.io.decode_raw(tf.strings.join([digit, "0"]), tf.uint8)[0], tf.int64) - 48
    return height, width, exif_at, tf.where(in_xmp, digit, tf.constant(1, tf.int64))


def _png_header(reader):
    """`(height, width, exif_at, wide)` of a PNG, from its chunks.

    `exif_at`: where the first `eXIf` chunk's data starts (-1: none). `wide`: 16 bits, an alpha
    channel or a `tRNS` chunk, i.e. training's `png_wide` path.
    """
    tf = reader.tf
    head = reader.read(0, 26)
    valid = reader.equals(12, b"IHDR")
    zero = tf.constant(0, tf.int64)

    def body(pos, done, exif_at, transparency, before_data):
        b = reader.read(pos, 8)
        is_exif = tf.logical_and(reader.equals(pos + 4, b"eXIf"), exif_at < 0)
        exif_at = tf.where(is_exif, pos + 8, exif_at)
        before_data = tf.logical_and(before_data, tf.logical_not(reader.equals(pos + 4, b"IDAT")))
        transparency = tf.logical_or(
            transparency, tf.logical_and(before_data, reader.equals(pos + 4, b"tRNS")))
        stop = tf.logical_or(reader.equals(pos + 4, b"IEND"), pos + 12 > reader.length)
        return pos + 12 + _be(b, 0, 4), stop, exif_at, transparency, before_data

    _, _, exif_at, transparency, _ = _walk(
        lambda pos, done, *rest: tf.logical_not(done), body,
        (tf.constant(8, tf.int64), tf.constant(False), tf.constant(-1, tf.int64),
         tf.constant(False), tf.constant(True)))
    wide = tf.reduce_any([tf.equal(head[24], 16), tf.equal(head[25], 4), tf.equal(head[25], 6),
                          transparency])
    return (tf.where(valid, _be(head, 20, 4), zero), tf.where(valid, _be(head, 16, 4), zero),
            exif_at, tf.cast(wide, tf.int64))


def _webp_header(reader):
    """`(height, width, exif_at)` of a WebP (simple lossy, lossless or extended); `exif_at`:
    where its `EXIF` chunk's TIFF data starts (-1: none)."""
    tf = reader.tf
    b = reader.read(0, 30)
    lossy = reader.equals(12, b"VP8 ")
    lossless = reader.equals(12, b"VP8L")
    extended = reader.equals(12, b"VP8X")
    width = tf.where(lossy, _le(b, 26, 2) % 16384,
                     tf.where(lossless, 1 + b[21] + (b[22] % 64) * 256,
                              tf.where(extended, 1 + _le(b, 24, 3), tf.constant(0, tf.int64))))
    height = tf.where(lossy, _le(b, 28, 2) % 16384,
                      tf.where(lossless, 1 + b[22] // 64 + b[23] * 4 + (b[24] % 16) * 1024,
                               tf.where(extended, 1 + _le(b, 27, 3), tf.constant(0, tf.int64))))

    def body(pos, done, exif_at):
        c = reader.read(pos, 8)
        size = _le(c, 4, 4)
        is_exif = tf.logical_and(reader.equals(pos, b"EXIF"), exif_at < 0)
        # PIL drops an "Exif\0\0" prefix when the chunk has one.
        start = tf.where(reader.equals(pos + 8, b"Exif\0\0"), pos + 14, pos + 8)
        exif_at = tf.where(is_exif, start, exif_at)
        return pos + 8 + size + size % 2, pos + 8 > reader.length, exif_at

    _, _, exif_at = _walk(lambda pos, done, exif_at: tf.logical_not(done), body,
                          (tf.constant(12, tf.int64), tf.logical_not(extended),
                           tf.constant(-1, tf.int64)))
    return height, width, exif_at


def _gif_header(reader):
    """`(height, width, frames, transparent, covered)` of a GIF: its blocks to the trailer.

    `transparent`: a graphic control extension before the first frame sets a transparent
    index (PIL then composites on white; TensorFlow paints those pixels black). `covered`: the
    first frame fills the logical screen (TensorFlow leaves the rest black).
    """
    tf = reader.tf
    b = reader.read(0, 13)
    width, height = _le(b, 6, 2), _le(b, 8, 2)
    table = tf.where(b[10] >= 128, 3 * tf.bitwise.left_shift(tf.constant(2, tf.int64), b[10] % 8),
                     tf.constant(0, tf.int64))
    zero = tf.constant(0, tf.int64)

    def skip_data(pos):
        """The position after the data sub-blocks at `pos` (sizes until a 0)."""
        _, pos = tf.while_loop(
            lambda steps, pos: tf.reduce_all([steps < _MAX_STEPS, pos < reader.length,
                                              tf.not_equal(reader.byte(pos), 0)]),
            lambda steps, pos: (steps + 1, pos + reader.byte(pos) + 1),
            (tf.constant(0, tf.int64), pos))
        return pos + 1

    def body(pos, done, frames, transparent, covered):
        c = reader.read(pos, 10)
        image = tf.equal(c[0], 0x2C)
        extension = tf.equal(c[0], 0x21)
        control = tf.reduce_all([extension, tf.equal(c[1], 0xF9), tf.equal(frames, 0)])
        transparent = tf.logical_or(transparent, tf.logical_and(control, c[3] % 2 == 1))
        local = tf.where(c[9] >= 128, 3 * tf.bitwise.left_shift(tf.constant(2, tf.int64), c[9] % 8),
                         zero)
        first_covers = tf.reduce_all([tf.equal(_le(c, 1, 2), 0), tf.equal(_le(c, 3, 2), 0),
                                      tf.equal(_le(c, 5, 2), width),
                                      tf.equal(_le(c, 7, 2), height)])
        covered = tf.where(tf.logical_and(image, tf.equal(frames, 0)), first_covers, covered)
        frames = frames + tf.cast(image, tf.int64)
        stop = tf.logical_or(tf.logical_not(tf.logical_or(image, extension)),
                             pos >= reader.length)
        # An image: descriptor, local colour table, LZW code size, then data; an extension:
        # introducer and label, then data.
        data_at = tf.where(image, pos + 11 + local, pos + 2)
        pos = tf.cond(stop, lambda: pos, lambda: skip_data(data_at))
        return pos, stop, frames, transparent, covered

    _, _, frames, transparent, covered = _walk(
        lambda pos, done, *rest: tf.logical_not(done), body,
        (13 + table, tf.constant(False), zero, tf.constant(False), tf.constant(False)))
    return height, width, frames, transparent, covered


def _bmp_header(reader):
    """`(height, width, supported)` of a BMP; TensorFlow decodes 24- and 32-bit BMPs and 8-bit
    ones as grayscale, so an 8-bit BMP must have the plain gray palette."""
    tf = reader.tf
    b = reader.read(0, 54)
    info = _le(b, 14, 4)
    width = _le(b, 18, 4)
    height = _le(b, 22, 4)
    height = tf.where(height >= 2**31, 2**32 - height, height)  # negative: stored top-down
    bits, compression, colours = _le(b, 28, 2), _le(b, 30, 4), _le(b, 46, 4)
    palette = tf.reshape(reader.read(14 + info, 1024), [256, 4])[:, :3]
    gray = tf.reduce_all(tf.equal(palette, tf.range(256, dtype=tf.int64)[:, None]))
    supported = tf.reduce_all([info >= 40, tf.equal(compression, 0), tf.logical_or(
        tf.logical_or(tf.equal(bits, 24), tf.equal(bits, 32)),
        tf.reduce_all([tf.equal(bits, 8), gray,
                       tf.logical_or(tf.equal(colours, 0), tf.equal(colours, 256))]))])
    return height, width, supported


def _image_format(reader):
    """The in-graph format code of one item from its first bytes (0: unknown)."""
    tf = reader.tf
    checks = [
        (_JPEG, reader.equals(0, b"\xff\xd8\xff")),
        (_PNG, reader.equals(0, b"\x89PNG\r\n\x1a\n")),
        (_GIF, tf.logical_or(reader.equals(0, b"GIF87a"), reader.equals(0, b"GIF89a"))),
        (_BMP, reader.equals(0, b"BM")),
        (_WEBP, tf.logical_and(reader.equals(0, b"RIFF"), reader.equals(8, b"WEBP"))),
        (_TIFF, tf.logical_or(reader.equals(0, b"II*\0"), reader.equals(0, b"MM\0*"))),
    ]
    code = tf.constant(0, tf.int32)
    for value, match in reversed(checks):
        code = tf.where(match, tf.constant(value, tf.int32), code)
    return code


def inspect_image_bytes(data, max_image_pixels=None):
    """Reads one encoded image's header in-graph; never decodes pixels.

    Args:
        data: scalar `tf.string`. The encoded file.
        max_image_pixels: int or None. More pixels (width × height from the header; for an
            animated GIF, frames × width × height, all of which TensorFlow decodes) is refused.

    Returns:
        Dict of int64 scalars: `status` (0 when decodable, else an index of `DECODE_ERRORS`),
        `format`, `height`, `width`, `orientation` (EXIF, 1 to 8), `frames` (GIF, else 1),
        `wide` (1 for a PNG that training decodes at 16 bits with alpha, `png_wide`).
    """
    import tensorflow as tf

    reader = _Bytes(data)
    fmt = _image_format(reader)
    zero, one = tf.constant(0, tf.int64), tf.constant(1, tf.int64)

    def status(code):
        return tf.constant(code, tf.int64)

    none = tf.constant(-1, tf.int64)

    # Each branch: status, height, width, where EXIF starts (-1: none), the orientation without
    # EXIF, frames, wide PNG.
    def unknown():
        return status(_UNKNOWN), zero, zero, none, one, one, zero

    def tiff():
        return status(_TIFF_FORMAT), zero, zero, none, one, one, zero

    def jpeg():
        height, width, exif_at, xmp_orientation = _jpeg_header(reader)
        return status(_OK), height, width, exif_at, xmp_orientation, one, zero

    def png():
        height, width, exif_at, wide = _png_header(reader)
        return status(_OK), height, width, exif_at, one, one, wide

    def gif():
        height, width, frames, transparent, covered = _gif_header(reader)
        code = tf.where(transparent, status(_GIF_TRANSPARENT),
                        tf.where(tf.logical_and(frames > 0, tf.logical_not(covered)),
                                 status(_GIF_PARTIAL), status(_OK)))
        return code, height, width, none, one, tf.maximum(frames, 1), zero

    def bmp():
        height, width, supported = _bmp_header(reader)
        return (tf.where(supported, status(_OK), status(_BMP_VARIANT)), height, width, none, one,
                one, zero)

    def webp():
        height, width, exif_at = _webp_header(reader)
        return status(_OK), height, width, exif_at, one, one, zero

    code, height, width, exif_at, orientation, frames, wide = tf.switch_case(
        fmt, [unknown, jpeg, png, gif, bmp, webp, tiff])
    exif_orientation, found = _tiff_orientation(reader, exif_at)
    orientation = tf.where(tf.logical_and(found, exif_at >= 0), exif_orientation, orientation)
    code = tf.where(tf.logical_and(tf.equal(code, _OK),
                                   tf.logical_or(tf.equal(height, 0), tf.equal(width, 0))),
                    status(_BAD_HEADER), code)
    if max_image_pixels is not None:
        code = tf.where(tf.logical_and(tf.equal(code, _OK), height * width > max_image_pixels),
                        status(_TOO_LARGE), code)
        code = tf.where(tf.logical_and(tf.equal(code, _OK),
                                       frames * height * width > max_image_pixels),
                        status(_GIF_TOO_LARGE), code)
    code = tf.where(tf.equal(reader.length, 0), status(_EMPTY), code)
    return {"status": code, "format": tf.cast(fmt, tf.int64), "height": height, "width": width,
            "orientation": orientation, "frames": frames, "wide": wide}


def tf_composite_on_white(rgba, max_value=65535):
    """TensorFlow twin of `composite_on_white` for integer RGBA; returns uint8 RGB."""
    import tensorflow as tf

    x = tf.cast(rgba, tf.int64)
    color, alpha = x[..., :3], x[..., 3:4]
    m = tf.constant(max_value, tf.int64)
    num = 255 * (color * alpha + m * (m - alpha))
    return tf.cast((2 * num + m * m) // (2 * m * m), tf.uint8)


def tf_orient(image, orientation):
    """Applies an EXIF orientation (1–8; others leave the image as stored) like
    `PIL.ImageOps.exif_transpose`, to `[H, W, C]`."""
    import tensorflow as tf

    def transpose():
        return tf.transpose(image, [1, 0, 2])

    branches = [
        lambda: image,                                   # 0, 1: as stored
        lambda: image,
        lambda: tf.reverse(image, [1]),                  # 2: mirrored
        lambda: tf.reverse(image, [0, 1]),               # 3: rotated 180°
        lambda: tf.reverse(image, [0]),                  # 4: flipped
        transpose,                                       # 5: transposed
        lambda: tf.reverse(transpose(), [1]),            # 6: rotated 90° clockwise to display
        lambda: tf.reverse(transpose(), [0, 1]),         # 7: transversed
        lambda: tf.reverse(transpose(), [0]),            # 8: rotated 90° counter-clockwise
    ]
    index = tf.cast(orientation, tf.int32)
    index = tf.where(tf.logical_and(index >= 0, index <= 8), index, 0)
    out = tf.switch_case(index, branches)
    out.set_shape([None, None, image.shape[-1]])
    return out


def _decode_checked(data, fmt, orientation, wide):
    """Decodes one item `inspect_image_bytes` passed, as training does, to uint8 `[H, W, 3]`."""
    import tensorflow as tf

    def jpeg():
        return tf.io.decode_jpeg(data, channels=3, dct_method="INTEGER_ACCURATE")

    def png():
        # Training's two paths, picked as the scan picks them. (An 8-bit RGBA decode is not a
        # shortcut: TensorFlow fills the alpha of 1-, 2- and 4-bit images with 2**bits - 1.)
        return tf.cond(
            tf.equal(wide, 1),
            lambda: tf_composite_on_white(tf.io.decode_png(data, channels=4, dtype=tf.uint16)),
            lambda: tf.io.decode_png(data, channels=3))

    def gif():
        return tf.io.decode_gif(data)[0]

    def bmp():
        return tf.io.decode_image(data, channels=3, expand_animations=False)

    def webp():
        image = tf.io.decode_image(data, channels=0, expand_animations=False)
        return tf.cond(tf.equal(tf.shape(image)[-1], 4),
                       lambda: tf_composite_on_white(image, 255), lambda: image[..., :3])

    def refuse():
        return tf.zeros([0, 0, 3], tf.uint8)  # never reached: inspect refused the item

    def shaped(fn):
        def branch():
            image = fn()
            image.set_shape([None, None, 3])
            return image
        return branch

    image = tf.switch_case(tf.cast(fmt, tf.int32),
                           [shaped(f) for f in (refuse, jpeg, png, gif, bmp, webp, refuse)])
    return tf_orient(image, orientation)


def decode_image_bytes(data, max_image_pixels=None):
    """Decodes one encoded image (scalar `tf.string`) to uint8 RGB `[H, W, 3]` with TF ops only.

    The graph-only twin of the training pipeline (`kr.load_image`), for serving: the same pixels
    for JPEG (integer-accurate DCT, EXIF orientation applied), PNG of any depth (transparency on
    white, EXIF orientation applied), GIF (first frame), BMP (24/32-bit, 8-bit gray) and WebP
    (transparency on white). What it cannot decode as training does (TIFF, a transparent GIF,
    palette BMPs…) raises `InvalidArgumentError` saying why, as does a corrupt file; see
    `decode_image_batch` for a verdict per item instead.

    Args:
        data: scalar `tf.string`.
        max_image_pixels: int or None. A larger image is refused from its header, undecoded.
            Defaults to `None` (no limit).
    """
    import tensorflow as tf

    header = inspect_image_bytes(data, max_image_pixels)
    message = tf.gather(tf.constant(DECODE_ERRORS), header["status"])
    check = tf.debugging.Assert(tf.equal(header["status"], _OK), [message])
    with tf.control_dependencies([check]):
        image = _decode_checked(tf.identity(data), header["format"], header["orientation"],
                                header["wide"])
    return image


def _collect(dataset, n, fill):
    """Runs `dataset` of `(index, value)` (indices in `[0, n)`, each at most once) to its end.

    Returns `(values, present)`: `values` holds each index's value, or `fill` for the indices
    the dataset dropped, and `present` [n] says which indices it yielded.
    """
    import tensorflow as tf

    sentinel = tf.data.Dataset.from_tensors((n, fill))
    index, values = dataset.concatenate(sentinel).batch(n + 1).get_single_element()
    last = tf.shape(index, out_type=tf.int64)[0] - 1  # the sentinel's row
    rows = tf.tensor_scatter_nd_update(tf.fill([n + 1], last), index[:, None],
                                       tf.range(last + 1))[:n]
    return tf.nest.map_structure(lambda v: tf.gather(v, rows), values), tf.not_equal(rows, last)


def decode_image_batch(image_bytes, image_size, crop_to_aspect_ratio=False,
                       max_image_pixels=SERVE_MAX_IMAGE_PIXELS):
    """Decodes and resizes a batch of encoded images in-graph, with a verdict per item.

    What `serve_bytes` runs. Each item's header is read first (an image with too many pixels is
    refused before decoding), then each item that passed is decoded (`decode_image_bytes`'s
    pixels) and resized like training (`tf_resize`). Both steps run in `tf.data` with
    `ignore_errors()`, so a corrupt item fails alone; the others are put back in place. The
    same bytes always give the same pixels.

    Args:
        image_bytes: `tf.string` `[N]`.
        image_size: `(height, width)`.
        crop_to_aspect_ratio: bool. Centre-crop to the aspect ratio of `image_size` instead of
            stretching. Defaults to `False`.
        max_image_pixels: int or None. Defaults to `SERVE_MAX_IMAGE_PIXELS` (50 million).

    Returns:
        `(images, ok, error)`: uint8 `[N, height, width, 3]` (zeros where not `ok`), bool `[N]`,
        and string `[N]`: why the item was not decoded (`DECODE_ERRORS`, with the sizes for an
        image too large), empty where `ok`.
    """
    import tensorflow as tf

    height, width = image_size
    image_bytes = tf.convert_to_tensor(image_bytes, tf.string)
    n = tf.shape(image_bytes, out_type=tf.int64)[0]
    index = tf.range(n)
    fields = ("status", "format", "height", "width", "orientation", "frames", "wide")

    def inspect(i, data):
        header = inspect_image_bytes(data, max_image_pixels)
        return i, tf.stack([header[k] for k in fields])

    headers, read = _collect(
        tf.data.Dataset.from_tensor_slices((index, image_bytes)).map(inspect).ignore_errors(),
        n, tf.constant([_BAD_HEADER, 0, 0, 0, 1, 1, 0], tf.int64))
    status, fmt, h, w, orientation, frames, wide = tf.unstack(headers, axis=1)
    status = tf.where(read, status, tf.constant(_BAD_HEADER, tf.int64))

    todo = tf.where(tf.equal(status, _OK))[:, 0]
    decode = tf.data.Dataset.from_tensor_slices(
        (todo, tf.gather(image_bytes, todo), tf.gather(fmt, todo), tf.gather(orientation, todo),
         tf.gather(wide, todo))
    ).map(
        lambda i, data, f, o, wide: (i, tf_resize(_decode_checked(data, f, o, wide), image_size,
                                                  crop_to_aspect_ratio)),
        num_parallel_calls=tf.data.AUTOTUNE, deterministic=True,
    ).ignore_errors()
    images, decoded = _collect(decode, n, tf.zeros([height, width, 3], tf.uint8))
    status = tf.where(tf.logical_and(tf.equal(status, _OK), tf.logical_not(decoded)),
                      tf.constant(_DECODE_FAILED, tf.int64), status)

    ok = tf.equal(status, _OK)
    error = tf.gather(tf.constant(DECODE_ERRORS), status)
    if max_image_pixels is not None:
        def number(x):
            return tf.strings.as_string(x)

        sizes = tf.strings.join([number(w), " × ", number(h)])
        too_large = tf.strings.join([
            error, ": ", sizes, " = ", number(w * h), " pixels, over the limit of ",
            str(max_image_pixels), " (max_image_pixels); send it resized"])
        gif_too_large = tf.strings.join([
            error, ": ", number(frames), " frames of ", sizes, " = ", number(frames * w * h),
            " pixels, over the limit of ", str(max_image_pixels), " (max_image_pixels)"])
        error = tf.where(tf.equal(status, _TOO_LARGE), too_large,
                         tf.where(tf.equal(status, _GIF_TOO_LARGE), gif_too_large, error))
    return images, ok, error
