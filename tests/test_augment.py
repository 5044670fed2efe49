import keras
import numpy as np
import pytest
import tensorflow as tf

import kerasrecipes as kr
from kerasrecipes.augment import (
    PRESETS,
    ColorJitter,
    PCALighting,
    RandomResizedCrop,
    _affine_crop_and_resize,
    _crop_and_resize,
    tf_crop_window,
    augment_dataset,
    augmentation,
    crop_boxes,
)
from tiny_models import TINY


def _np(x):
    return keras.ops.convert_to_numpy(x)


def _images(n=4, h=32, w=32, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, h, w, 3)).astype("uint8")


@pytest.mark.parametrize("preset", PRESETS)
def test_presets_are_identity_in_inference_and_keep_the_size(preset):
    x = _images()
    layer = augmentation(preset, seed=1)
    np.testing.assert_array_equal(_np(layer(x, training=False)), x)
    out = _np(layer(x, training=True))
    assert out.shape == x.shape
    if preset != "none":
        assert not np.array_equal(out, x)


def test_flip_false_removes_every_flip():
    for preset in PRESETS:
        layers = augmentation(preset, flip=False).layers
        assert "RandomFlip" not in [type(layer).__name__ for layer in layers], preset
        assert not any(getattr(layer, "horizontal_flip", False) for layer in layers), preset
    # A left-right asymmetric image never comes back mirrored with only a flip-free crop at 100%.
    layer = keras.Sequential([RandomResizedCrop(scale=(1, 1), ratio=(1, 1))] + [
        lyr for lyr in augmentation("standard", flip=False).layers if isinstance(lyr, PCALighting)
    ])
    x = np.zeros((2, 8, 8, 3), "uint8")
    x[:, :, :4] = 200
    out = _np(layer(x, training=True))
    assert (out[:, :, :4].mean() > out[:, :, 4:].mean() + 100)


def test_standard_preset_is_the_imagenet_recipe():
    layers = {type(layer).__name__: layer for layer in augmentation("standard").layers}
    crop = layers["RandomResizedCrop"]
    assert crop.scale == (0.08, 1.0) and crop.ratio == pytest.approx((3 / 4, 4 / 3))
    jitter = layers["ColorJitter"]
    assert (jitter.brightness, jitter.contrast, jitter.saturation) == (0.4, 0.4, 0.4)
    assert layers["PCALighting"].std == 0.1
    assert crop.horizontal_flip  # the flip is folded into the crop (a right-to-left box)


def test_bad_arguments_name_the_argument():
    with pytest.raises(ValueError, match="preset must be one of"):
        augmentation("heavy")
    with pytest.raises(ValueError, match="scale must be a pair"):
        RandomResizedCrop(scale=(0.5, 0.1))
    with pytest.raises(ValueError, match="brightness must be a float in"):
        ColorJitter(brightness=1.5)
    with pytest.raises(ValueError, match="std must be a float"):
        PCALighting(std=-1)
    with pytest.raises(ValueError, match="flip must be True or False"):
        augmentation("light", flip="no")


def test_crop_boxes_follow_scale_and_ratio_and_fit_in_the_image():
    seed = keras.random.SeedGenerator(3)
    y0, x0, h, w = (_np(t) for t in crop_boxes(2000, 60, 80, (0.08, 1.0), (3 / 4, 4 / 3), seed))
    assert (y0 >= 0).all() and (x0 >= 0).all()
    assert (y0 + h <= 60 + 1e-3).all() and (x0 + w <= 80 + 1e-3).all()
    area = h * w / (60 * 80)
    assert area.min() >= 0.08 - 1e-4 and area.max() <= 1.0 + 1e-4
    ratio = w / h
    assert ratio.min() >= 3 / 4 - 1e-4 and ratio.max() <= 4 / 3 + 1e-4
    # Areas spread over the range (not stuck at one end).
    assert area.mean() == pytest.approx(0.5, abs=0.1)


