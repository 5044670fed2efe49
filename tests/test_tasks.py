"""Tests for kerasrecipes.tasks: one reading of a model's task, and the defaults that follow."""

import keras
import numpy as np
import pytest

import kerasrecipes as kr
from kerasrecipes import diagnostics
from kerasrecipes.tasks import (
    default_loss,
    default_metrics,
    is_multitask,
    loss_fn,
    model_loss,
    task_kinds,
    task_of,
)
from tiny_models import TINY, tiny_arrays


@pytest.mark.parametrize("task, num_classes, expected_units", [
    ("multiclass", 3, 3), ("binary", 1, 1), ("multilabel", 3, 3),
])
def test_task_of_reads_the_output_layer(task, num_classes, expected_units):
    model = kr.build_scratch_cnn(num_classes, image_size=16, stages=1, dense_units=(),
                                 task=task)
    assert model.output_shape[-1] == expected_units
    assert task_of(model) == task
    assert not is_multitask(model)
    loss = default_loss(task)
    assert isinstance(loss, keras.losses.SparseCategoricalCrossentropy if task == "multiclass"
                      else keras.losses.BinaryCrossentropy)
    assert default_metrics(task)[0].name == "accuracy"


def test_task_of_a_plain_keras_model_follows_its_output_activation():
    inputs = keras.Input((4,))
    softmax = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(inputs))
    sigmoid = keras.Model(inputs, keras.layers.Dense(1, activation="sigmoid")(inputs))
    assert task_of(softmax) == "multiclass"
    assert task_of(sigmoid) == "binary"


@pytest.mark.parametrize("heads", [{"label": 3}, {"label": 3, "brightness": "regression"}])
def test_every_dict_output_model_is_multitask_one_task_or_several(heads):
    model = kr.build_multitask(TINY, heads, weights=None)
    assert is_multitask(model)
    assert task_of(model) == "multitask"
    assert set(task_kinds(model)) == set(heads)
    assert set(model_loss(model)) == set(heads)
    with pytest.raises(ValueError, match="one loss and metric per task.*multitask_compile_args"):
        default_loss(task_of(model))


def test_a_single_task_multitask_model_trains_and_is_checked_per_head():
    # A one-head build_multitask model has a dict output too: the recipes compile it with one
    # loss per task (they used to look for a `predictions` layer it does not have).
    keras.utils.set_random_seed(0)
    images, labels = tiny_arrays(n=16)
    data = kr.array_datasets(images, labels, batch_size=8, seed=0).train.map(
        lambda x, y: (x, {"label": y}))
    model = kr.build_multitask(TINY, {"label": 3}, weights=None, dropout=0.0)
    history = kr.fit(model, data, epochs=1, lr=1e-2, verbose=0)
    assert np.isfinite(history.history["loss"]).all()
    assert "accuracy" in history.history or "label_accuracy" in history.history
    result = diagnostics.check_initial_loss(kr.build_multitask(TINY, {"label": 3}, weights=None),
                                            data, batches=1)
    assert set(result.details["heads"]) == {"label"}


def test_loss_fn_weights_the_tasks_of_a_dict_loss():
    mse = keras.losses.MeanSquaredError()
    total = loss_fn({"a": mse, "b": "mean_absolute_error"}, weights={"a": 2.0})
    y_true = {"a": np.zeros((2, 1), "float32"), "b": np.zeros((2, 1), "float32")}
    y_pred = {"a": np.ones((2, 1), "float32"), "b": np.full((2, 1), 3.0, "float32")}
    assert float(keras.ops.convert_to_numpy(total(y_true, y_pred))) == pytest.approx(2.0 + 3.0)
