"""Learning-rate schedules and momentum cycling: one-cycle, cyclical, warmup-cosine, SGDR, steps.

The maths lives in pure functions of the step (`one_cycle_lr`, `one_cycle_momentum`,
`cyclical_lr`, `warmup_cosine_lr`, `sgdr_lr`, `step_decay_lr`, `linear_warmup`), written with
`keras.ops` so they run on Python numbers, NumPy arrays and backend tensors alike. The classes are
thin, serializable `keras.optimizers.schedules.LearningRateSchedule`s over them: an optimizer that
uses one saves with a `.keras` model and continues at its `iterations` after reloading.

Momentum cycling: `OneCycleMomentum` is the momentum (or Adam's `beta_1`) as a schedule of the
step, for the `momentum_schedule` argument of the kerasrecipes optimizers (`kr.get_optimizer`),
which evaluate it at `optimizer.iterations` inside the compiled update step, on every backend.
`CycleMomentum` is a callback for a plain `fit`: on a kerasrecipes optimizer it installs that
schedule for the duration of the fit; on a stock Keras optimizer (TensorFlow backend only) it
swaps a variable in for the `momentum` / `beta_1` float and assigns it before every batch.

Reference: Smith, "Cyclical Learning Rates for Training Neural Networks" (2015);
Smith, "A disciplined approach to neural network hyper-parameters: Part 1" (2018);
Smith & Topin, "Super-Convergence" (2017); Loshchilov & Hutter, "SGDR: Stochastic Gradient
Descent with Warm Restarts" (2016); Goyal et al., "Accurate, Large Minibatch SGD" (2017, warmup).
"""

import math

import keras
from keras import ops

ANNEAL = ("cos", "linear")
CYCLICAL_MODES = ("triangular", "triangular2", "exp_range")


# --------------------------------------------------------------------------------------------
# Pure functions
# --------------------------------------------------------------------------------------------


def _float(x):
    return ops.cast(x, "float32")


def _anneal(start, end, pct, anneal):
    """Moves from `start` (pct 0) to `end` (pct 1): half a cosine or a straight line."""
    pct = ops.clip(pct, 0.0, 1.0)
    if anneal == "cos":
        return end + (start - end) / 2.0 * (1.0 + ops.cos(math.pi * pct))
    return (1.0 - pct) * start + pct * end  # exact at both ends in float32


def _one_cycle_phases(total_steps, pct_start, three_phase):
    """End steps of the phases, as in PyTorch's `OneCycleLR` (phase k ends *at* that step)."""
    up = float(pct_start * total_steps) - 1
    if three_phase:
        return [up, float(2 * pct_start * total_steps) - 2, float(total_steps - 1)]
    return [up, float(total_steps - 1)]


def _piecewise(step, ends, values, anneal):
    """Anneals through `values[k] -> values[k+1]` over the phases ending at `ends[k]`."""
    step = _float(step)
    result = None
    start = 0.0
    for k in reversed(range(len(ends))):
        start = 0.0 if k == 0 else ends[k - 1]
        pct = (step - start) / max(ends[k] - start, 1e-8)
        value = _anneal(values[k], values[k + 1], pct, anneal)
        result = value if result is None else ops.where(step <= ends[k], value, result)
    return result


def one_cycle_lr(step, max_lr, total_steps, pct_start=0.25, div=25.0, final_div=1e4,
                 anneal="cos", three_phase=False):
    """The one-cycle learning rate at `step`.

    Warms up from `max_lr / div` to `max_lr` over the first `pct_start` of the steps, then anneals
    to `max_lr / div / final_div` (with `three_phase`: back down to `max_lr / div` in as many steps
    as the warmup, then to the minimum). Phase boundaries are PyTorch's `OneCycleLR`'s.

    Args:
        step: int, array or tensor. The optimizer step (0-based).
        max_lr: float. Peak learning rate.
        total_steps: int. Length of the cycle in steps.
        pct_start: float. Fraction of the steps spent warming up. Defaults to `0.25`.
        div: float. `max_lr / initial_lr`. Defaults to `25`.
        final_div: float. `initial_lr / final_lr`. Defaults to `1e4`.
        anneal: `"cos"` or `"linear"`. Defaults to `"cos"`.
        three_phase: bool. fastai/PyTorch's three-phase variant. Defaults to `False`.

    Returns:
        float32 tensor like `step`.

    Example:
    >>> round(float(one_cycle_lr(249, max_lr=0.1, total_steps=1000)), 6)  # the peak
    0.1

    Reference: Smith & Topin, "Super-Convergence" (2017); Smith (2018).
    """
    initial = max_lr / div
    final = initial / final_div
    ends = _one_cycle_phases(total_steps, pct_start, three_phase)
    values = [initial, max_lr, initial, final] if three_phase else [initial, max_lr, final]
    return _piecewise(step, ends, values, anneal)


