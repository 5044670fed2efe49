import keras
import numpy as np
import pytest

import kerasrecipes as kr
from kerasrecipes.train import group_lr_multipliers, make_schedule
from tiny_models import TINY, tiny_dataset


def _pretrained_tiny(tmp_path, **kwargs):
    """A tiny classifier built as if from pretrained weights (BN frozen)."""
    path = str(tmp_path / "tiny.weights.h5")
    TINY.build(weights=None).save_weights(path)
    return kr.build_classifier(TINY, num_classes=3, weights=path, dropout=0.0, **kwargs)


def _weights(layer):
    return [keras.ops.convert_to_numpy(w).copy() for w in layer.weights]


def _changed(before, layer):
    return any(not np.array_equal(a, b) for a, b in zip(before, _weights(layer)))


def test_head_stage_leaves_the_backbone_untouched_then_fine_tune_trains_it(tmp_path):
    model = _pretrained_tiny(tmp_path)
    backbone = model.get_layer("backbone")
    bn_before = _weights(backbone.get_layer("stem_bn"))
    conv_before = _weights(backbone.get_layer("stem_conv"))

    history = kr.fine_tune(model, tiny_dataset(), tiny_dataset(seed=1), head_epochs=1, epochs=0,
                           verbose=0)
    assert not _changed(conv_before, backbone.get_layer("stem_conv"))
    assert not _changed(bn_before, backbone.get_layer("stem_bn"))
    assert [s["name"] for s in history.stages] == ["head"]

    kr.fine_tune(model, tiny_dataset(), head_epochs=0, epochs=1, lr=1e-2, verbose=0)
    assert _changed(conv_before, backbone.get_layer("stem_conv"))
    # Frozen BatchNorm: moving statistics (and gamma/beta) unchanged after unfreezing too.
    assert not _changed(bn_before, backbone.get_layer("stem_bn"))
    assert not backbone.get_layer("stem_bn").trainable


def test_train_bn_true_updates_the_statistics(tmp_path):
    model = _pretrained_tiny(tmp_path)
    bn = model.get_layer("backbone").get_layer("stem_bn")
    before = _weights(bn)
    kr.fine_tune(model, tiny_dataset(), head_epochs=0, epochs=1, train_bn=True, verbose=0)
    assert _changed(before, bn)


