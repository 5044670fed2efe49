"""The `kerasrecipes` command line: a thin layer over the Python API.

Every flag is checked while the command line is parsed (argparse `type=` validators: exit status
2 and a message that repeats the value, with the closest names for a misspelt one), and the
checks that need several flags or the file system (`--out`, `--weights FILE`) run before any data
is scanned. TensorFlow's native start-up lines are kept off stderr unless `--verbose`.
"""

import argparse
import difflib
import errno
import json
import math
import os
import shutil
import sys
import tempfile
import time

from kerasrecipes.startup import import_tensorflow_quietly

DEMO_IMAGE_SIZE = 128
OPTIMIZERS = ("sgd", "nesterov", "rmsprop", "adagrad", "adam", "adamw")
SCHEDULES = ("one_cycle", "warmup_cosine", "constant", "step", "sgdr")
AUGMENTS = ("none", "light", "standard", "strong")
PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")


# ---------------------------------------------------------------------------------------------
# Flag validators (argparse `type=`): each raises ArgumentTypeError with the value repeated.


def _int_at_least(low):
    def parse(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"must be an integer >= {low}. Received: {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be an integer >= {low}. Received: {value}")
        return value

    return parse


def _float_in(low, high=math.inf, low_open=True, high_open=True, what=None):
    left, right = "(" if low_open else "[", ")" if high_open else "]"
    interval = what or f"a number in {left}{low}, {high}{right}"

    def parse(text):
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {interval}. Received: {text!r}") from None
        too_low = value <= low if low_open else value < low
        too_high = value >= high if high_open else value > high
        if math.isnan(value) or too_low or too_high:
            raise argparse.ArgumentTypeError(f"must be {interval}. Received: {text}")
        return value

    return parse


_positive_int = _int_at_least(1)
_positive_float = _float_in(0.0, what="a positive number")
_non_negative_float = _float_in(0.0, low_open=False, what="a number >= 0")
_fraction = _float_in(0.0, 1.0, what="a fraction in (0, 1), e.g. 0.1")
_probability = _float_in(0.0, 1.0, low_open=False, what="a number in [0, 1)")


def _unknown_name(text, names, what):
    close = difflib.get_close_matches(text.lower(), list(names), n=3, cutoff=0.5)
    hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    return argparse.ArgumentTypeError(
        f"unknown {what} {text!r}.{hint} Choose one of: {', '.join(names)}.")


def _choice(names, what):
    """A `type=` for a fixed set of names that suggests the closest ones for a typo."""

    def parse(text):
        if text in names:
            return text
        if text.lower() in names:
            return text.lower()
        raise _unknown_name(text, names, what)

    return parse


def _backbone(text):
    """A registry name (any case, `-`/`_` ignored) or `hub:<preset>`; suggests close names."""
    if text.startswith("hub:"):
        return text
    import kerasrecipes as kr
    from kerasrecipes.registry import registry_key

    names = kr.list_backbones()
    if registry_key(text) in {registry_key(n) for n in names}:
        return text
    by_key = {registry_key(n): n for n in names}
    close = difflib.get_close_matches(registry_key(text), list(by_key), n=3, cutoff=0.5)
    hint = (f" Did you mean {' or '.join(repr(by_key[c]) for c in close)}?" if close else "")
    raise argparse.ArgumentTypeError(
        f"unknown backbone {text!r}.{hint} See `kerasrecipes backbones` for the list, or pass "
        "hub:<keras-hub preset or folder>.")


def _weights(text):
    if text.lower() in ("imagenet", "none"):
        return text.lower()
    if not os.path.isfile(text):
        raise argparse.ArgumentTypeError(
            f"must be 'imagenet', 'none' or a weights file. Received: {text!r} (no such file)")
    return text


def _unfreeze(text):
    if text in ("all", "gradual"):
        return text
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"must be 'all', 'gradual' or a number of layer groups >= 1. Received: {text!r}"
        ) from None
    if value < 1:
        raise argparse.ArgumentTypeError(
            f"must be 'all', 'gradual' or a number of layer groups >= 1. Received: {value}")
    return str(value)


