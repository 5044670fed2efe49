"""Training recipes: staged fine-tuning with discriminative learning rates, and plain `fit`.

`fine_tune` follows the transfer-learning recipe: freeze the backbone and train the new head,
then unfreeze (all groups, the top N, or gradually one group per epoch) and fine-tune at a lower
learning rate, earlier layer groups getting geometrically smaller rates, with early stopping that
restores the best weights. Every freeze/unfreeze recompiles, as Keras requires.

Reference: Howard & Ruder, "Universal Language Model Fine-tuning for Text Classification" (2018);
Yosinski et al., "How transferable are features in deep neural networks?" (2014).
"""

import dataclasses
import json
import math
import os
import warnings

import keras
import numpy as np

from kerasrecipes.backbones import infer_layer_groups
from kerasrecipes.layers import NormalizeImage
from kerasrecipes.models import batch_norm_layers, task_of
from kerasrecipes.optimizers import get_optimizer

SCHEDULES = ("warmup_cosine", "constant")


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


def plot_history(history, path):
    """Plots a `TrainingHistory` (or a Keras `History`) to a PNG file and returns its path.

    Loss and accuracy, train vs. validation, one panel each; the learning rate on a second axis of
    the loss panel; stage boundaries as dashed vertical lines.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    record = history.history
    stages = getattr(history, "stages", [])
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, metric in zip(axes, ("loss", "accuracy")):
        for prefix, style in (("", "-o"), ("val_", "-s")):
            values = record.get(prefix + metric)
            if values:
                epochs = np.arange(1, len(values) + 1)
                ax.plot(epochs, values, style, label=(prefix or "train_") + metric, markersize=3)
        for stage in stages[1:]:
            ax.axvline(stage["first_epoch"] + 0.5, color="grey", linestyle="--", linewidth=1)
        ax.set_xlabel("epoch")
        ax.set_title(metric)
        ax.legend(loc="best")
    if record.get("learning_rate"):
        lr_axis = axes[0].twinx()
        lrs = record["learning_rate"]
        lr_axis.plot(np.arange(1, len(lrs) + 1), lrs, color="tab:green", alpha=0.6, label="lr")
        lr_axis.set_ylabel("learning rate (end of epoch)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


class _LearningRateLogger(keras.callbacks.Callback):
    """Adds the optimizer's current learning rate to each epoch's logs."""

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["learning_rate"] = float(keras.ops.convert_to_numpy(
                self.model.optimizer.learning_rate
            ))


def make_schedule(schedule, learning_rate, total_steps, warmup=0.1):
    """Returns the learning rate (float or `LearningRateSchedule`) for a stage.

    Args:
        schedule: `"warmup_cosine"` (linear warmup over `warmup` of the steps, then cosine decay
            to 0), `"constant"`, a `LearningRateSchedule`, or a callable
            `(learning_rate, total_steps) -> LearningRateSchedule`.
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
    schedule="warmup_cosine",
    early_stopping=3,
    monitor=None,
    loss=None,
    metrics=None,
    callbacks=None,
    steps_per_epoch=None,
    verbose=1,
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
        schedule: the LR schedule of each stage, see `make_schedule`. Defaults to
            `"warmup_cosine"`.
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
    train, steps = _steps_per_epoch(train, steps_per_epoch)
    runner = _Runner(model, train, validation, steps, schedule, loss, metrics, callbacks,
                     weight_decay, verbose)
    runner.prepare()

    record = TrainingHistory()
    if head_epochs:
        set_trainable_groups(model, groups, [])
        runner.run(record, "head", head_epochs, optimizer, lr, {}, [])

    if epochs:
        # Group i of n gets fine_tune_lr * lr_mult ** ((i - n) / n); the head gets fine_tune_lr.
        multipliers = {
            layer: float(lr_mult) ** ((i - len(names)) / len(names))
            for i, name in enumerate(names)
            for layer in groups[name]
        }
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
):
    """Trains every layer in one stage (models from scratch); arguments as in `fine_tune`.

    Computes the per-channel normalisation of scratch models on `train` first if needed.

    Returns:
        `TrainingHistory` with one stage.

    Example:
    >>> model = kr.build_scratch_cnn(10, image_size=32)
    >>> history = kr.fit(model, data.train, data.validation, epochs=10, lr=3e-3)
    """
    if not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs must be an int >= 1. Received: epochs={epochs!r}")
    train, steps = _steps_per_epoch(train, steps_per_epoch)
    runner = _Runner(model, train, validation, steps, schedule, loss, metrics, callbacks,
                     weight_decay, verbose)
    runner.prepare()
    record = TrainingHistory()
    runner.run(record, "train", epochs, optimizer, lr, {}, ["all"],
               early_stopping=early_stopping, monitor=monitor)
    return record


