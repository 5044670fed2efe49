import os

import keras
import numpy as np
import pytest
import tensorflow as tf

import kerasrecipes as kr
from kerasrecipes.lr_finder import (
    LRFinderResult,
    range_lrs,
    smooth_losses,
    suggest_minimum,
    suggest_steep,
    suggest_valley,
)
from kerasrecipes.train import group_lr_multipliers
from tiny_models import tiny_resnet, TINY, tiny_dataset

LRS = np.logspace(-6, 1, 71)  # 10 points per decade
LOG = np.log10(LRS)


def _sigmoid_curve(center=-3.0):
    """Loss falls along a logistic in log10(LR) centred on `center`, then blows up after 1e-1."""
    loss = 2.0 - 1.5 / (1 + np.exp(-3 * (LOG - center)))
    return np.where(LOG > -1, loss + 10 * (LOG + 1) ** 2, loss)


def test_steep_is_the_steepest_descent_of_a_synthetic_curve():
    assert np.log10(suggest_steep(LRS, _sigmoid_curve(-3.0))) == pytest.approx(-3.0, abs=0.11)
    assert np.log10(suggest_steep(LRS, _sigmoid_curve(-4.5))) == pytest.approx(-4.5, abs=0.11)


def test_minimum_is_lr_at_min_loss_over_ten():
    losses = _sigmoid_curve()
    assert suggest_minimum(LRS, losses) == pytest.approx(LRS[np.argmin(losses)] / 10)
    assert suggest_minimum([1e-3, 1e-2, 1e-1, 1, 10], [2.0, 1.5, 1.0, 1.2, 5.0]) == 0.01


def test_valley_lies_in_the_falling_stretch_before_the_minimum():
    losses = _sigmoid_curve(-3.0)
    valley = suggest_valley(LRS, losses)
    # Longest decreasing run: from the first point to the minimum (index ~50, 1e-1) → index
    # 0 + 50 // 3 + 50 // 6 ≈ 24 → 10**(-6 + 2.4)
    minimum_index = int(np.argmin(losses))
    expected = minimum_index // 3 + int(minimum_index / 3 / 2)
    assert valley == pytest.approx(LRS[expected])
    assert LRS[0] < valley < LRS[minimum_index]
    # A noisy bump does not break the longest run (subsequence, not contiguous).
    bumpy = losses.copy()
    bumpy[10] += 0.3
    assert suggest_valley(LRS, bumpy) == pytest.approx(valley)


@pytest.mark.parametrize("fn", [suggest_valley, suggest_steep, suggest_minimum])
def test_short_or_flat_curves_give_none_with_a_warning(fn):
    with pytest.warns(UserWarning, match="fewer than"):
        assert fn([1e-3, 1e-2, 1e-1], [1.0, 0.9, 2.0]) is None
    with pytest.warns(UserWarning, match="flat"):
        assert fn(LRS, np.full(len(LRS), 2.3)) is None


def test_rising_curve_has_no_steep_or_valley():
    rising = np.linspace(1, 3, 20)
    with pytest.warns(UserWarning, match="never decreases"):
        assert suggest_steep(LRS[:20], rising) is None
    with pytest.warns(UserWarning, match="never decreases"):
        assert suggest_valley(LRS[:20], rising) is None


def test_smoothing_and_ramp():
    # EMA 0.5, 1.75; bias correction ÷ 0.5, ÷ 0.75.
    np.testing.assert_allclose(smooth_losses([1.0, 3.0], beta=0.5), [1.0, 7 / 3])
    np.testing.assert_allclose(range_lrs(1e-4, 1e-1, 4), [1e-4, 1e-3, 1e-2, 1e-1])
    np.testing.assert_allclose(range_lrs(0.1, 0.4, 4, mode="linear"), [0.1, 0.2, 0.3, 0.4])


def _state(model):
    opt = model.optimizer
    return ([np.array(keras.ops.convert_to_numpy(v)) for v in model.variables],
            [np.array(keras.ops.convert_to_numpy(v)) for v in opt.variables])


def _assert_identical(before, after):
    for group_before, group_after in zip(before, after):
        assert len(group_before) == len(group_after)
        for a, b in zip(group_before, group_after):
            assert a.dtype == b.dtype and np.array_equal(a, b)


def _scratch_model():
    return tiny_resnet()


