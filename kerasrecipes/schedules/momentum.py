"""Momentum cycling: `CycleMomentum`, a callback for a plain `fit` (see `OneCycleMomentum` for the
schedule that the kerasrecipes optimizers evaluate inside their update step).

Reference: Smith, "A disciplined approach to neural network hyper-parameters: Part 1" (2018),
section 4.3.
"""

import keras

from kerasrecipes.schedules.functions import ANNEAL, one_cycle_momentum
from kerasrecipes.schedules.one_cycle import OneCycleMomentum, check_momentum_range
from kerasrecipes.validate import check_choice, check_positive


def momentum_attribute(optimizer):
    """The name of the optimizer's first-moment hyper-parameter: `beta_1` or `momentum`.

    Raises:
        ValueError: if the optimizer has neither, or has `momentum=0` (no momentum slots).
    """
    if hasattr(optimizer, "beta_1"):
        return "beta_1"
    momentum = getattr(optimizer, "momentum", None)
    if momentum is not None and not isinstance(momentum, (int, float)):
        return "momentum"  # already a variable (e.g. swapped in by CycleMomentum)
    if momentum:
        return "momentum"
    raise ValueError(
        "Momentum cycling needs an optimizer with `beta_1` (Adam, AdamW, Nadam, Adamax, Lion) or "
        f"`momentum` > 0 (SGD, RMSprop). Received: optimizer={type(optimizer).__name__} "
        f"with momentum={momentum!r}"
    )


class _Hyperparameter(keras.Variable):
    """A scalar variable standing in for a float hyper-parameter inside an optimizer.

    Optimizers branch in Python on their floats (`if self.momentum != 0:` in SGD, `> 0` in
    RMSprop), which a symbolic variable cannot answer. Comparisons with a Python number are
    answered with the float this variable replaced (`sign_of`): cycling never turns momentum on or
    off. Arithmetic (`ops.cast(self.momentum, ...)`, `1 - self.beta_1`) reads the variable.
    """

    def __init__(self, value, sign_of, **kwargs):
        super().__init__(value, **kwargs)
        self._sign_of = sign_of

    def _compare(self, other, op, fallback):
        if isinstance(other, (int, float)) and not isinstance(other, bool):
            return op(self._sign_of, other)
        return fallback(other)

    def __ne__(self, other):
        return self._compare(other, lambda a, b: a != b, super().__ne__)

    def __gt__(self, other):
        return self._compare(other, lambda a, b: a > b, super().__gt__)

    def __ge__(self, other):
        return self._compare(other, lambda a, b: a >= b, super().__ge__)

    def __lt__(self, other):
        return self._compare(other, lambda a, b: a < b, super().__lt__)

    def __le__(self, other):
        return self._compare(other, lambda a, b: a <= b, super().__le__)

    __hash__ = keras.Variable.__hash__


