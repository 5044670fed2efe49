"""The verdicts of the sanity checks as pure functions of numbers, names and label arrays.

No model, no training, no plotting here: `expected_initial_loss` and `prior_loss` (what the loss
of an untrained classifier should be), `classify_output_loss` (does an output activation go with
a loss), the verdict on one multi-task head's labels, and `CheckResult`, the outcome every check
returns. The checks that run models are in `checks.py` and `overfit.py`.
"""

import dataclasses
import math

import numpy as np

STATUSES = ("pass", "warn", "fail", "skip")
CROSS_ENTROPIES = {
    "sparse_categorical_crossentropy": "sparse",
    "categorical_crossentropy": "categorical",
    "binary_crossentropy": "binary",
    "binary_focal_crossentropy": "binary",
    "categorical_focal_crossentropy": "categorical",
    "cross_entropy": "soft",  # kr.CrossEntropy: integer, one-hot or soft labels.
}
REGRESSION_LOSSES = ("mean_squared_error", "mean_absolute_error", "huber", "log_cosh",
                      "mean_squared_logarithmic_error", "mean_absolute_percentage_error")


@dataclasses.dataclass
class CheckResult:
    """The outcome of one sanity check.

    Attributes:
        name: str. The check's name (e.g. `"initial_loss"`).
        status: str. `"pass"`, `"warn"`, `"fail"` or `"skip"`.
        summary: str. One line: what was measured against what.
        advice: list of str. What to do next (empty when the check passes).
        details: dict. The measured numbers.
        figures: list of str. PNG files written for this check.
    """

    name: str
    status: str
    summary: str
    advice: list = dataclasses.field(default_factory=list)
    details: dict = dataclasses.field(default_factory=dict)
    figures: list = dataclasses.field(default_factory=list)

    @property
    def ok(self):
        """True unless the check failed."""
        return self.status != "fail"

    def __str__(self):
        lines = [f"[{self.status.upper()}] {self.name}: {self.summary}"]
        lines += [f"    - {a}" for a in self.advice]
        return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# Pure functions.


def expected_initial_loss(task, num_classes, label_smoothing=0.0):
    """The loss of an untrained classifier that predicts chance (uniform) probabilities.

    Softmax cross-entropy with `N` classes: `ln N` (2.303 for 10). Sigmoid binary cross-entropy at
    p = 0.5: `ln 2` = 0.693 per output, whatever the labels. Label smoothing does not change these
    values: the smoothed targets still sum to one, and every prediction is `1/N` (or 0.5).

    Args:
        task: str. `"multiclass"`, `"binary"` or `"multilabel"`.
        num_classes: int. Number of output classes (>= 2 for multiclass).
        label_smoothing: float. In [0, 1). Defaults to `0.0`.

    Returns:
        float.

    Example:
    >>> expected_initial_loss("multiclass", 10)  # 2.302585...
    """
    if not 0.0 <= label_smoothing < 1.0:
        raise ValueError(
            f"label_smoothing must be in [0, 1). Received: label_smoothing={label_smoothing!r}"
        )
    if task == "multiclass":
        if not isinstance(num_classes, int) or num_classes < 2:
            raise ValueError(
                f"num_classes must be an int >= 2 for task='multiclass'. "
                f"Received: num_classes={num_classes!r}"
            )
        return math.log(num_classes)
    if task in ("binary", "multilabel"):
        return math.log(2.0)
    raise ValueError(
        f"task must be 'multiclass', 'binary' or 'multilabel'. Received: task={task!r}"
    )