def test_find_lr_restores_everything_bit_identically_and_keeps_the_schedule(tmp_path):
    model = _scratch_model()
    schedule = kr.OneCycle(1e-2, total_steps=40)
    model.compile(kr.get_optimizer("sgd", schedule), "sparse_categorical_crossentropy")
    data = tiny_dataset(n=32)
    model.fit(data, epochs=1, verbose=0)  # non-trivial optimizer state: iterations 4, momenta
    bn = [layer for layer in model.get_layer("backbone").layers
          if isinstance(layer, keras.layers.BatchNormalization)][0]
    bn_before = np.array(keras.ops.convert_to_numpy(bn.moving_mean))
    before = _state(model)
    files_before = set(os.listdir(tmp_path))

    result = kr.find_lr(model, data.repeat(), min_lr=1e-4, max_lr=10, num_steps=30, verbose=0)

    assert len(result.lrs) >= 5 and result.lrs[0] == pytest.approx(1e-4)
    assert np.all(np.diff(result.lrs) > 0)
    _assert_identical(before, _state(model))
    assert np.array_equal(bn_before, keras.ops.convert_to_numpy(bn.moving_mean))
    assert model.optimizer._learning_rate is schedule
    assert int(model.optimizer.iterations) == 4
    assert set(os.listdir(tmp_path)) == files_before
    # Training continues on the schedule, as if find_lr had never run.
    twin = _scratch_model()
    twin.compile(kr.get_optimizer("sgd", kr.OneCycle(1e-2, total_steps=40)),
                 "sparse_categorical_crossentropy")
    twin.fit(data, epochs=1, verbose=0)
    for m in (model, twin):
        m.fit(data, epochs=1, verbose=0)
    for a, b in zip(model.weights, twin.weights):
        np.testing.assert_allclose(keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b),
                                   rtol=1e-5, atol=1e-6)
    assert float(model.optimizer.learning_rate) == pytest.approx(float(schedule(8)))


def test_find_lr_stops_when_the_loss_diverges_and_plots(tmp_path):
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((16, 16, 3)), keras.layers.Rescaling(1 / 255),
                              keras.layers.Flatten(), keras.layers.Dense(3, activation="softmax")])
    model.compile(keras.optimizers.SGD(0.01), "sparse_categorical_crossentropy")
    rng = np.random.default_rng(0)  # random labels: no LR fits them, a huge one blows up
    noise = tf.data.Dataset.from_tensor_slices(
        (rng.integers(0, 255, (32, 16, 16, 3)).astype("uint8"), rng.integers(0, 3, 32))
    ).batch(8)
    before = _state(model)
    with pytest.warns(UserWarning, match="exceeds one epoch"):
        result = kr.find_lr(model, noise, min_lr=1e-3, max_lr=1e6, num_steps=60, verbose=0)
    assert result.stopped_early and len(result.lrs) < 60
    _assert_identical(before, _state(model))
    assert float(model.optimizer.learning_rate) == pytest.approx(0.01)
    png = result.plot(str(tmp_path / "lr.png"))
    assert open(png, "rb").read(8) == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="method"):
        result.suggestion("median")


def test_find_lr_on_frozen_then_unfrozen_model_keeps_groups_and_multipliers(tmp_path):
    path = str(tmp_path / "tiny.weights.h5")
    TINY.build(weights=None).save_weights(path)
    model = kr.build_classifier(TINY, num_classes=3, weights=path, dropout=0.0)
    backbone = model.get_layer("backbone")
    backbone.trainable = False
    data = tiny_dataset(n=32)
    model.compile(kr.get_optimizer("adamw", 1e-3), "sparse_categorical_crossentropy")
    model.optimizer.build(model.trainable_variables)  # find_lr builds an unbuilt one (zero slots)
    frozen_before = _state(model)
    result = kr.find_lr(model, data, min_lr=1e-5, max_lr=1.0, num_steps=4, verbose=0)
    assert len(result.lrs) == 4
    _assert_identical(frozen_before, _state(model))
    assert len(model.trainable_variables) == len(model.get_layer("head").trainable_variables)

    backbone.trainable = True
    multipliers = {layer: 0.1 for layer in backbone.layers}
    lr_mult = group_lr_multipliers(model, multipliers)
    opt = kr.get_optimizer("adamw", 1e-3, lr_multipliers=lr_mult)
    model.compile(opt, "sparse_categorical_crossentropy")
    opt.build(model.trainable_variables)
    before = _state(model)
    kr.find_lr(model, data, min_lr=1e-5, max_lr=1.0, num_steps=4, verbose=0)
    _assert_identical(before, _state(model))
    assert model.optimizer is opt and opt.lr_multipliers == lr_mult


