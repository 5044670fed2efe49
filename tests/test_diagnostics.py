import math
import os

import keras
import numpy as np
import pytest

import kerasrecipes as kr
from kerasrecipes import diagnostics
from kerasrecipes.diagnostics import (
    check_initial_loss,
    check_inputs,
    check_labels,
    check_output_loss,
    check_weights,
    overfit_small_batch,
)
from tiny_models import TINY, tiny_arrays, tiny_batches


def _model(num_classes=3, **kwargs):
    kwargs.setdefault("dropout", 0.0)
    return kr.build_classifier(TINY, num_classes=num_classes, weights=None, **kwargs)


def _weights(model):
    return [keras.ops.convert_to_numpy(v).copy() for v in model.weights]


def _scale_kernels(model, factor):
    for variable in model.weights:
        if variable.path.endswith("kernel"):
            variable.assign(keras.ops.convert_to_numpy(variable) * factor)


# Pure functions.


# Healthy models pass.


def test_a_healthy_classifier_passes_every_static_check():
    model = _model()
    data = tiny_batches()
    assert check_inputs(model, data).status == "pass"
    assert check_labels(model, data, num_classes=3).status == "pass"
    assert check_output_loss(model, data).status == "pass"
    assert check_weights(model).status == "pass"
    result = check_initial_loss(model, data)
    assert result.status == "pass", result
    assert result.details["expected"] == pytest.approx(math.log(3))
    assert result.details["loss"] == pytest.approx(math.log(3), rel=0.02)


def test_initial_loss_of_a_sigmoid_model_is_ln_2():
    model = _model(num_classes=1, task="binary")
    result = check_initial_loss(model, tiny_batches(num_classes=2))
    assert result.status == "pass", result
    assert result.details["expected"] == pytest.approx(math.log(2))


# Broken models are caught.


def test_softmax_output_with_from_logits_loss_is_caught():
    model = _model()
    model.compile(loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    result = check_output_loss(model, tiny_batches())
    assert result.status == "fail"
    assert "from_logits=True" in result.summary and result.advice


def test_logits_fed_to_a_probability_loss_is_caught():
    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Dense(3, name="logits")(inputs))
    result = check_output_loss(model, loss="sparse_categorical_crossentropy")
    assert result.status == "fail" and "linear" in result.summary


def test_huge_init_fails_the_initial_loss_and_weight_checks():
    model = _model()
    _scale_kernels(model, 300.0)
    result = check_initial_loss(model, tiny_batches())
    assert result.status == "fail", result
    assert result.details["loss"] > 2 * math.log(3)
    assert any("initialisation" in a for a in result.advice)
    assert check_weights(model).status == "fail"


def test_all_zero_init_is_caught_and_cannot_overfit():
    model = _model()
    _scale_kernels(model, 0.0)
    weights = check_weights(model)
    assert weights.status == "fail" and "all 0" in weights.advice[0]
    result = overfit_small_batch(model, tiny_batches(n=24), batches=3, steps=30, lr=1e-2)
    assert result.status == "fail"
    assert result.details["final_accuracy"] < 0.9
    assert any("initialisation" in a for a in result.advice)


def test_wrong_label_count_is_caught():
    data = tiny_batches(num_classes=3)
    too_few_outputs = check_labels(_model(num_classes=2), data)
    assert too_few_outputs.status == "fail"
    assert "[0, 2]" in too_few_outputs.advice[0]
    too_many_outputs = check_labels(_model(num_classes=5), data, num_classes=3)
    assert too_many_outputs.status == "fail"
    assert "3 classes" in too_many_outputs.advice[-1]


def test_zero_to_one_floats_and_normalised_images_are_caught():
    model = _model()
    images, labels = tiny_arrays()
    result = check_inputs(model, (images.astype("float32") / 255.0, labels))
    assert result.status == "fail" and "[0, 1]" in result.advice[0]
    normalised = (images.astype("float32") / 127.5 - 1, labels)
    assert "normalised" in check_inputs(model, normalised).advice[0]


def test_regularisation_left_on_is_flagged():
    inputs = keras.Input((16, 16, 3), dtype="uint8")
    x = keras.layers.Flatten()(keras.layers.Rescaling(1 / 255)(inputs))
    outputs = keras.layers.Dense(
        3, activation="softmax", kernel_regularizer=keras.regularizers.L2(10.0),
        kernel_initializer=keras.initializers.RandomNormal(stddev=0.01),
    )(x)
    result = check_initial_loss(keras.Model(inputs, outputs), tiny_batches())
    assert result.status == "warn"
    assert result.details["regularization"] > 0.1
    assert any("Regularisation" in a for a in result.advice)


# Overfitting a few batches.