def test_history_is_one_record_of_both_stages_and_each_stage_recompiles(tmp_path):
    model = _pretrained_tiny(tmp_path)
    seen = []

    class Spy(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            seen.append(self.model.optimizer)

    history = kr.fine_tune(model, tiny_dataset(), tiny_dataset(seed=1), head_epochs=2, epochs=2,
                           callbacks=[Spy()], early_stopping=None, verbose=0)
    assert len(seen) == 2 and seen[0] is not seen[1]
    assert history.epochs == 4
    assert [s["name"] for s in history.stages] == ["head", "fine_tune"]
    assert [s["first_epoch"] for s in history.stages] == [0, 2]
    for key in ("loss", "accuracy", "val_loss", "val_accuracy", "learning_rate"):
        assert len(history.history[key]) == 4, key
    # The fine-tuning stage peaks at lr / 10.
    assert history.stages[1]["learning_rate"] == pytest.approx(1e-4)
    png = history.plot(str(tmp_path / "history.png"))
    assert open(png, "rb").read(8) == b"\x89PNG\r\n\x1a\n"


def test_discriminative_multipliers_are_geometric_from_stem_to_head(tmp_path):
    model = _pretrained_tiny(tmp_path)
    seen = {}

    class Spy(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            opt = self.model.optimizer
            if opt.lr_multipliers:
                seen.update({v.path: m for v, m in zip(self.model.trainable_variables,
                                                       opt.lr_multipliers)})

    kr.fine_tune(model, tiny_dataset(), head_epochs=0, epochs=1, lr_mult=100, callbacks=[Spy()],
                 verbose=0)
    by_layer = {path.split("/")[-2]: m for path, m in seen.items()}
    # 4 groups: stem 100^(-4/4), stage1 100^(-3/4), stage2 100^(-2/4), top 100^(-1/4); head 1.
    assert by_layer["stem_conv"] == pytest.approx(0.01)
    assert by_layer["stage1_conv"] == pytest.approx(100 ** -0.75)
    assert by_layer["stage2_conv"] == pytest.approx(0.1)
    assert by_layer["top_conv"] == pytest.approx(100 ** -0.25)
    assert by_layer["predictions"] == 1.0


def test_unfreeze_top_n_groups_only(tmp_path):
    model = _pretrained_tiny(tmp_path)
    backbone = model.get_layer("backbone")
    before = {name: _weights(backbone.get_layer(name)) for name in ("stem_conv", "top_conv")}
    kr.fine_tune(model, tiny_dataset(), head_epochs=0, epochs=1, unfreeze=1, lr=1e-1, verbose=0)
    assert not _changed(before["stem_conv"], backbone.get_layer("stem_conv"))
    assert _changed(before["top_conv"], backbone.get_layer("top_conv"))


def test_gradual_unfreezing_adds_one_group_per_epoch(tmp_path):
    model = _pretrained_tiny(tmp_path)
    history = kr.fine_tune(model, tiny_dataset(), head_epochs=0, epochs=5, unfreeze="gradual",
                           early_stopping=None, verbose=0)
    assert [s["trainable_groups"] for s in history.stages] == [
        ["top"], ["stage2", "top"], ["stage1", "stage2", "top"],
        ["stem", "stage1", "stage2", "top"],
    ]
    assert [s["epochs"] for s in history.stages] == [1, 1, 1, 2]
    assert history.epochs == 5
    # The warmup+cosine schedule runs once across the recompiles: it ends near zero.
    assert history.history["learning_rate"][-1] < 0.05 * max(history.history["learning_rate"])


def test_early_stopping_restores_the_best_weights(tmp_path):
    model = _pretrained_tiny(tmp_path)
    snapshots = []

    class Snap(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            snapshots.append((logs["val_loss"], self.model.get_weights()))

    # An absurd LR makes later epochs worse than the first.
    kr.fine_tune(model, tiny_dataset(), tiny_dataset(seed=1), head_epochs=0, epochs=4, lr=50.0,
                 optimizer="sgd", schedule="constant", early_stopping=1,
                 callbacks=[Snap()], verbose=0)
    best = min(range(len(snapshots)), key=lambda i: snapshots[i][0])
    for a, b in zip(model.get_weights(), snapshots[best][1]):
        np.testing.assert_array_equal(a, b)


def test_fit_adapts_scratch_normalization_on_train_only():
    train = tiny_dataset(size=16)
    model = kr.build_scratch_cnn(3, image_size=16, stages=2, filters=8, dense_units=())
    history = kr.fit(model, train, tiny_dataset(seed=3), epochs=1, verbose=0)
    images = np.concatenate([x for x, _ in train.as_numpy_iterator()])
    normalize = model.get_layer("preprocess").get_layer("normalize")
    np.testing.assert_allclose(normalize.mean, images.reshape(-1, 3).mean(0), rtol=1e-5)
    assert history.epochs == 1


def test_bad_data_is_caught_before_training(tmp_path):
    import tensorflow as tf

    model = _pretrained_tiny(tmp_path)
    wrong_size = tf.data.Dataset.from_tensor_slices(
        (np.zeros((4, 20, 20, 3), "uint8"), np.zeros(4, "int32"))).batch(2)
    with pytest.raises(ValueError, match=r"images have shape \(20, 20, 3\).*expects \(16, 16, 3\)"):
        kr.fine_tune(model, wrong_size, verbose=0)
    bad_labels = tf.data.Dataset.from_tensor_slices(
        (np.zeros((4, 16, 16, 3), "uint8"), np.array([0, 1, 2, 7], "int32"))).batch(4)
    with pytest.raises(ValueError, match=r"labels range over \[0, 7\].*3 classes"):
        kr.fine_tune(model, bad_labels, verbose=0)
    with pytest.raises(ValueError, match="must be a dataset"):
        kr.fine_tune(model, np.zeros((4, 16, 16, 3), "uint8"), verbose=0)
    with pytest.raises(ValueError, match="unfreeze must be 'all', 'gradual'"):
        kr.fine_tune(model, tiny_dataset(), unfreeze="some", verbose=0)
    with pytest.raises(ValueError, match="nothing to train"):
        kr.fine_tune(model, tiny_dataset(), head_epochs=0, epochs=0, verbose=0)
    with pytest.raises(ValueError, match="repeats forever: pass steps_per_epoch"):
        kr.fine_tune(model, tiny_dataset().repeat(), verbose=0)


def test_unknown_length_is_counted(tmp_path):
    model = _pretrained_tiny(tmp_path)
    filtered = tiny_dataset(n=24).filter(lambda x, y: True)  # 3 batches, length unknown
    history = kr.fine_tune(model, filtered, head_epochs=1, epochs=0, schedule="warmup_cosine",
                           verbose=0)
    assert history.epochs == 1


def test_model_without_named_submodels_gets_a_clear_error():
    plain = keras.Sequential([keras.Input((16, 16, 3)), keras.layers.Flatten(),
                              keras.layers.Dense(3)])
    with pytest.raises(ValueError, match="no sub-model named 'backbone'"):
        kr.fine_tune(plain, tiny_dataset(), verbose=0)


def test_warmup_cosine_schedule_values():
    schedule = make_schedule("warmup_cosine", 1.0, total_steps=100, warmup=0.1)
    values = [float(schedule(step)) for step in (0, 5, 10, 55, 100)]
    assert values[0] == pytest.approx(0.0)
    assert values[1] == pytest.approx(0.5)
    assert values[2] == pytest.approx(1.0)
    assert values[3] == pytest.approx(0.5, abs=1e-6)  # half-way through the cosine
    assert values[4] == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(ValueError, match="schedule must be one of"):
        make_schedule("linear", 1.0, 10)


def test_group_lr_multipliers_align_with_trainable_variables():
    model = kr.build_classifier(TINY, num_classes=3, weights=None)
    backbone = model.get_layer("backbone")
    mults = group_lr_multipliers(model, {backbone.get_layer("stem_conv"): 0.5})
    assert len(mults) == len(model.trainable_variables)
    stem_kernel = backbone.get_layer("stem_conv").kernel
    index = [id(v) for v in model.trainable_variables].index(id(stem_kernel))
    assert mults[index] == 0.5 and sum(m == 0.5 for m in mults) == 1


def test_a_nan_loss_stops_with_a_clear_message_and_keeps_finite_weights(tmp_path):
    model = _pretrained_tiny(tmp_path)
    with pytest.warns(UserWarning, match="loss became nan.*learning rate .* too high"):
        history = kr.fine_tune(model, tiny_dataset(), head_epochs=1, epochs=3, lr=1e12,
                               unfreeze="gradual", optimizer="sgd", schedule="constant",
                               verbose=0)
    # The stage that diverged is the last one run: the rest were skipped.
    assert "stopped" in history.stages[-1]
    assert not any("stopped" in stage for stage in history.stages[:-1])
    assert history.epochs < 4
    assert all(np.isfinite(w).all() for w in model.get_weights())