def one_cycle_momentum(step, total_steps, pct_start=0.25, base_momentum=0.85,
                       max_momentum=0.95, anneal="cos", three_phase=False):
    """The momentum (or Adam's `beta_1`) that mirrors `one_cycle_lr`: high → low → high.

    Args:
        step: int, array or tensor.
        total_steps: int. Length of the cycle in steps.
        pct_start: float. As in `one_cycle_lr`. Defaults to `0.25`.
        base_momentum: float. Momentum at the LR peak. Defaults to `0.85`.
        max_momentum: float. Momentum at the start and the end. Defaults to `0.95`.
        anneal: `"cos"` or `"linear"`. Defaults to `"cos"`.
        three_phase: bool. Defaults to `False`.

    Example:
    >>> round(float(one_cycle_momentum(249, total_steps=1000)), 4)
    0.85

    Reference: Smith (2018), section 4.3 ("cyclical momentum").
    """
    ends = _one_cycle_phases(total_steps, pct_start, three_phase)
    if three_phase:
        values = [max_momentum, base_momentum, max_momentum, max_momentum]
    else:
        values = [max_momentum, base_momentum, max_momentum]
    return _piecewise(step, ends, values, anneal)


def cyclical_lr(step, base_lr, max_lr, step_size, mode="triangular", gamma=1.0):
    """Smith's cyclical learning rate: a triangle between `base_lr` and `max_lr`.

    Args:
        step: int, array or tensor.
        base_lr: float. Lower bound.
        max_lr: float. Upper bound.
        step_size: int. Steps of half a cycle.
        mode: `"triangular"`, `"triangular2"` (amplitude halves every cycle) or `"exp_range"`
            (amplitude scaled by `gamma ** step`). Defaults to `"triangular"`.
        gamma: float. Decay of `"exp_range"`. Defaults to `1.0`.

    Example:
    >>> round(float(cyclical_lr(5, 0.001, 0.006, step_size=10)), 6)
    0.0035

    Reference: Smith, "Cyclical Learning Rates for Training Neural Networks" (2015).
    """
    step = _float(step)
    cycle = ops.floor(1.0 + step / (2.0 * step_size))
    x = ops.abs(step / step_size - 2.0 * cycle + 1.0)
    height = (max_lr - base_lr) * ops.maximum(0.0, 1.0 - x)
    if mode == "triangular2":
        height = height / ops.power(2.0, cycle - 1.0)
    elif mode == "exp_range":
        height = height * ops.power(_float(gamma), step)
    return base_lr + height


def warmup_cosine_lr(step, max_lr, total_steps, warmup_steps=0, min_lr=0.0, warmup_start=0.0):
    """Linear warmup from `warmup_start` to `max_lr`, then half a cosine down to `min_lr`.

    Args:
        step: int, array or tensor.
        max_lr: float. Peak learning rate, reached at `warmup_steps`.
        total_steps: int. Steps of warmup plus decay; `min_lr` from there on.
        warmup_steps: int. Defaults to `0`.
        min_lr: float. Defaults to `0.0`.
        warmup_start: float. Learning rate at step 0 when warming up. Defaults to `0.0`.

    Example:
    >>> float(warmup_cosine_lr(10, 1.0, total_steps=110, warmup_steps=10))
    1.0

    Reference: Loshchilov & Hutter (2016); Goyal et al. (2017) for the warmup.
    """
    step = _float(step)
    decay = _anneal(max_lr, min_lr, (step - warmup_steps) / max(total_steps - warmup_steps, 1),
                    "cos")
    if not warmup_steps:
        return decay
    return ops.where(step < warmup_steps, linear_warmup(step, decay, warmup_steps, warmup_start,
                                                        max_lr), decay)


