import keras
import numpy as np
import pytest

import kerasrecipes as kr
from kerasrecipes.models import task_of
from tiny_models import TINY

IMAGES = np.random.default_rng(0).integers(0, 256, (4, 16, 16, 3)).astype("uint8")


def _submodel_names(model):
    return [layer.name for layer in model.layers[1:]]


def test_classifier_takes_uint8_and_has_named_submodels():
    model = kr.build_classifier(TINY, num_classes=3, weights=None)
    assert model.input.dtype == "uint8"
    assert _submodel_names(model) == ["augment", "preprocess", "backbone", "head"]
    probs = keras.ops.convert_to_numpy(model(IMAGES))
    assert probs.shape == (4, 3)
    np.testing.assert_allclose(probs.sum(-1), 1.0, rtol=1e-5)
    assert task_of(model) == "multiclass"


def test_classifier_with_a_registered_keras_application():
    model = kr.build_classifier("mobilenetv3small", num_classes=5, image_size=32, weights=None)
    assert model.input_shape == (None, 32, 32, 3)
    assert model.get_layer("backbone").name == "backbone"
    assert model.predict(np.zeros((2, 32, 32, 3), "uint8"), verbose=0).shape == (2, 5)


@pytest.mark.parametrize(
    "task, num_classes, units, activation",
    [("binary", 2, 1, "sigmoid"), ("binary", 1, 1, "sigmoid"), ("multilabel", 4, 4, "sigmoid"),
     ("multiclass", 4, 4, "softmax")],
)
def test_output_matches_the_task(task, num_classes, units, activation):
    model = kr.build_classifier(TINY, num_classes=num_classes, weights=None, task=task)
    out = model.get_layer("head").get_layer("predictions")
    assert out.units == units
    assert keras.activations.serialize(out.activation) == activation
    assert task_of(model) == task


def test_augmentation_runs_only_in_training():
    model = kr.build_classifier(TINY, num_classes=3, weights=None, augment="standard")
    augment = model.get_layer("augment")
    x = IMAGES.astype("float32")
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(augment(x, training=False)), x)
    assert not np.allclose(keras.ops.convert_to_numpy(augment(x, training=True)), x)
    a = model.predict(IMAGES, verbose=0)
    np.testing.assert_array_equal(a, model.predict(IMAGES, verbose=0))


@pytest.mark.parametrize("weights, frozen", [(None, False), ("file", True)])
def test_batch_norm_is_frozen_for_pretrained_weights(tmp_path, weights, frozen):
    if weights == "file":
        weights = str(tmp_path / "tiny.weights.h5")
        TINY.build(weights=None).save_weights(weights)
    model = kr.build_classifier(TINY, num_classes=3, weights=weights)
    bn = model.get_layer("backbone").get_layer("stem_bn")
    assert bn.trainable is not frozen
    before = keras.ops.convert_to_numpy(bn.moving_mean).copy()
    model(IMAGES, training=True)
    changed = not np.array_equal(keras.ops.convert_to_numpy(bn.moving_mean), before)
    assert changed is not frozen


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"num_classes": 1}, "num_classes must be an int >= 2"),
        ({"num_classes": 3, "task": "regression"}, "task must be one of"),
        ({"num_classes": 3, "task": "binary"}, "task='binary' has 1 or 2 classes"),
        ({"num_classes": 3, "dropout": 1.5}, "dropout must be in"),
        ({"num_classes": 3, "augment": 3}, "augment must be None, a preset name"),
        ({"num_classes": 3, "augment": "heavy"}, "preset must be one of"),
    ],
)
def test_classifier_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        kr.build_classifier(TINY, weights=None, **kwargs)


def test_scratch_cnn_follows_the_design_rules():
    model = kr.build_scratch_cnn(10, image_size=32, normalization_data=IMAGES)
    backbone = model.get_layer("backbone")
    convs = [l for l in backbone.layers if isinstance(l, keras.layers.Conv2D)]
    assert [c.filters for c in convs] == [32, 32, 64, 64, 128, 128]
    assert all(c.kernel_size == (3, 3) for c in convs)
    assert sum(isinstance(l, keras.layers.BatchNormalization) for l in backbone.layers) == 6
    assert sum(isinstance(l, keras.layers.MaxPooling2D) for l in backbone.layers) == 3
    assert backbone.output.shape[1:3] == (4, 4)
    assert isinstance(model.get_layer("head").layers[0], keras.layers.GlobalAveragePooling2D)
    assert keras.initializers.serialize(convs[0].kernel_initializer)["class_name"] == "HeNormal"
    assert model.predict(np.zeros((2, 32, 32, 3), "uint8"), verbose=0).shape == (2, 10)


