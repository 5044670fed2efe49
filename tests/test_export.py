import io
import json
import os
import struct
import subprocess
import sys
import zlib

import keras
import numpy as np
import pytest

import kerasrecipes as kr
from tiny_models import TINY

IMAGES = np.random.default_rng(0).integers(0, 256, (5, 16, 16, 3)).astype("uint8")


def _tflite_interpreter(path):
    """ai-edge-litert's interpreter (tf.lite.Interpreter is deprecated), or TF's without it."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        import tensorflow as tf

        Interpreter = tf.lite.Interpreter
    return Interpreter(model_path=str(path))


@pytest.fixture(scope="module")
def model():
    # Augmentation and (trainable) BatchNorm inside: the served graph must use neither.
    return kr.build_classifier(TINY, num_classes=3, weights=None, augment="standard")


def test_serves_in_inference_mode_and_matches_predict(model, tmp_path):
    import tensorflow as tf

    path = kr.export_saved_model(model, tmp_path / "export", class_names=["a", "b", "c"],
                                 metadata={"note": "test"})
    served = tf.saved_model.load(path)
    first = served.serve(IMAGES)
    second = served.serve(IMAGES)
    probs = first["probabilities"].numpy()
    np.testing.assert_array_equal(probs, second["probabilities"].numpy())
    np.testing.assert_allclose(probs, model.predict(IMAGES, verbose=0), atol=1e-5)
    assert first["class_index"].numpy().tolist() == probs.argmax(-1).tolist()
    assert [n.decode() for n in first["class_name"].numpy()] == [
        "abc"[i] for i in probs.argmax(-1)
    ]
    assert open(os.path.join(path, "labels.txt")).read().split() == ["a", "b", "c"]
    info = json.load(open(os.path.join(path, "kerasrecipes.json")))
    assert info["image_size"] == [16, 16] and info["metadata"] == {"note": "test"}


def _serve_in_a_fresh_process(path, images, tmp_path):
    """The export's `serve` outputs in a new interpreter, through tf.saved_model.load and
    through keras.layers.TFSMLayer (keys prefixed `tfsm_`); strings as bytes."""
    np.save(tmp_path / "x.npy", images)
    code = (
        "import numpy as np, tensorflow as tf, keras\n"
        "def arrays(outputs):\n"
        "    return {k: np.asarray(v).astype('S') if tf.as_dtype(v.dtype) == tf.string\n"
        "            else np.asarray(v) for k, v in outputs.items()}\n"
        f"x = np.load({str(tmp_path / 'x.npy')!r})\n"
        f"m = tf.saved_model.load({str(path)!r})\n"
        "out = arrays(m.serve(x))\n"
        f"layer = keras.layers.TFSMLayer({str(path)!r}, call_endpoint='serve')\n"
        "out.update({'tfsm_' + k: v for k, v in arrays(layer(x)).items()})\n"
        f"np.savez({str(tmp_path / 'y.npz')!r}, **out)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)
    return dict(np.load(tmp_path / "y.npz"))


def test_loads_in_a_fresh_process_with_identical_outputs(model, tmp_path):
    """Through tf.saved_model.load and through keras.layers.TFSMLayer, in a new interpreter."""
    path = kr.export_saved_model(model, tmp_path / "export", class_names=["a", "b", "c"])
    served = _serve_in_a_fresh_process(path, IMAGES, tmp_path)
    expected = model.predict(IMAGES, verbose=0)
    np.testing.assert_allclose(served["probabilities"], expected, atol=1e-5)
    np.testing.assert_allclose(served["tfsm_probabilities"], expected, atol=1e-5)


def test_bytes_signature_decodes_and_resizes_like_training(model, make_image_folder, tmp_path):
    import tensorflow as tf
    from PIL import Image

    root = make_image_folder(per_class=2)
    # Add a PNG with transparency: served bytes must composite it on white, as training does.
    rgba = np.zeros((20, 30, 4), "uint8")
    rgba[..., 0] = 200
    rgba[:, :15, 3] = 255
    Image.fromarray(rgba, "RGBA").save(os.path.join(root, "cat", "alpha.png"))
    data = kr.image_folder_datasets(root, image_size=16, batch_size=16, seed=0, verbose=False)
    paths = sorted(p for p, _ in data.files["train"])
    # The training pipeline's pixels, matched to the files by content (the batches are shuffled).
    pipeline = np.concatenate([x for x, _ in data.train.as_numpy_iterator()])
    images = np.stack([kr.load_image(p, image_size=16) for p in paths])
    assert sorted(map(bytes, pipeline)) == sorted(map(bytes, images))
    path = kr.export_saved_model(model, tmp_path / "export", class_names=["a", "b", "c"])
    served = tf.saved_model.load(path)
    blobs = tf.constant([open(p, "rb").read() for p in paths])
    from_bytes = served.serve_bytes(blobs)["probabilities"].numpy()
    np.testing.assert_allclose(from_bytes, served.serve(images)["probabilities"].numpy(), atol=1e-6)


def _encoded(pixels, fmt, **options):
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, fmt, **options)
    return buffer.getvalue()


def _png_header_only(width, height):
    """A PNG that declares `width` × `height` pixels and holds none."""
    def chunk(tag, body):
        return struct.pack(">I", len(body)) + tag + body + struct.pack(">I", zlib.crc32(tag + body))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2,
                                                              0, 0, 0)) + chunk(b"IEND", b""))


@pytest.fixture(scope="module")
def mixed_batch():
    """Encoded items, good and bad, with the error each must get ("" for a good one)."""
    rng = np.random.default_rng(3)
    jpeg = _encoded(rng.integers(0, 256, (20, 30, 3)).astype("uint8"), "JPEG", quality=90)
    from PIL import Image

    exif = Image.Exif()
    exif[0x0112] = 6  # shown rotated 90° clockwise: training (PIL) applies it, and so must we
    rotated = _encoded(np.repeat(np.linspace(0, 255, 40, dtype=np.uint8)[None, :, None], 3, 2)
                       .repeat(10, 0), "JPEG", quality=95, exif=exif.tobytes())
    items = [
        (rotated, ""),
        (jpeg, ""),
        (b"", "empty image (0 bytes)"),
        (b"GIF89a" + bytes(7), "corrupt image: its header cannot be read"),
        (b"<html>not an image</html>", "not an image in a format serve_bytes decodes"),
        (jpeg[: len(jpeg) // 2], "corrupt or truncated image"),
        (_encoded(np.full((1, 1, 3), 200, np.uint8), "PNG"), ""),
        (_png_header_only(40_000, 40_000), "image too large: 40000 × 40000 = 1600000000 pixels"),
        (_encoded(rng.integers(0, 256, (9, 7, 3)).astype("uint8"), "TIFF"), "TIFF"),
        (_encoded(rng.integers(0, 256, (33, 17, 3)).astype("uint8"), "PNG"), ""),
        (jpeg, ""),
    ]
    return [blob for blob, _ in items], [error for _, error in items]


def test_serve_bytes_gives_a_verdict_per_item(model, mixed_batch, tmp_path):
    """Garbage, empty, truncated, 1×1, huge (refused from its header: the file holds no pixels)
    and unsupported items among good ones: the good ones get the outputs of `serve` on the
    training pipeline's pixels, the others `ok=False`, the reason and neutral values."""
    import tensorflow as tf

    blobs, errors = mixed_batch
    path = kr.export_saved_model(model, tmp_path / "export", class_names=["a", "b", "c"])
    served = tf.saved_model.load(path)
    out = {k: v.numpy() for k, v in served.serve_bytes(tf.constant(blobs)).items()}
    assert sorted(out) == ["class_index", "class_name", "error", "ok", "probabilities"]
    assert out["ok"].tolist() == [not e for e in errors]
    for message, expected in zip(out["error"].tolist(), errors):
        assert message.decode().startswith(expected), (message, expected)
    good = [i for i, e in enumerate(errors) if not e]
    images = []
    for i in good:
        (tmp_path / f"item{i}").write_bytes(blobs[i])
        images.append(kr.load_image(tmp_path / f"item{i}", image_size=16))
    reference = served.serve(np.stack(images))
    np.testing.assert_allclose(out["probabilities"][good], reference["probabilities"].numpy(),
                               atol=1e-6)
    assert out["class_index"][good].tolist() == reference["class_index"].numpy().tolist()
    bad = [i for i, e in enumerate(errors) if e]
    assert not out["probabilities"][bad].any()
    assert set(out["class_index"][bad].tolist()) == {-1} and set(out["class_name"][bad]) == {b""}
    # The same bytes, the same outputs: again, alone, and as the only good item.
    again = served.serve_bytes(tf.constant(blobs))
    for key, value in again.items():
        np.testing.assert_array_equal(value.numpy(), out[key])
    alone = served.serve_bytes(tf.constant(blobs[:1]))["probabilities"].numpy()
    np.testing.assert_allclose(alone[0], out["probabilities"][0], atol=1e-6)
    empty = served.serve_bytes(tf.zeros([0], tf.string))
    assert empty["probabilities"].shape == (0, 3) and empty["ok"].shape == (0,)
    with pytest.raises(ValueError, match="max_image_pixels"):
        kr.export_saved_model(model, tmp_path / "x", max_image_pixels=0)


