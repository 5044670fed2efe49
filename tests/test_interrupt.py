"""Stopping cleanly: SIGINT/SIGTERM after the batch, the best weights so far, NaN stops."""

import json
import os
import signal
import threading

import keras
import numpy as np
import pytest

import kerasrecipes as kr
from kerasrecipes.interrupt import BestWeights, SignalStop, TrainingInterrupted
from tiny_models import TINY, tiny_dataset


def _tiny(tmp_path):
    path = str(tmp_path / "tiny.weights.h5")
    if not os.path.exists(path):
        TINY.build(weights=None).save_weights(path)
    return kr.build_classifier(TINY, num_classes=3, weights=path, dropout=0.0)


class Recorder(keras.callbacks.Callback):
    """Keeps every epoch's logs and the whole model's weights at its end; acts at one batch."""

    def __init__(self, model, at=None, action=None):
        super().__init__()
        self.whole, self.at, self.action = model, at, action
        self.epochs, self.logs, self.weights = [], [], []

    def on_epoch_begin(self, epoch, logs=None):
        self.epochs.append(epoch)

    def on_train_batch_end(self, batch, logs=None):
        if (self.epochs[-1], batch) == self.at:
            self.action(self)

    def on_epoch_end(self, epoch, logs=None):
        self.logs.append(dict(logs))
        self.weights.append(self.whole.get_weights())

    def best(self, monitor="val_loss"):
        values = [logs[monitor] for logs in self.logs]
        return int(np.argmin(values)), min(values)


def _same(a, b):
    return len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a, b))


def _fine_tune(model, backup, callbacks, **kwargs):
    return kr.fine_tune(model, tiny_dataset(n=32), tiny_dataset(seed=1), head_epochs=2,
                        epochs=3, early_stopping=None, backup_dir=str(backup),
                        callbacks=callbacks, verbose=0, **kwargs)


def test_sigint_stops_after_the_batch_keeps_the_best_weights_and_resumes(tmp_path, capsys):
    previous = signal.getsignal(signal.SIGINT)  # restored after (SIG_IGN in a background job)
    keras.utils.set_random_seed(0)
    model = _tiny(tmp_path)
    backup = tmp_path / "run.backup"
    # A real SIGINT, to this process, after the first batch of epoch 4 (fine-tuning's 2nd).
    recorder = Recorder(model, at=(3, 0), action=lambda r: os.kill(os.getpid(), signal.SIGINT))
    with pytest.raises(TrainingInterrupted) as caught:
        _fine_tune(model, backup, [recorder])
    stop = caught.value
    assert isinstance(stop, KeyboardInterrupt)
    assert (stop.signal_name, stop.stage, stop.epoch, stop.batch) == ("SIGINT", "fine_tune", 4, 1)
    assert stop.exit_status == 130
    assert "SIGINT received: stopping after the current batch" in capsys.readouterr().err
    assert recorder.epochs == [0, 1, 2, 3] and len(recorder.logs) == 3  # epoch 4 never ended
    # The model has the best weights of the epochs that finished, and so has best.keras.
    best, value = recorder.best()
    assert stop.best == {"stage": "head" if best < 2 else "fine_tune", "epoch": best + 1,
                         "monitor": "val_loss", "value": pytest.approx(value)}
    assert _same(model.get_weights(), recorder.weights[best])
    assert stop.best_model == str(backup / "best.keras")
    assert _same(kr.load_model(stop.best_model).get_weights(), recorder.weights[best])
    assert json.loads((backup / "best.json").read_text())["epoch"] == best + 1
    assert "run the same call again to resume" in str(stop)
    # The signal handlers are back as they were.
    assert signal.getsignal(signal.SIGINT) is previous

    # The same call again resumes: the head stage is restored, the fine-tuning stage reruns
    # only the interrupted epoch and the last one.
    again = Recorder(model)
    history = _fine_tune(_tiny(tmp_path), backup, [again])
    assert again.epochs == [3, 4]
    assert history.epochs == 5 and [s["name"] for s in history.stages] == ["head", "fine_tune"]
    assert not backup.exists()