@pytest.mark.parametrize("activation", ["relu", "leaky_relu", "elu", "selu", "swish", "gelu"])
def test_scratch_cnn_activations_and_init(activation):
    model = kr.build_scratch_cnn(3, image_size=16, stages=2, activation=activation,
                                 downsample="stride", normalization_data=IMAGES)
    conv = model.get_layer("backbone").get_layer("stage1_conv1")
    init = keras.initializers.serialize(conv.kernel_initializer)["class_name"]
    assert init == ("LecunNormal" if activation == "selu" else "HeNormal")
    assert model.get_layer("backbone").get_layer("stage2_conv2").strides == (2, 2)
    assert np.isfinite(model.predict(IMAGES, verbose=0)).all()


def test_scratch_cnn_normalizes_with_training_statistics_and_saves_them(tmp_path):
    train = IMAGES
    model = kr.build_scratch_cnn(3, image_size=16, stages=2, normalization_data=train)
    normalize = model.get_layer("preprocess").get_layer("normalize")
    np.testing.assert_allclose(normalize.mean, train.reshape(-1, 3).mean(0), rtol=1e-6)
    model.save(tmp_path / "cnn.keras")
    restored = keras.saving.load_model(tmp_path / "cnn.keras")
    assert restored.get_layer("preprocess").get_layer("normalize").mean == normalize.mean
    np.testing.assert_allclose(restored.predict(IMAGES, verbose=0), model.predict(IMAGES, verbose=0),
                               rtol=1e-5)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"activation": "tanh"}, "activation must be one of"),
        ({"stages": 0}, "stages must be an int in"),
        ({"convs_per_stage": 5}, "convs_per_stage must be an int in"),
        ({"filters": 48}, "filters must be a power of two"),
        ({"image_size": 4}, "too small for stages=3"),
        ({"downsample": "avg"}, "downsample must be"),
        ({"kernel_initializer": "zeros"}, "kernel_initializer must be"),
        ({"dense_units": (1, 2, 3, 4)}, "dense_units must be a tuple of 0 to 3"),
    ],
)
def test_scratch_cnn_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        kr.build_scratch_cnn(3, **kwargs)


@pytest.mark.parametrize(
    "depth, params",
    [("resnet9", 6_573_120), ("resnet18", 11_173_962), (("bottleneck", (1, 1)), None)],
)
def test_resnets(depth, params):
    model = kr.build_resnet(10, depth, image_size=32, normalization_data=IMAGES)
    if params:
        # The CIFAR ResNet-18 has 11.17M parameters; ResNet-9 (DAWNBench) 6.57M.
        assert abs(model.count_params() - params) < 0.01 * params
    assert model.predict(np.zeros((2, 32, 32, 3), "uint8"), verbose=0).shape == (2, 10)
    groups = kr.infer_layer_groups(model.get_layer("backbone"))
    assert list(groups)[0] == "stem" and "stage2" in groups


def test_wide_resnet_is_wider():
    narrow = kr.build_resnet(10, ("basic", (1, 1)), filters=16, normalization_data=IMAGES)
    wide = kr.build_resnet(10, ("basic", (1, 1)), filters=16, widen_factor=4,
                           normalization_data=IMAGES)
    assert wide.count_params() > 10 * narrow.count_params()


def test_resnet_errors():
    with pytest.raises(ValueError, match="depth must be 'resnet9'"):
        kr.build_resnet(10, "resnet19")
    with pytest.raises(ValueError, match="stem must be"):
        kr.build_resnet(10, stem="huge")


def _rates(model, layer_type):
    """Rates of the `layer_type` layers in the backbone and head, in order."""
    layers = model.get_layer("backbone").layers + model.get_layer("head").layers
    return [layer.rate for layer in layers if type(layer) is layer_type]


