"""Cosine annealing with warm restarts (SGDR) as a serializable schedule."""

import keras

from kerasrecipes.schedules.functions import sgdr_lr
from kerasrecipes.validate import check_positive


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
        check_positive("max_lr", max_lr)
        check_positive("first_cycle_steps", first_cycle_steps, integer=True)
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
