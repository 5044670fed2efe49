"""Export formats side by side: file size, agreement with Keras, CPU latency at batch 1 and 32.

    python benchmarks/export_formats.py [--backbone efficientnet_lite0] [--image-size 224]
        [--data ../shared/data/clothing/validation] [--repeats 20]

Builds `kr.build_classifier(backbone, 10 classes, ImageNet weights)` (the head is untrained, which
does not matter for parity or speed), exports it as a SavedModel, TFLite float32, TFLite with
dynamic-range quantization and ONNX, runs each with its own runtime on the same uint8 images
(real clothing photos when `--data` exists, random pixels otherwise) and prints max |Δ| of the
probabilities vs. `model.predict`, top-1 agreement, file size and the median latency.
"""

import argparse
import glob
import os
import statistics
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _images(data, size, count=32):
    import kerasrecipes as kr

    files = sorted(glob.glob(os.path.join(data, "*", "*.jpg")))[:: 7][:count]
    if len(files) < count:
        print(f"[bench] {data} not found or too small: using random pixels")
        return np.random.default_rng(0).integers(0, 256, (count, size, size, 3)).astype("uint8")
    return np.stack([kr.load_image(f, image_size=size) for f in files])


def _median_ms(fn, repeats):
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def _tflite_runner(path):
    import tensorflow as tf

    interpreter = tf.lite.Interpreter(model_path=path, num_threads=os.cpu_count())
    inp = interpreter.get_input_details()[0]["index"]
    out = interpreter.get_output_details()[0]["index"]
    shape = [None]

    def run(x):
        if shape[0] != x.shape:
            interpreter.resize_tensor_input(inp, x.shape)
            interpreter.allocate_tensors()
            shape[0] = x.shape
        interpreter.set_tensor(inp, x)
        interpreter.invoke()
        return interpreter.get_tensor(out)

    return run


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--backbone", default="efficientnet_lite0")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--data", default=os.path.join("..", "shared", "data", "clothing",
                                                       "validation"))
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()

    import onnxruntime as ort
    import tensorflow as tf

    import kerasrecipes as kr

    model = kr.build_classifier(args.backbone, num_classes=10, image_size=args.image_size)
    images = _images(args.data, args.image_size)
    expected = model.predict(images, verbose=0)
    workdir = tempfile.mkdtemp(prefix="export-bench-")

    runners = {}
    saved = kr.export_saved_model(model, os.path.join(workdir, "saved_model"))
    loaded = tf.saved_model.load(saved)
    runners["keras predict"] = (None, lambda x: model.predict_on_batch(x))
    runners["SavedModel serve"] = (saved, lambda x: loaded.serve(x)["probabilities"].numpy())
    for quantize, label in ((None, "TFLite float32"), ("dynamic", "TFLite dynamic-range")):
        path = kr.export_tflite(model, os.path.join(workdir, f"{label.split()[1]}.tflite"),
                                quantize=quantize)
        runners[label] = (path, _tflite_runner(path))
    onnx_path = kr.export_onnx(model, os.path.join(workdir, "model.onnx"))
    session = ort.InferenceSession(onnx_path)
    name = session.get_inputs()[0].name
    runners["ONNX (onnxruntime)"] = (onnx_path, lambda x: session.run(None, {name: x})[0])

    rows = []
    for label, (path, run) in runners.items():
        got = np.asarray(run(images))
        size = None
        if path is not None:
            size = (sum(os.path.getsize(f) for f in glob.glob(os.path.join(path, "**"),
                                                              recursive=True)
                        if os.path.isfile(f)) if os.path.isdir(path) else os.path.getsize(path))
        rows.append((
            label,
            f"{size / 2**20:.1f}" if size else "-",
            f"{np.abs(got - expected).max():.2e}",
            f"{(got.argmax(-1) == expected.argmax(-1)).mean():.0%}",
            f"{_median_ms(lambda: run(images[:1]), args.repeats):.1f}",
            f"{_median_ms(lambda: run(images), max(3, args.repeats // 4)):.0f}",
        ))
    header = ("format", "size MiB", "max \\|Δp\\| vs Keras", "top-1 agree", "ms batch 1",
              "ms batch 32")
    print(f"\n{args.backbone} at {args.image_size} px, {len(images)} images, "
          f"{os.cpu_count()} CPU threads")
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in rows:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
