"""Step decay as a serializable schedule."""

import keras

from kerasrecipes.schedules.functions import step_decay_lr
from kerasrecipes.validate import check_positive, renamed_arguments


@keras.saving.register_keras_serializable(package="kerasrecipes")
class StepDecay(keras.optimizers.schedules.LearningRateSchedule):
    """Step decay: `max_lr * gamma ** (number of boundaries passed)`.

    Args:
        max_lr: float. The learning rate before the first boundary (the peak). (Called
            `initial_lr` before; that name still works, with a `DeprecationWarning`, and
            `.keras` files that saved it load as they are.)
        boundaries: list of ints, increasing. Steps at which the rate drops.
        gamma: float. Defaults to `0.1`.

    Example:
    >>> opt = keras.optimizers.SGD(StepDecay(0.1, boundaries=[3000, 4500]), momentum=0.9)

    Reference: He et al., "Deep Residual Learning for Image Recognition" (2015).
    """

    @renamed_arguments(initial_lr="max_lr")
    def __init__(self, max_lr, boundaries, gamma=0.1):
        check_positive("max_lr", max_lr)
        boundaries = [int(b) for b in boundaries]
        if any(b <= 0 for b in boundaries) or boundaries != sorted(boundaries):
            raise ValueError(
                f"boundaries must be increasing positive steps. Received: boundaries={boundaries}"
            )
        check_positive("gamma", gamma)
        self.max_lr = float(max_lr)
        self.boundaries = boundaries
        self.gamma = float(gamma)

    def __call__(self, step):
        return step_decay_lr(step, self.max_lr, self.boundaries, self.gamma)

    @property
    def initial_lr(self):
        """Deprecated name of `max_lr`."""
        return self.max_lr

    def get_config(self):
        return {"max_lr": self.max_lr, "boundaries": list(self.boundaries), "gamma": self.gamma}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        if "initial_lr" in config:  # saved before the rename: no warning for an old file
            config["max_lr"] = config.pop("initial_lr")
        return cls(**config)
