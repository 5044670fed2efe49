"""Writes the `.keras` files that `tests/test_legacy_models.py` loads: models saved by old code.

Each file is a small model trained a few steps with the kerasrecipes code of the commit this
tool ran on (the registered layers, losses, metrics, optimizers, LR and momentum schedules all
end up in the files), saved with its optimizer. `expected.npz` holds fixed uint8 inputs and the
model's inference outputs on them; `manifest.json` says which commit and versions wrote them and
what each file contains. The test loads every file with today's code and checks that it predicts
the recorded outputs and keeps training.

The files in `tests/data/legacy/` were written by main at b765e98 (the last commit
before the refactor's phase 2, issue #16), TensorFlow backend. Re-run it only to add a file
from a newer version; never to "fix" a failing load test (that test guards old files).

Usage:

    python tools/make_legacy_models.py                  # writes tests/data/legacy/
    python tools/make_legacy_models.py --out /tmp/legacy
"""

import argparse
import json
import os
import subprocess
import sys

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO_ROOT)
sys.path.insert(0, os.path.join(REPO_ROOT, "tests"))


def _models():
    """`{file name: (model, what it holds)}`, each model trained a few steps and compiled."""
    import keras
    import numpy as np

    import kerasrecipes as kr
    from tiny_models import TINY, tiny_dataset, tiny_resnet

    train = tiny_dataset(n=16, batch_size=8)
    # 16 steps in 2 epochs: enough for the 10 % linear warmup of "step" and "sgdr" (2 steps).
    small_batches = tiny_dataset(n=32, batch_size=4)
    quiet = {"verbose": 0}
    models = {}

    # Transfer learning: our AdamW with per-group LR multipliers, OneCycle + OneCycleMomentum,
    # the "standard" augmentation layers (RandomResizedCrop, ColorJitter, PCALighting), and
    # label smoothing (kr.CrossEntropy / kr.Accuracy).
    keras.utils.set_random_seed(0)
    model = kr.build_classifier(TINY, num_classes=3, weights=None, augment="standard",
                                name="legacy_classifier")
    kr.fine_tune(model, train, head_epochs=1, epochs=1, label_smoothing=0.1,
                 early_stopping=None, **quiet)
    models["classifier_one_cycle.keras"] = (model, "build_classifier(TINY, augment='standard'), "
                                            "fine_tune: adamw + lr_multipliers, OneCycle, "
                                            "OneCycleMomentum, CrossEntropy/Accuracy")

    # From scratch: NormalizeImage with the channel statistics of the training images, SGD
    # (momentum) with LinearWarmup(StepDecay).
    keras.utils.set_random_seed(1)
    images = np.concatenate([x for x, _ in train])
    model = kr.build_scratch_cnn(3, image_size=16, filters=4, stages=2, dense_units=(8,),
                                 normalization_data=images, name="legacy_scratch_cnn")
    kr.fit(model, small_batches, epochs=2, lr=0.01, optimizer="sgd", schedule="step", **quiet)
    models["scratch_cnn_step.keras"] = (model, "build_scratch_cnn (NormalizeImage), fit: sgd, "
                                        "LinearWarmup(StepDecay)")

    # A ResNet with SGDR restarts and RMSprop, and one compiled by hand with WarmupCosine.
    model = tiny_resnet()
    kr.fit(model, small_batches, epochs=2, lr=3e-3, optimizer="rmsprop", schedule="sgdr",
           **quiet)
    models["resnet_sgdr.keras"] = (model, "build_resnet, fit: rmsprop, LinearWarmup(SGDR)")

    keras.utils.set_random_seed(2)
    model = kr.build_scratch_cnn(3, image_size=16, filters=4, stages=2, dense_units=(),
                                 normalization_data=images, name="legacy_warmup_cosine")
    model.compile(optimizer=kr.get_optimizer("nesterov", kr.WarmupCosine(0.01, 8, 2)),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(train, epochs=1, **quiet)
    models["scratch_cnn_warmup_cosine.keras"] = (model, "compiled by hand: nesterov SGD, "
                                                 "WarmupCosine")

    # fit_one_cycle with an explicit peak (no range test): OneCycle with pct_start, Adam.
    keras.utils.set_random_seed(3)
    model = kr.build_scratch_cnn(3, image_size=16, filters=4, stages=2, dense_units=(),
                                 normalization_data=images, name="legacy_fit_one_cycle")
    kr.fit_one_cycle(model, train, epochs=1, max_lr=3e-3, optimizer="adam", pct_start=0.3,
                     **quiet)
    models["scratch_cnn_fit_one_cycle.keras"] = (model, "fit_one_cycle(max_lr=3e-3): adam, "
                                                 "OneCycle + OneCycleMomentum")

    # Multi-task: dict outputs, per-task losses and loss weights.
    keras.utils.set_random_seed(4)
    model = kr.build_multitask(TINY, {"label": 3, "flag": "binary", "score": "regression"},
                               weights=None, loss_weights={"label": 1.0, "flag": 0.5,
                                                           "score": 2.0}, name="legacy_multitask")
    labelled = train.map(lambda x, y: (x, {"label": y, "flag": y % 2,
                                           "score": keras.ops.cast(y, "float32") / 2.0}))
    kr.fit(model, labelled, epochs=1, **quiet)
    models["multitask.keras"] = (model, "build_multitask: multiclass, binary and regression "
                                 "heads, loss weights 1 / 0.5 / 2, fit (warmup_cosine)")
    return models


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=os.path.join(REPO_ROOT, "tests", "data", "legacy"))
    args = parser.parse_args(argv)

    import keras
    import numpy as np

    os.makedirs(args.out, exist_ok=True)
    rng = np.random.default_rng(123)
    inputs = rng.integers(0, 256, (4, 16, 16, 3)).astype("uint8")
    expected = {"inputs": inputs}
    manifest = {
        "commit": subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, text=True,
                                 capture_output=True).stdout.strip(),
        "keras": keras.__version__, "backend": keras.backend.backend(), "models": {},
    }
    for name, (model, what) in _models().items():
        path = os.path.join(args.out, name)
        model.save(path)
        outputs = model.predict(inputs, verbose=0)
        stem = os.path.splitext(name)[0]
        if isinstance(outputs, dict):
            for task, values in outputs.items():
                expected[f"{stem}/{task}"] = values
        else:
            expected[stem] = outputs
        optimizer = model.optimizer
        manifest["models"][name] = {
            "what": what,
            "optimizer": type(optimizer).__name__,
            "learning_rate": type(optimizer._learning_rate).__name__,
            "iterations": int(keras.ops.convert_to_numpy(optimizer.iterations)),
            "bytes": os.path.getsize(path),
        }
        print(f"{name}: {os.path.getsize(path) / 1024:.0f} KB, {what}")
    np.savez(os.path.join(args.out, "expected.npz"), **expected)
    with open(os.path.join(args.out, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=2)
        f.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
