"""The figures of `doctor`'s report: the overfitting curve and the pixel histograms (PNG files)."""

import keras
import numpy as np

from kerasrecipes.batches import take_batches
from kerasrecipes.plotting import pyplot


def plot_overfit(result, path):
    plt = pyplot()
    details = result.details
    steps = np.arange(1, len(details["losses"]) + 1) * details["batches"]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(steps, details["losses"], "-o", markersize=3, label="loss")
    ax.set_xlabel("step")
    ax.set_ylabel("training loss")
    ax.set_yscale("log")
    acc_axis = ax.twinx()
    acc_axis.plot(steps, details["accuracies"], color="tab:orange", label="accuracy")
    acc_axis.set_ylabel("training accuracy")
    acc_axis.set_ylim(0, 1.05)
    ax.set_title(f"overfit {details['images']} images: {result.status}")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_inputs(model, data, path):
    """Pixel histogram of one batch, before and after the model's `preprocess`."""
    plt = pyplot()
    images, _, _ = take_batches(data, 1)
    fig, axes = plt.subplots(1, 2, figsize=(9, 3))
    axes[0].hist(images.reshape(-1).astype("float64"), bins=64, color="grey")
    axes[0].set_title(f"input pixels ({images.dtype})")
    try:
        x = keras.ops.convert_to_numpy(model.get_layer("preprocess")(images, training=False))
        axes[1].hist(np.asarray(x, "float64").reshape(-1), bins=64, color="tab:blue")
        axes[1].set_title("after `preprocess` (backbone input)")
    except ValueError:
        axes[1].set_visible(False)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