def _dropout_is_active_only_in_training(model, submodel, inputs):
    layer = model.get_layer(submodel)
    # BatchNorm in training mode is deterministic for a given batch: two training calls can
    # differ only through dropout.
    train = [keras.ops.convert_to_numpy(layer(inputs, training=True)) for _ in range(2)]
    infer = [keras.ops.convert_to_numpy(layer(inputs, training=False)) for _ in range(2)]
    np.testing.assert_array_equal(infer[0], infer[1])
    return not np.array_equal(train[0], train[1])


def test_scratch_cnn_dropout_and_spatial_dropout():
    keras.utils.set_random_seed(0)
    model = kr.build_scratch_cnn(3, image_size=16, stages=2, dense_units=(8,), dropout=0.5,
                                 spatial_dropout=0.25, normalization_data=IMAGES)
    backbone = model.get_layer("backbone")
    assert _rates(model, keras.layers.SpatialDropout2D) == [0.25, 0.25]
    # After each stage's downsample, so whole (pooled) feature maps are dropped.
    names = [layer.name for layer in backbone.layers]
    assert names.index("stage1_dropout") == names.index("stage1_pool") + 1
    assert _rates(model, keras.layers.Dropout) == [0.5, 0.5]
    x = keras.ops.convert_to_numpy(model.get_layer("preprocess")(IMAGES))
    assert _dropout_is_active_only_in_training(model, "backbone", x)
    features = backbone(x, training=False)
    assert _dropout_is_active_only_in_training(model, "head", features)
    predictions = model.predict(IMAGES, verbose=0)
    np.testing.assert_array_equal(predictions, model.predict(IMAGES, verbose=0))

    plain = kr.build_scratch_cnn(3, image_size=16, stages=2, dense_units=(8,), dropout=0.0,
                                 normalization_data=IMAGES)
    assert _rates(plain, keras.layers.SpatialDropout2D) == _rates(plain, keras.layers.Dropout) == []
    assert not _dropout_is_active_only_in_training(plain, "backbone", x)


@pytest.mark.parametrize("depth, blocks", [("resnet9", 2), (("basic", (1, 2)), 3),
                                           (("bottleneck", (1, 1)), 2)])
def test_resnet_spatial_dropout_inside_every_residual_block(depth, blocks):
    keras.utils.set_random_seed(0)
    model = kr.build_resnet(3, depth, image_size=16, filters=4, dropout=0.2,
                            spatial_dropout=0.1, normalization_data=IMAGES)
    assert _rates(model, keras.layers.SpatialDropout2D) == [0.1] * blocks
    assert _rates(model, keras.layers.Dropout) == [0.2]
    x = keras.ops.convert_to_numpy(model.get_layer("preprocess")(IMAGES))
    assert _dropout_is_active_only_in_training(model, "backbone", x)
    predictions = model.predict(IMAGES, verbose=0)
    np.testing.assert_array_equal(predictions, model.predict(IMAGES, verbose=0))
    # Between the block's convolutions (the residual branch; the shortcut is never dropped).
    names = [layer.name for layer in model.get_layer("backbone").layers]
    prefix = "stage1_res" if depth == "resnet9" else "stage1_block1"
    if depth == "resnet9":
        before = "stage1_res1_act"
    else:
        before = f"{prefix}_1_act" if depth[0] == "basic" else f"{prefix}_2_act"
    assert names.index(f"{prefix}_dropout") == names.index(before) + 1


@pytest.mark.parametrize("builder", [kr.build_scratch_cnn, kr.build_resnet])
@pytest.mark.parametrize("kwargs, message", [
    ({"spatial_dropout": 1.0}, "spatial_dropout must be in \\[0, 1\\). Received: spatial_drop"),
    ({"spatial_dropout": -0.1}, "spatial_dropout must be in"),
    ({"dropout": "0.2"}, "dropout must be in \\[0, 1\\). Received: dropout='0.2'"),
])
def test_dropout_rates_are_validated(builder, kwargs, message):
    with pytest.raises(ValueError, match=message):
        builder(3, image_size=16, **kwargs)