def _load_data(args):
    """The data of a subcommand: DIR if given, else the embedded demo data. Returns (data, name).

    The data report (per-class counts, then every warning about the data) is printed once,
    before training.
    """
    import warnings

    import kerasrecipes as kr

    options = dict(batch_size=args.batch_size, seed=args.seed, dedupe=args.dedupe,
                   max_image_pixels=args.max_image_pixels)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if args.data is None:
            image_size = args.image_size or DEMO_IMAGE_SIZE
            print(f"[kerasrecipes] no DIR given: using the embedded demo data "
                  f"({image_size} px clothing photos, 10 classes)")
            data = kr.datasets.load_demo(image_size=image_size, **options)
            name, shown = "demo", "the demo data"
        else:
            data = kr.image_folder_datasets(
                args.data, image_size=args.image_size or kr.get_backbone(args.backbone).image_size,
                validation_split=getattr(args, "validation_split", None), **options)
            name, shown = os.path.basename(os.path.normpath(args.data)), args.data
    print(f"[kerasrecipes] data report for {shown}:")
    print("\n".join(f"  {line}" for line in data.report.summary().splitlines()))
    for warning in caught:
        if str(warning.message) not in data.report.warnings:
            warnings.warn_explicit(warning.message, warning.category, warning.filename,
                                   warning.lineno)
    return data, name


def _check_finetune_args(args):
    """The checks that need several flags or the file system, before any data is scanned."""
    from kerasrecipes.optimizers import clipping_arguments
    from kerasrecipes.saving import check_output_dir

    if args.head_epochs + args.epochs == 0:
        raise ValueError("--head-epochs and --epochs are both 0: there is nothing to train.")
    if args.validation_split is not None and args.data is None:
        raise ValueError("--validation-split applies to an image folder DIR; the demo data has "
                         f"its own validation split. Received: --validation-split "
                         f"{args.validation_split}")
    clipping_arguments(args.clipnorm, args.clipvalue, args.global_clipnorm)
    check_output_dir(_finetune_out(args), "--out")
    backup_dir = os.path.abspath(_finetune_out(args)) + ".backup"
    if args.resume and os.path.isdir(backup_dir):
        _check_resumed_arguments(args, backup_dir)


def _finetune_out(args):
    name = "demo" if args.data is None else os.path.basename(os.path.normpath(args.data))
    return args.out or os.path.join("saved_models", f"{name}_{args.backbone}")


# ---------------------------------------------------------------------------------------------
# --resume: the arguments of a run are kept in its backup; a resume must repeat them.

ARGUMENTS_FILE = "arguments.json"
# Not part of what a run computes (--out is the backup's own name).
_NOT_RECORDED = {"func", "command", "resume", "verbose", "argv", "out"}


def _run_arguments(args):
    """The arguments that make a finetune run what it is, as JSON values (paths absolute)."""
    recorded = {k: v for k, v in sorted(vars(args).items()) if k not in _NOT_RECORDED}
    if recorded.get("data") is not None:
        recorded["data"] = os.path.abspath(recorded["data"])
    if recorded.get("weights") not in (None, "imagenet", "none"):
        recorded["weights"] = os.path.abspath(recorded["weights"])
    return recorded


def _flag(key):
    return "DIR" if key == "data" else "--" + key.replace("_", "-")


def _shown(value):
    return "(none: the demo data)" if value is None else (
        json.dumps(value) if isinstance(value, bool) else str(value))


def _check_resumed_arguments(args, backup_dir):
    """Refuses a --resume whose arguments differ from those the backup's run was started with."""
    path = os.path.join(backup_dir, ARGUMENTS_FILE)
    if not os.path.isfile(path):
        print(f"[kerasrecipes] --resume: {backup_dir} does not record the arguments of its run "
              "(an older kerasrecipes wrote it); resuming as if they were the same")
        return
    try:
        with open(path) as f:
            saved = json.load(f)["arguments"]
        saved = dict(saved)
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise ValueError(f"--resume: cannot read {path!r} ({error}). Delete {backup_dir!r} (or "
                         "drop --resume) to start over.") from error
    now = _run_arguments(args)
    differing = [key for key in sorted(set(saved) & set(now)) if saved[key] != now[key]]
    if differing:
        shown = "; ".join(f"{_flag(key)} {_shown(now[key])} (the run being resumed: "
                          f"{_shown(saved[key])})" for key in differing)
        raise ValueError(
            f"--resume: the run in {backup_dir!r} was started with other arguments: {shown}. "
            "Resume it with the arguments it was started with, or drop --resume to start over "
            "(that removes the backup).")


def _record_arguments(args, backup_dir):
    from kerasrecipes.saving import save_json

    save_json(os.path.join(backup_dir, ARGUMENTS_FILE),
              {"arguments": _run_arguments(args), "command": _resume_command(args)})


