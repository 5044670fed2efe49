"""The pure verdicts of the sanity checks (`kerasrecipes.diagnostics.verdicts`): no model needed."""

import math

import numpy as np
import pytest

from kerasrecipes.diagnostics import classify_output_loss, expected_initial_loss, prior_loss
from kerasrecipes.diagnostics.verdicts import classify_labels, combine


def test_expected_initial_loss_is_ln_n_and_ln_2():
    assert expected_initial_loss("multiclass", 10) == pytest.approx(2.302585, abs=1e-6)
    assert expected_initial_loss("multiclass", 10, label_smoothing=0.1) == pytest.approx(
        math.log(10))
    assert expected_initial_loss("binary", 1) == pytest.approx(math.log(2))
    assert expected_initial_loss("multilabel", 5) == pytest.approx(math.log(2))
    with pytest.raises(ValueError, match="num_classes=1"):
        expected_initial_loss("multiclass", 1)
    with pytest.raises(ValueError, match="task='regression'"):
        expected_initial_loss("regression", 3)


def test_prior_loss_is_the_entropy_of_the_class_frequencies():
    assert prior_loss([0, 1, 2, 0, 1, 2], "multiclass", 3) == pytest.approx(math.log(3))
    labels = [0] * 9 + [1]
    expected = -(0.9 * math.log(0.9) + 0.1 * math.log(0.1))
    assert prior_loss(labels, "multiclass", 2) == pytest.approx(expected, rel=1e-5)
    assert prior_loss(np.array(labels)[:, None], "binary", 1) == pytest.approx(expected, rel=1e-5)
    # Smoothing moves the targets towards uniform: the loss of the prior grows.
    assert prior_loss(labels, "multiclass", 2, label_smoothing=0.2) > expected


@pytest.mark.parametrize(
    "activation, loss, from_logits, task, status",
    [
        ("softmax", "sparse_categorical_crossentropy", False, "multiclass", "pass"),
        ("linear", "sparse_categorical_crossentropy", True, None, "pass"),
        ("sigmoid", "binary_crossentropy", False, "binary", "pass"),
        ("softmax", "sparse_categorical_crossentropy", True, "multiclass", "fail"),
        ("sigmoid", "binary_crossentropy", True, "binary", "fail"),
        ("linear", "categorical_crossentropy", False, None, "fail"),
        ("tanh", "sparse_categorical_crossentropy", False, None, "fail"),
        ("tanh", "mean_squared_error", False, "multiclass", "fail"),
        ("tanh", "mean_squared_error", False, "regression", "warn"),
        ("linear", "mean_squared_error", False, "regression", "pass"),
        ("sigmoid", "sparse_categorical_crossentropy", False, None, "warn"),
    ],
)
def test_classify_output_loss(activation, loss, from_logits, task, status):
    assert classify_output_loss(activation, loss, from_logits, task)[0] == status


def test_classify_output_loss_checks_the_label_format():
    onehot = classify_output_loss("softmax", "sparse_categorical_crossentropy", False,
                                  "multiclass", "onehot")
    assert onehot[0] == "fail" and "categorical_crossentropy" in onehot[2][0]
    assert classify_output_loss("softmax", "categorical_crossentropy", False, "multiclass",
                                "int")[0] == "fail"


def test_classify_labels_tells_int_onehot_multihot_and_float():
    assert classify_labels(np.array([0, 2, 1]), 3) == "int"
    assert classify_labels(np.eye(3)[[0, 2]], 3) == "onehot"
    assert classify_labels(np.array([[1, 0, 1], [0, 1, 1]]), 3) == "multihot"
    assert classify_labels(np.array([[0.2, 0.8, 0.0]]), 3) == "float"


def test_combine_keeps_the_worst_head():
    result = combine("labels", {"a": ("pass", "ok", [], {}), "b": ("warn", "hm", ["do x"], {}),
                                "c": ("skip", "n/a", [], {})})
    assert result.status == "warn" and result.advice == ["b: do x"]
    assert result.details["heads"]["b"]["status"] == "warn"
