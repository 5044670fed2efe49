"""Tests for kerasrecipes.walk: every layer of nested models, once, in order."""

import keras

import kerasrecipes as kr
from kerasrecipes.walk import walk_layers


def test_walk_visits_nested_models_depth_first():
    inner = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, name="d1"),
                              keras.layers.Dense(2, name="d2")], name="inner")
    inputs = keras.Input((3,))
    model = keras.Model(inputs, keras.layers.Dense(1, name="out")(inner(inputs)), name="outer")
    names = [layer.name for layer in walk_layers(model)]
    assert names == [model.layers[0].name, "inner", "d1", "d2", "out"]
    assert [layer.name for layer in walk_layers(model, include_self=True)][:2] == [
        "outer", model.layers[0].name]
    assert list(walk_layers(keras.layers.Dense(1))) == []


def test_walk_reaches_the_batch_norm_layers_of_a_classifier_backbone():
    model = kr.build_scratch_cnn(3, image_size=16, stages=2, dense_units=())
    found = [layer for layer in walk_layers(model)
             if isinstance(layer, keras.layers.BatchNormalization)]
    assert len(found) == 4  # 2 stages x 2 convs, inside the `backbone` sub-model
    assert [id(layer) for layer in found] == [id(layer) for layer in
                                              kr.models.batch_norm_layers(model)]