def sgdr_lr(step, max_lr, first_cycle_steps, t_mul=2.0, m_mul=1.0, min_lr=0.0):
    """Cosine annealing with warm restarts.

    Cycle `i` lasts `first_cycle_steps * t_mul ** i` steps and starts at `max_lr * m_mul ** i`;
    each anneals to `min_lr` along half a cosine. Equal to Keras' `CosineDecayRestarts` with
    `alpha = min_lr / max_lr` when `m_mul == 1`.

    Args:
        step: int, array or tensor.
        max_lr: float. Learning rate at the start of the first cycle.
        first_cycle_steps: int. Length of the first cycle.
        t_mul: float. Growth of the cycle length. Defaults to `2.0`.
        m_mul: float. Decay of the peak from one cycle to the next. Defaults to `1.0`.
        min_lr: float. Defaults to `0.0`.

    Example:
    >>> float(sgdr_lr(100, 0.1, first_cycle_steps=100))  # a restart
    0.1

    Reference: Loshchilov & Hutter, "SGDR: Stochastic Gradient Descent with Warm Restarts" (2016).
    """
    t = _float(step) / first_cycle_steps
    if t_mul == 1.0:
        cycle = ops.floor(t)
        t_in = t - cycle
    else:
        cycle = ops.floor(ops.log(1.0 - t * (1.0 - t_mul)) / math.log(t_mul))
        start = (1.0 - ops.power(_float(t_mul), cycle)) / (1.0 - t_mul)
        t_in = (t - start) / ops.power(_float(t_mul), cycle)
    peak = max_lr * ops.power(_float(m_mul), cycle)
    return min_lr + (peak - min_lr) / 2.0 * (1.0 + ops.cos(math.pi * t_in))


def step_decay_lr(step, initial_lr, boundaries, gamma=0.1):
    """Multiplies the learning rate by `gamma` at each of the step `boundaries` passed.

    Args:
        step: int, array or tensor.
        initial_lr: float.
        boundaries: sequence of ints. Steps at which the rate drops (from that step on).
        gamma: float. Defaults to `0.1`.

    Example:
    >>> round(float(step_decay_lr(75, 0.1, boundaries=[50, 75])), 6)
    0.001
    """
    step = _float(step)
    drops = 0.0
    for boundary in boundaries:
        drops = drops + ops.cast(step >= boundary, "float32")
    return initial_lr * ops.power(_float(gamma), drops)


def linear_warmup(step, value, warmup_steps, warmup_start=0.0, warmup_target=None):
    """Linear ramp from `warmup_start` to `warmup_target` over `warmup_steps`, then `value`.

    Args:
        step: int, array or tensor.
        value: float or tensor. The learning rate after warmup.
        warmup_steps: int.
        warmup_start: float. Defaults to `0.0`.
        warmup_target: optional float. Defaults to `value`.

    Example:
    >>> float(linear_warmup(5, 1.0, warmup_steps=10))
    0.5
    """
    step = _float(step)
    target = value if warmup_target is None else warmup_target
    ramp = warmup_start + (target - warmup_start) * step / max(warmup_steps, 1)
    return ops.where(step < warmup_steps, ramp, value)


# --------------------------------------------------------------------------------------------
# LearningRateSchedule classes
# --------------------------------------------------------------------------------------------


def _positive(name, value, integer=False):
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0
    if integer:
        ok = ok and float(value) == int(value)
    if not ok:
        kind = "a positive int" if integer else "a positive number"
        raise ValueError(f"{name} must be {kind}. Received: {name}={value!r}")


def _check_phases(pct_start, three_phase):
    if not (isinstance(pct_start, (int, float)) and 0 < pct_start < 1):
        raise ValueError(f"pct_start must be in (0, 1). Received: pct_start={pct_start!r}")
    if three_phase and pct_start >= 0.5:
        raise ValueError(
            f"pct_start must be < 0.5 with three_phase=True. Received: pct_start={pct_start}"
        )


def _choice(name, value, choices):
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}. Received: {name}={value!r}")


