"""Snapshot ensembles and stochastic weight averaging (SWA).

`SnapshotEnsemble` drives the learning rate through M cosine cycles with warm restarts within one
`fit` and saves the model at the end of every cycle (atomically), keeping the best K by a
validation metric; `load_ensemble` turns the saved members into one Keras model that averages
their probabilities. `SWA` averages the weights over the last epochs and recomputes the
BatchNorm statistics of the averaged weights with one pass over the data.

For an exponential moving average of the weights use what Keras has: any optimizer with
`use_ema=True` (e.g. `keras.optimizers.AdamW(1e-3, use_ema=True, ema_momentum=0.999)`) and the
`keras.callbacks.SwapEMAWeights` callback to evaluate with the averaged weights.

Reference: Huang et al., "Snapshot Ensembles: Train 1, get M for free" (2017); Izmailov et al.,
"Averaging Weights Leads to Wider Optima and Better Generalization" (2018).
"""

import math
import os

import keras
import numpy as np

from kerasrecipes.saving import save_model
from kerasrecipes.schedules import sgdr_lr
from kerasrecipes.walk import walk_layers


class SnapshotEnsemble(keras.callbacks.Callback):
    """Cosine annealing with `cycles` restarts over the `fit`; one snapshot per cycle.

    The learning rate of step `t` is `sgdr_lr(t, max_lr, steps_per_cycle, t_mul=1)`, set on the
    optimizer's learning-rate variable before every batch (the optimizer must have a float
    learning rate, not a schedule); it is put back at the end. At the end of each cycle the model
    is written to `directory/snapshot_<k>.keras` via a temporary file and `os.replace`, so a crash
    never leaves a half-written snapshot. With `keep`, only the best `keep` snapshots by `monitor`
    stay on disk.

    Args:
        directory: str. Where snapshots go (created).
        cycles: int >= 1. Number of cycles M; `epochs` of the `fit` must be a multiple of it.
        max_lr: float. Learning rate at each restart.
        min_lr: float. Learning rate at the end of each cycle. Defaults to `0.0`.
        keep: optional int. Keep the best `keep` snapshots only. Defaults to all.
        monitor: str. Metric that ranks snapshots. Defaults to `"val_loss"`.
        mode: `"min"`, `"max"` or `"auto"` (max for names with "acc"). Defaults to `"auto"`.
        verbose: int. Defaults to `1`.

    Attributes:
        paths: list of the snapshot paths kept, best first, after `fit`.

    Example:
    >>> snapshots = SnapshotEnsemble("snapshots", cycles=3, max_lr=0.05)
    >>> model.fit(train, validation_data=val, epochs=30, callbacks=[snapshots])
    >>> ensemble = load_ensemble(snapshots.paths)

    Reference: Huang et al., "Snapshot Ensembles: Train 1, get M for free" (2017).
    """

    def __init__(self, directory, cycles, max_lr, min_lr=0.0, keep=None, monitor="val_loss",
                 mode="auto", verbose=1):
        super().__init__()
        if not (isinstance(cycles, int) and cycles >= 1):
            raise ValueError(f"cycles must be an int >= 1. Received: cycles={cycles!r}")
        if not (isinstance(max_lr, (int, float)) and max_lr > 0):
            raise ValueError(f"max_lr must be a positive number. Received: max_lr={max_lr!r}")
        if keep is not None and not (isinstance(keep, int) and keep >= 1):
            raise ValueError(f"keep must be None or an int >= 1. Received: keep={keep!r}")
        if mode not in ("min", "max", "auto"):
            raise ValueError(f"mode must be 'min', 'max' or 'auto'. Received: mode={mode!r}")
        self.directory = directory
        self.cycles = cycles
        self.max_lr = float(max_lr)
        self.min_lr = float(min_lr)
        self.keep = keep
        self.monitor = monitor
        self.higher_is_better = mode == "max" or (mode == "auto" and "acc" in monitor)
        self.verbose = verbose
        self.paths = []

    def on_train_begin(self, logs=None):
        optimizer = self.model.optimizer
        if not isinstance(optimizer._learning_rate, keras.Variable):
            raise ValueError(
                "SnapshotEnsemble sets the learning rate itself: compile the model with a float "
                f"learning rate, not {type(optimizer._learning_rate).__name__}."
            )
        epochs, steps = self.params.get("epochs"), self.params.get("steps")
        if not (epochs and steps):
            raise ValueError("SnapshotEnsemble needs a fit with a known number of steps per "
                             "epoch (pass steps_per_epoch).")
        if epochs % self.cycles:
            raise ValueError(
                f"epochs={epochs} must be a multiple of cycles={self.cycles} so every cycle "
                "ends on an epoch boundary."
            )
        self._epochs_per_cycle = epochs // self.cycles
        self._steps_per_cycle = self._epochs_per_cycle * steps
        self._steps = steps
        self._original_lr = float(keras.ops.convert_to_numpy(optimizer.learning_rate))
        self._scores = []  # (score, path)
        self._step = 0
        os.makedirs(self.directory, exist_ok=True)

    def on_epoch_begin(self, epoch, logs=None):
        self._step = epoch * self._steps

    def on_train_batch_begin(self, batch, logs=None):
        lr = sgdr_lr(self._step + batch, self.max_lr, self._steps_per_cycle, t_mul=1.0,
                     min_lr=self.min_lr)
        self.model.optimizer.learning_rate = float(keras.ops.convert_to_numpy(lr))

    def on_epoch_end(self, epoch, logs=None):
        if (epoch + 1) % self._epochs_per_cycle:
            return
        cycle = (epoch + 1) // self._epochs_per_cycle
        path = os.path.join(self.directory, f"snapshot_{cycle}.keras")
        save_model(self.model, path)  # Atomic: an interrupted save keeps the old snapshot.
        score = (logs or {}).get(self.monitor)
        if score is None or not math.isfinite(float(score)):
            score = -math.inf if self.higher_is_better else math.inf
        self._scores.append((float(score), path))
        self._scores.sort(key=lambda item: item[0], reverse=self.higher_is_better)
        if self.keep is not None:
            for _, dropped in self._scores[self.keep:]:
                if os.path.exists(dropped):
                    os.remove(dropped)
            self._scores = self._scores[: self.keep]
        self.paths = [p for _, p in self._scores]
        if self.verbose:
            print(f"[kerasrecipes] snapshot {cycle}/{self.cycles} ({self.monitor} {score:.4f}) "
                  f"-> {path}")

    def on_train_end(self, logs=None):
        self.model.optimizer.learning_rate = self._original_lr