def test_a_second_signal_stops_at_once(tmp_path, capsys):
    previous = signal.getsignal(signal.SIGINT)  # restored after (SIG_IGN in a background job)
    keras.utils.set_random_seed(0)
    model = _tiny(tmp_path)

    def twice(recorder):
        os.kill(os.getpid(), signal.SIGINT)
        os.kill(os.getpid(), signal.SIGINT)

    with pytest.raises(TrainingInterrupted) as caught:
        _fine_tune(model, tmp_path / "run.backup", [Recorder(model, (1, 1), twice)])
    assert caught.value.immediate and caught.value.best is None
    assert "at once" in str(caught.value)
    assert os.path.isfile(tmp_path / "run.backup" / "stage_0" / "latest.weights.h5")
    assert signal.getsignal(signal.SIGINT) is previous


def test_without_a_backup_the_model_still_gets_the_best_weights(tmp_path):
    previous = signal.getsignal(signal.SIGTERM)  # restored after (SIG_IGN in a background job)
    keras.utils.set_random_seed(0)
    model = _tiny(tmp_path)
    recorder = Recorder(model, at=(2, 1), action=lambda r: os.kill(os.getpid(), signal.SIGTERM))
    with pytest.raises(TrainingInterrupted) as caught:
        kr.fit(model, tiny_dataset(n=32), tiny_dataset(seed=1), epochs=4, callbacks=[recorder],
               verbose=0)
    stop = caught.value
    assert (stop.signal_name, stop.exit_status, stop.stage) == ("SIGTERM", 143, "train")
    assert stop.backup_dir is None and stop.best_model is None
    best, _ = recorder.best()
    assert stop.best["epoch"] == best + 1
    assert _same(model.get_weights(), recorder.weights[best])
    assert signal.getsignal(signal.SIGTERM) is previous


def _poison(recorder):
    """NaN weights: the next batch's loss is NaN."""
    recorder.whole.set_weights([np.full_like(w, np.nan) if w.dtype.kind == "f" else w
                                for w in recorder.whole.get_weights()])


def test_a_nan_loss_mid_stage_ends_with_the_best_weights_so_far(tmp_path):
    keras.utils.set_random_seed(0)
    model = _tiny(tmp_path)
    recorder = Recorder(model, at=(3, 0), action=_poison)
    with pytest.warns(UserWarning, match=r"loss became nan at epoch 4, batch 2.*The model has "
                                         r"the best weights so far \(epoch \d"):
        history = _fine_tune(model, tmp_path / "run.backup", [recorder])
    best, value = recorder.best()
    assert best < 3  # among the epochs before the divergence
    assert _same(model.get_weights(), recorder.weights[best])
    assert history.stages[-1]["restored"]["epoch"] == best + 1
    assert history.stages[-1]["stopped"].startswith("loss became nan at epoch 4, batch 2")


def test_best_weights_direction_persistence_and_non_finite_epochs(tmp_path):
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    best = BestWeights(model, str(tmp_path))
    best.watch("val_accuracy", "train")
    for epoch, (accuracy, loss) in enumerate([(0.5, 1.0), (0.7, 0.9), (0.9, float("nan")),
                                              (0.6, 0.8)]):
        best.on_epoch_end(epoch, {"val_accuracy": accuracy, "loss": loss})
    assert best.best == {"stage": "train", "epoch": 2, "monitor": "val_accuracy", "value": 0.7}
    # A resumed run knows the earlier best (and its weights, on disk).
    again = BestWeights(model, str(tmp_path))
    again.watch("val_accuracy", "train")
    again.on_epoch_end(0, {"val_accuracy": 0.65, "loss": 0.5})
    assert again.best["value"] == 0.7 and again.weights is None
    assert again.restore()
    again.watch("val_loss", "fine_tune")  # another monitor: not comparable, starts over
    again.on_epoch_end(5, {"val_loss": 3.0})
    assert again.best == {"stage": "fine_tune", "epoch": 6, "monitor": "val_loss", "value": 3.0}
    again.on_epoch_end(6, {"val_loss": 2.0})
    assert again.best["value"] == 2.0


def test_signal_stop_does_nothing_outside_the_main_thread():
    seen = []

    def run():
        with SignalStop() as stop:
            seen.append(stop._previous)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    assert seen == [{}]
