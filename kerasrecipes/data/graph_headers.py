"""In-graph image headers: format, size and EXIF orientation of encoded bytes, TF ops only.

The first half of what `serve_bytes` runs (`kerasrecipes.data.graph_decode`): each item's header
is read before any pixel is decoded, so an image with too many pixels is refused from its header,
and what TensorFlow would decode differently from training (TIFF, a transparent GIF, palette
BMPs…) is refused with a reason. `inspect_image_bytes` returns a status code, an index of
`DECODE_ERRORS`. The walks are bounded (`_MAX_STEPS`) and every read is bounds-safe, so garbage
bytes give a status, never a hang or an out-of-range read. TensorFlow is imported inside the
functions that need it.
"""

_JPEG, _PNG, _GIF, _BMP, _WEBP, _TIFF = range(1, 7)  # In-graph format codes (0: unknown).
# Why an item is not decoded, by status code (0: decoded). Codes 5 and 6 get the sizes appended.
OK, EMPTY, UNKNOWN, TIFF_FORMAT, BAD_HEADER, TOO_LARGE, GIF_TOO_LARGE = range(7)
GIF_TRANSPARENT, GIF_PARTIAL, BMP_VARIANT, DECODE_FAILED = range(7, 11)
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
        return status(UNKNOWN), zero, zero, none, one, one, zero

    def tiff():
        return status(TIFF_FORMAT), zero, zero, none, one, one, zero

    def jpeg():
        height, width, exif_at, xmp_orientation = _jpeg_header(reader)
        return status(OK), height, width, exif_at, xmp_orientation, one, zero

    def png():
        height, width, exif_at, wide = _png_header(reader)
        return status(OK), height, width, exif_at, one, one, wide

    def gif():
        height, width, frames, transparent, covered = _gif_header(reader)
        code = tf.where(transparent, status(GIF_TRANSPARENT),
                        tf.where(tf.logical_and(frames > 0, tf.logical_not(covered)),
                                 status(GIF_PARTIAL), status(OK)))
        return code, height, width, none, one, tf.maximum(frames, 1), zero

    def bmp():
        height, width, supported = _bmp_header(reader)
        return (tf.where(supported, status(OK), status(BMP_VARIANT)), height, width, none, one,
                one, zero)

    def webp():
        height, width, exif_at = _webp_header(reader)
        return status(OK), height, width, exif_at, one, one, zero

    code, height, width, exif_at, orientation, frames, wide = tf.switch_case(
        fmt, [unknown, jpeg, png, gif, bmp, webp, tiff])
    exif_orientation, found = _tiff_orientation(reader, exif_at)
    orientation = tf.where(tf.logical_and(found, exif_at >= 0), exif_orientation, orientation)
    code = tf.where(tf.logical_and(tf.equal(code, OK),
                                   tf.logical_or(tf.equal(height, 0), tf.equal(width, 0))),
                    status(BAD_HEADER), code)
    if max_image_pixels is not None:
        code = tf.where(tf.logical_and(tf.equal(code, OK), height * width > max_image_pixels),
                        status(TOO_LARGE), code)
        code = tf.where(tf.logical_and(tf.equal(code, OK),
                                       frames * height * width > max_image_pixels),
                        status(GIF_TOO_LARGE), code)
    code = tf.where(tf.equal(reader.length, 0), status(EMPTY), code)
    return {"status": code, "format": tf.cast(fmt, tf.int64), "height": height, "width": width,
            "orientation": orientation, "frames": frames, "wide": wide}
