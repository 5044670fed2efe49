"""Running the stages of a training run: compile + fit one stage, one record, one backup.

`StageRunner` is what `kr.fine_tune`, `kr.fit` and `kr.fit_one_cycle` share. `prepare` checks the
data against the model before any step (shapes, dtype, label range), adapts a scratch model's
normalisation and prepares multi-host training; `run` compiles one stage (optimizer with its
schedule, per-layer-group LR multipliers and cycled momentum; loss and metrics for the task) and
fits it, with NaN stopping, early stopping, the learning-rate log and the backup. `run` takes the
model and the data of the stage, so a stage may train another model than the recipe's (a
sub-model on other data) and still land in the same `TrainingHistory`.
"""

import contextlib
import math
import warnings

import keras
import numpy as np

from kerasrecipes.backup import Backup
from kerasrecipes.batches import INFINITE, first_batch, num_batches
from kerasrecipes.distribute import prepare_processes
from kerasrecipes.freezing import group_lr_multipliers
from kerasrecipes.history import TrainingHistory
from kerasrecipes.interrupt import (
    BestWeights,
    SignalStop,
    StopOnSignal,
    TrainingInterrupted,
    describe_best,
)
from kerasrecipes.layers import adapt_normalization
from kerasrecipes.optimizers import get_optimizer, has_momentum
from kerasrecipes.regularize import Accuracy, CrossEntropy
from kerasrecipes.schedules import OneCycle, OneCycleMomentum, make_schedule
from kerasrecipes.tasks import default_loss, default_metrics, multitask_compile_args, task_of