def torchvision_crop_windows(height, width, n, seed=0, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3)):
    """Reference: `n` windows `(y0, x0, h, w)` drawn as torchvision's `RandomResizedCrop`."""
    rng = np.random.default_rng(seed)
    windows = []
    for _ in range(n):
        for _ in range(10):
            area = height * width * rng.uniform(*scale)
            aspect = np.exp(rng.uniform(np.log(ratio[0]), np.log(ratio[1])))
            w, h = int(round(np.sqrt(area * aspect))), int(round(np.sqrt(area / aspect)))
            if 0 < w <= width and 0 < h <= height:
                y0, x0 = rng.integers(0, height - h + 1), rng.integers(0, width - w + 1)
                windows.append((y0, x0, h, w))
                break
        else:
            in_ratio = width / height
            w = int(round(height * ratio[1])) if in_ratio > ratio[1] else width
            h = int(round(width / ratio[0])) if in_ratio < ratio[0] else height
            windows.append(((height - h) // 2, (width - w) // 2, h, w))
    return np.array(windows)


def _tf_windows(height, width, n, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3)):
    def draw(s):
        window, flip_draw = tf_crop_window(tf.stack([s, 0]), height, width, scale, ratio)
        return window, flip_draw

    windows, flips = next(iter(tf.data.Dataset.range(n).map(draw).batch(n)))
    return windows.numpy(), flips.numpy()


def test_tf_crop_window_draws_like_torchvision_on_whole_pixels():
    windows, flips = _tf_windows(200, 256, 4000)
    y0, x0, h, w = windows.T
    assert windows.dtype == np.int32
    assert (y0 >= 0).all() and (x0 >= 0).all() and (h >= 1).all() and (w >= 1).all()
    assert (y0 + h <= 200).all() and (x0 + w <= 256).all()
    area, aspect = h * w / (200 * 256), w / h
    # Rounding sizes to whole pixels moves area and aspect by well under 3 %.
    assert area.min() >= 0.08 * 0.97 and area.max() <= 1.0
    assert aspect.min() >= 0.75 * 0.97 and aspect.max() <= 4 / 3 * 1.03
    ref = torchvision_crop_windows(200, 256, 4000)
    ref_area, ref_aspect = ref[:, 2] * ref[:, 3] / (200 * 256), ref[:, 3] / ref[:, 2]
    np.testing.assert_allclose(np.quantile(area, [0.1, 0.25, 0.5, 0.75, 0.9]),
                               np.quantile(ref_area, [0.1, 0.25, 0.5, 0.75, 0.9]), atol=0.03)
    np.testing.assert_allclose(np.quantile(np.log(aspect), [0.1, 0.5, 0.9]),
                               np.quantile(np.log(ref_aspect), [0.1, 0.5, 0.9]), atol=0.03)
    # Offsets uniform over the room left; the flip draw uniform in [0, 1).
    room = w < 256
    assert np.mean(x0[room] / (256 - w[room])) == pytest.approx(0.5, abs=0.03)
    assert 0 <= flips.min() and flips.max() < 1 and flips.mean() == pytest.approx(0.5, abs=0.03)
    # Seeded: the same seed gives the same window.
    again, _ = _tf_windows(200, 256, 50)
    np.testing.assert_array_equal(again, windows[:50])


@pytest.mark.parametrize("height, width", [(10, 1000), (1000, 10)])
def test_crop_falls_back_to_the_centred_clamped_window_like_torchvision(height, width):
    # No crop of 8–100 % of the area with aspect 3/4–4/3 fits a 1:100 strip.
    expected = torchvision_crop_windows(height, width, 1)[0]
    windows, _ = _tf_windows(height, width, 20)
    assert (windows == expected).all()
    y0, x0, h, w = (_np(t) for t in crop_boxes(20, height, width, (0.08, 1.0), (3 / 4, 4 / 3),
                                               keras.random.SeedGenerator(0)))
    np.testing.assert_allclose(np.stack([y0, x0, h, w], 1), np.tile(expected, (20, 1)), atol=0.5)


def test_full_crop_is_identity_and_output_size_is_honoured():
    x = _images(2, 24, 24)
    full = RandomResizedCrop(scale=(1.0, 1.0), ratio=(1.0, 1.0))
    np.testing.assert_array_equal(_np(full(x, training=True)), x)
    assert RandomResizedCrop(16, 12, seed=0)(_images(2, 40, 30), training=True).shape == (2, 16, 12, 3)
    assert RandomResizedCrop(16, 16, seed=0)(_images(1, 40, 30)[0], training=True).shape == (16, 16, 3)
    assert RandomResizedCrop(16, 16)(_images(2, 40, 30), training=False).shape == (2, 16, 16, 3)


def test_tensorflow_and_backend_independent_crops_agree():
    ramp = np.add.outer(np.arange(32.0), np.arange(32.0) * 2)[None, :, :, None]
    x = np.repeat(ramp, 3, axis=-1).astype("float32")
    y0, x0, h, w = (np.array([v], "float32") for v in (4.0, 6.0, 16.0, 20.0))
    a = _np(_crop_and_resize(x, y0, x0, h, w, 32, 32))
    b = _np(_affine_crop_and_resize(x, y0, x0, h, w, 32, 32))
    # Same linear ramp, sampled at (nearly) the same points.
    np.testing.assert_allclose(a[:, 2:-2, 2:-2], b[:, 2:-2, 2:-2], atol=2.5)
    assert a.min() >= 4 + 12 - 1 and a.max() <= (4 + 16) + 2 * (6 + 20) + 1


def test_color_jitter_brightness_scales_each_image_by_one_factor():
    x = np.full((64, 4, 4, 3), 100, "float32")
    x[:, 0] = 50
    out = _np(ColorJitter(brightness=0.4, contrast=0, saturation=0, seed=0)(x, training=True))
    factors = out / x
    assert np.allclose(factors, factors[:, :1, :1, :1], atol=1e-5)
    assert factors.min() >= 0.6 - 1e-5 and factors.max() <= 1.4 + 1e-5
    assert factors.std() > 0.1
    # Saturation leaves grey images grey; contrast keeps the mean.
    grey = np.full((8, 4, 4, 3), 90.0, "float32")
    grey[:, :2] = 30.0
    sat = _np(ColorJitter(0, 0, 0.4, seed=0)(grey, training=True))
    np.testing.assert_allclose(sat, grey, atol=1e-3)
    con = _np(ColorJitter(0, 0.4, 0, seed=0)(grey, training=True))
    np.testing.assert_allclose(con.mean(axis=(1, 2, 3)), grey.mean(axis=(1, 2, 3)), atol=1e-3)


def test_pca_lighting_adds_one_colour_shift_per_image_along_imagenet_components():
    x = np.full((256, 4, 4, 3), 128.0, "float32")
    out = _np(PCALighting(std=0.1, seed=0)(x, training=True))
    shift = out - x
    assert np.allclose(shift, shift[:, :1, :1, :], atol=1e-4)
    per_image = shift[:, 0, 0, :] / 255
    # The biggest component is almost (−1, −1, −1)/√3: shifts are mostly brightness.
    assert abs(np.corrcoef(per_image[:, 0], per_image[:, 2])[0, 1]) > 0.8
    assert per_image.std() == pytest.approx(0.1 * 0.2175 * 0.58, rel=0.3)
    np.testing.assert_array_equal(_np(PCALighting(std=0.0)(x, training=True)), x)


def test_layers_round_trip_config_and_keras_file(tmp_path):
    for layer in (RandomResizedCrop(20, 24, scale=(0.3, 0.9), seed=2), ColorJitter(0.1, 0.2, 0.3),
                  PCALighting(0.2)):
        clone = type(layer).from_config(layer.get_config())
        assert clone.get_config() == layer.get_config()
    model = kr.build_classifier(TINY, num_classes=3, weights=None, augment="standard")
    x = _images(2, 16, 16)
    path = str(tmp_path / "m.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    np.testing.assert_allclose(_np(loaded(x, training=False)), _np(model(x, training=False)),
                               atol=1e-6)
    names = [type(layer).__name__ for layer in loaded.get_layer("augment").layers]
    assert names == ["RandomResizedCrop", "ColorJitter", "PCALighting"]


def test_augment_dataset_keeps_uint8_and_labels_and_crops_to_image_size():
    x = _images(6, 40, 30)
    y = np.arange(6, dtype="int32")
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(4)
    out = list(augment_dataset(ds, "standard", seed=0, image_size=16))
    assert [tuple(b[0].shape) for b in out] == [(4, 16, 16, 3), (2, 16, 16, 3)]
    assert all(b[0].dtype == tf.uint8 for b in out)
    np.testing.assert_array_equal(np.concatenate([b[1] for b in out]), y)
    only_images = tf.data.Dataset.from_tensor_slices(x).batch(3)
    strong = list(augment_dataset(only_images, "strong", seed=0))
    assert strong[0].shape == (3, 40, 30, 3) and strong[0].dtype == tf.uint8
    with pytest.raises(ValueError, match="dataset must be a tf.data.Dataset"):
        augment_dataset(x, "light")


def test_flipping_crop_mirrors_about_half_the_images_exactly():
    x = _images(64, 12, 12)
    layer = RandomResizedCrop(scale=(1.0, 1.0), ratio=(1.0, 1.0), horizontal_flip=True, seed=0)
    out = _np(layer(x, training=True))
    same = [np.array_equal(o, i) for o, i in zip(out, x)]
    mirrored = [np.array_equal(o, i[:, ::-1]) for o, i in zip(out, x)]
    assert all(a or b for a, b in zip(same, mirrored))
    assert 16 < sum(mirrored) < 48
    # The backend-independent path mirrors too.
    ramp = np.tile(np.arange(12, dtype="float32")[None, None, :, None], (1, 12, 1, 3))
    one = np.array([1.0], "float32")
    flipped = _np(_affine_crop_and_resize(ramp, 0 * one, 12 * one, 12 * one, -12 * one, 12, 12))
    assert flipped[0, 6, 0, 0] > flipped[0, 6, -1, 0]


def test_fused_color_jitter_equals_the_three_steps_in_sequence():
    x = _images(4, 8, 8).astype("float32")
    layer = ColorJitter(0.4, 0.4, 0.4, seed=5)
    out = _np(layer(x, training=True))
    gen = keras.random.SeedGenerator(5)
    b, c, s = (_np(keras.random.uniform((4, 1, 1, 1), 0.6, 1.4, seed=gen)) for _ in range(3))
    luma = np.array([0.299, 0.587, 0.114], "float32")
    y = x * b
    mean = (y @ luma).mean(axis=(1, 2))[:, None, None, None]
    y = mean + (y - mean) * c
    gray = (y @ luma)[..., None]
    y = np.clip(gray + (y - gray) * s, 0, 255)
    np.testing.assert_allclose(out, y, atol=1e-2)
