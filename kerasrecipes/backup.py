"""Fault tolerance of a staged training run: what finished is kept, the stage in progress resumes.

`Backup` is what `kr.fine_tune(..., backup_dir=...)` (and `fit`, `fit_one_cycle`) keep in
`backup_dir`; Keras' own `BackupAndRestore` checkpoints the running stage every epoch.
"""

import json
import os
import shutil

import keras
import numpy as np

from kerasrecipes.saving import save_arrays, save_json


class Backup:
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
        record.append_stage(stage["stage"], RecordedHistory(stage["history"]))
        if k == len(self.stages) - 1:
            with np.load(os.path.join(self.directory, f"stage_{k}.npz")) as f:
                model.set_weights([f[f"arr_{i}"] for i in range(len(f.files))])

    def callbacks(self, k):
        return [
            keras.callbacks.BackupAndRestore(os.path.join(self.directory, f"stage_{k}")),
            EpochLog(os.path.join(self.directory, f"stage_{k}_epochs.jsonl")),
        ]

    def epochs(self, k):
        """The per-epoch logs of stage `k`, including those from before a restart."""
        history = {}
        path = os.path.join(self.directory, f"stage_{k}_epochs.jsonl")
        with open(path) as f:
            for line in f:
                for key, value in json.loads(line).items():
                    history.setdefault(key, []).append(value)
        return RecordedHistory(history)

    def finish(self, k, model, stage, history):
        """Records finished stage `k`: its weights (`stage_K.npz`), then `progress.json`.

        Both writes are atomic (`kerasrecipes.saving`): a crash or a signal part-way leaves the
        previous files whole, and `progress.json` names a stage only once its weights are on disk.
        """
        save_arrays(os.path.join(self.directory, f"stage_{k}.npz"), model.get_weights())
        self.stages.append({"stage": stage, "history": history.history})
        save_json(self.progress_path, {"stages": self.stages})

    def remove(self):
        shutil.rmtree(self.directory, ignore_errors=True)


class RecordedHistory:
    """A stand-in for `keras.callbacks.History` built from saved per-epoch logs."""

    def __init__(self, history):
        self.history = history


class EpochLog(keras.callbacks.Callback):
    """Appends each epoch's logs to a JSON-lines file (after the checkpoint is written)."""

    def __init__(self, path):
        super().__init__()
        self.path = path

    def on_epoch_end(self, epoch, logs=None):
        with open(self.path, "a") as f:
            f.write(json.dumps({k: float(v) for k, v in (logs or {}).items()}) + "\n")
