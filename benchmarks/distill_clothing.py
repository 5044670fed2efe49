"""Does knowledge distillation help a small scratch CNN on the clothing photos?

Teacher: EfficientNet-Lite0 with ImageNet weights at 128 px (`kr.build_classifier`), head trained
on the frozen backbone (20 epochs; no fine-tune, for the CPU budget); trained once, seed 0. With
the backbone frozen (BatchNorm in inference mode) and no augmentation, `kr.fine_tune`'s head stage
depends on the images only through the backbone's features, so they are computed once and the
head trains on them. The teacher's softmax outputs on the (un-augmented) 128 px training and
validation images are cached in the students' batches (`kr.distill(None, ...)`): the teacher
costs one forward pass, not one per student epoch.

Student: `kr.build_scratch_cnn` at 64 px (the 128 px images downsized once, antialiased): 3 stages
of 16 → 32 → 64 filters, no hidden Dense layer, head dropout 0.2, 73k parameters, the "light"
augmentation (flip, ±10% translation and zoom). Trained (a) alone on the labels with `kr.fit` and
(b) with `kr.distill` from the cached teacher outputs (temperature 4, distillation weight
`--alpha`, 0.9 by default), with the same epochs (12), peak learning rate (3e-3), optimizer (AdamW,
warmup-cosine), data order and initial weights for a given seed; two seeds. Validation accuracy is
the last epoch's (equal epochs, no early stopping or best-epoch picking).

It needs about 32 CPU-minutes (1,901 CPU-s measured; each student ~420-460 CPU-s); the wall time
depends on what else runs on the cores: 57 min measured on the shared 2-core CPU at load average
~9 from other jobs, ~8 min per student at load ~3.5. Lower `--student-epochs` to go faster.

    nice -n 10 .venv/bin/python benchmarks/distill_clothing.py --data ../shared/data/clothing \
        --out /tmp/distill_clothing.json

Prints a Markdown table and writes the per-run results as JSON to `--out` (a `.json` file, or a
directory that gets `distill_clothing.json`).
"""

import argparse
import json
import os
import sys
import time


def _arrays(dataset):
    import numpy as np

    images, labels = zip(*dataset.as_numpy_iterator())
    return np.concatenate(images), np.concatenate(labels).astype("int32")


def _resize(images, size, chunk=256):
    """Resizes uint8 images once, up front (bilinear, antialiased), keeping their order."""
    import numpy as np
    import tensorflow as tf

    parts = []
    for i in range(0, len(images), chunk):
        resized = tf.image.resize(images[i:i + chunk], (size, size), antialias=True)
        parts.append(tf.cast(tf.round(tf.clip_by_value(resized, 0, 255)), tf.uint8).numpy())
    return np.concatenate(parts)


