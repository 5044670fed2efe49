"""Export formats side by side: our export functions vs. Keras' own `model.export(format=...)`.

    python benchmarks/export_formats.py [--backbone efficientnet_lite0] [--image-size 224]
        [--data ../shared/data/clothing/validation] [--repeats 20] [--augment light]
        [--only onnx,openvino] [--quick]

`--quick` checks that each of our export paths runs (Keras' paths are left out), on a small
untrained network, in about a minute and a half.

Builds `kr.build_classifier(backbone, 10 classes, ImageNet weights, augment="standard")`:
augmentation layers and dropout inside, which a served graph must not run (the head is untrained,
which does not matter for parity or speed). Each
format is written two or three ways:

- **ours**: `kr.export_saved_model`, `kr.export_tflite` (a SavedModel → `TFLiteConverter`),
  `kr.export_onnx` (tf2onnx on a `training=False` function), `kr.export_openvino`;
- **Keras, as is**: `model.export(path, format="litert" | "onnx" | "openvino")` on the model;
- **Keras, inference wrapper**: the same call on `keras.Model(images, model(images,
  training=False))`, the wrapper that `kr.export_*` pass to Keras where they use its path.

Each artifact runs in its own runtime (ai-edge-litert's interpreter for TFLite, or
`tf.lite.Interpreter` where it is not installed; onnxruntime; OpenVINO on the CPU) on the same
uint8 images (real clothing photos when `--data` exists, random pixels otherwise). Printed: file
size, the input dtype (the contract: uint8 images in), max |Δp| vs. `model.predict` (inference
mode: ≤ 1e-5 for float exports; augmentation or dropout left in shows up here), top-1 agreement,
whether two runs give identical outputs, median latency at batch 1 and 32, and export time.
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


def _size(path):
    if os.path.isdir(path):
        return sum(os.path.getsize(f) for f in glob.glob(os.path.join(path, "**"), recursive=True)
                   if os.path.isfile(f))
    if path.endswith(".xml"):  # OpenVINO: the graph and its weights file
        return os.path.getsize(path) + os.path.getsize(path[:-4] + ".bin")
    return os.path.getsize(path)


def _tflite_runner(path):
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        import tensorflow as tf

        Interpreter = tf.lite.Interpreter
    interpreter = Interpreter(model_path=path, num_threads=os.cpu_count())
    inp = interpreter.get_input_details()[0]
    out = interpreter.get_output_details()[0]["index"]
    shape = [None]

    def run(x):
        if shape[0] != x.shape:
            interpreter.resize_tensor_input(inp["index"], x.shape)
            interpreter.allocate_tensors()
            shape[0] = x.shape
        interpreter.set_tensor(inp["index"], x)
        interpreter.invoke()
        return interpreter.get_tensor(out)

    return run, np.dtype(inp["dtype"]).name


def _onnx_runner(path):
    import onnxruntime as ort

    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    inp = session.get_inputs()[0]
    return (lambda x: session.run(None, {inp.name: x})[0]), inp.type


def _openvino_runner(path, precision="f32"):
    """OpenVINO on the CPU, float32 math (`precision=None`: the plugin's default, which is
    bfloat16 on CPUs with AVX-512 BF16 or AMX, as this one)."""
    import openvino as ov

    config = {"INFERENCE_PRECISION_HINT": precision} if precision else {}
    compiled = ov.Core().compile_model(path, "CPU", config)
    dtype = compiled.inputs[0].get_element_type().get_type_name()
    return (lambda x: compiled(x)[0]), {"u8": "uint8"}.get(dtype, dtype)


def _keras_export(model, path, fmt, **kwargs):
    model.export(path, format=fmt, verbose=False, **kwargs)
    return path


def _outputs(path):
    """How many outputs the artifact has (the model has one)."""
    if path.endswith(".onnx"):
        import onnx

        return len(onnx.load(path, load_external_data=False).graph.output)
    if path.endswith(".xml"):
        import openvino as ov

        return len(ov.Core().read_model(path).outputs)
    if path.endswith(".tflite"):
        try:
            from ai_edge_litert.interpreter import Interpreter
        except ImportError:
            import tensorflow as tf

            Interpreter = tf.lite.Interpreter
        return len(Interpreter(model_path=path).get_output_details())
    return 1


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--backbone", default="efficientnet_lite0")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--augment", default="standard",
                        help="augmentation preset inside the model")
    parser.add_argument("--data", default=os.path.join("..", "shared", "data", "clothing",
                                                       "validation"))
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--only", default=None,
                        help="comma-separated subset of savedmodel,tflite,onnx,openvino")
    parser.add_argument("--quick", action="store_true",
                        help="our paths only, on a small untrained mobilenetv3small at 64 px, "
                        "3 repeats: checks that every format we ship runs (CI), not a "
                        "measurement")
    args = parser.parse_args()
    weights = "imagenet"
    if args.quick:
        args.backbone, args.image_size, args.repeats, weights = "mobilenetv3small", 64, 3, None

    import tensorflow as tf

    import kerasrecipes as kr
    from kerasrecipes.export import export_openvino, inference_model

    only = set(args.only.split(",")) if args.only else None
    model = kr.build_classifier(args.backbone, num_classes=10, image_size=args.image_size,
                                augment=args.augment, weights=weights)
    wrapper, signature = inference_model(model)
    images = _images(args.data, args.image_size)
    expected = model.predict(images, verbose=0)
    workdir = tempfile.mkdtemp(prefix="export-bench-")

    def at(name):
        return os.path.join(workdir, name)

    dynamic = {"optimizations": [tf.lite.Optimize.DEFAULT]}
    candidates = [  # (format, path taken, export fn -> artifact path, runner)
        ("savedmodel", "ours", lambda: kr.export_saved_model(model, at("saved_model")), None),
        ("tflite", "ours", lambda: kr.export_tflite(model, at("ours.tflite")), _tflite_runner),
        ("tflite", "Keras, as is", lambda: _keras_export(model, at("keras.tflite"), "litert"),
         _tflite_runner),
        ("tflite", "Keras, inference wrapper",
         lambda: _keras_export(wrapper, at("wrapper.tflite"), "litert",
                              input_signature=signature), _tflite_runner),
        ("tflite-dynamic", "ours",
         lambda: kr.export_tflite(model, at("ours_dyn.tflite"), quantize="dynamic"),
         _tflite_runner),
        ("tflite-dynamic", "Keras, inference wrapper",
         lambda: _keras_export(wrapper, at("wrapper_dyn.tflite"), "litert",
                              input_signature=signature, **dynamic),
         _tflite_runner),
        ("onnx", "ours", lambda: kr.export_onnx(model, at("ours.onnx")), _onnx_runner),
        ("onnx", "Keras, as is", lambda: _keras_export(model, at("keras.onnx"), "onnx"),
         _onnx_runner),
        ("onnx", "Keras, inference wrapper",
         lambda: _keras_export(wrapper, at("wrapper.onnx"), "onnx", input_signature=signature),
         _onnx_runner),
        ("openvino", "ours (via ONNX)", lambda: export_openvino(model, at("ours_ov.xml")),
         _openvino_runner),
        ("openvino", "ours, default CPU precision (bf16 here)",
         lambda: at("ours_ov.xml"), lambda path: _openvino_runner(path, precision=None)),
        ("openvino", "Keras, as is", lambda: _keras_export(model, at("keras.xml"), "openvino"),
         _openvino_runner),
        ("openvino", "Keras, inference wrapper",
         lambda: _keras_export(wrapper, at("wrapper.xml"), "openvino",
                              input_signature=signature), _openvino_runner),
    ]
    rows = [("keras predict", "-", "-", "uint8", "1", "0", "100%", "yes",
             f"{_median_ms(lambda: model.predict_on_batch(images[:1]), args.repeats):.1f}",
             f"{_median_ms(lambda: model.predict_on_batch(images), max(3, args.repeats // 4)):.0f}",
             "-")]
    for fmt, how, export, runner in candidates:
        if only and fmt.split("-")[0] not in only or args.quick and not how.startswith("ours"):
            continue
        start = time.perf_counter()
        try:
            path = export()
            seconds = time.perf_counter() - start
            if runner is None:
                loaded = tf.saved_model.load(path)
                run, dtype = (lambda x: loaded.serve(x)["probabilities"].numpy()), "uint8"
            else:
                run, dtype = runner(path)
            got = np.asarray(run(images))
            again = np.asarray(run(images))
        except Exception as error:  # a failed export or an artifact its runtime refuses
            message = " ".join(str(error).split())[:90].replace("|", "/")
            rows.append((fmt, how, "-", "-", "-", f"fails: {type(error).__name__}: {message}",
                         "-", "-", "-", "-", f"{time.perf_counter() - start:.0f}"))
            print("[bench]", rows[-1], flush=True)
            continue
        rows.append((
            fmt, how, f"{_size(path) / 2**20:.1f}", dtype.replace("tensor(", "").rstrip(")"),
            str(_outputs(path)),
            f"{np.abs(got - expected).max():.1e}",
            f"{(got.argmax(-1) == expected.argmax(-1)).mean():.0%}",
            "yes" if np.array_equal(got, again) else "no",
            f"{_median_ms(lambda: run(images[:1]), args.repeats):.1f}",
            f"{_median_ms(lambda: run(images), max(3, args.repeats // 4)):.0f}",
            f"{seconds:.0f}",
        ))
        print("[bench]", rows[-1], flush=True)
    header = ("format", "path", "size MiB", "input", "outputs", "max \\|Δp\\| vs predict", "top-1 agree",
              "same twice", "ms batch 1", "ms batch 32", "export s")
    print(f"\n{args.backbone} at {args.image_size} px, augment={args.augment!r} + dropout in "
          f"the model, {len(images)} images, {os.cpu_count()} CPU threads")
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in rows:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
