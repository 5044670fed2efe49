"""Builds the walkthrough notebooks from the cells below (Python strings), without outputs.

    python notebooks/_build.py                  # writes notebooks/0*.ipynb (no outputs)
    python notebooks/_build.py --execute        # ... and executes them in place (real run)
    KERASRECIPES_NOTEBOOK_QUICK=1 python notebooks/_build.py --execute --only 01

Edit the cells here, never the `.ipynb` files: they are generated. `--execute` runs each
notebook with nbclient (cwd = notebooks/) and saves it with its outputs, which is how the
committed copies were made (real run, without `KERASRECIPES_NOTEBOOK_QUICK`).
"""

import argparse
import os
import re
import sys
import time

import nbformat

HERE = os.path.dirname(os.path.abspath(__file__))

# ------------------------------------------------------------------------------------------------
# Shared cells.

SETUP = r'''
%matplotlib inline
import atexit, os, shutil, subprocess, sys, tempfile, time
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import numpy as np
import matplotlib.pyplot as plt
from IPython.display import Image, display
import keras
import kerasrecipes as kr
import logging
logging.getLogger("tensorflow").setLevel(logging.ERROR)  # no "Assets written to ..." lines

# KERASRECIPES_NOTEBOOK_QUICK=1 (CI): tiny subsets, 1 epoch, small images — a smoke test.
QUICK = os.environ.get("KERASRECIPES_NOTEBOOK_QUICK") == "1"
# The real data sets live beside the repository (../shared/data from its root); without them
# the notebook falls back to the clothing photos embedded in the package (kr.datasets).
DATA = os.environ.get("KERASRECIPES_DATA", os.path.join("..", "..", "shared", "data"))
WORK = tempfile.mkdtemp(prefix="kerasrecipes_notebook_")  # figures, models, subsets of this run
atexit.register(shutil.rmtree, WORK, ignore_errors=True)  # removed when the kernel exits
keras.utils.set_random_seed(0)


def show(fig):
    """Shows a matplotlib figure inline (kerasrecipes' own plots write PNG files instead)."""
    display(fig)
    plt.close(fig)


def show_png(path, width=None):
    display(Image(filename=path, width=width))


def subset_folder(source, target, per_class, splits):
    """Links the first `per_class[split]` images of each class of `source/<split>` into `target`."""
    for split, new_split in splits.items():
        for cls in sorted(os.listdir(os.path.join(source, split))):
            folder = os.path.join(source, split, cls)
            if not os.path.isdir(folder):
                continue
            os.makedirs(os.path.join(target, new_split, cls), exist_ok=True)
            for name in sorted(os.listdir(folder))[: per_class[new_split]]:
                os.symlink(os.path.abspath(os.path.join(folder, name)),
                           os.path.join(target, new_split, cls, name))
    return target


print(f"QUICK={QUICK}, keras {keras.__version__} ({keras.backend.backend()}), "
      f"real data: {os.path.isdir(DATA)}")
'''

CIFAR = r'''
def load_cifar_subset(train_per_class, val_per_class, batch_size, image_size=32):
    """A class-balanced subset of CIFAR-10 (or of the demo photos at 32 px when it is absent)."""
    root = os.path.join(WORK, "cifar_subset")
    counts = {"train": train_per_class, "validation": val_per_class}
    cifar = os.path.join(DATA, "cifar10")
    if os.path.isdir(cifar):
        subset_folder(cifar, root, counts, {"train": "train", "test": "validation"})
    else:
        print("CIFAR-10 not found: using the embedded clothing photos at 32 px instead")
        subset_folder(kr.datasets.demo_dir(), root, counts,
                      {"train": "train", "validation": "validation"})
    return kr.image_folder_datasets(root, image_size=image_size, batch_size=batch_size, seed=0,
                                    verbose=False)
'''

CLOTHING = r'''
def load_clothing(train_per_class, val_per_class, image_size, batch_size):
    """The clothing photos (a per-class subset when the counts are given)."""
    source = os.path.join(DATA, "clothing")
    if not os.path.isdir(source):
        print("../shared/data/clothing not found: using the embedded demo copy")
        source = kr.datasets.demo_dir()
    if train_per_class is not None:
        source = subset_folder(source, os.path.join(WORK, "clothing_subset"),
                               {"train": train_per_class, "validation": val_per_class},
                               {"train": "train", "validation": "validation"})
    return kr.image_folder_datasets(source, image_size=image_size, batch_size=batch_size,
                                    seed=0, verbose=False)


def show_batch(dataset, class_names, n=8, title=None):
    images, labels = next(iter(dataset))
    images, labels = np.asarray(images)[:n], np.asarray(labels)[:n]
    fig, axes = plt.subplots(1, len(images), figsize=(1.6 * len(images), 2))
    for ax, image, label in zip(np.atleast_1d(axes), images, labels):
        ax.imshow(image)
        ax.set_title(class_names[int(label)], fontsize=8)
        ax.axis("off")
    if title:
        fig.suptitle(title)
    show(fig)
'''

# ------------------------------------------------------------------------------------------------
# 01 — a CNN from scratch, and babysitting it.