def _batches(images, targets, seed, batch_size, shuffle):
    """A tf.data pipeline over in-memory arrays; the same order for the same seed."""
    import tensorflow as tf

    dataset = tf.data.Dataset.from_tensor_slices((images, targets))
    if shuffle:
        dataset = dataset.shuffle(len(images), seed=seed, reshuffle_each_iteration=True)
    return dataset.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="../shared/data/clothing")
    parser.add_argument("--teacher-size", type=int, default=128)
    parser.add_argument("--teacher-epochs", type=int, default=20,
                        help="head epochs of the teacher, on its cached backbone features")
    parser.add_argument("--student-size", type=int, default=64)
    parser.add_argument("--student-filters", type=int, default=16)
    parser.add_argument("--student-stages", type=int, default=3)
    parser.add_argument("--student-epochs", type=int, default=12)
    parser.add_argument("--student-lr", type=float, default=3e-3)
    parser.add_argument("--temperature", type=float, default=4.0)
    parser.add_argument("--alpha", type=float, default=0.9, help="weight of the distillation term")
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--out", default=None, help="JSON file (or directory) for the results")
    args = parser.parse_args(argv)
    if not os.path.isdir(os.path.join(args.data, "train")):
        print(f"skipped: {args.data}/train not found (the shared clothing data is not here)")
        return 0
    import keras
    import numpy as np

    import kerasrecipes as kr

    t0 = start = time.time()
    data = kr.image_folder_datasets(args.data, image_size=args.teacher_size, batch_size=64,
                                    seed=0, verbose=False)
    class_names = data.class_names
    x_train, y_train = _arrays(data.train)
    x_val, y_val = _arrays(data.validation)
    xs_train, xs_val = _resize(x_train, args.student_size), _resize(x_val, args.student_size)
    load_seconds = time.time() - start
    print(f"[bench] loaded {len(x_train)} train / {len(x_val)} validation images, "
          f"{len(class_names)} classes ({load_seconds:.0f} s)", flush=True)

    # Teacher: trained once, its outputs cached. With the backbone frozen (BatchNorm in inference
    # mode) and no augmentation, `kr.fine_tune`'s head stage is a function of the backbone's
    # features only: compute them once and train the head on them, instead of running the
    # backbone again every epoch.
    keras.utils.set_random_seed(0)
    teacher = kr.build_classifier("efficientnet_lite0", num_classes=len(class_names),
                                  image_size=args.teacher_size)
    start = time.time()
    extractor = keras.Sequential([teacher.get_layer("preprocess"), teacher.get_layer("backbone")])
    f_train = extractor.predict(x_train, batch_size=64, verbose=0)
    f_val = extractor.predict(x_val, batch_size=64, verbose=0)
    features_seconds = time.time() - start
    start = time.time()
    head = teacher.get_layer("head")
    probe = keras.Sequential([keras.Input(f_train.shape[1:]), head])
    steps = args.teacher_epochs * -(-len(f_train) // args.batch_size)
    schedule = keras.optimizers.schedules.CosineDecay(0.0, steps - steps // 10,
                                                      warmup_target=1e-3,
                                                      warmup_steps=steps // 10)
    probe.compile(optimizer=keras.optimizers.AdamW(schedule),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    probe.fit(f_train, y_train, batch_size=args.batch_size, epochs=args.teacher_epochs,
              verbose=0)
    p_train = probe.predict(f_train, batch_size=256, verbose=0)
    p_val = probe.predict(f_val, batch_size=256, verbose=0)
    teacher_seconds = features_seconds + time.time() - start
    # The cached outputs are the full teacher's (uint8 images in, probabilities out).
    np.testing.assert_allclose(teacher.predict(x_val[:32], verbose=0), p_val[:32], atol=1e-4)
    teacher_acc = float((p_val.argmax(-1) == y_val).mean())
    teacher_train_acc = float((p_train.argmax(-1) == y_train).mean())
    print(f"[bench] teacher val_acc {teacher_acc:.4f} (train {teacher_train_acc:.4f}), "
          f"{teacher_seconds:.0f} s ({features_seconds:.0f} s of them computing the features)",
          flush=True)
    del teacher, extractor, probe, f_train, f_val

    rows = [{"model": "teacher", "seed": 0, "val_accuracy": teacher_acc,
             "train_accuracy": teacher_train_acc, "train_seconds": teacher_seconds,
             "features_seconds": features_seconds, "image_size": args.teacher_size}]
    for seed in [int(s) for s in args.seeds.split(",")]:
        for mode in ("alone", "distilled"):
            keras.utils.set_random_seed(seed)  # same initial weights for both students
            student = kr.build_scratch_cnn(
                len(class_names), image_size=args.student_size, filters=args.student_filters,
                stages=args.student_stages, dense_units=(), dropout=0.2, augment="light",
                normalization_data=xs_train, name=f"student_{mode}_{seed}",
            )
            start, cpu_start = time.time(), time.process_time()
            if mode == "alone":
                history = kr.fit(student, _batches(xs_train, y_train, seed, args.batch_size, True),
                                 _batches(xs_val, y_val, seed, 64, False),
                                 epochs=args.student_epochs, lr=args.student_lr, verbose=0)
            else:
                history = kr.distill(
                    None, student,
                    _batches(xs_train, (y_train, p_train), seed, args.batch_size, True),
                    _batches(xs_val, (y_val, p_val), seed, 64, False),
                    temperature=args.temperature, alpha=args.alpha,
                    epochs=args.student_epochs, lr=args.student_lr, verbose=0,
                )
            seconds, cpu_seconds = time.time() - start, time.process_time() - cpu_start
            val_acc = history.history["val_accuracy"]
            # Cross-check the logged metric with a plain prediction of the trained student.
            acc = float((student.predict(xs_val, batch_size=64, verbose=0).argmax(-1)
                         == y_val).mean())
            rows.append({"model": f"student_{mode}", "seed": seed, "val_accuracy": acc,
                         "logged_val_accuracy": float(val_acc[-1]),
                         "best_val_accuracy": float(max(val_acc)), "train_seconds": seconds,
                         "train_cpu_seconds": cpu_seconds,
                         "val_accuracy_per_epoch": [float(v) for v in val_acc],
                         "params": student.count_params(), "image_size": args.student_size})
            print(f"[bench] seed {seed} student {mode:9s} val_acc {acc:.4f} "
                  f"(best epoch {max(val_acc):.4f}) {seconds:.0f} s, {cpu_seconds:.0f} CPU-s",
                  flush=True)

    result = {"config": vars(args), "class_names": class_names, "load_seconds": load_seconds,
              "total_seconds": time.time() - t0, "total_cpu_seconds": time.process_time(),
              "runs": rows}
    if args.out:
        out = args.out
        if not out.endswith(".json"):
            os.makedirs(out, exist_ok=True)
            out = os.path.join(out, "distill_clothing.json")
        with open(out, "w") as f:
            json.dump(result, f, indent=2)
    print(f"[bench] total {result['total_seconds']:.0f} s, {result['total_cpu_seconds']:.0f} "
          "CPU-s")
    print()
    print(f"| model | seed | val accuracy (epoch {args.student_epochs}) | best epoch | "
          "train time (s) |")
    print("| --- | --- | --- | --- | --- |")
    teacher_row = rows[0]
    print(f"| teacher: EfficientNet-Lite0 ImageNet, {args.teacher_size} px, head only, "
          f"{args.teacher_epochs} epochs | 0 | {teacher_row['val_accuracy']:.4f} | – | "
          f"{teacher_row['train_seconds']:.0f} (incl. {teacher_row['features_seconds']:.0f} "
          "features) |")
    for row in rows[1:]:
        print(f"| {row['model']} ({row['params']:,} params, {args.student_size} px) | "
              f"{row['seed']} | {row['val_accuracy']:.4f} | {row['best_val_accuracy']:.4f} | "
              f"{row['train_seconds']:.0f} |")
    for mode in ("alone", "distilled"):
        mine = [r for r in rows if r["model"] == f"student_{mode}"]
        print(f"| student_{mode}, mean of {len(mine)} seeds | – | "
              f"{np.mean([r['val_accuracy'] for r in mine]):.4f} | "
              f"{np.mean([r['best_val_accuracy'] for r in mine]):.4f} | "
              f"{np.mean([r['train_seconds'] for r in mine]):.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
