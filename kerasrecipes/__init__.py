"""kerasrecipes: train image classifiers the way the best practitioners do, Keras-native."""

from kerasrecipes import startup as _startup

if _startup.is_cli_start():  # The `kerasrecipes` command: TensorFlow's start-up lines off stderr.
    _startup.import_tensorflow_quietly()

# The backbone registry is a leaf (`kerasrecipes.registry`); these modules register into it.
from kerasrecipes import backbones, efficientnet_lite, hub  # noqa: F401
from kerasrecipes import datasets
from kerasrecipes.augment import (
    ColorJitter,
    PCALighting,
    RandomResizedCrop,
    augment_dataset,
    augmentation,
)
from kerasrecipes.backbones import (
    BackboneSpec,
    Preprocessing,
    get_backbone,
    infer_layer_groups,
    list_backbones,
    register_backbone,
)
from kerasrecipes.diagnostics import doctor
from kerasrecipes.data import (
    ImageData,
    albumentations_map,
    array_datasets,
    image_folder_datasets,
    load_image,
    tfds_datasets,
)
from kerasrecipes.distribute import (
    finish_multihost,
    get_strategy,
    global_batch_size,
    initialize_multihost,
    is_primary_process,
    process_count,
    process_index,
    process_shard,
    set_precision,
)
from kerasrecipes.export import export_onnx, export_openvino, export_saved_model, export_tflite
from kerasrecipes.interrupt import TrainingInterrupted
from kerasrecipes.interpret import grad_cam, interpret, plot_filters, top_losses
from kerasrecipes.curves import diagnose_history
from kerasrecipes.monitor import TrainingMonitor
from kerasrecipes.saving import load_model, save_model
from kerasrecipes.search import search
from kerasrecipes.layers import NormalizeImage
from kerasrecipes.models import build_classifier, build_resnet, build_scratch_cnn
from kerasrecipes.optimizers import get_optimizer
from kerasrecipes.ensembles import SWA, SnapshotEnsemble, load_ensemble, recompute_batch_norm
from kerasrecipes.lr_finder import LRFinderResult, find_lr
from kerasrecipes.schedules import (
    SGDR,
    CycleMomentum,
    CyclicalLR,
    LinearWarmup,
    OneCycle,
    OneCycleMomentum,
    StepDecay,
    WarmupCosine,
)
from kerasrecipes.history import TrainingHistory, plot_history
from kerasrecipes.train import find_stage_lr, fine_tune, fit, fit_one_cycle
from kerasrecipes.distill import Distiller, distill
from kerasrecipes.multitask import build_multitask
from kerasrecipes.regularize import (
    Accuracy,
    BatchMixer,
    CrossEntropy,
    add_weight_regularization,
    mix_dataset,
)
from kerasrecipes.tta import predict_tta, tta_accuracy, tta_model

__version__ = "0.1.0"

__all__ = [
    "export_onnx",
    "export_openvino",
    "export_tflite",
    "finish_multihost",
    "get_strategy",
    "global_batch_size",
    "initialize_multihost",
    "is_primary_process",
    "process_count",
    "process_index",
    "process_shard",
    "set_precision",
    "Accuracy",
    "BatchMixer",
    "ColorJitter",
    "CrossEntropy",
    "Distiller",
    "PCALighting",
    "RandomResizedCrop",
    "add_weight_regularization",
    "albumentations_map",
    "augment_dataset",
    "build_multitask",
    "distill",
    "mix_dataset",
    "predict_tta",
    "tta_accuracy",
    "tta_model",
    "CycleMomentum",
    "SWA",
    "SnapshotEnsemble",
    "load_ensemble",
    "load_model",
    "recompute_batch_norm",
    "CyclicalLR",
    "LRFinderResult",
    "LinearWarmup",
    "OneCycle",
    "OneCycleMomentum",
    "SGDR",
    "StepDecay",
    "WarmupCosine",
    "find_lr",
    "fit_one_cycle",
    "BackboneSpec",
    "ImageData",
    "NormalizeImage",
    "Preprocessing",
    "TrainingHistory",
    "TrainingInterrupted",
    "array_datasets",
    "augmentation",
    "build_classifier",
    "build_resnet",
    "build_scratch_cnn",
    "datasets",
    "doctor",
    "export_saved_model",
    "find_stage_lr",
    "fine_tune",
    "fit",
    "get_backbone",
    "get_optimizer",
    "grad_cam",
    "image_folder_datasets",
    "infer_layer_groups",
    "interpret",
    "list_backbones",
    "load_image",
    "plot_filters",
    "plot_history",
    "register_backbone",
    "tfds_datasets",
    "top_losses",
    "TrainingMonitor",
    "diagnose_history",
    "save_model",
    "search",
]