NB01 = [
    ("md", r'''
# 1 · A CNN from scratch, and how to babysit it

Before tuning anything, make sure the network *can* learn (Karpathy, "A Recipe for Training
Neural Networks", 2019):

1. **build** a small CNN by the classic design rules (`kr.build_scratch_cnn`);
2. check the **loss at initialisation** — an untrained 10-class softmax must start at `ln 10 ≈ 2.30`;
3. **overfit a few batches** — a model that cannot memorise 160 images will not learn 50,000;
4. train while **watching activations and gradients** (`kr.TrainingMonitor`): dead ReLUs,
   vanishing or exploding gradients, update ratios around `1e-3`;
5. look at what the **first layer** learned.

Data: a class-balanced subset of CIFAR-10 (JPEG copy in `../shared/data/cifar10`), read as an
image folder. Set `KERASRECIPES_NOTEBOOK_QUICK=1` for a smoke-test run.'''),
    ("code", SETUP),
    ("code", CIFAR),
    ("code", r'''
TRAIN_PER_CLASS, VAL_PER_CLASS = (30, 10) if QUICK else (400, 100)
EPOCHS = 1 if QUICK else 8
data = load_cifar_subset(TRAIN_PER_CLASS, VAL_PER_CLASS, batch_size=32)
print(data.num_examples, data.class_names)

images, labels = next(iter(data.train))
fig, axes = plt.subplots(2, 8, figsize=(12, 3.4))
for ax, image, label in zip(axes.flat, np.asarray(images), np.asarray(labels)):
    ax.imshow(image); ax.set_title(data.class_names[label], fontsize=8); ax.axis("off")
show(fig)'''),
    ("md", r'''
## Build by the design rules

`build_scratch_cnn` stacks stages of `3×3 conv → BatchNorm → ReLU` (twice), halves the resolution
after each stage with a max-pool and **doubles the filters** (32 → 64 → 128), so each stage costs
about the same; then global average pooling, a small dense layer with dropout, and a softmax.
He-normal initialisation suits ReLU. The `preprocess` sub-model standardises each channel with
the mean/std of the **training** images (stored in the model, so serving reuses them).'''),
    ("code", r'''
model = kr.build_scratch_cnn(len(data.class_names), image_size=32, filters=32, stages=3,
                             normalization_data=data.train)
model.summary()
model.get_layer("backbone").summary()'''),
    ("md", r'''
## Loss at initialisation

With small random weights the softmax is nearly uniform, so the cross-entropy should be close to
`ln(10) = 2.303`. Much higher means large initial logits (bad init, unnormalised inputs, logits fed
to a probability loss); much lower means information leaks. First by hand:'''),
    ("code", r'''
probabilities = model.predict(images, verbose=0)
initial = float(keras.losses.sparse_categorical_crossentropy(labels, probabilities).numpy().mean())
print(f"initial loss {initial:.3f}  vs  ln(10) = {np.log(10):.3f}")
print("mean predicted probability per class:", np.round(probabilities.mean(0), 3))'''),
    ("md", r'''
## All the sanity checks at once: `kr.doctor`

`kr.doctor` runs the input, label, output/loss, weight and initial-loss checks, then tries to
**overfit 5 batches** on a copy of the model (no dropout, no augmentation, no weight decay) and
runs a short LR range test. The model itself is not changed.'''),
    ("code", r'''
report = kr.doctor(model, data.train, data.validation, out_dir=os.path.join(WORK, "doctor"),
                   class_names=data.class_names, overfit_steps=10 if QUICK else 150,
                   lr_finder_steps=10 if QUICK else 60, verbose=0)
for check in report.checks:
    print(check)
print("LR suggestion of the range test:", report.lr_suggestion)'''),
    ("code", r'''
overfit = report["overfit_small_batch"].details
initial_check = report["initial_loss"].details
fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 3.5))
ax1.plot(overfit["step_losses"], label="training loss (5 fixed batches)")
ax1.axhline(initial_check["expected"], color="grey", linestyle="--", label="chance: ln 10")
ax1.set_xlabel("step"); ax1.set_ylabel("loss"); ax1.legend()
ax2.plot(np.arange(1, len(overfit["accuracies"]) + 1) * overfit["batches"], overfit["accuracies"])
ax2.set_xlabel("step"); ax2.set_ylabel("accuracy on those batches"); ax2.set_ylim(0, 1.02)
fig.suptitle("overfitting a small batch: the loss must go to ~0")
show(fig)'''),
    ("md", r'''
## Train while watching activations and gradients

`kr.TrainingMonitor` runs a fixed probe batch through the model every `every` steps (inference
mode, nothing changes) and records per-layer activation statistics, gradient norms and the
**update ratio** `‖Δw‖ / ‖w‖` — Karpathy's rule of thumb is about `1e-3` per step. It warns about
dead ReLUs, saturation, vanishing and exploding gradients.'''),
    ("code", r'''
monitor = kr.TrainingMonitor(data.validation, every=5 if QUICK else 40, probe_size=64)
start = time.time()
history = kr.fit(model, data.train, data.validation, epochs=EPOCHS, lr=3e-3,
                 callbacks=[monitor], verbose=2)
print(f"{time.time() - start:.0f} s; best val accuracy {max(history.history['val_accuracy']):.3f}")
print("alerts:", monitor.alerts[:5] or "none")
show_png(kr.plot_history(history, os.path.join(WORK, "history.png")))'''),
    ("code", r'''
for finding in kr.diagnose_history(history):
    print(finding)'''),
    ("code", r'''
show_png(monitor.plot(os.path.join(WORK, "monitor.png")))
show_png(monitor.plot_histograms(os.path.join(WORK, "activations.png")))'''),
    ("md", r'''
Gradient histograms of the last probe, one panel per conv kernel: healthy gradients are centred on
zero with a spread that does not shrink layer by layer towards the input.'''),
    ("code", r'''
grads = [(k[len("grad/"):], v) for k, v in monitor.last_values.items()
         if k.startswith("grad/") and v.ndim == 4]
fig, axes = plt.subplots(1, len(grads), figsize=(2.6 * len(grads), 2.4), squeeze=False)
for ax, (name, values) in zip(axes[0], grads):
    ax.hist(values.reshape(-1), bins=60, color="tab:orange")
    ax.set_title(f"{name.split('/')[-2]}\nstd {values.std():.1e}", fontsize=8)
    ax.tick_params(labelsize=6)
fig.suptitle(f"gradients at step {monitor.records[-1]['step']}", fontsize=9)
fig.tight_layout()
show(fig)'''),
    ("md", r'''
## What did the first layer learn?

Trained first-layer filters of a CNN look like oriented edges and colour blobs; noisy filters
after a long training mean too little data or too high a learning rate.'''),
    ("code", r'''
show_png(kr.plot_filters(model, os.path.join(WORK, "filters.png")), width=420)'''),
    ("md", r'''
**Takeaways.** The initial loss matched chance, the model memorised a few batches, and the update
ratios sit near `1e-3`: it is safe to spend compute on longer training — next notebook: choosing
the learning rate and the schedule.'''),
]

