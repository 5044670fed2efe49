"""Multi-task learning with hard parameter sharing: one backbone, one head per task.

Reference: Caruana, "Multitask Learning" (1997); Ruder, "An Overview of Multi-Task Learning in
Deep Neural Networks" (2017).
"""

import keras

from kerasrecipes.models import augment_model, backbone_features, check_rate
from kerasrecipes.optimizers import get_optimizer
from kerasrecipes.tasks import (  # noqa: F401  (re-exported: kerasrecipes.multitask.X)
    is_multitask,
    multitask_compile_args,
    task_kinds,
    task_loss_weights,
)

KINDS = ("multiclass", "binary", "multilabel", "regression")


def _head_spec(task, spec):
    """(kind, units) of one task's head from the `heads` entry."""
    if isinstance(spec, bool):
        spec = None
    if isinstance(spec, int):
        if spec < 2:
            raise ValueError(
                f"heads[{task!r}] must be >= 2 classes (use {{'kind': 'binary'}} for one sigmoid "
                f"unit or 'regression'). Received: {spec!r}"
            )
        return "multiclass", spec
    if spec == "regression":
        return "regression", 1
    if spec == "binary":
        return "binary", 1
    if isinstance(spec, dict) and spec.get("kind") in KINDS:
        kind = spec["kind"]
        units = spec.get("units", 1)
        if not isinstance(units, int) or units < 1 or (kind == "multiclass" and units < 2):
            raise ValueError(f"heads[{task!r}]['units'] must be a positive int. Received: {spec!r}")
        if kind in ("binary", "multilabel"):
            # As `task_kinds` reads it back from the layer: sigmoid units, one or several.
            kind = "binary" if units == 1 else "multilabel"
        return kind, units
    raise ValueError(
        f"heads[{task!r}] must be a number of classes (int >= 2), 'regression', 'binary' or "
        f"{{'kind': one of {KINDS}, 'units': int}}. Received: {spec!r}"
    )


def build_multitask(backbone, heads, image_size=None, weights="imagenet", augment=None,
                    dropout=0.2, loss_weights=None, freeze_bn=None, name="multitask"):
    """Builds one shared backbone with one output head per task.

    Same structure as `kr.build_classifier` (sub-models `augment` → `preprocess` → `backbone` →
    `head`), but `head` has one output per task, named after it, so the model returns a dict and
    trains on `(images, {task: labels})` batches. `kr.fine_tune`/`kr.fit` pick each task's loss
    (sparse cross-entropy, binary cross-entropy or mean squared error) and its metric
    (accuracy / MAE), weighted by `loss_weights`.

    Args:
        backbone: str or `BackboneSpec`, as in `kr.build_classifier`.
        heads: dict task name → number of classes (softmax), `"binary"` (1 sigmoid unit),
            `"regression"` (1 linear unit) or `{"kind": "multiclass"|"binary"|"multilabel"|
            "regression", "units": int}`.
        image_size: optional int or (height, width). Defaults to the backbone's.
        weights: as in `kr.build_classifier`. Defaults to `"imagenet"`.
        augment: as in `kr.build_classifier`. Defaults to `None`.
        dropout: float. Dropout before each task's output layer. Defaults to `0.2`.
        loss_weights: optional dict task name → float. Defaults to 1 for every task.
        freeze_bn: as in `kr.build_classifier`.
        name: str. Defaults to `"multitask"`.

    Returns:
        keras.Model with a dict output, compiled (AdamW, each task's loss and metric, the loss
        weights) so that `model.fit` works as it is; `kr.multitask.task_kinds(model)` and
        `task_loss_weights(model)` read the per-task kind and weight back from the model (its
        output layers and compile config), also after a `.keras` reload.

    Example:
    >>> model = build_multitask("mobilenetv3small", {"label": 10, "sleeve": 3, "price": "regression"},
    ...                         image_size=64, weights=None)
    """
    if not isinstance(heads, dict) or not heads:
        raise ValueError(f"heads must be a non-empty dict task → spec. Received: heads={heads!r}")
    kinds = {task: _head_spec(task, spec) for task, spec in heads.items()}
    loss_weights = dict(loss_weights or {})
    unknown = set(loss_weights) - set(heads)
    if unknown:
        raise ValueError(f"loss_weights names unknown tasks {sorted(unknown)}; tasks are {list(heads)}.")
    for task, w in loss_weights.items():
        if not isinstance(w, (int, float)) or w < 0:
            raise ValueError(f"loss_weights[{task!r}] must be a float >= 0. Received: {w!r}")
    check_rate("dropout", dropout)
    spec, size, features = backbone_features(backbone, image_size, weights, freeze_bn)

    feature_input = keras.Input(features.output.shape[1:], name="features")
    pooled = feature_input
    if len(feature_input.shape) == 4:
        pooled = keras.layers.GlobalAveragePooling2D(name="avg_pool")(pooled)
    outputs = {}
    for task, (kind, units) in kinds.items():
        x = keras.layers.Dropout(dropout, name=f"{task}_dropout")(pooled) if dropout else pooled
        activation = {"multiclass": "softmax", "regression": None}.get(kind, "sigmoid")
        outputs[task] = keras.layers.Dense(
            units, activation=activation, dtype="float32", name=task,
            kernel_initializer=keras.initializers.RandomNormal(stddev=0.01),
        )(x)
    head = keras.Model(feature_input, outputs, name="head")

    inputs = keras.Input((*size, 3), dtype="uint8", name="image")
    x = augment_model(augment)(inputs)
    x = keras.Sequential([spec.preprocessor()], name="preprocess")(x)
    model = keras.Model(inputs, head(features(x)), name=name)
    # The loss weights live in the compile config, which a `.keras` save keeps (an attribute set
    # on the model would not survive it); the kinds are read from the output layers.
    compile_args = multitask_compile_args(model)
    compile_args["loss_weights"] = {task: float(loss_weights.get(task, 1.0)) for task in heads}
    model.compile(optimizer=get_optimizer("adamw", 1e-3), **compile_args)
    return model
