"""Tests for kerasrecipes.data.pipeline: the random-resized-crop fused into decoding."""

import os

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from conftest import class_color
from test_augment import torchvision_crop_windows
from kerasrecipes.data import decode as krdecode
from kerasrecipes.data import pipeline as krpipeline
from kerasrecipes.augment import RandomResizedCrop
from kerasrecipes.data import image_folder_datasets


RAMP_H, RAMP_W = 200, 256


def _ramp_folder(root, ext, copies=64):
    """Two classes of `copies` links to one image: red = x and green ∝ y (a coordinate map)."""
    y, x = np.mgrid[0:RAMP_H, 0:RAMP_W]
    pixels = np.stack([x, np.round(y * 255 / (RAMP_H - 1)), np.full_like(x, 128)], -1)
    os.makedirs(root)
    first = os.path.join(root, f"ramp.{ext}")
    options = {"quality": 95, "subsampling": 0} if ext == "jpg" else {}
    Image.fromarray(pixels.astype(np.uint8)).save(first, **options)
    for cls in ("a", "b"):
        os.makedirs(os.path.join(root, cls))
        for i in range(copies):
            os.link(first, os.path.join(root, cls, f"{i:02d}.{ext}"))
    os.remove(first)
    return root


def _windows_seen(images):
    """Recovers `(area fraction, aspect w/h, mirrored)` of each crop of a `_ramp_folder` image."""
    images = images.astype(np.float64)
    size = images.shape[1]
    red = images[..., 0].mean(axis=1)  # [N, W]: red depends on x only.
    green = images[..., 1].mean(axis=2) * (RAMP_H - 1) / 255  # [N, H], in pixels.
    # Output pixel j samples the window at (j + 0.5) / size of its width (half-pixel centres).
    w = np.abs(red[:, -1] - red[:, 0]) * size / (size - 1)
    h = (green[:, -1] - green[:, 0]) * size / (size - 1)
    return w * h / (RAMP_H * RAMP_W), w / h, red[:, -1] < red[:, 0]


@pytest.mark.parametrize("ext", ["jpg", "png"])
def test_fused_crop_follows_scale_and_ratio_and_flips_half(tmp_path, ext):
    # At 24 px the crops of a 200×256 JPEG decode at full, 1/2, 1/4 and 1/8 scale; PNG files
    # decode whole and are sliced to a window drawn the same way.
    root = _ramp_folder(str(tmp_path / "ramps"), ext)
    data = image_folder_datasets(root, image_size=24, batch_size=128, cache=False, seed=0,
                                 augment=RandomResizedCrop(horizontal_flip=True), verbose=False)
    images = np.concatenate([x.numpy() for _ in range(2) for x, _ in data.train])
    assert images.shape == (256, 24, 24, 3) and images.dtype == np.uint8
    area, aspect, mirrored = _windows_seen(images)
    # The window is recovered from the pixels, to a few pixels (JPEG error, the 8-pixel grid
    # of 1/8-scale decoding).
    assert area.min() >= 0.08 * 0.85 and area.max() <= 1.1
    assert aspect.min() >= 0.75 * 0.9 and aspect.max() <= 4 / 3 * 1.1
    ref = torchvision_crop_windows(RAMP_H, RAMP_W, 2000)
    ref_area = ref[:, 2] * ref[:, 3] / (RAMP_H * RAMP_W)
    np.testing.assert_allclose(np.quantile(area, [0.25, 0.5, 0.75]),
                               np.quantile(ref_area, [0.25, 0.5, 0.75]), atol=0.08)
    assert np.mean(np.log(aspect)) == pytest.approx(np.mean(np.log(ref[:, 3] / ref[:, 2])),
                                                    abs=0.05)
    assert 0.35 < mirrored.mean() < 0.65


def test_fused_jpeg_crop_matches_decoding_the_whole_file(tmp_path):
    # The same JPEG through the fused decoder and through the decode-then-slice fallback (PIL,
    # bit-identical to TensorFlow's decoder): same window, same pixels. (4:4:4 chroma: with 4:2:0
    # a cropped decode upsamples chroma differently at the window's edge.)
    rng = np.random.default_rng(0)
    smooth = tf.image.resize(rng.integers(0, 256, (1, 12, 16, 3)).astype("float32"), (96, 128))
    path = str(tmp_path / "photo.jpg")
    Image.fromarray(np.uint8(smooth[0].numpy())).save(path, quality=95, subsampling=0)
    data = tf.io.read_file(path)
    crop = RandomResizedCrop(horizontal_flip=True)
    jpeg, pil = krdecode.KINDS.index("jpeg"), krdecode.KINDS.index("pil")
    # At 50 px no window is DCT-scaled (that needs 100 px of the 96 px height).
    fused = tf.function(krpipeline._random_crop_decoder(crop, (50, 50), [jpeg]))
    fallback = tf.function(krpipeline._random_crop_decoder(crop, (50, 50), [pil]))
    for s in range(12):
        seed = tf.constant([s, 0], tf.int64)
        a, b = fused(data, jpeg, seed).numpy(), fallback(data, pil, seed).numpy()
        assert a.shape == b.shape == (50, 50, 3)
        np.testing.assert_array_equal(a, b)
    # A window 2× the output decodes at 1/2 scale: exactly libjpeg's 1/2-scale decode.
    half = krpipeline._decode_jpeg_window(data, tf.constant([0, 0, 96, 128]), (48, 64)).numpy()
    np.testing.assert_array_equal(
        half, tf.io.decode_jpeg(data, channels=3, ratio=2, dct_method="INTEGER_ACCURATE"))
    quarter = krpipeline._decode_jpeg_window(data, tf.constant([32, 64, 64, 64]), (16, 16)).numpy()
    np.testing.assert_array_equal(
        quarter, tf.io.decode_jpeg(data, channels=3, ratio=4, dct_method="INTEGER_ACCURATE")
        [8:24, 16:32])


