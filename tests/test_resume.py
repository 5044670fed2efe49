"""Fault tolerance: a training process killed with SIGKILL mid-epoch resumes where it was."""

import json
import os
import subprocess
import sys

SCRIPT = """
import json, os, signal, sys
sys.path.insert(0, {tests!r})
import keras
import kerasrecipes as kr
from tiny_models import TINY, tiny_dataset

backup, marker, out = sys.argv[1], sys.argv[2], sys.argv[3]
keras.utils.set_random_seed(0)
path = os.path.join(os.path.dirname(out), "tiny.weights.h5")
if not os.path.exists(path):
    TINY.build(weights=None).save_weights(path)
model = kr.build_classifier(TINY, num_classes=3, weights=path)
started = []

class Killer(keras.callbacks.Callback):
    def on_epoch_begin(self, epoch, logs=None):
        started.append(epoch)

    def on_train_batch_end(self, batch, logs=None):
        # First run only: die in the middle of the 4th epoch overall (2nd fine-tuning epoch).
        if not os.path.exists(marker) and started[-1] == 3 and batch == 1:
            open(marker, "w").close()
            os.kill(os.getpid(), signal.SIGKILL)

history = kr.fine_tune(model, tiny_dataset(n=32), tiny_dataset(seed=1), head_epochs=2, epochs=3,
                       early_stopping=None, backup_dir=backup, callbacks=[Killer()], verbose=0)
json.dump({{"epochs_run_here": started, "epochs": history.epochs,
           "stages": [s["name"] for s in history.stages],
           "loss": history.history["loss"]}}, open(out, "w"))
"""


def test_killed_run_resumes_with_at_most_one_epoch_lost(tmp_path):
    script = tmp_path / "train.py"
    script.write_text(SCRIPT.format(tests=os.path.dirname(__file__)))
    backup, marker, out = tmp_path / "backup", tmp_path / "killed", tmp_path / "out.json"
    args = [sys.executable, str(script), str(backup), str(marker), str(out)]

    first = subprocess.run(args, capture_output=True, text=True, timeout=300)
    assert first.returncode == -9, first.stderr[-2000:]  # SIGKILL
    assert marker.exists() and not out.exists()
    assert os.path.isfile(backup / "progress.json")  # the head stage had finished

    second = subprocess.run(args, capture_output=True, text=True, timeout=300)
    assert second.returncode == 0, second.stderr[-3000:]
    result = json.loads(out.read_text())
    # The restart skips the finished head stage and resumes the fine-tuning stage after its last
    # completed epoch (epoch index 2): it reruns only the interrupted epoch and the rest.
    assert result["epochs_run_here"] == [3, 4]
    assert result["epochs"] == 5 and result["stages"] == ["head", "fine_tune"]
    assert all(isinstance(v, float) for v in result["loss"]) and len(result["loss"]) == 5
    assert "resuming from" in second.stdout
    assert not backup.exists()  # removed once the run completed
