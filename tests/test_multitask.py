import keras
import numpy as np
import pytest
import tensorflow as tf

import kerasrecipes as kr
from kerasrecipes.multitask import multitask_compile_args, task_kinds, task_loss_weights
from tiny_models import TINY


def _two_task_dataset(n=16, seed=0):
    """Class = the bright channel; 'brightness' = the image's mean level / 255 (regression)."""
    rng = np.random.default_rng(seed)
    labels = (np.arange(n) % 3).astype("int32")
    images = rng.integers(0, 60, (n, 16, 16, 3)).astype("uint8")
    for i, label in enumerate(labels):
        images[i, :, :, label] += 150
    brightness = (images.mean(axis=(1, 2, 3)) / 255).astype("float32")[:, None]
    return tf.data.Dataset.from_tensor_slices(
        (images, {"label": labels, "brightness": brightness})
    ).batch(8)


def test_one_backbone_one_output_per_task():
    model = kr.build_multitask(TINY, {"label": 3, "brightness": "regression", "flag": "binary"},
                               weights=None, loss_weights={"brightness": 2.0})
    out = model(np.zeros((2, 16, 16, 3), "uint8"), training=False)
    assert {k: tuple(v.shape) for k, v in out.items()} == {
        "label": (2, 3), "brightness": (2, 1), "flag": (2, 1)}
    assert [layer.name for layer in model.layers[1:]] == ["augment", "preprocess", "backbone", "head"]
    assert task_kinds(model) == {"label": "multiclass", "brightness": "regression", "flag": "binary"}
    assert multitask_compile_args(model)["loss_weights"] == {"label": 1.0, "brightness": 2.0,
                                                             "flag": 1.0}


def test_fine_tune_trains_both_tasks_and_the_model_reloads(tmp_path):
    keras.utils.set_random_seed(0)
    model = kr.build_multitask(TINY, {"label": 3, "brightness": "regression"}, weights=None,
                               dropout=0.0)
    history = kr.fine_tune(model, _two_task_dataset(), _two_task_dataset(seed=1), head_epochs=1,
                           epochs=1, lr=1e-2, verbose=0)
    for key in ("loss", "label_loss", "brightness_loss", "label_accuracy", "brightness_mae",
                "val_label_accuracy"):
        assert key in history.history, key
    assert [s["name"] for s in history.stages] == ["head", "fine_tune"]
    path = str(tmp_path / "multi.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    x = next(iter(_two_task_dataset()))[0]
    for task in ("label", "brightness"):
        np.testing.assert_allclose(keras.ops.convert_to_numpy(loaded(x, training=False)[task]),
                                   keras.ops.convert_to_numpy(model(x, training=False)[task]),
                                   atol=1e-5)
    # Kinds are read back from the output activations after a reload.
    assert task_kinds(loaded) == {"label": "multiclass", "brightness": "regression"}


def test_bad_heads_name_the_task():
    with pytest.raises(ValueError, match="heads\\['label'\\] must be >= 2 classes"):
        kr.build_multitask(TINY, {"label": 1}, weights=None)
    with pytest.raises(ValueError, match="heads\\['x'\\] must be a number of classes"):
        kr.build_multitask(TINY, {"x": "cats"}, weights=None)
    with pytest.raises(ValueError, match="loss_weights names unknown tasks"):
        kr.build_multitask(TINY, {"label": 3}, weights=None, loss_weights={"other": 1.0})


def test_kinds_and_loss_weights_survive_save_load_and_train_on(tmp_path):
    # Nothing rides on Python attributes of the model: the kinds come from the output layers,
    # the loss weights from the compile config that a .keras file keeps.
    keras.utils.set_random_seed(0)
    model = kr.build_multitask(TINY, {"label": 3, "brightness": "regression"}, weights=None,
                               dropout=0.0, loss_weights={"label": 0.5, "brightness": 3.0})
    assert not hasattr(model, "task_kinds") and not hasattr(model, "task_loss_weights")
    weights = {"label": 0.5, "brightness": 3.0}
    assert task_loss_weights(model) == weights
    path = str(tmp_path / "multi.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    assert task_kinds(loaded) == {"label": "multiclass", "brightness": "regression"}
    assert task_loss_weights(loaded) == weights
    assert multitask_compile_args(loaded)["loss_weights"] == weights

    # Trained (and so recompiled) by a recipe, saved and loaded again: still the same weights,
    # and the weighted total is the loss Keras reports.
    kr.fit(loaded, _two_task_dataset(), epochs=1, verbose=0)
    assert task_loss_weights(loaded) == weights
    loaded.save(path)
    again = keras.models.load_model(path)
    assert task_loss_weights(again) == weights
    logs = again.evaluate(_two_task_dataset(), verbose=0, return_dict=True)
    np.testing.assert_allclose(
        logs["loss"], 0.5 * logs["label_loss"] + 3.0 * logs["brightness_loss"], rtol=1e-4)
    history = kr.fit(again, _two_task_dataset(), epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])


def test_loss_weights_of_a_model_saved_by_earlier_versions_are_found():
    # tests/data/legacy/multitask.keras: saved after kr.fit by the version that kept the
    # weights in Python attributes (which the file lost); its compile config kept them.
    import os

    path = os.path.join(os.path.dirname(__file__), "data", "legacy", "multitask.keras")
    loaded = keras.models.load_model(path)
    assert task_kinds(loaded) == {"label": "multiclass", "flag": "binary", "score": "regression"}
    assert task_loss_weights(loaded) == {"label": 1.0, "flag": 0.5, "score": 2.0}


def test_a_one_unit_multilabel_head_is_a_binary_head():
    model = kr.build_multitask(TINY, {"a": {"kind": "multilabel", "units": 1},
                                      "b": {"kind": "binary", "units": 3}}, weights=None)
    assert task_kinds(model) == {"a": "binary", "b": "multilabel"}