def prior_loss(labels, task, num_classes, label_smoothing=0.0):
    """The loss of a model that predicts the class frequencies of `labels` for every image.

    A well-initialised model may start there instead of at chance (a bias set to the log prior);
    for balanced classes it equals `expected_initial_loss`.

    Args:
        labels: array of int labels (multiclass, binary) or `[n, classes]` 0/1 targets.
        task: str. As in `expected_initial_loss`.
        num_classes: int. Number of outputs (classes).
        label_smoothing: float. Defaults to `0.0`.

    Returns:
        float.
    """
    labels = np.asarray(labels)
    eps = 1e-7
    if task == "multiclass":
        flat = labels.reshape(-1).astype(int) if labels.ndim <= 1 or labels.shape[-1] == 1 \
            else labels.argmax(-1)
        freq = np.bincount(flat, minlength=num_classes)[:num_classes] / max(1, flat.size)
        target = (1 - label_smoothing) * freq + label_smoothing / num_classes
        return float(-(target * np.log(np.clip(freq, eps, 1.0))).sum())
    positives = labels.reshape(len(labels), -1).astype(float)
    p = positives.mean(axis=0)
    target = (1 - label_smoothing) * p + label_smoothing / 2
    q = np.clip(p, eps, 1 - eps)
    return float(np.mean(-(target * np.log(q) + (1 - target) * np.log(1 - q))))


def classify_output_loss(activation, loss_name, from_logits, task=None, label_kind=None):
    """Judges an output activation / loss pair. Pure function of names.

    Args:
        activation: str. The output layer's activation (`"softmax"`, `"sigmoid"`, `"linear"`,
            `"tanh"`, `"relu"` …).
        loss_name: str. The loss's name, e.g. `"sparse_categorical_crossentropy"`.
        from_logits: bool. The loss's `from_logits` (False for losses without it).
        task: optional str. `"multiclass"`, `"binary"`, `"multilabel"` or `"regression"`.
        label_kind: optional str. `"int"` (class indices), `"onehot"` or `"float"`.

    Returns:
        `(status, summary, advice)`.

    Example:
    >>> classify_output_loss("softmax", "sparse_categorical_crossentropy", True)[0]  # "fail"
    """
    kind = CROSS_ENTROPIES.get(loss_name)
    probabilities = activation in ("softmax", "sigmoid")
    if kind is not None:
        if activation == "softmax" and from_logits:
            return ("fail", f"softmax output fed to a from_logits=True {loss_name}",
                    ["The loss applies softmax a second time: the probabilities are squashed "
                     "towards uniform, gradients shrink and the loss stays near ln N. Use "
                     "from_logits=False (kerasrecipes' default) or a linear output layer."])
        if activation == "sigmoid" and from_logits:
            return ("fail", f"sigmoid output fed to a from_logits=True {loss_name}",
                    ["The loss applies the sigmoid a second time. Use from_logits=False, or a "
                     "linear output layer with from_logits=True."])
        if activation == "linear" and not from_logits:
            return ("fail", f"logits (linear output) fed to a from_logits=False {loss_name}",
                    ["The loss reads unbounded logits as probabilities (clipped to [1e-7, 1]): "
                     "the loss is wrong and training unstable. Pass from_logits=True or add a "
                     "softmax/sigmoid output."])
        if activation not in ("softmax", "sigmoid", "linear"):
            return ("fail", f"{activation} output with {loss_name}",
                    [f"Cross-entropy needs probabilities (softmax/sigmoid) or logits (linear); "
                     f"a {activation} output is neither."])
        if kind in ("sparse", "categorical", "soft") and activation == "sigmoid":
            return ("warn", f"sigmoid output with {loss_name}",
                    ["Sigmoid outputs do not sum to one: use softmax for single-label "
                     "multi-class, or binary_crossentropy for multi-label."])
        if kind == "binary" and activation == "softmax" and task == "multiclass":
            return ("warn", "softmax output with binary_crossentropy",
                    ["For single-label classes use (sparse_)categorical_crossentropy; for "
                     "multi-label use a sigmoid output."])
        if kind == "sparse" and label_kind == "onehot":
            return ("fail", "one-hot labels with sparse_categorical_crossentropy",
                    ["Use categorical_crossentropy for one-hot labels, or integer labels."])
        if kind == "categorical" and label_kind == "int":
            return ("fail", "integer labels with categorical_crossentropy",
                    ["Use sparse_categorical_crossentropy for integer labels, or one-hot them."])
        return ("pass", f"{activation} output + {loss_name}"
                + (" (from_logits=True)" if from_logits else ""), [])
    if loss_name in REGRESSION_LOSSES:
        if task in ("multiclass", "binary", "multilabel") or label_kind in ("int", "onehot"):
            return ("fail", f"{loss_name} on class labels ({activation} output)",
                    ["Regression losses on classes give weak, saturating gradients (MSE after a "
                     "softmax/sigmoid/tanh) and ignore that classes are unordered: use "
                     "cross-entropy with a softmax (or sigmoid) output."])
        if activation in ("tanh", "sigmoid", "softmax", "relu"):
            return ("warn", f"{activation} output with {loss_name} for regression",
                    [f"A {activation} output bounds the predictions (targets outside its range "
                     "cannot be reached, gradients vanish when it saturates): regression "
                     "usually uses a linear output on standardised targets."])
        return ("pass", f"{activation} output + {loss_name}", [])
    status = "pass" if probabilities or activation == "linear" else "warn"
    return (status, f"{activation} output + {loss_name} (not a loss this check knows)", [])