class CycleMomentum(keras.callbacks.Callback):
    """Cycles SGD `momentum` / Adam `beta_1` high → low → high in a `fit`, mirroring one-cycle.

    On a kerasrecipes optimizer (`kr.get_optimizer`, `kr.optimizers.*`) it sets the optimizer's
    `momentum_schedule` to a `OneCycleMomentum` for the duration of the fit (any backend, any
    `jit_compile`): the compiled update step computes the momentum from `optimizer.iterations`.
    Creating the optimizer with `momentum_schedule=OneCycleMomentum(...)` does the same without a
    callback, and saves the schedule with the model.

    On a stock Keras optimizer (TensorFlow backend only) it replaces the `momentum` / `beta_1`
    float, which a compiled step would bake in as a constant, with a scalar variable tracked by
    the optimizer and assigns it before every batch from `optimizer.iterations`. The JAX and torch
    trainers keep optimizer state inside their compiled step, where that assignment does not
    reach; there it raises.

    Either way a resumed run continues the cycle, the train function is rebuilt at the start and
    the end, and at `on_train_end` the optimizer gets back what it had.

    Args:
        total_steps: optional int. Length of the cycle. Defaults to `epochs * steps` of the `fit`.
        pct_start: float. As in `OneCycle`. Defaults to `0.25`.
        base_momentum: float. Defaults to `0.85`.
        max_momentum: float. Defaults to `0.95`.
        anneal: `"cos"` or `"linear"`. Defaults to `"cos"`.
        three_phase: bool. Defaults to `False`.

    Example:
    >>> model.compile(kr.get_optimizer("sgd", OneCycle(0.1, 1000)), "mse")
    >>> model.fit(x, y, epochs=10, callbacks=[CycleMomentum(total_steps=1000)])

    Reference: Smith (2018), section 4.3.
    """

    def __init__(self, total_steps=None, pct_start=0.25, base_momentum=0.85, max_momentum=0.95,
                 anneal="cos", three_phase=False):
        super().__init__()
        if total_steps is not None:
            check_positive("total_steps", total_steps, integer=True)
        check_momentum_range(base_momentum, max_momentum)
        check_choice("anneal", anneal, ANNEAL)
        self.total_steps = total_steps
        self.pct_start = pct_start
        self.base_momentum = base_momentum
        self.max_momentum = max_momentum
        self.anneal = anneal
        self.three_phase = three_phase
        self._attribute = None
        self._original = None
        self._variable = None
        self._steps = None

    def value(self, step):
        """The momentum at optimizer step `step` (a Python float)."""
        return float(one_cycle_momentum(step, self._steps or self.total_steps, self.pct_start,
                                        self.base_momentum, self.max_momentum, self.anneal,
                                        self.three_phase))

    def _schedule(self):
        return OneCycleMomentum(self._steps, self.pct_start, self.base_momentum,
                                self.max_momentum, self.anneal, self.three_phase)

    def on_train_begin(self, logs=None):
        optimizer = self.model.optimizer
        self._attribute = momentum_attribute(optimizer)
        self._steps = self.total_steps
        if self._steps is None:
            epochs, steps = self.params.get("epochs"), self.params.get("steps")
            if not (epochs and steps):
                raise ValueError(
                    "CycleMomentum could not infer the number of steps of this fit: pass "
                    "total_steps."
                )
            self._steps = int(epochs * steps)
        if hasattr(optimizer, "momentum_schedule"):  # a kerasrecipes optimizer
            self._attribute = "momentum_schedule"
            self._original = optimizer.momentum_schedule
            optimizer.momentum_schedule = self._schedule()
            self._variable = None
        else:
            if keras.backend.backend() != "tensorflow":
                raise RuntimeError(
                    f"CycleMomentum on a stock Keras optimizer ({type(optimizer).__name__}) "
                    "needs KERAS_BACKEND=tensorflow: the JAX and torch trainers keep optimizer "
                    "state inside the compiled step, where a callback's assignment does not reach "
                    "it. Use a kerasrecipes optimizer (kr.get_optimizer) instead, whose "
                    "momentum_schedule works on every backend. Current backend: "
                    f"{keras.backend.backend()!r}."
                )
            self._original = getattr(optimizer, self._attribute)
            if isinstance(self._original, (int, float)):
                self._variable = _Hyperparameter(
                    self.value(0), sign_of=float(self._original), dtype="float32",
                    trainable=False, name=f"cycled_{self._attribute}",
                )
                optimizer._track_variable(self._variable)
                setattr(optimizer, self._attribute, self._variable)
            else:
                self._variable = self._original  # already a variable: assign it in place
        # A train step traced earlier holds the old momentum: trace it again.
        self.model.make_train_function(force=True)

    def on_train_batch_begin(self, batch, logs=None):
        if self._variable is not None:
            step = int(keras.ops.convert_to_numpy(self.model.optimizer.iterations))
            self._variable.assign(self.value(step))

    def on_train_end(self, logs=None):
        optimizer = self.model.optimizer
        if self._attribute == "momentum_schedule":
            optimizer.momentum_schedule = self._original
        elif self._variable is not self._original:
            setattr(optimizer, self._attribute, self._original)
            optimizer._untrack_variable(self._variable)  # keep the saved optimizer state as it was
        self.model.make_train_function(force=True)
        self._variable = None