# ------------------------------------------------------------------------------------------------
# 02 — LR range test and one-cycle.

NB02 = [
    ("md", r'''
# 2 · The learning-rate range test and the one-cycle policy

The learning rate is the most important hyper-parameter. Smith's **range test** (2015) trains for a
few dozen steps while raising the LR geometrically and records the loss: the useful range is where
the loss falls fastest, before it blows up. `kr.find_lr` runs it and puts the model back
**bit-identically** afterwards. The **one-cycle policy** (Smith 2018) then warms the LR up to that
peak and anneals it to almost zero, cycling momentum the other way — usually faster and better
than a constant LR.'''),
    ("code", SETUP),
    ("code", CIFAR),
    ("code", r'''
TRAIN_PER_CLASS, VAL_PER_CLASS = (30, 10) if QUICK else (250, 100)
EPOCHS = 1 if QUICK else 6
data = load_cifar_subset(TRAIN_PER_CLASS, VAL_PER_CLASS, batch_size=32)


def new_model():
    keras.utils.set_random_seed(0)  # the same initial weights for every run below
    return kr.build_scratch_cnn(10, image_size=32, normalization_data=data.train)


print(data.num_examples)'''),
    ("md", "## The range test"),
    ("code", r'''
model = new_model()
before = [w.copy() for w in model.get_weights()]
result = kr.find_lr(model, data.train, min_lr=1e-6, max_lr=10.0, num_steps=30 if QUICK else 78,
                    verbose=0)
restored = all(np.array_equal(a, b) for a, b in zip(before, model.get_weights()))
print(f"{len(result.lrs)} steps in {result.seconds:.1f} s, stopped early: {result.stopped_early}, "
      f"weights restored bit-identically: {restored}")
suggestions = result.suggestions()
for method, lr in suggestions.items():
    print(f"  {method:8s} {lr:.2e}" if lr else f"  {method:8s} -")
show_png(result.plot(os.path.join(WORK, "lr_find.png")))'''),
    ("md", r'''
- **valley** (fastai's default): the middle of the longest stretch where the loss goes down — a
  robust peak LR for one-cycle;
- **steep**: where the smoothed loss falls fastest;
- **minimum / 10**: the classic rule, one decade before the loss minimum.

Read the plot, not only the numbers: the first batches are noisy, and a lucky first batch can
make the smoothed curve's minimum (and so `minimum`) land at the very start of the range.

## What the schedules look like

All schedules are serialisable Keras `LearningRateSchedule`s.'''),
    ("code", r'''
peak = suggestions["valley"] or 1e-3
total = 1000
steps = np.arange(total)
schedules = {
    "OneCycle": kr.OneCycle(peak, total, pct_start=0.25),
    "WarmupCosine": kr.WarmupCosine(peak, total, warmup_steps=100),
    "SGDR (restarts)": kr.SGDR(peak, first_cycle_steps=150, t_mul=2.0),
    "StepDecay": kr.StepDecay(peak, boundaries=[500, 750]),
}
fig, ax = plt.subplots(figsize=(9, 3.5))
for name, schedule in schedules.items():
    ax.plot(steps, [float(schedule(s)) for s in steps], label=name)
ax.set_xlabel("step"); ax.set_ylabel("learning rate"); ax.legend()
show(fig)'''),
    ("md", r'''
## One-cycle vs a constant learning rate

The same network, the same initial weights and the same number of epochs, trained twice: once at a
constant LR (the valley suggestion), once with `kr.fit_one_cycle` peaking at the same value.'''),
    ("code", r'''
runs = {}
model = new_model()
start = time.time()
runs["constant"] = kr.fit(model, data.train, data.validation, epochs=EPOCHS, lr=peak,
                          schedule="constant", verbose=2)
print(f"constant LR: {time.time() - start:.0f} s")
model = new_model()
start = time.time()
runs["one-cycle"] = kr.fit_one_cycle(model, data.train, data.validation, epochs=EPOCHS,
                                     lr=peak, verbose=2)
print(f"one-cycle:   {time.time() - start:.0f} s")'''),
    ("code", r'''
fig, axes = plt.subplots(1, 3, figsize=(14, 3.6))
for name, history in runs.items():
    h = history.history
    epochs = np.arange(1, len(h["loss"]) + 1)
    axes[0].plot(epochs, h["loss"], label=f"{name} train")
    axes[0].plot(epochs, h["val_loss"], "--", label=f"{name} val")
    axes[1].plot(epochs, h["val_accuracy"], marker="o", label=name)
    if "learning_rate" in h:
        axes[2].plot(epochs, h["learning_rate"], marker="o", label=name)
axes[0].set_title("loss"); axes[1].set_title("validation accuracy")
axes[2].set_title("learning rate (end of epoch)"); axes[2].set_yscale("log")
for ax in axes:
    ax.set_xlabel("epoch"); ax.legend(fontsize=8)
show(fig)
for name, history in runs.items():
    h = history.history
    print(f"{name:10s} final val accuracy {h['val_accuracy'][-1]:.3f}, "
          f"best {max(h['val_accuracy']):.3f}, final val loss {h['val_loss'][-1]:.3f}")'''),
    ("md", r'''
The annealing phase of one-cycle lets the weights settle into a minimum, which usually shows as a
lower final validation loss than the constant-LR run, whose last epochs still bounce around. On a
run this short the gap is a single measurement, not a benchmark: see `BENCHMARKS.md` for repeated
runs.'''),
]

