"""Freezing and layer groups: which layers train in a stage, and at what share of the LR.

- Layer groups: `infer_layer_groups` splits a built backbone into named groups (`stem`,
  `stage1`…, `top`) from its layer names and the registry's facts (`layer_groups` for one
  registry entry), so it works on a model reloaded from a `.keras` file too.
- BatchNorm: `freeze_batch_norm` makes a backbone's BatchNorm layers non-trainable (inference
  mode on their pretrained moving statistics, also after unfreezing); `trainable_batch_norm`
  remembers which ones may train.
- Stages: `unfreeze_schedule` turns `unfreeze="all" | "gradual" | N` into the groups of each
  fine-tuning step, `set_trainable_groups` freezes the backbone except those groups.
- Discriminative learning rates: `discriminative_multipliers` (geometric from the stem to the
  head, fastai's `slice`) and `group_lr_multipliers` (one multiplier per trainable variable, for
  the `lr_multipliers` of `kr.get_optimizer`).

Every change of `trainable` needs a recompile (Keras requires it): the training recipes do that.

Reference: Howard & Ruder, "Universal Language Model Fine-tuning for Text Classification" (2018);
Yosinski et al., "How transferable are features in deep neural networks?" (2014).
"""

import re

import keras

from kerasrecipes.registry import registered_backbones
from kerasrecipes.validate import close_matches
from kerasrecipes.walk import walk_layers

UNFREEZE = ("all", "gradual")


# ---------------------------------------------------------------------------------------------
# Layer groups.


def layer_groups(backbone, spec):
    """Splits a built backbone's layers into the spec's named groups, input → output.

    Args:
        backbone: keras.Model. Built by `spec.build()`.
        spec: `BackboneSpec`.

    Returns:
        dict mapping group name → list of layers (only layers that own weights), in order.
        Groups without weighted layers are left out.
    """
    patterns = [(group, re.compile(regex)) for group, regex in spec.layer_groups]
    if not patterns:
        return even_groups(backbone)
    groups = {group: [] for group, _ in patterns}
    current = patterns[0][0]
    for layer in backbone.layers:
        for group, regex in patterns:
            if regex.search(layer.name):
                current = group
                break
        if layer.weights:
            groups[current].append(layer)
    return {group: layers for group, layers in groups.items() if layers}


