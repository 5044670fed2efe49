"""What a model's task is, and the losses and metrics that go with it.

The one place that reads a model's task: `task_of` gives `"multiclass"` (softmax output),
`"binary"` (one sigmoid unit), `"multilabel"` (several sigmoid units) or `"multitask"` (a dict of
outputs, `kr.build_multitask`, whatever its number of tasks); `task_kinds` gives the kind of each
task of a multi-task model and `task_loss_weights` their loss weights, both read from the model
itself (its layers, its compile config), so they hold after a `.keras` reload. The default
losses and metrics of the training recipes, and the loss helpers the checks and the monitor
share, follow from it.
"""

import dataclasses

import keras

from kerasrecipes.regularize import Accuracy, CrossEntropy


def output_layer(model):
    """The layer that produces the model's output (the head's "predictions" when there is one)."""
    try:
        return model.get_layer("head").get_layer("predictions")
    except (ValueError, AttributeError):
        pass
    layer = model
    while hasattr(layer, "layers") and layer.layers:
        layer = layer.layers[-1]
    return layer


def output_activation(model):
    """The name of the model's output activation (`"softmax"`, `"sigmoid"`, `"linear"` …)."""
    return activation_name(output_layer(model))


def activation_name(layer):
    """The name of a layer's activation (`"softmax"` for a `Softmax` layer, `"linear"` for none)."""
    if isinstance(layer, keras.layers.Softmax):
        return "softmax"
    activation = getattr(layer, "activation", None)
    if activation is None:
        return "linear"
    name = keras.activations.serialize(activation)
    if isinstance(name, dict):
        name = name.get("config", name.get("class_name", "unknown"))
    return str(name)


def is_multitask(model):
    """True for a model with a dict of outputs (`kr.build_multitask`), one task or several."""
    return isinstance(getattr(model, "output", None), dict)


def task_of(model):
    """`"multitask"` for a dict of outputs, else `"multiclass"`, `"binary"` or `"multilabel"`.

    Read from the output layer (the `head`'s `"predictions"` layer, or the model's last layer):
    softmax is multi-class, otherwise one unit is binary and several are multi-label.

    Example:
    >>> model = kr.build_scratch_cnn(3, image_size=32, task="multilabel")
    >>> task_of(model)
    'multilabel'
    """
    if is_multitask(model):
        return "multitask"
    if output_activation(model) == "softmax":
        return "multiclass"
    return "binary" if int(model.output_shape[-1]) == 1 else "multilabel"


def task_kinds(model):
    """Task name → kind of a multi-task model, read from its output layers' activations.

    softmax → `"multiclass"`, sigmoid → `"binary"` (one unit) or `"multilabel"`, anything else
    → `"regression"`. Read from the layers, so it holds for a model reloaded from a `.keras` file.
    """
    head = model.get_layer("head")
    found = {}
    for task in model.output:
        layer = head.get_layer(task)
        activation = activation_name(layer)
        if activation == "softmax":
            found[task] = "multiclass"
        elif activation == "sigmoid":
            found[task] = "binary" if layer.units == 1 else "multilabel"
        else:
            found[task] = "regression"
    return found


def task_loss_weights(model):
    """Task name → loss weight of a multi-task model: its compiled `loss_weights`, else 1.

    `kr.build_multitask` compiles the model with its `loss_weights`, the training recipes compile
    with these again, and a `.keras` save keeps them in the compile config: they survive a
    reload (a model loaded with `compile=False`, or compiled without `loss_weights`, weighs every
    task 1).
    """
    config = model.get_compile_config() if getattr(model, "compiled", False) else None
    weights = (config or {}).get("loss_weights")
    weights = weights if isinstance(weights, dict) else {}
    return {task: float(weights.get(task, 1.0)) for task in model.output}


def default_loss(task):
    """The loss that matches the output activation of `build_classifier`'s `task`."""
    _check_single_task(task)
    if task == "multiclass":
        return keras.losses.SparseCategoricalCrossentropy()
    return keras.losses.BinaryCrossentropy()


def default_metrics(task):
    """The accuracy metric that matches `build_classifier`'s `task`."""
    _check_single_task(task)
    if task == "multiclass":
        return [keras.metrics.SparseCategoricalAccuracy(name="accuracy")]
    return [keras.metrics.BinaryAccuracy(name="accuracy")]


