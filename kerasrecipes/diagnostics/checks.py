"""The sanity checks that look at a model and a few batches (no training): inputs, labels,
output/loss pair, initial weights, initial loss; and the check of a finished run's curves.
"""

import math

import keras
import numpy as np

from kerasrecipes.batches import take_batches
from kerasrecipes.curves import CURVE_PATTERNS, diagnose_history
from kerasrecipes.diagnostics.verdicts import (
    CROSS_ENTROPIES,
    CheckResult,
    classify_labels,
    classify_output_loss,
    combine,
    expected_initial_loss,
    labels_verdict,
    prior_loss,
)
from kerasrecipes.history import plot_history
from kerasrecipes.tasks import (
    is_multitask,
    loss_fn,
    loss_info,
    model_loss,
    output_activation,
    task_heads,
    task_loss_weights,
    task_of,
)
from kerasrecipes.walk import walk_layers


def task_labels(labels, heads):
    """Checks that multi-task labels are a dict with one entry per head; returns it."""
    tasks = sorted(h.task for h in heads)
    if not isinstance(labels, dict) or sorted(labels) != tasks:
        shown = sorted(labels) if isinstance(labels, dict) else type(labels).__name__
        raise ValueError(
            f"A multi-task model trains on (images, {{task: labels}}) batches with the tasks "
            f"{tasks}. Received labels: {shown}"
        )
    return labels


def predict_batches(model, images, batch_size):
    outputs = [model(images[i:i + batch_size], training=False)
               for i in range(0, len(images), batch_size)]
    if isinstance(outputs[0], dict):
        return {task: np.concatenate([keras.ops.convert_to_numpy(o[task]) for o in outputs])
                .astype("float64") for task in outputs[0]}
    return np.concatenate([keras.ops.convert_to_numpy(o) for o in outputs]).astype("float64")


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
        labels = task_labels(labels, heads)
        return combine("labels", {h.task: labels_verdict(labels[h.task], h.kind, h.units)
                                   for h in heads})
    units = int(model.output_shape[-1])
    task = task_of(model)
    kind = classify_labels(labels, units)
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
            labels = task_labels(take_batches(data, 1)[1], heads)
        verdicts = {}
        for head in heads:
            name, from_logits, smoothing = loss_info(head.loss)
            label_kind = None if labels is None else classify_labels(labels[head.task], head.units)
            if head.kind == "regression" and label_kind == "int":
                label_kind = "float"  # integer-valued targets of a regression head
            status, summary, advice = classify_output_loss(head.activation, name, from_logits,
                                                           head.kind, label_kind)
            verdicts[head.task] = (status, summary, advice, {
                "activation": head.activation, "loss": name, "from_logits": from_logits,
                "label_smoothing": smoothing, "label_kind": label_kind})
        return combine("output_loss", verdicts)
    loss = model_loss(model, loss)
    activation = output_activation(model)
    name, from_logits, smoothing = loss_info(loss)
    label_kind = None
    if data is not None:
        _, labels, _ = take_batches(data, 1)
        label_kind = classify_labels(labels, int(model.output_shape[-1]))
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
        labels = task_labels(labels, heads)
        predictions = predict_batches(model, images, batch_size)
        verdicts = {head.task: _initial_loss_verdict(
            head.loss, labels[head.task], predictions[head.task], batch_size, head.kind,
            head.units, head.activation, tolerance) for head in heads}
        weights = task_loss_weights(model)
        measured = sum(weights.get(task, 1.0) * v[3]["loss"] for task, v in verdicts.items())
        result = combine("initial_loss", verdicts)
        result.details.update(loss=measured, regularization=regularization,
                              images=int(len(images)))
        result.summary += f" (weighted total {measured:.4f})"
    else:
        loss = model_loss(model, loss)
        task = task_of(model)
        predictions = predict_batches(model, images, batch_size)
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
    if task == "regression" or name not in CROSS_ENTROPIES:
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
    label_kind = classify_labels(labels, units)
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
        figures.append(plot_history(history, figure, patterns=patterns))
    return CheckResult("training_curves", status, summary, advice, details, figures)