def _resume_command(args):
    import shlex

    argv = list(getattr(args, "argv", None) or sys.argv[1:])
    if "--resume" not in argv:
        argv.append("--resume")
    return shlex.join(["kerasrecipes", *argv])


def _has_progress(backup_dir):
    """Whether a backup holds a finished stage or epoch."""
    try:
        names = os.listdir(backup_dir)
    except OSError:
        return False
    return "progress.json" in names or any(
        name.endswith("_epochs.jsonl") and os.path.getsize(os.path.join(backup_dir, name))
        for name in names)


def _interrupted_message(args, stop, backup_dir):
    """What the user reads after SIGINT/SIGTERM stopped a finetune run."""
    from kerasrecipes.interrupt import TrainingInterrupted, describe_best

    if isinstance(stop, TrainingInterrupted):
        lines = [f"kerasrecipes finetune: stopped by {stop.signal_name} {stop.where()}."]
    else:
        lines = ["kerasrecipes finetune: interrupted."]
    if not _has_progress(backup_dir):
        lines.append("  No epoch had finished: there is nothing to resume (run the command "
                     "again to start over).")
        return "\n".join(lines)
    lines.append(f"  The backup {backup_dir} keeps the finished stages and the last finished "
                 "epoch.")
    best = getattr(stop, "best", None)
    if best is not None and getattr(stop, "best_model", None):
        lines.append(f"  The best weights so far ({describe_best(best)}) are in "
                     f"{stop.best_model}")
        lines.append(f"  (`kerasrecipes export {stop.best_model} --out DIR` exports them).")
    lines.append("  To continue where it stopped (the interrupted epoch runs again):")
    lines.append(f"    {_resume_command(args)}")
    return "\n".join(lines)