def test_find_lr_compiles_an_uncompiled_model_and_validates_arguments():
    model = _scratch_model()
    result = kr.find_lr(model, tiny_dataset(n=16), min_lr=1e-4, max_lr=1e-1, num_steps=2,
                        verbose=0)
    assert model.compiled and len(result.lrs) == 2
    for kwargs, name in (({"min_lr": 0}, "min_lr"), ({"max_lr": 1e-8}, "max_lr"),
                         ({"num_steps": 1}, "num_steps"), ({"mode": "cos"}, "mode"),
                         ({"diverge_threshold": 0.5}, "diverge_threshold")):
        with pytest.raises(ValueError, match=name):
            kr.find_lr(model, tiny_dataset(), verbose=0, **kwargs)


def test_result_suggestions_from_a_curve():
    result = LRFinderResult(list(LRS), list(_sigmoid_curve()), list(_sigmoid_curve()))
    suggestions = result.suggestions()
    assert set(suggestions) == {"valley", "steep", "minimum"}
    assert all(v is not None and LRS[0] <= v <= LRS[-1] for v in suggestions.values())


def test_fit_one_cycle_cycles_lr_and_momentum_and_finds_max_lr_when_none():
    model = _scratch_model()
    seen = []

    class Spy(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            opt = self.model.optimizer
            seen.append((float(keras.ops.convert_to_numpy(opt.learning_rate)),
                         float(keras.ops.convert_to_numpy(opt.scheduled_momentum()))))

    data = tiny_dataset(n=32)
    history = kr.fit_one_cycle(model, data, data, epochs=2, max_lr=1e-2, callbacks=[Spy()],
                               verbose=0)
    lrs, betas = np.array(seen).T
    # 8 steps: the LR the spy reads after step k is the schedule at iteration k + 1.
    expected = [float(kr.OneCycle(1e-2, 8)(k + 1)) for k in range(8)]
    np.testing.assert_allclose(lrs, expected, rtol=1e-5)
    # beta_1 of the next step, computed inside the optimizer update from its iterations.
    expected = [float(kr.OneCycleMomentum(8)(k + 1)) for k in range(8)]
    np.testing.assert_allclose(betas, expected, rtol=1e-5)
    assert betas.min() < 0.9 and betas[-1] == pytest.approx(0.95, abs=0.01)
    assert history.stages[0]["learning_rate"] == 1e-2 and history.epochs == 2
    with pytest.raises(ValueError, match="max_lr"):
        kr.fit_one_cycle(model, data, max_lr=-1.0, verbose=0)


@pytest.mark.slow
def test_fit_one_cycle_runs_find_lr_when_max_lr_is_none():
    data = tiny_dataset(n=32)
    found = kr.fit_one_cycle(_scratch_model(), data, epochs=1, max_lr=None, find_lr_steps=20,
                             verbose=0)
    assert 1e-7 < found.stages[0]["learning_rate"] < 10


@pytest.mark.parametrize("stage", ["head", "all"])
def test_cli_lr_find_writes_the_png_and_prints_suggestions(make_image_folder, tmp_path, capsys,
                                                           stage):
    from kerasrecipes import cli
    from kerasrecipes.registry import _REGISTRY, registry_key

    kr.register_backbone(TINY)
    try:
        root = make_image_folder(per_class=8)
        out = str(tmp_path / "plots" / "lr.png")
        code = cli.main(["lr-find", root, "--backbone", TINY.name, "--weights", "none",
                         "--batch-size", "4", "--num-steps", "6", "--min-lr", "1e-4",
                         "--max-lr", "1", "--stage", stage, "--augment", "none", "--out", out])
    finally:
        _REGISTRY.pop(registry_key(TINY.name), None)
    assert code == 0
    assert open(out, "rb").read(8) == b"\x89PNG\r\n\x1a\n"
    printed = capsys.readouterr().out
    for method in ("valley", "steep", "minimum"):
        assert method in printed


def test_minimum_at_the_first_lr_gives_no_suggestion():
    from kerasrecipes.lr_finder import suggest_minimum

    lrs = np.geomspace(1e-6, 1, 30)
    with pytest.warns(UserWarning, match="lowest at the first LR"):
        assert suggest_minimum(lrs, np.linspace(1.0, 3.0, 30)) is None
