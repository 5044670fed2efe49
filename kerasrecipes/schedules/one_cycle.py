"""One-cycle learning rate and the momentum that mirrors it, as serializable schedules."""

import keras

from kerasrecipes.schedules.functions import (
    ANNEAL,
    check_phases,
    one_cycle_lr,
    one_cycle_momentum,
)
from kerasrecipes.validate import check_choice, check_positive


@keras.saving.register_keras_serializable(package="kerasrecipes")
class OneCycle(keras.optimizers.schedules.LearningRateSchedule):
    """One-cycle learning rate (see `one_cycle_lr`); pair it with `OneCycleMomentum`.

    Args:
        max_lr: float. Peak learning rate.
        total_steps: int. Steps of the whole run.
        pct_start: float in (0, 1). Fraction of warmup. Defaults to `0.25`.
        div: float. `max_lr` / the rate at step 0. Defaults to `25`.
        final_div: float. The rate at step 0 / the final rate. Defaults to `1e4`.
        anneal: `"cos"` or `"linear"`. Defaults to `"cos"`.
        three_phase: bool. Defaults to `False`.

    Example:
    >>> opt = kr.get_optimizer("sgd", OneCycle(0.1, total_steps=1000),
    ...                        momentum_schedule=OneCycleMomentum(total_steps=1000))

    Reference: Smith & Topin, "Super-Convergence" (2017).
    """

    def __init__(self, max_lr, total_steps, pct_start=0.25, div=25.0, final_div=1e4,
                 anneal="cos", three_phase=False):
        check_positive("max_lr", max_lr)
        check_positive("total_steps", total_steps, integer=True)
        check_phases(pct_start, three_phase)
        check_positive("div", div)
        check_positive("final_div", final_div)
        check_choice("anneal", anneal, ANNEAL)
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


def check_momentum_range(base_momentum, max_momentum):
    """Checks a momentum range (`OneCycleMomentum`, `CycleMomentum`): both in [0, 1)."""
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
        check_positive("total_steps", total_steps, integer=True)
        check_phases(pct_start, three_phase)
        check_momentum_range(base_momentum, max_momentum)
        check_choice("anneal", anneal, ANNEAL)
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
