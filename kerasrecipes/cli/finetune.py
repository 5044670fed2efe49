"""`kerasrecipes finetune`: checks before the scan, the run, `--resume` and the export."""

import errno
import json
import os
import shutil
import sys
import tempfile
import time

from kerasrecipes.cli.arguments import load_data


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


def finetune_command(args):
    import tensorflow as tf

    import kerasrecipes as kr
    from kerasrecipes.saving import replace_dir, save_model

    _check_finetune_args(args)  # Before loading data and building the model.
    data, name = load_data(args)
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
            lr=args.lr, fine_tune_lr=args.fine_tune_lr, lr_mult=args.lr_mult, unfreeze=unfreeze,
            cache_features="auto" if args.cache_features else False, optimizer=args.optimizer,
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
