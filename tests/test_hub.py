import numpy as np
import pytest

import kerasrecipes as kr

keras_hub = pytest.importorskip("keras_hub")


@pytest.fixture(scope="module")
def preset_dir(tmp_path_factory):
    """A tiny keras-hub ResNet preset saved to a local directory (no network)."""
    path = tmp_path_factory.mktemp("hub") / "tiny_resnet"
    backbone = keras_hub.models.ResNetBackbone(
        input_conv_filters=[64], input_conv_kernel_sizes=[3], stackwise_num_filters=[64, 64],
        stackwise_num_blocks=[1, 1], stackwise_num_strides=[1, 2], block_type="basic_block",
        image_shape=(None, None, 3),
    )
    converter = keras_hub.layers.ResNetImageConverter(image_size=(32, 32), scale=1 / 255.0,
                                                      offset=-0.5)
    backbone.save_to_preset(str(path))
    converter.save_to_preset(str(path))
    return str(path), backbone


def test_local_preset_builds_a_classifier_with_the_preset_weights(preset_dir):
    path, original = preset_dir
    spec = kr.get_backbone(f"hub:{path}")
    assert spec.image_size == 32
    model = kr.build_classifier(f"hub:{path}", num_classes=4)
    images = np.random.default_rng(0).integers(0, 256, (2, 32, 32, 3)).astype("uint8")
    assert model.predict(images, verbose=0).shape == (2, 4)
    loaded = model.get_layer("backbone").get_weights()
    for a, b in zip(loaded, original.get_weights()):
        np.testing.assert_array_equal(a, b)
    # The preset's own preprocessing: x * scale + offset.
    pre = model.get_layer("preprocess")(images)
    np.testing.assert_allclose(np.asarray(pre), images / 255.0 - 0.5, atol=1e-6)
    groups = kr.infer_layer_groups(model.get_layer("backbone"))
    assert len(groups) == 4


def test_fine_tune_runs_on_a_hub_backbone(preset_dir):
    import tensorflow as tf

    path, _ = preset_dir
    model = kr.build_classifier(f"hub:{path}", num_classes=2)
    x = np.random.default_rng(0).integers(0, 256, (8, 32, 32, 3)).astype("uint8")
    ds = tf.data.Dataset.from_tensor_slices((x, np.arange(8) % 2)).batch(4)
    history = kr.fine_tune(model, ds, head_epochs=1, epochs=1, verbose=0)
    assert history.epochs == 2


def test_missing_preset_directory_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        kr.get_backbone(f"hub:{tmp_path}/nothing/here")
