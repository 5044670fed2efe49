"""Stopping a training run cleanly: SIGINT/SIGTERM after the current batch, the best weights so far.

While a stage of `kr.fine_tune`, `kr.fit` or `kr.fit_one_cycle` trains, SIGINT (Ctrl-C) and
SIGTERM (`kill`, `docker stop`, a scheduler's preemption) do not kill the process mid-step: the
current batch finishes, the model gets the best weights so far, and the recipe raises
`TrainingInterrupted`, a `KeyboardInterrupt` (so `except Exception` does not swallow it). With a
`backup_dir`, that folder keeps what resuming needs — the finished stages and the checkpoint of the
last finished epoch: the same call run again loses at most the interrupted epoch — and the best
weights so far as a whole model, `best.keras`. A second signal stops at once (the backup still
holds the last finished epoch). Signals are only caught in the main thread, where Python
delivers them.

`BestWeights` keeps the best weights of a run: those at the end of the epoch with the best
monitored value (early stopping's monitor: `val_loss`, or `loss` without validation data) over
every stage, in memory and, with a backup, in `best.weights.h5` (written atomically). A stage that
diverges (a NaN loss) ends with them too.
"""

import json
import math
import os
import signal
import sys
import threading

import keras

from kerasrecipes.saving import save_json, save_model, save_weights

BEST_WEIGHTS = "best.weights.h5"
BEST_INFO = "best.json"
BEST_MODEL = "best.keras"
SIGNALS = ("SIGINT", "SIGTERM")


class TrainingInterrupted(KeyboardInterrupt):
    """A training run stopped by SIGINT or SIGTERM, after a batch.

    Attributes:
        signal_name: str. `"SIGINT"` or `"SIGTERM"`.
        stage: optional str. The stage that was training.
        epoch: optional int. The epoch (1-based, counted over the whole run) that was stopped.
        batch: optional int. Batches of that epoch that finished; `None` when the stop came
            between epochs or stages (nothing of the epoch was lost).
        immediate: bool. A second signal stopped the run at once, inside a step.
        best: optional dict (`stage`, `epoch`, `monitor`, `value`): the epoch whose weights the
            model now has; `None` when no epoch had finished.
        best_model: optional str. `backup_dir/best.keras`, the model with those weights.
        backup_dir: optional str. Where the run resumes from.
        exit_status: int. The conventional exit status, 128 + the signal's number (130, 143).
    """

    def __init__(self, signal_name, stage=None, epoch=None, batch=None, immediate=False):
        super().__init__(signal_name)
        self.signal_name = signal_name
        self.stage, self.epoch, self.batch = stage, epoch, batch
        self.immediate = immediate
        self.best = None
        self.best_model = None
        self.backup_dir = None

    @property
    def exit_status(self):
        return 128 + int(getattr(signal, self.signal_name))

    def where(self):
        """Where the run stopped, in words."""
        if self.immediate:
            return "at once, inside a training step (a second signal)"
        if self.stage is None:
            return "between stages"
        if self.batch is None:
            return f"in stage {self.stage!r}, at the end of epoch {self.epoch}"
        return f"in stage {self.stage!r}, epoch {self.epoch}, after batch {self.batch}"

    def __str__(self):
        text = f"Training stopped by {self.signal_name} {self.where()}."
        if self.best is not None:
            text += f" The model has the best weights so far ({describe_best(self.best)})."
        if self.backup_dir is not None:
            text += (f" The backup {self.backup_dir!r} keeps the finished stages and the last "
                     "finished epoch: run the same call again to resume")
            text += f"; the best model so far is {self.best_model!r}." if self.best_model else "."
        return text


def describe_best(best):
    """`"epoch 3 (stage 'fine_tune'), val_loss 0.4123"` for a `BestWeights.best` dict."""
    return (f"epoch {best['epoch']} (stage {best['stage']!r}), "
            f"{best['monitor']} {best['value']:.4g}")


class SignalStop:
    """A `with` block during which SIGINT and SIGTERM ask training to stop after the batch.

    The first signal sets `received` (its name) and says so on stderr; `StopOnSignal` acts on it
    at the next batch end. A second one raises `TrainingInterrupted(immediate=True)` at once. The
    previous handlers come back when the block ends. Outside the main thread it does nothing.
    """

    def __init__(self):
        self.received = None
        self._previous = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for name in SIGNALS:
                number = getattr(signal, name, None)
                if number is None:
                    continue
                try:
                    self._previous[number] = signal.signal(number, self._handle)
                except (ValueError, OSError):  # not settable here (an embedded interpreter)
                    pass
        return self

    def __exit__(self, *exc_info):
        self._restore()
        return False

    def _restore(self):
        for number, handler in self._previous.items():
            signal.signal(number, signal.SIG_DFL if handler is None else handler)
        self._previous = {}

    def _handle(self, number, frame):
        name = signal.Signals(number).name
        if self.received is not None:
            self._restore()
            raise TrainingInterrupted(name, immediate=True)
        self.received = name
        print(f"\n[kerasrecipes] {name} received: stopping after the current batch, keeping the "
              f"best weights so far (send {name} again to stop at once)", file=sys.stderr,
              flush=True)