class _Runner:
    """Compiles and fits one stage at a time with consistent loss, metrics and callbacks."""

    def __init__(self, model, train, validation, steps, schedule, loss, metrics, callbacks,
                 weight_decay, verbose):
        self.model = model
        self.train = train
        self.validation = validation
        self.steps = steps
        self.schedule = schedule
        self.loss = loss
        self.metrics = metrics
        self.callbacks = list(callbacks or [])
        self.weight_decay = weight_decay
        self.verbose = verbose

    def prepare(self):
        _check_batch(self.model, self.train, "train")
        if self.validation is not None:
            _check_batch(self.model, self.validation, "validation")
        _adapt_normalization(self.model, self.train)

    def run(self, record, name, epochs, optimizer, lr, multipliers, trainable_groups,
            schedule_steps=None, step_offset=0, early_stopping=None, monitor=None):
        model = self.model
        learning_rate = make_schedule(self.schedule, lr, schedule_steps or epochs * self.steps)
        lr_multipliers = group_lr_multipliers(model, multipliers) if multipliers else None
        opt = get_optimizer(
            optimizer, learning_rate, lr_multipliers=lr_multipliers,
            weight_decay=self.weight_decay,
        )
        task = task_of(model)
        model.compile(
            optimizer=opt,
            loss=self.loss or default_loss(task),
            metrics=self.metrics or default_metrics(task),
        )
        if step_offset:
            # Continue the stage's schedule where the previous (re)compile left it.
            opt.build(model.trainable_variables)
            opt.iterations.assign(step_offset)
        callbacks = self.callbacks + [_LearningRateLogger()]
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
            steps_per_epoch=self.steps if _length(self.train) == _INFINITE else None,
            shuffle=not hasattr(self.train, "cardinality"),  # tf.data shuffles itself
            callbacks=callbacks,
            verbose=self.verbose,
        )
        record._append(
            {"name": name, "trainable_groups": list(trainable_groups), "learning_rate": lr},
            history,
        )


def default_loss(task):
    """The loss that matches the output activation of `build_classifier`'s `task`."""
    if task == "multiclass":
        return keras.losses.SparseCategoricalCrossentropy()
    return keras.losses.BinaryCrossentropy()


def default_metrics(task):
    if task == "multiclass":
        return [keras.metrics.SparseCategoricalAccuracy(name="accuracy")]
    return [keras.metrics.BinaryAccuracy(name="accuracy")]


def _submodel(model, name):
    try:
        return model.get_layer(name)
    except ValueError:
        raise ValueError(
            f"The model has no sub-model named {name!r}. kerasrecipes training expects a model "
            "from kr.build_classifier / build_scratch_cnn / build_resnet (sub-models 'augment', "
            "'preprocess', 'backbone', 'head')."
        ) from None


_INFINITE = -1


def _length(dataset):
    """Number of batches; None if unknown, `_INFINITE` for a repeated tf.data dataset."""
    try:
        return len(dataset)
    except TypeError:
        pass
    cardinality = getattr(dataset, "cardinality", None)
    if cardinality is not None:
        n = int(cardinality())
        return n if n >= -1 else None
    return None


def _steps_per_epoch(dataset, steps_per_epoch):
    if steps_per_epoch is not None:
        if not isinstance(steps_per_epoch, int) or steps_per_epoch < 1:
            raise ValueError(
                f"steps_per_epoch must be a positive int. Received: steps_per_epoch={steps_per_epoch!r}"
            )
        return dataset, steps_per_epoch
    n = _length(dataset)
    if n == _INFINITE:
        raise ValueError(
            "The training dataset repeats forever: pass steps_per_epoch so the learning-rate "
            "schedule knows how many steps an epoch has."
        )
    if n is None:
        # Unknown length (e.g. after `filter`): count once. A cached tf.data pipeline keeps
        # what this pass decodes, so the first epoch does not pay for it again.
        print("[kerasrecipes] counting the training batches (dataset length unknown)")
        n = sum(1 for _ in dataset)
        if n and hasattr(dataset, "cardinality"):
            import tensorflow as tf

            dataset = dataset.apply(tf.data.experimental.assert_cardinality(n))
    if n == 0:
        raise ValueError("The training dataset is empty: it yields no batches.")
    return dataset, n


def _first_batch(dataset):
    if hasattr(dataset, "__getitem__") and hasattr(dataset, "__len__"):
        return dataset[0]
    return next(iter(dataset))


def _check_batch(model, dataset, what):
    """Checks one batch against the model before any training step runs."""
    if isinstance(dataset, (np.ndarray, tuple, list)):
        raise ValueError(
            f"{what} must be a dataset of (images, labels) batches, e.g. from "
            "kr.image_folder_datasets or kr.array_datasets. Received a "
            f"{type(dataset).__name__}."
        )
    try:
        batch = _first_batch(dataset)
    except StopIteration:
        raise ValueError(f"The {what} dataset is empty: it yields no batches.") from None
    if not isinstance(batch, (tuple, list)) or len(batch) < 2:
        raise ValueError(f"The {what} dataset must yield (images, labels) batches.")
    images, labels = (keras.ops.convert_to_numpy(t) for t in batch[:2])
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


def _adapt_normalization(model, train):
    try:
        preprocess = model.get_layer("preprocess")
    except ValueError:
        return
    for layer in preprocess.layers:
        if isinstance(layer, NormalizeImage) and not layer.adapted:
            print("[kerasrecipes] computing per-channel mean/std on the training split")
            layer.adapt(train)
