"""Optimizers with exact per-layer-group learning rates and an optional momentum schedule.

Keras has no per-variable learning rate. These are the stock Keras optimizers with one more
argument, `lr_multipliers`: one float per trainable variable, in the order Keras builds the
optimizer with (`model.trainable_variables`). Each variable is updated exactly as if the optimizer
ran with `learning_rate * multiplier` — momentum, Adam moments and decoupled weight decay included
(weight decay is scaled by the group's LR, as in fastai and PyTorch param groups).

Keras keeps `momentum` / `beta_1` as Python floats, which a compiled train step bakes in. The
optimizers here also take `momentum_schedule`: a schedule of the step (e.g. `kr.OneCycleMomentum`)
that the update step evaluates at `optimizer.iterations` with `keras.ops`, so cyclical momentum
runs inside the compiled step on every backend (TF, JAX, torch) and is saved with the optimizer.

Reference: Howard & Ruder, "Universal Language Model Fine-tuning for Text Classification" (2018);
Smith, "A disciplined approach to neural network hyper-parameters: Part 1" (2018), cyclical
momentum.
"""

import math

import keras
from keras import ops

from kerasrecipes.validate import close_matches

# Variable names (regular expressions on `variable.name`) that decoupled weight decay skips:
# biases and BatchNorm/LayerNorm scale and offset (decaying them only hurts; Goyal et al. 2017,
# "Bag of Tricks", He et al. 2019).
# (TensorFlow hands the optimizer tf.Variables named like "dense/bias:0", Keras variables are "bias".)
NO_DECAY = (r"(^|/)bias(:\d+)?$", r"(^|/)gamma(:\d+)?$", r"(^|/)beta(:\d+)?$")


class _LRMultipliers:
    """Mixin: per-variable learning rates (and decoupled weight decay), and a momentum schedule."""

    # The hyper-parameter `momentum_schedule` drives: "momentum", "beta_1", or None (none).
    _momentum_name = None

    def __init__(self, *args, lr_multipliers=None, no_decay=NO_DECAY, momentum_schedule=None,
                 **kwargs):
        super().__init__(*args, **kwargs)
        if isinstance(no_decay, str) or not all(isinstance(n, str) for n in no_decay or ()):
            raise ValueError(
                f"no_decay must be a list of variable-name patterns. Received: no_decay={no_decay!r}"
            )
        self.no_decay = list(no_decay or ())
        if self.no_decay:
            self.exclude_from_weight_decay(var_names=self.no_decay)
        if lr_multipliers is not None:
            lr_multipliers = [float(m) for m in lr_multipliers]
            if any(m < 0 for m in lr_multipliers):
                raise ValueError(
                    f"lr_multipliers must be >= 0. Received: lr_multipliers={lr_multipliers}"
                )
        self.lr_multipliers = lr_multipliers
        self.momentum_schedule = self._check_momentum_schedule(momentum_schedule)

    def _check_momentum_schedule(self, schedule):
        if schedule is None:
            return None
        if isinstance(schedule, dict):  # from get_config
            schedule = keras.optimizers.schedules.deserialize(schedule)
        if not isinstance(schedule, keras.optimizers.schedules.LearningRateSchedule):
            raise ValueError(
                "momentum_schedule must be a keras.optimizers.schedules.LearningRateSchedule "
                "giving the momentum at a step, e.g. kr.OneCycleMomentum(total_steps). "
                f"Received: momentum_schedule={schedule!r}"
            )
        name = type(self).__name__
        if self._momentum_name is None:
            raise ValueError(
                f"{name} has no momentum to schedule: pass momentum_schedule to SGD, RMSprop, "
                f"Adam or AdamW. Received: momentum_schedule={schedule!r}"
            )
        if self._momentum_name == "momentum" and not self.momentum:
            raise ValueError(
                f"momentum_schedule needs {name}(momentum > 0): with momentum=0 the optimizer "
                f"keeps no momentum slots. Received: momentum={self.momentum!r}"
            )
        return schedule

    def build(self, variables):
        if self.lr_multipliers is not None and len(self.lr_multipliers) != len(variables):
            raise ValueError(
                f"lr_multipliers has {len(self.lr_multipliers)} entries but the optimizer is built "
                f"with {len(variables)} trainable variables. Pass one multiplier per variable of "
                "`model.trainable_variables` (see `kerasrecipes.freezing.group_lr_multipliers`), and "
                "re-create the optimizer whenever you freeze or unfreeze layers."
            )
        super().build(variables)

    def _multiplier(self, variable):
        return self.lr_multipliers[self._get_variable_index(variable)]

    def _apply_weight_decay(self, variables):
        if self.lr_multipliers is None:
            return super()._apply_weight_decay(variables)
        # Applied per variable in update_step instead, with the variable's own LR.

    def scheduled_momentum(self):
        """The momentum (`beta_1` for Adam) of the next update, or None without a schedule."""
        if self.momentum_schedule is None:
            return None
        return self.momentum_schedule(self.iterations)

    def update_step(self, gradient, variable, learning_rate):
        if self.lr_multipliers is not None:
            learning_rate = ops.cast(learning_rate, variable.dtype) * self._multiplier(variable)
            if self.weight_decay is not None and self._use_weight_decay(variable):
                wd = ops.cast(self.weight_decay, variable.dtype)
                variable.assign(variable - variable * wd * learning_rate)
        if self.momentum_schedule is None:
            return super().update_step(gradient, variable, learning_rate)
        # Read from the step counter inside the traced update: no host round trip, and the
        # value follows the optimizer state that the JAX trainer threads through its jitted step.
        momentum = ops.cast(self.scheduled_momentum(), variable.dtype)
        return self._scheduled_update_step(gradient, variable, learning_rate, momentum)

    def get_config(self):
        config = super().get_config()
        config["lr_multipliers"] = self.lr_multipliers
        config["no_decay"] = self.no_decay
        config["momentum_schedule"] = (
            None if self.momentum_schedule is None
            else keras.optimizers.schedules.serialize(self.momentum_schedule)
        )
        return config


