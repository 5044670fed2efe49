"""The head stage on cached backbone features (`kerasrecipes.head_features`, `fine_tune`)."""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

import kerasrecipes as kr
from kerasrecipes import head_features
from tiny_models import TINY, tiny_arrays, tiny_dataset


def _pretrained_tiny(tmp_path, **kwargs):
    path = str(tmp_path / "tiny.weights.h5")
    TINY.build(weights=None).save_weights(path)
    kwargs.setdefault("dropout", 0.0)
    return kr.build_classifier(TINY, num_classes=3, weights=path, **kwargs)


def _weights(layer):
    return [keras.ops.convert_to_numpy(w).copy() for w in layer.weights]


def test_the_head_on_features_computes_what_the_model_computes(tmp_path):
    model = _pretrained_tiny(tmp_path, augment="light", dropout=0.3)
    images, _ = tiny_arrays(n=8)
    features, labels = head_features.compute_features(model, tiny_dataset(n=8), verbose=0)
    head = head_features.feature_head(model)
    np.testing.assert_allclose(head.predict(features, verbose=0), model.predict(images, verbose=0),
                               atol=1e-6)
    # The head model shares the model's own layers: training it trains the model.
    assert {id(w) for w in head.trainable_weights} == {
        id(w) for w in model.get_layer("head").trainable_weights}
    assert features.shape == (8, 16) and labels.tolist() == tiny_arrays(n=8)[1].tolist()


