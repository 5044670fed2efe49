"""The learning-rate range test: `find_lr` and the suggestions read off its curve.

`find_lr` trains for up to `num_steps` batches while the learning rate grows from `min_lr` to
`max_lr` (exponentially by default), records a bias-corrected exponential moving average of the
loss, stops once it diverges, and then puts **everything** back as it was: every model variable
(weights, BatchNorm moving statistics, RNG seeds), every optimizer variable (slots, iteration
count, learning rate) and the optimizer's original learning rate or schedule.

The suggestions (`valley`, `steep`, `minimum`) are pure functions of `(lrs, losses)`.

Reference: Smith, "Cyclical Learning Rates for Training Neural Networks" (2015), section 3.3;
fastai's `lr_find` (Howard & Gugger, 2020) for the valley heuristic.
"""

import dataclasses
import math
import time
import warnings

import keras
import numpy as np

from kerasrecipes.batches import as_batches, num_batches
from kerasrecipes.layers import adapt_normalization
from kerasrecipes.plotting import pyplot
from kerasrecipes.tasks import default_loss, task_of

METHODS = ("valley", "steep", "minimum")
_MIN_POINTS = 5


# --------------------------------------------------------------------------------------------
# Suggestions: pure functions
# --------------------------------------------------------------------------------------------


def _curve(lrs, losses, method):
    lrs = np.asarray(lrs, dtype="float64")
    losses = np.asarray(losses, dtype="float64")
    if lrs.shape != losses.shape or lrs.ndim != 1:
        raise ValueError(
            f"lrs and losses must be 1-D of the same length. Received: lrs.shape={lrs.shape}, "
            f"losses.shape={losses.shape}"
        )
    keep = np.isfinite(losses) & np.isfinite(lrs) & (lrs > 0)
    lrs, losses = lrs[keep], losses[keep]
    if len(losses) < _MIN_POINTS:
        warnings.warn(f"{method} suggestion: the curve has {len(losses)} finite points, fewer "
                      f"than {_MIN_POINTS}; no suggestion.", stacklevel=3)
        return None, None
    spread = losses.max() - losses.min()
    if spread <= 1e-6 * max(1.0, abs(losses).max()):
        warnings.warn(f"{method} suggestion: the loss is flat over the range; no suggestion "
                      "(try a wider range or more steps).", stacklevel=3)
        return None, None
    return lrs, losses


def suggest_valley(lrs, losses):
    """fastai's "valley": the middle of the longest stretch over which the loss keeps falling.

    Finds the longest decreasing subsequence of the loss and returns the LR half-way along it
    (index `start + len // 3 + len // 6`, as fastai), which lands in the steep part of the
    valley, well before the minimum.

    Args:
        lrs: sequence of floats, increasing.
        losses: sequence of floats (smoothed), same length.

    Returns:
        float, or None (with a warning) when the curve is too short or flat.

    Example:
    >>> lrs = np.logspace(-5, 0, 50); losses = np.r_[np.linspace(2, 0.5, 40), np.linspace(0.6, 3, 10)]
    >>> 1e-5 < suggest_valley(lrs, losses) < 1.0
    True
    """
    lrs, losses = _curve(lrs, losses, "valley")
    if lrs is None:
        return None
    n = len(losses)
    lds = np.ones(n, dtype=int)
    max_start = max_end = 0
    for i in range(1, n):
        for j in range(i):
            if losses[i] < losses[j] and lds[i] < lds[j] + 1:
                lds[i] = lds[j] + 1
            if lds[max_end] < lds[i]:
                max_end = i
                max_start = max_end - lds[max_end]
    if max_end == 0:
        warnings.warn("valley suggestion: the loss never decreases; no suggestion.", stacklevel=2)
        return None
    sections = (max_end - max_start) / 3
    index = max_start + int(sections) + int(sections / 2)
    return float(lrs[index])


