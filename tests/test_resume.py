"""Fault tolerance: a training process killed with SIGKILL mid-epoch resumes where it was."""

import json
import os
import subprocess
import sys

import pytest

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


CLI_SCRIPT = """
import json, os, sys, time
sys.path.insert(0, {tests!r})
import keras
import kerasrecipes
from kerasrecipes import registry
from kerasrecipes.cli import main
from tiny_models import TINY

registry.register_backbone(TINY)
log, gate = os.environ["EPOCH_LOG"], os.environ.get("GATE")

class Gate(keras.callbacks.Callback):
    # Logs each epoch begun; at the gate (epoch index, batch index) says so on stdout and waits
    # until the test has sent its signal (it touches GATE + ".sent").
    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch
        with open(log, "a") as f:
            f.write(f"{{epoch}}\\n")

    def on_train_batch_end(self, batch, logs=None):
        if gate and [self.epoch, batch] == json.loads(open(gate).read()):
            print("AT THE GATE", flush=True)
            deadline = time.time() + 60
            while not os.path.exists(gate + ".sent") and time.time() < deadline:
                time.sleep(0.02)

real = kerasrecipes.fine_tune
kerasrecipes.fine_tune = lambda *a, **k: real(*a, callbacks=[Gate()], **k)
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.parametrize("signal_name", [  # 22 s each: SIGINT runs with the slow checks
    pytest.param("SIGINT", marks=pytest.mark.slow), "SIGTERM"])
def test_a_signal_stops_finetune_after_the_batch_and_resume_continues(signal_name, tmp_path,
                                                                    make_image_folder):
    """A real signal to a real `kerasrecipes finetune` process, then `--resume`."""
    import shlex
    import signal

    import numpy as np

    import kerasrecipes as kr

    folder = make_image_folder(classes=("red", "green", "blue"), per_class=8)
    script = tmp_path / "cli.py"
    script.write_text(CLI_SCRIPT.format(tests=os.path.dirname(__file__)))
    gate, log = tmp_path / "gate.json", tmp_path / "epochs.log"
    gate.write_text("[2, 0]")  # after the 1st batch of epoch 3 (the 2nd fine-tuning epoch)
    env = dict(os.environ, EPOCH_LOG=str(log), GATE=str(gate), PYTHONUNBUFFERED="1")
    out = tmp_path / "out"
    argv = ["finetune", folder, "--backbone", "tiny_test_net", "--weights", "none",
            "--image-size", "16", "--batch-size", "8", "--head-epochs", "1", "--epochs", "3",
            "--validation-split", "0.25", "--out", str(out)]
    first = subprocess.Popen([sys.executable, str(script), *argv], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, env=env)
    try:
        for line in first.stdout:
            if line.startswith("AT THE GATE"):
                first.send_signal(getattr(signal, signal_name))
                open(str(gate) + ".sent", "w").close()
                break
        stdout, stderr = first.communicate(timeout=300)
    finally:
        first.kill()
    assert first.returncode == {"SIGINT": 130, "SIGTERM": 143}[signal_name], stderr[-3000:]
    assert (f"kerasrecipes finetune: stopped by {signal_name} in stage 'fine_tune', epoch 3, "
            "after batch 1.") in stderr
    backup = tmp_path / "out.backup"
    assert f"The backup {backup} keeps the finished stages" in stderr
    best = json.loads((backup / "best.json").read_text())
    assert f"The best weights so far (epoch {best['epoch']} (stage " in stderr
    assert os.path.isfile(backup / "best.keras") and not out.exists()
    # best.json names the epoch with the lowest val_loss of those that finished.
    val_losses = [json.loads(line)["val_loss"] for name in ("stage_0", "stage_1")
                  for line in open(backup / f"{name}_epochs.jsonl")]
    assert best["epoch"] == int(np.argmin(val_losses)) + 1
    best_model = kr.load_model(backup / "best.keras")
    assert np.isfinite(best_model.predict(np.zeros((1, 16, 16, 3), "uint8"), verbose=0)).all()
    command = stderr.split("To continue where it stopped")[1].splitlines()[1].strip()
    assert command == shlex.join(["kerasrecipes", *argv, "--resume"])
    assert log.read_text().split() == ["0", "1", "2"]

    # The printed command resumes: only the interrupted epoch and the last one run again.
    log.unlink()
    env.pop("GATE")
    second = subprocess.run([sys.executable, str(script), *shlex.split(command)[1:]],
                            capture_output=True, text=True, env=env, timeout=300)
    assert second.returncode == 0, second.stderr[-3000:]
    assert "resuming from" in second.stdout
    assert log.read_text().split() == ["2", "3"]
    assert (out / "model.keras").exists() and not backup.exists()
    metrics = json.loads((out / "metrics.json").read_text())
    assert [s["name"] for s in metrics["stages"]] == ["head", "fine_tune"]
    assert len(metrics["history"]["loss"]) == 4
