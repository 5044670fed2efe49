"""Optimizers with exact per-layer-group learning rates (discriminative fine-tuning).

Keras has no per-variable learning rate. These are the stock Keras optimizers with one more
argument, `lr_multipliers`: one float per trainable variable, in the order Keras builds the
optimizer with (`model.trainable_variables`). Each variable is updated exactly as if the optimizer
ran with `learning_rate * multiplier` — momentum, Adam moments and decoupled weight decay included
(weight decay is scaled by the group's LR, as in fastai and PyTorch param groups).

Reference: Howard & Ruder, "Universal Language Model Fine-tuning for Text Classification" (2018).
"""

import keras

# Variable names (regular expressions on `variable.name`) that decoupled weight decay skips:
# biases and BatchNorm/LayerNorm scale and offset (decaying them only hurts; Goyal et al. 2017,
# "Bag of Tricks", He et al. 2019).
# (TensorFlow hands the optimizer tf.Variables named like "dense/bias:0", Keras variables are "bias".)
NO_DECAY = (r"(^|/)bias(:\d+)?$", r"(^|/)gamma(:\d+)?$", r"(^|/)beta(:\d+)?$")


class _LRMultipliers:
    """Mixin that scales the learning rate (and decoupled weight decay) per variable."""

    def __init__(self, *args, lr_multipliers=None, no_decay=NO_DECAY, **kwargs):
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

    def build(self, variables):
        if self.lr_multipliers is not None and len(self.lr_multipliers) != len(variables):
            raise ValueError(
                f"lr_multipliers has {len(self.lr_multipliers)} entries but the optimizer is built "
                f"with {len(variables)} trainable variables. Pass one multiplier per variable of "
                "`model.trainable_variables` (see `kerasrecipes.train.group_lr_multipliers`), and "
                "re-create the optimizer whenever you freeze or unfreeze layers."
            )
        super().build(variables)

    def _multiplier(self, variable):
        return self.lr_multipliers[self._get_variable_index(variable)]

    def _apply_weight_decay(self, variables):
        if self.lr_multipliers is None:
            return super()._apply_weight_decay(variables)
        # Applied per variable in update_step instead, with the variable's own LR.

    def update_step(self, gradient, variable, learning_rate):
        if self.lr_multipliers is None:
            return super().update_step(gradient, variable, learning_rate)
        multiplier = self._multiplier(variable)
        learning_rate = keras.ops.cast(learning_rate, variable.dtype) * multiplier
        if self.weight_decay is not None and self._use_weight_decay(variable):
            wd = keras.ops.cast(self.weight_decay, variable.dtype)
            variable.assign(variable - variable * wd * learning_rate)
        return super().update_step(gradient, variable, learning_rate)

    def get_config(self):
        config = super().get_config()
        config["lr_multipliers"] = self.lr_multipliers
        config["no_decay"] = self.no_decay
        return config


@keras.saving.register_keras_serializable(package="kerasrecipes")
class SGD(_LRMultipliers, keras.optimizers.SGD):
    """`keras.optimizers.SGD` with per-variable `lr_multipliers`."""


@keras.saving.register_keras_serializable(package="kerasrecipes")
class RMSprop(_LRMultipliers, keras.optimizers.RMSprop):
    """`keras.optimizers.RMSprop` with per-variable `lr_multipliers`."""


@keras.saving.register_keras_serializable(package="kerasrecipes")
class Adagrad(_LRMultipliers, keras.optimizers.Adagrad):
    """`keras.optimizers.Adagrad` with per-variable `lr_multipliers`."""


@keras.saving.register_keras_serializable(package="kerasrecipes")
class Adam(_LRMultipliers, keras.optimizers.Adam):
    """`keras.optimizers.Adam` with per-variable `lr_multipliers`."""


@keras.saving.register_keras_serializable(package="kerasrecipes")
class AdamW(_LRMultipliers, keras.optimizers.AdamW):
    """`keras.optimizers.AdamW` with per-variable `lr_multipliers`."""


_OPTIMIZERS = {
    "sgd": (SGD, {"momentum": 0.9}),
    "nesterov": (SGD, {"momentum": 0.9, "nesterov": True}),
    "rmsprop": (RMSprop, {"momentum": 0.9}),
    "adagrad": (Adagrad, {}),
    "adam": (Adam, {}),
    "adamw": (AdamW, {"weight_decay": 1e-4}),
}


def get_optimizer(name, learning_rate, lr_multipliers=None, weight_decay=None, clipnorm=None,
                  clipvalue=None, global_clipnorm=None, no_decay=NO_DECAY):
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

    Example:
    >>> opt = get_optimizer("adamw", 1e-3, weight_decay=0.05)
    """
    if not isinstance(name, str) or name.lower() not in _OPTIMIZERS:
        raise ValueError(
            f"optimizer must be one of {sorted(_OPTIMIZERS)}. Received: optimizer={name!r}"
        )
    cls, defaults = _OPTIMIZERS[name.lower()]
    kwargs = dict(defaults)
    if weight_decay is not None:
        kwargs["weight_decay"] = weight_decay
    clipping = {"clipnorm": clipnorm, "clipvalue": clipvalue, "global_clipnorm": global_clipnorm}
    given = {k: v for k, v in clipping.items() if v is not None}
    if len(given) > 1:
        raise ValueError(f"Pass at most one of clipnorm, clipvalue, global_clipnorm. Received: {given}")
    for key, value in given.items():
        if not isinstance(value, (int, float)) or value <= 0:
            raise ValueError(f"{key} must be a positive float. Received: {key}={value!r}")
        kwargs[key] = float(value)
    return cls(learning_rate=learning_rate, lr_multipliers=lr_multipliers, no_decay=no_decay,
               **kwargs)
