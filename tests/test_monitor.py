import os

import keras
import numpy as np
import pytest

import kerasrecipes as kr
from kerasrecipes.monitor import (
    TrainingMonitor,
    activation_stats,
    gradient_alerts,
)
from tiny_models import TINY, tiny_arrays, tiny_batches

PNG = b"\x89PNG\r\n\x1a\n"


def _model(**kwargs):
    return kr.build_classifier(TINY, num_classes=3, weights=None, dropout=0.0, **kwargs)


def _reference_gradient(model, images, labels, variable):
    """d(mean cross-entropy)/d(variable) at inference, computed the backend's own way."""
    backend = keras.backend.backend()
    trainable = model.trainable_variables
    index = next(i for i, v in enumerate(trainable) if v is variable)

    def loss_of(values):
        non_trainable = [v.value for v in model.non_trainable_variables]
        predictions, _ = model.stateless_call(values, non_trainable, images, training=False)
        return keras.ops.mean(keras.losses.sparse_categorical_crossentropy(labels, predictions))

    values = [v.value for v in trainable]
    if backend == "tensorflow":
        import tensorflow as tf

        with tf.GradientTape() as tape:
            loss = loss_of(values)
        return float(loss), tape.gradient(loss, values[index])
    if backend == "jax":
        import jax

        loss, gradients = jax.value_and_grad(loss_of)(values)
        return float(loss), gradients[index]
    if backend == "torch":
        import torch

        values = [v.detach().requires_grad_(True) for v in values]
        loss = loss_of(values)
        return float(loss), torch.autograd.grad(loss, values[index])[0]
    pytest.skip(f"no gradients on the {backend} backend")


def test_activation_stats_zeros_dead_units_and_saturation():
    values = np.zeros((4, 3, 3, 4))
    values[..., 0] = 1.0  # unit 0 alive everywhere
    values[0, 0, 0, 1] = 2.0  # unit 1 alive once; units 2, 3 dead
    stats = activation_stats(values, "relu")
    assert stats["dead_units"] == pytest.approx(0.5)
    assert stats["zero_fraction"] == pytest.approx(1 - (36 + 1) / 144)
    assert stats["mean"] == pytest.approx(values.mean())
    tanh = activation_stats(np.array([[0.99, -0.999, 0.1, 0.5]]), "tanh")
    assert tanh["saturated_fraction"] == pytest.approx(0.5) and tanh["dead_units"] == 0
    sigmoid = activation_stats(np.array([[0.01, 0.5, 0.995, 0.6]]), "sigmoid")
    assert sigmoid["saturated_fraction"] == pytest.approx(0.5)


def test_gradient_alerts():
    names = ["first", "middle", "last"]
    assert gradient_alerts(names, [1.0, 1.0, 1.0], [1.0, 1.0, 1.0]) == []
    vanishing = gradient_alerts(names, [1e-9, 1e-2, 1.0], [1.0, 1.0, 1.0])
    assert [(k, layer) for k, layer, _ in vanishing] == [("vanishing", "first")]
    exploding = gradient_alerts(names, [500.0, 500.0, 500.0], [1.0, 1.0, 1.0], first_norm=1.0)
    assert exploding[0][0] == "exploding"
    assert gradient_alerts(names, [np.nan, 1.0, 1.0], [1, 1, 1])[0][:2] == ("non_finite",
                                                                          "first")


def test_monitor_logs_every_n_steps_without_changing_the_model():
    model = _model()
    monitor = TrainingMonitor(tiny_batches(), every=2)
    kr.fit(model, tiny_batches(n=40), epochs=1, callbacks=[monitor], verbose=0)
    assert [r["step"] for r in monitor.records] == [1, 2, 4]
    record = monitor.records[-1]
    assert list(record["activations"]) == ["stem_relu", "stage1_relu", "stage2_relu", "top_relu"]
    assert set(record["gradients"]) == {"stem_conv", "stage1_conv", "stage2_conv", "top_conv",
                                        "predictions"}
    assert "update_ratio" in record["gradients"]["stem_conv"]
    # No per-step hook: Keras keeps its asynchronous batch-end dispatch (no host sync per step).
    assert type(monitor).on_train_batch_end is keras.callbacks.Callback.on_train_batch_end

    # A log is a pure read: weights and BatchNorm statistics stay bit-identical.
    before = [keras.ops.convert_to_numpy(v).copy() for v in model.weights]
    monitor._log(99)
    after = [keras.ops.convert_to_numpy(v) for v in model.weights]
    assert all(np.array_equal(a, b) for a, b in zip(before, after))


