"""Training data the way `keras.Model.fit` takes it: datasets, PyDatasets, or (x, y) + batch_size.

Every function that trains takes the same kinds of data and refuses anything else up front with a
message that says what to pass — never an input-shape error from deep inside Keras.
"""

import numpy as np
import pytest

import kerasrecipes as kr
from kerasrecipes.batches import ArrayBatches, as_batches
from tiny_models import TINY, tiny_arrays, tiny_dataset


def _model(num_classes=3):
    return kr.build_classifier(TINY, num_classes=num_classes, weights=None)


def test_as_batches_cuts_arrays_like_fit_and_reshuffles_each_epoch():
    x, y = tiny_arrays(n=10)
    batches = as_batches((x, y), batch_size=4, shuffle=True)
    assert isinstance(batches, ArrayBatches) and len(batches) == 3
    assert [len(batches[i][0]) for i in range(3)] == [4, 4, 2]
    first = np.concatenate([batches[i][1] for i in range(3)])
    assert sorted(first) == sorted(y)  # every sample once per epoch
    batches.on_epoch_end()
    second = np.concatenate([batches[i][1] for i in range(3)])
    assert sorted(second) == sorted(y)
    assert len(as_batches((x, y))) == 1  # 32 by default, like keras.Model.fit
    dataset = tiny_dataset()
    assert as_batches(dataset) is dataset
    assert as_batches(None, allow_none=True) is None


@pytest.mark.parametrize("data, message", [
    (None, "train is None: pass a tf.data.Dataset"),
    (np.zeros((4, 16, 16, 3), "uint8"), r"one array of shape \(4, 16, 16, 3\) without labels"),
    ((np.zeros((4, 16, 16, 3)), np.zeros(3)), "x has 4 samples but train\\[1\\] \\(y\\) has 3"),
    ((np.zeros((4, 16, 16, 3)), np.zeros(4), np.ones(4)), "sample weights are not supported"),
    ((np.zeros((0, 16, 16, 3)), np.zeros(0)), "train is empty"),
    ((x for x in range(3)), "is a generator .* can be read only once"),
    ("photos/", "train must be a tf.data.Dataset"),
])
def test_as_batches_refuses_what_fit_cannot_use_saying_what_to_pass(data, message):
    with pytest.raises(ValueError, match=message):
        as_batches(data, name="train")


def test_as_batches_refuses_dict_datasets_image_data_and_batch_size_with_a_dataset():
    import tensorflow as tf

    dicts = tf.data.Dataset.from_tensor_slices(
        {"image": np.zeros((4, 8, 8, 3)), "label": np.zeros(4)}).batch(2)
    with pytest.raises(ValueError, match=r"Dataset of dicts .*as_supervised=True"):
        as_batches(dicts)
    data = kr.array_datasets(*tiny_arrays(n=12), validation_split=0.25, batch_size=4, seed=0)
    with pytest.raises(ValueError, match=r"ImageData .*pass its train split"):
        as_batches(data)
    with pytest.raises(ValueError, match="batch_size applies to \\(x, y\\) arrays; train is a "
                       "tf.data.Dataset, already in batches"):
        as_batches(tiny_dataset(), batch_size=8)
    with pytest.raises(ValueError, match="batch_size"):
        as_batches(tiny_arrays(), batch_size=0)


def test_find_lr_takes_arrays_with_a_batch_size():
    """Used to fail deep inside Keras with an input-shape error."""
    x, y = tiny_arrays(n=16)
    result = kr.find_lr(_model(), (x, y), batch_size=4, num_steps=6, verbose=0)
    assert len(result.lrs) == 6 and np.isfinite(result.losses[0])
    with pytest.raises(ValueError, match="one array of shape"):
        kr.find_lr(_model(), x, num_steps=6, verbose=0)


def test_fine_tune_and_fit_take_arrays_like_keras_fit():
    x, y = tiny_arrays(n=16)
    xv, yv = tiny_arrays(n=6, seed=1)
    history = kr.fine_tune(_model(), (x, y), (xv, yv), head_epochs=1, epochs=1, batch_size=8,
                           verbose=0)
    assert len(history.history["val_loss"]) == 2
    history = kr.fit(_model(), (x, y), epochs=1, batch_size=8, verbose=0)
    assert len(history.history["loss"]) == 1
    with pytest.raises(ValueError, match="batch_size applies to \\(x, y\\) arrays"):
        kr.fit(_model(), tiny_dataset(), epochs=1, batch_size=8, verbose=0)
    with pytest.raises(ValueError, match="is a generator"):
        kr.fine_tune(_model(), iter([(x, y)]), epochs=1, verbose=0)


def test_doctor_and_distill_take_arrays(tmp_path):
    x, y = tiny_arrays(n=16)
    report = kr.doctor(_model(), (x, y), (x[:6], y[:6]), out_dir=str(tmp_path / "doctor"),
                       overfit_batches=1, overfit_steps=2, lr_finder=False, batch_size=8,
                       verbose=0)
    assert (tmp_path / "doctor" / "report.md").exists() and report is not None
    teacher, student = _model(), _model()
    history = kr.distill(teacher, student, (x, y), epochs=1, batch_size=8, verbose=0)
    assert len(history.history["loss"]) == 1