class StageRunner:
    """Compiles and fits the stages of one training run into one `TrainingHistory`.

    Args:
        options: `TrainingOptions` of the run.
        schedule: the LR schedule of every stage (see `make_schedule`).

    Attributes:
        record: `TrainingHistory` of the stages run so far.
        backup: `Backup` or None (`options.backup_dir`).
        diverged: None, or the message of the NaN/inf loss that stopped a stage.
        best: `BestWeights` of the run (set by `prepare`): a stage that diverges, or one stopped
            by SIGINT/SIGTERM (`TrainingInterrupted`), ends with the best weights so far.
    """

    def __init__(self, options, schedule):
        self.options = options
        self.schedule = schedule
        self.record = TrainingHistory()
        self.backup = Backup(options.backup_dir) if options.backup_dir is not None else None
        self.diverged = None
        self.best = None
        self.stage_index = 0
        self._soft_labels = {}

    def prepare(self, model, train, validation, steps):
        """Checks the data against the model, adapts normalisation, prepares multi-host runs."""
        self.best = BestWeights(model, self.backup.directory if self.backup else None)
        check_batch(model, train, "train")
        self._soft_labels[id(train)] = has_soft_labels(model, train)
        if validation is not None:
            check_batch(model, validation, "validation")
        adapt_normalization(model, train)
        prepare_processes(model, train, validation, steps,
                          self.backup.directory if self.backup else None)

    def compile(self, model, train, optimizer, lr, total_steps, multipliers=None,
                step_offset=0):
        """Compiles `model` for one stage: the optimizer, its schedule, loss and metrics.

        Args:
            model: keras.Model to train.
            train: its training data (tells hard from soft labels).
            optimizer: str. See `kr.get_optimizer`.
            lr: float. Peak learning rate of the stage.
            total_steps: int. Steps of the schedule.
            multipliers: optional dict layer → LR multiplier (`discriminative_multipliers`).
            step_offset: int. Start the schedule at this step (a stage continued after a
                recompile). Defaults to `0`.
        """
        options = self.options
        learning_rate = make_schedule(self.schedule, lr, total_steps)
        lr_multipliers = group_lr_multipliers(model, multipliers) if multipliers else None
        momentum_schedule = None
        if isinstance(learning_rate, OneCycle) and has_momentum(optimizer):
            # Computed from the step inside the optimizer update: works under jit on TF and JAX.
            momentum_schedule = OneCycleMomentum.mirroring(learning_rate)
        with strategy_scope(model):  # optimizer variables live with the model's
            opt = get_optimizer(
                optimizer, learning_rate, lr_multipliers=lr_multipliers,
                weight_decay=options.weight_decay, momentum_schedule=momentum_schedule,
                **options.clipping,
            )
        task = task_of(model)
        compile_args = {}
        if id(train) not in self._soft_labels:
            self._soft_labels[id(train)] = has_soft_labels(model, train)
        soft_labels = self._soft_labels[id(train)]
        if task == "multitask":
            compile_args = multitask_compile_args(model, options.label_smoothing)
            default, default_metric = compile_args.pop("loss"), compile_args.pop("metrics")
        elif options.label_smoothing or soft_labels:
            if task == "multiclass":
                default = CrossEntropy(label_smoothing=options.label_smoothing)
                default_metric = [Accuracy(name="accuracy")]
            else:
                default = keras.losses.BinaryCrossentropy(label_smoothing=options.label_smoothing)
                default_metric = default_metrics(task)
        else:
            default, default_metric = default_loss(task), default_metrics(task)
        model.compile(
            optimizer=opt,
            loss=options.loss or default,
            metrics=options.metrics or default_metric,
            **compile_args,
        )
        if step_offset:
            # Continue the stage's schedule where the previous (re)compile left it.
            with strategy_scope(model):
                opt.build(model.trainable_variables)
            opt.iterations.assign(step_offset)

    def run(self, model, train, validation, steps, name, epochs, optimizer, lr,
            multipliers=None, trainable_groups=(), schedule_steps=None, step_offset=0,
            early_stopping=None, backup_model=None):
        """Compiles and fits one stage of `model` on `train`, appending it to `self.record`.

        Args:
            model: keras.Model to train (its `trainable` flags already set for the stage).
            train: training data of the stage; `steps` batches per epoch.
            validation: optional validation data.
            steps: int. Batches per epoch of `train`.
            name: str. The stage's name in the history (`"head"`, `"fine_tune"`, `"train"` …).
            epochs: int. Epochs of this stage.
            optimizer: str. See `kr.get_optimizer`.
            lr: float. Peak learning rate.
            multipliers: optional dict layer → LR multiplier.
            trainable_groups: names of the layer groups that train (for the record).
            schedule_steps: optional int. Length of the schedule when it spans several
                `run`s (gradual unfreezing). Defaults to `epochs * steps`.
            step_offset: int. Where in that schedule this run starts. Defaults to `0`.
            early_stopping: optional int. Patience; `None` turns it off for this stage.
            backup_model: optional keras.Model whose weights the backup keeps at the end of the
                stage (and restores on resume), when `model` is only part of it (the head on
                cached features). Defaults to `model`.
        """
        k, self.stage_index = self.stage_index, self.stage_index + 1
        if self.backup and self.backup.done(k):
            self.backup.restore(k, backup_model or model, self.record)
            self.diverged = self.diverged or self.record.stages[-1].get("stopped")
            if backup_model in (None, model):  # compiled as if the stage had run (evaluate)
                self.compile(model, train, optimizer, lr, schedule_steps or epochs * steps,
                             multipliers, step_offset)
            return
        self.compile(model, train, optimizer, lr, schedule_steps or epochs * steps, multipliers,
                     step_offset)
        options = self.options
        # A NaN/inf loss stops the stage at once; early stopping (if on) restores the best weights.
        stop_on_nan = _StopOnNaN()
        callbacks = list(options.callbacks or []) + [_LearningRateLogger(), stop_on_nan]
        if self.backup:
            callbacks += self.backup.callbacks(k)
        monitor = options.monitor or ("val_loss" if validation is not None else "loss")
        if self.best is None:  # (run without prepare)
            self.best = BestWeights(backup_model or model,
                                    self.backup.directory if self.backup else None)
        self.best.watch(monitor, name)
        callbacks.append(self.best)
        if early_stopping is not None:
            callbacks.append(
                keras.callbacks.EarlyStopping(
                    monitor=monitor,
                    patience=early_stopping,
                    restore_best_weights=True,
                    verbose=options.verbose,
                )
            )
        if options.verbose:
            groups = ", ".join(trainable_groups) if trainable_groups else "head only"
            print(f"[kerasrecipes] stage {name!r}: {epochs} epoch(s), trainable: {groups}, "
                  f"peak lr {lr:g}")
        first = self.record.epochs
        # SIGINT/SIGTERM stop after the current batch (StopOnSignal: last, after the backup).
        signals = SignalStop()
        callbacks.append(StopOnSignal(signals, name))
        try:
            with signals:
                history = model.fit(
                    train,
                    validation_data=validation,
                    epochs=first + epochs,
                    initial_epoch=first,
                    steps_per_epoch=steps if num_batches(train) == INFINITE else None,
                    # Keras shuffles only a PyDataset's batch order; for anything else (tf.data,
                    # a torch DataLoader) it ignores shuffle=True with a warning.
                    shuffle=isinstance(train, keras.utils.PyDataset),
                    callbacks=callbacks,
                    verbose=options.verbose,
                )
        except TrainingInterrupted as stop:
            raise self._interrupted(stop) from None
        stage = {"name": name, "trainable_groups": list(trainable_groups), "learning_rate": lr}
        if stop_on_nan.diverged:
            self.diverged = stop_on_nan.diverged
            stage["stopped"] = stop_on_nan.diverged
            # The best epoch of the run so far, else the weights from the diverging epoch's start.
            kept = "the weights from before the divergence"
            if self.best.restore():
                stage["restored"] = dict(self.best.best)
                kept = f"the best weights so far ({describe_best(self.best.best)})"
            warnings.warn(
                f"Training stopped in stage {name!r}: the {stop_on_nan.diverged}. The learning "
                f"rate (peak {lr:g}) is probably too high — try a 3-10x lower one or "
                f"kr.find_lr. The model has {kept}; later stages are skipped.",
                stacklevel=4,
            )
        if self.backup:
            history = self.backup.epochs(k)
            self.backup.finish(k, backup_model or model, stage, history)
        self.record.append_stage(stage, history)
        if signals.received:  # came after the last batch: the stage is complete and recorded
            raise self._interrupted(TrainingInterrupted(signals.received))

    def _interrupted(self, stop):
        """Completes a `TrainingInterrupted`: the best weights so far, in the model and on disk."""
        if not stop.immediate and self.best is not None and self.best.restore():
            stop.best = dict(self.best.best)
            stop.best_model = self.best.keep()
        if self.backup:
            stop.backup_dir = self.backup.directory
        return stop

    def stage_done(self):
        """Whether the backup already holds the next stage (it will be restored, not run)."""
        return bool(self.backup and self.backup.done(self.stage_index))

    def finish(self):
        """Ends the run: removes the backup (it is complete) unless `options.keep_backup`.

        Returns the record.
        """
        if self.backup and not self.options.keep_backup:
            self.backup.remove()
        return self.record


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


