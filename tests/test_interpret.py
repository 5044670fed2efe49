import os

import keras
import numpy as np
import pytest

import kerasrecipes as kr
from kerasrecipes.interpret import (
    confusion_matrix,
    filter_grid,
    first_conv_layer,
    grad_cam,
    most_confused,
    plot_confusion_matrix,
    plot_filters,
    plot_grad_cam,
    top_losses,
)
from kerasrecipes.layers import NormalizeImage
from kerasrecipes.models import _assemble
from tiny_models import TINY, tiny_arrays, tiny_batches

PNG = b"\x89PNG\r\n\x1a\n"


def _png(path):
    return open(path, "rb").read(8) == PNG


def _tiny_model():
    return kr.build_classifier(TINY, num_classes=3, weights=None, dropout=0.0)


def _channel_model(size=16):
    """backbone = identity 1×1 conv, head = avg-pool + Dense: logit c = mean of channel c."""
    inputs = keras.Input((size, size, 3))
    conv = keras.layers.Conv2D(3, 1, use_bias=False, name="identity_conv")
    features = keras.Model(inputs, conv(inputs), name="backbone")
    conv.kernel.assign(np.eye(3, dtype="float32")[None, None])
    dense = keras.layers.Dense(3, activation="softmax", name="predictions")
    head = keras.Sequential([keras.layers.GlobalAveragePooling2D(), dense], name="head")
    head.build((None, size, size, 3))
    dense.kernel.assign(np.eye(3, dtype="float32"))
    dense.bias.assign(np.zeros(3, "float32"))
    normalize = NormalizeImage(scale=1 / 255, mean=0.0, std=1.0)
    return _assemble((size, size), None, normalize, features, head, "channels")


def test_filter_grid_scales_each_filter_to_0_1_and_tiles_them():
    kernel = np.random.default_rng(0).normal(size=(3, 3, 3, 5)) * np.arange(1, 6)
    grid = filter_grid(kernel, columns=3, pad=1)
    assert grid.shape == (2 * 4 - 1, 3 * 4 - 1, 3)
    first = grid[:3, :3]
    assert first.min() == pytest.approx(0.0) and first.max() == pytest.approx(1.0)
    np.testing.assert_allclose(
        first, (kernel[..., 0] - kernel[..., 0].min()) / np.ptp(kernel[..., 0]))
    assert np.all(grid[3, :] == 1.0)  # white padding row
    grey = filter_grid(np.ones((3, 3, 8, 2)) * np.arange(9).reshape(3, 3, 1, 1))
    assert np.array_equal(grey[..., 0], grey[..., 2])
    with pytest.raises(ValueError, match="shape"):
        filter_grid(np.zeros((3, 3, 3)))


def test_plot_filters_finds_the_first_conv_of_the_backbone(tmp_path):
    model = _tiny_model()
    assert first_conv_layer(model).name == "stem_conv"
    assert _png(plot_filters(model, str(tmp_path / "f.png")))
    assert _png(plot_filters(model, str(tmp_path / "g.png"), layer="stage1_conv"))
    with pytest.raises(ValueError, match="nope"):
        plot_filters(model, str(tmp_path / "h.png"), layer="nope")


def test_confusion_matrix_and_most_confused():
    labels = [0, 0, 0, 1, 1, 2, 2, 2]
    predicted = [0, 1, 1, 1, 2, 2, 0, 1]
    matrix = confusion_matrix(labels, predicted, 3)
    np.testing.assert_array_equal(matrix, [[1, 2, 0], [0, 1, 1], [1, 1, 1]])
    probabilities = np.eye(3)[predicted]
    np.testing.assert_array_equal(confusion_matrix(labels, probabilities), matrix)
    assert most_confused(matrix, ["a", "b", "c"], top=2) == [("a", "b", 2), ("b", "c", 1)]
    assert most_confused(matrix, top=10, min_count=2) == [("0", "1", 2)]
    with pytest.raises(ValueError, match="same length"):
        confusion_matrix([0, 1], [0])
    with pytest.raises(ValueError, match="num_classes=2"):
        confusion_matrix([0, 2], [0, 1], num_classes=2)


