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

Reference: Karpathy, "A Recipe for Training Neural Networks" (2019); CS231n, "Babysitting the
learning process".
"""

import dataclasses
import math
import os
import time

import keras
import numpy as np

from kerasrecipes.batches import take_batches
from kerasrecipes.plotting import pyplot
from kerasrecipes.tasks import (
    default_metrics,
    is_multitask,
    loss_fn,
    loss_info,
    model_loss,
    multitask_compile_args,
    output_activation,
    task_heads,
    task_of,
)
from kerasrecipes.walk import walk_layers

STATUSES = ("pass", "warn", "fail", "skip")
_CROSS_ENTROPIES = {
    "sparse_categorical_crossentropy": "sparse",
    "categorical_crossentropy": "categorical",
    "binary_crossentropy": "binary",
    "binary_focal_crossentropy": "binary",
    "categorical_focal_crossentropy": "categorical",
    "cross_entropy": "soft",  # kr.CrossEntropy: integer, one-hot or soft labels.
}
_REGRESSION_LOSSES = ("mean_squared_error", "mean_absolute_error", "huber", "log_cosh",
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
    kind = _CROSS_ENTROPIES.get(loss_name)
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
    if loss_name in _REGRESSION_LOSSES:
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


# ---------------------------------------------------------------------------------------------
# Model and data helpers.


def _task_labels(labels, heads):
    """Checks that multi-task labels are a dict with one entry per head; returns it."""
    tasks = sorted(h.task for h in heads)
    if not isinstance(labels, dict) or sorted(labels) != tasks:
        shown = sorted(labels) if isinstance(labels, dict) else type(labels).__name__
        raise ValueError(
            f"A multi-task model trains on (images, {{task: labels}}) batches with the tasks "
            f"{tasks}. Received labels: {shown}"
        )
    return labels


def _combine(name, verdicts):
    """One `CheckResult` from per-head `(status, summary, advice, details)`: the worst wins."""
    statuses = [v[0] for v in verdicts.values()]
    decided = [s for s in statuses if s != "skip"]
    status = next((s for s in ("fail", "warn", "pass") if s in decided), "skip")
    summary = "; ".join(f"{task}: {v[1]}" for task, v in verdicts.items())
    advice = [f"{task}: {a}" for task, v in verdicts.items() for a in v[2]]
    details = {"heads": {task: dict(v[3], status=v[0]) for task, v in verdicts.items()}}
    return CheckResult(name, status, summary, advice, details)


def _label_kind(labels, units):
    labels = np.asarray(labels)
    if labels.ndim >= 2 and labels.shape[-1] == units and units > 1:
        is_binary = np.isin(labels, (0, 1)).all()
        if is_binary and (labels.sum(-1) == 1).all():
            return "onehot"
        return "multihot" if is_binary else "float"
    if np.issubdtype(labels.dtype, np.integer) or np.all(np.mod(labels, 1) == 0):
        return "int"
    return "float"


def _predict(model, images, batch_size):
    outputs = [model(images[i:i + batch_size], training=False)
               for i in range(0, len(images), batch_size)]
    if isinstance(outputs[0], dict):
        return {task: np.concatenate([keras.ops.convert_to_numpy(o[task]) for o in outputs])
                .astype("float64") for task in outputs[0]}
    return np.concatenate([keras.ops.convert_to_numpy(o) for o in outputs]).astype("float64")


# ---------------------------------------------------------------------------------------------
# Checks.


def check_inputs(model, data, batches=2):
    """Checks that the images are in the range the model expects and the backbone receives.

    kerasrecipes models take uint8 0–255 pixels and normalise them in their `preprocess`
    sub-model. This flags 0–1 floats (the model would see an almost black image), already
    normalised images (normalised twice), constant images, and a `preprocess` output far from the
    backbone's range.

    Args:
        model: keras.Model taking images.
        data: dataset of `(images, labels)` batches (or an `(images, labels)` tuple).
        batches: int. Batches to inspect. Defaults to `2`.

    Returns:
        `CheckResult`.

    Example:
    >>> check_inputs(model, data.train).status  # "pass"
    """
    images, _, _ = take_batches(data, batches)
    details = {
        "dtype": str(images.dtype), "min": float(images.min()), "max": float(images.max()),
        "mean": float(images.mean()), "std": float(images.std()),
        "model_input_dtype": str(getattr(model.inputs[0], "dtype", "unknown")),
    }
    advice = []
    status = "pass"
    expects_uint8 = "uint8" in details["model_input_dtype"]
    if images.dtype != np.uint8:
        if images.min() >= 0 and images.max() <= 1.0 + 1e-6:
            status = "fail"
            advice.append(
                "The images are floats in [0, 1] but the model expects 0–255 pixels: it would "
                "see an almost black image. Feed the uint8 pixels (kr.image_folder_datasets "
                "does) or multiply by 255."
            )
        elif images.min() < 0:
            status = "fail"
            advice.append(
                "The images have negative values: they look normalised already, and the model "
                "normalises again in its `preprocess` sub-model. Feed the raw 0–255 pixels."
            )
        elif images.max() > 255.5:
            status = "fail"
            advice.append("Pixel values above 255: the images are not 8-bit RGB.")
        elif expects_uint8:
            status = "warn"
            advice.append(f"The images are {images.dtype} 0–255; the model takes uint8 (cast "
                          "them to avoid a float→uint8 cast inside the model).")
    if status == "pass" and details["std"] < 2.0:
        status = "warn"
        advice.append("The images are almost constant (pixel std < 2): check the decoding.")
    try:
        preprocess = model.get_layer("preprocess")
    except ValueError:
        preprocess = None
    if preprocess is not None and status != "fail":
        sample = images[: min(len(images), 32)]
        x = keras.ops.convert_to_numpy(preprocess(sample, training=False)).astype("float64")
        bounds = keras.ops.convert_to_numpy(preprocess(
            np.stack([np.zeros(images.shape[1:], "uint8"),
                      np.full(images.shape[1:], 255, "uint8")]).astype(images.dtype),
            training=False,
        )).astype("float64")
        details.update(preprocessed_min=float(x.min()), preprocessed_max=float(x.max()),
                       preprocessed_mean=float(x.mean()), preprocessed_std=float(x.std()),
                       backbone_range=[float(bounds.min()), float(bounds.max())])
        if not np.isfinite(x).all():
            status = "fail"
            advice.append("The preprocessing produces NaN/inf (an unadapted normalisation "
                          "layer, or std 0).")
        elif abs(details["preprocessed_mean"]) > 3 or details["preprocessed_std"] > 10:
            status = "warn" if status == "pass" else status
            advice.append(
                f"After preprocessing the pixels have mean {details['preprocessed_mean']:.2f} "
                f"and std {details['preprocessed_std']:.2f}: far from the ~0-centred range "
                "backbones are trained on. Check the backbone's preprocessing."
            )
    if status == "pass":
        summary = (f"{details['dtype']} pixels in [{details['min']:.0f}, {details['max']:.0f}], "
                   f"mean {details['mean']:.1f}")
        if "preprocessed_mean" in details:
            summary += (f"; backbone input mean {details['preprocessed_mean']:.2f}, "
                        f"std {details['preprocessed_std']:.2f}")
    else:
        summary = (f"{details['dtype']} pixels in [{details['min']:.3g}, {details['max']:.3g}] "
                   f"(the model takes {details['model_input_dtype']} 0–255)")
    return CheckResult("inputs", status, summary, advice, details)


def check_labels(model, data, num_classes=None, batches=4):
    """Checks that the labels fit the model's output layer.

    Args:
        model: keras.Model.
        data: dataset of `(images, labels)` batches (or an `(images, labels)` tuple).
        num_classes: optional int. The dataset's number of classes (e.g.
            `len(data.class_names)`), compared with the model's outputs (not used for a
            multi-task model, whose `{task: labels}` are checked head by head). Defaults to
            `None`.
        batches: int. Batches to inspect. Defaults to `4`.

    Returns:
        `CheckResult`.

    Example:
    >>> check_labels(model, data.train, num_classes=len(data.class_names)).status
    """
    _, labels, _ = take_batches(data, batches)
    if is_multitask(model):
        heads = task_heads(model)
        labels = _task_labels(labels, heads)
        return _combine("labels", {h.task: _labels_verdict(labels[h.task], h.kind, h.units)
                                   for h in heads})
    units = int(model.output_shape[-1])
    task = task_of(model)
    kind = _label_kind(labels, units)
    details = {"outputs": units, "task": task, "label_kind": kind,
               "label_shape": list(labels.shape[1:])}
    advice = []
    status = "pass"
    if task == "multiclass":
        classes = units
    else:
        classes = 2 if task == "binary" else units
    if kind == "int":
        flat = labels.reshape(-1).astype(int)
        details.update(min=int(flat.min()), max=int(flat.max()),
                       distinct=int(len(np.unique(flat))))
        if flat.min() < 0 or flat.max() >= classes:
            status = "fail"
            advice.append(
                f"Labels range over [{flat.min()}, {flat.max()}] but the model has {units} "
                f"output(s) ({task}): build it with num_classes = the dataset's class count."
            )
    if num_classes is not None:
        details["dataset_classes"] = int(num_classes)
        if task == "multiclass" and num_classes != units:
            status = "fail"
            advice.append(f"The dataset has {num_classes} classes but the model has {units} "
                          "outputs: build it with num_classes=len(data.class_names).")
    summary = (f"{kind} labels for {units} {task} output(s)" if status == "pass"
               else "labels do not fit the output layer")
    return CheckResult("labels", status, summary, advice, details)


def _labels_verdict(labels, kind, units):
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


def check_output_loss(model, data=None, loss=None):
    """Checks that the output activation and the loss are a consistent pair.

    A multi-task model (`kr.build_multitask`) is checked head by head (its loss is a dict task →
    loss; the default is each head's `kr.fit` loss).

    Args:
        model: keras.Model (compiled or not).
        data: optional dataset, to tell integer from one-hot labels. Defaults to `None`.
        loss: optional loss object, function or name. Defaults to the compiled loss, else the
            kerasrecipes default for the model's task.

    Returns:
        `CheckResult`.

    Example:
    >>> model.compile(loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    >>> check_output_loss(model).status  # "fail": softmax output + from_logits=True
    """
    if is_multitask(model):
        heads = task_heads(model, loss)
        labels = None
        if data is not None:
            labels = _task_labels(take_batches(data, 1)[1], heads)
        verdicts = {}
        for head in heads:
            name, from_logits, smoothing = loss_info(head.loss)
            label_kind = None if labels is None else _label_kind(labels[head.task], head.units)
            if head.kind == "regression" and label_kind == "int":
                label_kind = "float"  # integer-valued targets of a regression head
            status, summary, advice = classify_output_loss(head.activation, name, from_logits,
                                                           head.kind, label_kind)
            verdicts[head.task] = (status, summary, advice, {
                "activation": head.activation, "loss": name, "from_logits": from_logits,
                "label_smoothing": smoothing, "label_kind": label_kind})
        return _combine("output_loss", verdicts)
    loss = model_loss(model, loss)
    activation = output_activation(model)
    name, from_logits, smoothing = loss_info(loss)
    label_kind = None
    if data is not None:
        _, labels, _ = take_batches(data, 1)
        label_kind = _label_kind(labels, int(model.output_shape[-1]))
    task = task_of(model) if activation in ("softmax", "sigmoid") else None
    status, summary, advice = classify_output_loss(activation, name, from_logits, task,
                                                   label_kind)
    details = {"activation": activation, "loss": name, "from_logits": from_logits,
               "label_smoothing": smoothing, "label_kind": label_kind}
    return CheckResult("output_loss", status, summary, advice, details)


def check_weights(model, huge=10.0):
    """Checks the initial weights: constant (e.g. all-zero) kernels, non-finite or huge values.

    Units whose kernels are all equal compute the same thing and receive the same gradient, so
    they never differentiate; a kernel whose std is `huge` × the He-normal std makes activations
    and the initial loss explode.

    Args:
        model: keras.Model.
        huge: float. Flag kernels with std above `huge * sqrt(2 / fan_in)`. Defaults to `10.0`.

    Returns:
        `CheckResult`.

    Example:
    >>> check_weights(kr.build_classifier(..., weights=None)).status  # "pass"
    """
    constant, non_finite, exploding = [], [], []
    count = 0
    seen = set()
    for layer in walk_layers(model):
        for variable in layer.weights:
            if id(variable) in seen or len(variable.shape) >= 2:
                continue
            seen.add(id(variable))
            if not np.isfinite(keras.ops.convert_to_numpy(variable)).all():
                non_finite.append(variable.path)
        kernel = getattr(layer, "kernel", None) if not hasattr(layer, "layers") else None
        if kernel is None or len(kernel.shape) < 2 or id(kernel) in seen:
            continue
        seen.add(id(kernel))
        count += 1
        path = kernel.path
        value = keras.ops.convert_to_numpy(kernel).astype("float64")
        if not np.isfinite(value).all():
            non_finite.append(path)
            continue
        if value.size > 1 and value.std() == 0.0:
            constant.append(f"{path} (all {value.flat[0]:g})")
            continue
        if isinstance(layer, keras.layers.DepthwiseConv2D):
            fan_in = int(np.prod(value.shape[:-2]))  # each channel sees only its own kh × kw.
        else:
            fan_in = int(np.prod(value.shape[:-1]))
        he_std = math.sqrt(2.0 / max(1, fan_in))
        if value.std() > huge * he_std:
            exploding.append(f"{path} (std {value.std():.3g}, He std {he_std:.3g})")
    advice = []
    if non_finite:
        advice.append("Non-finite weights in: " + ", ".join(non_finite[:5]))
    if constant:
        advice.append(
            "Constant kernels (e.g. all-zero init): every unit computes the same value and gets "
            "the same gradient, so they never differentiate. Use he_normal (ReLU) / "
            "glorot_uniform. Layers: " + ", ".join(constant[:5])
            + (f" and {len(constant) - 5} more" if len(constant) > 5 else "")
        )
    if exploding:
        advice.append(
            f"Kernels with std > {huge:g}× the He-normal std: activations and the initial loss "
            "explode. Use he_normal / glorot_uniform. Layers: " + ", ".join(exploding[:5])
        )
    details = {"kernels": count, "constant": constant, "non_finite": non_finite,
               "huge": exploding}
    if non_finite or constant or exploding:
        summary = (f"{len(constant)} constant, {len(exploding)} huge, {len(non_finite)} "
                   f"non-finite of {count} kernels")
        return CheckResult("weights", "fail", summary, advice, details)
    return CheckResult("weights", "pass", f"{count} kernels initialised with spread", [],
                       details)


def check_initial_loss(model, data, loss=None, batches=3, tolerance=0.15):
    """Compares the loss before training with its chance value.

    An untrained classifier should predict uniform probabilities: softmax cross-entropy starts at
    `ln N` (2.303 for 10 classes), sigmoid binary cross-entropy at `ln 2`. A higher loss means
    large initial logits (bad init, huge weights), the wrong activation for the loss, or
    regularisation terms dominating; a much lower one that the model was already trained (or the
    labels leak into the images). A multi-task model (`kr.build_multitask`) is checked head by
    head against each head's own chance value; regression heads have none (their loss is
    reported with the loss of predicting 0 and of predicting the mean).

    Args:
        model: keras.Model.
        data: dataset of `(images, labels)` batches (or an `(images, labels)` tuple); labels
            are a dict task → labels for a multi-task model.
        loss: optional loss (a dict task → loss for a multi-task model). Defaults to the
            compiled loss, else the default for the task.
        batches: int. Batches to average over. Defaults to `3`.
        tolerance: float. Relative deviation from the chance (or class-prior) value that still
            passes. Defaults to `0.15`.

    Returns:
        `CheckResult` with `details["loss"]`, `details["expected"]`, `details["prior"]`; for a
        multi-task model `details["heads"]` holds those per task.

    Example:
    >>> model = kr.build_classifier("efficientnet_lite0", num_classes=10)
    >>> check_initial_loss(model, data.train).details["expected"]  # 2.3026

    Reference: Karpathy, "A Recipe for Training Neural Networks" (2019), "verify loss @ init".
    """
    if not 0 < tolerance < 1:
        raise ValueError(f"tolerance must be in (0, 1). Received: tolerance={tolerance!r}")
    images, labels, batch_size = take_batches(data, batches)
    regularization = float(sum(float(keras.ops.convert_to_numpy(v)) for v in model.losses))
    if is_multitask(model):
        heads = task_heads(model, loss)
        labels = _task_labels(labels, heads)
        predictions = _predict(model, images, batch_size)
        verdicts = {head.task: _initial_loss_verdict(
            head.loss, labels[head.task], predictions[head.task], batch_size, head.kind,
            head.units, head.activation, tolerance) for head in heads}
        weights = getattr(model, "task_loss_weights", None) or {}
        measured = sum(weights.get(task, 1.0) * v[3]["loss"] for task, v in verdicts.items())
        result = _combine("initial_loss", verdicts)
        result.details.update(loss=measured, regularization=regularization,
                              images=int(len(images)))
        result.summary += f" (weighted total {measured:.4f})"
    else:
        loss = model_loss(model, loss)
        task = task_of(model)
        predictions = _predict(model, images, batch_size)
        status, summary, advice, details = _initial_loss_verdict(
            loss, labels, predictions, batch_size, task, int(model.output_shape[-1]),
            output_activation(model), tolerance)
        measured = details["loss"]
        details.update(regularization=regularization, images=int(len(images)))
        result = CheckResult("initial_loss", status, summary, advice, details)
    if regularization > 0.1 * max(measured, 1e-6) and result.status != "skip":
        if result.status == "pass":
            result.status = "warn"
        result.advice.append(
            f"Regularisation adds {regularization:.4f} to the loss ({measured + regularization:.4f}"
            " in total): for the checks and the first tuning runs turn weight penalties off, "
            "then add them back."
        )
    return result


def _initial_loss_verdict(loss, labels, predictions, batch_size, task, units, activation,
                          tolerance):
    """`(status, summary, advice, details)` of one output's loss before training."""
    name, from_logits, smoothing = loss_info(loss)
    fn = loss_fn(loss)
    values = [float(keras.ops.convert_to_numpy(fn(labels[i:i + batch_size],
                                                  predictions[i:i + batch_size])))
              for i in range(0, len(labels), batch_size)]
    measured = float(np.mean(values))
    num_classes = units if task == "multiclass" else max(2, units)
    details = {"loss": measured, "loss_name": name, "task": task}
    if task != "regression":
        details["num_classes"] = num_classes
    if task == "regression" or name not in _CROSS_ENTROPIES:
        targets = np.asarray(labels, dtype="float64")
        if task == "regression" and targets.size:
            details.update(zero_prediction=float(np.mean(targets ** 2)),
                           mean_prediction=float(np.var(targets)))
            return ("skip", f"{name} {measured:.4f}: no chance value for regression (predicting"
                    f" 0 would give {details['zero_prediction']:.4f}, the mean "
                    f"{details['mean_prediction']:.4f})", [], details)
        return ("skip", f"no chance value known for {name} (measured {measured:.4f})", [],
                details)
    expected = expected_initial_loss(task, num_classes, smoothing)
    label_kind = _label_kind(labels, units)
    try:
        prior = prior_loss(labels if label_kind != "onehot" else labels.argmax(-1), task,
                           units if task != "binary" else 1, smoothing) \
            if label_kind in ("int", "onehot", "multihot") else None
    except (ValueError, IndexError):
        prior = None
    details.update(expected=expected, prior=prior)
    reference = f"chance {expected:.4f}" + (f", class prior {prior:.4f}" if prior else "")
    summary = f"initial loss {measured:.4f} vs {reference}"

    def close(value, target):
        return target is not None and abs(value - target) <= tolerance * target + 1e-6

    advice = []
    if not np.isfinite(measured):
        status = "fail"
        advice.append("The loss is NaN/inf before any training step: check the inputs and the "
                      "weights (non-finite values, huge init).")
    elif close(measured, expected) or close(measured, prior):
        status = "pass"
    elif measured > expected:
        status = "fail"
        if from_logits and activation in ("softmax", "sigmoid"):
            advice.append("The output is already a probability but the loss expects logits.")
        advice.append(
            f"The loss starts {measured / expected:.1f}× above chance: the initial logits are "
            "large. Likely causes: bad initialisation (huge weights; initialise the last layer "
            "small so predictions start uniform), the wrong output activation for the loss "
            "(e.g. logits fed to a from_logits=False loss), or unnormalised inputs."
        )
    else:
        status = "warn"
        advice.append(
            "The loss starts below chance: the model already predicts the labels (trained "
            "weights reused?) or the labels leak into the images."
        )
    return status, summary, advice, details


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
    from kerasrecipes.optimizers import get_optimizer

    images, labels, batch_size = take_batches(data, batches)
    n_batches = math.ceil(len(images) / batch_size)

    def fresh(loss):  # a new loss object: the copy must not share state with the model's.
        return loss.__class__.from_config(loss.get_config()) \
            if isinstance(loss, keras.losses.Loss) else loss

    copy = _strip_regularization(model)
    if is_multitask(model):
        heads = task_heads(model, loss)
        labels = _task_labels(labels, heads)
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
            predictions = _predict(copy, images, batch_size)
            inference_accuracy = _accuracy(labels, predictions, task)
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


def _accuracy(labels, predictions, task):
    if isinstance(task, dict):  # multi-task: the worst head (R² for regression heads)
        scores = []
        for name, kind in task.items():
            if kind == "regression":
                truth = np.asarray(labels[name], "float64").reshape(predictions[name].shape)
                mse = float(np.mean((predictions[name] - truth) ** 2))
                scores.append(1.0 - mse / max(float(np.var(truth)), 1e-12))
            else:
                scores.append(_accuracy(labels[name], predictions[name], kind))
        return min(scores)
    if task == "multiclass":
        truth = labels.argmax(-1) if labels.ndim == 2 and labels.shape[-1] > 1 else \
            labels.reshape(-1)
        return float(np.mean(predictions.argmax(-1) == truth))
    return float(np.mean((predictions > 0.5) == (labels.reshape(predictions.shape) > 0.5)))


def check_history(history, figure=None):
    """Checks the curves of a finished (or running) training for the babysitting patterns.

    Overfitting (validation loss rising), a train/validation gap, a learning rate too high
    (loss rising or NaN, fast fall then plateau), a plateau, noisy validation curves: the
    patterns of `kr.diagnose_history`, each with what to do next.

    Args:
        history: `TrainingHistory`, Keras `History`, or dict of metric → per-epoch values.
        figure: optional str. Write the curves (`kr.plot_history`) to this PNG.

    Returns:
        `CheckResult` named `"training_curves"`: `"fail"` for a diverged or rising loss,
        `"warn"` for the other patterns, `"pass"` when none is found; `details["patterns"]`
        lists the names.

    Example:
    >>> check_history(kr.fine_tune(model, data.train, data.validation)).status
    """
    from kerasrecipes.monitor import CURVE_PATTERNS, diagnose_history

    patterns = [(p, m) for p, m in diagnose_history(history) if p != "healthy"]
    statuses = [CURVE_PATTERNS[p][0] for p, _ in patterns]
    status = "fail" if "fail" in statuses else "warn" if statuses else "pass"
    record = getattr(history, "history", history)
    details = {"epochs": len(record.get("loss", [])), "patterns": [p for p, _ in patterns]}
    summary = ("; ".join(f"{CURVE_PATTERNS[p][1]}: {m}" for p, m in patterns) if patterns
               else "no problem pattern: training and validation losses fall together")
    advice = [f"{p}: {CURVE_PATTERNS[p][2][0]}" for p, _ in patterns]
    figures = []
    if figure is not None:
        from kerasrecipes.train import plot_history

        figures.append(plot_history(history, figure, patterns=patterns))
    return CheckResult("training_curves", status, summary, advice, details, figures)


# ---------------------------------------------------------------------------------------------
# The report.


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
           lr_finder_steps=60, history=None, verbose=1):
    """Runs every sanity check (plus a short LR range test) and writes a Markdown report.

    Args:
        model: keras.Model, e.g. from `kr.build_classifier`. Not modified (the overfitting test
            and the LR range test train copies, or restore the weights).
        train: dataset of `(uint8 images, labels)` batches.
        validation: optional dataset; its first batches are checked for range and labels too.
            Defaults to `None`.
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

    Returns:
        `DoctorReport`.

    Example:
    >>> data = kr.datasets.load_demo(image_size=128)
    >>> model = kr.build_classifier("efficientnet_lite0", 10, image_size=128)
    >>> report = kr.doctor(model, data.train, data.validation, class_names=data.class_names)
    >>> report.ok, report.path
    """
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
    inputs.figures.append(_plot_inputs(model, train, os.path.join(out_dir, "inputs.png")))
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
            overfit.figures.append(_plot_overfit(overfit, os.path.join(out_dir, "overfit.png")))
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
        f.write(_markdown(checks, model, suggestion, out_dir))
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


