"""Smith's cyclical learning rate as a serializable schedule."""

import keras

from kerasrecipes.schedules.functions import CYCLICAL_MODES, cyclical_lr
from kerasrecipes.validate import check_choice, check_positive


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
        check_positive("max_lr", max_lr)
        if not (isinstance(base_lr, (int, float)) and 0 <= base_lr < max_lr):
            raise ValueError(f"base_lr must be in [0, max_lr={max_lr}). Received: base_lr={base_lr!r}")
        check_positive("step_size", step_size, integer=True)
        check_choice("mode", mode, CYCLICAL_MODES)
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
