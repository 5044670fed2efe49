"""Looking inside a trained classifier: first-layer filters, confusion matrix, the most confused
classes, the top losses, and Grad-CAM heat maps.

Every plot function writes a PNG and returns its path (matplotlib is imported lazily, nothing
opens a window). The numbers behind each plot come from pure functions that tests check
directly (`filter_grid`, `confusion_matrix`, `most_confused`, `grad_cam`).
"""

import dataclasses
import heapq
import math

import keras
import numpy as np

from kerasrecipes.gradients import value_and_gradients
from kerasrecipes.plotting import pyplot
from kerasrecipes.walk import walk_layers


def first_conv_layer(model):
    """The first convolution of a model (inside its `backbone` when it has one).

    Args:
        model: keras.Model.

    Returns:
        The first `Conv2D` (or `DepthwiseConv2D`) layer met in the layer order.
    """
    try:
        root = model.get_layer("backbone")
    except ValueError:
        root = model
    for layer in walk_layers(root, include_self=True):
        if isinstance(layer, (keras.layers.Conv2D, keras.layers.DepthwiseConv2D)):
            return layer
    raise ValueError(f"The model {model.name!r} has no Conv2D layer to show the filters of.")


def filter_grid(kernel, columns=None, pad=1):
    """Tiles the filters of a conv kernel `[kh, kw, in, out]` into one image.

    Each filter is min–max scaled to [0, 1] on its own (so weak filters stay visible). Kernels
    with 3 input channels become RGB tiles, others show their first input channel in grey.

    Args:
        kernel: array `[kh, kw, in_channels, filters]`.
        columns: optional int. Tiles per row. Defaults to `ceil(sqrt(filters))`.
        pad: int. Pixels between tiles (left at 1.0, white). Defaults to `1`.

    Returns:
        float array `[rows * (kh + pad) - pad, columns * (kw + pad) - pad, 3]` in [0, 1].

    Example:
    >>> filter_grid(np.random.randn(3, 3, 3, 16)).shape  # (15, 15, 3)
    """
    kernel = np.asarray(kernel, dtype="float64")
    if kernel.ndim != 4:
        raise ValueError(f"kernel must have shape [kh, kw, in, out]. Received: shape={kernel.shape}")
    kh, kw, channels, count = kernel.shape
    tiles = kernel if channels == 3 else np.repeat(kernel[:, :, :1], 3, axis=2)
    columns = columns or int(math.ceil(math.sqrt(count)))
    rows = int(math.ceil(count / columns))
    grid = np.ones((rows * (kh + pad) - pad, columns * (kw + pad) - pad, 3))
    for i in range(count):
        tile = tiles[..., i]
        low, high = tile.min(), tile.max()
        tile = (tile - low) / (high - low) if high > low else np.full_like(tile, 0.5)
        r, c = divmod(i, columns)
        grid[r * (kh + pad):r * (kh + pad) + kh, c * (kw + pad):c * (kw + pad) + kw] = tile
    return grid


def plot_filters(model, path="filters.png", layer=None, max_filters=64):
    """Writes the first conv layer's filters as a PNG grid and returns the path.

    Pretrained first layers show oriented edges and colour blobs; noise-like filters after
    training mean too little training or a too-high learning rate.

    Args:
        model: keras.Model.
        path: str. Output PNG. Defaults to `"filters.png"`.
        layer: optional layer or layer name (searched in the model and its `backbone`).
            Defaults to `first_conv_layer(model)`.
        max_filters: int. Show at most this many filters. Defaults to `64`.

    Example:
    >>> kr.plot_filters(kr.build_classifier("efficientnet_lite0", 10), "filters.png")
    """
    if layer is None:
        layer = first_conv_layer(model)
    elif isinstance(layer, str):
        name = layer
        layer = next((l for l in walk_layers(model, include_self=True) if l.name == name), None)
        if layer is None:
            raise ValueError(f"No layer named {name!r} in the model. Received: layer={name!r}")
    kernel = keras.ops.convert_to_numpy(layer.kernel)
    if isinstance(layer, keras.layers.DepthwiseConv2D):
        kernel = np.transpose(kernel, (0, 1, 3, 2))[:, :, :1]  # one tile per channel.
    grid = filter_grid(kernel[..., :max_filters])
    plt = pyplot()
    size = max(3.0, min(10.0, grid.shape[1] / 6))
    fig, ax = plt.subplots(figsize=(size, size * grid.shape[0] / grid.shape[1] + 0.4))
    ax.imshow(grid, interpolation="nearest")
    ax.set_axis_off()
    ax.set_title(f"{layer.name}: {min(kernel.shape[-1], max_filters)} filters "
                 f"{kernel.shape[0]}×{kernel.shape[1]}")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


