"""Augmentation throughput on the CPU: albumentations per batch vs. Keras layers in tf.data vs.
Keras layers "on device" (in the training loop's thread, as the model's `augment` sub-model runs)
vs. the file pipeline with the random-resized-crop fused into decoding.

Each pipeline but the fused one decodes the clothing JPEGs (~400×533), resizes them to a common
size (short side 256 for 224 px, 48 for 32 px) so they batch, then random-resized-crops to the
target size, flips and jitters colour (albumentations: `RandomResizedCrop`, `HorizontalFlip`,
`ColorJitter(0.4, 0.4, 0.4, 0)`; Keras: the `"standard"` preset = crop, flip, `ColorJitter(0.4)`,
`PCALighting(0.1)`). "keras fused crop" is `kr.image_folder_datasets(train folder,
augment="standard", cache=False)`: each JPEG decodes only its random crop window (DCT-scaled when
the window is ≥ 2× the target), resized straight to the target and flipped, then the jitter and
PCA layers run on the batches. "keras per image" crops each full-size decoded image straight to
the target inside tf.data. Each configuration runs in a fresh process pinned to 1 or 2 cores with
`taskset`; `--repeats N` runs each N times, round-robin over the methods, and reports the median.
Each run's line also gives images per CPU-second (all threads), which other jobs' load disturbs
less than wall-clock time; the last lines printed are a Markdown table for BENCHMARKS.md.

    python benchmarks/augment_throughput.py --data ../shared/data/clothing --repeats 3
    python benchmarks/augment_throughput.py --data ../shared/data/clothing --quick  # 224 px only
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

METHODS = ("decode only", "albumentations per batch", "keras in tf.data", "keras on device",
           "keras fused crop")
LABELS = {
    "decode only": "decode + resize only (ceiling)",
    "albumentations per batch": "albumentations per batch",
    "keras in tf.data": 'Keras `"standard"` in tf.data',
    "keras on device": 'Keras `"standard"` on device',
    "keras fused crop": 'Keras `"standard"` in tf.data, crop fused into decoding',
    "keras per image": 'Keras `"standard"` per image',
}
# Also available: "keras per image" (the preset applied to each full-size image inside tf.data
# before batching); far slower here (114 img/s at 32 px, minutes for 448 images at 224 px).


def _worker(args):
    import numpy as np
    import tensorflow as tf

    import kerasrecipes as kr

    files = sorted(
        os.path.join(root, f) for root, _, names in os.walk(os.path.join(args.data, "train"))
        for f in names if f.lower().endswith(".jpg")
    )
    size = args.size
    base = (341, 256) if size == 224 else (48, 36)
    n_images = args.batches * args.batch_size
    files = (files * (1 + (args.warmup + n_images) // len(files)))[: (args.warmup + args.batches) * args.batch_size]
    cores = len(os.sched_getaffinity(0))
    options = tf.data.Options()
    options.threading.private_threadpool_size = cores
    tf.config.threading.set_inter_op_parallelism_threads(cores)
    tf.config.threading.set_intra_op_parallelism_threads(cores)
    AUTOTUNE = tf.data.AUTOTUNE

    def decode(path):
        image = tf.io.decode_jpeg(tf.io.read_file(path), channels=3)
        return image

    def decode_resized(path):
        image = tf.image.resize(decode(path), base)
        return tf.cast(tf.clip_by_value(tf.round(image), 0, 255), tf.uint8)

    paths = tf.data.Dataset.from_tensor_slices(files)
    method = args.method
    on_device = None
    if method == "decode only":
        ds = paths.map(decode_resized, num_parallel_calls=AUTOTUNE).batch(args.batch_size)
    elif method == "albumentations per batch":
        import albumentations as A

        compose = A.Compose([
            A.RandomResizedCrop((size, size), scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3)),
            A.HorizontalFlip(),
            A.ColorJitter(0.4, 0.4, 0.4, 0.0, p=1.0),
        ])
        fn = kr.albumentations_map(compose, image_size=size)
        ds = (paths.map(decode_resized, num_parallel_calls=AUTOTUNE).batch(args.batch_size)
              .map(lambda x: fn(x, tf.zeros([tf.shape(x)[0]]))[0], num_parallel_calls=AUTOTUNE))
    elif method == "keras in tf.data":
        layer = kr.augmentation("standard", image_size=size, seed=0)
        ds = kr.augment_dataset(
            paths.map(decode_resized, num_parallel_calls=AUTOTUNE).batch(args.batch_size), layer)
    elif method == "keras fused crop":
        # The library's file pipeline on the train folder (scanned before the clock starts);
        # shuffled, so it reads other files than the rows above, of the same sizes.
        ds = kr.image_folder_datasets(os.path.join(args.data, "train"), image_size=size,
                                      batch_size=args.batch_size, augment="standard", seed=0,
                                      cache=False, verbose=False).train
        ds = ds.map(lambda images, labels: images).take(args.warmup + args.batches)
    elif method == "keras per image":
        layer = kr.augmentation("standard", image_size=size, seed=0)
        ds = (paths.map(lambda p: tf.cast(layer(decode(p), training=True), tf.uint8),
                        num_parallel_calls=AUTOTUNE).batch(args.batch_size))
    elif method == "keras on device":
        layer = kr.augmentation("standard", image_size=size, seed=0)
        on_device = tf.function(lambda x: layer(x, training=True), jit_compile=False)
        ds = paths.map(decode_resized, num_parallel_calls=AUTOTUNE).batch(args.batch_size)
    else:
        raise ValueError(f"method must be one of {METHODS} or 'keras per image'. "
                         f"Received: method={method!r}")
    ds = ds.prefetch(AUTOTUNE).with_options(options)
    it = iter(ds)
    for _ in range(args.warmup):
        batch = next(it)
        if on_device is not None:
            on_device(batch)
    start = time.perf_counter()
    cpu_start = time.process_time()
    count = 0
    for batch in it:
        if on_device is not None:
            batch = on_device(batch)
        count += int(np.asarray(batch).shape[0])
    seconds = time.perf_counter() - start
    cpu_seconds = time.process_time() - cpu_start
    shape = tuple(np.asarray(batch).shape[1:])
    print(json.dumps({"images_per_s": count / seconds, "images_per_cpu_s": count / cpu_seconds,
                      "images": count, "shape": shape}))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="../shared/data/clothing")
    parser.add_argument("--sizes", default="224,32")
    parser.add_argument("--cores", default="1,2")
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--batches", type=int, default=12)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--quick", action="store_true",
                        help="224 px only, 6 timed batches (a quick check, not for the table)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--method", help=argparse.SUPPRESS)
    parser.add_argument("--size", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if not os.path.isdir(os.path.join(args.data, "train")):
        print(f"skipped: {args.data}/train not found (the shared clothing data is not here)")
        return 0
    if args.worker:
        _worker(args)
        return 0
    if args.quick:
        args.sizes, args.batches = "224", 6
    from importlib.metadata import version

    print(f"TF {version('tensorflow')}, Keras {version('keras')}, {os.cpu_count()} CPUs, "
          f"load average before: {' '.join(f'{v:.1f}' for v in os.getloadavg())}", flush=True)
    methods = args.methods.split(",")
    rates = {}
    for size in [int(s) for s in args.sizes.split(",")]:
        for cores in [int(c) for c in args.cores.split(",")]:
            # Repeats go round the methods, so a burst of load elsewhere hits them alike.
            for _ in range(args.repeats):
                for method in methods:
                    cmd = ["taskset", "-c", ",".join(str(i) for i in range(cores)), sys.executable,
                           __file__, "--worker", "--data", args.data, "--method", method,
                           "--size", str(size), "--batch-size", str(args.batch_size),
                           "--batches", str(args.batches), "--warmup", str(args.warmup)]
                    out = subprocess.run(cmd, capture_output=True, text=True,
                                         env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
                    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("{")]
                    if out.returncode or not lines:
                        print(out.stderr[-2000:], file=sys.stderr)
                        raise SystemExit(f"worker failed: {method} {size}px {cores} cores")
                    result = json.loads(lines[-1])
                    rate = result["images_per_s"]
                    rates.setdefault((size, cores, method), []).append(rate)
                    # Images per CPU-second (all threads): less sensitive to other jobs' load.
                    print(f"[bench] {size:3d} px  {cores} core(s)  {method:26s} {rate:8.1f} img/s"
                          f"  ({result['images_per_cpu_s']:.0f} img per CPU-s)", flush=True)
    results = {key: statistics.median(values) for key, values in rates.items()}
    print(f"load average after: {' '.join(f'{v:.1f}' for v in os.getloadavg())}")
    print()
    print("| size | pipeline | 1 core img/s | 2 cores img/s | 2 / 1 cores |")
    print("| --- | --- | --- | --- | --- |")
    for size in [int(s) for s in args.sizes.split(",")]:
        for method in methods:
            one = results.get((size, 1, method))
            two = results.get((size, 2, method))
            ratio = f"{two / one:.2f}×" if one and two else "n/a"
            print(f"| {size} | {LABELS.get(method, method)} | {one or float('nan'):.0f} | "
                  f"{two or float('nan'):.0f} | {ratio} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