def _finetune(args):
    import tensorflow as tf

    import kerasrecipes as kr
    from kerasrecipes.saving import replace_dir, save_model

    _check_finetune_args(args)  # Before loading data and building the model.
    data, name = _load_data(args)
    image_size = data.image_size
    print(f"[kerasrecipes] classes ({len(data.class_names)}): {', '.join(data.class_names)}")
    weights = None if args.weights == "none" else args.weights
    kr.set_precision(args.precision)
    strategy = kr.get_strategy()  # all local GPUs when there are several
    with strategy.scope():
        model = kr.build_classifier(
            args.backbone, num_classes=len(data.class_names), image_size=image_size,
            weights=weights, augment=args.augment, dropout=args.dropout,
        )
    unfreeze = args.unfreeze if args.unfreeze in ("all", "gradual") else int(args.unfreeze)
    train = data.train
    if args.mixup or args.cutmix:
        train = kr.mix_dataset(train, num_classes=len(data.class_names), mixup_alpha=args.mixup,
                               cutmix_alpha=args.cutmix, seed=args.seed)
    out = os.path.abspath(_finetune_out(args))
    backup_dir = out + ".backup"
    if os.path.isdir(backup_dir) and not args.resume:
        print(f"[kerasrecipes] removing the backup of an unfinished run ({backup_dir}); "
              "pass --resume to continue it instead")
        shutil.rmtree(backup_dir)
    if not os.path.isdir(backup_dir):  # A new run: its arguments, for a later --resume.
        _record_arguments(args, backup_dir)
    start = time.time()
    try:
        # The backup stays until the export below has succeeded: trained weights are never lost.
        history = kr.fine_tune(
            model, train, data.validation, head_epochs=args.head_epochs, epochs=args.epochs,
            lr=args.lr, lr_mult=args.lr_mult, unfreeze=unfreeze, optimizer=args.optimizer,
            weight_decay=args.weight_decay, early_stopping=args.patience,
            label_smoothing=args.label_smoothing, backup_dir=backup_dir, schedule=args.schedule,
            clipnorm=args.clipnorm, clipvalue=args.clipvalue,
            global_clipnorm=args.global_clipnorm, keep_backup=True,
        )
    except KeyboardInterrupt as stop:  # SIGINT/SIGTERM: TrainingInterrupted, after a batch
        print(_interrupted_message(args, stop, backup_dir), file=sys.stderr)
        return getattr(stop, "exit_status", 130)
    seconds = time.time() - start
    for i, stage in enumerate(history.stages):
        acc = history.stage_metric(i, "val_accuracy")
        shown = f"{acc:.4f}" if acc is not None else "n/a (no validation data)"
        print(f"[kerasrecipes] stage {i + 1} ({stage['name']}, {stage['epochs']} epochs): "
              f"best val_accuracy {shown}")
    final = model.evaluate(data.validation, verbose=0, return_dict=True) if data.validation else {}
    metrics = {
        "backbone": args.backbone,
        "image_size": list(model.input_shape[1:3]),
        "class_names": data.class_names,
        "train_seconds": round(seconds, 1),
        "final": {k: float(v) for k, v in final.items()},
        "stages": history.stages,
        "history": history.history,
        "skipped_files": [list(item) for item in data.skipped],
    }
    # Everything is written to a staging folder next to OUT, then swapped in at once: a full
    # disk or a crash while writing leaves the previous OUT as it was.
    os.makedirs(os.path.dirname(out), exist_ok=True)
    staging = tempfile.mkdtemp(prefix=f".{os.path.basename(out)}.", dir=os.path.dirname(out))
    try:
        staged = os.path.join(staging, "out")
        kr.export_saved_model(model, staged, class_names=data.class_names, metadata={
            k: metrics[k] for k in ("backbone", "final", "train_seconds")})
        # The Keras model too, so `kerasrecipes export` can make other formats later.
        save_model(model, os.path.join(staged, "model.keras"))
        with open(os.path.join(staged, "metrics.json"), "w") as f:
            json.dump(metrics, f, indent=2)
        # The curves (history.png) and a verdict per pattern they show (report.md).
        history.report(staged, title=f"Training report: {args.backbone} on {name}")
        replace_dir(staged, out)
    except (OSError, tf.errors.OpError) as error:  # TF's file writes raise OpErrors.
        reason = getattr(error, "strerror", None) or getattr(error, "message", None) or error
        code = getattr(error, "errno", None) or (
            errno.ENOSPC if "No space left" in str(reason) else errno.EIO)
        raise OSError(code, f"Training finished, but writing {out!r} failed: {reason}. The "
                      f"previous content of {out!r} is intact, and the trained weights are kept "
                      f"in {backup_dir!r}: free some space and run the same command with "
                      "--resume to write them without training again.") from error
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    shutil.rmtree(backup_dir, ignore_errors=True)  # The export is in place: the run is done.
    for pattern, message in history.diagnose():
        if pattern != "healthy":
            print(f"[kerasrecipes] curves: {pattern}: {message}")
    if final:
        print(f"[kerasrecipes] final validation accuracy {final.get('accuracy', float('nan')):.4f}"
              f" after {seconds:.0f} s of training")
    print(f"[kerasrecipes] wrote {out} (SavedModel, model.keras, metrics.json, history.png, "
          "report.md)")
    stopped = [stage for stage in history.stages if stage.get("stopped")]
    if stopped:  # A NaN/inf loss: the export has the best weights from before it.
        from kerasrecipes.interrupt import describe_best

        stage = stopped[0]
        restored = stage.get("restored")
        kept = (f"the best weights so far ({describe_best(restored)})" if restored else
                "the weights from before the divergence")
        print(f"kerasrecipes finetune: training stopped early in stage {stage['name']!r}: the "
              f"{stage['stopped']}. {out} has {kept}; the later stages were skipped. The "
              "learning rate is probably too high: try a 3-10x lower --lr (`kerasrecipes "
              "lr-find` suggests one).", file=sys.stderr)
        return 1
    return 0


def _predict(args):
    import numpy as np

    import kerasrecipes as kr

    paths = list(args.items)
    if paths and os.path.isdir(paths[0]):
        from kerasrecipes.export import load_exported

        loaded, info = load_exported(paths.pop(0))
        names = info.get("class_names")
        size = tuple(info["image_size"])

        def predict(images):
            return np.asarray(loaded.serve(images)["probabilities"])
    else:
        from kerasrecipes import efficientnet_lite, imagenet

        model = efficientnet_lite.EfficientNetLite0(include_top=True, weights="imagenet")
        names = imagenet.class_names()
        size = tuple(model.input_shape[1:3])

        def predict(images):
            return np.asarray(model.predict(images, verbose=0))
    if not paths:
        print("error: give at least one image path", file=sys.stderr)
        return 2
    # Each file on its own: a bad one is named and skipped, the others are predicted. In
    # chunks, so that thousands of paths do not sit in memory at once.
    failed = []
    for start in range(0, len(paths), _PREDICT_CHUNK):
        good, images = [], []
        for path in paths[start: start + _PREDICT_CHUNK]:
            try:
                images.append(kr.load_image(path, image_size=size))
                good.append(path)
            except (ValueError, OSError) as error:
                failed.append(path)
                print(f"[kerasrecipes] skipped {path}: {error}", file=sys.stderr)
        if not images:
            continue
        for path, probs in zip(good, predict(np.stack(images))):
            print(path)
            for index in np.argsort(-probs)[: args.top]:
                name = names[index] if names else str(index)
                print(f"  {probs[index]:.4f}  {index:4d}  {name}")
    if failed:
        print(f"[kerasrecipes] {len(failed)} of {len(paths)} files could not be read: "
              f"{', '.join(failed[:5])}{' …' if len(failed) > 5 else ''}", file=sys.stderr)
        return 1
    return 0