# ---------------------------------------------------------------------------------------------
# Confusion matrix and most-confused pairs.


def predict_dataset(model, data):
    """Predictions and labels of a whole dataset of `(images, labels)` batches.

    Returns:
        `(probabilities [n, classes], labels [n])` as numpy arrays.
    """
    probabilities, labels = [], []
    for batch in data:
        images, y = batch[0], batch[1]
        probabilities.append(keras.ops.convert_to_numpy(model(images, training=False)))
        labels.append(keras.ops.convert_to_numpy(y))
    if not labels:
        raise ValueError("data is empty: it yields no batches.")
    return np.concatenate(probabilities), np.concatenate(labels)


def _as_classes(values, num_classes=None):
    values = np.asarray(values)
    if values.ndim == 2 and values.shape[1] > 1:
        return values.argmax(axis=1)
    if values.ndim == 2:
        values = values[:, 0]
    if np.issubdtype(values.dtype, np.floating) and not np.all(np.mod(values, 1) == 0):
        return (values > 0.5).astype(int)  # one sigmoid output.
    return values.astype(int)


def confusion_matrix(labels, predictions, num_classes=None):
    """Counts of (true class, predicted class) pairs.

    Args:
        labels: int labels `[n]` (or one-hot `[n, classes]`).
        predictions: predicted class indices `[n]`, or probabilities `[n, classes]`.
        num_classes: optional int. Defaults to the largest class seen + 1.

    Returns:
        int array `[num_classes, num_classes]`, rows = true class, columns = predicted class.

    Example:
    >>> confusion_matrix([0, 1, 1], [0, 0, 1])  # [[1, 0], [1, 1]]
    """
    truth = _as_classes(labels)
    predicted = _as_classes(predictions)
    if truth.shape != predicted.shape:
        raise ValueError(f"labels and predictions must have the same length. Received: "
                         f"{truth.shape[0]} labels and {predicted.shape[0]} predictions")
    n = num_classes or int(max(truth.max(initial=0), predicted.max(initial=0)) + 1)
    if truth.size and (truth.max() >= n or predicted.max() >= n or min(truth.min(),
                                                                         predicted.min()) < 0):
        raise ValueError(f"Class indices must be in [0, {n}). Received: num_classes={n}")
    matrix = np.zeros((n, n), dtype=int)
    np.add.at(matrix, (truth, predicted), 1)
    return matrix


def most_confused(matrix, class_names=None, top=5, min_count=1):
    """The off-diagonal cells of a confusion matrix with the most images, largest first.

    Args:
        matrix: confusion matrix (rows = true class).
        class_names: optional list of str. Defaults to the indices as strings.
        top: int. Pairs to return. Defaults to `5`.
        min_count: int. Leave out pairs with fewer images. Defaults to `1`.

    Returns:
        list of `(true class, predicted class, count)`.

    Example:
    >>> most_confused([[5, 2], [0, 3]], ["cat", "dog"])  # [("cat", "dog", 2)]
    """
    matrix = np.asarray(matrix)
    names = list(class_names) if class_names is not None else [str(i) for i in
                                                               range(len(matrix))]
    if len(names) != len(matrix):
        raise ValueError(f"class_names has {len(names)} names for a {len(matrix)}-class matrix.")
    pairs = [(int(matrix[i, j]), i, j) for i in range(len(matrix)) for j in range(len(matrix))
             if i != j and matrix[i, j] >= min_count]
    pairs.sort(key=lambda p: (-p[0], p[1], p[2]))
    return [(names[i], names[j], count) for count, i, j in pairs[:top]]


