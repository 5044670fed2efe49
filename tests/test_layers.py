import keras
import numpy as np
import pytest

from kerasrecipes.backbones import CAFFE_STYLE, LITE_STYLE, TF_STYLE, TORCH_STYLE
from kerasrecipes.layers import NormalizeImage

PIXELS = np.random.default_rng(0).integers(0, 256, (2, 4, 4, 3)).astype("uint8")


@pytest.mark.parametrize(
    "style, keras_mode",
    [(TF_STYLE, "tf"), (TORCH_STYLE, "torch"), (CAFFE_STYLE, "caffe")],
)
def test_matches_keras_applications_preprocess_input(style, keras_mode):
    from keras.src.applications.imagenet_utils import preprocess_input

    expected = preprocess_input(PIXELS.astype("float32"), mode=keras_mode)
    got = keras.ops.convert_to_numpy(style.layer()(PIXELS))
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-4)


def test_lite_style_is_x_minus_127_over_128():
    got = keras.ops.convert_to_numpy(LITE_STYLE.layer()(PIXELS))
    np.testing.assert_allclose(got, (PIXELS.astype("float32") - 127) / 128, rtol=1e-6)


def test_adapt_sets_channel_mean_and_std():
    rng = np.random.default_rng(1)
    images = np.stack(
        [rng.normal(m, s, (64, 8, 8)) for m, s in ((50, 5), (100, 20), (200, 10))], axis=-1
    ).clip(0, 255)
    layer = NormalizeImage(scale=1.0, mean=None, std=None)
    assert not layer.adapted
    # A dataset of (images, labels) batches, as kerasrecipes pipelines yield.
    layer.adapt([(images[:32], None), (images[32:], None)])
    np.testing.assert_allclose(layer.mean, images.reshape(-1, 3).mean(0), rtol=1e-6)
    np.testing.assert_allclose(layer.std, images.reshape(-1, 3).std(0), rtol=1e-6)
    out = keras.ops.convert_to_numpy(layer(images.astype("float32")))
    np.testing.assert_allclose(out.reshape(-1, 3).mean(0), 0, atol=1e-3)
    np.testing.assert_allclose(out.reshape(-1, 3).std(0), 1, atol=1e-3)


def test_unadapted_layer_says_what_to_do():
    with pytest.raises(ValueError, match="call `adapt\\(\\)`"):
        NormalizeImage(mean=None, std=None)(PIXELS)


def test_bad_arguments():
    with pytest.raises(ValueError, match="channel_order must be 'rgb' or 'bgr'"):
        NormalizeImage(channel_order="rbg")
    with pytest.raises(ValueError, match="std must be positive"):
        NormalizeImage(std=0.0)


def test_config_round_trip_and_keras_file(tmp_path):
    layer = NormalizeImage(scale=0.5, mean=[1.0, 2.0, 3.0], std=[2.0, 2.0, 2.0], channel_order="bgr")
    clone = NormalizeImage.from_config(layer.get_config())
    assert clone.get_config() == layer.get_config()
    inputs = keras.Input((4, 4, 3), dtype="uint8")
    model = keras.Model(inputs, layer(inputs))
    model.save(tmp_path / "m.keras")
    restored = keras.saving.load_model(tmp_path / "m.keras")
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(restored(PIXELS)), keras.ops.convert_to_numpy(model(PIXELS))
    )
