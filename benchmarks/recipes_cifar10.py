"""CPU evidence for the LR recipes on a CIFAR-10 subset: do they earn their place?

(a) one-cycle vs. constant LR vs. step decay at equal epochs (Smith 2018's claim);
(b) snapshot ensemble of M cycles vs. the single final model of a cosine run, equal epochs;
(c) `find_lr`'s valley suggestion (one-cycle at that LR) vs. a hand grid of one-cycle LRs, and
    the wall time of `find_lr` vs. 100 ordinary training steps.

Model: `build_resnet(10, "resnet9", filters=16)` (the DAWNBench net at 1/4 width), SGD Nesterov
momentum 0.9, weight decay 5e-4 (decoupled), batch 128, no augmentation. Reports median test
accuracy and wall time over the seeds. Run (about 65 min on an idle 2-core CPU):

    python benchmarks/recipes_cifar10.py --data ../shared/data/cifar10 --parts a --lr 0.1 0.03 \
        --train-per-class 1000 --epochs 6 --seeds 0 1 2

`--parts c --grid` (no grid LRs) times `find_lr` and runs only the valley suggestion.

The GPU issue runs the full-size version (all 50k images, more epochs).
"""

import argparse
import os
import statistics
import sys
import tempfile
import time

import numpy as np


def load_subset(root, split, per_class, seed):
    from PIL import Image

    classes = sorted(os.listdir(os.path.join(root, split)))
    rng = np.random.default_rng(seed)
    images, labels = [], []
    for label, name in enumerate(classes):
        folder = os.path.join(root, split, name)
        files = sorted(os.listdir(folder))
        for f in rng.choice(files, size=per_class, replace=False):
            images.append(np.asarray(Image.open(os.path.join(folder, f)).convert("RGB")))
            labels.append(label)
    return np.stack(images).astype("uint8"), np.array(labels, dtype="int32")


def make_model(x_train, seed):
    import keras

    import kerasrecipes as kr

    keras.utils.set_random_seed(seed)
    return kr.build_resnet(10, "resnet9", image_size=32, filters=16,
                           normalization_data=x_train[:2000])