def suggest_steep(lrs, losses):
    """The LR where the loss falls fastest: the most negative slope of loss vs. log10(LR).

    Args:
        lrs: sequence of floats, increasing.
        losses: sequence of floats (smoothed).

    Returns:
        float, or None (with a warning) when the curve is too short, flat or never falls.

    Example:
    >>> lrs = np.logspace(-4, 0, 41); losses = 1 / (1 + np.exp(4 * (np.log10(lrs) + 2)))
    >>> round(float(np.log10(suggest_steep(lrs, losses))), 1)
    -2.0
    """
    lrs, losses = _curve(lrs, losses, "steep")
    if lrs is None:
        return None
    slopes = np.gradient(losses, np.log10(lrs))
    index = int(np.argmin(slopes))
    if slopes[index] >= 0:
        warnings.warn("steep suggestion: the loss never decreases; no suggestion.", stacklevel=2)
        return None
    return float(lrs[index])


def suggest_minimum(lrs, losses):
    """The LR of the lowest loss divided by 10 (the classic rule of thumb).

    Args:
        lrs: sequence of floats.
        losses: sequence of floats (smoothed).

    Returns:
        float, or None (with a warning) when the curve is too short or flat.

    Example:
    >>> suggest_minimum([1e-3, 1e-2, 1e-1, 1, 10], [2.0, 1.5, 1.0, 1.2, 5.0])
    0.01
    """
    lrs, losses = _curve(lrs, losses, "minimum")
    if lrs is None:
        return None
    best = int(np.argmin(losses))
    if best == 0:
        # min / 10 would fall below the tested range: nothing supports that LR.
        warnings.warn("The loss is lowest at the first LR tested: no 'minimum' suggestion; run "
                      "find_lr with a lower min_lr.", stacklevel=2)
        return None
    return float(lrs[best] / 10)


_SUGGEST = {"valley": suggest_valley, "steep": suggest_steep, "minimum": suggest_minimum}


def smooth_losses(losses, beta=0.98):
    """Bias-corrected exponential moving average, as `find_lr` records it.

    Example:
    >>> [round(v, 6) for v in smooth_losses([1.0, 1.0, 1.0])]
    [1.0, 1.0, 1.0]
    """
    average, out = 0.0, []
    for i, loss in enumerate(losses):
        average = beta * average + (1 - beta) * float(loss)
        out.append(average / (1 - beta ** (i + 1)))
    return out


def range_lrs(min_lr, max_lr, num_steps, mode="exp"):
    """The learning rates of the range test: `num_steps` values from `min_lr` to `max_lr`.

    Example:
    >>> range_lrs(1e-3, 1e-1, 3)
    [0.001, 0.01, 0.1]
    """
    if mode == "exp":
        return [float(v) for v in np.geomspace(min_lr, max_lr, num_steps)]
    return [float(v) for v in np.linspace(min_lr, max_lr, num_steps)]