# ------------------------------------------------------------------------------------------------
# 03 — transfer learning.

NB03 = [
    ("md", r'''
# 3 · Transfer learning: freeze, train the head, unfreeze, discriminative LRs

With 3,000 photos a network trained from scratch barely learns; an ImageNet-pretrained backbone
gets most of the way in one epoch. The recipe (Yosinski 2014; Howard & Ruder 2018; the Keras
transfer-learning guide):

1. **freeze** the backbone (BatchNorm in inference mode) and train only the new head;
2. **unfreeze** and fine-tune everything at a lower LR, with **discriminative learning rates**:
   early layers (generic edges) move 10× slower than the top (task-specific);
3. stop early and keep the best weights; then **look at the errors**.

Backbone: EfficientNet-Lite0 with real ImageNet weights, loaded offline.'''),
    ("code", SETUP),
    ("code", CLOTHING),
    ("code", r'''
IMAGE_SIZE = 96 if QUICK else 128
if QUICK:
    data = load_clothing(8, 4, image_size=IMAGE_SIZE, batch_size=16)
else:  # at most 150 photos a class (CPU time); the full validation split
    data = load_clothing(150, 1000, image_size=IMAGE_SIZE, batch_size=32)
print(data.num_examples)
show_batch(data.train, data.class_names, title="clothing photos")'''),
    ("code", r'''
model = kr.build_classifier("efficientnet_lite0", num_classes=len(data.class_names),
                            image_size=IMAGE_SIZE, weights="imagenet",
                            augment=None if QUICK else "light", dropout=0.2)
print([layer.name for layer in model.layers])
groups = kr.infer_layer_groups(model.get_layer("backbone"))
print({name: len(layers) for name, layers in groups.items()})'''),
    ("md", r'''
`fine_tune` does the two stages. After unfreezing, the head and the top group train at
`fine_tune_lr` and each earlier group at a geometrically smaller one, down to
`fine_tune_lr / lr_mult` for the stem (exact per-variable multipliers in the optimizer).'''),
    ("code", r'''
start = time.time()
history = kr.fine_tune(model, data.train, data.validation,
                       head_epochs=1 if QUICK else 2, epochs=1 if QUICK else 2,
                       lr=1e-3, fine_tune_lr=1e-4, lr_mult=10, unfreeze="all",
                       early_stopping=2, verbose=2)
print(f"{time.time() - start:.0f} s")
for i, stage in enumerate(history.stages):
    print(f"stage {stage['name']!r}: {stage['epochs']} epochs, trainable {stage['trainable_groups']}, "
          f"peak LR {stage['learning_rate']}, best val accuracy {history.stage_metric(i):.3f}")
show_png(kr.plot_history(history, os.path.join(WORK, "history.png")))'''),
    ("md", r'''
## Where does it go wrong?

`kr.interpret` writes the confusion matrix, the most-confused pairs, the images with the highest
loss and Grad-CAM maps (which pixels drove the prediction) for the worst of them.'''),
    ("code", r'''
found = kr.interpret(model, data.validation, out_dir=os.path.join(WORK, "interpret"),
                     class_names=data.class_names, top=9, grad_cams=2)
print("most confused (true, predicted, count):", found["most_confused"][:5])
for path in found["figures"]:
    if "filters" not in path:
        show_png(path, width=640)'''),
    ("md", r'''
Grad-CAM on a few validation images of our own choice, with `kr.grad_cam` (heat maps at the image
resolution, for the predicted class):'''),
    ("code", r'''
picked = {}  # the first validation image of each class
for batch_images, batch_labels in data.validation:
    for image, label in zip(np.asarray(batch_images), np.asarray(batch_labels)):
        picked.setdefault(int(label), image)
labels = np.array(sorted(picked))[:8]
images = np.stack([picked[label] for label in labels])
heatmaps, classes = kr.grad_cam(model, images)
fig, axes = plt.subplots(2, len(images), figsize=(2.2 * len(images), 4.6))
for i in range(len(images)):
    axes[0, i].imshow(images[i]); axes[0, i].axis("off")
    axes[0, i].set_title(f"true {data.class_names[labels[i]]}", fontsize=8)
    axes[1, i].imshow(images[i]); axes[1, i].imshow(heatmaps[i], cmap="jet", alpha=0.45)
    axes[1, i].set_title(f"pred {data.class_names[classes[i]]}", fontsize=8); axes[1, i].axis("off")
show(fig)'''),
]

# ------------------------------------------------------------------------------------------------
# 04 — regularisation and ensembles.

