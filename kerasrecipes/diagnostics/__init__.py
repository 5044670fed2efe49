"""Sanity checks before a long training run, and the `doctor` report that runs them all.

The "babysitting" checklist as functions, each returning a `CheckResult` with a verdict
(`"pass"`, `"warn"`, `"fail"`, `"skip"`), the measured numbers and what to do next:

- `check_inputs`: the pixels are what the model expects (uint8 0–255, not 0–1 floats or images
  normalised twice) and the `preprocess` sub-model maps them into the backbone's range.
- `check_labels`: labels fit the output layer (range, count of classes).
- `check_output_loss`: the output activation and the loss agree (softmax + cross-entropy with
  `from_logits=False`; logits + `from_logits=True`; no MSE on class labels …).
- `check_weights`: no all-zero/constant kernels (symmetric units never differentiate), no
  non-finite or exploding initial weights.
- `check_initial_loss`: the loss before training equals its chance value (ln N for softmax
  cross-entropy, ln 2 per output for sigmoid).
- `overfit_small_batch`: with regularisation off, a copy of the model reaches ~100 % training
  accuracy on a handful of batches; NaN/inf means the learning rate is too high.
- `check_history`: the curves of a run show none of the babysitting patterns (overfitting,
  learning rate too high, plateau, noisy → larger batch).

Multi-task models (`kr.build_multitask`, `{task: labels}` batches) are checked head by head.
`doctor` runs them, adds a short learning-rate range test (`kerasrecipes.lr_finder`, when
installed) and, given a training history, its curves, and writes a Markdown report with PNG
figures.

The modules: `verdicts` (pure functions: expected losses, output/loss pairs, label kinds, and
`CheckResult`), `checks` (the checks that look at a model and a few batches), `overfit` (the one
that trains a copy), `doctor`, its Markdown `report` and its `plots`. To add a check: a function
returning a `CheckResult` in `checks.py` (its pure verdict in `verdicts.py`), run from `doctor`.

Reference: Karpathy, "A Recipe for Training Neural Networks" (2019); CS231n, "Babysitting the
learning process".
"""

from kerasrecipes.diagnostics.checks import (
    check_history,
    check_initial_loss,
    check_inputs,
    check_labels,
    check_output_loss,
    check_weights,
)
from kerasrecipes.diagnostics.doctor import DoctorReport, doctor
from kerasrecipes.diagnostics.overfit import overfit_small_batch
from kerasrecipes.diagnostics.verdicts import (
    CROSS_ENTROPIES,
    REGRESSION_LOSSES,
    STATUSES,
    CheckResult,
    classify_labels,
    classify_output_loss,
    expected_initial_loss,
    prior_loss,
)

__all__ = [
    "CROSS_ENTROPIES",
    "REGRESSION_LOSSES",
    "STATUSES",
    "CheckResult",
    "DoctorReport",
    "check_history",
    "check_initial_loss",
    "check_inputs",
    "check_labels",
    "check_output_loss",
    "check_weights",
    "classify_labels",
    "classify_output_loss",
    "doctor",
    "expected_initial_loss",
    "overfit_small_batch",
    "prior_loss",
]
