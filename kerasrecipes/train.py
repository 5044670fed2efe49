"""Training recipes: staged fine-tuning with discriminative learning rates, and plain `fit`.

`fine_tune` follows the transfer-learning recipe: freeze the backbone and train the new head,
then unfreeze (all groups, the top N, or gradually one group per epoch) and fine-tune at a lower
learning rate, earlier layer groups getting geometrically smaller rates, with early stopping that
restores the best weights. Every freeze/unfreeze recompiles, as Keras requires.

Reference: Howard & Ruder, "Universal Language Model Fine-tuning for Text Classification" (2018);
Yosinski et al., "How transferable are features in deep neural networks?" (2014).
"""

import contextlib
import dataclasses
import json
import math
import os
import shutil
import warnings

import keras
import numpy as np

from kerasrecipes.backbones import infer_layer_groups
from kerasrecipes.batches import INFINITE, epoch_steps, first_batch, num_batches
from kerasrecipes.layers import adapt_normalization
from kerasrecipes.models import batch_norm_layers
from kerasrecipes.optimizers import clipping_arguments, get_optimizer, has_momentum
from kerasrecipes.plotting import pyplot
from kerasrecipes.tasks import default_loss, default_metrics, multitask_compile_args, task_of

SCHEDULES = ("warmup_cosine", "constant", "one_cycle", "step", "sgdr")


@dataclasses.dataclass
class TrainingHistory:
    """The history of all stages of a training run as one record.

    Attributes:
        history: dict of metric name → list of per-epoch values over all stages (`loss`,
            `accuracy`, `val_loss`, `val_accuracy`, `learning_rate`, …).
        stages: list of dicts, one per stage: `name`, `first_epoch`, `epochs`, `trainable_groups`,
            `learning_rate`.
    """

    history: dict = dataclasses.field(default_factory=dict)
    stages: list = dataclasses.field(default_factory=list)

    @property
    def epochs(self):
        return len(self.history.get("loss", []))

    def _append(self, stage, keras_history):
        offset = self.epochs
        epochs = len(keras_history.history.get("loss", []))
        for key, values in keras_history.history.items():
            column = self.history.setdefault(key, [math.nan] * offset)
            column.extend(float(v) for v in values)
        for column in self.history.values():
            column.extend([math.nan] * (offset + epochs - len(column)))
        self.stages.append(dict(stage, first_epoch=offset, epochs=epochs))

    def stage_metric(self, stage_index, metric="val_accuracy", best=max):
        """The best value of `metric` within one stage (None if it was not recorded)."""
        stage = self.stages[stage_index]
        values = self.history.get(metric, [])[stage["first_epoch"]:][: stage["epochs"]]
        values = [v for v in values if not math.isnan(v)]
        return best(values) if values else None

    def to_dict(self):
        return {"history": self.history, "stages": self.stages}

    def save_json(self, path):
        with open(path, "w") as f:
            json.dump(self.to_dict(), f, indent=2)

    def plot(self, path):
        """Writes loss/accuracy curves (train and validation) with the LR to a PNG. Returns path."""
        return plot_history(self, path)

    def diagnose(self):
        """The curve patterns of the run: `kr.diagnose_history(self)`."""
        from kerasrecipes.monitor import diagnose_history

        return diagnose_history(self)

    def report(self, directory, title=None):
        """Writes `report.md` and `history.png` into `directory`: the curves and a verdict per
        pattern they show (overfitting, LR too high, plateau, noisy …) with what to do next.

        Returns:
            str. The path of `report.md`.
        """
        from kerasrecipes.monitor import history_report

        return history_report(self, directory, title=title)


