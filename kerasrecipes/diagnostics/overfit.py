"""`overfit_small_batch`: a copy of the model, regularisation off, must memorise a few batches.

Reference: Karpathy, "A Recipe for Training Neural Networks" (2019), "overfit one batch".
"""

import math
import time

import keras
import numpy as np

from kerasrecipes.batches import take_batches
from kerasrecipes.diagnostics.checks import predict_batches, task_labels
from kerasrecipes.diagnostics.verdicts import CheckResult
from kerasrecipes.optimizers import get_optimizer
from kerasrecipes.tasks import (
    default_metrics,
    is_multitask,
    model_loss,
    multitask_compile_args,
    task_heads,
    task_of,
)


def _strip_regularization(model):
    """A copy of `model` without dropout, augmentation or weight penalties, same weights."""
    clone = keras.models.clone_model(model)
    clone.set_weights(model.get_weights())
    stack = [clone]
    while stack:
        layer = stack.pop()
        if isinstance(layer, (keras.layers.Dropout, keras.layers.SpatialDropout2D,
                              keras.layers.GaussianNoise, keras.layers.GaussianDropout)):
            layer.rate = 0.0
            if hasattr(layer, "stddev"):
                layer.stddev = 0.0
        for attribute in ("kernel_regularizer", "bias_regularizer", "activity_regularizer",
                          "depthwise_regularizer", "pointwise_regularizer"):
            if getattr(layer, attribute, None) is not None:
                setattr(layer, attribute, None)
        stack.extend(getattr(layer, "layers", []))
    for variable in clone.weights:
        if getattr(variable, "regularizer", None) is not None:
            variable.regularizer = None
    try:
        parts = [clone.get_layer(n) for n in ("preprocess", "backbone", "head")]
    except ValueError:
        return clone
    # Skip the `augment` sub-model: the fixed batches must stay fixed.
    inputs = keras.Input(clone.input_shape[1:], dtype=clone.inputs[0].dtype, name="image")
    x = inputs
    for part in parts:
        x = part(x)
    return keras.Model(inputs, x, name=f"{clone.name}_no_regularization")


class _OverfitTracker(keras.callbacks.Callback):
    """Records the loss of every step and stops at the target accuracy or a NaN/inf loss."""

    def __init__(self, steps_per_epoch, target, score=None):
        super().__init__()
        self.steps_per_epoch = steps_per_epoch
        self.target = target
        # logs -> the training accuracy (multi-task: the worst head's accuracy or R²).
        self.score = score or (lambda logs: float(logs.get("accuracy", math.nan)))
        self.step_losses, self.losses, self.accuracies = [], [], []
        self.reached_at = None
        self.non_finite_at = None
        self._running = 0.0

    def on_epoch_begin(self, epoch, logs=None):
        self._running = 0.0

    def on_train_batch_end(self, batch, logs=None):
        # Keras logs the running mean of the epoch; recover this step's own loss from it.
        mean = float((logs or {}).get("loss", math.nan))
        loss = (batch + 1) * mean - batch * self._running
        self._running = mean
        self.step_losses.append(loss)
        if not np.isfinite(loss) and self.non_finite_at is None:
            self.non_finite_at = len(self.step_losses)
            self.model.stop_training = True

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        self.losses.append(float(logs.get("loss", math.nan)))
        self.accuracies.append(self.score(logs))
        if self.non_finite_at is None and self.accuracies[-1] >= self.target:
            self.reached_at = (epoch + 1) * self.steps_per_epoch
            self.model.stop_training = True