def _check_single_task(task):
    if task == "multitask":
        raise ValueError(
            "A multi-task model has one loss and metric per task: use "
            "multitask_compile_args(model). Received: task='multitask'"
        )


def multitask_compile_args(model, label_smoothing=0.0):
    """`loss`, `metrics` and `loss_weights` for `model.compile`, one entry per task."""
    losses, metrics = {}, {}
    for task, kind in task_kinds(model).items():
        if kind == "multiclass":
            losses[task] = CrossEntropy(label_smoothing=label_smoothing)
            metrics[task] = [Accuracy(name="accuracy")]
        elif kind == "regression":
            losses[task] = keras.losses.MeanSquaredError()
            metrics[task] = [keras.metrics.MeanAbsoluteError(name="mae")]
        else:
            losses[task] = keras.losses.BinaryCrossentropy(label_smoothing=label_smoothing)
            metrics[task] = [keras.metrics.BinaryAccuracy(name="accuracy")]
    return {"loss": losses, "metrics": metrics, "loss_weights": task_loss_weights(model)}


@dataclasses.dataclass
class TaskHead:
    """One output of a multi-task model: its task name, kind, units, activation and loss."""

    task: str
    kind: str
    units: int
    activation: str
    loss: object


def task_heads(model, loss=None):
    """The `TaskHead`s of a multi-task model, with the given, compiled or default losses."""
    try:
        kinds = task_kinds(model)
        layers = {task: model.get_layer("head").get_layer(task) for task in kinds}
    except (ValueError, AttributeError):
        raise ValueError(
            "The checks support multi-output models built by kr.build_multitask (a 'head' "
            "sub-model with one output layer named after each task). Received a model named "
            f"{model.name!r} with outputs {sorted(model.output)}."
        ) from None
    if loss is None:
        loss = getattr(model, "loss", None) or multitask_compile_args(model)["loss"]
    if not isinstance(loss, dict) or set(loss) != set(kinds):
        raise ValueError(
            f"A multi-task model needs one loss per task, a dict with the keys "
            f"{sorted(kinds)}. Received: loss={loss!r}"
        )
    return [TaskHead(task, kind, int(layers[task].units), activation_name(layers[task]),
                  loss[task]) for task, kind in kinds.items()]


def loss_info(loss):
    """`(name, from_logits, label_smoothing)` of a loss object, function or string."""
    if isinstance(loss, str):
        loss = keras.losses.get(loss)
    if isinstance(loss, keras.losses.Loss):
        config = loss.get_config()
        name = config.get("name") or type(loss).__name__
        return (name, bool(config.get("from_logits", False)),
                float(config.get("label_smoothing", 0.0) or 0.0))
    name = getattr(loss, "__name__", type(loss).__name__)
    aliases = {"mse": "mean_squared_error", "mae": "mean_absolute_error"}
    return aliases.get(name, name), False, 0.0


def model_loss(model, loss=None):
    """The loss to check: the given one, the compiled one, or the kerasrecipes default.

    A dict task → loss for a multi-task model.
    """
    if is_multitask(model):
        return {head.task: head.loss for head in task_heads(model, loss)}
    if loss is not None:
        return loss
    compiled = getattr(model, "loss", None)
    if compiled is not None:
        return compiled
    return default_loss(task_of(model))


def loss_fn(loss, weights=None):
    """A callable `(y_true, y_pred) -> mean loss` from a loss object, function or string.

    A dict task → loss gives the weighted sum over the tasks of dict labels and predictions
    (`weights`: dict task → float, 1 where missing).
    """
    if isinstance(loss, dict):
        fns = {task: loss_fn(value) for task, value in loss.items()}
        weights = weights or {}

        def total(y_true, y_pred):
            return sum(weights.get(task, 1.0) * fn(y_true[task], y_pred[task])
                       for task, fn in fns.items())

        return total
    if isinstance(loss, str):
        loss = keras.losses.get(loss)
    if isinstance(loss, keras.losses.Loss):
        return loss

    def mean_loss(y_true, y_pred):
        return keras.ops.mean(loss(y_true, y_pred))

    return mean_loss
