"""A linear warmup in front of any schedule, serializable."""

import keras
from keras import ops

from kerasrecipes.schedules.functions import linear_warmup
from kerasrecipes.validate import check_positive


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
        check_positive("warmup_steps", warmup_steps, integer=True)
        self.schedule = schedule
        self.warmup_steps = int(warmup_steps)
        self.warmup_start = float(warmup_start)

    def _after(self, step):
        if isinstance(self.schedule, keras.optimizers.schedules.LearningRateSchedule):
            return ops.cast(self.schedule(step), "float32")
        return ops.cast(self.schedule, "float32")

    def __call__(self, step):
        step = ops.cast(step, "float32")
        after = self._after(ops.maximum(step - self.warmup_steps, 0.0))
        return linear_warmup(step, after, self.warmup_steps, self.warmup_start,
                             self._after(0.0))

    def get_config(self):
        schedule = self.schedule
        if isinstance(schedule, keras.optimizers.schedules.LearningRateSchedule):
            schedule = keras.optimizers.schedules.serialize(schedule)
        return {"schedule": schedule, "warmup_steps": self.warmup_steps,
                "warmup_start": self.warmup_start}