@keras.saving.register_keras_serializable(package="kerasrecipes")
class OneCycle(keras.optimizers.schedules.LearningRateSchedule):
    """One-cycle learning rate (see `one_cycle_lr`); pair it with `OneCycleMomentum`.

    Args:
        max_lr: float. Peak learning rate.
        total_steps: int. Steps of the whole run.
        pct_start: float in (0, 1). Fraction of warmup. Defaults to `0.25`.
        div: float. `max_lr / initial_lr`. Defaults to `25`.
        final_div: float. `initial_lr / final_lr`. Defaults to `1e4`.
        anneal: `"cos"` or `"linear"`. Defaults to `"cos"`.
        three_phase: bool. Defaults to `False`.

    Example:
    >>> opt = kr.get_optimizer("sgd", OneCycle(0.1, total_steps=1000),
    ...                        momentum_schedule=OneCycleMomentum(total_steps=1000))

    Reference: Smith & Topin, "Super-Convergence" (2017).
    """

    def __init__(self, max_lr, total_steps, pct_start=0.25, div=25.0, final_div=1e4,
                 anneal="cos", three_phase=False):
        _positive("max_lr", max_lr)
        _positive("total_steps", total_steps, integer=True)
        _check_phases(pct_start, three_phase)
        _positive("div", div)
        _positive("final_div", final_div)
        _choice("anneal", anneal, ANNEAL)
        self.max_lr = float(max_lr)
        self.total_steps = int(total_steps)
        self.pct_start = float(pct_start)
        self.div = float(div)
        self.final_div = float(final_div)
        self.anneal = anneal
        self.three_phase = bool(three_phase)

    def __call__(self, step):
        return one_cycle_lr(step, self.max_lr, self.total_steps, self.pct_start, self.div,
                            self.final_div, self.anneal, self.three_phase)

    def get_config(self):
        return {
            "max_lr": self.max_lr, "total_steps": self.total_steps, "pct_start": self.pct_start,
            "div": self.div, "final_div": self.final_div, "anneal": self.anneal,
            "three_phase": self.three_phase,
        }


def _momentum_range(base_momentum, max_momentum):
    for name, value in (("base_momentum", base_momentum), ("max_momentum", max_momentum)):
        if not (isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value < 1):
            raise ValueError(f"{name} must be in [0, 1). Received: {name}={value!r}")


@keras.saving.register_keras_serializable(package="kerasrecipes")
class OneCycleMomentum(keras.optimizers.schedules.LearningRateSchedule):
    """The one-cycle momentum (see `one_cycle_momentum`) as a schedule of the optimizer step.

    A `LearningRateSchedule` in form only (a serializable function of the step): pass it as
    `momentum_schedule` to a kerasrecipes optimizer, which uses it for SGD/RMSprop `momentum` or
    Adam/AdamW `beta_1` inside the compiled update step (TF, JAX and torch backends), and saves
    it with the optimizer. Use the `total_steps`, `pct_start`, `anneal` and `three_phase` of the
    `OneCycle` it mirrors.

    Args:
        total_steps: int. Steps of the whole run.
        pct_start: float in (0, 1). As in `OneCycle`. Defaults to `0.25`.
        base_momentum: float in [0, 1). Momentum at the LR peak. Defaults to `0.85`.
        max_momentum: float in [0, 1). Momentum at the start and the end. Defaults to `0.95`.
        anneal: `"cos"` or `"linear"`. Defaults to `"cos"`.
        three_phase: bool. Defaults to `False`.

    Example:
    >>> opt = kr.get_optimizer("adamw", OneCycle(1e-3, total_steps=500),
    ...                        momentum_schedule=OneCycleMomentum(total_steps=500))

    Reference: Smith (2018), section 4.3 ("cyclical momentum").
    """

    def __init__(self, total_steps, pct_start=0.25, base_momentum=0.85, max_momentum=0.95,
                 anneal="cos", three_phase=False):
        _positive("total_steps", total_steps, integer=True)
        _check_phases(pct_start, three_phase)
        _momentum_range(base_momentum, max_momentum)
        _choice("anneal", anneal, ANNEAL)
        self.total_steps = int(total_steps)
        self.pct_start = float(pct_start)
        self.base_momentum = float(base_momentum)
        self.max_momentum = float(max_momentum)
        self.anneal = anneal
        self.three_phase = bool(three_phase)

    @classmethod
    def mirroring(cls, one_cycle, base_momentum=0.85, max_momentum=0.95):
        """The momentum schedule with the phases of a `OneCycle` learning rate."""
        return cls(one_cycle.total_steps, one_cycle.pct_start, base_momentum, max_momentum,
                   one_cycle.anneal, one_cycle.three_phase)

    def __call__(self, step):
        return one_cycle_momentum(step, self.total_steps, self.pct_start, self.base_momentum,
                                  self.max_momentum, self.anneal, self.three_phase)

    def get_config(self):
        return {
            "total_steps": self.total_steps, "pct_start": self.pct_start,
            "base_momentum": self.base_momentum, "max_momentum": self.max_momentum,
            "anneal": self.anneal, "three_phase": self.three_phase,
        }


