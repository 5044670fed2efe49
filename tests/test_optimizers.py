import keras
import numpy as np
import pytest

from kerasrecipes import optimizers
from kerasrecipes.optimizers import get_optimizer
from kerasrecipes.schedules import OneCycle, OneCycleMomentum


def _run(make, lr, multipliers, steps=3, seed=0):
    """Applies the same gradients through one multiplier-aware optimizer and, as a reference,
    through one plain optimizer per variable with lr * multiplier."""
    rng = np.random.default_rng(seed)
    init = [rng.normal(size=(3, 4)).astype("float32"), rng.normal(size=(4,)).astype("float32")]
    grads = [[rng.normal(size=w.shape).astype("float32") for w in init] for _ in range(steps)]

    variables = [keras.Variable(w) for w in init]
    opt = make(learning_rate=lr, lr_multipliers=multipliers)
    for g in grads:
        opt.apply(g, variables)

    reference = []
    for i, (w, m) in enumerate(zip(init, multipliers)):
        v = keras.Variable(w)
        ref = make(learning_rate=lr * m)
        for g in grads:
            ref.apply([g[i]], [v])
        reference.append(v)
    return [keras.ops.convert_to_numpy(v) for v in variables], [
        keras.ops.convert_to_numpy(v) for v in reference
    ]


@pytest.mark.parametrize(
    "make",
    [
        lambda **kw: optimizers.SGD(momentum=0.9, **kw),
        lambda **kw: optimizers.SGD(momentum=0.9, nesterov=True, **kw),
        lambda **kw: optimizers.Adam(**kw),
        lambda **kw: optimizers.AdamW(weight_decay=0.1, **kw),
        lambda **kw: optimizers.RMSprop(momentum=0.9, **kw),
        lambda **kw: optimizers.Adagrad(**kw),
    ],
    ids=["sgd_momentum", "nesterov", "adam", "adamw", "rmsprop", "adagrad"],
)
def test_each_group_steps_exactly_with_base_lr_times_multiplier(make):
    got, expected = _run(make, lr=0.01, multipliers=[0.1, 1.0])
    for g, e in zip(got, expected):
        np.testing.assert_allclose(g, e, rtol=1e-6, atol=1e-7)


def test_multiplier_really_changes_the_step():
    """Guard: the comparison above would be vacuous if multipliers were ignored."""
    got, _ = _run(lambda **kw: optimizers.Adam(**kw), lr=0.01, multipliers=[0.1, 1.0])
    plain, _ = _run(lambda **kw: optimizers.Adam(**kw), lr=0.01, multipliers=[1.0, 1.0])
    assert not np.allclose(got[0], plain[0])
    np.testing.assert_allclose(got[1], plain[1], rtol=1e-6)


def test_works_with_a_schedule():
    schedule = keras.optimizers.schedules.ExponentialDecay(0.1, decay_steps=1, decay_rate=0.5)
    v = keras.Variable(np.ones(2, "float32"))
    opt = optimizers.SGD(learning_rate=schedule, lr_multipliers=[0.5])
    opt.apply([np.ones(2, "float32")], [v])
    opt.apply([np.ones(2, "float32")], [v])
    # Steps of 0.1 * 0.5 and 0.05 * 0.5.
    np.testing.assert_allclose(keras.ops.convert_to_numpy(v), 1 - 0.05 - 0.025, rtol=1e-6)


