"""The string → schedule factory of the training recipes: `make_schedule("one_cycle", lr, steps)`.

To add a schedule to `kr.fine_tune` / `kr.fit` (`schedule="name"`): write its pure function in
`functions.py` and its class in a module of its own, then add the name to `SCHEDULES` and a branch
here.
"""

import math

import keras

from kerasrecipes.schedules.linear_warmup import LinearWarmup
from kerasrecipes.schedules.one_cycle import OneCycle
from kerasrecipes.schedules.sgdr import SGDR
from kerasrecipes.schedules.step_decay import StepDecay
from kerasrecipes.validate import close_matches, renamed_arguments

SCHEDULES = ("warmup_cosine", "constant", "one_cycle", "step", "sgdr")


def check_schedule(schedule):
    """Raises unless `schedule` is a name of `SCHEDULES`, a `LearningRateSchedule` or a callable."""
    if isinstance(schedule, keras.optimizers.schedules.LearningRateSchedule) or (
        callable(schedule) and not isinstance(schedule, str)
    ):
        return
    if isinstance(schedule, str) and schedule in SCHEDULES:
        return
    hint = close_matches(schedule, SCHEDULES)
    raise ValueError(
        f"schedule must be one of {SCHEDULES}, a LearningRateSchedule or a callable "
        f"(lr, total_steps) -> schedule. Received: schedule={schedule!r}"
        + (f".{hint}" if hint else "")
    )


@renamed_arguments(learning_rate="lr")
def make_schedule(schedule, lr, total_steps, warmup=0.1):
    """Returns the learning rate (float or `LearningRateSchedule`) for a stage.

    Args:
        schedule: `"warmup_cosine"` (linear warmup over `warmup` of the steps, then cosine decay
            to 0), `"constant"`, `"one_cycle"` (`kr.OneCycle` from `lr / 25` up to
            `lr` over `warmup` of the steps, then down to `lr / 25e4`;
            `fit`/`fine_tune` also cycle the momentum 0.95 → 0.85 → 0.95),
            `"step"` (linear warmup, then ×0.1 at 50% and 75% of the steps), `"sgdr"` (linear
            warmup, then cosine restarts: 3 cycles of lengths 1:2:4), a `LearningRateSchedule`,
            or a callable `(lr, total_steps) -> LearningRateSchedule`.
        lr: float. The peak learning rate. (Called `learning_rate` before; that keyword still
            works, with a `DeprecationWarning`.)
        total_steps: int. Steps of the stage.
        warmup: float. Fraction of steps spent warming up. Defaults to `0.1`.

    Example:
    >>> make_schedule("one_cycle", 1e-3, total_steps=100)  # kr.OneCycle(1e-3, 100, 0.1)
    """
    if isinstance(schedule, keras.optimizers.schedules.LearningRateSchedule):
        return schedule
    if callable(schedule):
        return schedule(lr, total_steps)
    if schedule == "constant":
        return lr
    if schedule == "warmup_cosine":
        warmup_steps = int(round(warmup * total_steps))
        return keras.optimizers.schedules.CosineDecay(
            initial_learning_rate=0.0 if warmup_steps else lr,
            decay_steps=max(1, total_steps - warmup_steps),
            warmup_target=lr if warmup_steps else None,
            warmup_steps=warmup_steps,
        )
    if schedule in ("one_cycle", "step", "sgdr"):
        warmup_steps = int(round(warmup * total_steps))
        if schedule == "one_cycle":
            return OneCycle(lr, max(total_steps, 2), pct_start=min(max(warmup, 1e-3), 0.999))
        rest = max(1, total_steps - warmup_steps)
        if schedule == "step":
            inner = StepDecay(lr, sorted({max(1, rest // 2), max(2, rest * 3 // 4)}))
        else:
            inner = SGDR(lr, max(1, math.ceil(rest / 7)), t_mul=2.0)
        return LinearWarmup(inner, warmup_steps) if warmup_steps else inner
    check_schedule(schedule)
    raise AssertionError(f"schedule {schedule!r} passed check_schedule but has no branch")