def test_overfit_small_batch_memorises_and_leaves_the_model_untouched():
    model = _model(dropout=0.5, augment="light")
    model.compile(loss="sparse_categorical_crossentropy")
    before = _weights(model)
    result = overfit_small_batch(model, tiny_batches(n=24), batches=3, steps=150, lr=3e-3)
    assert result.status == "pass", result
    assert result.details["final_accuracy"] >= 0.99
    assert result.details["reached_at_step"] <= 150
    assert result.details["images"] == 24 and result.details["batches"] == 3
    assert all(np.array_equal(a, b) for a, b in zip(before, _weights(model)))
    assert model.get_layer("head").get_layer("dropout").rate == 0.5


def test_learning_rate_ten_blows_up():
    result = overfit_small_batch(_model(), tiny_batches(n=24), batches=3, steps=30, lr=10.0)
    assert result.status in ("warn", "fail")  # memorised in spite of the LR, or not at all
    nan = result.details["non_finite_at_step"] is not None
    assert nan or result.details["diverged"]
    assert any("too high" in a for a in result.advice)


def test_bad_arguments_name_the_argument():
    with pytest.raises(ValueError, match="steps=0"):
        overfit_small_batch(_model(), tiny_batches(), steps=0)
    with pytest.raises(ValueError, match="lr=-1"):
        overfit_small_batch(_model(), tiny_batches(), lr=-1)
    with pytest.raises(ValueError, match="batches=0"):
        check_inputs(_model(), tiny_batches(), batches=0)


# The doctor report.


def test_doctor_writes_a_markdown_report_with_figures(tmp_path):
    model = _model()
    before = _weights(model)
    out = str(tmp_path / "report")
    report = kr.doctor(model, tiny_batches(n=24), tiny_batches(seed=1), out_dir=out,
                       class_names=["a", "b", "c"], overfit_batches=3, overfit_steps=100,
                       overfit_lr=3e-3, lr_finder_steps=20, verbose=0)
    names = [c.name for c in report.checks]
    for name in ("inputs", "labels", "output_loss", "weights", "initial_loss",
                 "overfit_small_batch", "lr_range_test"):
        assert name in names
    assert report.ok, [str(c) for c in report.checks]
    text = open(report.path).read()
    assert "**Verdict: all checks passed.**" in text
    assert "| initial_loss | PASS |" in text
    for png in ("inputs.png", "overfit.png"):
        assert open(os.path.join(out, png), "rb").read(8) == b"\x89PNG\r\n\x1a\n"
        assert f"]({png})" in text
    lr_check = report["lr_range_test"]
    if lr_check.status == "skip":
        assert "unavailable" in lr_check.summary
    else:
        assert os.path.exists(os.path.join(out, "lr_finder.png"))
    assert all(np.array_equal(a, b) for a, b in zip(before, _weights(model)))


