import keras
import numpy as np
import pytest
import tensorflow as tf

import kerasrecipes as kr
from kerasrecipes.tta import predict_tta, tta_accuracy, tta_view
from tiny_models import TINY, tiny_dataset


def _model():
    keras.utils.set_random_seed(0)
    return kr.build_classifier(TINY, num_classes=3, weights=None, dropout=0.0)


def _images(n=5):
    return np.random.default_rng(0).integers(0, 256, (n, 16, 16, 3)).astype("uint8")


def test_one_view_is_plain_prediction_and_two_views_average_the_mirror():
    model, x = _model(), _images()
    plain = model.predict(x, verbose=0)
    np.testing.assert_allclose(predict_tta(model, x, n=1, batch_size=2), plain, atol=1e-6)
    mirrored = model.predict(x[:, :, ::-1], verbose=0)
    np.testing.assert_allclose(predict_tta(model, x, n=2), (plain + mirrored) / 2, atol=1e-6)
    probs = predict_tta(model, x, n=8)
    assert probs.shape == (5, 3)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)


def test_views_cycle_crops_and_flip_false_never_mirrors():
    x = _images(2)
    assert np.array_equal(keras.ops.convert_to_numpy(tta_view(x, 1)), x[:, :, ::-1])
    for index in range(6):
        view = keras.ops.convert_to_numpy(tta_view(x, index, flip=False))
        assert view.shape == x.shape and view.dtype == np.uint8
        assert not np.array_equal(view, x[:, :, ::-1])
    # View 2 is the central 87.5% crop resized back: the centre pixel barely moves.
    center = keras.ops.convert_to_numpy(tta_view(np.tile(np.arange(16, dtype="uint8")[None, None, :, None] * 10,
                                                         (1, 16, 1, 3)), 2))
    assert center[0, 8, 0, 0] > 0 and center[0, 8, -1, 0] < 150


def test_datasets_and_accuracy_report():
    model = _model()
    ds = tiny_dataset()
    probs = predict_tta(model, ds, n=4)
    assert probs.shape == (16, 3)
    report = tta_accuracy(model, ds, n=4)
    assert set(report) == {"accuracy", "tta_accuracy", "delta"}
    assert report["delta"] == pytest.approx(report["tta_accuracy"] - report["accuracy"])


def test_bad_arguments():
    model = _model()
    with pytest.raises(ValueError, match="n must be an int >= 1"):
        predict_tta(model, _images(), n=0)
    with pytest.raises(ValueError, match="crop_fraction must be in"):
        predict_tta(model, _images(), crop_fraction=1.5)
    with pytest.raises(ValueError, match="images is empty"):
        predict_tta(model, tf.data.Dataset.from_tensor_slices(_images()).take(0).batch(2))