_PREDICT_CHUNK = 32


def _serve(args):
    from kerasrecipes import serving

    return serving.run(
        args.model_dir, host=args.host, port=args.port, workers=args.workers,
        name=args.model_name, max_batch=args.max_batch, batch_timeout_ms=args.batch_timeout_ms,
        max_queue=args.max_queue, max_request_bytes=args.max_request_bytes,
        max_image_pixels=args.max_image_pixels, drain_timeout=args.drain_timeout,
        log_level=args.log_level,
    )


EXPORT_FORMATS = ("savedmodel", "tflite", "tflite-dynamic", "onnx", "openvino")


def _export(args):
    from kerasrecipes import export

    formats = [f.strip() for f in args.formats.split(",") if f.strip()]
    unknown = sorted(set(formats) - set(EXPORT_FORMATS))
    if unknown or not formats:
        raise ValueError(f"--formats takes a comma-separated subset of {', '.join(EXPORT_FORMATS)}."
                         f" Received: {args.formats!r}")
    from kerasrecipes.saving import load_model

    if not os.path.exists(args.model):
        raise ValueError(f"No such model file: {args.model!r} (a .keras file, e.g. the "
                         "model.keras that `kerasrecipes finetune` writes).")
    model = load_model(args.model)
    class_names = None
    labels = args.labels or os.path.join(os.path.dirname(args.model), export.LABELS_FILE)
    if os.path.isfile(labels):
        with open(labels) as f:
            class_names = [line.strip() for line in f if line.strip()]
    os.makedirs(args.out, exist_ok=True)
    for fmt in formats:
        if fmt == "savedmodel":
            path = export.export_saved_model(model, os.path.join(args.out, "saved_model"),
                                             class_names=class_names)
        elif fmt == "onnx":
            path = export.export_onnx(model, os.path.join(args.out, "model.onnx"))
        elif fmt == "openvino":
            path = export.export_openvino(model, os.path.join(args.out, "model.xml"))
        else:
            quantize = "dynamic" if fmt == "tflite-dynamic" else None
            path = export.export_tflite(model, os.path.join(args.out, f"model_{fmt}.tflite"),
                                        quantize=quantize)
        print(f"[kerasrecipes] {fmt}: {path}")
    return 0


def _lr_find(args):
    import kerasrecipes as kr
    from kerasrecipes.saving import check_output_dir

    if args.max_lr <= args.min_lr:  # Before the data scan.
        raise ValueError(f"--max-lr must be larger than --min-lr. Received: --min-lr "
                         f"{args.min_lr} --max-lr {args.max_lr}")
    check_output_dir(os.path.dirname(os.path.abspath(args.out)), "--out", replaced=False)
    data, _ = _load_data(args)
    image_size = data.image_size
    weights = None if args.weights == "none" else args.weights
    model = kr.build_classifier(args.backbone, num_classes=len(data.class_names),
                                image_size=image_size, weights=weights, augment=args.augment)
    # Frozen and compiled as fine_tune's head stage, or its stage after unfreeze="all".
    result = kr.find_stage_lr(model, data.train, stage=args.stage, lr_mult=args.lr_mult,
                              optimizer=args.optimizer, min_lr=args.min_lr, max_lr=args.max_lr,
                              num_steps=args.num_steps)
    out = args.out
    if os.path.dirname(out):
        os.makedirs(os.path.dirname(out), exist_ok=True)
    result.plot(out)
    for method, lr in result.suggestions().items():
        shown = f"{lr:.3g}" if lr is not None else "n/a (curve too short or flat)"
        print(f"{method:8s} {shown}")
    print(f"[kerasrecipes] {len(result.lrs)} steps in {result.seconds:.0f} s; wrote {out}")
    return 0


