import os

import keras
import numpy as np
import pytest

import kerasrecipes as kr
from kerasrecipes.ensembles import SWA, SnapshotEnsemble, load_ensemble, recompute_batch_norm
from kerasrecipes.schedules import sgdr_lr
from tiny_models import tiny_resnet, tiny_dataset


def _model():
    return tiny_resnet()


def test_snapshot_ensemble_cycles_the_lr_saves_atomically_and_keeps_the_best(tmp_path):
    model = _model()
    model.compile(keras.optimizers.SGD(0.123, momentum=0.9), "sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    seen = []

    class Spy(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            seen.append(float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate)))

    snapshots = SnapshotEnsemble(str(tmp_path / "snaps"), cycles=3, max_lr=0.05, keep=2,
                                 verbose=0)
    data = tiny_dataset(n=16)  # 2 steps an epoch → cycles of 4 steps
    model.fit(data, validation_data=data, epochs=6, callbacks=[snapshots, Spy()], verbose=0)
    expected = [float(sgdr_lr(t % 4, 0.05, 4, t_mul=1.0)) for t in range(12)]
    np.testing.assert_allclose(seen, expected, rtol=1e-5)
    assert seen[0] == pytest.approx(0.05) and seen[4] == pytest.approx(0.05)  # restarts
    assert float(model.optimizer.learning_rate) == pytest.approx(0.123)  # restored
    files = sorted(os.listdir(tmp_path / "snaps"))
    assert len(files) == 2 and not any(f.startswith(".") for f in files)  # no temp files left
    assert len(snapshots.paths) == 2 and all(os.path.exists(p) for p in snapshots.paths)

    ensemble = load_ensemble(snapshots.paths)
    images = next(iter(data))[0]
    members = [keras.models.load_model(p) for p in snapshots.paths]
    expected = np.mean([m.predict(images, verbose=0) for m in members], axis=0)
    np.testing.assert_allclose(ensemble.predict(images, verbose=0), expected, atol=1e-6)
    path = str(tmp_path / "ensemble.keras")
    ensemble.save(path)
    np.testing.assert_allclose(keras.models.load_model(path).predict(images, verbose=0), expected,
                               atol=1e-6)


def test_snapshot_ensemble_rejects_bad_setups(tmp_path):
    with pytest.raises(ValueError, match="cycles"):
        SnapshotEnsemble(str(tmp_path), cycles=0, max_lr=0.1)
    model = _model()
    model.compile(keras.optimizers.SGD(0.1), "sparse_categorical_crossentropy")
    with pytest.raises(ValueError, match="multiple of cycles"):
        model.fit(tiny_dataset(), epochs=3, verbose=0,
                  callbacks=[SnapshotEnsemble(str(tmp_path), cycles=2, max_lr=0.1)])
    with pytest.raises(ValueError, match="paths"):
        load_ensemble([])
    with pytest.raises(FileNotFoundError, match="paths\\[0\\]"):
        load_ensemble([str(tmp_path / "missing.keras")])


def test_swa_averages_the_last_epochs_and_recomputes_batch_norm():
    model = _model()
    model.compile(keras.optimizers.SGD(0.05, momentum=0.9), "sparse_categorical_crossentropy")
    snapshots = []

    class Record(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            snapshots.append([keras.ops.convert_to_numpy(v).copy()
                              for v in self.model.trainable_variables])

    data = tiny_dataset(n=16)
    swa = SWA(start_epoch=1, bn_data=data, verbose=0)
    model.fit(data, epochs=3, callbacks=[Record(), swa], verbose=0)
    for variable, *epochs in zip(model.trainable_variables, *snapshots):
        np.testing.assert_allclose(keras.ops.convert_to_numpy(variable),
                                   (epochs[1] + epochs[2]) / 2, rtol=1e-5, atol=1e-6)
    # BatchNorm moving statistics = plain mean over the batches of the batch statistics.
    backbone = model.get_layer("backbone")
    bn = [layer for layer in backbone.layers
          if isinstance(layer, keras.layers.BatchNormalization)][0]
    upstream = keras.Model(backbone.inputs, bn.input)

    def bn_input(x):
        x = model.get_layer("preprocess")(model.get_layer("augment")(x, training=True))
        return keras.ops.convert_to_numpy(upstream(x, training=True))

    batch_means = [np.mean(bn_input(x), axis=(0, 1, 2)) for x, _ in data]
    np.testing.assert_allclose(keras.ops.convert_to_numpy(bn.moving_mean),
                               np.mean(batch_means, axis=0), rtol=1e-4, atol=1e-5)
    assert bn.momentum == 0.99  # restored


def test_recompute_batch_norm_leaves_frozen_layers_alone():
    model = _model()
    for layer in model.get_layer("backbone").layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.trainable = False
    before = [keras.ops.convert_to_numpy(v).copy() for v in model.non_trainable_variables]
    recompute_batch_norm(model, tiny_dataset())
    for a, b in zip(before, model.non_trainable_variables):
        assert np.array_equal(a, keras.ops.convert_to_numpy(b))