def plot_confusion_matrix(matrix, path="confusion_matrix.png", class_names=None,
                          normalize=False):
    """Writes a confusion matrix as a PNG heat map with the counts written in; returns the path.

    Args:
        matrix: confusion matrix (rows = true class).
        path: str. Defaults to `"confusion_matrix.png"`.
        class_names: optional list of str.
        normalize: bool. Show each row as fractions of that class. Defaults to `False`.
    """
    matrix = np.asarray(matrix)
    values = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1) if normalize else matrix
    names = list(class_names) if class_names is not None else [str(i) for i in
                                                               range(len(matrix))]
    plt = pyplot()
    size = max(4.0, 0.55 * len(matrix) + 2)
    fig, ax = plt.subplots(figsize=(size + 1, size))
    image = ax.imshow(values, cmap="Blues")
    fig.colorbar(image, ax=ax, fraction=0.046)
    ax.set_xticks(range(len(names)), names, rotation=45, ha="right")
    ax.set_yticks(range(len(names)), names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("actual")
    threshold = values.max() / 2 if values.size else 0
    for i in range(len(matrix)):
        for j in range(len(matrix)):
            text = f"{values[i, j]:.2f}" if normalize else str(matrix[i, j])
            ax.text(j, i, text, ha="center", va="center", fontsize=8,
                    color="white" if values[i, j] > threshold else "black")
    accuracy = np.trace(matrix) / max(1, matrix.sum())
    ax.set_title(f"confusion matrix (accuracy {accuracy:.1%}, n={matrix.sum()})")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


# ---------------------------------------------------------------------------------------------
# Top losses.


@dataclasses.dataclass
class TopLosses:
    """The images a model gets most wrong, worst first.

    Attributes:
        images: uint8 array `[k, H, W, 3]`.
        labels: int array `[k]`.
        predictions: probability array `[k, classes]`.
        losses: float array `[k]`: the cross-entropy of each image.
        indices: int array `[k]`: positions in the dataset.
    """

    images: np.ndarray
    labels: np.ndarray
    predictions: np.ndarray
    losses: np.ndarray
    indices: np.ndarray

    def plot(self, path="top_losses.png", class_names=None):
        """Writes the grid of `plot_top_losses`; returns the path."""
        return plot_top_losses(self, path, class_names)


def _per_image_loss(labels, probabilities):
    eps = 1e-7
    probabilities = np.asarray(probabilities, dtype="float64")
    labels = np.asarray(labels)
    if probabilities.ndim == 2 and probabilities.shape[1] > 1:
        truth = _as_classes(labels)
        return -np.log(np.clip(probabilities[np.arange(len(truth)), truth], eps, 1.0))
    p = np.clip(probabilities.reshape(len(labels), -1), eps, 1 - eps)
    y = labels.reshape(len(labels), -1).astype("float64")
    return -(y * np.log(p) + (1 - y) * np.log(1 - p)).mean(axis=1)


def top_losses(model, data, k=9):
    """Finds the `k` images with the highest loss in a dataset, streaming (keeps only `k`).

    Args:
        model: keras.Model.
        data: dataset of `(images, labels)` batches.
        k: int. Defaults to `9`.

    Returns:
        `TopLosses`.

    Example:
    >>> kr.top_losses(model, data.validation, k=9).plot("top_losses.png", data.class_names)
    """
    if not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be a positive int. Received: k={k!r}")
    heap = []  # (loss, index, image, label, prediction): the k largest so far.
    index = 0
    for batch in data:
        images = keras.ops.convert_to_numpy(batch[0])
        labels = keras.ops.convert_to_numpy(batch[1])
        probabilities = keras.ops.convert_to_numpy(model(images, training=False))
        losses = _per_image_loss(labels, probabilities)
        for i, loss in enumerate(losses):
            item = (float(loss), index + i, images[i], labels[i], probabilities[i])
            if len(heap) < k:
                heapq.heappush(heap, item)
            elif item[0] > heap[0][0]:
                heapq.heapreplace(heap, item)
        index += len(images)
    if not heap:
        raise ValueError("data is empty: it yields no batches.")
    worst = sorted(heap, key=lambda item: (-item[0], item[1]))
    return TopLosses(
        images=np.stack([item[2] for item in worst]),
        labels=np.stack([item[3] for item in worst]),
        predictions=np.stack([item[4] for item in worst]),
        losses=np.array([item[0] for item in worst]),
        indices=np.array([item[1] for item in worst]),
    )


def plot_top_losses(result, path="top_losses.png", class_names=None):
    """Grid of the top-loss images titled "predicted / actual / loss / probability of actual"."""
    plt = pyplot()
    k = len(result.losses)
    columns = min(k, 3 if k <= 9 else 4)
    rows = int(math.ceil(k / columns))
    fig, axes = plt.subplots(rows, columns, figsize=(3.2 * columns, 3.4 * rows), squeeze=False)
    for ax in axes.flat:
        ax.set_axis_off()
    multi = result.predictions.ndim == 2 and result.predictions.shape[1] > 1
    for i, ax in enumerate(axes.flat[:k]):
        image = result.images[i]
        ax.imshow(image if image.dtype == np.uint8 else np.clip(image / 255.0, 0, 1))
        if multi:
            predicted = int(result.predictions[i].argmax())
            actual = int(_as_classes(result.labels[i:i + 1])[0])
            name = (lambda c: class_names[c] if class_names is not None else str(c))
            title = (f"{name(predicted)} / {name(actual)}\n"
                     f"loss {result.losses[i]:.2f} / p {result.predictions[i][actual]:.2f}")
        else:
            title = f"label {result.labels[i]}\nloss {result.losses[i]:.2f}"
        ax.set_title(title, fontsize=9)
    fig.suptitle("top losses: predicted / actual / loss / probability of actual", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


# ---------------------------------------------------------------------------------------------
# Grad-CAM.


def _class_scores(head, features):
    """The head's pre-activation class scores (logits) from the backbone's feature map."""
    layers = getattr(head, "layers", None)
    if layers and layers[-1].name == "predictions" and isinstance(layers[-1],
                                                                     keras.layers.Dense):
        x = features
        for layer in layers[:-1]:
            x = layer(x, training=False)
        last = layers[-1]
        scores = keras.ops.matmul(x, last.kernel)
        return scores + last.bias if last.use_bias else scores
    # Other heads: log-probabilities have the logits' gradients up to a shared term.
    return keras.ops.log(keras.ops.maximum(head(features, training=False), 1e-12))


def grad_cam(model, images, class_index=None):
    """Grad-CAM heat maps of a kerasrecipes classifier, at the images' resolution.

    The feature map is the `backbone` sub-model's output (its last conv stage). Each channel is
    weighted by the spatial mean of the gradient of the class logit (the `predictions` layer
    before its softmax/sigmoid) with respect to it; the weighted sum is passed through ReLU,
    scaled to [0, 1] per image and resized bilinearly to the input size. Works on the
    TensorFlow, JAX and torch backends.

    Args:
        model: keras.Model with `preprocess`, `backbone` and `head` sub-models (from
            `kr.build_classifier`, `build_scratch_cnn`, `build_resnet`).
        images: uint8 array `[H, W, 3]` or `[B, H, W, 3]`.
        class_index: optional int or list of ints (one per image). Defaults to each image's
            predicted class.

    Returns:
        `(heatmaps [B, H, W] float32 in [0, 1], class_indices [B])`.

    Example:
    >>> heatmaps, classes = grad_cam(model, images[:2])

    Reference: Selvaraju et al., "Grad-CAM: Visual Explanations from Deep Networks via
    Gradient-based Localization" (2017).
    """

    try:
        preprocess, backbone, head = (model.get_layer(n) for n in
                                      ("preprocess", "backbone", "head"))
    except ValueError:
        raise ValueError(
            "grad_cam needs a model with 'preprocess', 'backbone' and 'head' sub-models "
            f"(from kr.build_classifier). Received a model named {model.name!r}."
        ) from None
    images = np.asarray(images)
    if images.ndim == 3:
        images = images[None]
    if images.ndim != 4:
        raise ValueError(f"images must be [H, W, 3] or [B, H, W, 3]. Received: "
                         f"shape={images.shape}")
    if isinstance(model.output, dict):
        raise ValueError("grad_cam explains one output, and this model has several (a "
                         f"multi-task model). Received a model named {model.name!r}.")
    x = preprocess(images, training=False)
    features = backbone(x, training=False)
    if len(features.shape) != 4:
        raise ValueError(f"The backbone's output is not a feature map (shape {features.shape}).")
    scores = np.asarray(keras.ops.convert_to_numpy(_class_scores(head, features)))
    units = scores.shape[-1]
    if class_index is None:
        classes = scores.argmax(axis=-1)
    else:
        classes = np.broadcast_to(np.asarray(class_index, dtype=int), (len(images),))
    if units == 1:
        classes = np.zeros(len(images), dtype=int)  # one sigmoid unit: its own score.
    if np.any(classes < 0) or np.any(classes >= units):
        raise ValueError(f"class_index must be in [0, {units}). "
                         f"Received: class_index={class_index!r}")
    chosen = keras.ops.one_hot(classes, units)

    def target(values):
        # Sum of each image's chosen class score: its gradient is each image's own gradient.
        return keras.ops.sum(_class_scores(head, values[0]) * chosen), ()

    _, _, (gradients,) = value_and_gradients(target, [features])
    weights = keras.ops.mean(gradients, axis=(1, 2), keepdims=True)
    cam = keras.ops.relu(keras.ops.sum(weights * features, axis=-1, keepdims=True))
    cam = keras.ops.image.resize(cam, images.shape[1:3], interpolation="bilinear")[..., 0]
    cam = keras.ops.convert_to_numpy(cam).astype("float32")
    peak = cam.reshape(len(cam), -1).max(axis=1)
    cam = cam / np.where(peak > 0, peak, 1.0)[:, None, None]
    return np.clip(cam, 0.0, 1.0), classes


def plot_grad_cam(model, image, path="grad_cam.png", class_names=None, class_index=None,
                  alpha=0.45):
    """Writes an image, its Grad-CAM heat map and the overlay side by side; returns the path.

    Args:
        model: as in `grad_cam`.
        image: uint8 array `[H, W, 3]`.
        path: str. Defaults to `"grad_cam.png"`.
        class_names: optional list of str.
        class_index: optional int. Defaults to the predicted class.
        alpha: float. Opacity of the heat map over the image. Defaults to `0.45`.
    """
    image = np.asarray(image)
    heatmaps, classes = grad_cam(model, image, class_index)
    probabilities = keras.ops.convert_to_numpy(model(image[None], training=False))[0]
    c = int(classes[0])
    name = class_names[c] if class_names is not None else str(c)
    shown = image if image.dtype == np.uint8 else np.clip(image / 255.0, 0, 1)
    plt = pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(9.5, 3.4))
    axes[0].imshow(shown)
    axes[0].set_title("image")
    axes[1].imshow(heatmaps[0], cmap="jet", vmin=0, vmax=1)
    axes[1].set_title("Grad-CAM")
    axes[2].imshow(shown)
    axes[2].imshow(heatmaps[0], cmap="jet", alpha=alpha, vmin=0, vmax=1)
    p = probabilities[c] if probabilities.shape[-1] > 1 else probabilities[0]
    axes[2].set_title(f"{name} (p={p:.2f})")
    for ax in axes:
        ax.set_axis_off()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def interpret(model, data, out_dir="interpretation", class_names=None, top=9, grad_cams=3):
    """Writes the confusion matrix, most-confused pairs, top losses and Grad-CAMs of a dataset.

    Args:
        model: a trained classifier.
        data: dataset of `(images, labels)` batches (e.g. `data.validation`).
        out_dir: str. Output folder. Defaults to `"interpretation"`.
        class_names: optional list of str.
        top: int. Number of top-loss images. Defaults to `9`.
        grad_cams: int. Grad-CAM figures for the worst images. Defaults to `3`.

    Returns:
        dict with `"confusion_matrix"`, `"most_confused"` and the PNG paths under `"figures"`.
    """
    import os

    os.makedirs(out_dir, exist_ok=True)
    probabilities, labels = predict_dataset(model, data)
    num_classes = probabilities.shape[1] if probabilities.shape[1] > 1 else 2
    matrix = confusion_matrix(labels, probabilities, num_classes)
    figures = [plot_confusion_matrix(matrix, os.path.join(out_dir, "confusion_matrix.png"),
                                     class_names),
               plot_filters(model, os.path.join(out_dir, "filters.png"))]
    worst = top_losses(model, data, k=top)
    figures.append(worst.plot(os.path.join(out_dir, "top_losses.png"), class_names))
    for i in range(min(grad_cams, len(worst.losses))):
        figures.append(plot_grad_cam(model, worst.images[i],
                                     os.path.join(out_dir, f"grad_cam_{i}.png"), class_names))
    names = class_names if class_names is not None and len(class_names) == num_classes else None
    return {"confusion_matrix": matrix, "most_confused": most_confused(matrix, names),
            "figures": figures}
