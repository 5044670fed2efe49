"""The schedules' maths: pure functions of the optimizer step, written with `keras.ops`.

They run on Python numbers, NumPy arrays and backend tensors alike; the
`LearningRateSchedule` classes of this package are thin, serializable wrappers over them.

Reference: Smith, "Cyclical Learning Rates for Training Neural Networks" (2015);
Smith, "A disciplined approach to neural network hyper-parameters: Part 1" (2018);
Smith & Topin, "Super-Convergence" (2017); Loshchilov & Hutter, "SGDR: Stochastic Gradient
Descent with Warm Restarts" (2016); Goyal et al., "Accurate, Large Minibatch SGD" (2017, warmup).
"""

import math

from keras import ops

from kerasrecipes.validate import renamed_arguments

ANNEAL = ("cos", "linear")
CYCLICAL_MODES = ("triangular", "triangular2", "exp_range")


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
        div: float. `max_lr` / the rate at step 0. Defaults to `25`.
        final_div: float. The rate at step 0 / the final rate. Defaults to `1e4`.
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


@renamed_arguments(initial_lr="max_lr")
def step_decay_lr(step, max_lr, boundaries, gamma=0.1):
    """Multiplies the learning rate by `gamma` at each of the step `boundaries` passed.

    Args:
        step: int, array or tensor.
        max_lr: float. The learning rate before the first boundary. (Called `initial_lr`
            before; that keyword still works, with a `DeprecationWarning`.)
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
    return max_lr * ops.power(_float(gamma), drops)


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


def check_phases(pct_start, three_phase):
    """Checks the warmup fraction of a one-cycle curve (`one_cycle_lr`, `one_cycle_momentum`)."""
    if not (isinstance(pct_start, (int, float)) and 0 < pct_start < 1):
        raise ValueError(f"pct_start must be in (0, 1). Received: pct_start={pct_start!r}")
    if three_phase and pct_start >= 0.5:
        raise ValueError(
            f"pct_start must be < 0.5 with three_phase=True. Received: pct_start={pct_start}"
        )

