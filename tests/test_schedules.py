import math

import keras
import numpy as np
import pytest

from kerasrecipes import schedules as S
from kerasrecipes.schedules import (
    SGDR,
    CycleMomentum,
    CyclicalLR,
    LinearWarmup,
    OneCycle,
    OneCycleMomentum,
    StepDecay,
    WarmupCosine,
    make_schedule,
)


def _np(x):
    return np.asarray(keras.ops.convert_to_numpy(x), dtype="float64")


STEPS = np.array([0, 1, 10, 24, 25, 26, 50, 73, 99])


def _cos(start, end, pct):
    return end + (start - end) / 2 * (1 + math.cos(math.pi * pct))


def test_one_cycle_matches_the_formula_at_chosen_steps():
    # total 100, pct_start 0.25 → warmup ends at step 24 (PyTorch's OneCycleLR boundaries).
    lr = _np(S.one_cycle_lr(STEPS, 1.0, 100, pct_start=0.25, div=25, final_div=1e4))
    init, final = 1 / 25, 1 / 25 / 1e4
    expected = [
        _cos(init, 1.0, s / 24) if s <= 24 else _cos(1.0, final, (s - 24) / 75) for s in STEPS
    ]
    np.testing.assert_allclose(lr, expected, rtol=1e-5, atol=1e-9)
    assert lr[0] == pytest.approx(0.04) and lr[3] == pytest.approx(1.0)
    assert lr[-1] == pytest.approx(final, rel=1e-3)
    linear = _np(S.one_cycle_lr(np.array([12, 24, 99]), 1.0, 100, anneal="linear"))
    np.testing.assert_allclose(linear, [init + (1 - init) * 0.5, 1.0, final], rtol=1e-5)


def test_one_cycle_lr_and_momentum_equal_pytorch():
    torch = pytest.importorskip("torch")
    for three_phase in (False, True):
        param = torch.nn.Parameter(torch.zeros(1))
        opt = torch.optim.SGD([param], lr=0.1, momentum=0.9)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.5, total_steps=60,
                                                    pct_start=0.3, three_phase=three_phase)
        lrs, moms = [], []
        for _ in range(60):
            lrs.append(opt.param_groups[0]["lr"])
            moms.append(opt.param_groups[0]["momentum"])
            opt.step()
            sched.step()
        steps = np.arange(60)
        ours = _np(S.one_cycle_lr(steps, 0.5, 60, pct_start=0.3, three_phase=three_phase))
        ours_m = _np(S.one_cycle_momentum(steps, 60, pct_start=0.3, three_phase=three_phase))
        np.testing.assert_allclose(ours, lrs, rtol=2e-5, atol=1e-9)
        np.testing.assert_allclose(ours_m, moms, rtol=1e-5)


@pytest.mark.parametrize("mode", S.CYCLICAL_MODES)
def test_cyclical_matches_smith_2015_and_pytorch(mode):
    steps = np.arange(0, 90)
    ours = _np(S.cyclical_lr(steps, 0.001, 0.006, step_size=10, mode=mode, gamma=0.99))
    # Smith (2015), section 3.1.
    cycle = np.floor(1 + steps / 20)
    x = np.abs(steps / 10 - 2 * cycle + 1)
    scale = {"triangular": 1.0, "triangular2": 1 / 2 ** (cycle - 1),
             "exp_range": 0.99 ** steps}[mode]
    np.testing.assert_allclose(ours, 0.001 + 0.005 * np.maximum(0, 1 - x) * scale, rtol=1e-5)
    torch = pytest.importorskip("torch")
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.001)
    sched = torch.optim.lr_scheduler.CyclicLR(opt, 0.001, 0.006, step_size_up=10, mode=mode,
                                              gamma=0.99, cycle_momentum=False)
    theirs = []
    for _ in steps:
        theirs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    np.testing.assert_allclose(ours, theirs, rtol=1e-5)