NB04 = [
    ("md", r'''
# 4 · Regularisation, ensembles, TTA and distillation

Once a model learns, the gap between training and validation is what to fight:

- **data augmentation** presets (`kr.augmentation`, `kr.augment_dataset`);
- **MixUp / CutMix** and **label smoothing** (`kr.mix_dataset`, soft-label loss picked automatically);
- **snapshot ensembles**: M models for the price of one run (`kr.SnapshotEnsemble`, `kr.load_ensemble`);
- **test-time augmentation** (`kr.tta_accuracy`);
- **knowledge distillation** of the ensemble into one small student (`kr.distill`).

Data: a CIFAR-10 subset at 32 px, small CNNs, so that every idea runs in a minute on a CPU.'''),
    ("code", SETUP),
    ("code", CIFAR),
    ("code", r'''
TRAIN_PER_CLASS, VAL_PER_CLASS = (30, 10) if QUICK else (250, 100)
EPOCHS = 1 if QUICK else 5
data = load_cifar_subset(TRAIN_PER_CLASS, VAL_PER_CLASS, batch_size=32)
NUM_CLASSES = len(data.class_names)
print(data.num_examples)'''),
    ("md", "## Augmentation presets"),
    ("code", r'''
images, labels = next(iter(data.train))
images = np.asarray(images)[:6]
fig, axes = plt.subplots(4, 6, figsize=(9, 6.4))
for row, preset in zip(axes, ["none", "light", "standard", "strong"]):
    layer = kr.augmentation(preset, seed=1)
    augmented = np.asarray(layer(images, training=True)).clip(0, 255).astype("uint8")
    for ax, image in zip(row, augmented):
        ax.imshow(image); ax.axis("off")
    row[0].set_title(preset, loc="left", fontsize=9)
show(fig)'''),
    ("md", r'''
## MixUp and CutMix

`kr.mix_dataset` mixes each training batch with a shuffled copy of itself — a convex combination of
the pixels (MixUp, Zhang 2017) or a pasted box (CutMix, Yun 2019) — and mixes the labels in the
same proportion. `label_smoothing` softens them further.'''),
    ("code", r'''
mixed = kr.mix_dataset(data.train, NUM_CLASSES, mixup_alpha=0.4, cutmix_alpha=1.0,
                       switch_prob=0.5, label_smoothing=0.1, seed=0)
mixed_images, soft_labels = next(iter(mixed))
fig, axes = plt.subplots(1, 6, figsize=(12, 2.6))
for ax, image, label in zip(axes, np.asarray(mixed_images), np.asarray(soft_labels)):
    top = np.argsort(label)[::-1][:2]
    ax.imshow(image); ax.axis("off")
    ax.set_title("\n".join(f"{data.class_names[c]} {label[c]:.2f}" for c in top), fontsize=8)
show(fig)'''),
    ("md", r'''
### Does it help? Baseline vs augmentation + MixUp/CutMix + label smoothing

Same network, same epochs. Regularisation trades training fit for generalisation, so it often
needs *more* epochs to pay off — on very short runs the baseline can win.'''),
    ("code", r'''
def new_cnn(seed=0, filters=16, augment=None):
    keras.utils.set_random_seed(seed)
    return kr.build_scratch_cnn(NUM_CLASSES, image_size=32, filters=filters, augment=augment,
                                normalization_data=data.train)


results = {}
baseline = new_cnn()
h = kr.fit(baseline, data.train, data.validation, epochs=EPOCHS, lr=3e-3, verbose=0)
results["baseline"] = h.history["val_accuracy"]
regularized = new_cnn(augment="light")
h = kr.fit(regularized, mixed, data.validation, epochs=EPOCHS, lr=3e-3, verbose=0)
results["light aug + mix + smoothing"] = h.history["val_accuracy"]
fig, ax = plt.subplots(figsize=(6, 3.4))
for name, values in results.items():
    ax.plot(np.arange(1, len(values) + 1), values, marker="o", label=name)
    print(f"{name:30s} final val accuracy {values[-1]:.3f}")
ax.set_xlabel("epoch"); ax.set_ylabel("val accuracy"); ax.legend()
show(fig)'''),
    ("md", r'''
## Snapshot ensemble

Cosine annealing with restarts; at the end of each cycle the model sits in a different minimum and
is saved. Averaging the snapshots' probabilities is an ensemble "for free" (Huang et al. 2017) —
when each cycle is long enough to converge. With short cycles the early snapshots are much weaker
than the last, and the average can fall below the best single snapshot: compare before shipping
an ensemble.'''),
    ("code", r'''
CYCLES = 2 if QUICK else 3
snapshots = kr.SnapshotEnsemble(os.path.join(WORK, "snapshots"), cycles=CYCLES, max_lr=3e-3,
                                verbose=0)
model = new_cnn(seed=1)
kr.fit(model, data.train, data.validation, epochs=CYCLES * (1 if QUICK else 2), lr=3e-3,
       schedule="constant", callbacks=[snapshots], verbose=0)
ensemble = kr.load_ensemble(snapshots.paths)
ensemble.compile(loss="sparse_categorical_crossentropy", metrics=["accuracy"])
for path in snapshots.paths:
    single = keras.models.load_model(path)
    single.compile(loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    print(f"{os.path.basename(path):18s} val accuracy "
          f"{single.evaluate(data.validation, verbose=0)[1]:.3f}")
print(f"{'ensemble':18s} val accuracy {ensemble.evaluate(data.validation, verbose=0)[1]:.3f}")'''),
    ("md", r'''
## Test-time augmentation

Average the predictions over flipped and shifted crops of each validation image. On 32-px images
a crop of 87.5 % throws away an eighth of very few pixels, so compare with flips only
(`crop_fraction=1.0`): TTA helps most on large images and models trained with crop augmentation.'''),
    ("code", r'''
for crop_fraction in (0.875, 1.0):
    found = kr.tta_accuracy(baseline, data.validation, n=4 if QUICK else 8,
                            crop_fraction=crop_fraction)
    print(f"crop_fraction={crop_fraction}: plain {found['accuracy']:.3f} -> "
          f"TTA {found['tta_accuracy']:.3f} ({found['delta']:+.3f})")'''),
    ("md", r'''
## Knowledge distillation

The snapshot ensemble is the **teacher**; a CNN with half the filters is the **student**,
trained on `α·KL(teacher_T ‖ student_T)·T² + (1 − α)·CE(labels)` at temperature `T` (Hinton et al.
2015). Compare with the same student trained on the labels alone. Distillation pays off when the
teacher is clearly better than the student and training runs long enough for the soft targets to
matter; after a few epochs either side can win — measure, don't assume.'''),
    ("code", r'''
student = new_cnn(seed=2, filters=8)
kr.distill(ensemble, student, data.train, data.validation, temperature=4.0, alpha=0.7,
           epochs=EPOCHS, lr=3e-3, verbose=0)
alone = new_cnn(seed=2, filters=8)
kr.fit(alone, data.train, data.validation, epochs=EPOCHS, lr=3e-3, verbose=0)
for name, m in [("teacher (ensemble)", ensemble), ("student, distilled", student),
                ("student, labels only", alone)]:
    m.compile(loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    print(f"{name:22s} {m.count_params():>9,d} parameters, val accuracy "
          f"{m.evaluate(data.validation, verbose=0)[1]:.3f}")'''),
]