def test_plot_confusion_matrix_writes_a_png(tmp_path):
    path = plot_confusion_matrix([[3, 1], [0, 4]], str(tmp_path / "cm.png"), ["x", "y"],
                                 normalize=True)
    assert _png(path)


def test_top_losses_are_the_highest_cross_entropies_worst_first(tmp_path):
    model = _tiny_model()
    data = tiny_batches(n=20, batch_size=8)
    result = top_losses(model, data, k=5)
    images, labels = tiny_arrays(n=20)
    probabilities = keras.ops.convert_to_numpy(model(images, training=False))
    losses = -np.log(probabilities[np.arange(len(labels)), labels])
    order = np.argsort(-losses, kind="stable")[:5]
    np.testing.assert_array_equal(result.indices, order)
    np.testing.assert_allclose(result.losses, losses[order], rtol=1e-5)
    np.testing.assert_array_equal(result.images, images[order])
    np.testing.assert_array_equal(result.labels, labels[order])
    assert _png(result.plot(str(tmp_path / "top.png"), ["r", "g", "b"]))
    with pytest.raises(ValueError, match="k=0"):
        top_losses(model, data, k=0)


def test_grad_cam_points_at_the_evidence_for_the_class():
    model = _channel_model()
    image = np.zeros((16, 16, 3), "uint8")
    image[2:6, 9:14, 0] = 255  # red patch: evidence for class 0, top right
    image[10:15, 1:5, 1] = 120  # green patch: evidence for class 1, bottom left
    heatmaps, classes = grad_cam(model, image)
    assert classes.tolist() == [0]
    heat = heatmaps[0]
    assert heat.shape == (16, 16) and heat.max() == pytest.approx(1.0)
    assert heat[2:6, 9:14].mean() > 0.9 and heat[10:15, 1:5].max() < 0.05
    green, _ = grad_cam(model, image, class_index=1)
    assert green[0][10:15, 1:5].mean() > 0.9 and green[0][2:6, 9:14].max() < 0.05
    with pytest.raises(ValueError, match="class_index"):
        grad_cam(model, image, class_index=7)


def test_grad_cam_through_a_built_classifier(tmp_path):
    model = _tiny_model()
    images = tiny_arrays()[0][:3]
    heatmaps, classes = grad_cam(model, images)
    assert heatmaps.shape == (3, 16, 16)
    assert heatmaps.min() >= 0 and heatmaps.max() <= 1
    predicted = keras.ops.convert_to_numpy(model(images, training=False)).argmax(-1)
    np.testing.assert_array_equal(classes, predicted)
    assert _png(plot_grad_cam(model, images[0], str(tmp_path / "cam.png"), ["r", "g", "b"]))
    with pytest.raises(ValueError, match="sub-models"):
        inputs = keras.Input((4, 4, 3))
        grad_cam(keras.Model(inputs, keras.layers.Conv2D(2, 1)(inputs)), np.zeros((4, 4, 3)))


def test_interpret_writes_every_figure(tmp_path):
    out = str(tmp_path / "out")
    summary = kr.interpret(_tiny_model(), tiny_batches(n=12), out, ["r", "g", "b"], top=4,
                           grad_cams=2)
    assert summary["confusion_matrix"].sum() == 12
    names = sorted(os.listdir(out))
    assert names == ["confusion_matrix.png", "filters.png", "grad_cam_0.png", "grad_cam_1.png",
                     "top_losses.png"]
    assert all(_png(p) for p in summary["figures"])
    index = {"r": 0, "g": 1, "b": 2}
    for actual, predicted, count in summary["most_confused"]:
        assert actual != predicted
        assert summary["confusion_matrix"][index[actual], index[predicted]] == count


def test_grad_cam_explains_one_output_only():
    model = kr.build_multitask(TINY, {"label": 3, "level": "regression"}, weights=None)
    with pytest.raises(ValueError, match="multi-task"):
        grad_cam(model, tiny_arrays(n=1)[0])