def test_warmup_cosine_sgdr_and_step_decay_formulas():
    lr = _np(S.warmup_cosine_lr(np.array([0, 5, 10, 60, 110, 200]), 1.0, 110, warmup_steps=10,
                                min_lr=0.1))
    np.testing.assert_allclose(lr, [0.0, 0.5, 1.0, _cos(1.0, 0.1, 0.5), 0.1, 0.1], atol=1e-6)
    # SGDR with t_mul=2: cycles [0, 10), [10, 30), [30, 70); restarts at the peak times m_mul^i.
    steps = np.array([0, 5, 10, 20, 30, 50, 69])
    lr = _np(S.sgdr_lr(steps, 1.0, 10, t_mul=2.0, m_mul=0.5))
    expected = [1.0, _cos(1, 0, 0.5), 0.5, _cos(0.5, 0, 0.5), 0.25, _cos(0.25, 0, 0.5),
                _cos(0.25, 0, 39 / 40)]
    np.testing.assert_allclose(lr, expected, atol=1e-6)
    keras_sgdr = keras.optimizers.schedules.CosineDecayRestarts(1.0, 10, t_mul=2.0, m_mul=1.0)
    ours = _np(S.sgdr_lr(np.arange(100), 1.0, 10, t_mul=2.0))
    np.testing.assert_allclose(ours, [float(keras_sgdr(s)) for s in range(100)], atol=1e-5)
    np.testing.assert_allclose(_np(S.sgdr_lr(np.array([0, 5, 10]), 1.0, 10, t_mul=1.0)),
                               [1.0, 0.5, 1.0], atol=1e-6)
    lr = _np(S.step_decay_lr(np.array([0, 49, 50, 74, 75, 100]), 0.1, [50, 75], gamma=0.1))
    np.testing.assert_allclose(lr, [0.1, 0.1, 0.01, 0.01, 0.001, 0.001], rtol=1e-5)


def test_linear_warmup_wraps_any_schedule_and_shifts_it():
    inner = keras.optimizers.schedules.ExponentialDecay(0.1, decay_steps=10, decay_rate=0.5)
    lr = LinearWarmup(inner, warmup_steps=4, warmup_start=0.02)
    values = [float(lr(s)) for s in (0, 2, 4, 14)]
    np.testing.assert_allclose(values, [0.02, 0.06, 0.1, 0.05], rtol=1e-5)
    assert float(LinearWarmup(0.3, 3)(1)) == pytest.approx(0.1)


ALL = [
    OneCycle(0.1, 100, pct_start=0.3, div=10, final_div=100, anneal="linear", three_phase=True),
    CyclicalLR(1e-3, 6e-3, 20, mode="exp_range", gamma=0.99),
    WarmupCosine(0.1, 100, warmup_steps=10, min_lr=1e-4, warmup_start=1e-3),
    SGDR(0.1, 20, t_mul=1.5, m_mul=0.8, min_lr=1e-4),
    StepDecay(0.1, [30, 60], gamma=0.2),
    LinearWarmup(OneCycle(0.1, 80), 20, warmup_start=0.01),
    OneCycleMomentum(100, pct_start=0.3, base_momentum=0.8, max_momentum=0.9, anneal="linear",
                     three_phase=True),
]


@pytest.mark.parametrize("schedule", ALL, ids=lambda s: type(s).__name__)
def test_get_config_round_trip(schedule):
    config = schedule.get_config()
    clone = type(schedule).from_config(config)
    assert clone.get_config() == config
    restored = keras.optimizers.schedules.deserialize(keras.optimizers.schedules.serialize(schedule))
    assert type(restored) is type(schedule)
    for step in (0, 7, 33, 99):
        assert float(restored(step)) == pytest.approx(float(schedule(step)), rel=1e-6)