def overfit_small_batch(model, data, batches=5, steps=150, lr=1e-3, optimizer="adam",
                        loss=None, target=0.99, verbose=0):
    """Trains a copy of the model on a few fixed batches: it should reach ~100 % accuracy.

    The copy starts from the model's weights with dropout, augmentation and weight penalties
    off (no weight decay either); the model itself is left untouched. A model that cannot
    memorise 5–10 batches will not learn the dataset: the learning rate is too low, the
    initialisation is bad, or the capacity is too small; a NaN/inf loss means the learning rate
    is too high. A multi-task model (`kr.build_multitask`, `{task: labels}`) has memorised the
    batches when every head has: classification heads reach `target` accuracy, regression
    heads an R² (1 − MSE / variance of the targets) of `target`.

    Args:
        model: keras.Model.
        data: dataset of `(images, labels)` batches (or an `(images, labels)` tuple).
        batches: int. Number of batches to memorise. Defaults to `5`.
        steps: int. Maximum number of optimizer steps. Defaults to `150`.
        lr: float. Learning rate. Defaults to `1e-3`.
        optimizer: str. As in `kr.get_optimizer` (no weight decay). Defaults to `"adam"`.
        loss: optional loss. Defaults to the compiled loss, else the default for the task.
        target: float. Training accuracy that counts as memorised. Defaults to `0.99`.
        verbose: int. Keras verbosity. Defaults to `0`.

    Returns:
        `CheckResult` with `details["reached_at_step"]`, `details["losses"]` (one per pass over
        the batches), `details["accuracies"]`, `details["non_finite_at_step"]`.

    Example:
    >>> overfit_small_batch(model, data.train, batches=5, steps=100).status  # "pass"

    Reference: Karpathy, "A Recipe for Training Neural Networks" (2019), "overfit one batch".
    """
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive int. Received: steps={steps!r}")
    if not 0 < target <= 1:
        raise ValueError(f"target must be in (0, 1]. Received: target={target!r}")
    if not (isinstance(lr, (int, float)) and lr > 0):
        raise ValueError(f"lr must be a positive number. Received: lr={lr!r}")
    images, labels, batch_size = take_batches(data, batches)
    n_batches = math.ceil(len(images) / batch_size)

    def fresh(loss):  # a new loss object: the copy must not share state with the model's.
        return loss.__class__.from_config(loss.get_config()) \
            if isinstance(loss, keras.losses.Loss) else loss

    copy = _strip_regularization(model)
    if is_multitask(model):
        heads = task_heads(model, loss)
        labels = task_labels(labels, heads)
        task = {h.task: h.kind for h in heads}
        compile_args = multitask_compile_args(model)
        compile_args["loss"] = {h.task: fresh(h.loss) for h in heads}
        score = _multitask_score(heads, labels)
    else:
        task = task_of(model)
        compile_args = {"loss": fresh(model_loss(model, loss)),
                        "metrics": default_metrics(task)}
        score = None
    copy.compile(optimizer=get_optimizer(optimizer, float(lr)), **compile_args)
    tracker = _OverfitTracker(n_batches, target, score)
    start = time.time()
    copy.fit(images, labels, batch_size=batch_size, epochs=max(1, math.ceil(steps / n_batches)),
             shuffle=False, callbacks=[tracker], verbose=verbose)
    seconds = time.time() - start
    train_mode_accuracy = tracker.accuracies[-1] if tracker.accuracies else math.nan
    inference_accuracy = math.nan
    if tracker.non_finite_at is None:
        if not all(np.isfinite(keras.ops.convert_to_numpy(v)).all() for v in copy.weights):
            tracker.non_finite_at = len(tracker.step_losses)
        else:
            predictions = predict_batches(copy, images, batch_size)
            inference_accuracy = _score_on(labels, predictions, task)
    details = {
        "images": int(len(images)), "batches": n_batches, "lr": float(lr),
        "optimizer": optimizer, "steps": len(tracker.losses) * n_batches,
        "reached_at_step": tracker.reached_at, "non_finite_at_step": tracker.non_finite_at,
        "losses": tracker.losses, "accuracies": tracker.accuracies,
        "step_losses": tracker.step_losses,
        "final_accuracy": train_mode_accuracy, "inference_accuracy": inference_accuracy,
        "seconds": seconds,
    }
    del copy
    measure = "accuracy" if not isinstance(task, dict) else \
        "worst-head score (accuracy, R² for regression)"
    advice = []
    if tracker.non_finite_at is not None:
        status = "fail"
        summary = f"loss became NaN/inf at step {tracker.non_finite_at} (lr {lr:g})"
        advice.append(f"The learning rate is too high: try {lr / 10:g} or lower "
                      "(run kr.find_lr), or clip gradients (clipnorm=1).")
    elif tracker.reached_at is not None:
        status = "pass"
        summary = (f"memorised {len(images)} images ({n_batches} batches): {measure} "
                   f"{train_mode_accuracy:.2%} after {tracker.reached_at} steps")
        step_losses = np.asarray(tracker.step_losses)
        if step_losses.size > 1 and step_losses[1:].max() > 3 * step_losses[0]:
            # Memorised despite the loss jumping far above its start: unstable, LR too high.
            status = "warn"
            details["diverged"] = True
            summary += f", but the loss jumped to {step_losses.max():.3g} from {step_losses[0]:.3g}"
            advice.append(f"The learning rate ({lr:g}) is too high: training is unstable. Try "
                          f"{lr / 10:g} or lower (run kr.find_lr).")
    else:
        status = "fail"
        step_losses = np.asarray(tracker.step_losses)
        first, last = step_losses[0], step_losses[-n_batches:].mean()
        summary = (f"training {measure} {train_mode_accuracy:.2%} after {details['steps']} steps "
                   f"on {len(images)} images (loss {first:.3f} → {last:.3f})")
        diverged = step_losses.max() > 3 * first or last > 1.2 * first
        details["diverged"] = bool(diverged)
        if diverged:
            advice.append(
                f"The loss went up (peak {step_losses.max():.3g} from {first:.3g}): the learning "
                f"rate ({lr:g}) is too high. Try {lr / 10:g} or lower (run kr.find_lr)."
            )
            advice.append("Or clip the gradients (clipnorm=1) and add warmup.")
        else:
            advice.append(f"Learning rate too low? Try {lr * 10:g} (or run kr.find_lr).")
        advice += [] if diverged else [
            "Bad initialisation? Run check_weights: constant/all-zero kernels never learn.",
            "Too little capacity? A larger backbone, more units, or unfreeze more layers.",
            "Output activation and loss consistent? Run check_output_loss.",
            "Labels right? Look at a few images with their labels.",
        ]
    return CheckResult("overfit_small_batch", status, summary, advice, details)