def even_groups(backbone, count=4):
    """Fallback for backbones without group facts: `count` contiguous groups of weighted layers."""
    weighted = [layer for layer in backbone.layers if layer.weights]
    size = max(1, -(-len(weighted) // count))
    names = ["stem"] + [f"stage{i}" for i in range(1, count)]
    return {
        names[i]: weighted[i * size:(i + 1) * size]
        for i in range(count)
        if weighted[i * size:(i + 1) * size]
    }


_GENERIC_GROUPS = ((None, r"^(stem|stage\d+|top)_"),)


def infer_layer_groups(backbone):
    """Named layer groups of a built backbone, from its layer names alone.

    Works for our own builders (`stem_…`, `stageN_…`, `top_…` layer names) and for every
    registered backbone: the registry entry whose group patterns name the most layers wins
    (so it also works on a model re-loaded from a `.keras` file). Falls back to four even,
    contiguous groups.
    """
    weighted = [layer for layer in backbone.layers if layer.weights]
    if weighted and all(re.match(_GENERIC_GROUPS[0][1], layer.name) for layer in weighted):
        groups = {}
        for layer in weighted:
            groups.setdefault(layer.name.split("_")[0], []).append(layer)
        return groups
    best, best_hits = None, 0
    for spec in registered_backbones():
        patterns = [re.compile(regex) for _, regex in spec.layer_groups]
        hits = sum(any(p.search(layer.name) for p in patterns) for layer in weighted)
        if hits > best_hits:
            best, best_hits = spec, hits
    if best is not None and best_hits >= 0.5 * len(weighted):
        return layer_groups(backbone, best)
    return even_groups(backbone)


# ---------------------------------------------------------------------------------------------
# BatchNorm.


def batch_norm_layers(model):
    """The BatchNormalization layers of a model, nested models included."""
    return [layer for layer in walk_layers(model)
            if isinstance(layer, keras.layers.BatchNormalization)]


def freeze_batch_norm(model):
    """Makes every BatchNorm layer of `model` non-trainable: inference mode, moving stats kept."""
    for layer in batch_norm_layers(model):
        layer.trainable = False


def trainable_batch_norm(model):
    """The ids of the BatchNorm layers of `model` that are trainable now (for `train_bn`)."""
    return {id(layer) for layer in batch_norm_layers(model) if layer.trainable}


# ---------------------------------------------------------------------------------------------
# Stages.


def check_unfreeze(unfreeze):
    """Raises unless `unfreeze` is `"all"`, `"gradual"` or a positive int."""
    if unfreeze in UNFREEZE or (isinstance(unfreeze, int) and not isinstance(unfreeze, bool)
                                and unfreeze >= 1):
        return
    hint = close_matches(unfreeze, UNFREEZE)
    raise ValueError(
        "unfreeze must be 'all', 'gradual' or a positive int (the top N layer groups). "
        f"Received: unfreeze={unfreeze!r}" + (f".{hint}" if hint else "")
    )


def unfreeze_schedule(groups, unfreeze):
    """The trainable groups of each fine-tuning step, from `unfreeze`.

    Args:
        groups: dict of group name → layers, input → output (`infer_layer_groups`).
        unfreeze: `"all"` (one step, every group), `"gradual"` (one more group per step, from the
            top) or an int N (one step, the top N groups).

    Returns:
        list of lists of group names.

    Example:
    >>> unfreeze_schedule({"stem": [], "stage1": [], "top": []}, "gradual")
    [['top'], ['stage1', 'top'], ['stem', 'stage1', 'top']]
    """
    check_unfreeze(unfreeze)
    names = list(groups)
    if unfreeze == "all":
        return [names]
    if unfreeze == "gradual":
        return [names[-k:] for k in range(1, len(names) + 1)]
    return [names[-min(unfreeze, len(names)):]]


def group_lr_multipliers(model, multipliers):
    """One LR multiplier per `model.trainable_variables`, from per-layer multipliers.

    Args:
        model: keras.Model.
        multipliers: dict mapping a layer (object) → float. Variables of layers not listed get 1.

    Returns:
        list of floats aligned with `model.trainable_variables`.
    """
    by_variable = {}
    for layer, multiplier in multipliers.items():
        for variable in layer.weights:
            by_variable[id(variable)] = multiplier
    return [by_variable.get(id(v), 1.0) for v in model.trainable_variables]


def discriminative_multipliers(groups, lr_mult):
    """Per-layer LR multipliers spread geometrically over the layer groups (fastai's `slice`).

    Group i of n gets `lr_mult ** ((i - n) / n)`: the first group `1 / lr_mult`, the top group
    `lr_mult ** (-1 / n)`; the head (not in `groups`) keeps 1.

    Args:
        groups: dict of group name → layers, input → output (`infer_layer_groups`).
        lr_mult: float >= 1. Ratio of the head's LR to the first group's.

    Returns:
        dict mapping layer → multiplier, for `group_lr_multipliers`.
    """
    n = len(groups)
    return {
        layer: float(lr_mult) ** ((i - n) / n)
        for i, layers in enumerate(groups.values())
        for layer in layers
    }


def set_trainable_groups(model, groups, trainable_groups, train_bn=True):
    """Freezes the backbone except `trainable_groups` (names of `groups`); the head stays trainable.

    Args:
        model: keras.Model with a `backbone` sub-model.
        groups: dict of group name → layers, from `infer_layer_groups`.
        trainable_groups: names of the groups to train.
        train_bn: bool, or a set of BatchNorm layer ids that may train. BatchNorm layers that may
            not stay frozen, i.e. in inference mode on their moving statistics. Defaults to `True`.
    """
    backbone = model.get_layer("backbone")
    backbone.trainable = bool(trainable_groups)
    for name, layers in groups.items():
        for layer in layers:
            if isinstance(layer, keras.layers.BatchNormalization) and not (
                train_bn is True or (train_bn and id(layer) in train_bn)
            ):
                layer.trainable = False
            else:
                layer.trainable = name in trainable_groups