# ------------------------------------------------------------------------------------------------
# 05 — export and serve.

NB05 = [
    ("md", r'''
# 5 · Export and serve

A kerasrecipes model takes **uint8 images** and does its own preprocessing, so what you export is
what you trained — no preprocessing code to re-implement in the server. `kr.export_saved_model`
writes a TensorFlow SavedModel with two signatures:

- `serve`: uint8 `[N, H, W, 3]` images;
- `serve_bytes`: encoded JPEG/PNG files as strings, decoded and resized exactly like training.

Then check the exported artefacts against `model.predict`: reloaded in a **fresh process**, as
TFLite, and as ONNX.'''),
    ("code", SETUP),
    ("code", CLOTHING),
    ("code", r'''
IMAGE_SIZE = 96 if QUICK else 128
# The story here is export, not accuracy: a head trained for one epoch on a subset will do.
data = load_clothing(6 if QUICK else 100, 3 if QUICK else 30, image_size=IMAGE_SIZE,
                     batch_size=16 if QUICK else 32)
model = kr.build_classifier("efficientnet_lite0", len(data.class_names), image_size=IMAGE_SIZE)
kr.fine_tune(model, data.train, data.validation, head_epochs=1, epochs=0, verbose=2)
images, labels = next(iter(data.validation))
images = np.asarray(images)[:8]
expected = model.predict(images, verbose=0)
DIFFS = {}  # artefact -> max |probability difference| vs model.predict


def parity(name, probabilities, atol):
    diff = float(np.abs(np.asarray(probabilities, "float64") - expected).max())
    DIFFS[name] = (diff, atol)
    same = (np.asarray(probabilities).argmax(-1) == expected.argmax(-1)).mean()
    verdict = "OK" if diff <= atol else f"MISMATCH (tolerance {atol:g})"
    print(f"{name:26s} max |diff| = {diff:.2e}, same top-1 {same:.0%}: {verdict}")'''),
    ("md", "## SavedModel with two signatures"),
    ("code", r'''
export_dir = kr.export_saved_model(model, os.path.join(WORK, "clothing_model"),
                                   class_names=data.class_names,
                                   metadata={"notebook": "05_export_and_serve"})
for root, dirs, files in sorted(os.walk(export_dir)):
    depth = root[len(export_dir):].count(os.sep)
    if depth < 2:
        print("  " * depth + os.path.basename(root) + "/", sorted(files))'''),
    ("md", r'''
### Reload in a fresh process

A new Python process with only TensorFlow — no Keras model code, no kerasrecipes — loads the
SavedModel and classifies raw JPEG files through `serve_bytes`, and uint8 arrays through `serve`.'''),
    ("code", r'''
files = data.files["validation"]
jpegs = [path for path, _ in files[:: max(1, len(files) // 4)][:4]]  # spread over the classes
np.save(os.path.join(WORK, "images.npy"), images)
script = r"""
import sys, json, numpy as np, tensorflow as tf
export_dir, work, *files = sys.argv[1:]
served = tf.saved_model.load(export_dir)
print("signatures:", sorted(served.signatures))
raw = tf.constant([open(f, "rb").read() for f in files])
out = served.signatures["serve_bytes"](image_bytes=raw)
print("serve_bytes:", [n.decode() for n in out["class_name"].numpy()])
out = served.signatures["serve"](images=tf.constant(np.load(work + "/images.npy")))
np.save(work + "/served.npy", out["probabilities"].numpy())
"""
result = subprocess.run([sys.executable, "-c", script, export_dir, WORK, *jpegs],
                        capture_output=True, text=True, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
print(result.stdout.strip(), result.stderr[-2000:] if result.returncode else "")
parity("SavedModel (new process)", np.load(os.path.join(WORK, "served.npy")), atol=1e-5)'''),
    ("md", r'''
`serve_bytes` decodes the file and resizes it with the same code as the training pipeline, so it
agrees with `model.predict` on `kr.load_image` of the same file:'''),
    ("code", r'''
local = np.stack([kr.load_image(path, (IMAGE_SIZE, IMAGE_SIZE)) for path in jpegs])
predicted = model.predict(local, verbose=0).argmax(-1)
print("model.predict on kr.load_image:", [data.class_names[i] for i in predicted])
fig, axes = plt.subplots(1, len(local), figsize=(2.2 * len(local), 2.4))
for ax, image, c in zip(axes, local, predicted):
    ax.imshow(image); ax.set_title(data.class_names[c], fontsize=9); ax.axis("off")
show(fig)'''),
    ("md", "## TensorFlow Lite (float32 and dynamic-range int8)"),
    ("code", r'''
import warnings
try:
    from ai_edge_litert.interpreter import Interpreter
except ImportError:
    import tensorflow as tf
    Interpreter = tf.lite.Interpreter
    warnings.filterwarnings("ignore", message=".*tf.lite.Interpreter is deprecated")

for quantize in (None, "dynamic"):
    name = quantize or "float32"
    path = kr.export_tflite(model, os.path.join(WORK, f"model_{name}.tflite"), quantize=quantize)
    interpreter = Interpreter(model_path=path)
    inp = interpreter.get_input_details()[0]
    interpreter.resize_tensor_input(inp["index"], images.shape)
    interpreter.allocate_tensors()
    interpreter.set_tensor(inp["index"], images.astype(inp["dtype"]))
    interpreter.invoke()
    print(f"TFLite {name}: {os.path.getsize(path) / 1e6:.2f} MB "
          f"(Keras weights: {model.count_params() * 4 / 1e6:.2f} MB as float32)")
    parity(f"TFLite {name}", interpreter.get_tensor(interpreter.get_output_details()[0]["index"]),
           atol=1e-5 if quantize is None else 0.05)'''),
    ("md", "## ONNX"),
    ("code", r'''
import importlib.util

if importlib.util.find_spec("tf2onnx") and importlib.util.find_spec("onnxruntime"):
    import onnxruntime as ort

    path = kr.export_onnx(model, os.path.join(WORK, "model.onnx"))
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    print(f"ONNX: {os.path.getsize(path) / 1e6:.2f} MB")
    parity("ONNX (onnxruntime)", session.run(None, {name: images})[0], atol=1e-5)
else:
    print("tf2onnx / onnxruntime not installed: pip install 'kerasrecipes[export]' to run this cell")'''),
    ("code", r'''
fig, ax = plt.subplots(figsize=(7, 3))
names = list(DIFFS)
values = [DIFFS[n][0] if np.isfinite(DIFFS[n][0]) else 1.0 for n in names]
ax.barh(names, [max(v, 1e-9) for v in values],
        color=["tab:green" if DIFFS[n][0] <= DIFFS[n][1] else "tab:red" for n in names])
ax.scatter([DIFFS[n][1] for n in names], names, marker="|", s=300, color="black", label="tolerance")
ax.set_xscale("log"); ax.set_xlabel("max |probability difference| vs model.predict (NaN shown as 1)")
ax.legend(loc="lower right")
show(fig)
failed = {n: d for n, (d, tol) in DIFFS.items() if not d <= tol}
assert not failed, f"exported artefacts disagree with model.predict: {failed}"'''),
]