def test_wrong_number_of_multipliers_is_a_clear_error():
    opt = optimizers.Adam(learning_rate=0.1, lr_multipliers=[1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="lr_multipliers has 3 entries.*2 trainable variables"):
        opt.build([keras.Variable(np.ones(2)), keras.Variable(np.ones(3))])


def test_negative_multiplier_rejected():
    with pytest.raises(ValueError, match="lr_multipliers must be >= 0"):
        optimizers.SGD(learning_rate=0.1, lr_multipliers=[-1.0])


def test_get_config_round_trip_and_registered_name():
    opt = get_optimizer("adamw", 3e-4, lr_multipliers=[0.1, 1.0], weight_decay=0.05)
    config = keras.optimizers.serialize(opt)
    restored = keras.optimizers.deserialize(config)
    assert type(restored) is optimizers.AdamW
    assert restored.lr_multipliers == [0.1, 1.0]
    assert restored.weight_decay == pytest.approx(0.05)


@pytest.mark.parametrize("name", ["sgd", "nesterov", "rmsprop", "adagrad", "adam", "adamw"])
def test_get_optimizer_names(name):
    opt = get_optimizer(name, 0.01)
    assert opt.lr_multipliers is None
    if name == "nesterov":
        assert opt.nesterov and opt.momentum == pytest.approx(0.9)


def test_unknown_optimizer_is_a_clear_error():
    with pytest.raises(ValueError, match="optimizer must be one of .*Received: optimizer='lamb'"):
        get_optimizer("lamb", 0.01)


@pytest.mark.parametrize("multipliers", [None, [1.0, 1.0, 1.0, 1.0]])
def test_weight_decay_skips_biases_and_batchnorm_by_default(multipliers):
    dense = keras.layers.Dense(2)
    bn = keras.layers.BatchNormalization()
    model = keras.Sequential([keras.Input((3,)), dense, bn])
    before = {v.path: keras.ops.convert_to_numpy(v).copy() for v in model.trainable_variables}
    opt = get_optimizer("adamw", 0.1, lr_multipliers=multipliers, weight_decay=0.5)
    opt.apply([np.zeros(v.shape, "float32") for v in model.trainable_variables],
              model.trainable_variables)
    for v in model.trainable_variables:
        after = keras.ops.convert_to_numpy(v)
        if v.name == "kernel":
            np.testing.assert_allclose(after, before[v.path] * (1 - 0.5 * 0.1), rtol=1e-6)
        else:
            np.testing.assert_array_equal(after, before[v.path])
    everything = get_optimizer("adamw", 0.1, weight_decay=0.5, no_decay=())
    bias = keras.Variable(np.ones(2, "float32"), name="bias")
    everything.apply([np.zeros(2, "float32")], [bias])
    np.testing.assert_allclose(keras.ops.convert_to_numpy(bias), 0.95, rtol=1e-6)


def test_gradient_clipping_by_value_and_global_norm():
    v = keras.Variable(np.zeros(2, "float32"))
    get_optimizer("sgd", 1.0, clipvalue=5.0).apply([keras.ops.convert_to_tensor([100.0, -2.0])], [v])
    # Momentum SGD's first step is -lr * g.
    np.testing.assert_allclose(keras.ops.convert_to_numpy(v), [-5.0, 2.0], rtol=1e-6)
    w = keras.Variable(np.zeros(2, "float32"))
    get_optimizer("sgd", 1.0, global_clipnorm=1.0).apply([keras.ops.convert_to_tensor([3.0, 4.0])], [w])
    np.testing.assert_allclose(keras.ops.convert_to_numpy(w), [-0.6, -0.8], rtol=1e-5)
    with pytest.raises(ValueError, match="at most one of"):
        get_optimizer("sgd", 1.0, clipvalue=1.0, clipnorm=1.0)
    with pytest.raises(ValueError, match="clipvalue must be a positive float"):
        get_optimizer("sgd", 1.0, clipvalue=-1.0)


# --- momentum schedules -------------------------------------------------------------------------

# A big swing (0.9 → 0.5 → 0.9 over 6 steps) so that a constant momentum is far off.
SWING = dict(total_steps=6, pct_start=0.5, base_momentum=0.5, max_momentum=0.9)


def _reference(kind, momenta, lr, steps, w=0.0):
    """NumPy updates of w for the loss (w - 1)^2 (gradient 2(w - 1)), momentum `momenta[t]`."""
    m = v = 0.0
    trajectory = []
    for t in range(steps):
        g, mu = 2.0 * (w - 1.0), momenta[t]
        if kind in ("sgd", "nesterov"):
            m = mu * m - lr * g
            w += mu * m - lr * g if kind == "nesterov" else m
        elif kind == "rmsprop":
            v = 0.9 * v + 0.1 * g * g
            m = mu * m + lr * g / np.sqrt(v + 1e-7)
            w -= m
        else:  # adam, adamw: bias correction with the current beta_1, as PyTorch
            if kind == "adamw":
                w -= w * 0.1 * lr
            m = mu * m + (1 - mu) * g
            v = 0.999 * v + 0.001 * g * g
            alpha = lr * np.sqrt(1 - 0.999 ** (t + 1)) / (1 - mu ** (t + 1))
            w -= m * alpha / (np.sqrt(v) + 1e-7)
        trajectory.append(w)
    return np.array(trajectory)


@pytest.mark.parametrize("kind", ["sgd", "nesterov", "rmsprop", "adam", "adamw"])
def test_momentum_schedule_is_used_inside_the_jit_compiled_train_step(kind):
    """The compiled step (XLA on TF, jax.jit on JAX) follows the schedule step by step."""
    schedule = OneCycleMomentum(**SWING)
    lr = 0.05
    opt = get_optimizer(kind, lr, weight_decay=0.1 if kind == "adamw" else None,
                        momentum_schedule=schedule)
    model = keras.Sequential([keras.Input((1,)),
                              keras.layers.Dense(1, use_bias=False, kernel_initializer="zeros")])
    # torch.compile takes minutes on CPU; on torch the eager step is checked instead.
    jit = keras.backend.backend() != "torch"
    model.compile(opt, "mse", jit_compile=jit)
    assert model.jit_compile == jit
    one = np.ones((1, 1), "float32")
    seen = []
    for _ in range(6):
        model.train_on_batch(one, one)
        seen.append(float(keras.ops.convert_to_numpy(model.layers[0].kernel)[0, 0]))
    momenta = [0.9, 0.7, 0.5, 0.6, 0.8, 0.9]  # one_cycle_momentum at steps 0..5 (cos phases)
    np.testing.assert_allclose([float(schedule(t)) for t in range(6)], momenta, rtol=1e-6)
    expected = _reference(kind, momenta, lr, 6)
    np.testing.assert_allclose(seen, expected, rtol=2e-5, atol=1e-6)
    constant = _reference(kind, [0.9] * 6, lr, 6)
    assert np.abs(constant - expected).max() > 1e-3  # the check above is not vacuous
    assert int(keras.ops.convert_to_numpy(opt.iterations)) == 6


@pytest.mark.parametrize(
    "name, kwargs",
    [("sgd", {}), ("nesterov", {}), ("rmsprop", {"centered": True}),
     ("adam", {"amsgrad": True}), ("adamw", {})],
)
def test_constant_momentum_schedule_equals_the_stock_keras_update(name, kwargs):
    """The update written out for schedules is Keras' own when the schedule is constant."""
    cls, defaults = optimizers._OPTIMIZERS[name]
    value = defaults.get("momentum", 0.9)  # beta_1 of Adam/AdamW is 0.9 by default
    constant = keras.optimizers.schedules.ExponentialDecay(value, decay_steps=1, decay_rate=1.0)
    rng = np.random.default_rng(0)
    init = rng.normal(size=(3, 2)).astype("float32")
    grads = [rng.normal(size=(3, 2)).astype("float32") for _ in range(4)]
    results = []
    for schedule in (None, constant):
        var = keras.Variable(init, name="kernel")
        opt = cls(learning_rate=0.01, momentum_schedule=schedule, lr_multipliers=[0.5],
                  **dict(defaults, **kwargs))
        for g in grads:
            opt.apply([g], [var])
        results.append(keras.ops.convert_to_numpy(var))
    np.testing.assert_allclose(results[1], results[0], rtol=1e-6, atol=1e-7)
    assert not np.allclose(results[0], init)


def test_momentum_schedule_get_config_round_trip():
    opt = get_optimizer("adamw", OneCycle(1e-3, 100), lr_multipliers=[0.1, 1.0],
                        momentum_schedule=OneCycleMomentum(100, pct_start=0.3, anneal="linear"))
    restored = keras.optimizers.deserialize(keras.optimizers.serialize(opt))
    assert type(restored) is optimizers.AdamW
    assert type(restored.momentum_schedule) is OneCycleMomentum
    assert restored.momentum_schedule.get_config() == opt.momentum_schedule.get_config()
    assert restored.get_config() == opt.get_config()
    assert get_optimizer("adam", 1e-3).get_config()["momentum_schedule"] is None


def test_keras_model_saved_mid_training_continues_the_momentum_schedule(tmp_path):
    x = np.random.default_rng(0).normal(size=(16, 4)).astype("float32")
    y = x.sum(axis=1, keepdims=True)
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    model.compile(get_optimizer("sgd", OneCycle(0.05, 20),
                                momentum_schedule=OneCycleMomentum(20, pct_start=0.3)), "mse")
    model.fit(x, y, batch_size=4, epochs=3, verbose=0, shuffle=False)  # 12 steps
    path = str(tmp_path / "mid.keras")
    model.save(path)
    reloaded = keras.models.load_model(path)
    opt = reloaded.optimizer
    assert type(opt) is optimizers.SGD and int(opt.iterations) == 12
    assert float(opt.scheduled_momentum()) == pytest.approx(float(OneCycleMomentum(20, 0.3)(12)))
    model.fit(x, y, batch_size=4, epochs=2, verbose=0, shuffle=False)
    reloaded.fit(x, y, batch_size=4, epochs=2, verbose=0, shuffle=False)
    for a, b in zip(model.weights, reloaded.weights):
        np.testing.assert_allclose(keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b),
                                   rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: get_optimizer("adagrad", 0.1, momentum_schedule=OneCycleMomentum(10)),
         "Adagrad has no momentum to schedule"),
        (lambda: optimizers.SGD(0.1, momentum_schedule=OneCycleMomentum(10)),
         r"momentum_schedule needs SGD\(momentum > 0\).*momentum=0"),
        (lambda: get_optimizer("sgd", 0.1, momentum_schedule=lambda step: 0.9),
         "momentum_schedule must be a keras.optimizers.schedules.LearningRateSchedule"),
    ],
)
def test_bad_momentum_schedule_is_a_clear_error(make, message):
    with pytest.raises(ValueError, match=message):
        make()


@pytest.mark.parametrize("key, value", [("clipnorm", 0.0), ("global_clipnorm", float("nan")),
                                        ("clipvalue", True), ("clipnorm", "1")])
def test_clipping_arguments_reject_non_positive_values(key, value):
    with pytest.raises(ValueError, match=f"{key} must be a positive float.*{key}="):
        optimizers.clipping_arguments(**{key: value})
    assert optimizers.clipping_arguments(clipvalue=5) == {"clipvalue": 5.0}
