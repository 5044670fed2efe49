"""`doctor`: every sanity check, a short learning-rate range test, and the Markdown report."""

import dataclasses
import math
import os
import time

import keras
import numpy as np

from kerasrecipes.batches import as_batches
from kerasrecipes.diagnostics.checks import (
    check_history,
    check_initial_loss,
    check_inputs,
    check_labels,
    check_output_loss,
    check_weights,
)
from kerasrecipes.diagnostics.overfit import overfit_small_batch
from kerasrecipes.diagnostics.plots import plot_inputs, plot_overfit
from kerasrecipes.diagnostics.report import markdown_report
from kerasrecipes.diagnostics.verdicts import CheckResult
from kerasrecipes.tasks import is_multitask, model_loss


@dataclasses.dataclass
class DoctorReport:
    """The checks `doctor` ran, and where it wrote its report.

    Attributes:
        checks: list of `CheckResult`.
        path: str. The Markdown report.
        lr_suggestion: optional float. The LR range test's suggestion.
    """

    checks: list
    path: str
    lr_suggestion: float = None

    @property
    def ok(self):
        """True when no check failed."""
        return all(check.ok for check in self.checks)

    def __getitem__(self, name):
        for check in self.checks:
            if check.name == name:
                return check
        raise KeyError(name)


def doctor(model, train, validation=None, out_dir="doctor_report", class_names=None,
           loss=None, overfit_batches=5, overfit_steps=150, overfit_lr=1e-3, lr_finder=True,
           lr_finder_steps=60, history=None, verbose=1, batch_size=None):
    """Runs every sanity check (plus a short LR range test) and writes a Markdown report.

    Args:
        model: keras.Model, e.g. from `kr.build_classifier`. Not modified (the overfitting test
            and the LR range test train copies, or restore the weights).
        train: dataset of `(uint8 images, labels)` batches, or `(x, y)` arrays (as
            `keras.Model.fit` takes them; see `batch_size`).
        validation: optional dataset (or arrays) like `train`; its first batches are checked for
            range and labels too. Defaults to `None`.
        out_dir: str. Folder for `report.md` and the PNG figures. Defaults to `"doctor_report"`.
        class_names: optional list of str. The dataset's classes, checked against the outputs.
        loss: optional loss. Defaults to the compiled loss, else the default for the task.
        overfit_batches: int. Batches for `overfit_small_batch`. Defaults to `5`.
        overfit_steps: int. Step budget of `overfit_small_batch`. Defaults to `150`.
        overfit_lr: float. Its learning rate. Defaults to `1e-3`.
        lr_finder: bool. Run `kerasrecipes.lr_finder.find_lr` when available. Defaults to `True`.
        lr_finder_steps: int. Steps of the LR range test. Defaults to `60`.
        history: optional `TrainingHistory` (or Keras `History`, or dict) of a run of this
            model: its curves are checked for the babysitting patterns (`check_history`) and
            plotted into the report. Defaults to `None`.
        verbose: int. Print each verdict as it comes. Defaults to `1`.
        batch_size: optional int. Batch size when `train` / `validation` are arrays. Defaults to
            `None` (32).

    Returns:
        `DoctorReport`.

    Example:
    >>> data = kr.datasets.load_demo(image_size=128)
    >>> model = kr.build_classifier("efficientnet_lite0", 10, image_size=128)
    >>> report = kr.doctor(model, data.train, data.validation, class_names=data.class_names)
    >>> report.ok, report.path
    """
    train = as_batches(train, batch_size, "train")
    validation = as_batches(validation, batch_size, "validation", allow_none=True)
    os.makedirs(out_dir, exist_ok=True)
    checks = []

    def run(check_fn, *args, **kwargs):
        start = time.time()
        if verbose:
            print(f"[kerasrecipes doctor] {check_fn.__name__} ...", flush=True)
        result = check_fn(*args, **kwargs)
        result.details.setdefault("seconds", round(time.time() - start, 1))
        checks.append(result)
        if verbose:
            print(str(result), flush=True)
        return result

    num_classes = len(class_names) if class_names is not None else None
    inputs = run(check_inputs, model, train)
    inputs.figures.append(plot_inputs(model, train, os.path.join(out_dir, "inputs.png")))
    if validation is not None:
        val_inputs = run(check_inputs, model, validation, batches=1)
        val_inputs.name = "inputs (validation)"
    labels = run(check_labels, model, train, num_classes=num_classes)
    run(check_output_loss, model, train, loss=loss)
    run(check_weights, model)
    if labels.ok:
        run(check_initial_loss, model, train, loss=loss)
        # verbose=2: one line per pass over the batches, so a slow backbone shows progress.
        overfit = run(overfit_small_batch, model, train, batches=overfit_batches,
                      steps=overfit_steps, lr=overfit_lr, loss=loss,
                      verbose=2 if verbose else 0)
        if overfit.details.get("losses"):
            overfit.figures.append(plot_overfit(overfit, os.path.join(out_dir, "overfit.png")))
    else:
        for name in ("initial_loss", "overfit_small_batch"):
            checks.append(CheckResult(name, "skip", "skipped: the labels do not fit the model"))
    suggestion = None
    if lr_finder and labels.ok:
        # find_lr knows the default loss of single-output models only.
        lr_loss = model_loss(model, loss) if is_multitask(model) else loss
        lr_check = run(_lr_range_test, model, train, lr_loss, lr_finder_steps, out_dir)
        suggestion = lr_check.details.get("suggestion")
    if history is not None:
        run(check_history, history, os.path.join(out_dir, "history.png"))
    path = os.path.join(out_dir, "report.md")
    with open(path, "w") as f:
        f.write(markdown_report(checks, model, suggestion, out_dir))
    if verbose:
        failed = [c.name for c in checks if c.status == "fail"]
        verdict = "all checks passed" if not failed else "FAILED: " + ", ".join(failed)
        print(f"[kerasrecipes doctor] {verdict}; report: {path}", flush=True)
    return DoctorReport(checks, path, suggestion)


