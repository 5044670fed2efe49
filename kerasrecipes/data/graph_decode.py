"""In-graph decoding, TensorFlow ops only: what the exported `serve_bytes` signature runs.

`decode_image_batch` reads each item's header first (`graph_headers.inspect_image_bytes`: an
image too large is refused before decoding), then decodes the items that pass to the pixels
training decodes from the same file (`kerasrecipes.data.decode`: JPEG with the integer-accurate
DCT, PNG of any depth with transparency on white, GIF's first frame, BMP, WebP, EXIF orientation
applied with `tf_orient`) and resizes them like training (`tf_resize`). Both steps run in
`tf.data` with `ignore_errors()` over `(index, bytes)` pairs, so a decoder error drops that item
only, and the survivors are put back in place by index: one verdict per item.
"""

from kerasrecipes.data.decode import tf_composite_on_white, tf_resize
from kerasrecipes.data.graph_headers import (
    BAD_HEADER,
    DECODE_ERRORS,
    DECODE_FAILED,
    GIF_TOO_LARGE,
    OK,
    TOO_LARGE,
    inspect_image_bytes,
)

SERVE_MAX_IMAGE_PIXELS = 50_000_000  # A 8660 × 5773 photo: 150 MB as RGB.


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

    # Indexed by `graph_headers`' format codes: unknown, JPEG, PNG, GIF, BMP, WebP, TIFF.
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
    check = tf.debugging.Assert(tf.equal(header["status"], OK), [message])
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
        n, tf.constant([BAD_HEADER, 0, 0, 0, 1, 1, 0], tf.int64))
    status, fmt, h, w, orientation, frames, wide = tf.unstack(headers, axis=1)
    status = tf.where(read, status, tf.constant(BAD_HEADER, tf.int64))

    todo = tf.where(tf.equal(status, OK))[:, 0]
    decode = tf.data.Dataset.from_tensor_slices(
        (todo, tf.gather(image_bytes, todo), tf.gather(fmt, todo), tf.gather(orientation, todo),
         tf.gather(wide, todo))
    ).map(
        lambda i, data, f, o, wide: (i, tf_resize(_decode_checked(data, f, o, wide), image_size,
                                                  crop_to_aspect_ratio)),
        num_parallel_calls=tf.data.AUTOTUNE, deterministic=True,
    ).ignore_errors()
    images, decoded = _collect(decode, n, tf.zeros([height, width, 3], tf.uint8))
    status = tf.where(tf.logical_and(tf.equal(status, OK), tf.logical_not(decoded)),
                      tf.constant(DECODE_FAILED, tf.int64), status)

    ok = tf.equal(status, OK)
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
        error = tf.where(tf.equal(status, TOO_LARGE), too_large,
                         tf.where(tf.equal(status, GIF_TOO_LARGE), gif_too_large, error))
    return images, ok, error