def _backbones(args):
    import kerasrecipes as kr

    for name in kr.list_backbones():
        spec = kr.get_backbone(name)
        print(f"{name:20s} {spec.image_size:4d} px  {spec.source}")
    return 0


def _doctor(args):
    import kerasrecipes as kr
    from kerasrecipes.saving import check_output_dir

    check_output_dir(args.out, "--out", replaced=False)  # Before the data scan.
    data, _ = _load_data(args)
    image_size = data.image_size
    weights = None if args.weights == "none" else args.weights
    model = kr.build_classifier(args.backbone, num_classes=len(data.class_names),
                                image_size=image_size, weights=weights, dropout=args.dropout)
    report = kr.doctor(
        model, data.train, data.validation, out_dir=args.out, class_names=data.class_names,
        overfit_batches=args.overfit_batches, overfit_steps=args.overfit_steps,
        overfit_lr=args.overfit_lr, lr_finder=not args.no_lr_finder,
        lr_finder_steps=args.lr_finder_steps,
    )
    return 0 if report.ok else 1


def _add_data_arguments(parser):
    """The flags of the data a training subcommand scans (finetune, lr-find, doctor)."""
    parser.add_argument("--backbone", default="efficientnet_lite0", type=_backbone,
                        help="see `kerasrecipes backbones`")
    parser.add_argument("--weights", default="imagenet", type=_weights,
                        help="'imagenet', 'none' or a weights file")
    parser.add_argument("--image-size", type=_positive_int, default=None,
                        help=f"default: the backbone's (demo data: {DEMO_IMAGE_SIZE})")
    parser.add_argument("--batch-size", type=_positive_int, default=32)
    parser.add_argument("--dedupe", action="store_true",
                        help="drop exact duplicate files before training: a copy in train of a "
                        "validation/test image goes, evaluation stays as it is (the data report "
                        "lists duplicates either way)")
    parser.add_argument("--max-image-pixels", type=_positive_int, default=89_478_485,
                        help="images with more pixels are refused from their header, undecoded "
                        "(default: PIL's limit, 89,478,485)")


