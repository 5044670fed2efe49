import keras
import numpy as np
import pytest

from kerasrecipes import optimizers
from kerasrecipes.optimizers import get_optimizer


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
    get_optimizer("sgd", 1.0, clipvalue=5.0).apply([np.array([100.0, -2.0], "float32")], [v])
    # Momentum SGD's first step is -lr * g.
    np.testing.assert_allclose(keras.ops.convert_to_numpy(v), [-5.0, 2.0], rtol=1e-6)
    w = keras.Variable(np.zeros(2, "float32"))
    get_optimizer("sgd", 1.0, global_clipnorm=1.0).apply([np.array([3.0, 4.0], "float32")], [w])
    np.testing.assert_allclose(keras.ops.convert_to_numpy(w), [-0.6, -0.8], rtol=1e-5)
    with pytest.raises(ValueError, match="at most one of"):
        get_optimizer("sgd", 1.0, clipvalue=1.0, clipnorm=1.0)
    with pytest.raises(ValueError, match="clipvalue must be a positive float"):
        get_optimizer("sgd", 1.0, clipvalue=-1.0)