@pytest.mark.parametrize("schedule", [ALL[0], ALL[3], ALL[5]], ids=["OneCycle", "SGDR", "Warmup"])
def test_keras_model_saved_mid_training_continues_the_schedule(tmp_path, schedule):
    x = np.random.default_rng(0).normal(size=(16, 4)).astype("float32")
    y = x.sum(axis=1, keepdims=True)

    def make():
        keras.utils.set_random_seed(0)
        model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
        model.compile(keras.optimizers.SGD(schedule, momentum=0.9), "mse")
        return model

    model = make()
    model.fit(x, y, batch_size=4, epochs=3, verbose=0, shuffle=False)  # 12 steps
    path = str(tmp_path / "mid.keras")
    model.save(path)
    reloaded = keras.models.load_model(path)
    assert int(reloaded.optimizer.iterations) == 12
    assert type(reloaded.optimizer._learning_rate) is type(schedule)
    assert float(reloaded.optimizer.learning_rate) == pytest.approx(float(schedule(12)), rel=1e-6)
    model.fit(x, y, batch_size=4, epochs=2, verbose=0, shuffle=False)
    reloaded.fit(x, y, batch_size=4, epochs=2, verbose=0, shuffle=False)
    assert int(reloaded.optimizer.iterations) == 20
    assert float(reloaded.optimizer.learning_rate) == pytest.approx(float(schedule(20)), rel=1e-6)
    for a, b in zip(model.weights, reloaded.weights):
        np.testing.assert_allclose(_np(a), _np(b), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: OneCycle(0.1, 100, pct_start=1.5), "pct_start"),
        (lambda: OneCycle(-1, 100), "max_lr"),
        (lambda: OneCycle(0.1, 0), "total_steps"),
        (lambda: OneCycle(0.1, 100, anneal="exp"), "anneal"),
        (lambda: CyclicalLR(0.1, 0.01, 10), "base_lr"),
        (lambda: CyclicalLR(0.01, 0.1, 10, mode="sine"), "mode"),
        (lambda: SGDR(0.1, 10, t_mul=0.5), "t_mul"),
        (lambda: StepDecay(0.1, [50, 20]), "boundaries"),
        (lambda: WarmupCosine(0.1, 100, warmup_steps=100), "warmup_steps"),
        (lambda: CycleMomentum(base_momentum=1.5), "base_momentum"),
        (lambda: OneCycleMomentum(100, max_momentum=1.0), "max_momentum"),
        (lambda: OneCycleMomentum(0), "total_steps"),
        (lambda: OneCycleMomentum(100, pct_start=0.6, three_phase=True), "pct_start"),
    ],
)
def test_bad_arguments_name_the_argument(make, message):
    with pytest.raises(ValueError, match=message):
        make()


@pytest.mark.parametrize("optimizer, attribute", [
    (lambda: keras.optimizers.SGD(0.01, momentum=0.9), "momentum"),
    (lambda: keras.optimizers.AdamW(1e-3), "beta_1"),
])
@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="TF-only callback")
def test_cycle_momentum_cycles_under_jit_compile_and_restores(optimizer, attribute):
    keras.utils.set_random_seed(0)
    x = np.random.default_rng(0).normal(size=(32, 4)).astype("float32")
    y = x.sum(axis=1, keepdims=True)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    opt = optimizer()
    model.compile(opt, "mse", jit_compile=True)
    model.fit(x, y, batch_size=8, epochs=1, verbose=0)  # traced once with the float baked in
    n_vars = len(opt.variables)
    seen = []

    class Spy(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            seen.append(float(keras.ops.convert_to_numpy(getattr(opt, attribute))))

    cycle = CycleMomentum(total_steps=8)
    model.fit(x, y, batch_size=8, epochs=2, verbose=0, callbacks=[cycle, Spy()])
    # The callback reads the optimizer's iterations: the cycle runs over steps 4..11 of the fit
    # → clipped to the end of an 8-step cycle.
    expected = [cycle.value(s) for s in range(4, 12)]
    np.testing.assert_allclose(seen, expected, rtol=1e-6)
    assert min(seen) < 0.95
    assert isinstance(getattr(opt, attribute), float)
    assert len(opt.variables) == n_vars
    # The value used inside the compiled step is the cycled one: compare with a manual update.
    fresh = CycleMomentum(total_steps=10)
    model2 = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1, use_bias=False)])
    opt2 = keras.optimizers.SGD(0.1, momentum=0.9)
    model2.compile(opt2, "mse", jit_compile=True)
    model2.layers[0].kernel.assign([[0.0]])
    xs, ys = np.ones((2, 1), "float32"), np.ones((2, 1), "float32")
    model2.fit(xs, ys, batch_size=1, epochs=1, verbose=0, shuffle=False, callbacks=[fresh])
    w, v = 0.0, 0.0
    for step in range(2):
        g = 2 * (w - 1.0)
        v = fresh.value(step) * v - 0.1 * g
        w = w + v
    assert float(_np(model2.layers[0].kernel)[0, 0]) == pytest.approx(w, rel=1e-5)


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="TF-only callback")
def test_cycle_momentum_rejects_optimizers_without_momentum():
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile(keras.optimizers.SGD(0.01), "mse")
    with pytest.raises(ValueError, match="momentum"):
        model.fit(np.ones((4, 2)), np.ones((4, 1)), verbose=0, callbacks=[CycleMomentum(10)])