_NEXT_STEPS = {
    "inputs": "Feed uint8 0–255 pixels; the model normalises them itself.",
    "labels": "Build the model with num_classes=len(data.class_names).",
    "output_loss": "Pair softmax/sigmoid outputs with from_logits=False cross-entropy.",
    "weights": "Re-initialise with he_normal / glorot_uniform (not zeros, not huge).",
    "initial_loss": "Fix the initialisation / activation until the loss starts at chance.",
    "overfit_small_batch": "Do not train on the full data until the model can memorise a few "
                           "batches.",
    "lr_range_test": "Pick the learning rate from the range test plot.",
    "training_curves": "Lower the learning rate (see the curves below) before training longer.",
}


def _markdown(checks, model, suggestion, out_dir):
    icon = {"pass": "PASS", "warn": "WARN", "fail": "FAIL", "skip": "SKIP"}
    failed = [c for c in checks if c.status == "fail"]
    if is_multitask(model):
        outputs = "outputs " + ", ".join(f"{h.task} ({h.units}, {h.activation})"
                                         for h in task_heads(model))
    else:
        outputs = f"output {tuple(model.output_shape[1:])} ({output_activation(model)})"
    lines = [
        f"# kerasrecipes doctor: `{model.name}`",
        "",
        f"Model: {model.count_params():,} parameters, input {tuple(model.input_shape[1:])}, "
        f"{outputs}.",
        "",
        "**Verdict: " + ("all checks passed.**" if not failed else
                         f"{len(failed)} check(s) failed: "
                         + ", ".join(c.name for c in failed) + ".**"),
        "",
        "| check | verdict | result |",
        "| --- | --- | --- |",
    ]
    for check in checks:
        lines.append(f"| {check.name} | {icon[check.status]} | "
                     f"{check.summary.replace('|', '/')} |")
    lines += ["", "## What to do next", ""]
    if failed:
        for check in failed:
            base = check.name.split(" ")[0]
            lines.append(f"- **{check.name}**: {_NEXT_STEPS.get(base, 'see below')}")
    else:
        lines.append("- Train: start from the learning rate suggested below"
                     + (f" (**{suggestion:.2g}**)" if suggestion else "")
                     + ", watch train vs. validation curves: `history.report(dir)` (and "
                     "`kerasrecipes finetune`, in its output folder) writes them with the "
                     "patterns they show; `doctor(..., history=history)` checks them here.")
    for check in checks:
        lines += ["", f"## {check.name}: {icon[check.status]}", "", check.summary, ""]
        lines += [f"- {a}" for a in check.advice]
        shown = {k: v for k, v in check.details.items()
                 if k not in ("losses", "accuracies") and not isinstance(v, (list, dict))
                 or (isinstance(v, list) and len(v) <= 8)}
        if shown:
            lines += ["", "| measure | value |", "| --- | --- |"]
            for key, value in shown.items():
                lines.append(f"| {key} | {_cell(value)} |")
        if isinstance(check.details.get("heads"), dict):  # multi-task: one row per head
            lines += ["", "| head | verdict | measures |", "| --- | --- | --- |"]
            for task, measures in check.details["heads"].items():
                text = ", ".join(f"{k} {_cell(v)}" for k, v in measures.items()
                                 if k != "status" and v is not None)
                lines.append(f"| {task} | {icon[measures.get('status', 'skip')]} | {text} |")
        for figure in check.figures:
            lines += ["", f"![{check.name}]({os.path.relpath(figure, out_dir)})"]
    return "\n".join(lines) + "\n"


