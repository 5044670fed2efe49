"""The options the three training recipes share, defined once and checked before any work starts.

`TrainingOptions` lists every keyword argument that `kr.fine_tune`, `kr.fit` and
`kr.fit_one_cycle` have in common; `training_recipe` gives a recipe all of them (keyword-only,
with the recipe's own defaults where it differs), so an option added here reaches the three at
once. Constructing `TrainingOptions` checks every value, and the recipes check their own
arguments (`check_epochs`, `check_lr`, …) next, all before a batch is read or a step runs; each
error names the argument, repeats the value and, for a misspelt name, suggests the closest ones.

The learning rate goes by one name per meaning, in the API and the CLI alike: `lr` is the peak
learning rate of a recipe's (first) stage (`--lr`), `fine_tune_lr` that of `fine_tune` after
unfreezing, `lr_mult` the ratio between the head's and the first layer group's rate
(`--lr-mult`); `min_lr` / `max_lr` bound the range test (`kr.find_lr`, `lr-find --min-lr
--max-lr`), and schedules call their peak `max_lr`.
"""

import dataclasses
import functools
import inspect
import os
import re

import keras

from kerasrecipes.batches import as_batches
from kerasrecipes.optimizers import check_optimizer_name, clipping_arguments
from kerasrecipes.validate import check_int, check_number, close_matches

VERBOSE = (0, 1, 2, "auto")


@dataclasses.dataclass(frozen=True)
class TrainingOptions:
    """The options of `kr.fine_tune`, `kr.fit` and `kr.fit_one_cycle`, checked on construction.

    Args:
        optimizer: str. `"sgd"`, `"nesterov"`, `"rmsprop"`, `"adagrad"`, `"adam"` or `"adamw"`
            (see `kr.get_optimizer`). Defaults to `"adamw"`.
        weight_decay: optional float >= 0. Decoupled weight decay (scaled per layer group like
            the LR). Defaults to the optimizer's default.
        early_stopping: optional int >= 0. Patience (epochs) of early stopping in the last stage;
            the best weights are restored at the end. `None` turns it off. Defaults to `None`
            (`fine_tune`: `3`).
        monitor: optional str. Metric for early stopping. Defaults to `"val_loss"`, or `"loss"`
            without validation data.
        loss: optional loss (object, function or name; a dict task → loss for a multi-task
            model). Defaults to the one matching the model's output (see `default_loss`).
        metrics: optional list (dict for a multi-task model). Defaults to accuracy.
        callbacks: optional list of extra Keras callbacks, used in every stage.
        steps_per_epoch: optional int >= 1. Needed only when the dataset's length is unknown.
        verbose: 0, 1, 2 or `"auto"`. Keras verbosity. Defaults to `1`.
        label_smoothing: float in [0, 1). Label smoothing of the default cross-entropy; with it,
            or with soft/one-hot training labels (MixUp/CutMix, `kr.mix_dataset`), the default
            loss and accuracy (`kr.CrossEntropy`, `kr.Accuracy`) accept integer and soft labels
            alike. Defaults to `0.0`.
        backup_dir: optional str. Fault tolerance: finished stages and a per-epoch checkpoint of
            the stage in progress (Keras `BackupAndRestore`) are kept here, so running the same
            call again after a crash resumes with at most one epoch lost. Removed when the run
            completes. Defaults to `None`.
        clipnorm: optional float > 0. Clip each gradient to this norm. Defaults to `None`.
        clipvalue: optional float > 0. Clip each gradient element to `[-clipvalue, clipvalue]`
            (the classic recipe uses 5). Defaults to `None`.
        global_clipnorm: optional float > 0. Scale all gradients together so that their global
            norm is at most this. At most one of the three. Defaults to `None`.
        keep_backup: bool. Keep `backup_dir` when the run completes (the caller removes it once
            the trained model is safely saved: running the same call again meanwhile restores
            the finished run instead of training). Defaults to `False`.
        batch_size: optional int >= 1. When `train` / `validation` are `(x, y)` arrays (as
            `keras.Model.fit` takes them), the size of their batches: 32 by default. Datasets
            come in batches already: with one, `batch_size` is an error. Defaults to `None`.

    Example:
    >>> TrainingOptions(optimizer="sgd", label_smoothing=0.1).clipping  # {}
    >>> TrainingOptions(optimizer="adamww")  # ValueError: … Did you mean 'adamw'?
    """

    optimizer: str = "adamw"
    weight_decay: float = None
    early_stopping: int = None
    monitor: str = None
    loss: object = None
    metrics: object = None
    callbacks: object = None
    steps_per_epoch: int = None
    verbose: object = 1
    label_smoothing: float = 0.0
    backup_dir: object = None
    clipnorm: float = None
    clipvalue: float = None
    global_clipnorm: float = None
    keep_backup: bool = False
    batch_size: int = None

    def __post_init__(self):
        check_optimizer_name(self.optimizer)
        check_number("weight_decay", self.weight_decay, low=0, allow_none=True)
        check_int("early_stopping", self.early_stopping, low=0, allow_none=True)
        if self.monitor is not None and not (isinstance(self.monitor, str) and self.monitor):
            raise ValueError(f"monitor must be a metric name such as 'val_loss', or None. "
                             f"Received: monitor={self.monitor!r}")
        _check_loss(self.loss)
        if self.metrics is not None and not isinstance(self.metrics, (list, tuple, dict)):
            raise ValueError(f"metrics must be a list (a dict task → list for a multi-task "
                             f"model) or None. Received: metrics={self.metrics!r}")
        _check_callbacks(self.callbacks)
        check_int("steps_per_epoch", self.steps_per_epoch, low=1, allow_none=True)
        if self.verbose not in VERBOSE:  # True and False pass, as 1 and 0
            raise ValueError(f"verbose must be one of {VERBOSE}. Received: "
                             f"verbose={self.verbose!r}")
        check_number("label_smoothing", self.label_smoothing, 0, 1, high_open=True)
        if self.backup_dir is not None and not isinstance(self.backup_dir, (str, os.PathLike)):
            raise ValueError(f"backup_dir must be a folder path or None. "
                             f"Received: backup_dir={self.backup_dir!r}")
        clipping_arguments(self.clipnorm, self.clipvalue, self.global_clipnorm)
        if not isinstance(self.keep_backup, bool):
            raise ValueError(f"keep_backup must be True or False. "
                             f"Received: keep_backup={self.keep_backup!r}")
        check_int("batch_size", self.batch_size, low=1, allow_none=True)

    @property
    def clipping(self):
        """The gradient clipping as optimizer keyword arguments (at most one entry)."""
        return clipping_arguments(self.clipnorm, self.clipvalue, self.global_clipnorm)


