"""The import paths of earlier versions still work: the public API does not change in a refactor.

`OLD_NAMES` lists, per module, the public names that module defined or re-exported on main before
the issue #16 phase 2 refactor (commit b765e98; `kerasrecipes` is its `__all__`). The other
tests check that the paths the README, the notebooks, the benchmarks and the tools use resolve.
"""

import ast
import importlib
import os
import re

import pytest

import kerasrecipes as kr

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

OLD_NAMES = {
    'kerasrecipes': (
        'Accuracy', 'BackboneSpec', 'BatchMixer', 'ColorJitter', 'CrossEntropy', 'CycleMomentum',
        'CyclicalLR', 'Distiller', 'ImageData', 'LRFinderResult', 'LinearWarmup', 'NormalizeImage',
        'OneCycle', 'OneCycleMomentum', 'PCALighting', 'Preprocessing', 'RandomResizedCrop',
        'SGDR', 'SWA', 'SnapshotEnsemble', 'StepDecay', 'TrainingHistory', 'TrainingMonitor',
        'WarmupCosine', 'add_weight_regularization', 'albumentations_map', 'array_datasets',
        'augment_dataset', 'augmentation', 'build_classifier', 'build_multitask', 'build_resnet',
        'build_scratch_cnn', 'datasets', 'diagnose_history', 'distill', 'doctor', 'export_onnx',
        'export_saved_model', 'export_tflite', 'find_lr', 'fine_tune', 'finish_multihost', 'fit',
        'fit_one_cycle', 'get_backbone', 'get_optimizer', 'get_strategy', 'global_batch_size',
        'grad_cam', 'image_folder_datasets', 'infer_layer_groups', 'initialize_multihost',
        'interpret', 'is_primary_process', 'list_backbones', 'load_ensemble', 'load_image',
        'mix_dataset', 'plot_filters', 'plot_history', 'predict_tta', 'process_count',
        'process_index', 'process_shard', 'recompute_batch_norm', 'register_backbone', 'search',
        'set_precision', 'tfds_datasets', 'top_losses', 'tta_accuracy', 'tta_model',
    ),
    'kerasrecipes.augment': (
        'ColorJitter', 'PCALighting', 'PRESETS', 'RandomResizedCrop', 'augment_dataset',
        'augmentation', 'crop_boxes', 'map_batches', 'resolve_augment', 'split_leading_crop',
        'tf_crop_window',
    ),
    'kerasrecipes.backbones': (
        'BackboneSpec', 'CAFFE_STYLE', 'IMAGENET_MEAN', 'IMAGENET_STD', 'LITE_STYLE',
        'Preprocessing', 'TF_STYLE', 'TORCH_STYLE', 'get_backbone', 'infer_layer_groups',
        'layer_groups', 'list_backbones', 'register_backbone', 'registered_backbones',
    ),
    'kerasrecipes.batches': (
        'INFINITE', 'epoch_steps', 'first_batch', 'labels_to_numpy', 'num_batches', 'take_batches',
    ),
    'kerasrecipes.data': (
        'IMAGE_EXTENSIONS', 'ImageData', 'KINDS', 'SPLIT_ALIASES', 'albumentations_map',
        'array_datasets', 'decode_image_bytes', 'image_folder_datasets', 'load_image',
        'tfds_datasets',
    ),
    'kerasrecipes.diagnostics': (
        'CheckResult', 'DoctorReport', 'STATUSES', 'check_history', 'check_initial_loss',
        'check_inputs', 'check_labels', 'check_output_loss', 'check_weights',
        'classify_output_loss', 'doctor', 'expected_initial_loss', 'overfit_small_batch',
        'prior_loss',
    ),
    'kerasrecipes.distill': (
        'Distiller', 'distill', 'distillation_loss',
    ),
    'kerasrecipes.distribute': (
        'MULTIHOST_ISSUE', 'PRECISIONS', 'finish_multihost', 'get_strategy', 'global_batch_size',
        'initialize_multihost', 'is_primary_process', 'precision_scope', 'prepare_processes',
        'process_count', 'process_index', 'process_shard', 'set_precision',
    ),
    'kerasrecipes.efficientnet_lite': (
        'BN_EPSILON', 'BN_MOMENTUM', 'DEPTH_DIVISOR', 'DROP_CONNECT_RATE', 'EfficientNetLite0',
        'EfficientNetLite1', 'EfficientNetLite2', 'HEAD_FILTERS', 'LAYER_GROUPS', 'NUM_CLASSES',
        'STEM_FILTERS', 'cached_weights_path', 'load_imagenet_weights', 'pth_path',
        'round_filters', 'round_repeats', 'set_weights_from_state_dict',
    ),
    'kerasrecipes.ensembles': (
        'SWA', 'SnapshotEnsemble', 'load_ensemble', 'recompute_batch_norm',
    ),
    'kerasrecipes.gradients': (
        'value_and_gradients',
    ),
    'kerasrecipes.hub': (
        'hub_backbone',
    ),
    'kerasrecipes.interpret': (
        'TopLosses', 'confusion_matrix', 'filter_grid', 'first_conv_layer', 'grad_cam',
        'interpret', 'most_confused', 'plot_confusion_matrix', 'plot_filters', 'plot_grad_cam',
        'plot_top_losses', 'predict_dataset', 'top_losses',
    ),
    'kerasrecipes.layers': (
        'NormalizeImage', 'adapt_normalization',
    ),
    'kerasrecipes.lr_finder': (
        'LRFinderResult', 'METHODS', 'find_lr', 'range_lrs', 'smooth_losses', 'suggest_minimum',
        'suggest_steep', 'suggest_valley',
    ),
    'kerasrecipes.models': (
        'ACTIVATIONS', 'TASKS', 'augment_model', 'backbone_features', 'batch_norm_layers',
        'build_classifier', 'build_resnet', 'build_scratch_cnn', 'check_rate', 'task_of',
    ),
    'kerasrecipes.monitor': (
        'CURVE_PATTERNS', 'TrainingMonitor', 'activation_stats', 'diagnose_history',
        'gradient_alerts', 'history_report',
    ),
    'kerasrecipes.multitask': (
        'KINDS', 'build_multitask', 'is_multitask', 'multitask_compile_args', 'task_kinds',
    ),
    'kerasrecipes.optimizers': (
        'Adagrad', 'Adam', 'AdamW', 'NO_DECAY', 'RMSprop', 'SGD', 'clipping_arguments',
        'get_optimizer', 'has_momentum',
    ),
    'kerasrecipes.plotting': (
        'pyplot',
    ),
    'kerasrecipes.registry': (
        'BackboneSpec', 'CAFFE_STYLE', 'IMAGENET_MEAN', 'IMAGENET_STD', 'LITE_STYLE',
        'Preprocessing', 'TF_STYLE', 'TORCH_STYLE', 'get_backbone', 'list_backbones',
        'register_backbone', 'register_resolver', 'registered_backbones', 'registry_key',
    ),
    'kerasrecipes.regularize': (
        'Accuracy', 'BatchMixer', 'CrossEntropy', 'add_weight_regularization', 'cutmix',
        'cutmix_boxes', 'mix_dataset', 'mixup', 'one_hot_labels',
    ),
    'kerasrecipes.schedules': (
        'ANNEAL', 'CYCLICAL_MODES', 'CycleMomentum', 'CyclicalLR', 'LinearWarmup', 'OneCycle',
        'OneCycleMomentum', 'SGDR', 'StepDecay', 'WarmupCosine', 'cyclical_lr', 'linear_warmup',
        'momentum_attribute', 'one_cycle_lr', 'one_cycle_momentum', 'sgdr_lr', 'step_decay_lr',
        'warmup_cosine_lr',
    ),
    'kerasrecipes.search': (
        'DEFAULT_SPACE', 'KINDS', 'SearchResult', 'border_warnings', 'check_space',
        'default_train_fn', 'narrow_space', 'search',
    ),
    'kerasrecipes.tasks': (
        'TaskHead', 'activation_name', 'default_loss', 'default_metrics', 'is_multitask',
        'loss_fn', 'loss_info', 'model_loss', 'multitask_compile_args', 'output_activation',
        'output_layer', 'task_heads', 'task_kinds', 'task_of',
    ),
    'kerasrecipes.train': (
        'SCHEDULES', 'TrainingHistory', 'discriminative_multipliers', 'fine_tune', 'fit',
        'fit_one_cycle', 'group_lr_multipliers', 'make_schedule', 'plot_history',
        'set_trainable_groups',
    ),
    'kerasrecipes.tta': (
        'TTAView', 'predict_tta', 'tta_accuracy', 'tta_model', 'tta_view',
    ),
    'kerasrecipes.walk': (
        'walk_layers',
    ),
}