def test_gradient_norms_match_a_direct_computation():
    model = _model()
    model.compile(loss="sparse_categorical_crossentropy")
    images, labels = tiny_arrays()
    monitor = TrainingMonitor((images, labels), every=1)
    monitor.set_model(model)
    monitor.on_train_begin()
    monitor._log(1)
    kernel = model.get_layer("backbone").get_layer("stem_conv").kernel
    loss, gradient = _reference_gradient(model, images, labels, kernel)
    expected = float(np.linalg.norm(keras.ops.convert_to_numpy(gradient)))
    assert expected > 0
    assert monitor.records[0]["gradients"]["stem_conv"]["grad_norm"] == pytest.approx(
        expected, rel=1e-4)
    assert monitor.records[0]["loss"] == pytest.approx(loss, rel=1e-5)
    # A second log sees the new weights (a compiled probe must not keep the old ones).
    kernel.assign(keras.ops.convert_to_numpy(kernel) * 2.0)
    monitor._log(2)
    loss, gradient = _reference_gradient(model, images, labels, kernel)
    assert monitor.records[1]["loss"] == pytest.approx(loss, rel=1e-5)
    assert monitor.records[1]["gradients"]["stem_conv"]["grad_norm"] == pytest.approx(
        float(np.linalg.norm(keras.ops.convert_to_numpy(gradient))), rel=1e-4)


def test_dead_relus_and_saturated_tanh_are_warned_about():
    inputs = keras.Input((16, 16, 3), dtype="uint8")
    x = keras.layers.Flatten()(keras.layers.Rescaling(1 / 255)(inputs))
    dead = keras.layers.Dense(8, activation="relu", name="dead_relu",
                              bias_initializer=keras.initializers.Constant(-1000.0))(x)
    tanh = keras.layers.Dense(8, activation="tanh", name="big_tanh",
                              kernel_initializer=keras.initializers.RandomNormal(stddev=50.0))(x)
    outputs = keras.layers.Dense(3, activation="softmax", name="predictions")(
        keras.layers.Concatenate()([dead, tanh]))
    model = keras.Model(inputs, outputs)
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    monitor = TrainingMonitor(tiny_batches(), every=1)
    with pytest.warns(UserWarning, match="TrainingMonitor"):
        model.fit(tiny_batches(), epochs=1, callbacks=[monitor], verbose=0)
    kinds = {(kind, layer) for _, kind, layer, _ in monitor.alerts}
    assert ("dead_units", "dead_relu") in kinds
    assert ("saturated", "big_tanh") in kinds
    assert monitor.records[0]["activations"]["dead_relu"]["dead_units"] == 1.0


def test_png_outputs(tmp_path):
    monitor = TrainingMonitor(tiny_batches(), every=1)
    kr.fit(_model(), tiny_batches(), epochs=1, callbacks=[monitor], verbose=0)
    assert [r["step"] for r in monitor.records] == [1, 2]
    for path in (monitor.plot(str(tmp_path / "m.png")),
                 monitor.plot_histograms(str(tmp_path / "h.png"))):
        assert open(path, "rb").read(8) == PNG


def test_tensorboard_output(tmp_path):
    pytest.importorskip("tensorflow", reason="TensorBoard summaries are written with tf.summary")
    pytest.importorskip("tensorboard")
    log_dir = str(tmp_path / "logs")
    monitor = TrainingMonitor(tiny_batches(), every=1, log_dir=log_dir)
    kr.fit(_model(), tiny_batches(), epochs=1, callbacks=[monitor], verbose=0)
    events = [f for _, _, files in os.walk(log_dir) for f in files if "tfevents" in f]
    assert events and os.path.getsize(os.path.join(log_dir, events[0])) > 1000


def test_bad_arguments_name_the_argument():
    with pytest.raises(ValueError, match="every=0"):
        TrainingMonitor(tiny_batches(), every=0)
    with pytest.raises(ValueError, match="dead=2"):
        TrainingMonitor(tiny_batches(), dead=2)
    with pytest.raises(ValueError, match="No records"):
        TrainingMonitor(tiny_batches()).plot("x.png")


def test_monitor_on_a_multitask_model_sums_the_weighted_task_losses():
    model = kr.build_multitask(TINY, {"label": 3, "level": "regression"}, weights=None,
                               dropout=0.0, loss_weights={"level": 2.0})
    images, labels = tiny_arrays()
    level = (images[..., 2].mean(axis=(1, 2)) / 255).astype("float32")[:, None]
    monitor = TrainingMonitor((images, {"label": labels, "level": level}), every=1)
    monitor.set_model(model)
    monitor.on_train_begin()
    monitor._log(1)
    outputs = model(images, training=False)
    expected = float(np.mean(-np.log(keras.ops.convert_to_numpy(outputs["label"])[
        np.arange(len(labels)), labels]))) + 2.0 * float(np.mean(
            (keras.ops.convert_to_numpy(outputs["level"]) - level) ** 2))
    assert monitor.records[0]["loss"] == pytest.approx(expected, rel=1e-4)
    assert monitor.records[0]["gradients"]["label"]["grad_norm"] > 0