def _cell(value):
    return f"{value:.4g}" if isinstance(value, float) else str(value).replace("|", "/")


def _plot_overfit(result, path):
    plt = pyplot()
    details = result.details
    steps = np.arange(1, len(details["losses"]) + 1) * details["batches"]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(steps, details["losses"], "-o", markersize=3, label="loss")
    ax.set_xlabel("step")
    ax.set_ylabel("training loss")
    ax.set_yscale("log")
    acc_axis = ax.twinx()
    acc_axis.plot(steps, details["accuracies"], color="tab:orange", label="accuracy")
    acc_axis.set_ylabel("training accuracy")
    acc_axis.set_ylim(0, 1.05)
    ax.set_title(f"overfit {details['images']} images: {result.status}")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _plot_inputs(model, data, path):
    """Pixel histogram of one batch, before and after the model's `preprocess`."""
    plt = pyplot()
    images, _, _ = take_batches(data, 1)
    fig, axes = plt.subplots(1, 2, figsize=(9, 3))
    axes[0].hist(images.reshape(-1).astype("float64"), bins=64, color="grey")
    axes[0].set_title(f"input pixels ({images.dtype})")
    try:
        x = keras.ops.convert_to_numpy(model.get_layer("preprocess")(images, training=False))
        axes[1].hist(np.asarray(x, "float64").reshape(-1), bins=64, color="tab:blue")
        axes[1].set_title("after `preprocess` (backbone input)")
    except ValueError:
        axes[1].set_visible(False)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
