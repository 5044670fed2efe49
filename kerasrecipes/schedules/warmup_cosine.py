"""Linear warmup then cosine decay as a serializable schedule."""

import keras

from kerasrecipes.schedules.functions import warmup_cosine_lr
from kerasrecipes.validate import check_positive


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
        check_positive("max_lr", max_lr)
        check_positive("total_steps", total_steps, integer=True)
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