def test_cached_head_stage_trains_the_head_only_and_reports_the_true_metrics(tmp_path, capsys):
    model = _pretrained_tiny(tmp_path)
    backbone, head = model.get_layer("backbone"), model.get_layer("head")
    backbone_before, head_before = _weights(backbone), _weights(head)
    validation = tiny_dataset(seed=1)
    history = kr.fine_tune(model, tiny_dataset(n=32), validation, head_epochs=3, epochs=0,
                           lr=1e-2, verbose=1)
    assert "head stage on cached features" in capsys.readouterr().out
    assert all(np.array_equal(a, b) for a, b in zip(backbone_before, _weights(backbone)))
    assert any(not np.array_equal(a, b) for a, b in zip(head_before, _weights(head)))
    assert [s["name"] for s in history.stages] == ["head"] and history.epochs == 3
    assert len(history.history["learning_rate"]) == 3
    # The validation metrics of the cached stage are those of the whole model on the images.
    model.compile(loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    evaluated = model.evaluate(validation, verbose=0, return_dict=True)
    assert history.history["val_accuracy"][-1] == pytest.approx(evaluated["accuracy"])
    assert history.history["val_loss"][-1] == pytest.approx(evaluated["loss"], rel=1e-4)


def test_cached_head_stage_computes_what_the_live_one_computes(tmp_path):
    # One batch per epoch, so the batch order (reshuffled every epoch on both sides) plays no
    # part: the cached and the live head stage are then the same computation, step for step.
    runs = {}
    for cache in (True, False):
        keras.utils.set_random_seed(0)
        model = _pretrained_tiny(tmp_path)
        names = [w.path for w in model.weights]
        history = kr.fine_tune(model, tiny_dataset(n=8), tiny_dataset(seed=1), head_epochs=4,
                               epochs=0, lr=3e-2, cache_features=cache, verbose=0)
        assert [w.path for w in model.weights] == names  # same structure, same variables
        runs[cache] = (history.history, _weights(model))
    for key in ("loss", "accuracy", "val_loss", "val_accuracy", "learning_rate"):
        np.testing.assert_allclose(runs[True][0][key], runs[False][0][key], rtol=1e-5, atol=1e-6)
    for cached, live in zip(runs[True][1], runs[False][1]):
        np.testing.assert_allclose(cached, live, rtol=1e-5, atol=1e-6)


def test_auto_runs_on_images_when_caching_does_not_apply(tmp_path, capsys):
    model = _pretrained_tiny(tmp_path)
    mixed = kr.mix_dataset(tiny_dataset(), num_classes=3, mixup_alpha=0.4, seed=0)
    kr.fine_tune(model, mixed, head_epochs=1, epochs=0, verbose=1)
    assert "head stage on images, not cached features: the training labels are soft" in (
        capsys.readouterr().out)
    with pytest.raises(ValueError, match="cache_features=True, but the training labels are soft"):
        kr.fine_tune(model, mixed, head_epochs=1, epochs=0, cache_features=True, verbose=0)

    class Seen(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            seen.append(self.model.input_shape)

    seen = []
    kr.fine_tune(model, tiny_dataset(), head_epochs=1, epochs=0, callbacks=[Seen()], verbose=1)
    assert "callbacks were given" in capsys.readouterr().out and seen == [(None, 16, 16, 3)]
    seen.clear()  # forced: the callbacks see the head on features
    kr.fine_tune(model, tiny_dataset(), head_epochs=1, epochs=0, callbacks=[Seen()],
                 cache_features=True, verbose=0)
    assert seen == [(None, 16)]


def test_cache_refusal_names_each_reason(tmp_path):
    model = _pretrained_tiny(tmp_path)
    assert head_features.cache_refusal(model, tiny_dataset()) is None
    assert "callbacks" in head_features.cache_refusal(model, tiny_dataset(),
                                                      [keras.callbacks.History()])
    multitask = kr.build_multitask(TINY, {"kind": 3, "size": "regression"},
                                   weights=None)
    assert "several outputs" in head_features.cache_refusal(multitask, tiny_dataset())
    bare = keras.Sequential([keras.Input((16, 16, 3)), keras.layers.Flatten(),
                             keras.layers.Dense(3, activation="softmax")])
    assert "augment/preprocess/backbone/head" in head_features.cache_refusal(bare, tiny_dataset())
    old, head_features.MAX_CACHED_VALUES = head_features.MAX_CACHED_VALUES, 100
    try:
        assert "would not fit in memory" in head_features.cache_refusal(model, tiny_dataset())
    finally:
        head_features.MAX_CACHED_VALUES = old
    with pytest.raises(ValueError, match="cache_features must be 'auto', True or False"):
        kr.fine_tune(model, tiny_dataset(), cache_features="yes")


SCRIPT = """
import json, os, signal, sys
sys.path.insert(0, {tests!r})
import keras
import kerasrecipes as kr
from tiny_models import TINY, tiny_dataset

backup, marker, out = sys.argv[1], sys.argv[2], sys.argv[3]
keras.utils.set_random_seed(0)
path = os.path.join(os.path.dirname(out), "tiny.weights.h5")
if not os.path.exists(path):
    TINY.build(weights=None).save_weights(path)
model = kr.build_classifier(TINY, num_classes=3, weights=path)
runs = []

class Killer(keras.callbacks.Callback):
    def on_train_begin(self, logs=None):
        runs.append(self.model.input_shape)

    def on_train_batch_end(self, batch, logs=None):
        # First run only: die in the fine-tuning stage, after the cached head stage finished.
        if not os.path.exists(marker) and len(runs) == 2:
            open(marker, "w").close()
            os.kill(os.getpid(), signal.SIGKILL)

history = kr.fine_tune(model, tiny_dataset(n=32), tiny_dataset(seed=1), head_epochs=2, epochs=2,
                       early_stopping=None, backup_dir=backup, callbacks=[Killer()],
                       cache_features=True, verbose=1)
json.dump({{"runs": [list(s) for s in runs], "stages": [s["name"] for s in history.stages],
           "epochs": history.epochs}}, open(out, "w"))
"""


def test_a_run_killed_after_the_cached_head_stage_resumes_without_recomputing(tmp_path):
    script = tmp_path / "train.py"
    script.write_text(SCRIPT.format(tests=os.path.dirname(__file__)))
    backup, marker, out = tmp_path / "backup", tmp_path / "killed", tmp_path / "out.json"
    args = [sys.executable, str(script), str(backup), str(marker), str(out)]
    first = subprocess.run(args, capture_output=True, text=True, timeout=300)
    assert first.returncode == -9, first.stderr[-2000:]
    assert "head stage on cached features" in first.stdout
    second = subprocess.run(args, capture_output=True, text=True, timeout=300)
    assert second.returncode == 0, second.stderr[-3000:]
    result = json.loads(out.read_text())
    # The finished head stage (saved as the whole model's weights) is restored, not recomputed.
    assert "head stage on cached features" not in second.stdout
    assert result["runs"] == [[None, 16, 16, 3]]
    assert result["stages"] == ["head", "fine_tune"] and result["epochs"] == 4