def _multitask_score(heads, labels):
    """logs -> the worst head's training accuracy, or R² = 1 - MSE / var for regression."""
    variances = {h.task: float(np.var(np.asarray(labels[h.task], "float64"))) for h in heads}

    def score(logs):
        values = []
        for head in heads:
            if head.kind == "regression":
                mse = float(logs.get(f"{head.task}_loss", math.nan))
                values.append(1.0 - mse / max(variances[head.task], 1e-12))
            else:
                values.append(float(logs.get(f"{head.task}_accuracy", math.nan)))
        return min(values)

    return score


def _score_on(labels, predictions, task):
    """Inference accuracy of `predictions` (multi-task: the worst head, R² for regression)."""
    if isinstance(task, dict):  # multi-task: the worst head (R² for regression heads)
        scores = []
        for name, kind in task.items():
            if kind == "regression":
                truth = np.asarray(labels[name], "float64").reshape(predictions[name].shape)
                mse = float(np.mean((predictions[name] - truth) ** 2))
                scores.append(1.0 - mse / max(float(np.var(truth)), 1e-12))
            else:
                scores.append(_score_on(labels[name], predictions[name], kind))
        return min(scores)
    if task == "multiclass":
        truth = labels.argmax(-1) if labels.ndim == 2 and labels.shape[-1] > 1 else \
            labels.reshape(-1)
        return float(np.mean(predictions.argmax(-1) == truth))
    return float(np.mean((predictions > 0.5) == (labels.reshape(predictions.shape) > 0.5)))