def load_ensemble(paths, name="ensemble"):
    """Loads saved models and returns one model that averages their outputs (probabilities).

    Every member must take the same input and give outputs of the same shape; the result is an
    ordinary functional Keras model (saveable, exportable as one SavedModel).

    Args:
        paths: list of `.keras` files (or already loaded `keras.Model`s).
        name: str. Name of the ensemble model. Defaults to `"ensemble"`.

    Example:
    >>> ensemble = load_ensemble(["snapshots/snapshot_2.keras", "snapshots/snapshot_3.keras"])
    >>> probabilities = ensemble.predict(images)

    Reference: Huang et al. (2017).
    """
    if isinstance(paths, (str, os.PathLike)) or not paths:
        raise ValueError(f"paths must be a non-empty list of model files. Received: paths={paths!r}")
    members = []
    for i, path in enumerate(paths):
        if isinstance(path, keras.Model):
            member = path
        else:
            if not os.path.exists(path):
                raise FileNotFoundError(f"No model file at {path!r} (paths[{i}]).")
            member = keras.models.load_model(path)
        member.name = f"member_{i}"  # loaded models share a name; a functional graph cannot
        members.append(member)
    shapes = {tuple(m.input_shape[1:]) for m in members}
    if len(shapes) != 1:
        raise ValueError(f"The members take different input shapes: {sorted(shapes)}.")
    inputs = keras.Input(members[0].input_shape[1:], dtype=members[0].inputs[0].dtype,
                         name="images")
    outputs = [m(inputs) for m in members]
    if len({tuple(o.shape[1:]) for o in outputs}) != 1:
        raise ValueError("The members give outputs of different shapes.")
    averaged = outputs[0] if len(outputs) == 1 else keras.layers.Average(
        name="average", dtype="float32")(outputs)
    return keras.Model(inputs, averaged, name=name)