def run_config(name, x_train, y_train, x_test, y_test, epochs, lr, seed, batch=128):
    import keras
    import tensorflow as tf

    import kerasrecipes as kr
    from kerasrecipes.schedules import make_schedule

    train = (tf.data.Dataset.from_tensor_slices((x_train, y_train))
             .shuffle(len(x_train), seed=seed).batch(batch).prefetch(2))
    steps = int(np.ceil(len(x_train) / batch))
    total = epochs * steps
    model = make_model(x_train, seed)
    callbacks = []
    if name == "constant":
        schedule = lr
    elif name == "step":
        schedule = kr.StepDecay(lr, [total // 2, total * 3 // 4])
    elif name.startswith("one_cycle"):
        schedule = kr.OneCycle(lr, total)
        callbacks.append(kr.CycleMomentum(total_steps=total))
    elif name == "cosine":
        schedule = make_schedule("warmup_cosine", lr, total, warmup=0.1)
    elif name.startswith("snapshot"):
        schedule = lr
        directory = tempfile.mkdtemp(prefix="kr_snap_")
        snapshots = kr.SnapshotEnsemble(directory, cycles=int(name.split("x")[1]), max_lr=lr,
                                        verbose=0)
        callbacks.append(snapshots)
    else:
        raise ValueError(name)
    opt = kr.get_optimizer("nesterov", schedule, weight_decay=5e-4)
    model.compile(opt, "sparse_categorical_crossentropy", metrics=["accuracy"])
    start = time.time()
    model.fit(train, epochs=epochs, callbacks=callbacks, verbose=0)
    seconds = time.time() - start
    if name.startswith("snapshot"):
        ensemble = kr.load_ensemble(snapshots.paths)
        probs = ensemble.predict(x_test, batch_size=512, verbose=0)
        single = model.predict(x_test, batch_size=512, verbose=0)
        for p in snapshots.paths:
            os.remove(p)
        os.rmdir(directory)
        return {"accuracy": float(np.mean(probs.argmax(1) == y_test)),
                "single_last": float(np.mean(single.argmax(1) == y_test)), "seconds": seconds}
    probs = model.predict(x_test, batch_size=512, verbose=0)
    return {"accuracy": float(np.mean(probs.argmax(1) == y_test)), "seconds": seconds}


def find_lr_cost(x_train, y_train, seed, repeats=3, batch=128):
    """`find_lr` with its defaults (for the suggestion), then its wall time vs. 100 fit steps.

    The timing alternates fit and find_lr `repeats` times after a warm-up of both, so load changes
    hit both alike; the timed find_lr calls ramp to max_lr=1 with divergence stopping off, so they
    run all 100 steps like the fit they are compared with. Returns (result, fit_s, find_lr_s).
    """
    import tensorflow as tf

    import kerasrecipes as kr

    train = (tf.data.Dataset.from_tensor_slices((x_train, y_train))
             .shuffle(len(x_train), seed=seed).batch(batch).repeat().prefetch(2))
    model = make_model(x_train, seed)
    model.compile(kr.get_optimizer("nesterov", 1e-3, weight_decay=5e-4),
                  "sparse_categorical_crossentropy")
    model.fit(train, steps_per_epoch=5, epochs=1, verbose=0)  # trace + warm the pipeline
    model.fit(train, steps_per_epoch=100, epochs=1, verbose=0)
    result = kr.find_lr(model, train, min_lr=1e-5, max_lr=10, num_steps=100, verbose=0)
    fit_times, find_times = [], []
    for _ in range(repeats):
        start = time.time()
        model.fit(train, steps_per_epoch=100, epochs=1, verbose=0)
        fit_times.append(time.time() - start)
        start = time.time()
        timed = kr.find_lr(model, train, min_lr=1e-5, max_lr=1.0, num_steps=100,
                           diverge_threshold=1e30, verbose=0)
        find_times.append(time.time() - start)
        print(f"  100 fit steps {fit_times[-1]:.1f} s, find_lr {find_times[-1]:.1f} s", flush=True)
        if len(timed.lrs) != 100:
            raise RuntimeError(f"timed find_lr stopped after {len(timed.lrs)} steps")
    return result, statistics.median(fit_times), statistics.median(find_times)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default="../shared/data/cifar10")
    parser.add_argument("--train-per-class", type=int, default=500)
    parser.add_argument("--test-per-class", type=int, default=200)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--lr", type=float, nargs="+", default=[0.1],
                        help="peak/constant LR(s) of part (a); part (b) uses the first")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--parts", default="a", help="any of a, b, c")
    parser.add_argument("--grid", type=float, nargs="*", default=[0.01, 0.03, 0.1, 0.3],
                        help="one-cycle peak LRs of part (c); none to time find_lr only")
    args = parser.parse_args(argv)
    if not os.path.isdir(os.path.join(args.data, "train")):
        print(f"skipped: no CIFAR-10 folder at {args.data!r} (expects train/<class>/*.jpg)")
        return 0
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    x_train, y_train = load_subset(args.data, "train", args.train_per_class, seed=123)
    x_test, y_test = load_subset(args.data, "test", args.test_per_class, seed=456)
    print(f"CIFAR-10 subset: {len(x_train)} train / {len(x_test)} test images, 32 px; "
          f"{args.epochs} epochs; seeds {args.seeds}", flush=True)

    configs = []
    if "a" in args.parts:
        configs += [(name, lr) for lr in args.lr for name in ("constant", "step", "one_cycle")]
    if "b" in args.parts:
        configs += [("cosine", args.lr[0]), (f"snapshotx{2}", args.lr[0])]
    suggested = None
    rows = []
    if "c" in args.parts:
        result, fit_seconds, find_seconds = find_lr_cost(x_train, y_train, args.seeds[0])
        suggested = result.suggestion("valley")
        rows.append(("find_lr (100 steps) vs 100 fit steps, median of 3 interleaved", "-",
                     f"{find_seconds:.1f} s vs {fit_seconds:.1f} s "
                     f"({find_seconds / fit_seconds:.2f}x)", "-"))
        print(f"find_lr suggestions: {result.suggestions()}", flush=True)
        configs += [(f"one_cycle@{lr:g}", lr) for lr in args.grid]
        if suggested:
            configs.append((f"one_cycle@valley={suggested:.3g}", suggested))
    for name, lr in configs:
        results = []
        for seed in args.seeds:
            r = run_config(name.split("@")[0], x_train, y_train, x_test, y_test, args.epochs, lr,
                           seed)
            results.append(r)
            print(f"  {name:28s} lr {lr:<8.3g} seed {seed}: acc {r['accuracy']:.4f} "
                  f"({r['seconds']:.0f} s)" + (f", last single model {r['single_last']:.4f}"
                                               if "single_last" in r else ""), flush=True)
        acc = statistics.median(r["accuracy"] for r in results)
        secs = statistics.median(r["seconds"] for r in results)
        extra = ""
        if "single_last" in results[0]:
            extra = f"single last model {statistics.median(r['single_last'] for r in results):.4f}"
        rows.append((name, f"{lr:.3g}", f"{acc:.4f}", f"{secs:.0f} s" + (f"; {extra}" if extra else "")))
    print()
    print(f"| config | lr | median test acc ({len(args.seeds)} seeds) | median train time |")
    print("|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
