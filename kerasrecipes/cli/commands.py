"""The other subcommands: `predict`, `serve`, `export`, `lr-find`, `backbones`, `doctor`."""

import os
import sys

from kerasrecipes.cli.arguments import load_data


def predict_command(args):
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


def serve_command(args):
    from kerasrecipes import serving

    return serving.run(
        args.model_dir, host=args.host, port=args.port, workers=args.workers,
        name=args.model_name, max_batch=args.max_batch, batch_timeout_ms=args.batch_timeout_ms,
        max_queue=args.max_queue, max_request_bytes=args.max_request_bytes,
        max_image_pixels=args.max_image_pixels, drain_timeout=args.drain_timeout,
        log_level=args.log_level,
    )


EXPORT_FORMATS = ("savedmodel", "tflite", "tflite-dynamic", "onnx", "openvino")


def export_command(args):
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


def lr_find_command(args):
    import kerasrecipes as kr
    from kerasrecipes.saving import check_output_dir

    if args.max_lr <= args.min_lr:  # Before the data scan.
        raise ValueError(f"--max-lr must be larger than --min-lr. Received: --min-lr "
                         f"{args.min_lr} --max-lr {args.max_lr}")
    check_output_dir(os.path.dirname(os.path.abspath(args.out)), "--out", replaced=False)
    data, _ = load_data(args)
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


def backbones_command(args):
    import kerasrecipes as kr

    for name in kr.list_backbones():
        spec = kr.get_backbone(name)
        print(f"{name:20s} {spec.image_size:4d} px  {spec.source}")
    return 0


def doctor_command(args):
    import kerasrecipes as kr
    from kerasrecipes.saving import check_output_dir

    check_output_dir(args.out, "--out", replaced=False)  # Before the data scan.
    data, _ = load_data(args)
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
