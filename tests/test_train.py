import keras
import numpy as np
import pytest

import kerasrecipes as kr
from tiny_models import TINY, tiny_batches, tiny_dataset


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


class _RecordOptimizers(keras.callbacks.Callback):
    """Appends the optimizer each `fit` (each fine-tuning stage) starts with to `seen`."""

    def __init__(self, seen):
        super().__init__()
        self.seen = seen

    def on_train_begin(self, logs=None):
        self.seen.append(self.model.optimizer)


def test_history_is_one_record_of_both_stages_and_each_stage_recompiles(tmp_path):
    model = _pretrained_tiny(tmp_path)
    seen = []
    history = kr.fine_tune(model, tiny_dataset(), tiny_dataset(seed=1), head_epochs=2, epochs=2,
                           callbacks=[_RecordOptimizers(seen)], early_stopping=None, verbose=0)
    assert len(seen) == 2 and seen[0] is not seen[1]
    assert history.epochs == 4
    assert [s["name"] for s in history.stages] == ["head", "fine_tune"]
    assert [s["first_epoch"] for s in history.stages] == [0, 2]
    for key in ("loss", "accuracy", "val_loss", "val_accuracy", "learning_rate"):
        assert len(history.history[key]) == 4, key
    # The fine-tuning stage peaks at fine_tune_lr, which defaults to lr (the layer groups below
    # the head get it divided by up to lr_mult).
    assert history.stages[1]["learning_rate"] == pytest.approx(1e-3)
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
    # The one-cycle schedule runs once across the recompiles: it ends near zero.
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


def test_a_nan_loss_stops_with_a_clear_message_and_keeps_finite_weights(tmp_path):
    keras.utils.set_random_seed(0)  # an initialisation seen to diverge (seeds 0-5 all do)
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


def test_fine_tune_default_is_one_cycle_per_stage_with_momentum_in_the_optimizer(tmp_path):
    """fastai-style default; the momentum schedule continues across gradual-unfreezing stages."""
    import warnings

    from kerasrecipes.schedules import OneCycle, OneCycleMomentum, one_cycle_momentum

    model = _pretrained_tiny(tmp_path)
    seen = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        # A PyDataset (2 batches): this test also runs without TensorFlow.
        history = kr.fine_tune(model, tiny_batches(), head_epochs=2, epochs=3, lr=1e-2,
                               unfreeze="gradual", early_stopping=None,
                               callbacks=[_RecordOptimizers(seen)], verbose=0)
    messages = [str(w.message) for w in caught]
    assert not [m for m in messages if "shuffle" in m or "momentum" in m], messages
    assert [type(opt._learning_rate) for opt in seen] == [OneCycle] * 4
    assert all(type(opt.momentum_schedule) is OneCycleMomentum for opt in seen)
    # The fine-tuning stages peak at fine_tune_lr, which defaults to lr.
    assert [opt._learning_rate.max_lr for opt in seen] == pytest.approx([1e-2] * 4)
    # Logged at each epoch end: the momentum of the next step, from the optimizer's counter.
    # Head: one 4-step cycle; fine-tuning: one 6-step cycle over 3 recompiled stages.
    expected = [one_cycle_momentum(step, total, pct_start=0.1)
                for step, total in ((2, 4), (4, 4), (2, 6), (4, 6), (6, 6))]
    np.testing.assert_allclose(history.history["momentum"], np.array(expected, "float64"),
                               rtol=1e-6)
    assert min(history.history["momentum"]) < 0.9


@pytest.mark.parametrize("clip", [{"global_clipnorm": 0.01}, {"clipvalue": 1e-4}])
def test_gradient_clipping_bounds_the_step_of_fit(clip):
    """One SGD step on a huge loss: without clipping a big jump, with clipping lr * the bound."""

    def huge(y_true, y_pred):
        return 1e6 * keras.losses.sparse_categorical_crossentropy(y_true, y_pred)

    deltas = {}
    for name, kwargs in (("plain", {}), ("clipped", clip)):
        keras.utils.set_random_seed(0)
        model = kr.build_scratch_cnn(3, image_size=16, stages=2, filters=8, dense_units=())
        before = [keras.ops.convert_to_numpy(v).copy() for v in model.trainable_variables]
        kr.fit(model, tiny_batches(n=8), epochs=1, lr=1.0, optimizer="sgd", schedule="constant",
               loss=huge, verbose=0, **kwargs)  # one step: momentum SGD moves by -lr * g
        deltas[name] = np.concatenate([
            (keras.ops.convert_to_numpy(v) - b).ravel()
            for v, b in zip(model.trainable_variables, before)
        ])
    assert np.linalg.norm(deltas["plain"]) > 100
    if "global_clipnorm" in clip:
        assert np.linalg.norm(deltas["clipped"]) == pytest.approx(0.01, rel=1e-3)
    else:
        assert np.abs(deltas["clipped"]).max() == pytest.approx(1e-4, rel=1e-3)


def test_bad_clipping_is_a_clear_error_before_training(tmp_path):
    model = _pretrained_tiny(tmp_path)
    with pytest.raises(ValueError, match="clipnorm must be a positive float.*clipnorm=-1"):
        kr.fine_tune(model, tiny_batches(), clipnorm=-1, verbose=0)
    with pytest.raises(ValueError, match="at most one of clipnorm, clipvalue, global_clipnorm"):
        kr.fit(model, tiny_batches(), clipvalue=5.0, global_clipnorm=1.0, verbose=0)
    with pytest.raises(ValueError, match="global_clipnorm must be a positive float"):
        kr.fit_one_cycle(model, tiny_batches(), max_lr=1e-3, global_clipnorm=0, verbose=0)


def test_fine_tune_history_writes_a_report(tmp_path):
    model = _pretrained_tiny(tmp_path)
    history = kr.fine_tune(model, tiny_batches(), tiny_batches(seed=1), head_epochs=1, epochs=1,
                           verbose=0)
    text = open(history.report(str(tmp_path / "report"))).read()
    assert text.startswith("# Training report\n\n2 epoch(s) in 2 stage(s): head (1 epoch(s)")
    assert "**Verdict:" in text
    assert (tmp_path / "report" / "history.png").exists()
