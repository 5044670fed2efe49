"""Layer groups, BatchNorm freezing, unfreeze schedules and LR multipliers (`kerasrecipes.freezing`)."""

import pytest

import kerasrecipes as kr
from kerasrecipes.freezing import (
    batch_norm_layers,
    discriminative_multipliers,
    freeze_batch_norm,
    group_lr_multipliers,
    infer_layer_groups,
    set_trainable_groups,
    trainable_batch_norm,
    unfreeze_schedule,
)
from tiny_models import TINY


def test_group_lr_multipliers_align_with_trainable_variables():
    model = kr.build_classifier(TINY, num_classes=3, weights=None)
    backbone = model.get_layer("backbone")
    mults = group_lr_multipliers(model, {backbone.get_layer("stem_conv"): 0.5})
    assert len(mults) == len(model.trainable_variables)
    stem_kernel = backbone.get_layer("stem_conv").kernel
    index = [id(v) for v in model.trainable_variables].index(id(stem_kernel))
    assert mults[index] == 0.5 and sum(m == 0.5 for m in mults) == 1


def test_unfreeze_schedule_all_gradual_and_top_n():
    groups = {"stem": [], "stage1": [], "stage2": [], "top": []}
    assert unfreeze_schedule(groups, "all") == [["stem", "stage1", "stage2", "top"]]
    assert unfreeze_schedule(groups, "gradual") == [
        ["top"], ["stage2", "top"], ["stage1", "stage2", "top"], ["stem", "stage1", "stage2", "top"]]
    assert unfreeze_schedule(groups, 2) == [["stage2", "top"]]
    assert unfreeze_schedule(groups, 9) == [["stem", "stage1", "stage2", "top"]]
    with pytest.raises(ValueError, match=r"unfreeze=True"):
        unfreeze_schedule(groups, True)


def test_discriminative_multipliers_are_geometric_over_the_groups():
    groups = {"stem": ["a"], "stage1": ["b"], "top": ["c", "d"]}
    multipliers = discriminative_multipliers(groups, 8.0)
    assert multipliers == pytest.approx({"a": 8.0 ** -1, "b": 8.0 ** (-2 / 3), "c": 8.0 ** (-1 / 3),
                                         "d": 8.0 ** (-1 / 3)})


def test_set_trainable_groups_keeps_frozen_batch_norm_frozen():
    model = kr.build_classifier(TINY, num_classes=3, weights=None)
    backbone = model.get_layer("backbone")
    groups = infer_layer_groups(backbone)
    assert list(groups) == ["stem", "stage1", "stage2", "top"]
    freeze_batch_norm(backbone)
    assert all(not layer.trainable for layer in batch_norm_layers(model))
    allowed = trainable_batch_norm(backbone)
    assert allowed == set()
    set_trainable_groups(model, groups, ["top"], train_bn=allowed)
    assert backbone.get_layer("top_conv").trainable and not backbone.get_layer("stem_conv").trainable
    assert not backbone.get_layer("top_bn").trainable
    set_trainable_groups(model, groups, list(groups), train_bn=True)
    assert all(layer.trainable for layer in batch_norm_layers(backbone))
    set_trainable_groups(model, groups, [])
    assert not backbone.trainable and model.get_layer("head").trainable