@pytest.mark.parametrize("module", sorted(OLD_NAMES))
def test_every_name_of_earlier_versions_is_still_there(module):
    imported = importlib.import_module(module)
    missing = [name for name in OLD_NAMES[module] if not hasattr(imported, name)]
    assert not missing, f"{module} lost {missing}"


def test_kr_all_keeps_every_earlier_name_and_lists_only_real_ones():
    assert set(OLD_NAMES["kerasrecipes"]) <= set(kr.__all__)
    assert all(hasattr(kr, name) for name in kr.__all__)


def _resolve(dotted):
    """Imports the longest module prefix of `dotted`, then follows the attributes."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            value = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for part in parts[cut:]:
            value = getattr(value, part)
        return value
    raise ImportError(dotted)


def _documented_paths():
    """`kr.a.b` / `kerasrecipes.a.b` in the docs, and `from kerasrecipes.a import b` in code."""
    paths = set()
    for doc in ("README.md", "ARCHITECTURE.md", "notebooks/README.md", "notebooks/_build.py"):
        with open(os.path.join(ROOT, doc)) as f:
            text = f.read()
        for match in re.finditer(r"\b(kr|kerasrecipes)((?:\.[A-Za-z_]\w*)+)", text):
            dotted = "kerasrecipes" + match.group(2)
            if not dotted.endswith((".py", ".keras", ".md")) and "._" not in dotted:
                paths.add(dotted)
    sources = [os.path.join(ROOT, "notebooks", "_build.py")]
    for folder in ("benchmarks", "tools", "tests"):
        sources += [os.path.join(ROOT, folder, name) for name in os.listdir(os.path.join(ROOT, folder))
                    if name.endswith(".py")]
    for path in sources:
        with open(path) as f:
            text = f.read()
        snippets = [text] + re.findall(r"'''(.*?)'''", text, flags=re.S)  # notebook cells
        for snippet in snippets:
            try:
                tree = ast.parse(snippet)
            except SyntaxError:
                continue
            for node in ast.walk(tree):
                if isinstance(node, ast.ImportFrom) and (node.module or "").startswith(
                        "kerasrecipes"):
                    paths.update(f"{node.module}.{a.name}" for a in node.names
                                 if not a.name.startswith("_"))
    return sorted(paths)


@pytest.mark.parametrize("dotted", _documented_paths())
def test_documented_import_paths_resolve(dotted):
    _resolve(dotted)