# Keras' update steps (keras/src/optimizers/{sgd,rmsprop,adam}.py) with the momentum (`beta_1`) a
# tensor argument instead of the optimizer's float.


def _sgd_update(self, gradient, variable, learning_rate, momentum):
    learning_rate = ops.cast(learning_rate, variable.dtype)
    gradient = ops.cast(gradient, variable.dtype)
    m = self.momentums[self._get_variable_index(variable)]
    self.assign(m, ops.subtract(ops.multiply(m, momentum), ops.multiply(gradient, learning_rate)))
    if self.nesterov:
        self.assign_add(variable, ops.subtract(ops.multiply(m, momentum),
                                               ops.multiply(gradient, learning_rate)))
    else:
        self.assign_add(variable, m)


def _rmsprop_update(self, gradient, variable, learning_rate, momentum):
    lr = ops.cast(learning_rate, variable.dtype)
    gradient = ops.cast(gradient, variable.dtype)
    index = self._get_variable_index(variable)
    velocity = self._velocities[index]
    m = self._momentums[index]
    rho = self.rho
    self.assign(velocity, ops.add(ops.multiply(rho, velocity),
                                  ops.multiply(1 - rho, ops.square(gradient))))
    if self.centered:
        average_grad = self._average_gradients[index]
        self.assign(average_grad, ops.add(ops.multiply(rho, average_grad),
                                          ops.multiply(1 - rho, gradient)))
        denominator = velocity - ops.square(average_grad) + self.epsilon
    else:
        denominator = ops.add(velocity, self.epsilon)
    increment = ops.divide(ops.multiply(lr, gradient), ops.sqrt(denominator))
    self.assign(m, ops.add(ops.multiply(momentum, m), increment))
    self.assign_sub(variable, m)


