"""The patterns of training curves, named, with what to do about each: pure functions of numbers.

`diagnose_history` reads per-epoch loss/accuracy values (a `TrainingHistory`, a Keras `History`
or a dict) and names the babysitting patterns it finds; `CURVE_PATTERNS` holds each pattern's
verdict and next steps. `kr.TrainingHistory.report`, `kr.plot_history`, `kr.TrainingMonitor`'s
users and `doctor`'s `check_history` all read them from here.

Reference: CS231n, "Neural Networks Part 3: Learning and Evaluation" (babysitting the learning
process).
"""

import math

import numpy as np


def diagnose_history(history, gap=0.1, rise=0.1, plateau=0.02):
    """Names the patterns of training curves, with what to do about each.

    The patterns of the babysitting chapter, read off per-epoch values: `"diverged"` (NaN/inf
    loss), `"loss_rising"` (learning rate too high), `"overfitting"` (validation loss rising
    while the training loss falls), `"generalisation_gap"` (train accuracy far above
    validation), `"plateau"` (training loss flat while accuracy is low: fast fall then flat =
    learning rate too high, slow from the start = too low or too little capacity) and `"noisy"`
    (validation loss zig-zagging: larger batch). Epochs without a value (NaN, e.g. a stage
    without validation data) are left out of the validation patterns.

    Args:
        history: `TrainingHistory`, Keras `History`, or dict of metric → per-epoch values.
        gap: float. Train − validation accuracy above this is an overfitting gap.
            Defaults to `0.1`.
        rise: float. Relative rise of the validation loss above its minimum that counts as
            overfitting. Defaults to `0.1`.
        plateau: float. Relative fall of the training loss over the last half of the epochs
            below which the loss has plateaued. Defaults to `0.02`.

    Returns:
        list of `(pattern, message)`; `[("healthy", ...)]` when nothing is wrong.
        `CURVE_PATTERNS[pattern]` holds each pattern's verdict and what to do next.

    Example:
    >>> diagnose_history({"loss": [1.0, 0.5, 0.2, 0.1], "val_loss": [1.0, 0.7, 0.8, 1.0]})[0][0]
    'overfitting'
    """
    record = getattr(history, "history", history)

    def series(key):
        return np.asarray([math.nan if v is None else v for v in record.get(key, [])],
                          dtype="float64")

    loss, val_loss = series("loss"), series("val_loss")
    acc, val_acc = series("accuracy"), series("val_accuracy")
    found = []
    if loss.size and not np.isfinite(loss).all():
        found.append(("diverged", "The training loss became NaN/inf: the learning rate is too "
                      "high (run kr.find_lr), or clip gradients."))
        return found
    if loss.size >= 2 and loss[-1] > loss[0] * 1.05:
        found.append(("loss_rising", f"The training loss rose from {loss[0]:.3f} to "
                      f"{loss[-1]:.3f}: the learning rate is too high."))
    measured = np.flatnonzero(np.isfinite(val_loss[:loss.size]))
    if measured.size >= 3:
        values = val_loss[measured]
        best = int(np.argmin(values))
        best_epoch = int(measured[best])
        if best < values.size - 1 and values[-1] > values[best] * (1 + rise) and \
                loss[measured[-1]] < loss[best_epoch]:
            found.append(("overfitting", f"Validation loss rose {values[-1] / values[best] - 1:.0%}"
                          f" since epoch {best_epoch + 1} while the training loss kept falling: "
                          "overfitting — more data or augmentation, more regularisation "
                          "(dropout, weight decay), or stop at the best epoch."))
    both = np.flatnonzero(np.isfinite(acc[:val_acc.size]) & np.isfinite(val_acc[:acc.size]))
    if both.size and acc[both[-1]] - val_acc[both[-1]] > gap:
        last = both[-1]
        found.append(("generalisation_gap", f"Train accuracy {acc[last]:.1%} vs validation "
                      f"{val_acc[last]:.1%}: a large gap — regularise or get more data."))
    finite_acc = acc[np.isfinite(acc)]
    if loss.size >= 4 and not any(p == "loss_rising" for p, _ in found):
        half = loss[loss.size // 2:]
        fall = (half[0] - half[-1]) / max(abs(half[0]), 1e-12)
        early = (loss[0] - half[0]) / max(abs(loss[0]), 1e-12)
        if fall < plateau and (not finite_acc.size or finite_acc[-1] < 0.9):
            shown = f"{finite_acc[-1]:.1%}" if finite_acc.size else "n/a"
            if early > 0.3:
                cause = (f"it fell {early:.0%} in the first epochs, then flattened at "
                         f"{half[-1]:.3f}: the learning rate is too high (it bounces around a "
                         "high loss) — lower it 3–10×, or decay it")
            else:
                cause = ("it fell slowly from the start: the learning rate is too low, or the "
                         "model too small — raise the learning rate or add capacity")
            found.append(("plateau", f"The training loss barely moved over the last "
                          f"{half.size} epochs ({fall:.1%}) at accuracy {shown}; {cause}. "
                          "Run kr.find_lr."))
    measured = np.flatnonzero(np.isfinite(val_loss))
    if measured.size >= 4:
        values = val_loss[measured]
        steps = np.diff(values)
        sign_changes = np.mean(np.sign(steps[1:]) != np.sign(steps[:-1]))
        amplitude = np.mean(np.abs(steps)) / max(np.mean(values), 1e-12)
        if sign_changes >= 0.6 and amplitude > 0.05:
            found.append(("noisy", f"Validation loss zig-zags ({amplitude:.0%} per epoch): "
                          "a noisy estimate — larger batch, lower learning rate, or a larger "
                          "validation set."))
    return found or [("healthy", "Training and validation losses fall together.")]


# What each curve pattern means for the run (`"fail"`: fix it before training longer,
# `"warn"`: the run is usable but can do better) and what to try next, in order.
CURVE_PATTERNS = {
    "diverged": ("fail", "learning rate far too high", [
        "Lower the learning rate 10× (start from the kr.find_lr / `kerasrecipes lr-find` "
        "suggestion).",
        "Clip the gradients (clipnorm=1.0) and warm up (schedule='warmup_cosine').",
        "Run `kerasrecipes doctor`: its overfit-a-few-batches check shows a too-high learning "
        "rate in a minute.",
    ]),
    "loss_rising": ("fail", "learning rate too high", [
        "Lower the learning rate 3–10× (kr.find_lr suggests one).",
        "Warm up over the first 5–10 % of the steps; with SGDR, restart at a lower peak.",
    ]),
    "overfitting": ("warn", "overfitting", [
        "Keep the weights of the best epoch (early_stopping restores them).",
        "Augment more (augment='standard' or 'strong', MixUp/CutMix) and regularise more "
        "(dropout 0.3–0.5, weight_decay 1e-4–5e-4, label_smoothing 0.1).",
        "Get more data, or fine-tune fewer layers (unfreeze=N) for fewer epochs.",
    ]),
    "generalisation_gap": ("warn", "train/validation gap", [
        "Augment and regularise more (see overfitting), or get more data.",
        "Check that the validation images come from the same distribution as the training "
        "ones (and that no label leaks into the training images).",
    ]),
    "plateau": ("warn", "loss plateau", [
        "Run kr.find_lr: take its suggestion (fast fall then flat: lower the learning rate; "
        "slow from the start: raise it).",
        "Add capacity: unfreeze more layer groups (unfreeze='all') or a larger backbone.",
        "Check data and labels with `kerasrecipes doctor`.",
    ]),
    "noisy": ("warn", "noisy curves", [
        "A larger batch (2–4×, scaling the learning rate with it) averages the gradient noise.",
        "A lower or decaying learning rate (schedule='warmup_cosine' or 'one_cycle').",
        "A larger validation set (validation_split=0.2) makes the curve itself less noisy.",
    ]),
}