@pytest.mark.skipif(keras.backend.backend() == "tensorflow", reason="checks other backends")
def test_cycle_momentum_on_a_stock_optimizer_says_it_needs_tensorflow():
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile(keras.optimizers.SGD(0.01, momentum=0.9), "mse")
    with pytest.raises(RuntimeError, match="needs KERAS_BACKEND=tensorflow.*kr.get_optimizer"):
        model.fit(np.ones((4, 2)), np.ones((4, 1)), verbose=0, callbacks=[CycleMomentum(10)])


def test_one_cycle_momentum_mirrors_the_lr_schedule():
    lr = OneCycle(0.1, 60, pct_start=0.3, anneal="linear", three_phase=True)
    momentum = OneCycleMomentum.mirroring(lr, base_momentum=0.8)
    steps = np.arange(60)
    np.testing.assert_allclose(
        _np(momentum(steps)),
        _np(S.one_cycle_momentum(steps, 60, 0.3, 0.8, 0.95, "linear", three_phase=True)),
    )
    assert float(momentum(17)) == pytest.approx(0.8)  # lowest where the LR peaks
    assert float(lr(17)) == pytest.approx(0.1)


def test_cycle_momentum_installs_the_schedule_on_a_kerasrecipes_optimizer_any_backend():
    """On a kerasrecipes optimizer the callback works under jit on every backend and restores."""
    from kerasrecipes.optimizers import get_optimizer

    model = keras.Sequential([keras.Input((1,)),
                              keras.layers.Dense(1, use_bias=False, kernel_initializer="zeros")])
    opt = get_optimizer("sgd", 0.1)
    model.compile(opt, "mse", jit_compile=True)
    one = np.ones((4, 1), "float32")
    model.fit(one, one, batch_size=1, epochs=1, verbose=0)  # traced once with momentum 0.9
    n_vars = len(opt.variables)
    cycle = CycleMomentum(total_steps=8, pct_start=0.5, base_momentum=0.5, max_momentum=0.9)
    model.fit(one, one, batch_size=1, epochs=1, verbose=0, shuffle=False, callbacks=[cycle])
    assert opt.momentum_schedule is None and len(opt.variables) == n_vars
    # Replay: 4 steps at 0.9, then steps 4..7 of the 8-step cycle (the optimizer's iterations).
    w = m = 0.0
    for step in range(8):
        mu = 0.9 if step < 4 else cycle.value(step)
        m = mu * m - 0.1 * 2 * (w - 1.0)
        w += m
    assert float(_np(model.layers[0].kernel)[0, 0]) == pytest.approx(w, rel=1e-5)
    assert cycle.value(5) < 0.85  # the replay above uses momenta well away from 0.9


@pytest.mark.parametrize("name", ["one_cycle", "step", "sgdr", "warmup_cosine"])
def test_make_schedule_names(name):
    schedule = make_schedule(name, 0.1, total_steps=100, warmup=0.1)
    values = np.array([float(schedule(s)) for s in range(100)])
    assert values.max() == pytest.approx(0.1, rel=1e-2)
    assert values[0] < 0.05  # every named schedule warms up
    assert values[-1] < 0.02  # and ends low
    clone = keras.optimizers.schedules.deserialize(keras.optimizers.schedules.serialize(schedule))
    assert float(clone(37)) == pytest.approx(values[37], rel=1e-6)


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
