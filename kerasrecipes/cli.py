"""The `kerasrecipes` command line: a thin layer over the Python API."""

import argparse
import json
import os
import shutil
import sys
import time

DEMO_IMAGE_SIZE = 128


def _load_data(args):
    """The data of a subcommand: DIR if given, else the embedded demo data. Returns (data, name)."""
    import kerasrecipes as kr

    if args.data is None:
        image_size = args.image_size or DEMO_IMAGE_SIZE
        print(f"[kerasrecipes] no DIR given: using the embedded demo data "
              f"({image_size} px clothing photos, 10 classes)")
        data = kr.datasets.load_demo(image_size=image_size, batch_size=args.batch_size,
                                     seed=args.seed)
        return data, "demo"
    data = kr.image_folder_datasets(
        args.data, image_size=args.image_size or kr.get_backbone(args.backbone).image_size,
        batch_size=args.batch_size, validation_split=getattr(args, "validation_split", None),
        seed=args.seed,
    )
    return data, os.path.basename(os.path.normpath(args.data))


def _finetune(args):
    import kerasrecipes as kr
    from kerasrecipes.optimizers import clipping_arguments

    # Before loading data and building the model.
    clipping_arguments(args.clipnorm, args.clipvalue, args.global_clipnorm)
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
    out = args.out or os.path.join("saved_models", f"{name}_{args.backbone}")
    backup_dir = os.path.abspath(out) + ".backup"
    if os.path.isdir(backup_dir) and not args.resume:
        print(f"[kerasrecipes] removing the backup of an unfinished run ({backup_dir}); "
              "pass --resume to continue it instead")
        shutil.rmtree(backup_dir)
    start = time.time()
    history = kr.fine_tune(
        model, train, data.validation, head_epochs=args.head_epochs, epochs=args.epochs,
        lr=args.lr, lr_mult=args.lr_mult, unfreeze=unfreeze, optimizer=args.optimizer,
        weight_decay=args.weight_decay, early_stopping=args.patience,
        label_smoothing=args.label_smoothing, backup_dir=backup_dir, schedule=args.schedule,
        clipnorm=args.clipnorm, clipvalue=args.clipvalue, global_clipnorm=args.global_clipnorm,
    )
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
    kr.export_saved_model(model, out, class_names=data.class_names,
                          metadata={k: metrics[k] for k in ("backbone", "final", "train_seconds")})
    # The Keras model too, so `kerasrecipes export` can make other formats later.
    model.save(os.path.join(out, "model.keras"))
    with open(os.path.join(out, "metrics.json"), "w") as f:
        json.dump(metrics, f, indent=2)
    # The curves (history.png) and a verdict per pattern they show (report.md).
    history.report(out, title=f"Training report: {args.backbone} on {name}")
    for pattern, message in history.diagnose():
        if pattern != "healthy":
            print(f"[kerasrecipes] curves: {pattern}: {message}")
    if final:
        print(f"[kerasrecipes] final validation accuracy {final.get('accuracy', float('nan')):.4f}"
              f" after {seconds:.0f} s of training")
    print(f"[kerasrecipes] wrote {out} (SavedModel, model.keras, metrics.json, history.png, "
          "report.md)")
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
    import keras

    import kerasrecipes  # noqa: F401  (registers the custom layers and optimizers)
    from kerasrecipes import export

    formats = [f.strip() for f in args.formats.split(",") if f.strip()]
    unknown = sorted(set(formats) - set(EXPORT_FORMATS))
    if unknown or not formats:
        raise ValueError(f"--formats takes a comma-separated subset of {', '.join(EXPORT_FORMATS)}."
                         f" Received: {args.formats!r}")
    if not os.path.isfile(args.model):
        raise ValueError(f"No such model file: {args.model!r} (a .keras file, e.g. the "
                         "model.keras that `kerasrecipes finetune` writes).")
    model = keras.saving.load_model(args.model)
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
    from kerasrecipes.tasks import default_loss, task_of
    from kerasrecipes.train import (
        discriminative_multipliers, group_lr_multipliers, set_trainable_groups,
    )

    data, _ = _load_data(args)
    image_size = data.image_size
    weights = None if args.weights == "none" else args.weights
    model = kr.build_classifier(args.backbone, num_classes=len(data.class_names),
                                image_size=image_size, weights=weights, augment=args.augment)
    groups = kr.infer_layer_groups(model.get_layer("backbone"))
    multipliers = None
    if args.stage == "head":
        set_trainable_groups(model, groups, [])
    else:
        # As fine_tune after unfreezing: group i of n gets lr_mult ** ((i - n) / n).
        set_trainable_groups(model, groups, list(groups), train_bn=False)
        multipliers = group_lr_multipliers(model, discriminative_multipliers(groups,
                                                                             args.lr_mult))
    model.compile(optimizer=kr.get_optimizer(args.optimizer, args.min_lr,
                                             lr_multipliers=multipliers),
                  loss=default_loss(task_of(model)))
    result = kr.find_lr(model, data.train, min_lr=args.min_lr, max_lr=args.max_lr,
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


def build_parser():
    parser = argparse.ArgumentParser(
        prog="kerasrecipes", description="Train image classifiers the way the best do."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    ft = sub.add_parser("finetune", help="fine-tune a pretrained backbone on an image folder")
    ft.add_argument("data", nargs="?", help="image folder (root/<class>/* or root/train|validation"
                    "/<class>/*); omit to use the embedded demo data")
    ft.add_argument("--backbone", default="efficientnet_lite0", help="see `kerasrecipes backbones`")
    ft.add_argument("--weights", default="imagenet", help="'imagenet', 'none' or a weights file")
    ft.add_argument("--image-size", type=int, default=None, help="default: the backbone's "
                    f"(demo data: {DEMO_IMAGE_SIZE})")
    ft.add_argument("--batch-size", type=int, default=32)
    ft.add_argument("--head-epochs", type=int, default=2)
    ft.add_argument("--epochs", type=int, default=4, help="epochs after unfreezing")
    ft.add_argument("--lr", type=float, default=1e-3, help="head-stage peak learning rate")
    ft.add_argument("--lr-mult", type=float, default=10.0,
                    help="head LR / first-group LR after unfreezing")
    ft.add_argument("--unfreeze", default="all", help="'all', 'gradual' or N (top N groups)")
    ft.add_argument("--optimizer", default="adamw",
                    choices=["sgd", "nesterov", "rmsprop", "adagrad", "adam", "adamw"])
    ft.add_argument("--weight-decay", type=float, default=None)
    ft.add_argument("--schedule", default="one_cycle",
                    choices=["one_cycle", "warmup_cosine", "constant", "step", "sgdr"],
                    help="LR schedule of each stage; one_cycle also cycles the momentum "
                    "(default: one_cycle)")
    clip = ft.add_mutually_exclusive_group()
    clip.add_argument("--clipnorm", type=float, default=None, metavar="NORM",
                      help="clip each gradient to this norm")
    clip.add_argument("--clipvalue", type=float, nargs="?", const=5.0, default=None,
                      metavar="VALUE",
                      help="clip gradient elements to [-VALUE, VALUE]; without VALUE: 5, the "
                           "classic recipe")
    clip.add_argument("--global-clipnorm", type=float, default=None, metavar="NORM",
                      help="scale all gradients together to at most this global norm")
    ft.add_argument("--augment", default="light", choices=["none", "light", "standard", "strong"])
    ft.add_argument("--mixup", type=float, default=0.0, metavar="ALPHA",
                    help="MixUp Beta(alpha, alpha); 0 = off (with --cutmix: random switch)")
    ft.add_argument("--cutmix", type=float, default=0.0, metavar="ALPHA",
                    help="CutMix Beta(alpha, alpha); 0 = off")
    ft.add_argument("--label-smoothing", type=float, default=0.0)
    ft.add_argument("--dropout", type=float, default=0.2)
    ft.add_argument("--patience", type=int, default=3, help="early-stopping patience")
    ft.add_argument("--validation-split", type=float, default=None,
                    help="fraction held out when DIR has no validation folder (default 0.1)")
    ft.add_argument("--seed", type=int, default=42)
    ft.add_argument("--resume", action="store_true",
                    help="continue an interrupted run with the same --out (at most one epoch "
                    "lost; the backup lives in OUT.backup until the run completes)")
    ft.add_argument("--precision", default="float32",
                    choices=["float32", "mixed_float16", "mixed_bfloat16"],
                    help="mixed precision for GPUs/TPUs (outputs stay float32)")
    ft.add_argument("--out", default=None, help="export directory (default saved_models/...)")
    ft.set_defaults(func=_finetune)

    pr = sub.add_parser("predict", help="top-k classes of images ([MODEL_DIR] IMAGE...)")
    pr.add_argument("items", nargs="+", metavar="MODEL_DIR_OR_IMAGE",
                    help="an exported model directory (optional), then image paths; without a "
                    "model directory the ImageNet EfficientNet-Lite0 classifier is used")
    pr.add_argument("--top", type=int, default=5)
    pr.set_defaults(func=_predict)

    ex = sub.add_parser("export", help="export a .keras model as SavedModel / TFLite / ONNX / "
                        "OpenVINO")
    ex.add_argument("model", help="a .keras file (finetune writes OUT/model.keras)")
    ex.add_argument("--out", required=True, help="output directory")
    ex.add_argument("--formats", default="savedmodel,tflite,tflite-dynamic,onnx",
                    help=f"comma-separated subset of {','.join(EXPORT_FORMATS)}")
    ex.add_argument("--labels", default=None,
                    help="labels.txt with one class name a line (default: next to the model)")
    ex.set_defaults(func=_export)

    sv = sub.add_parser("serve", help="serve an exported model over HTTP (TF Serving's REST API "
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

    lf = sub.add_parser("lr-find", help="learning-rate range test: plot and suggested LRs")
    lf.add_argument("data", nargs="?", help="image folder; omit to use the embedded demo data")
    lf.add_argument("--backbone", default="efficientnet_lite0", help="see `kerasrecipes backbones`")
    lf.add_argument("--weights", default="imagenet", help="'imagenet', 'none' or a weights file")
    lf.add_argument("--image-size", type=int, default=None)
    lf.add_argument("--batch-size", type=int, default=32)
    lf.add_argument("--stage", default="head", choices=["head", "all"],
                    help="'head': backbone frozen (the first stage of finetune); 'all': every "
                    "group trainable with discriminative LRs (--lr-mult)")
    lf.add_argument("--lr-mult", type=float, default=10.0)
    lf.add_argument("--optimizer", default="adamw",
                    choices=["sgd", "nesterov", "rmsprop", "adagrad", "adam", "adamw"])
    lf.add_argument("--augment", default="light", choices=["none", "light", "standard", "strong"])
    lf.add_argument("--min-lr", type=float, default=1e-7)
    lf.add_argument("--max-lr", type=float, default=10.0)
    lf.add_argument("--num-steps", type=int, default=100)
    lf.add_argument("--seed", type=int, default=42)
    lf.add_argument("--out", default="lr_find.png", help="PNG of the curve")
    lf.set_defaults(func=_lr_find)

    bb = sub.add_parser("backbones", help="list registered backbones")
    bb.set_defaults(func=_backbones)

    dr = sub.add_parser("doctor", help="sanity checks before training: initial loss, overfit a "
                        "few batches, inputs, labels, activation/loss, LR range test; writes a "
                        "Markdown report (exit status 1 when a check fails)")
    dr.add_argument("data", nargs="?", help="image folder, as for finetune; omit to use the "
                    "embedded demo data")
    dr.add_argument("--backbone", default="efficientnet_lite0")
    dr.add_argument("--weights", default="imagenet", help="'imagenet', 'none' or a weights file")
    dr.add_argument("--image-size", type=int, default=None, help="default: the backbone's "
                    f"(demo data: {DEMO_IMAGE_SIZE})")
    dr.add_argument("--batch-size", type=int, default=32)
    dr.add_argument("--dropout", type=float, default=0.2)
    # Small defaults keep the demo run to a few minutes on 2 CPU cores.
    dr.add_argument("--overfit-batches", type=int, default=2)
    dr.add_argument("--overfit-steps", type=int, default=80)
    dr.add_argument("--overfit-lr", type=float, default=1e-3)
    dr.add_argument("--lr-finder-steps", type=int, default=40)
    dr.add_argument("--no-lr-finder", action="store_true", help="skip the LR range test")
    dr.add_argument("--validation-split", type=float, default=None)
    dr.add_argument("--seed", type=int, default=42)
    dr.add_argument("--out", default="doctor_report", help="report folder")
    dr.set_defaults(func=_doctor)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError, ImportError) as error:
        print(f"kerasrecipes {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