OPTION_NAMES = tuple(field.name for field in dataclasses.fields(TrainingOptions))


def _check_loss(loss):
    if loss is None or isinstance(loss, keras.losses.Loss):
        return
    if isinstance(loss, dict):
        for value in loss.values():
            _check_loss(value)
        return
    if isinstance(loss, str):
        try:
            keras.losses.get(loss)
            return
        except (ValueError, TypeError):
            pass
    elif callable(loss):
        return
    raise ValueError(
        "loss must be a Keras loss (an object, a function or a name such as "
        "'sparse_categorical_crossentropy'), a dict task → loss for a multi-task model, or None. "
        f"Received: loss={loss!r}"
    )


def _check_callbacks(callbacks):
    if callbacks is None:
        return
    if not isinstance(callbacks, (list, tuple)) or not all(
        isinstance(c, keras.callbacks.Callback) for c in callbacks
    ):
        raise ValueError(f"callbacks must be a list of keras.callbacks.Callback objects or None. "
                         f"Received: callbacks={callbacks!r}")


# ---------------------------------------------------------------------------------------------
# Checks of the recipes' own arguments.


def check_epochs(name, value, low=1):
    """Raises unless `value` is an int >= `low`."""
    check_int(name, value, low=low)


def check_lr(name, value, allow_none=False):
    """Raises unless `value` is a finite learning rate > 0 (or `None` when `allow_none`)."""
    check_number(name, value, low=0, low_open=True, allow_none=allow_none)


def check_train_bn(train_bn):
    """Raises unless `train_bn` is `True`, `False` or `None`."""
    if train_bn is not None and not isinstance(train_bn, bool):
        raise ValueError(f"train_bn must be True, False or None. Received: train_bn={train_bn!r}")


# ---------------------------------------------------------------------------------------------
# The decorator that gives a recipe the shared options.


def training_recipe(**defaults):
    """Gives a training recipe every `TrainingOptions` field as a keyword-only argument.

    The recipe is written as `def fit(model, train, validation=None, epochs=10, ..., *,
    options)` and receives a checked `TrainingOptions`, and its `train` and `validation` as
    `kerasrecipes.batches.as_batches` takes them (`(x, y)` arrays become batches of
    `options.batch_size`); its callers see (and `help()` shows) one flat signature: the
    recipe's own arguments, then the shared options. An unknown keyword is
    a `TypeError` that names the closest valid ones.

    Args:
        **defaults: the recipe's own defaults of shared options (e.g. `early_stopping=3`).
    """
    unknown = set(defaults) - set(OPTION_NAMES)
    if unknown:
        raise TypeError(f"Not training options: {sorted(unknown)}.")

    def decorate(fn):
        signature = inspect.signature(fn)
        own = [p for p in signature.parameters.values() if p.name != "options"]
        shared = [
            inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY,
                              default=defaults.get(f.name, f.default))
            for f in dataclasses.fields(TrainingOptions)
        ]
        full = signature.replace(parameters=own + shared)

        @functools.wraps(fn)
        def recipe(*args, **kwargs):
            for key in kwargs:
                if key not in full.parameters:
                    raise TypeError(f"{fn.__name__}() got an unexpected keyword argument "
                                    f"{key!r}.{close_matches(key, list(full.parameters))}")
            bound = full.bind(*args, **kwargs)
            bound.apply_defaults()
            arguments = dict(bound.arguments)
            options = TrainingOptions(**{name: arguments.pop(name) for name in OPTION_NAMES})
            # The data the way keras.Model.fit takes it: datasets, or (x, y) arrays + batch_size.
            arguments["train"] = as_batches(arguments["train"], options.batch_size, "train",
                                            shuffle=True)
            if "validation" in arguments:
                arguments["validation"] = as_batches(arguments["validation"], options.batch_size,
                                                     "validation", allow_none=True)
            return fn(**arguments, options=options)

        recipe.__signature__ = full
        if recipe.__doc__ and "{training_options}" in recipe.__doc__:
            recipe.__doc__ = recipe.__doc__.replace("{training_options}", _options_doc(defaults))
        return recipe

    return decorate


def _options_doc(defaults):
    """The `Args:` lines of `TrainingOptions`, indented for a recipe's docstring."""
    doc = inspect.getdoc(TrainingOptions)
    args = doc.split("Args:\n", 1)[1].split("\n\nExample:", 1)[0]
    text = "\n".join("    " + line for line in args.splitlines()).strip()
    patience = defaults.get("early_stopping")
    return re.sub(r"Defaults to `None`\s+\(`fine_tune`: `3`\)\.",
                  f"Defaults to `{patience}`.", text)
