"""kerasrecipes: train image classifiers the way the best practitioners do, Keras-native."""

from kerasrecipes import datasets
from kerasrecipes.augment import augmentation
from kerasrecipes.backbones import (
    BackboneSpec,
    Preprocessing,
    get_backbone,
    infer_layer_groups,
    list_backbones,
    register_backbone,
)
from kerasrecipes.data import ImageData, array_datasets, image_folder_datasets, load_image, tfds_datasets
from kerasrecipes.export import export_saved_model
from kerasrecipes.layers import NormalizeImage
from kerasrecipes.models import build_classifier, build_resnet, build_scratch_cnn
from kerasrecipes.optimizers import get_optimizer
from kerasrecipes.train import TrainingHistory, fine_tune, fit, plot_history

__version__ = "0.1.0"

__all__ = [
    "BackboneSpec",
    "ImageData",
    "NormalizeImage",
    "Preprocessing",
    "TrainingHistory",
    "array_datasets",
    "augmentation",
    "build_classifier",
    "build_resnet",
    "build_scratch_cnn",
    "datasets",
    "export_saved_model",
    "fine_tune",
    "fit",
    "get_backbone",
    "get_optimizer",
    "image_folder_datasets",
    "infer_layer_groups",
    "list_backbones",
    "load_image",
    "plot_history",
    "register_backbone",
    "tfds_datasets",
]