def _adam_update(self, gradient, variable, learning_rate, beta_1):
    # Bias correction with the current beta_1, as PyTorch's Adam does under a cycled beta_1.
    lr = ops.cast(learning_rate, variable.dtype)
    gradient = ops.cast(gradient, variable.dtype)
    local_step = ops.cast(self.iterations + 1, variable.dtype)
    beta_1_power = ops.power(beta_1, local_step)
    beta_2_power = ops.power(ops.cast(self.beta_2, variable.dtype), local_step)
    index = self._get_variable_index(variable)
    m = self._momentums[index]
    v = self._velocities[index]
    alpha = lr * ops.sqrt(1 - beta_2_power) / (1 - beta_1_power)
    self.assign_add(m, ops.multiply(ops.subtract(gradient, m), 1 - beta_1))
    self.assign_add(v, ops.multiply(ops.subtract(ops.square(gradient), v), 1 - self.beta_2))
    if self.amsgrad:
        v_hat = self._velocity_hats[index]
        self.assign(v_hat, ops.maximum(v_hat, v))
        v = v_hat
    self.assign_sub(variable, ops.divide(ops.multiply(m, alpha),
                                         ops.add(ops.sqrt(v), self.epsilon)))


@keras.saving.register_keras_serializable(package="kerasrecipes")
class SGD(_LRMultipliers, keras.optimizers.SGD):
    """`keras.optimizers.SGD` with per-variable `lr_multipliers` and a `momentum_schedule`."""

    _momentum_name = "momentum"
    _scheduled_update_step = _sgd_update


@keras.saving.register_keras_serializable(package="kerasrecipes")
class RMSprop(_LRMultipliers, keras.optimizers.RMSprop):
    """`keras.optimizers.RMSprop` with per-variable `lr_multipliers` and a `momentum_schedule`."""

    _momentum_name = "momentum"
    _scheduled_update_step = _rmsprop_update


@keras.saving.register_keras_serializable(package="kerasrecipes")
class Adagrad(_LRMultipliers, keras.optimizers.Adagrad):
    """`keras.optimizers.Adagrad` with per-variable `lr_multipliers` (it has no momentum)."""


@keras.saving.register_keras_serializable(package="kerasrecipes")
class Adam(_LRMultipliers, keras.optimizers.Adam):
    """`keras.optimizers.Adam` with `lr_multipliers`; `momentum_schedule` drives `beta_1`."""

    _momentum_name = "beta_1"
    _scheduled_update_step = _adam_update


@keras.saving.register_keras_serializable(package="kerasrecipes")
class AdamW(_LRMultipliers, keras.optimizers.AdamW):
    """`keras.optimizers.AdamW` with `lr_multipliers`; `momentum_schedule` drives `beta_1`."""

    _momentum_name = "beta_1"
    _scheduled_update_step = _adam_update


_OPTIMIZERS = {
    "sgd": (SGD, {"momentum": 0.9}),
    "nesterov": (SGD, {"momentum": 0.9, "nesterov": True}),
    "rmsprop": (RMSprop, {"momentum": 0.9}),
    "adagrad": (Adagrad, {}),
    "adam": (Adam, {}),
    "adamw": (AdamW, {"weight_decay": 1e-4}),
}
# The names `get_optimizer` (and the training recipes' `optimizer=`) take.
OPTIMIZERS = tuple(_OPTIMIZERS)


def check_optimizer_name(name, argument="optimizer"):
    """Raises unless `name` is one of `OPTIMIZERS` (any case), naming the closest ones."""
    if isinstance(name, str) and name.lower() in _OPTIMIZERS:
        return
    hint = close_matches(name, OPTIMIZERS)
    raise ValueError(
        f"{argument} must be one of {sorted(_OPTIMIZERS)}. Received: {argument}={name!r}"
        + (f".{hint}" if hint else "")
    )


def has_momentum(name):
    """Whether `get_optimizer(name, ...)` makes an optimizer whose momentum can be scheduled."""
    if not isinstance(name, str) or name.lower() not in _OPTIMIZERS:
        return False
    cls, defaults = _OPTIMIZERS[name.lower()]
    return cls._momentum_name == "beta_1" or bool(defaults.get("momentum"))