def combine(name, verdicts):
    """One `CheckResult` from per-head `(status, summary, advice, details)`: the worst wins."""
    statuses = [v[0] for v in verdicts.values()]
    decided = [s for s in statuses if s != "skip"]
    status = next((s for s in ("fail", "warn", "pass") if s in decided), "skip")
    summary = "; ".join(f"{task}: {v[1]}" for task, v in verdicts.items())
    advice = [f"{task}: {a}" for task, v in verdicts.items() for a in v[2]]
    details = {"heads": {task: dict(v[3], status=v[0]) for task, v in verdicts.items()}}
    return CheckResult(name, status, summary, advice, details)


def classify_labels(labels, units):
    """What labels are for an output of `units` units: `"int"`, `"onehot"`, `"multihot"`, `"float"`."""
    labels = np.asarray(labels)
    if labels.ndim >= 2 and labels.shape[-1] == units and units > 1:
        is_binary = np.isin(labels, (0, 1)).all()
        if is_binary and (labels.sum(-1) == 1).all():
            return "onehot"
        return "multihot" if is_binary else "float"
    if np.issubdtype(labels.dtype, np.integer) or np.all(np.mod(labels, 1) == 0):
        return "int"
    return "float"


def labels_verdict(labels, kind, units):
    """`(status, summary, advice, details)` of one multi-task head's labels."""
    labels = np.asarray(labels)
    details = {"kind": kind, "outputs": units, "label_shape": list(labels.shape[1:])}
    if kind == "regression":
        values = labels.astype("float64")
        details.update(min=float(values.min()), max=float(values.max()),
                       std=float(values.std()))
        if not np.isfinite(values).all():
            return ("fail", "non-finite regression targets",
                    ["Remove or fix the NaN/inf targets."], details)
        advice = []
        if max(abs(values.mean()), values.std()) > 10:
            advice.append(f"Targets with mean {values.mean():.3g} and std {values.std():.3g}: "
                          "this head's MSE starts near their square and drowns the other "
                          "tasks' losses. Standardise them (zero mean, unit std).")
        return ("warn" if advice else "pass",
                f"regression targets in [{values.min():.3g}, {values.max():.3g}]", advice,
                details)
    if kind == "multiclass":
        flat = labels.reshape(-1).astype(int) if labels.ndim <= 1 or labels.shape[-1] == 1 \
            else labels.argmax(-1)
        details.update(min=int(flat.min()), max=int(flat.max()))
        if flat.min() < 0 or flat.max() >= units:
            return ("fail", f"labels in [{flat.min()}, {flat.max()}] for {units} classes",
                    [f"Build the head with as many classes as the labels have (max label "
                     f"{flat.max()} needs {flat.max() + 1})."], details)
        return "pass", f"int labels for {units} classes", [], details
    values = labels.reshape(len(labels), -1).astype("float64")
    if values.shape[1] != units or values.min() < 0 or values.max() > 1:
        return ("fail", f"{kind} targets of shape {list(labels.shape[1:])} in "
                f"[{values.min():.3g}, {values.max():.3g}] for {units} sigmoid output(s)",
                [f"A {kind} head needs {units} 0/1 target(s) per image."], details)
    return "pass", f"0/1 targets for {units} sigmoid output(s)", [], details
