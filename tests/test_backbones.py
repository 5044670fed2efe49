import keras
import numpy as np
import pytest

import kerasrecipes as kr
from kerasrecipes.backbones import get_backbone, infer_layer_groups, layer_groups

REQUIRED = [
    "mobilenetv3small", "mobilenetv3large", "efficientnetv2b0", "efficientnetv2b1",
    "efficientnetv2b2", "efficientnetv2b3", "resnet50", "resnet50v2", "convnext_tiny",
    "densenet121", "xception", "efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2",
]


def test_registry_lists_the_required_backbones():
    assert set(REQUIRED) <= set(kr.list_backbones())


def test_names_are_forgiving_and_unknown_names_list_the_choices():
    assert get_backbone("EfficientNet-Lite0").name == "efficientnet_lite0"
    assert get_backbone("ResNet50V2").name == "resnet50v2"
    with pytest.raises(ValueError, match="Unknown backbone 'resnet51'.*resnet50"):
        get_backbone("resnet51")


def _check_groups(backbone, groups):
    names = list(groups)
    assert names[0] == "stem" and len(names) >= 4, names
    grouped = [layer for layers in groups.values() for layer in layers]
    weighted = [layer for layer in backbone.layers if layer.weights]
    # Every weighted layer is in exactly one group, in input -> output order.
    assert [id(layer) for layer in grouped] == [id(layer) for layer in weighted]


FAST = ["mobilenetv3small", "efficientnetv2b0", "resnet50"]


@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=[] if n in FAST else pytest.mark.slow) for n in REQUIRED]
)
def test_builds_without_weights_and_splits_into_ordered_groups(name):
    spec = get_backbone(name)
    size = 96 if name == "xception" else 64
    backbone = spec.build(size, weights=None)
    assert backbone.name == "backbone"
    assert backbone.output.shape[-1] > 0 and len(backbone.output.shape) == 4
    groups = layer_groups(backbone, spec)
    _check_groups(backbone, groups)
    # The registry entry is found again from the layer names alone (e.g. after reloading).
    inferred = infer_layer_groups(backbone)
    assert {k: [l.name for l in v] for k, v in inferred.items()} == {
        k: [l.name for l in v] for k, v in groups.items()
    }


@pytest.mark.parametrize("name, fn", [("efficientnetv2b0", "EfficientNetV2B0"),
                                      ("mobilenetv3small", "MobileNetV3Small")])
def test_our_preprocessing_equals_the_builtin_one(name, fn):
    """keras.applications' in-model preprocessing vs. ours in front of the same weights."""
    spec = get_backbone(name)
    ours = spec.build(64, weights=None)
    builtin = getattr(keras.applications, fn)(
        include_top=False, weights=None, input_shape=(64, 64, 3), include_preprocessing=True
    )
    builtin.set_weights(ours.get_weights())
    images = np.random.default_rng(0).integers(0, 256, (2, 64, 64, 3)).astype("float32")
    expected = builtin.predict(images, verbose=0)
    got = ours.predict(keras.ops.convert_to_numpy(spec.preprocessor()(images)), verbose=0)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)


def test_local_weights_file(tmp_path):
    spec = get_backbone("mobilenetv3small")
    first = spec.build(64, weights=None)
    path = tmp_path / "mine.weights.h5"
    first.save_weights(path)
    second = spec.build(64, weights=str(path))
    for a, b in zip(first.get_weights(), second.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_missing_weights_file_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="no such file"):
        get_backbone("resnet50").build(64, weights=str(tmp_path / "nope.h5"))


def test_image_size_validation():
    with pytest.raises(ValueError, match="image_size must be an int or"):
        get_backbone("resnet50").build("big", weights=None)