def clipping_arguments(clipnorm=None, clipvalue=None, global_clipnorm=None):
    """Checks gradient-clipping settings and returns those given as optimizer keyword arguments.

    Args:
        clipnorm: optional float > 0. Clip each gradient to this norm.
        clipvalue: optional float > 0. Clip each gradient element to `[-clipvalue, clipvalue]`.
        global_clipnorm: optional float > 0. Scale all gradients together to this global norm.

    Returns:
        dict, e.g. `{"clipvalue": 5.0}`; empty when none is given.

    Raises:
        ValueError: if more than one is given, or one is not a finite positive number.

    Example:
    >>> clipping_arguments(clipvalue=5)
    {'clipvalue': 5.0}
    """
    clipping = {"clipnorm": clipnorm, "clipvalue": clipvalue, "global_clipnorm": global_clipnorm}
    given = {k: v for k, v in clipping.items() if v is not None}
    if len(given) > 1:
        raise ValueError(
            f"Pass at most one of clipnorm, clipvalue, global_clipnorm. Received: {given}"
        )
    for key, value in given.items():
        if (not isinstance(value, (int, float)) or isinstance(value, bool) or value <= 0
                or not math.isfinite(value)):
            raise ValueError(
                f"{key} must be a positive float (e.g. 1.0 for a norm, 5.0 for a value). "
                f"Received: {key}={value!r}"
            )
    return {k: float(v) for k, v in given.items()}


def get_optimizer(name, learning_rate, lr_multipliers=None, weight_decay=None, clipnorm=None,
                  clipvalue=None, global_clipnorm=None, no_decay=NO_DECAY,
                  momentum_schedule=None):
    """Creates an optimizer by name with sensible defaults for fine-tuning.

    Args:
        name: str. One of `"sgd"` (momentum 0.9), `"nesterov"` (SGD, Nesterov momentum 0.9),
            `"rmsprop"` (momentum 0.9), `"adagrad"`, `"adam"`, `"adamw"` (weight decay 1e-4).
        learning_rate: float or `keras.optimizers.schedules.LearningRateSchedule`.
        lr_multipliers: optional list of floats, one per trainable variable. Defaults to `None`.
        weight_decay: optional float. Decoupled weight decay; overrides the default of `name`.
            Defaults to `None`.
            Biases and BatchNorm/LayerNorm `gamma`/`beta` are excluded (see `no_decay`).
        clipnorm: optional float. Clip each gradient to this norm. Defaults to `None`.
        clipvalue: optional float. Clip each gradient element to `[-clipvalue, clipvalue]`
            (the classic recipe uses 5). Defaults to `None`.
        global_clipnorm: optional float. Scale all gradients together so that their global norm
            is at most this. Defaults to `None`.
        no_decay: list of regular expressions matched against `variable.name`; matching
            variables get no weight decay. `()` decays everything. Defaults to `NO_DECAY`
            (biases, `gamma`, `beta`).
        momentum_schedule: optional `LearningRateSchedule` giving the momentum (SGD, RMSprop)
            or `beta_1` (Adam, AdamW) at each step, e.g. `kr.OneCycleMomentum`. Not for
            `"adagrad"`. Defaults to `None` (constant momentum).

    Example:
    >>> opt = get_optimizer("adamw", 1e-3, weight_decay=0.05)
    """
    check_optimizer_name(name)
    cls, defaults = _OPTIMIZERS[name.lower()]
    kwargs = dict(defaults)
    if weight_decay is not None:
        kwargs["weight_decay"] = weight_decay
    kwargs.update(clipping_arguments(clipnorm, clipvalue, global_clipnorm))
    return cls(learning_rate=learning_rate, lr_multipliers=lr_multipliers, no_decay=no_decay,
               momentum_schedule=momentum_schedule, **kwargs)