# ------------------------------------------------------------------------------------------------
# 06 — scale.

NB06 = [
    ("md", r'''
# 6 · Scale: mixed precision, distribution strategies, hyper-parameter search

Three ways to get more out of the hardware and the time you have:

- **mixed precision**: compute in bfloat16/float16, keep float32 master weights and outputs
  (`kr.set_precision`) — 2–3× faster on GPUs/TPUs with tensor cores;
- **data parallelism**: one replica per device, gradients all-reduced (`kr.get_strategy`);
  kerasrecipes batch sizes are *global* (`kr.global_batch_size`);
- **hyper-parameter search** in stages, coarse → fine, pruning hopeless trials (`kr.search`).

This notebook runs on a CPU, so the speed-ups are not the point: the code is the same on a GPU.'''),
    ("code", SETUP),
    ("code", CIFAR),
    ("code", r'''
TRAIN_PER_CLASS, VAL_PER_CLASS = (20, 10) if QUICK else (200, 50)
data = load_cifar_subset(TRAIN_PER_CLASS, VAL_PER_CLASS, batch_size=32)
images, labels = next(iter(data.train))
print(data.num_examples)'''),
    ("md", r'''
## Mixed precision

`kr.set_precision("mixed_bfloat16")` sets Keras' global dtype policy **before** the model is built:
layers compute in bfloat16, variables stay float32, and the `predictions` layer stays float32 so
the loss and the exported probabilities are float32. (`"mixed_float16"` is for GPUs; Keras then adds
loss scaling.) On most CPUs bfloat16 is emulated and *slower* — measured below, honestly.'''),
    ("code", r'''
def time_train_steps(precision, steps=3 if QUICK else 10):
    kr.set_precision(precision)
    try:
        model = kr.build_scratch_cnn(10, image_size=32, normalization_data=data.train)
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
        model.train_on_batch(images, labels)  # compile / trace
        start = time.time()
        for _ in range(steps):
            model.train_on_batch(images, labels)
        seconds = (time.time() - start) / steps
        dense = model.get_layer("head").get_layer("predictions")
        conv = [l for l in model.get_layer("backbone").layers if "conv" in l.name][0]
        return seconds, conv.compute_dtype, conv.variable_dtype, dense.compute_dtype, \
            model.predict(images[:2], verbose=0).dtype
    finally:
        kr.set_precision("float32")


for precision in ("float32", "mixed_bfloat16"):
    seconds, conv_c, conv_v, out_c, out_dtype = time_train_steps(precision)
    print(f"{precision:15s} {1000 * seconds:6.1f} ms/step; conv computes in {conv_c}, stores "
          f"{conv_v}; predictions layer {out_c}; output {out_dtype}")'''),
    ("md", r'''
## Distribution strategies

`kr.get_strategy()` picks `MirroredStrategy` over all GPUs when there are several,
`OneDeviceStrategy` for one GPU, and TensorFlow's default strategy otherwise (here: a CPU).
Build the model under `strategy.scope()`; `kr.fit` / `kr.fine_tune` compile and train under it.'''),
    ("code", r'''
strategy = kr.get_strategy()
print(type(strategy).__name__, "replicas:", strategy.num_replicas_in_sync)
print("global batch for 64 images per replica:", kr.global_batch_size(64, strategy))'''),
    ("md", r'''
To see a real `MirroredStrategy` without GPUs we split the CPU into **two logical devices**. That
must happen before TensorFlow initialises its devices, and TensorFlow is already running in this
kernel — so it runs in a fresh process. Each replica gets half of every global batch and the
gradients are summed across replicas.'''),
    ("code", r'''
script = r"""
import os, sys, time
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import numpy as np
import kerasrecipes as kr

strategy = kr.get_strategy(["/cpu:0", "/cpu:1"])
print(type(strategy).__name__, "replicas:", strategy.num_replicas_in_sync)
rng = np.random.default_rng(0)
y = rng.integers(0, 2, 256).astype("int32")
x = (rng.integers(0, 156, (256, 32, 32, 3)) + 100 * y[:, None, None, None]).astype("uint8")  # bright or dark
data = kr.array_datasets(x, y, validation_split=0.25, batch_size=kr.global_batch_size(16, strategy),
                         seed=0)
with strategy.scope():
    model = kr.build_scratch_cnn(2, image_size=32, filters=8, stages=2, dense_units=(),
                                 normalization_data=x)
start = time.time()
history = kr.fit(model, data.train, data.validation, epochs=int(sys.argv[1]), lr=3e-3, verbose=0)
print(f"{time.time() - start:.1f} s; per-epoch val accuracy",
      [round(v, 3) for v in history.history["val_accuracy"]])
print("variables are mirrored:", type(model.trainable_variables[0].value).__name__)
"""
result = subprocess.run([sys.executable, "-c", script, "1" if QUICK else "4"],
                        capture_output=True, text=True)
print(result.stdout)
if result.returncode:
    print(result.stderr[-3000:])'''),
    ("md", r'''
## Hyper-parameter search

`kr.search` samples learning rate, weight decay and dropout (log-uniform where it matters), trains
each trial briefly, then narrows the ranges around the best and trains the survivors longer.
Trials are stored in SQLite (optuna), so an interrupted search resumes where it stopped.'''),
    ("code", r'''
import warnings
with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # tqdm's "IProgress not found" on import
    import optuna
optuna.logging.set_verbosity(optuna.logging.WARNING)  # kr.search prints one line per trial


def build(params):
    return kr.build_scratch_cnn(10, image_size=32, filters=16, dropout=params["dropout"],
                                normalization_data=data.train)


start = time.time()
found = kr.search(build, data.train, data.validation,
                  trials=(3, 2) if QUICK else (8, 3), epochs=(1, 1) if QUICK else (1, 3),
                  storage=os.path.join(WORK, "search.db"), seed=0, verbose=1)
print(f"{time.time() - start:.0f} s")
print(found.table())
print("best:", found.best_params)
show_png(found.plot(os.path.join(WORK, "search.png")))'''),
]

