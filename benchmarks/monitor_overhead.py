"""Overhead of `TrainingMonitor` logging every N steps, as a fraction of the training step time.

Trains the same scratch CNN (32 px CIFAR-10 images, batch 32) with and without the monitor,
alternating, and times the steady-state steps (after a warm-up that absorbs tracing). The
monitor's first log traces its probe function once; that one-off cost is reported apart.

    python benchmarks/monitor_overhead.py --data ../shared/data/cifar10
"""

import argparse
import os
import statistics
import sys
import time


def _load(data, per_class, size):
    import numpy as np
    from PIL import Image

    root = os.path.join(data, "train")
    classes = sorted(os.listdir(root))
    images, labels = [], []
    for label, name in enumerate(classes):
        files = sorted(os.listdir(os.path.join(root, name)))[:per_class]
        for f in files:
            image = Image.open(os.path.join(root, name, f)).convert("RGB").resize((size, size))
            images.append(np.asarray(image, dtype="uint8"))
            labels.append(label)
    return np.stack(images), np.array(labels, dtype="int32"), len(classes)


class _StepTimer:
    def __init__(self, warmup):
        import keras

        outer = self

        class Timer(keras.callbacks.Callback):
            def on_train_batch_end(self, batch, logs=None):
                outer.step += 1
                if outer.step == warmup:
                    outer.start = time.perf_counter()
                outer.end = time.perf_counter()

        self.step = 0
        self.start = self.end = None
        self.callback = Timer()

    def seconds_per_step(self, warmup):
        return (self.end - self.start) / (self.step - warmup)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="../shared/data/cifar10")
    parser.add_argument("--per-class", type=int, default=200)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=7)
    parser.add_argument("--every", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=20)
    args = parser.parse_args()
    if not os.path.isdir(os.path.join(args.data, "train")):
        print(f"skipped: no image folder at {args.data}/train (pass --data)")
        return 0

    import keras

    import kerasrecipes as kr
    from kerasrecipes.monitor import TrainingMonitor

    images, labels, num_classes = _load(args.data, args.per_class, args.size)
    data = kr.array_datasets(images, labels, batch_size=args.batch_size, validation_split=None,
                             seed=0)
    steps_per_epoch = len(images) // args.batch_size

    class TimedMonitor(TrainingMonitor):
        def _log(self, step):
            start = time.perf_counter()
            super()._log(step)
            self.log_seconds.append(time.perf_counter() - start)

    results = {"off": [], "on": []}
    log_times, first_logs, layer_counts = [], [], []
    for repeat in range(args.repeats):
        for mode in ("off", "on") if repeat % 2 == 0 else ("on", "off"):
            keras.utils.clear_session()
            keras.utils.set_random_seed(repeat)
            model = kr.build_scratch_cnn(num_classes, image_size=args.size,
                                         normalization_data=images[:512])
            timer = _StepTimer(args.warmup)
            callbacks = [timer.callback]
            if mode == "on":
                monitor = TimedMonitor(data.train, every=args.every)
                monitor.log_seconds = []
                callbacks.insert(0, monitor)
            kr.fit(model, data.train, epochs=args.epochs, callbacks=callbacks, verbose=0)
            seconds = timer.seconds_per_step(args.warmup)
            results[mode].append(seconds)
            if mode == "on":
                first_logs.append(monitor.log_seconds[0])
                log_times.extend(monitor.log_seconds[1:])
                layer_counts.append(len(monitor.records[-1]["activations"]))
            print(f"repeat {repeat} monitor {mode}: {seconds * 1000:.2f} ms/step", flush=True)

    off = statistics.median(results["off"])
    on = statistics.median(results["on"])
    steps = args.epochs * steps_per_epoch
    print()
    print(f"scratch CNN {args.size} px, batch {args.batch_size}, {steps} steps per run, "
          f"{args.repeats} repeats, monitor every {args.every} steps "
          f"({layer_counts[0] if layer_counts else 0} activation layers, probe 32 images)")
    print("| measure | median |")
    print("| --- | --- |")
    print(f"| step time without monitor | {off * 1000:.2f} ms |")
    print(f"| step time with monitor | {on * 1000:.2f} ms |")
    print(f"| overhead | {100 * (on - off) / off:+.1f} % |")
    print(f"| one log (steady state) | {statistics.median(log_times) * 1000:.1f} ms "
          f"= {statistics.median(log_times) / off:.1f} steps |")
    print(f"| first log (traces the probe) | {statistics.median(first_logs) * 1000:.0f} ms |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