def test_serve_bytes_survives_reload_in_a_fresh_process(model, mixed_batch, tmp_path):
    """The tf.data pipeline inside `serve_bytes` is saved with the model: in a new interpreter,
    through tf.saved_model.load and keras.layers.TFSMLayer, the same outputs."""
    import pickle

    import tensorflow as tf

    blobs, errors = mixed_batch
    path = kr.export_saved_model(model, tmp_path / "export", class_names=["a", "b", "c"],
                                 max_image_pixels=1_000_000)
    served = tf.saved_model.load(path)  # kept: it owns the variables
    expected = {k: v.numpy() for k, v in served.serve_bytes(tf.constant(blobs)).items()}
    with open(tmp_path / "blobs.pkl", "wb") as f:
        pickle.dump(blobs, f)
    code = (
        "import pickle, numpy as np, tensorflow as tf, keras\n"
        f"blobs = tf.constant(pickle.load(open({str(tmp_path / 'blobs.pkl')!r}, 'rb')))\n"
        f"m = tf.saved_model.load({str(path)!r})\n"
        "out = {k: np.asarray(v) for k, v in m.serve_bytes(blobs).items()}\n"
        f"layer = keras.layers.TFSMLayer({str(path)!r}, call_endpoint='serve_bytes')\n"
        "out.update({'tfsm_' + k: np.asarray(v) for k, v in layer(blobs).items()})\n"
        f"pickle.dump(out, open({str(tmp_path / 'out.pkl')!r}, 'wb'))\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)
    with open(tmp_path / "out.pkl", "rb") as f:
        fresh = pickle.load(f)
    assert expected["ok"].tolist() == [not e for e in errors]
    for prefix in ("", "tfsm_"):
        for key, value in expected.items():
            got = fresh[prefix + key]
            if value.dtype.kind in "OSb":
                assert got.tolist() == value.tolist(), (prefix, key)
            else:
                np.testing.assert_allclose(got, value, atol=1e-6, err_msg=prefix + key)


@pytest.mark.parametrize("which", ["tiny", "scratch_cnn"])
def test_tflite_float_and_dynamic_range(model, tmp_path, which):
    import tensorflow as tf

    from kerasrecipes.export import export_tflite

    if which == "scratch_cnn":  # a real-sized conv net: its variables must survive conversion
        model = kr.build_scratch_cnn(3, image_size=16, stages=2, normalization_data=IMAGES)
    expected = model.predict(IMAGES, verbose=0)
    weights_bytes = sum(w.nbytes for w in model.get_weights())
    sizes = {}
    for quantize in (None, "dynamic"):
        path = export_tflite(model, tmp_path / f"m_{quantize}.tflite", quantize=quantize)
        sizes[quantize] = os.path.getsize(path)
        interpreter = _tflite_interpreter(path)
        inp = interpreter.get_input_details()[0]
        interpreter.resize_tensor_input(inp["index"], IMAGES.shape)
        interpreter.allocate_tensors()
        interpreter.set_tensor(inp["index"], IMAGES)
        interpreter.invoke()
        got = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
        np.testing.assert_allclose(got, expected, atol=1e-5 if quantize is None else 0.05)
    assert sizes[None] > 0.9 * weights_bytes and sizes["dynamic"] < sizes[None]
    with pytest.raises(ValueError, match="quantize must be None or 'dynamic'"):
        export_tflite(model, tmp_path / "x.tflite", quantize="int4")


def test_onnx_matches_predict(model, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("tf2onnx")
    from kerasrecipes.export import export_onnx

    path = export_onnx(model, tmp_path / "m.onnx")
    session = ort.InferenceSession(path)
    got = session.run(None, {session.get_inputs()[0].name: IMAGES})[0]
    np.testing.assert_allclose(got, model.predict(IMAGES, verbose=0), atol=1e-5)


def test_a_failed_export_leaves_the_previous_one_intact(model, tmp_path):
    path = kr.export_saved_model(model, tmp_path / "export", class_names=["a", "b", "c"])
    with pytest.raises(ValueError, match="class_names has 2 names but the model has 3 classes"):
        kr.export_saved_model(model, path, class_names=["a", "b"])
    assert os.path.isfile(os.path.join(path, "saved_model.pb"))
    # Re-exporting over an existing export replaces it and leaves no temporary directories.
    kr.export_saved_model(model, path, class_names=["x", "y", "z"])
    assert open(os.path.join(path, "labels.txt")).read().split() == ["x", "y", "z"]
    assert sorted(os.listdir(tmp_path)) == ["export"]


def test_binary_model_exports_a_class_index(tmp_path):
    binary = kr.build_classifier(TINY, num_classes=2, task="binary", weights=None)
    import tensorflow as tf

    path = kr.export_saved_model(binary, tmp_path / "bin", class_names=["no", "yes"])
    served = tf.saved_model.load(path)
    out = served.serve(IMAGES)
    expected = (binary.predict(IMAGES, verbose=0)[:, 0] > 0.5).astype(int)
    assert out["class_index"].numpy().tolist() == expected.tolist()


def test_snapshot_ensemble_and_tta_wrapper_export_as_one_savedmodel(model, tmp_path):
    import tensorflow as tf

    other = kr.build_classifier(TINY, num_classes=3, weights=None)
    for wrapped in (kr.load_ensemble([model, other]), kr.tta_model(model, n=4)):
        path = kr.export_saved_model(wrapped, tmp_path / wrapped.name, class_names=["a", "b", "c"])
        served = tf.saved_model.load(path)
        np.testing.assert_allclose(served.serve(IMAGES)["probabilities"].numpy(),
                                   wrapped.predict(IMAGES, verbose=0), atol=1e-5)
    np.testing.assert_allclose(kr.tta_model(model, n=4).predict(IMAGES, verbose=0),
                               kr.predict_tta(model, IMAGES, n=4), atol=1e-5)


IMAGES_32 = np.random.default_rng(1).integers(0, 60, (6, 32, 32, 3)).astype("uint8")
for _i in range(6):  # a different bright channel per image: different predicted classes
    IMAGES_32[_i, ..., _i % 3] += 150


@pytest.fixture(scope="module")
def multitask_model():
    keras.utils.set_random_seed(0)
    model = kr.build_multitask(TINY, {"label": 3, "brightness": "regression"}, image_size=32,
                               weights=None, augment="light")
    # Non-trivial outputs: large output weights, and label biases that centre the logits over
    # IMAGES_32 so that the images get different classes.
    head = model.get_layer("head")
    for task in ("label", "brightness"):
        kernel = head.get_layer(task).kernel
        kernel.assign(np.random.default_rng(2).normal(0, 20, kernel.shape).astype("float32"))
    features = model.get_layer("backbone")(model.get_layer("preprocess")(IMAGES_32))
    pooled = keras.ops.convert_to_numpy(keras.ops.mean(features, axis=(1, 2)))
    label = head.get_layer("label")
    label.bias.assign(-(pooled @ keras.ops.convert_to_numpy(label.kernel)).mean(0))
    return model


def _predict_tasks(model, images):
    return {task: np.asarray(value) for task, value in model.predict(images, verbose=0).items()}


def test_multitask_model_serves_one_output_per_task(multitask_model, tmp_path):
    import tensorflow as tf

    names = ["red", "green", "blue"]
    path = kr.export_saved_model(multitask_model, tmp_path / "multi",
                                 class_names={"label": names}, metadata={"note": "two tasks"})
    expected = _predict_tasks(multitask_model, IMAGES_32)
    index = expected["label"].argmax(-1)
    assert len(set(index.tolist())) > 1  # the class names below are not all the same one
    served = tf.saved_model.load(path)
    blobs = tf.stack([tf.io.encode_png(image) for image in IMAGES_32])
    keys = ["brightness_value", "label_class_index", "label_class_name", "label_probabilities"]
    for outputs in (served.serve(IMAGES_32), served.serve_bytes(blobs)):
        assert sorted(outputs) == (keys if len(outputs) == 4 else sorted(keys + ["ok", "error"]))
        np.testing.assert_allclose(outputs["label_probabilities"].numpy(), expected["label"],
                                   atol=1e-5)
        np.testing.assert_allclose(outputs["brightness_value"].numpy(), expected["brightness"],
                                   atol=1e-5)
        assert outputs["label_class_index"].numpy().tolist() == index.tolist()
        assert [n.decode() for n in outputs["label_class_name"].numpy()] == [
            names[i] for i in index]
    # An item serve_bytes cannot decode: neutral values for every task, and the reason.
    outputs = served.serve_bytes(tf.stack([tf.constant(b""), blobs[0]]))
    assert outputs["ok"].numpy().tolist() == [False, True]
    assert outputs["error"].numpy().tolist() == [b"empty image (0 bytes)", b""]
    assert outputs["brightness_value"].numpy()[0].tolist() == [0.0]
    assert not outputs["label_probabilities"].numpy()[0].any()
    assert outputs["label_class_index"].numpy()[0] == -1
    assert outputs["label_class_name"].numpy()[0] == b""
    assert outputs["label_class_index"].numpy()[1] == index[0]
    assert open(os.path.join(path, "labels_label.txt")).read().split() == names
    assert not os.path.exists(os.path.join(path, "labels.txt"))
    info = json.load(open(os.path.join(path, "kerasrecipes.json")))
    assert info["class_names"] == {"label": names}
    assert info["metadata"] == {"note": "two tasks"} and info["image_size"] == [32, 32]
    assert info["tasks"] == {
        "label": {"kind": "multiclass", "units": 3, "class_names": names,
                  "outputs": ["label_probabilities", "label_class_index", "label_class_name"]},
        "brightness": {"kind": "regression", "units": 1, "class_names": None,
                       "outputs": ["brightness_value"]},
    }

    fresh = _serve_in_a_fresh_process(path, IMAGES_32, tmp_path)
    for prefix in ("", "tfsm_"):
        np.testing.assert_allclose(fresh[prefix + "label_probabilities"], expected["label"],
                                   atol=1e-5)
        np.testing.assert_allclose(fresh[prefix + "brightness_value"], expected["brightness"],
                                   atol=1e-5)
        assert fresh[prefix + "label_class_name"].tolist() == [names[i].encode() for i in index]


def test_multitask_tflite_and_onnx_name_their_outputs_after_the_tasks(multitask_model, tmp_path):
    import tensorflow as tf

    from kerasrecipes.export import export_onnx, export_tflite

    expected = _predict_tasks(multitask_model, IMAGES_32)
    interpreter = _tflite_interpreter(export_tflite(multitask_model, tmp_path / "m.tflite"))
    got = interpreter.get_signature_runner("serve")(images=IMAGES_32)
    assert sorted(got) == ["brightness", "label"]
    for task in got:
        np.testing.assert_allclose(got[task], expected[task], atol=1e-5)

    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("tf2onnx")
    session = ort.InferenceSession(export_onnx(multitask_model, tmp_path / "m.onnx"))
    names = [output.name for output in session.get_outputs()]
    got = dict(zip(names, session.run(None, {session.get_inputs()[0].name: IMAGES_32})))
    assert sorted(got) == ["brightness", "label"]
    for task in got:
        np.testing.assert_allclose(got[task], expected[task], atol=1e-5)


@pytest.mark.parametrize("class_names, message", [
    (["a", "b", "c"], "The model is multi-task: class_names must be a dict task"),
    ({"colour": ["a", "b", "c"]}, "class_names names unknown tasks \\['colour'\\]"),
    ({"brightness": ["low", "high"]}, "Task 'brightness' is a regression head"),
    ({"label": ["a", "b"]}, "class_names\\['label'\\] has 2 names but the model has 3 classes"),
])
def test_multitask_class_names_errors(multitask_model, tmp_path, class_names, message):
    with pytest.raises(ValueError, match=message):
        kr.export_saved_model(multitask_model, tmp_path / "x", class_names=class_names)


def test_single_output_model_rejects_class_names_per_task(model, tmp_path):
    with pytest.raises(ValueError, match="class_names is a dict, but the model has a single"):
        kr.export_saved_model(model, tmp_path / "x", class_names={"label": ["a", "b", "c"]})


def _openvino_run(path, images):
    import openvino as ov

    # float32 math: the CPU plugin's default is bfloat16 on CPUs with AVX-512 BF16 / AMX.
    compiled = ov.Core().compile_model(path, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    assert compiled.inputs[0].get_element_type().get_type_name() == "u8"
    return compiled, compiled(images)


def test_openvino_matches_predict_in_inference_mode(model, tmp_path):
    pytest.importorskip("openvino")
    pytest.importorskip("tf2onnx")
    from kerasrecipes.export import export_openvino

    path = export_openvino(model, tmp_path / "ov" / "model.xml")
    assert sorted(os.listdir(tmp_path / "ov")) == ["model.bin", "model.xml"]
    compiled, outputs = _openvino_run(path, IMAGES)
    assert len(compiled.outputs) == 1  # the model's output only
    expected = model.predict(IMAGES, verbose=0)
    np.testing.assert_allclose(outputs[0], expected, atol=1e-5)
    np.testing.assert_array_equal(compiled(IMAGES)[0], outputs[0])
    with pytest.raises(ValueError, match="path must end in .xml"):
        export_openvino(model, tmp_path / "model.bin")


def test_multitask_openvino_names_its_outputs_after_the_tasks(multitask_model, tmp_path):
    pytest.importorskip("openvino")
    pytest.importorskip("tf2onnx")
    from kerasrecipes.export import export_openvino

    compiled, outputs = _openvino_run(export_openvino(multitask_model, tmp_path / "m.xml"),
                                      IMAGES_32)
    expected = _predict_tasks(multitask_model, IMAGES_32)
    got = {next(iter(port.get_names() & set(expected))): outputs[port]
           for port in compiled.outputs}
    assert sorted(got) == ["brightness", "label"]
    for task in got:
        np.testing.assert_allclose(got[task], expected[task], atol=1e-5)


def test_keras_exporters_keep_inference_mode_through_the_wrapper(model, tmp_path):
    """Keras' `model.export(format="litert")` on the model as is would keep the "standard"
    augmentation in the graph; through `inference_model` its output equals `predict`."""
    from kerasrecipes.export import inference_model

    wrapper, signature = inference_model(model)
    path = str(tmp_path / "k.tflite")
    wrapper.export(path, format="litert", input_signature=signature, verbose=False)
    interpreter = _tflite_interpreter(path)
    inp = interpreter.get_input_details()[0]
    assert np.dtype(inp["dtype"]) == np.uint8
    interpreter.resize_tensor_input(inp["index"], IMAGES.shape)
    interpreter.allocate_tensors()
    interpreter.set_tensor(inp["index"], IMAGES)
    interpreter.invoke()
    got = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
    np.testing.assert_allclose(got, model.predict(IMAGES, verbose=0), atol=1e-5)


def test_cli_export_writes_openvino(model, tmp_path):
    pytest.importorskip("openvino")
    pytest.importorskip("tf2onnx")
    from kerasrecipes.cli import main

    model.save(tmp_path / "model.keras")
    out = tmp_path / "exported"
    assert main(["export", str(tmp_path / "model.keras"), "--out", str(out),
                 "--formats", "openvino"]) == 0
    assert sorted(os.listdir(out)) == ["model.bin", "model.xml"]
    _, outputs = _openvino_run(str(out / "model.xml"), IMAGES)
    np.testing.assert_allclose(outputs[0], model.predict(IMAGES, verbose=0), atol=1e-5)