def strategy_scope(model):
    """The scope of the distribution strategy the model was built under (TF), else a no-op."""
    strategy = getattr(model, "distribute_strategy", None)
    return strategy.scope() if strategy is not None else contextlib.nullcontext()


def submodel(model, name):
    try:
        return model.get_layer(name)
    except ValueError:
        raise ValueError(
            f"The model has no sub-model named {name!r}. kerasrecipes training expects a model "
            "from kr.build_classifier / build_scratch_cnn / build_resnet (sub-models 'augment', "
            "'preprocess', 'backbone', 'head')."
        ) from None


def check_batch(model, dataset, what):
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
            stacklevel=5,
        )
    task = task_of(model)
    if task == "multiclass":
        num_classes = model.output_shape[-1]
        if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
            raise ValueError(
                f"The {what} labels range over [{labels.min()}, {labels.max()}] but the model has "
                f"{num_classes} classes. Build the model with num_classes=len(data.class_names)."
            )


def has_soft_labels(model, dataset):
    """True if a multi-class model's training labels are one-hot/soft `[B, C]` (e.g. MixUp)."""
    if task_of(model) != "multiclass":
        return False
    labels = first_batch(dataset)[1]
    return len(keras.ops.shape(labels)) == 2 and keras.ops.shape(labels)[-1] > 1