def build_parser():
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--verbose", action="store_true", default=argparse.SUPPRESS,
                        help="keep TensorFlow's native start-up log lines")
    parser = argparse.ArgumentParser(
        prog="kerasrecipes", description="Train image classifiers the way the best do.",
        parents=[common],
    )
    sub = parser.add_subparsers(dest="command", required=True)

    ft = sub.add_parser("finetune", parents=[common],
                        help="fine-tune a pretrained backbone on an image folder")
    ft.add_argument("data", nargs="?", help="image folder (root/<class>/* or root/train|validation"
                    "/<class>/*); omit to use the embedded demo data")
    _add_data_arguments(ft)
    ft.add_argument("--head-epochs", type=_int_at_least(0), default=2)
    ft.add_argument("--epochs", type=_int_at_least(0), default=4, help="epochs after unfreezing")
    ft.add_argument("--lr", type=_positive_float, default=1e-3, help="head-stage peak learning "
                    "rate")
    ft.add_argument("--lr-mult", type=_float_in(1.0, low_open=False, what="a number >= 1"),
                    default=10.0, help="head LR / first-group LR after unfreezing")
    ft.add_argument("--unfreeze", default="all", type=_unfreeze,
                    help="'all', 'gradual' or N (top N groups)")
    ft.add_argument("--optimizer", default="adamw", type=_choice(OPTIMIZERS, "optimizer"),
                    help=f"one of {', '.join(OPTIMIZERS)} (default: adamw)")
    ft.add_argument("--weight-decay", type=_non_negative_float, default=None)
    ft.add_argument("--schedule", default="one_cycle", type=_choice(SCHEDULES, "schedule"),
                    help=f"LR schedule of each stage: {', '.join(SCHEDULES)}; one_cycle also "
                    "cycles the momentum (default: one_cycle)")
    clip = ft.add_mutually_exclusive_group()
    clip.add_argument("--clipnorm", type=float, default=None, metavar="NORM",
                      help="clip each gradient to this norm")
    clip.add_argument("--clipvalue", type=float, nargs="?", const=5.0, default=None,
                      metavar="VALUE",
                      help="clip gradient elements to [-VALUE, VALUE]; without VALUE: 5, the "
                           "classic recipe")
    clip.add_argument("--global-clipnorm", type=float, default=None, metavar="NORM",
                      help="scale all gradients together to at most this global norm")
    ft.add_argument("--augment", default="light", type=_choice(AUGMENTS, "augment preset"),
                    help=f"one of {', '.join(AUGMENTS)} (default: light)")
    ft.add_argument("--mixup", type=_non_negative_float, default=0.0, metavar="ALPHA",
                    help="MixUp Beta(alpha, alpha); 0 = off (with --cutmix: random switch)")
    ft.add_argument("--cutmix", type=_non_negative_float, default=0.0, metavar="ALPHA",
                    help="CutMix Beta(alpha, alpha); 0 = off")
    ft.add_argument("--label-smoothing", type=_probability, default=0.0)
    ft.add_argument("--dropout", type=_probability, default=0.2)
    ft.add_argument("--patience", type=_int_at_least(0), default=3,
                    help="early-stopping patience")
    ft.add_argument("--validation-split", type=_fraction, default=None,
                    help="fraction held out when DIR has no validation folder (default 0.1)")
    ft.add_argument("--seed", type=int, default=42)
    ft.add_argument("--resume", action="store_true",
                    help="continue an interrupted run (Ctrl-C, SIGTERM, a crash, a failed "
                    "export) with the same arguments: at most one epoch is lost; the backup "
                    "lives in OUT.backup until the export is written. Other arguments than the "
                    "run's are refused, named")
    ft.add_argument("--precision", default="float32", type=_choice(PRECISIONS, "precision"),
                    help="mixed precision for GPUs/TPUs (outputs stay float32): "
                    f"{', '.join(PRECISIONS)}")
    ft.add_argument("--out", default=None, help="export directory (default saved_models/...); "
                    "replaced as a whole, so it must be new, empty or an earlier export")
    ft.set_defaults(func=_finetune)

    pr = sub.add_parser("predict", parents=[common],
                        help="top-k classes of images ([MODEL_DIR] IMAGE...)")
    pr.add_argument("items", nargs="+", metavar="MODEL_DIR_OR_IMAGE",
                    help="an exported model directory (optional), then image paths; without a "
                    "model directory the ImageNet EfficientNet-Lite0 classifier is used")
    pr.add_argument("--top", type=int, default=5)
    pr.set_defaults(func=_predict)

    ex = sub.add_parser("export", parents=[common],
                        help="export a .keras model as SavedModel / TFLite / ONNX / "
                        "OpenVINO")
    ex.add_argument("model", help="a .keras file (finetune writes OUT/model.keras)")
    ex.add_argument("--out", required=True, help="output directory")
    ex.add_argument("--formats", default="savedmodel,tflite,tflite-dynamic,onnx",
                    help=f"comma-separated subset of {','.join(EXPORT_FORMATS)}")
    ex.add_argument("--labels", default=None,
                    help="labels.txt with one class name a line (default: next to the model)")
    ex.set_defaults(func=_export)

    sv = sub.add_parser("serve", parents=[common],
                        help="serve an exported model over HTTP (TF Serving's REST API "
                        "with dynamic batching, plus POST /predict for file uploads)")
    sv.add_argument("model_dir", metavar="SAVED_MODEL_DIR",
                    help="an export (finetune's --out, kr.export_saved_model) or a TF Serving "
                    "base directory with numeric versions")
    sv.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0: all)")
    sv.add_argument("--port", type=int, default=8501, help="TCP port (0: a free one); 8501 is "
                    "TF Serving's REST port")
    sv.add_argument("--workers", type=int, default=1,
                    help="server processes, each with its own copy of the model")
    sv.add_argument("--model-name", default=None,
                    help="the <name> in /v1/models/<name> (default: the directory's name)")
    sv.add_argument("--max-batch", type=int, default=32,
                    help="most images in one model call; 1 turns batching off")
    sv.add_argument("--batch-timeout-ms", type=float, default=2.0,
                    help="how long a batch waits for more images after its first one")
    sv.add_argument("--max-queue", type=int, default=256,
                    help="most images waiting for the model; beyond it: 503 + Retry-After")
    sv.add_argument("--max-request-bytes", type=int, default=32 * 2**20,
                    help="largest request body; beyond it: 413 (default 32 MiB)")
    sv.add_argument("--max-image-pixels", type=int, default=50_000_000,
                    help="images with more pixels are refused by their header, undecoded")
    sv.add_argument("--drain-timeout", type=float, default=30.0,
                    help="seconds SIGTERM waits for in-flight requests before exiting")
    sv.add_argument("--log-level", default="warning",
                    choices=["critical", "error", "warning", "info", "debug"],
                    help="uvicorn's log level; info also logs every request")
    sv.set_defaults(func=_serve)

    lf = sub.add_parser("lr-find", parents=[common],
                        help="learning-rate range test: plot and suggested LRs")
    lf.add_argument("data", nargs="?", help="image folder; omit to use the embedded demo data")
    _add_data_arguments(lf)
    lf.add_argument("--stage", default="head", type=_choice(("head", "all"), "stage"),
                    help="'head': backbone frozen (the first stage of finetune); 'all': every "
                    "group trainable with discriminative LRs (--lr-mult)")
    lf.add_argument("--lr-mult", type=_float_in(1.0, low_open=False, what="a number >= 1"),
                    default=10.0)
    lf.add_argument("--optimizer", default="adamw", type=_choice(OPTIMIZERS, "optimizer"),
                    help=f"one of {', '.join(OPTIMIZERS)} (default: adamw)")
    lf.add_argument("--augment", default="light", type=_choice(AUGMENTS, "augment preset"),
                    help=f"one of {', '.join(AUGMENTS)} (default: light)")
    lf.add_argument("--min-lr", type=_positive_float, default=1e-7)
    lf.add_argument("--max-lr", type=_positive_float, default=10.0)
    lf.add_argument("--num-steps", type=_int_at_least(2), default=100)
    lf.add_argument("--seed", type=int, default=42)
    lf.add_argument("--out", default="lr_find.png", help="PNG of the curve")
    lf.set_defaults(func=_lr_find)

    bb = sub.add_parser("backbones", parents=[common], help="list registered backbones")
    bb.set_defaults(func=_backbones)

    dr = sub.add_parser("doctor", parents=[common],
                        help="sanity checks before training: initial loss, overfit a "
                        "few batches, inputs, labels, activation/loss, LR range test; writes a "
                        "Markdown report (exit status 1 when a check fails)")
    dr.add_argument("data", nargs="?", help="image folder, as for finetune; omit to use the "
                    "embedded demo data")
    _add_data_arguments(dr)
    dr.add_argument("--dropout", type=_probability, default=0.2)
    # Small defaults keep the demo run to a few minutes on 2 CPU cores.
    dr.add_argument("--overfit-batches", type=_positive_int, default=2)
    dr.add_argument("--overfit-steps", type=_positive_int, default=80)
    dr.add_argument("--overfit-lr", type=_positive_float, default=1e-3)
    dr.add_argument("--lr-finder-steps", type=_int_at_least(2), default=40)
    dr.add_argument("--no-lr-finder", action="store_true", help="skip the LR range test")
    dr.add_argument("--validation-split", type=_fraction, default=None)
    dr.add_argument("--seed", type=int, default=42)
    dr.add_argument("--out", default="doctor_report", help="report folder")
    dr.set_defaults(func=_doctor)
    return parser


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    # Before parsing: the --backbone check imports kerasrecipes, and so TensorFlow.
    if "--verbose" not in argv and not {"-h", "--help"} & set(argv):
        import_tensorflow_quietly()  # Run by `import kerasrecipes` already for the script.
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exit:  # A bad flag (status 2, message printed) or --help (0).
        return exit.code
    args.argv = argv  # For the --resume command line that an interrupted finetune prints.
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print(f"kerasrecipes {args.command}: interrupted", file=sys.stderr)
        return 130
    except (ValueError, FileNotFoundError, ImportError) as error:
        print(f"kerasrecipes {args.command}: error: {error}", file=sys.stderr)
        return 2
    except OSError as error:  # A full disk, a read-only folder: said plainly, no traceback.
        print(f"kerasrecipes {args.command}: error: {error.strerror or error}", file=sys.stderr)
        return 1
    except Exception as error:
        # TensorFlow's file writes (SavedModel, TFLite) raise OpErrors, e.g. ResourceExhausted
        # for a full disk: the same plain message.
        tf = sys.modules.get("tensorflow")
        if tf is None or not isinstance(error, tf.errors.OpError):
            raise
        print(f"kerasrecipes {args.command}: error: {error.message}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