NOTEBOOKS = {
    "01_scratch_cnn_and_babysitting": NB01,
    "02_lr_finder_and_one_cycle": NB02,
    "03_transfer_learning": NB03,
    "04_regularization_and_ensembles": NB04,
    "05_export_and_serve": NB05,
    "06_scale": NB06,
}


def build(name):
    """The `nbformat` notebook of one entry of `NOTEBOOKS`."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    for kind, source in NOTEBOOKS[name]:
        source = source.strip("\n")
        cell = nbformat.v4.new_markdown_cell(source) if kind == "md" else \
            nbformat.v4.new_code_cell(source)
        nb.cells.append(cell)
    return nb


def execute(nb, timeout=1800):
    """Runs a notebook in a fresh kernel with cwd = notebooks/; raises on the first cell error."""
    from nbclient import NotebookClient

    client = NotebookClient(nb, timeout=timeout, kernel_name="python3",
                            resources={"metadata": {"path": HERE}})
    try:
        client.execute()
    finally:
        for cell in nb.cells:
            if cell.cell_type == "code":
                cell.outputs = [o for o in cell.outputs if not _is_noise(o)]
        shrink_images(nb)
    return nb


def shrink_images(nb, max_bytes=250_000, quality=85):
    """Re-encodes big PNG outputs (photo grids) as JPEG so the saved notebooks stay small."""
    import base64
    import io

    from PIL import Image

    for cell in nb.cells:
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            png = data.get("image/png")
            if png is None or len(png) * 3 // 4 <= max_bytes:
                continue
            image = Image.open(io.BytesIO(base64.b64decode(png))).convert("RGB")
            buffer = io.BytesIO()
            image.save(buffer, format="JPEG", quality=quality)
            del data["image/png"]
            data["image/jpeg"] = base64.b64encode(buffer.getvalue()).decode("ascii")
    return nb


# TensorFlow's C++ start-up chatter (CUDA probing on a CPU machine), which no setting silences.
_NOISE = re.compile(r"^(WARNING: All log messages before absl::InitializeLog|[IWE]\d{4} |"
                    r"To enable the following instructions|\[IPKernelApp\]|INFO: Created TensorFlow Lite)")


def _is_noise(output):
    if output.output_type != "stream" or output.name != "stderr":
        return False
    lines = [line for line in output.text.splitlines() if line.strip()]
    return all(_NOISE.match(line) for line in lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--execute", action="store_true", help="run and save with outputs")
    parser.add_argument("--only", nargs="*", help="notebook name prefixes, e.g. 01 03")
    parser.add_argument("--out", default=HERE, help="folder to write the notebooks to")
    args = parser.parse_args(argv)
    failures = 0
    for name in NOTEBOOKS:
        if args.only and not any(name.startswith(prefix) for prefix in args.only):
            continue
        nb = build(name)
        start = time.time()
        error = None
        if args.execute:
            from nbclient.exceptions import CellExecutionError
            try:
                execute(nb)
            except CellExecutionError as e:  # keep the outputs up to the failing cell
                error = e
        path = os.path.join(args.out, name + ".ipynb")
        nbformat.write(nb, path)
        print(f"{path}: {len(nb.cells)} cells" +
              (f", executed in {time.time() - start:.0f} s" if args.execute else "") +
              (f", FAILED:\n{error}" if error else ""), flush=True)
        failures += error is not None
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
