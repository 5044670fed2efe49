"""The `tf.data` pipeline of scanned image files: decode, resize, cache, shuffle, batch.

With `augment` the training split is augmented in `tf.data`. A leading random-resized-crop is
fused into decoding: the crop window is drawn from the file's size (seeded, torchvision's
algorithm), a JPEG decodes only that window with `tf.io.decode_and_crop_jpeg` — at 1/2, 1/4 or
1/8 scale in the DCT domain when the window is that many times the output — other formats decode
whole and are sliced, and the window is resized straight to `image_size`.
"""

import numpy as np

from kerasrecipes.data.decode import KINDS, tf_byte_decoders, tf_decoders, tf_resize

SHUFFLE_BUFFER = 2048  # Decoded images held for shuffling after a cache; file lists shuffle fully.


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

    from kerasrecipes.augment import tf_crop_window

    decoders = tf_byte_decoders()
    jpeg = KINDS.index("jpeg")
    height, width = image_size

    def window_of(seed, shape):
        return tf_crop_window(seed, shape[0], shape[1], crop.scale, crop.ratio)

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
                kind, [branch(k, data, seed) for k in range(len(KINDS))]
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


def files_dataset(paths, labels, kinds, image_size, batch_size, training, seed, cache,
                   crop_to_aspect_ratio, augment=None):
    """Builds the `tf.data` pipeline for one split of scanned files.

    `augment` (a Keras layer, training split only) is applied to the batches; a leading
    `RandomResizedCrop` is instead fused into decoding, and then the cache holds the encoded
    files (the crops change every epoch).
    """
    import tensorflow as tf

    from kerasrecipes.augment import map_batches
    from kerasrecipes.augment import split_leading_crop

    autotune = tf.data.AUTOTUNE
    decoders = tf_decoders()
    kind_ids = np.asarray([KINDS.index(k) for k in kinds], np.int32)
    used = sorted(set(kind_ids.tolist()))
    n = len(paths)
    crop, rest = (None, []) if augment is None else split_leading_crop(augment)

    def load(path, label, kind):
        if len(used) == 1:
            image = decoders[used[0]](path)
        else:
            image = tf.switch_case(kind, [lambda fn=fn: fn(path) for fn in decoders])
            image.set_shape([None, None, 3])
        return tf_resize(image, image_size, crop_to_aspect_ratio), label

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
                ds = ds.shuffle(min(n, SHUFFLE_BUFFER), seed=seed, reshuffle_each_iteration=True)
    else:
        decode = _random_crop_decoder(crop, image_size, used)
        ds = ds.map(lambda path, label, kind: (tf.io.read_file(path), label, kind),
                    num_parallel_calls=autotune, deterministic=True)
        if cache:
            ds = ds.ignore_errors(log_warning=True).cache("" if cache is True else cache)
            ds = ds.shuffle(min(n, SHUFFLE_BUFFER), seed=seed, reshuffle_each_iteration=True)
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
        ds = map_batches(ds, rest, parallel=False)
    return ds.prefetch(autotune)