class StopOnSignal(keras.callbacks.Callback):
    """Raises `TrainingInterrupted` at the first batch end (or epoch end) after a signal.

    Put it last among a stage's callbacks: at an epoch end, the backup has then written the
    finished epoch before the run stops.

    Args:
        signals: `SignalStop`, the block the stage trains in.
        stage: str. The stage's name.
    """

    def __init__(self, signals, stage):
        super().__init__()
        self.signals = signals
        self.stage = stage
        self._epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch
        self._check(epoch, None)

    def on_train_batch_end(self, batch, logs=None):
        self._check(self._epoch + 1, batch + 1)

    def on_epoch_end(self, epoch, logs=None):
        self._check(epoch + 1, None)

    def _check(self, epoch, batch):
        if self.signals.received is not None:
            raise TrainingInterrupted(self.signals.received, self.stage, epoch, batch)


class BestWeights(keras.callbacks.Callback):
    """The weights of the best epoch of a whole run (every stage), by the monitored metric.

    Kept in memory, and with a `directory` also in `best.weights.h5` + `best.json` (atomic
    writes), so the best of a run that was resumed is known too. An epoch with a non-finite loss
    or monitored value never counts.

    Args:
        model: keras.Model whose weights are kept: the recipe's model, also when a stage fits a
            part of it (the head on cached features).
        directory: optional str. The backup folder.
    """

    def __init__(self, model, directory=None):
        super().__init__()
        self.whole = model
        self.directory = directory
        self.monitor, self.stage = None, None
        self.best = None
        self.weights = None
        if directory is not None:
            try:
                with open(os.path.join(directory, BEST_INFO)) as f:
                    self.best = json.load(f)
            except (OSError, ValueError):
                self.best = None

    def watch(self, monitor, stage):
        """Sets the monitored metric and the name of the stage about to train."""
        if self.best is not None and self.best.get("monitor") != monitor:
            self.best, self.weights = None, None  # not comparable
        self.monitor, self.stage = monitor, stage

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        value, loss = logs.get(self.monitor), logs.get("loss")
        if value is None or not _finite(value) or (loss is not None and not _finite(loss)):
            return
        value = float(value)
        if self.best is not None and not self._better(value, self.best["value"]):
            return
        self.weights = self.whole.get_weights()
        self.best = {"stage": self.stage, "epoch": epoch + 1, "monitor": self.monitor,
                     "value": value}
        if self.directory is not None:
            save_weights(self.whole, os.path.join(self.directory, BEST_WEIGHTS))
            save_json(os.path.join(self.directory, BEST_INFO), self.best)

    def _better(self, value, reference):
        name = self.monitor.removeprefix("val_")
        higher = _higher_is_better(name, self.whole)
        return value > reference if higher else value < reference

    def restore(self):
        """Gives the model the best weights (from memory or the backup). Returns whether it did."""
        if self.weights is not None:
            self.whole.set_weights(self.weights)
            return True
        path = os.path.join(self.directory, BEST_WEIGHTS) if self.directory else None
        if self.best is None or path is None or not os.path.isfile(path):
            return False
        try:
            self.whole.load_weights(path)
        except Exception as error:  # another model under the same backup_dir
            print(f"[kerasrecipes] could not restore the best weights from {path!r}: {error}",
                  file=sys.stderr)
            return False
        return True

    def keep(self):
        """Writes the model (with the best weights) as `best.keras` in the backup folder.

        Returns the path, or `None` without a backup folder or when the write failed (said on
        stderr: the interrupted run's backup is still there).
        """
        if self.directory is None:
            return None
        try:
            return save_model(self.whole, os.path.join(self.directory, BEST_MODEL))
        except (OSError, ValueError) as error:
            print(f"[kerasrecipes] could not write the best model: {error}", file=sys.stderr)
            return None


def _finite(value):
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


_HIGHER = ("acc", "auc", "precision", "recall", "f1", "iou", "top_k")


def _higher_is_better(name, model):
    """Whether a larger value of the metric `name` (without `val_`) is better."""
    if "loss" in name or "error" in name:
        return False
    for metric in _flat_metrics(model):
        if metric.name == name and hasattr(metric, "_direction"):
            return metric._direction == "up"
    return any(key in name for key in _HIGHER)


def _flat_metrics(model):
    found = []
    for metric in getattr(model, "metrics", []) or []:
        found.extend(getattr(metric, "metrics", None) or [metric])
    return found