# --------------------------------------------------------------------------------------------
# The range test
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass
class LRFinderResult:
    """The curve of a learning-rate range test.

    Attributes:
        lrs: list of floats, the LR of each step run.
        losses: list of floats, the smoothed (bias-corrected EMA) loss after each step.
        raw_losses: list of floats, the loss of each batch.
        stopped_early: bool. Whether the run stopped because the loss diverged.
        seconds: float. Wall time of the test (restore included).
    """

    lrs: list
    losses: list
    raw_losses: list
    stopped_early: bool = False
    seconds: float = 0.0

    def suggestion(self, method="valley"):
        """A learning rate read off the curve: `"valley"`, `"steep"` or `"minimum"`.

        Returns None with a warning when the curve is too short or flat.
        """
        if method not in _SUGGEST:
            raise ValueError(f"method must be one of {METHODS}. Received: method={method!r}")
        return _SUGGEST[method](self.lrs, self.losses)

    def suggestions(self):
        """All suggestions as a dict method → float or None."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return {method: self.suggestion(method) for method in METHODS}

    def plot(self, path):
        """Writes loss vs. LR (log scale) with the suggestions marked to a PNG. Returns path."""
        plt = pyplot()
        fig, ax = plt.subplots(figsize=(7, 4.5))
        ax.plot(self.lrs, self.raw_losses, color="lightgrey", linewidth=1, label="batch loss")
        ax.plot(self.lrs, self.losses, color="tab:blue", label="smoothed loss")
        ax.set_xscale("log")
        ax.set_xlabel("learning rate")
        ax.set_ylabel("loss")
        finite = [v for v in self.losses if math.isfinite(v)]
        if finite:
            low, high = min(finite), min(max(finite), 4 * finite[0])
            ax.set_ylim(low - 0.05 * (high - low + 1e-8), high + 0.1 * (high - low + 1e-8))
        for (method, lr), color in zip(self.suggestions().items(),
                                       ("tab:red", "tab:orange", "tab:green")):
            if lr is not None:
                ax.axvline(lr, color=color, linestyle="--", label=f"{method}: {lr:.2e}")
        ax.legend(loc="best")
        ax.set_title("learning-rate range test")
        fig.tight_layout()
        fig.savefig(path, dpi=100)
        plt.close(fig)
        return path


def _snapshot(variables):
    return [np.array(keras.ops.convert_to_numpy(v), copy=True) for v in variables]


def _batches(dataset):
    """Yields batches forever, restarting the dataset at its end (tf.data or PyDataset)."""
    while True:
        if hasattr(dataset, "__getitem__") and hasattr(dataset, "__len__"):
            items = (dataset[i] for i in range(len(dataset)))
        else:
            items = iter(dataset)
        empty = True
        for batch in items:
            empty = False
            yield batch
        if empty:
            raise ValueError("The training dataset is empty: it yields no batches.")


def find_lr(model, train, min_lr=1e-7, max_lr=10.0, num_steps=100, mode="exp",
            smoothing=0.98, diverge_threshold=4.0, optimizer="adamw", loss=None, verbose=1,
            batch_size=None):
    """Runs the LR range test on `model` and restores it bit-identically afterwards.

    Uses the model's compiled optimizer, so per-group `lr_multipliers` of a fine-tuning stage
    (and what is frozen) are kept; an uncompiled model is compiled with `optimizer` and the loss
    matching its output, and stays compiled.

    Args:
        model: keras.Model.
        train: `tf.data.Dataset` or `keras.utils.PyDataset` of `(images, labels)` batches, or
            `(x, y)` arrays (as `keras.Model.fit` takes them; see `batch_size`).
        min_lr: float. First learning rate. Defaults to `1e-7`.
        max_lr: float. Last learning rate. Defaults to `10`.
        num_steps: int. Steps of the ramp. Defaults to `100`.
        mode: `"exp"` (geometric ramp) or `"linear"`. Defaults to `"exp"`.
        smoothing: float in [0, 1). EMA factor of the loss. Defaults to `0.98`.
        diverge_threshold: float > 1. Stop once the smoothed loss exceeds this times the best
            one (or is NaN/inf). Defaults to `4`.
        optimizer: str. Optimizer (see `get_optimizer`) for an uncompiled model. Defaults to
            `"adamw"`.
        loss: optional loss for an uncompiled model. Defaults to `default_loss` of its task.
        verbose: int. 1 prints progress every 10 steps and the suggestions. Defaults to `1`.
        batch_size: optional int. Batch size when `train` is `(x, y)` arrays. Defaults to `None`
            (32).

    Returns:
        `LRFinderResult`.

    Example:
    >>> model = kr.build_classifier("efficientnet_lite0", num_classes=10)
    >>> result = kr.find_lr(model, data.train, num_steps=100)
    >>> result.suggestion("valley"), result.plot("lr_find.png")

    Reference: Smith, "Cyclical Learning Rates for Training Neural Networks" (2015).
    """
    for name, value in (("min_lr", min_lr), ("max_lr", max_lr)):
        if not (isinstance(value, (int, float)) and value > 0):
            raise ValueError(f"{name} must be a positive number. Received: {name}={value!r}")
    if max_lr <= min_lr:
        raise ValueError(f"max_lr must be > min_lr={min_lr}. Received: max_lr={max_lr!r}")
    if not (isinstance(num_steps, int) and num_steps >= 2):
        raise ValueError(f"num_steps must be an int >= 2. Received: num_steps={num_steps!r}")
    if mode not in ("exp", "linear"):
        raise ValueError(f"mode must be 'exp' or 'linear'. Received: mode={mode!r}")
    if not (0 <= smoothing < 1):
        raise ValueError(f"smoothing must be in [0, 1). Received: smoothing={smoothing!r}")
    if not diverge_threshold > 1:
        raise ValueError(
            f"diverge_threshold must be > 1. Received: diverge_threshold={diverge_threshold!r}"
        )
    train = as_batches(train, batch_size, "train", shuffle=True)
    start = time.time()
    length = num_batches(train)
    if length is not None and 0 < length < num_steps:
        warnings.warn(
            f"num_steps={num_steps} exceeds one epoch of the dataset ({length} batches): the "
            "test will see some batches twice, which flatters the loss at high LRs.",
            stacklevel=2,
        )
    if not getattr(model, "compiled", False) or model.optimizer is None:
        from kerasrecipes.optimizers import get_optimizer

        model.compile(optimizer=get_optimizer(optimizer, min_lr),
                      loss=loss or default_loss(task_of(model)))
    # Like `fit`: a scratch model's per-channel normalisation is computed on `train` first
    # (once; this is set-up, not a change the test makes to the model).
    adapt_normalization(model, train)
    opt = model.optimizer
    if not opt.built:
        opt.build(model.trainable_variables)

    model_state = _snapshot(model.variables)
    opt_state = _snapshot(opt.variables)
    metric_state = _snapshot(model.metrics_variables)
    original_lr = opt._learning_rate  # float variable or schedule; the attribute Keras reads
    if isinstance(original_lr, keras.Variable):
        lr_variable = original_lr
    else:
        # A schedule is called inside the compiled step: swap in a variable we can set per step
        # and rebuild the train function around it (and again after restoring).
        lr_variable = keras.Variable(float(min_lr), dtype="float32", trainable=False,
                                     name="lr_finder_learning_rate")
        opt._learning_rate = lr_variable
        model.make_train_function(force=True)

    lrs, raw, smoothed = [], [], []
    best = math.inf
    average = 0.0
    stopped = False
    try:
        batches = _batches(train)
        for step, lr in enumerate(range_lrs(min_lr, max_lr, num_steps, mode)):
            batch = next(batches)
            lr_variable.assign(lr)
            logs = model.train_on_batch(batch[0], batch[1], return_dict=True)
            value = float(logs["loss"])
            lrs.append(lr)
            raw.append(value)
            average = smoothing * average + (1 - smoothing) * value
            current = average / (1 - smoothing ** (step + 1))
            smoothed.append(current)
            if verbose and (step % 10 == 0 or step == num_steps - 1):
                print(f"[kerasrecipes] lr_find step {step + 1}/{num_steps}: lr {lr:.2e} "
                      f"loss {current:.4f}")
            if not math.isfinite(current) or current > diverge_threshold * best:
                stopped = True
                if verbose:
                    print(f"[kerasrecipes] lr_find: loss diverged at lr {lr:.2e}; stopping")
                break
            best = min(best, current)
    finally:
        if lr_variable is not original_lr:
            opt._learning_rate = original_lr
            opt._untrack_variable(lr_variable)  # the optimizer tracks attributes it is given
            model.make_train_function(force=True)
        for variable, value in zip(model.variables, model_state):
            variable.assign(value)
        for variable, value in zip(opt.variables, opt_state):
            variable.assign(value)
        for variable, value in zip(model.metrics_variables, metric_state):
            variable.assign(value)
    result = LRFinderResult(lrs, smoothed, raw, stopped, time.time() - start)
    if verbose:
        shown = ", ".join(f"{k} {v:.2e}" if v else f"{k} n/a"
                          for k, v in result.suggestions().items())
        print(f"[kerasrecipes] lr_find suggestions: {shown}")
    return result