def test_doctor_report_names_the_failed_checks(tmp_path):
    model = _model()
    model.compile(loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    report = diagnostics.doctor(model, tiny_batches(), out_dir=str(tmp_path), class_names="abcd",
                                lr_finder=False, verbose=0)
    assert not report.ok
    assert report["labels"].status == "fail"
    assert report["output_loss"].status == "fail"
    assert report["overfit_small_batch"].status == "skip"
    text = open(report.path).read()
    assert "check(s) failed" in text and "output_loss" in text


@pytest.mark.slow
def test_doctor_cli_on_the_demo_data(tmp_path, capsys):
    from kerasrecipes.cli import main

    out = str(tmp_path / "doctor")
    status = main(["doctor", "--backbone", "efficientnet_lite0", "--image-size", "128",
                   "--out", out])
    text = open(os.path.join(out, "report.md")).read()
    assert status == 0, text
    assert "**Verdict: all checks passed.**" in text
    for row in ("| inputs | PASS |", "| labels | PASS |", "| output_loss | PASS |",
                "| weights | PASS |", "| initial_loss | PASS |", "| overfit_small_batch | PASS |"):
        assert row in text
    for png in ("inputs.png", "overfit.png", "lr_finder.png"):
        assert open(os.path.join(out, png), "rb").read(8) == b"\x89PNG\r\n\x1a\n"
    assert "all checks passed" in capsys.readouterr().out


# Multi-task models (kr.build_multitask): every check, head by head.


def _two_task(**kwargs):
    kwargs.setdefault("dropout", 0.0)
    return kr.build_multitask(TINY, {"label": 3, "level": "regression"}, weights=None, **kwargs)


def _two_task_data(n=24):
    """(images, {"label": class, "level": mean of the blue channel / 255}): both learnable."""
    images, labels = tiny_arrays(n=n)
    level = (images[..., 2].mean(axis=(1, 2)) / 255).astype("float32")[:, None]
    return images, {"label": labels, "level": level}


def test_a_healthy_multitask_model_passes_head_by_head():
    model = _two_task()
    data = _two_task_data()
    assert check_labels(model, data).status == "pass"
    output_loss = check_output_loss(model, data)
    assert output_loss.status == "pass", output_loss
    assert set(output_loss.details["heads"]) == {"label", "level"}
    result = check_initial_loss(model, data)
    assert result.status == "pass", result
    label, level = result.details["heads"]["label"], result.details["heads"]["level"]
    assert label["expected"] == pytest.approx(math.log(3))
    assert label["loss"] == pytest.approx(math.log(3), rel=0.02)
    # Regression: no chance value; the loss is reported next to predicting 0 (outputs ≈ 0).
    assert level["status"] == "skip" and "expected" not in level
    targets = data[1]["level"]
    assert level["zero_prediction"] == pytest.approx(float(np.mean(targets ** 2)), rel=1e-4)
    assert level["loss"] == pytest.approx(level["zero_prediction"], rel=0.1)
    assert result.details["loss"] == pytest.approx(label["loss"] + level["loss"], rel=1e-5)


def test_multitask_head_errors_are_caught_and_named():
    model = _two_task()
    model.compile(loss={"label": keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                        "level": "mse"})
    result = check_output_loss(model, _two_task_data())
    assert result.status == "fail"
    assert result.details["heads"]["label"]["status"] == "fail"
    assert result.details["heads"]["level"]["status"] == "pass"
    assert result.advice and all(a.startswith("label: ") for a in result.advice)
    # A huge last layer on the classification head: its initial loss is far above ln 3.
    head = model.get_layer("head").get_layer("label")
    head.kernel.assign(keras.ops.convert_to_numpy(head.kernel) * 3000.0)
    initial = check_initial_loss(model, _two_task_data(), loss={
        "label": "sparse_categorical_crossentropy", "level": "mse"})
    assert initial.status == "fail" and "label: " in initial.summary
    assert initial.details["heads"]["label"]["status"] == "fail"
    images, labels = _two_task_data()
    labels["label"] = labels["label"] + 3  # labels 3..5 for a 3-class head
    assert check_labels(model, (images, labels)).details["heads"]["label"]["status"] == "fail"


def test_overfit_small_batch_memorises_both_heads_of_a_multitask_model():
    keras.utils.set_random_seed(0)
    model = _two_task(dropout=0.3)
    before = _weights(model)
    result = overfit_small_batch(model, _two_task_data(), batches=3, steps=240, lr=3e-3,
                                 target=0.95)
    assert result.status == "pass", result
    assert result.details["final_accuracy"] >= 0.95
    # Measured at inference too (worst head, R² for regression; BatchNorm's moving statistics
    # lag behind after so few steps, so it is lower).
    assert math.isfinite(result.details["inference_accuracy"])
    assert all(np.array_equal(a, b) for a, b in zip(before, _weights(model)))
    diverged = overfit_small_batch(model, _two_task_data(), batches=3, steps=30, lr=50.0)
    assert diverged.status in ("warn", "fail")
    assert any("too high" in a for a in diverged.advice)


def test_multitask_checks_need_dict_labels_and_a_multitask_model():
    model = _two_task()
    images, labels = tiny_arrays(n=8)
    with pytest.raises(ValueError, match=r"\{task: labels\}.*'label', 'level'"):
        check_initial_loss(model, (images, labels))
    with pytest.raises(ValueError, match="one loss per task"):
        check_output_loss(model, loss="sparse_categorical_crossentropy")
    inputs = keras.Input((4,))
    two_outputs = keras.Model(inputs, {"a": keras.layers.Dense(2, activation="softmax")(inputs),
                                       "b": keras.layers.Dense(1)(inputs)})
    with pytest.raises(ValueError, match="kr.build_multitask"):
        check_output_loss(two_outputs)


def test_doctor_checks_the_curves_of_a_run(tmp_path):
    out = str(tmp_path / "doctor")
    rising = {"loss": [1.0, 1.3, 1.8, 2.6], "val_loss": [1.0, 1.2, 1.7, 2.5]}
    report = kr.doctor(_model(), tiny_batches(), out_dir=out, class_names=["a", "b", "c"],
                       overfit_batches=1, overfit_steps=10, lr_finder=False, history=rising,
                       verbose=0)
    curves = report["training_curves"]
    assert curves.status == "fail" and curves.details["patterns"] == ["loss_rising"]
    text = open(report.path).read()
    assert "| training_curves | FAIL |" in text and "](history.png)" in text
    assert "- **training_curves**: Lower the learning rate" in text
    assert open(os.path.join(out, "history.png"), "rb").read(8) == b"\x89PNG\r\n\x1a\n"
    healthy = diagnostics.check_history({"loss": [1.0, 0.6, 0.4, 0.3],
                                         "val_loss": [1.0, 0.7, 0.5, 0.45]})
    assert healthy.status == "pass" and healthy.details["patterns"] == []
    overfit = diagnostics.check_history({"loss": [1.0, 0.5, 0.2, 0.1, 0.05],
                                         "val_loss": [1.0, 0.7, 0.8, 0.9, 1.1]})
    assert overfit.status == "warn" and overfit.advice[0].startswith("overfitting: ")