class SWA(keras.callbacks.Callback):
    """Stochastic weight averaging: average the weights at the end of the last epochs.

    From epoch `start_epoch` (0-based) on, keeps a running mean of the trainable weights at each
    epoch's end. At the end of training it writes the mean into the model and, if given
    `bn_data`, recomputes every trainable BatchNorm layer's moving statistics for the averaged
    weights with one pass over it (cumulative averages, as PyTorch's `update_bn`).

    Args:
        start_epoch: int. First epoch whose weights enter the average.
        bn_data: optional dataset of `(images, labels)` (or images) batches for the BatchNorm
            pass, usually the training set. Defaults to `None` (statistics left as trained).
        verbose: int. Defaults to `1`.

    Example:
    >>> model.fit(train, epochs=20, callbacks=[SWA(start_epoch=15, bn_data=train)])

    Reference: Izmailov et al., "Averaging Weights Leads to Wider Optima and Better
    Generalization" (2018).
    """

    def __init__(self, start_epoch, bn_data=None, verbose=1):
        super().__init__()
        if not (isinstance(start_epoch, int) and start_epoch >= 0):
            raise ValueError(f"start_epoch must be an int >= 0. Received: start_epoch={start_epoch!r}")
        self.start_epoch = start_epoch
        self.bn_data = bn_data
        self.verbose = verbose

    def on_train_begin(self, logs=None):
        self._mean = None
        self._count = 0

    def on_epoch_end(self, epoch, logs=None):
        if epoch < self.start_epoch:
            return
        current = [np.asarray(keras.ops.convert_to_numpy(v), dtype="float64")
                   for v in self.model.trainable_variables]
        self._count += 1
        if self._mean is None:
            self._mean = current
        else:
            self._mean = [m + (c - m) / self._count for m, c in zip(self._mean, current)]

    def on_train_end(self, logs=None):
        if self._mean is None:
            return
        for variable, mean in zip(self.model.trainable_variables, self._mean):
            variable.assign(mean.astype(variable.dtype))
        if self.verbose:
            print(f"[kerasrecipes] SWA: averaged the weights of {self._count} epoch(s)")
        if self.bn_data is not None:
            recompute_batch_norm(self.model, self.bn_data)


def recompute_batch_norm(model, data):
    """Recomputes the moving mean/variance of the model's trainable BatchNorm layers on `data`.

    Resets them, then runs the model in training mode over `data` with each layer's momentum set
    so the moving statistics become the plain average over the batches; momenta are restored.
    Frozen BatchNorm layers (`trainable=False`, inference mode) are left alone.

    Example:
    >>> recompute_batch_norm(model, data.train)
    """
    layers = [layer for layer in walk_layers(model)
              if isinstance(layer, keras.layers.BatchNormalization) and layer.trainable]
    if not layers:
        return
    momenta = [layer.momentum for layer in layers]
    for layer in layers:
        layer.moving_mean.assign(keras.ops.zeros_like(layer.moving_mean))
        layer.moving_variance.assign(keras.ops.ones_like(layer.moving_variance))
    try:
        for k, batch in enumerate(data):
            images = batch[0] if isinstance(batch, (tuple, list)) else batch
            for layer in layers:
                layer.momentum = k / (k + 1)  # moving = mean of the k + 1 batch statistics
            model(images, training=True)
    finally:
        for layer, momentum in zip(layers, momenta):
            layer.momentum = momentum