@keras.saving.register_keras_serializable(package="kerasrecipes")
class CyclicalLR(keras.optimizers.schedules.LearningRateSchedule):
    """Cyclical learning rate (see `cyclical_lr`).

    Args:
        base_lr: float. Lower bound.
        max_lr: float. Upper bound (> `base_lr`).
        step_size: int. Half a cycle, in steps (Smith advises 2–10 epochs).
        mode: `"triangular"`, `"triangular2"` or `"exp_range"`. Defaults to `"triangular"`.
        gamma: float in (0, 1]. Decay of `"exp_range"`. Defaults to `1.0`.

    Example:
    >>> opt = keras.optimizers.SGD(CyclicalLR(1e-3, 6e-3, step_size=2000), momentum=0.9)

    Reference: Smith, "Cyclical Learning Rates for Training Neural Networks" (2015).
    """

    def __init__(self, base_lr, max_lr, step_size, mode="triangular", gamma=1.0):
        _positive("max_lr", max_lr)
        if not (isinstance(base_lr, (int, float)) and 0 <= base_lr < max_lr):
            raise ValueError(f"base_lr must be in [0, max_lr={max_lr}). Received: base_lr={base_lr!r}")
        _positive("step_size", step_size, integer=True)
        _choice("mode", mode, CYCLICAL_MODES)
        if not (isinstance(gamma, (int, float)) and 0 < gamma <= 1):
            raise ValueError(f"gamma must be in (0, 1]. Received: gamma={gamma!r}")
        self.base_lr = float(base_lr)
        self.max_lr = float(max_lr)
        self.step_size = int(step_size)
        self.mode = mode
        self.gamma = float(gamma)

    def __call__(self, step):
        return cyclical_lr(step, self.base_lr, self.max_lr, self.step_size, self.mode, self.gamma)

    def get_config(self):
        return {"base_lr": self.base_lr, "max_lr": self.max_lr, "step_size": self.step_size,
                "mode": self.mode, "gamma": self.gamma}