def _build(root, augment, cache=False):
    return image_folder_datasets(root, image_size=16, batch_size=4, seed=0, cache=cache,
                                 augment=augment, verbose=False)


def _two_epochs(data):
    return [np.concatenate([x.numpy() for x, _ in data.train]) for _ in range(2)]


def test_fused_standard_preset_is_seeded_and_fresh_each_epoch(image_folder):
    first, second = _two_epochs(_build(image_folder, "standard"))
    assert first.shape == (12, 16, 16, 3) and first.dtype == np.uint8
    assert not np.array_equal(first, second)  # New crops and colours every epoch.
    again = _two_epochs(_build(image_folder, "standard"))
    np.testing.assert_array_equal(again[0], first)
    np.testing.assert_array_equal(again[1], second)


def test_fused_crop_keeps_labels_caches_files_and_leaves_validation(make_image_folder):
    root = make_image_folder(splits={"train": 4, "validation": 2})
    crop_only = _build(root, RandomResizedCrop())
    # Labels still match the images (each class has its own colour; the crop keeps it).
    for images, labels in crop_only.train:
        for image, label in zip(images.numpy(), labels.numpy()):
            np.testing.assert_allclose(image.reshape(-1, 3).mean(0), class_color(label), atol=10)
    # The cache holds the encoded files: the crops still change every epoch.
    cached = _two_epochs(_build(root, RandomResizedCrop(), cache=True))
    assert cached[0].shape == (12, 16, 16, 3) and not np.array_equal(cached[0], cached[1])

    # Validation is untouched: the deterministic resize of the un-augmented pipeline.
    def validation(data):
        return [np.concatenate([b[i].numpy() for b in data.validation]) for i in (0, 1)]

    expected = validation(_build(root, None))
    assert expected[0].shape == (6, 16, 16, 3)
    for got, want in zip(validation(crop_only), expected):
        np.testing.assert_array_equal(got, want)


def test_other_presets_augment_the_training_batches_only(image_folder):
    plain = image_folder_datasets(image_folder, image_size=16, batch_size=12, seed=0,
                                  validation_split=0.25, verbose=False)
    light = image_folder_datasets(image_folder, image_size=16, batch_size=12, seed=0,
                                  validation_split=0.25, augment="light", verbose=False)
    x, y = next(iter(light.train))
    x0, y0 = next(iter(plain.train))
    assert x.shape == x0.shape and x.dtype == tf.uint8
    np.testing.assert_array_equal(y.numpy(), y0.numpy())
    assert not np.array_equal(x.numpy(), x0.numpy())
    np.testing.assert_array_equal(next(iter(light.validation))[0], next(iter(plain.validation))[0])
    none = image_folder_datasets(image_folder, image_size=16, batch_size=12, seed=0,
                                 validation_split=0.25, augment="none", verbose=False)
    np.testing.assert_array_equal(next(iter(none.train))[0], x0)


def test_fused_crop_survives_a_file_broken_after_the_scan(image_folder):
    for cache in (False, True):
        data = image_folder_datasets(image_folder, image_size=8, batch_size=4, cache=cache,
                                     seed=0, augment=RandomResizedCrop(), verbose=False)
        victim = data.files["train"][0][0]
        with open(victim, "rb") as f:
            original = f.read()
        with open(victim, "r+b") as f:
            f.truncate(40)
        try:
            for _ in range(2):
                assert sum(int(y.shape[0]) for _, y in data.train) == 12
        finally:
            with open(victim, "wb") as f:
                f.write(original)


@pytest.mark.parametrize(
    "augment, match",
    [
        ("heavy", "preset must be one of.*'heavy'"),
        (3, "augment must be a preset name or a Keras layer.*augment=3"),
        (RandomResizedCrop(20, 20),
         "must output image_size.*\\(20, 20\\).*image_size=\\(16, 16\\)"),
    ],
)
def test_bad_augment(image_folder, augment, match):
    with pytest.raises(ValueError, match=match):
        image_folder_datasets(image_folder, image_size=16, augment=augment)