def _lr_range_test(model, train, loss, steps, out_dir):
    """LR range test through `kerasrecipes.lr_finder.find_lr`, when that module exists."""
    try:
        from kerasrecipes.lr_finder import find_lr
    except ImportError:
        return CheckResult("lr_range_test", "skip",
                           "unavailable: kerasrecipes.lr_finder is not installed")
    weights = [keras.ops.convert_to_numpy(w).copy() for w in model.weights]
    try:
        result = find_lr(model, train, num_steps=steps, loss=loss, verbose=0)
    finally:
        # find_lr should restore the weights itself; make sure the report leaves none changed.
        for variable, value in zip(model.weights, weights):
            variable.assign(value)
    suggestion = result.suggestion()
    figure = os.path.join(out_dir, "lr_finder.png")
    result.plot(figure)
    lrs, losses = np.asarray(result.lrs, float), np.asarray(result.losses, float)
    details = {"suggestion": None if suggestion is None else float(suggestion),
               "lr_min": float(lrs.min()) if lrs.size else None,
               "lr_max": float(lrs.max()) if lrs.size else None, "steps": int(lrs.size)}
    if suggestion is None or not np.isfinite(suggestion):
        return CheckResult("lr_range_test", "warn", "no clear suggestion (the loss did not fall)",
                           ["Widen the LR range or check the other verdicts first."], details,
                           [figure])
    return CheckResult(
        "lr_range_test", "pass",
        f"suggested learning rate {suggestion:.2g} (range {details['lr_min']:.0e}–"
        f"{details['lr_max']:.0e}, {details['steps']} steps, finite loss "
        f"{np.nanmin(losses[np.isfinite(losses)]) if np.isfinite(losses).any() else math.nan:.3f}"
        " at best)", [], details, [figure])