@keras.saving.register_keras_serializable(package="kerasrecipes")
class WarmupCosine(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warmup then cosine decay (see `warmup_cosine_lr`).

    Args:
        max_lr: float. Peak learning rate.
        total_steps: int. Warmup plus decay steps.
        warmup_steps: int. Defaults to `0`.
        min_lr: float. Defaults to `0.0`.
        warmup_start: float. Defaults to `0.0`.

    Example:
    >>> opt = keras.optimizers.AdamW(WarmupCosine(1e-3, total_steps=1000, warmup_steps=100))

    Reference: Loshchilov & Hutter (2016); Goyal et al. (2017).
    """

    def __init__(self, max_lr, total_steps, warmup_steps=0, min_lr=0.0, warmup_start=0.0):
        _positive("max_lr", max_lr)
        _positive("total_steps", total_steps, integer=True)
        if not (isinstance(warmup_steps, int) and 0 <= warmup_steps < total_steps):
            raise ValueError(
                f"warmup_steps must be an int in [0, total_steps={total_steps}). "
                f"Received: warmup_steps={warmup_steps!r}"
            )
        self.max_lr = float(max_lr)
        self.total_steps = int(total_steps)
        self.warmup_steps = int(warmup_steps)
        self.min_lr = float(min_lr)
        self.warmup_start = float(warmup_start)

    def __call__(self, step):
        return warmup_cosine_lr(step, self.max_lr, self.total_steps, self.warmup_steps,
                                self.min_lr, self.warmup_start)

    def get_config(self):
        return {"max_lr": self.max_lr, "total_steps": self.total_steps,
                "warmup_steps": self.warmup_steps, "min_lr": self.min_lr,
                "warmup_start": self.warmup_start}


@keras.saving.register_keras_serializable(package="kerasrecipes")
class SGDR(keras.optimizers.schedules.LearningRateSchedule):
    """Cosine annealing with warm restarts (see `sgdr_lr`).

    Keras' `CosineDecayRestarts` computes the same curve; this class adds `min_lr` as an absolute
    rate and shares the pure function with `SnapshotEnsemble`.

    Args:
        max_lr: float. Peak of the first cycle.
        first_cycle_steps: int. Length of the first cycle.
        t_mul: float >= 1. Growth of cycle lengths. Defaults to `2.0`.
        m_mul: float in (0, 1]. Decay of the peaks. Defaults to `1.0`.
        min_lr: float. Defaults to `0.0`.

    Example:
    >>> opt = keras.optimizers.SGD(SGDR(0.05, first_cycle_steps=500), momentum=0.9)

    Reference: Loshchilov & Hutter, "SGDR: Stochastic Gradient Descent with Warm Restarts" (2016).
    """

    def __init__(self, max_lr, first_cycle_steps, t_mul=2.0, m_mul=1.0, min_lr=0.0):
        _positive("max_lr", max_lr)
        _positive("first_cycle_steps", first_cycle_steps, integer=True)
        if not (isinstance(t_mul, (int, float)) and t_mul >= 1):
            raise ValueError(f"t_mul must be >= 1. Received: t_mul={t_mul!r}")
        if not (isinstance(m_mul, (int, float)) and 0 < m_mul <= 1):
            raise ValueError(f"m_mul must be in (0, 1]. Received: m_mul={m_mul!r}")
        self.max_lr = float(max_lr)
        self.first_cycle_steps = int(first_cycle_steps)
        self.t_mul = float(t_mul)
        self.m_mul = float(m_mul)
        self.min_lr = float(min_lr)

    def __call__(self, step):
        return sgdr_lr(step, self.max_lr, self.first_cycle_steps, self.t_mul, self.m_mul,
                       self.min_lr)

    def get_config(self):
        return {"max_lr": self.max_lr, "first_cycle_steps": self.first_cycle_steps,
                "t_mul": self.t_mul, "m_mul": self.m_mul, "min_lr": self.min_lr}


@keras.saving.register_keras_serializable(package="kerasrecipes")
class StepDecay(keras.optimizers.schedules.LearningRateSchedule):
    """Step decay: `initial_lr * gamma ** (number of boundaries passed)`.

    Args:
        initial_lr: float.
        boundaries: list of ints, increasing. Steps at which the rate drops.
        gamma: float. Defaults to `0.1`.

    Example:
    >>> opt = keras.optimizers.SGD(StepDecay(0.1, boundaries=[3000, 4500]), momentum=0.9)

    Reference: He et al., "Deep Residual Learning for Image Recognition" (2015).
    """

    def __init__(self, initial_lr, boundaries, gamma=0.1):
        _positive("initial_lr", initial_lr)
        boundaries = [int(b) for b in boundaries]
        if any(b <= 0 for b in boundaries) or boundaries != sorted(boundaries):
            raise ValueError(
                f"boundaries must be increasing positive steps. Received: boundaries={boundaries}"
            )
        _positive("gamma", gamma)
        self.initial_lr = float(initial_lr)
        self.boundaries = boundaries
        self.gamma = float(gamma)

    def __call__(self, step):
        return step_decay_lr(step, self.initial_lr, self.boundaries, self.gamma)

    def get_config(self):
        return {"initial_lr": self.initial_lr, "boundaries": list(self.boundaries),
                "gamma": self.gamma}


@keras.saving.register_keras_serializable(package="kerasrecipes")
class LinearWarmup(keras.optimizers.schedules.LearningRateSchedule):
    """Adds a linear warmup to any schedule (Keras' own included).

    For `step < warmup_steps` the rate ramps from `warmup_start` to `schedule(0)`; after that it
    is `schedule(step - warmup_steps)`, i.e. the wrapped schedule starts when the warmup ends.

    Args:
        schedule: `LearningRateSchedule` or float.
        warmup_steps: int > 0.
        warmup_start: float. Defaults to `0.0`.

    Example:
    >>> lr = LinearWarmup(keras.optimizers.schedules.ExponentialDecay(0.1, 1000, 0.5), 100)

    Reference: Goyal et al., "Accurate, Large Minibatch SGD: Training ImageNet in 1 Hour" (2017).
    """

    def __init__(self, schedule, warmup_steps, warmup_start=0.0):
        if isinstance(schedule, dict):
            schedule = keras.optimizers.schedules.deserialize(schedule)
        if not isinstance(schedule, (keras.optimizers.schedules.LearningRateSchedule, int, float)):
            raise ValueError(
                "schedule must be a LearningRateSchedule or a float. "
                f"Received: schedule={schedule!r}"
            )
        _positive("warmup_steps", warmup_steps, integer=True)
        self.schedule = schedule
        self.warmup_steps = int(warmup_steps)
        self.warmup_start = float(warmup_start)

    def _after(self, step):
        if isinstance(self.schedule, keras.optimizers.schedules.LearningRateSchedule):
            return _float(self.schedule(step))
        return _float(self.schedule)

    def __call__(self, step):
        step = _float(step)
        after = self._after(ops.maximum(step - self.warmup_steps, 0.0))
        return linear_warmup(step, after, self.warmup_steps, self.warmup_start,
                             self._after(0.0))

    def get_config(self):
        schedule = self.schedule
        if isinstance(schedule, keras.optimizers.schedules.LearningRateSchedule):
            schedule = keras.optimizers.schedules.serialize(schedule)
        return {"schedule": schedule, "warmup_steps": self.warmup_steps,
                "warmup_start": self.warmup_start}


# --------------------------------------------------------------------------------------------
# Momentum cycling
# --------------------------------------------------------------------------------------------


def momentum_attribute(optimizer):
    """The name of the optimizer's first-moment hyper-parameter: `beta_1` or `momentum`.

    Raises:
        ValueError: if the optimizer has neither, or has `momentum=0` (no momentum slots).
    """
    if hasattr(optimizer, "beta_1"):
        return "beta_1"
    momentum = getattr(optimizer, "momentum", None)
    if momentum is not None and not isinstance(momentum, (int, float)):
        return "momentum"  # already a variable (e.g. swapped in by CycleMomentum)
    if momentum:
        return "momentum"
    raise ValueError(
        "Momentum cycling needs an optimizer with `beta_1` (Adam, AdamW, Nadam, Adamax, Lion) or "
        f"`momentum` > 0 (SGD, RMSprop). Received: optimizer={type(optimizer).__name__} "
        f"with momentum={momentum!r}"
    )


class _Hyperparameter(keras.Variable):
    """A scalar variable standing in for a float hyper-parameter inside an optimizer.

    Optimizers branch in Python on their floats (`if self.momentum != 0:` in SGD, `> 0` in
    RMSprop), which a symbolic variable cannot answer. Comparisons with a Python number are
    answered with the float this variable replaced (`sign_of`): cycling never turns momentum on or
    off. Arithmetic (`ops.cast(self.momentum, ...)`, `1 - self.beta_1`) reads the variable.
    """

    def __init__(self, value, sign_of, **kwargs):
        super().__init__(value, **kwargs)
        self._sign_of = sign_of

    def _compare(self, other, op, fallback):
        if isinstance(other, (int, float)) and not isinstance(other, bool):
            return op(self._sign_of, other)
        return fallback(other)

    def __ne__(self, other):
        return self._compare(other, lambda a, b: a != b, super().__ne__)

    def __gt__(self, other):
        return self._compare(other, lambda a, b: a > b, super().__gt__)

    def __ge__(self, other):
        return self._compare(other, lambda a, b: a >= b, super().__ge__)

    def __lt__(self, other):
        return self._compare(other, lambda a, b: a < b, super().__lt__)

    def __le__(self, other):
        return self._compare(other, lambda a, b: a <= b, super().__le__)

    __hash__ = keras.Variable.__hash__


class CycleMomentum(keras.callbacks.Callback):
    """Cycles SGD `momentum` / Adam `beta_1` high → low → high in a `fit`, mirroring one-cycle.

    On a kerasrecipes optimizer (`kr.get_optimizer`, `kr.optimizers.*`) it sets the optimizer's
    `momentum_schedule` to a `OneCycleMomentum` for the duration of the fit (any backend, any
    `jit_compile`): the compiled update step computes the momentum from `optimizer.iterations`.
    Creating the optimizer with `momentum_schedule=OneCycleMomentum(...)` does the same without a
    callback, and saves the schedule with the model.

    On a stock Keras optimizer (TensorFlow backend only) it replaces the `momentum` / `beta_1`
    float, which a compiled step would bake in as a constant, with a scalar variable tracked by
    the optimizer and assigns it before every batch from `optimizer.iterations`. The JAX and torch
    trainers keep optimizer state inside their compiled step, where that assignment does not
    reach; there it raises.

    Either way a resumed run continues the cycle, the train function is rebuilt at the start and
    the end, and at `on_train_end` the optimizer gets back what it had.

    Args:
        total_steps: optional int. Length of the cycle. Defaults to `epochs * steps` of the `fit`.
        pct_start: float. As in `OneCycle`. Defaults to `0.25`.
        base_momentum: float. Defaults to `0.85`.
        max_momentum: float. Defaults to `0.95`.
        anneal: `"cos"` or `"linear"`. Defaults to `"cos"`.
        three_phase: bool. Defaults to `False`.

    Example:
    >>> model.compile(kr.get_optimizer("sgd", OneCycle(0.1, 1000)), "mse")
    >>> model.fit(x, y, epochs=10, callbacks=[CycleMomentum(total_steps=1000)])

    Reference: Smith (2018), section 4.3.
    """

    def __init__(self, total_steps=None, pct_start=0.25, base_momentum=0.85, max_momentum=0.95,
                 anneal="cos", three_phase=False):
        super().__init__()
        if total_steps is not None:
            _positive("total_steps", total_steps, integer=True)
        _momentum_range(base_momentum, max_momentum)
        _choice("anneal", anneal, ANNEAL)
        self.total_steps = total_steps
        self.pct_start = pct_start
        self.base_momentum = base_momentum
        self.max_momentum = max_momentum
        self.anneal = anneal
        self.three_phase = three_phase
        self._attribute = None
        self._original = None
        self._variable = None
        self._steps = None

    def value(self, step):
        """The momentum at optimizer step `step` (a Python float)."""
        return float(one_cycle_momentum(step, self._steps or self.total_steps, self.pct_start,
                                        self.base_momentum, self.max_momentum, self.anneal,
                                        self.three_phase))

    def _schedule(self):
        return OneCycleMomentum(self._steps, self.pct_start, self.base_momentum,
                                self.max_momentum, self.anneal, self.three_phase)

    def on_train_begin(self, logs=None):
        optimizer = self.model.optimizer
        self._attribute = momentum_attribute(optimizer)
        self._steps = self.total_steps
        if self._steps is None:
            epochs, steps = self.params.get("epochs"), self.params.get("steps")
            if not (epochs and steps):
                raise ValueError(
                    "CycleMomentum could not infer the number of steps of this fit: pass "
                    "total_steps."
                )
            self._steps = int(epochs * steps)
        if hasattr(optimizer, "momentum_schedule"):  # a kerasrecipes optimizer
            self._attribute = "momentum_schedule"
            self._original = optimizer.momentum_schedule
            optimizer.momentum_schedule = self._schedule()
            self._variable = None
        else:
            if keras.backend.backend() != "tensorflow":
                raise RuntimeError(
                    f"CycleMomentum on a stock Keras optimizer ({type(optimizer).__name__}) "
                    "needs KERAS_BACKEND=tensorflow: the JAX and torch trainers keep optimizer "
                    "state inside the compiled step, where a callback's assignment does not reach "
                    "it. Use a kerasrecipes optimizer (kr.get_optimizer) instead, whose "
                    "momentum_schedule works on every backend. Current backend: "
                    f"{keras.backend.backend()!r}."
                )
            self._original = getattr(optimizer, self._attribute)
            if isinstance(self._original, (int, float)):
                self._variable = _Hyperparameter(
                    self.value(0), sign_of=float(self._original), dtype="float32",
                    trainable=False, name=f"cycled_{self._attribute}",
                )
                optimizer._track_variable(self._variable)
                setattr(optimizer, self._attribute, self._variable)
            else:
                self._variable = self._original  # already a variable: assign it in place
        # A train step traced earlier holds the old momentum: trace it again.
        self.model.make_train_function(force=True)

    def on_train_batch_begin(self, batch, logs=None):
        if self._variable is not None:
            step = int(keras.ops.convert_to_numpy(self.model.optimizer.iterations))
            self._variable.assign(self.value(step))

    def on_train_end(self, logs=None):
        optimizer = self.model.optimizer
        if self._attribute == "momentum_schedule":
            optimizer.momentum_schedule = self._original
        elif self._variable is not self._original:
            setattr(optimizer, self._attribute, self._original)
            optimizer._untrack_variable(self._variable)  # keep the saved optimizer state as it was
        self.model.make_train_function(force=True)
        self._variable = None