def plot_history(history, path, patterns=None):
    """Plots a `TrainingHistory` (or a Keras `History`, or a dict) to a PNG file; returns path.

    Loss and accuracy (every `*accuracy` metric of a multi-task model), train vs. validation, one
    panel each; the learning rate on a second axis of the loss panel; stage boundaries as dashed
    vertical lines; the curve patterns of `kr.diagnose_history` named above the panels (and the
    best validation-loss epoch marked when the run overfits).

    Args:
        history: `TrainingHistory`, Keras `History` or dict of metric → per-epoch values.
        path: str. The PNG file.
        patterns: optional list of `(pattern, message)`. Defaults to `diagnose_history(history)`.
    """
    from kerasrecipes.monitor import CURVE_PATTERNS, diagnose_history

    plt = pyplot()

    record = getattr(history, "history", history)
    stages = getattr(history, "stages", None) or []
    patterns = diagnose_history(history) if patterns is None else patterns
    accuracies = [k for k in record if k.endswith("accuracy") and not k.startswith("val_")]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.4))
    for ax, metrics, title in ((axes[0], ["loss"], "loss"),
                               (axes[1], accuracies or ["accuracy"], "accuracy")):
        for metric in metrics:
            for prefix, style in (("", "-o"), ("val_", "-s")):
                values = record.get(prefix + metric)
                if values:
                    epochs = np.arange(1, len(values) + 1)
                    ax.plot(epochs, values, style, markersize=3,
                            label=(prefix or "train_") + metric)
        for stage in stages[1:]:
            ax.axvline(stage["first_epoch"] + 0.5, color="grey", linestyle="--", linewidth=1)
        ax.set_xlabel("epoch")
        ax.set_title(title)
        if ax.get_lines():
            ax.legend(loc="best", fontsize=8)
    val_loss = np.asarray([math.nan if v is None else v for v in record.get("val_loss", [])],
                          dtype="float64")
    if any(p == "overfitting" for p, _ in patterns) and np.isfinite(val_loss).any():
        best = int(np.nanargmin(val_loss)) + 1
        axes[0].axvline(best, color="tab:red", linestyle=":", linewidth=1.5)
        axes[0].annotate(f"best val_loss (epoch {best})", (best, 1.0), xycoords=(
            "data", "axes fraction"), fontsize=8, color="tab:red", ha="left", va="top")
    if record.get("learning_rate"):
        lr_axis = axes[0].twinx()
        lrs = record["learning_rate"]
        lr_axis.plot(np.arange(1, len(lrs) + 1), lrs, color="tab:green", alpha=0.6, label="lr")
        lr_axis.set_ylabel("learning rate (end of epoch)", color="tab:green")
    problems = [CURVE_PATTERNS[p][1] for p, _ in patterns if p in CURVE_PATTERNS]
    fig.suptitle("detected: " + ", ".join(problems) if problems
                 else "no problem pattern detected", color="tab:red" if problems else
                 "tab:green", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


class _LearningRateLogger(keras.callbacks.Callback):
    """Adds the optimizer's current learning rate (and scheduled momentum) to each epoch's logs."""

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            optimizer = self.model.optimizer
            logs["learning_rate"] = float(keras.ops.convert_to_numpy(optimizer.learning_rate))
            momentum = getattr(optimizer, "scheduled_momentum", lambda: None)()
            if momentum is not None:
                logs["momentum"] = float(keras.ops.convert_to_numpy(momentum))


class _StopOnNaN(keras.callbacks.Callback):
    """Stops a stage at the first non-finite loss and puts back the weights of the epoch start."""

    def __init__(self):
        super().__init__()
        self.diverged = None

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch
        self._weights = self.model.get_weights()

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            self.diverged = f"loss became {float(loss)} at epoch {self._epoch + 1}, batch {batch + 1}"
            self.model.stop_training = True
            self.model.set_weights(self._weights)


def make_schedule(schedule, learning_rate, total_steps, warmup=0.1):
    """Returns the learning rate (float or `LearningRateSchedule`) for a stage.

    Args:
        schedule: `"warmup_cosine"` (linear warmup over `warmup` of the steps, then cosine decay
            to 0), `"constant"`, `"one_cycle"` (`kr.OneCycle` from `learning_rate / 25` up to
            `learning_rate` over `warmup` of the steps, then down to `learning_rate / 25e4`;
            `fit`/`fine_tune` also cycle the momentum 0.95 → 0.85 → 0.95),
            `"step"` (linear warmup, then ×0.1 at 50% and 75% of the steps), `"sgdr"` (linear
            warmup, then cosine restarts: 3 cycles of lengths 1:2:4), a `LearningRateSchedule`,
            or a callable `(learning_rate, total_steps) -> LearningRateSchedule`.
        learning_rate: float. The peak learning rate.
        total_steps: int. Steps of the stage.
        warmup: float. Fraction of steps spent warming up. Defaults to `0.1`.
    """
    if isinstance(schedule, keras.optimizers.schedules.LearningRateSchedule):
        return schedule
    if callable(schedule):
        return schedule(learning_rate, total_steps)
    if schedule == "constant":
        return learning_rate
    if schedule == "warmup_cosine":
        warmup_steps = int(round(warmup * total_steps))
        return keras.optimizers.schedules.CosineDecay(
            initial_learning_rate=0.0 if warmup_steps else learning_rate,
            decay_steps=max(1, total_steps - warmup_steps),
            warmup_target=learning_rate if warmup_steps else None,
            warmup_steps=warmup_steps,
        )
    if schedule in ("one_cycle", "step", "sgdr"):
        from kerasrecipes.schedules import SGDR, LinearWarmup, OneCycle, StepDecay

        warmup_steps = int(round(warmup * total_steps))
        if schedule == "one_cycle":
            return OneCycle(learning_rate, max(total_steps, 2),
                            pct_start=min(max(warmup, 1e-3), 0.999))
        rest = max(1, total_steps - warmup_steps)
        if schedule == "step":
            inner = StepDecay(learning_rate, sorted({max(1, rest // 2), max(2, rest * 3 // 4)}))
        else:
            inner = SGDR(learning_rate, max(1, math.ceil(rest / 7)), t_mul=2.0)
        return LinearWarmup(inner, warmup_steps) if warmup_steps else inner
    raise ValueError(
        f"schedule must be one of {SCHEDULES}, a LearningRateSchedule or a callable "
        f"(learning_rate, total_steps) -> schedule. Received: schedule={schedule!r}"
    )


def group_lr_multipliers(model, multipliers):
    """One LR multiplier per `model.trainable_variables`, from per-layer multipliers.

    Args:
        model: keras.Model.
        multipliers: dict mapping a layer (object) → float. Variables of layers not listed get 1.

    Returns:
        list of floats aligned with `model.trainable_variables`.
    """
    by_variable = {}
    for layer, multiplier in multipliers.items():
        for variable in layer.weights:
            by_variable[id(variable)] = multiplier
    return [by_variable.get(id(v), 1.0) for v in model.trainable_variables]


def discriminative_multipliers(groups, lr_mult):
    """Per-layer LR multipliers spread geometrically over the layer groups (fastai's `slice`).

    Group i of n gets `lr_mult ** ((i - n) / n)`: the first group `1 / lr_mult`, the top group
    `lr_mult ** (-1 / n)`; the head (not in `groups`) keeps 1.

    Args:
        groups: dict of group name → layers, input → output (`infer_layer_groups`).
        lr_mult: float >= 1. Ratio of the head's LR to the first group's.

    Returns:
        dict mapping layer → multiplier, for `group_lr_multipliers`.
    """
    n = len(groups)
    return {
        layer: float(lr_mult) ** ((i - n) / n)
        for i, layers in enumerate(groups.values())
        for layer in layers
    }


def set_trainable_groups(model, groups, trainable_groups, train_bn=True):
    """Freezes the backbone except `trainable_groups` (names of `groups`); the head stays trainable.

    Args:
        model: keras.Model with a `backbone` sub-model.
        groups: dict of group name → layers, from `infer_layer_groups`.
        trainable_groups: names of the groups to train.
        train_bn: bool, or a set of BatchNorm layer ids that may train. BatchNorm layers that may
            not stay frozen, i.e. in inference mode on their moving statistics. Defaults to `True`.
    """
    backbone = model.get_layer("backbone")
    backbone.trainable = bool(trainable_groups)
    for name, layers in groups.items():
        for layer in layers:
            if isinstance(layer, keras.layers.BatchNormalization) and not (
                train_bn is True or (train_bn and id(layer) in train_bn)
            ):
                layer.trainable = False
            else:
                layer.trainable = name in trainable_groups


def fine_tune(
    model,
    train,
    validation=None,
    head_epochs=2,
    epochs=6,
    lr=1e-3,
    fine_tune_lr=None,
    lr_mult=10.0,
    unfreeze="all",
    train_bn=None,
    optimizer="adamw",
    fine_tune_optimizer=None,
    weight_decay=None,
    schedule="one_cycle",
    early_stopping=3,
    monitor=None,
    loss=None,
    metrics=None,
    callbacks=None,
    steps_per_epoch=None,
    verbose=1,
    label_smoothing=0.0,
    backup_dir=None,
    clipnorm=None,
    clipvalue=None,
    global_clipnorm=None,
):
    """Staged transfer learning: train the head on a frozen backbone, then fine-tune.

    Args:
        model: a model from `kr.build_classifier` (any model with `backbone` and `head` sub-models).
        train: `tf.data.Dataset` or `keras.utils.PyDataset` of `(uint8 images, labels)` batches.
        validation: optional dataset like `train`. Defaults to `None`.
        head_epochs: int. Epochs with the backbone frozen. Defaults to `2`.
        epochs: int. Epochs after unfreezing. Defaults to `6`.
        lr: float. Peak learning rate of the head stage. Defaults to `1e-3`.
        fine_tune_lr: optional float. Peak learning rate of the top layer group and the head after
            unfreezing. Defaults to `lr / 10`.
        lr_mult: float. Ratio between the learning rates of the head and of the first (`stem`)
            group; the groups in between are spaced geometrically. `1` disables discriminative
            learning rates. Defaults to `10`.
        unfreeze: `"all"`, an int N (the top N layer groups) or `"gradual"` (one more group per
            epoch, from the top, then the rest of the epochs with all groups). Defaults to `"all"`.
        train_bn: optional bool. Whether the backbone's BatchNorm layers train after unfreezing
            (updating their moving statistics). `None` keeps what the model was built with:
            `build_classifier` freezes them for pretrained weights (inference mode, as the Keras
            transfer-learning guide advises). Defaults to `None`.
        optimizer: str. Optimizer of the head stage: `"sgd"`, `"nesterov"`, `"rmsprop"`,
            `"adagrad"`, `"adam"`, `"adamw"`. Defaults to `"adamw"`.
        fine_tune_optimizer: optional str. Optimizer after unfreezing. Defaults to `optimizer`.
        weight_decay: optional float. Decoupled weight decay (scaled per group like the LR).
            Defaults to the optimizer's default.
        schedule: the LR schedule of each stage, see `make_schedule`. The default, one cycle
            per stage (fastai's `fine_tune`), also cycles the momentum (SGD, RMSprop) or `beta_1`
            (Adam, AdamW) 0.95 → 0.85 → 0.95 inside the optimizer step; with `unfreeze="gradual"`
            the fine-tuning stage runs one cycle across its recompiles. `"warmup_cosine"` is the
            linear warmup + cosine decay of earlier versions. Defaults to `"one_cycle"`.
        early_stopping: optional int. Patience (epochs) of early stopping in the fine-tuning stage;
            the best weights are restored at the end. `None` turns it off. Defaults to `3`.
        monitor: optional str. Metric for early stopping. Defaults to `"val_loss"`, or `"loss"`
            without validation data.
        loss: optional loss. Defaults to the one matching the model's output (see
            `default_loss`).
        metrics: optional list. Defaults to accuracy.
        callbacks: optional list of extra Keras callbacks, used in every stage.
        steps_per_epoch: optional int. Needed only when the dataset's length is unknown.
        verbose: int. Keras verbosity. Defaults to `1`.
        label_smoothing: float in [0, 1). Label smoothing of the default cross-entropy; with
            it, or with soft/one-hot training labels (MixUp/CutMix, `kr.mix_dataset`), the default
            loss and accuracy (`kr.CrossEntropy`, `kr.Accuracy`) accept integer and soft labels
            alike. Defaults to `0.0`.
        backup_dir: optional str. Fault tolerance: finished stages and a per-epoch checkpoint
            of the stage in progress (Keras `BackupAndRestore`) are kept here, so running the
            same call again after a crash resumes with at most one epoch lost. Removed when the
            run completes. Defaults to `None`.
        clipnorm: optional float > 0. Clip each gradient to this norm. Defaults to `None`.
        clipvalue: optional float > 0. Clip each gradient element to `[-clipvalue, clipvalue]`
            (the classic recipe uses 5). Defaults to `None`.
        global_clipnorm: optional float > 0. Scale all gradients together so that their global
            norm is at most this. At most one of the three. Defaults to `None`.

    Returns:
        `TrainingHistory` of both stages.

    Example:
    >>> model = kr.build_classifier("efficientnet_lite0", num_classes=10)
    >>> history = kr.fine_tune(model, data.train, data.validation, head_epochs=2, epochs=6)
    """
    for name, value, low in (("head_epochs", head_epochs, 0), ("epochs", epochs, 0)):
        if not isinstance(value, int) or value < low:
            raise ValueError(f"{name} must be an int >= {low}. Received: {name}={value!r}")
    if head_epochs + epochs == 0:
        raise ValueError("head_epochs and epochs are both 0: there is nothing to train.")
    if not (isinstance(lr_mult, (int, float)) and lr_mult >= 1):
        raise ValueError(f"lr_mult must be a number >= 1. Received: lr_mult={lr_mult!r}")
    backbone = _submodel(model, "backbone")
    groups = infer_layer_groups(backbone)
    if train_bn is None:
        train_bn = {id(layer) for layer in batch_norm_layers(backbone) if layer.trainable}
    names = list(groups)
    if unfreeze == "all":
        schedule_of_groups = [names]
    elif unfreeze == "gradual":
        schedule_of_groups = [names[-k:] for k in range(1, len(names) + 1)]
    elif isinstance(unfreeze, int) and not isinstance(unfreeze, bool) and 1 <= unfreeze:
        schedule_of_groups = [names[-min(unfreeze, len(names)):]]
    else:
        raise ValueError(
            "unfreeze must be 'all', 'gradual' or a positive int (the top N layer groups of "
            f"{names}). Received: unfreeze={unfreeze!r}"
        )
    fine_tune_lr = lr / 10 if fine_tune_lr is None else fine_tune_lr
    clipping = clipping_arguments(clipnorm, clipvalue, global_clipnorm)
    train, steps = epoch_steps(train, steps_per_epoch)
    runner = _Runner(model, train, validation, steps, schedule, loss, metrics, callbacks,
                     weight_decay, verbose, label_smoothing=label_smoothing,
                     backup_dir=backup_dir, clipping=clipping)
    runner.prepare()

    record = TrainingHistory()
    if head_epochs:
        set_trainable_groups(model, groups, [])
        runner.run(record, "head", head_epochs, optimizer, lr, {}, [])

    if epochs and not runner.diverged:
        multipliers = discriminative_multipliers(groups, lr_mult)
        stage_optimizer = fine_tune_optimizer or optimizer
        schedule_steps = epochs * steps
        offset = 0
        for k, trainable in enumerate(schedule_of_groups[:epochs]):
            last = k == min(len(schedule_of_groups), epochs) - 1
            stage_epochs = epochs - k if last else 1
            set_trainable_groups(model, groups, trainable, train_bn)
            runner.run(
                record, "fine_tune", stage_epochs, stage_optimizer, fine_tune_lr,
                multipliers, trainable, schedule_steps=schedule_steps, step_offset=offset,
                early_stopping=early_stopping if last else None, monitor=monitor,
            )
            offset += stage_epochs * steps
            if runner.diverged:
                break
    if runner.backup:
        runner.backup.remove()
    return record


def fit(
    model,
    train,
    validation=None,
    epochs=10,
    lr=1e-3,
    optimizer="adamw",
    weight_decay=None,
    schedule="warmup_cosine",
    early_stopping=None,
    monitor=None,
    loss=None,
    metrics=None,
    callbacks=None,
    steps_per_epoch=None,
    verbose=1,
    label_smoothing=0.0,
    backup_dir=None,
    clipnorm=None,
    clipvalue=None,
    global_clipnorm=None,
):
    """Trains every layer in one stage (models from scratch); arguments as in `fine_tune`.

    The default schedule is `"warmup_cosine"`; `schedule="one_cycle"` (or `kr.fit_one_cycle`)
    also cycles the momentum.

    Computes the per-channel normalisation of scratch models on `train` first if needed.

    Returns:
        `TrainingHistory` with one stage.

    Example:
    >>> model = kr.build_scratch_cnn(10, image_size=32)
    >>> history = kr.fit(model, data.train, data.validation, epochs=10, lr=3e-3)
    """
    if not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs must be an int >= 1. Received: epochs={epochs!r}")
    clipping = clipping_arguments(clipnorm, clipvalue, global_clipnorm)
    train, steps = epoch_steps(train, steps_per_epoch)
    runner = _Runner(model, train, validation, steps, schedule, loss, metrics, callbacks,
                     weight_decay, verbose, label_smoothing=label_smoothing,
                     backup_dir=backup_dir, clipping=clipping)
    runner.prepare()
    record = TrainingHistory()
    runner.run(record, "train", epochs, optimizer, lr, {}, ["all"],
               early_stopping=early_stopping, monitor=monitor)
    if runner.backup:
        runner.backup.remove()
    return record


def fit_one_cycle(
    model,
    train,
    validation=None,
    epochs=5,
    max_lr=None,
    optimizer="adamw",
    pct_start=0.25,
    weight_decay=None,
    early_stopping=None,
    monitor=None,
    loss=None,
    metrics=None,
    callbacks=None,
    steps_per_epoch=None,
    verbose=1,
    find_lr_steps=100,
    clipnorm=None,
    clipvalue=None,
    global_clipnorm=None,
):
    """Trains the model's trainable layers with the one-cycle policy and cyclical momentum.

    The learning rate warms up from `max_lr / 25` to `max_lr` over `pct_start` of the steps and
    anneals to `max_lr / 25 / 1e4` (cosine); momentum (SGD) or `beta_1` (Adam, AdamW) runs
    0.95 → 0.85 → 0.95 in mirror. What is frozen stays frozen, so it serves for a head-only stage
    as well as for a whole model.

    Args:
        model: keras.Model taking the batches of `train` (e.g. from `kr.build_classifier`).
        train: dataset of `(images, labels)` batches.
        validation: optional dataset like `train`. Defaults to `None`.
        epochs: int. Defaults to `5`.
        max_lr: optional float. Peak learning rate; `None` runs `kr.find_lr` first (on a copy of
            the optimizer settings, restoring the model) and uses its valley suggestion.
            Defaults to `None`.
        optimizer: str. See `get_optimizer`. Defaults to `"adamw"`.
        pct_start: float in (0, 1). Fraction of warmup. Defaults to `0.25`.
        weight_decay, early_stopping, monitor, loss, metrics, callbacks, steps_per_epoch,
            verbose: as in `fit`.
        find_lr_steps: int. Steps of the range test when `max_lr` is None. Defaults to `100`.
        clipnorm, clipvalue, global_clipnorm: gradient clipping, as in `fine_tune` (the range
            test uses it too).

    Returns:
        `TrainingHistory` with one stage; `history.stages[0]["learning_rate"]` is the `max_lr`
        used.

    Example:
    >>> model = kr.build_resnet(10, "resnet9", image_size=32, normalization_data=x_train)
    >>> history = kr.fit_one_cycle(model, data.train, data.validation, epochs=5)

    Reference: Smith, "A disciplined approach to neural network hyper-parameters: Part 1"
    (2018); Smith & Topin, "Super-Convergence" (2017).
    """
    from kerasrecipes.schedules import OneCycle

    if not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs must be an int >= 1. Received: epochs={epochs!r}")
    if max_lr is not None and not (isinstance(max_lr, (int, float)) and max_lr > 0):
        raise ValueError(f"max_lr must be a positive number or None. Received: max_lr={max_lr!r}")
    if not (isinstance(pct_start, (int, float)) and 0 < pct_start < 1):
        raise ValueError(f"pct_start must be in (0, 1). Received: pct_start={pct_start!r}")
    clipping = clipping_arguments(clipnorm, clipvalue, global_clipnorm)
    train, steps = epoch_steps(train, steps_per_epoch)
    runner = _Runner(model, train, validation, steps,
                     lambda lr, total: OneCycle(lr, total, pct_start=pct_start),
                     loss, metrics, callbacks, weight_decay, verbose, clipping=clipping)
    runner.prepare()
    if max_lr is None:
        from kerasrecipes.lr_finder import find_lr

        model.compile(
            optimizer=get_optimizer(optimizer, 1e-7, weight_decay=weight_decay, **clipping),
            loss=loss or default_loss(task_of(model)),
        )
        result = find_lr(model, train, num_steps=find_lr_steps, verbose=verbose)
        max_lr = result.suggestion("valley")
        if max_lr is None:
            raise ValueError(
                "find_lr gave no valley suggestion (the loss curve was too short or flat): pass "
                "max_lr explicitly."
            )
        if verbose:
            print(f"[kerasrecipes] fit_one_cycle: max_lr {max_lr:.2e} (find_lr valley)")
    record = TrainingHistory()
    runner.run(record, "one_cycle", epochs, optimizer, float(max_lr), {}, ["all"],
               early_stopping=early_stopping, monitor=monitor)
    return record


class _Backup:
    """Fault tolerance across stages: what finished is kept, the stage in progress resumes.

    `backup_dir/progress.json` lists the finished stages with their history, and
    `stage_K.npz` holds the weights at the end of stage K; Keras' `BackupAndRestore` checkpoints
    the stage in progress every epoch (`stage_K/`). Removed when the whole run finishes.
    """

    def __init__(self, directory):
        self.directory = os.path.abspath(os.fspath(directory))
        os.makedirs(self.directory, exist_ok=True)
        self.progress_path = os.path.join(self.directory, "progress.json")
        self.stages = []
        if os.path.isfile(self.progress_path):
            with open(self.progress_path) as f:
                self.stages = json.load(f)["stages"]
            print(f"[kerasrecipes] resuming from {self.directory}: "
                  f"{len(self.stages)} stage(s) already done")

    def done(self, k):
        return k < len(self.stages)

    def restore(self, k, model, record):
        """Replays finished stage `k` into `record`; loads its weights if it is the last one."""
        stage = self.stages[k]
        record._append(stage["stage"], _RecordedHistory(stage["history"]))
        if k == len(self.stages) - 1:
            with np.load(os.path.join(self.directory, f"stage_{k}.npz")) as f:
                model.set_weights([f[f"arr_{i}"] for i in range(len(f.files))])

    def callbacks(self, k):
        return [
            keras.callbacks.BackupAndRestore(os.path.join(self.directory, f"stage_{k}")),
            _EpochLog(os.path.join(self.directory, f"stage_{k}_epochs.jsonl")),
        ]

    def epochs(self, k):
        """The per-epoch logs of stage `k`, including those from before a restart."""
        history = {}
        path = os.path.join(self.directory, f"stage_{k}_epochs.jsonl")
        with open(path) as f:
            for line in f:
                for key, value in json.loads(line).items():
                    history.setdefault(key, []).append(value)
        return _RecordedHistory(history)

    def finish(self, k, model, stage, history):
        np.savez(os.path.join(self.directory, f"stage_{k}.npz"), *model.get_weights())
        self.stages.append({"stage": stage, "history": history.history})
        tmp = self.progress_path + ".tmp"
        with open(tmp, "w") as f:
            json.dump({"stages": self.stages}, f)
        os.replace(tmp, self.progress_path)

    def remove(self):
        shutil.rmtree(self.directory, ignore_errors=True)


class _RecordedHistory:
    """A stand-in for `keras.callbacks.History` built from saved per-epoch logs."""

    def __init__(self, history):
        self.history = history


class _EpochLog(keras.callbacks.Callback):
    """Appends each epoch's logs to a JSON-lines file (after the checkpoint is written)."""

    def __init__(self, path):
        super().__init__()
        self.path = path

    def on_epoch_end(self, epoch, logs=None):
        with open(self.path, "a") as f:
            f.write(json.dumps({k: float(v) for k, v in (logs or {}).items()}) + "\n")


class _Runner:
    """Compiles and fits one stage at a time with consistent loss, metrics and callbacks."""

    def __init__(self, model, train, validation, steps, schedule, loss, metrics, callbacks,
                 weight_decay, verbose, label_smoothing=0.0, backup_dir=None, clipping=None):
        if not isinstance(label_smoothing, (int, float)) or not 0.0 <= label_smoothing < 1.0:
            raise ValueError(
                f"label_smoothing must be in [0, 1). Received: label_smoothing={label_smoothing!r}"
            )
        self.label_smoothing = float(label_smoothing)
        self.soft_labels = False
        self.model = model
        self.train = train
        self.validation = validation
        self.steps = steps
        self.schedule = schedule
        self.loss = loss
        self.metrics = metrics
        self.callbacks = list(callbacks or [])
        self.diverged = None
        self.backup = _Backup(backup_dir) if backup_dir is not None else None
        self.stage_index = 0
        self.weight_decay = weight_decay
        self.clipping = dict(clipping or {})
        self.verbose = verbose

    def prepare(self):
        _check_batch(self.model, self.train, "train")
        self.soft_labels = _has_soft_labels(self.model, self.train)
        if self.validation is not None:
            _check_batch(self.model, self.validation, "validation")
        adapt_normalization(self.model, self.train)
        from kerasrecipes.distribute import prepare_processes  # multi-host: shards, statistics

        prepare_processes(self.model, self.train, self.validation, self.steps,
                           self.backup.directory if self.backup else None)

    def run(self, record, name, epochs, optimizer, lr, multipliers, trainable_groups,
            schedule_steps=None, step_offset=0, early_stopping=None, monitor=None):
        model = self.model
        k, self.stage_index = self.stage_index, self.stage_index + 1
        if self.backup and self.backup.done(k):
            self.backup.restore(k, model, record)
            return
        learning_rate = make_schedule(self.schedule, lr, schedule_steps or epochs * self.steps)
        lr_multipliers = group_lr_multipliers(model, multipliers) if multipliers else None
        from kerasrecipes.schedules import OneCycle, OneCycleMomentum

        momentum_schedule = None
        if isinstance(learning_rate, OneCycle) and has_momentum(optimizer):
            # Computed from the step inside the optimizer update: works under jit on TF and JAX.
            momentum_schedule = OneCycleMomentum.mirroring(learning_rate)
        with _strategy_scope(model):  # optimizer variables live with the model's
            opt = get_optimizer(
                optimizer, learning_rate, lr_multipliers=lr_multipliers,
                weight_decay=self.weight_decay, momentum_schedule=momentum_schedule,
                **self.clipping,
            )
        task = task_of(model)
        compile_args = {}
        if task == "multitask":
            compile_args = multitask_compile_args(model, self.label_smoothing)
            default, default_metric = compile_args.pop("loss"), compile_args.pop("metrics")
        elif self.label_smoothing or self.soft_labels:
            from kerasrecipes import regularize

            if task == "multiclass":
                default = regularize.CrossEntropy(label_smoothing=self.label_smoothing)
                default_metric = [regularize.Accuracy(name="accuracy")]
            else:
                default = keras.losses.BinaryCrossentropy(label_smoothing=self.label_smoothing)
                default_metric = default_metrics(task)
        else:
            default, default_metric = default_loss(task), default_metrics(task)
        model.compile(
            optimizer=opt,
            loss=self.loss or default,
            metrics=self.metrics or default_metric,
            **compile_args,
        )
        if step_offset:
            # Continue the stage's schedule where the previous (re)compile left it.
            with _strategy_scope(model):
                opt.build(model.trainable_variables)
            opt.iterations.assign(step_offset)
        # A NaN/inf loss stops the stage at once; early stopping (if on) restores the best weights.
        stop_on_nan = _StopOnNaN()
        callbacks = self.callbacks + [_LearningRateLogger(), stop_on_nan]
        if self.backup:
            callbacks += self.backup.callbacks(k)
        if early_stopping is not None:
            callbacks.append(
                keras.callbacks.EarlyStopping(
                    monitor=monitor or ("val_loss" if self.validation is not None else "loss"),
                    patience=early_stopping,
                    restore_best_weights=True,
                    verbose=self.verbose,
                )
            )
        if self.verbose:
            groups = ", ".join(trainable_groups) if trainable_groups else "head only"
            print(f"[kerasrecipes] stage {name!r}: {epochs} epoch(s), trainable: {groups}, "
                  f"peak lr {lr:g}")
        first = record.epochs
        history = model.fit(
            self.train,
            validation_data=self.validation,
            epochs=first + epochs,
            initial_epoch=first,
            steps_per_epoch=self.steps if num_batches(self.train) == INFINITE else None,
            # Keras shuffles only a PyDataset's batch order; for anything else (tf.data, a
            # torch DataLoader) it ignores shuffle=True with a warning.
            shuffle=isinstance(self.train, keras.utils.PyDataset),
            callbacks=callbacks,
            verbose=self.verbose,
        )
        stage = {"name": name, "trainable_groups": list(trainable_groups), "learning_rate": lr}
        if stop_on_nan.diverged:
            self.diverged = stop_on_nan.diverged
            stage["stopped"] = stop_on_nan.diverged
            warnings.warn(
                f"Training stopped in stage {name!r}: the {stop_on_nan.diverged}. The learning "
                f"rate (peak {lr:g}) is probably too high — try a 3-10x lower one or "
                "kr.find_lr. The weights from before the divergence were kept; later stages "
                "are skipped.",
                stacklevel=3,
            )
        if self.backup:
            history = self.backup.epochs(k)
            self.backup.finish(k, model, stage, history)
        record._append(stage, history)


def _strategy_scope(model):
    """The scope of the distribution strategy the model was built under (TF), else a no-op."""
    strategy = getattr(model, "distribute_strategy", None)
    return strategy.scope() if strategy is not None else contextlib.nullcontext()


def _submodel(model, name):
    try:
        return model.get_layer(name)
    except ValueError:
        raise ValueError(
            f"The model has no sub-model named {name!r}. kerasrecipes training expects a model "
            "from kr.build_classifier / build_scratch_cnn / build_resnet (sub-models 'augment', "
            "'preprocess', 'backbone', 'head')."
        ) from None


def _check_batch(model, dataset, what):
    """Checks one batch against the model before any training step runs."""
    if isinstance(dataset, (np.ndarray, tuple, list)):
        raise ValueError(
            f"{what} must be a dataset of (images, labels) batches, e.g. from "
            "kr.image_folder_datasets or kr.array_datasets. Received a "
            f"{type(dataset).__name__}."
        )
    try:
        batch = first_batch(dataset)
    except StopIteration:
        raise ValueError(f"The {what} dataset is empty: it yields no batches.") from None
    if not isinstance(batch, (tuple, list)) or len(batch) < 2:
        raise ValueError(f"The {what} dataset must yield (images, labels) batches.")
    images = keras.ops.convert_to_numpy(batch[0])
    labels = batch[1] if isinstance(batch[1], dict) else keras.ops.convert_to_numpy(batch[1])
    expected = tuple(model.input_shape[1:])
    if images.ndim != 4 or tuple(images.shape[1:]) != expected:
        raise ValueError(
            f"The {what} images have shape {images.shape[1:]} but the model expects {expected} "
            "(height, width, channels). Load the data with the model's image_size."
        )
    if images.dtype != np.uint8:
        hint = " They look like 0–1 floats." if images.size and images.max() <= 1.0 else ""
        warnings.warn(
            f"The {what} images are {images.dtype}, not uint8 0–255 as the model expects.{hint}",
            stacklevel=3,
        )
    task = task_of(model)
    if task == "multiclass":
        num_classes = model.output_shape[-1]
        if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
            raise ValueError(
                f"The {what} labels range over [{labels.min()}, {labels.max()}] but the model has "
                f"{num_classes} classes. Build the model with num_classes=len(data.class_names)."
            )


def _has_soft_labels(model, dataset):
    """True if a multi-class model's training labels are one-hot/soft `[B, C]` (e.g. MixUp)."""
    if task_of(model) != "multiclass":
        return False
    labels = first_batch(dataset)[1]
    return len(keras.ops.shape(labels)) == 2 and keras.ops.shape(labels)[-1] > 1
