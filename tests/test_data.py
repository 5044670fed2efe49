"""Tests for kerasrecipes.data: decoding rules, bad-file scan, layouts, errors, tfds and arrays."""

import io
import os
import struct
import zlib

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from conftest import class_color
from test_augment import torchvision_crop_windows
from kerasrecipes import data as krdata
from kerasrecipes.augment import RandomResizedCrop
from kerasrecipes.data import array_datasets
from kerasrecipes.data import image_folder_datasets
from kerasrecipes.data import load_image
from kerasrecipes.data import tfds_datasets

SIZE = 8  # Decode fixtures are 8x8 and loaded at image_size=8, so no resize touches the pixels.


# ---------------------------------------------------------------------------------------------
# Helpers writing the decode cases and the expected pixels, computed independently of data.py.


def _on_white(rgb, alpha, max_value=255):
    """Float reference of compositing on white, rounded to 8 bits."""
    rgb = np.asarray(rgb, np.float64) / max_value * 255.0
    a = np.asarray(alpha, np.float64)[..., None] / max_value
    return np.round(rgb * a + 255.0 * (1 - a)).astype(np.uint8)


def _write_png16(path, pixels):
    """Writes a 16-bit PNG (gray, gray+alpha, RGB or RGBA by channel count); PIL cannot."""
    h, w, c = pixels.shape
    color_type = {1: 0, 2: 4, 3: 2, 4: 6}[c]
    raw = b"".join(b"\x00" + pixels[i].astype(">u2").tobytes() for i in range(h))

    def chunk(tag, body):
        return struct.pack(">I", len(body)) + tag + body + struct.pack(">I", zlib.crc32(tag + body))

    header = struct.pack(">IIBBBBB", w, h, 16, color_type, 0, 0, 0)
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw))
                + chunk(b"IEND", b""))


def _rand(shape, seed, high=256, dtype=np.uint8):
    return np.random.default_rng(seed).integers(0, high, shape).astype(dtype)


def _decode_cases(folder):
    """Writes one file per decode case into `folder`; returns {name: (path, expected, kind)}.

    `expected` is the exact RGB uint8 result, or `(reference, tolerance)` for lossy cases.
    """
    os.makedirs(folder, exist_ok=True)
    cases = {}

    def path(name):
        return os.path.join(folder, name)

    rgb = _rand((SIZE, SIZE, 3), 1)
    Image.fromarray(rgb).save(path("rgb.png"))
    cases["rgb_png"] = (path("rgb.png"), rgb, "png")

    rgba = _rand((SIZE, SIZE, 4), 2)
    rgba[0, 0] = (255, 0, 0, 0)  # Fully transparent red must become white.
    rgba[0, 1] = (0, 0, 255, 255)
    Image.fromarray(rgba, "RGBA").save(path("rgba.png"))
    expected = _on_white(rgba[..., :3], rgba[..., 3])
    assert expected[0, 0].tolist() == [255, 255, 255] and expected[0, 1].tolist() == [0, 0, 255]
    cases["rgba_png"] = (path("rgba.png"), expected, "png_wide")

    gray16 = _rand((SIZE, SIZE, 1), 3, high=65536, dtype=np.uint16)
    gray16[0, 0, 0], gray16[0, 1, 0] = 65535, 1000  # 1000 would clip to 255 with convert("L").
    Image.fromarray(gray16[..., 0]).save(path("gray16.png"))  # PIL writes I;16 as 16-bit.
    cases["gray16_png"] = (path("gray16.png"), np.repeat(np.round(gray16 / 257.0), 3, -1)
                           .astype(np.uint8), "png_wide")

    rgb16 = _rand((SIZE, SIZE, 3), 4, high=65536, dtype=np.uint16)
    _write_png16(path("rgb16.png"), rgb16)
    cases["rgb16_png"] = (path("rgb16.png"), np.round(rgb16 / 257.0).astype(np.uint8), "png_wide")

    rgba16 = _rand((SIZE, SIZE, 4), 5, high=65536, dtype=np.uint16)
    _write_png16(path("rgba16.png"), rgba16)
    cases["rgba16_png"] = (path("rgba16.png"), _on_white(rgba16[..., :3], rgba16[..., 3], 65535),
                           "png_wide")

    palette = np.array([[255, 0, 0], [0, 0, 255], [0, 255, 0], [10, 20, 30]], np.uint8)
    index = _rand((SIZE, SIZE), 6, high=4)
    index[0, 0], index[0, 1] = 0, 1
    pimg = Image.fromarray(index, "P")
    pimg.putpalette(palette.flatten().tolist())
    pimg.save(path("palette.png"))
    cases["palette_png"] = (path("palette.png"), palette[index], "png")
    pimg.save(path("palette_trns.png"), transparency=0)  # Index 0 (red) is transparent.
    expected = palette[index].copy()
    expected[index == 0] = 255
    cases["palette_trns_png"] = (path("palette_trns.png"), expected, "png_wide")

    gray = _rand((SIZE, SIZE), 7)
    Image.fromarray(gray, "L").save(path("gray.png"))
    cases["gray_png"] = (path("gray.png"), np.repeat(gray[..., None], 3, -1), "png")

    # JPEG: TensorFlow's decoder must match PIL's bit for bit (INTEGER_ACCURATE IDCT).
    jpeg_rgb = _rand((SIZE * 2, SIZE * 2, 3), 8)[::2, ::2]
    for sub, name in ((2, "rgb420.jpg"), (0, "rgb444.jpg")):
        Image.fromarray(jpeg_rgb).save(path(name), quality=90, subsampling=sub)
        reference = np.asarray(Image.open(path(name)).convert("RGB"))
        cases[name] = (path(name), reference, "jpeg")
    Image.fromarray(gray, "L").save(path("gray.jpg"), quality=90)
    reference = np.asarray(Image.open(path("gray.jpg")).convert("RGB"))
    assert (reference[..., 0] == reference[..., 2]).all()
    cases["gray_jpg"] = (path("gray.jpg"), reference, "jpeg")
    Image.fromarray(jpeg_rgb).save(path("jpeg_named.png"), format="JPEG", quality=90)
    reference = np.asarray(Image.open(path("jpeg_named.png")).convert("RGB"))
    cases["jpeg_named_png"] = (path("jpeg_named.png"), reference, "jpeg")

    solid = np.zeros((SIZE, SIZE, 3), np.uint8)
    solid[:, : SIZE // 2] = (255, 0, 0)
    solid[:, SIZE // 2 :] = (0, 128, 255)
    Image.fromarray(solid).convert("CMYK").save(path("cmyk.jpg"), quality=95)
    assert Image.open(path("cmyk.jpg")).mode == "CMYK"
    cases["cmyk_jpg"] = (path("cmyk.jpg"), (solid, 12), "pil")

    # EXIF orientation 6 = rotate 90° clockwise to display. Stored 8 wide x 4 high, left half red.
    stored = np.zeros((SIZE // 2, SIZE, 3), np.uint8)
    stored[:, : SIZE // 2] = (255, 0, 0)
    stored[:, SIZE // 2 :] = (0, 0, 255)
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(stored).save(path("rotated.jpg"), quality=95, subsampling=0,
                                 exif=exif.tobytes())
    upright = np.rot90(stored, k=-1)  # 4 wide x 8 high; red (the old left) now on top.
    cases["exif_rotated_jpg"] = (path("rotated.jpg"), (upright, 12), "pil")

    frames = [Image.new("RGB", (SIZE, SIZE), c) for c in ((255, 0, 0), (0, 0, 255))]
    frames[0].save(path("anim.gif"), save_all=True, append_images=frames[1:], duration=100, loop=0)
    assert Image.open(path("anim.gif")).n_frames == 2
    cases["animated_gif"] = (path("anim.gif"), np.full((SIZE, SIZE, 3), (255, 0, 0), np.uint8),
                             "pil")

    Image.fromarray(rgb).save(path("rgb.bmp"))
    cases["bmp"] = (path("rgb.bmp"), rgb, "pil")
    Image.fromarray(gray, "L").save(path("gray.bmp"))
    cases["gray_bmp"] = (path("gray.bmp"), np.repeat(gray[..., None], 3, -1), "pil")
    Image.fromarray(rgb).save(path("rgb.tiff"))
    cases["tiff"] = (path("rgb.tiff"), rgb, "pil")
    try:
        Image.fromarray(rgb).save(path("rgb.webp"), lossless=True)
        cases["webp"] = (path("rgb.webp"), rgb, "pil")
    except (OSError, KeyError):  # PIL built without WebP.
        pass
    return cases


def _assert_pixels(actual, expected, name):
    if isinstance(expected, tuple):
        expected, tolerance = expected
    else:
        tolerance = 0
    assert actual.dtype == np.uint8, name
    assert actual.shape == expected.shape, name
    diff = np.abs(actual.astype(int) - expected.astype(int)).max()
    assert diff <= tolerance, f"{name}: max difference {diff} > {tolerance}"


@pytest.fixture(scope="module")
def decode_cases(tmp_path_factory):
    return _decode_cases(str(tmp_path_factory.mktemp("decode")))


# ---------------------------------------------------------------------------------------------
# Decoding.


def test_scan_picks_the_decode_path_per_file(decode_cases):
    for name, (path, _, kind) in decode_cases.items():
        assert krdata._inspect(path) == (kind, None), name


def test_load_image_decodes_every_format_to_rgb_uint8(decode_cases):
    for name, (path, expected, _) in decode_cases.items():
        _assert_pixels(load_image(path), expected, name)


def test_pipeline_decodes_like_load_image(decode_cases, tmp_path):
    # Put every case into the test split; the pipeline must give the same pixels as load_image.
    root = tmp_path / "root"
    square = {n: c for n, c in decode_cases.items() if n != "exif_rotated_jpg"}
    for split_class in ("train/a", "train/b", "test/a"):
        os.makedirs(root / split_class)
    for i, (name, (path, _, _)) in enumerate(sorted(square.items())):
        os.link(path, root / "test" / "a" / f"{i:02d}_{os.path.basename(path)}")
    for cls in ("a", "b"):
        Image.new("RGB", (SIZE, SIZE), (1, 2, 3)).save(root / "train" / cls / "x.png")

    data = image_folder_datasets(str(root), image_size=SIZE, batch_size=64, cache=False)
    assert data.skipped == []
    images, labels = next(iter(data.test))
    assert images.shape == (len(square), SIZE, SIZE, 3) and images.dtype == tf.uint8
    by_name = {os.path.basename(p)[3:]: images[i].numpy() for i, (p, _) in
               enumerate(data.files["test"])}
    for name, (path, expected, _) in square.items():
        _assert_pixels(by_name[os.path.basename(path)], expected, name)


def test_composite_helpers_agree_for_8_and_16_bit():
    rng = np.random.default_rng(0)
    rgba8 = rng.integers(0, 256, (500, 4))
    np.testing.assert_array_equal(krdata._composite_on_white(rgba8),
                                  _on_white(rgba8[:, :3], rgba8[:, 3]))
    np.testing.assert_array_equal(krdata._composite_on_white(rgba8 * 257, 65535),
                                  krdata._composite_on_white(rgba8))
    rgba16 = rng.integers(0, 65536, (500, 4)).astype(np.uint16)
    np.testing.assert_array_equal(krdata._tf_composite_on_white(rgba16).numpy(),
                                  krdata._composite_on_white(rgba16, 65535))
    values = np.arange(65536)
    np.testing.assert_array_equal(krdata._scale16_to_8(values), np.round(values / 257.0))


def test_load_image_resizes_and_crops(tmp_path):
    pixels = np.zeros((10, 20, 3), np.uint8)  # Red | green (centre half) | blue.
    pixels[:, :5], pixels[:, 5:15], pixels[:, 15:] = (255, 0, 0), (0, 255, 0), (0, 0, 255)
    path = str(tmp_path / "bands.png")
    Image.fromarray(pixels).save(path)

    stretched = load_image(path, image_size=(6, 6))
    assert stretched.shape == (6, 6, 3) and stretched.dtype == np.uint8
    assert stretched[0, 0, 0] > 200 and stretched[0, -1, 2] > 200
    cropped = load_image(path, image_size=6, crop_to_aspect_ratio=True)
    np.testing.assert_array_equal(cropped, np.full((6, 6, 3), (0, 255, 0), np.uint8))


def test_load_image_without_tensorflow_matches(decode_cases, monkeypatch):
    with_tf = {n: load_image(p) for n, (p, _, _) in decode_cases.items()}
    monkeypatch.setattr(krdata, "_optional_tensorflow", lambda: None)
    for name, (path, expected, _) in decode_cases.items():
        # PIL reads 16-bit RGB(A) PNGs as 8-bit by dropping the low byte: off by at most 1.
        tolerance = 1 if name in ("rgb16_png", "rgba16_png") else 0
        diff = np.abs(load_image(path).astype(int) - with_tf[name].astype(int)).max()
        assert diff <= tolerance, name
    assert load_image(decode_cases["rgb_png"][0], image_size=4).shape == (4, 4, 3)


def test_load_image_errors(tmp_path):
    with pytest.raises(ValueError, match="not found.*missing.jpg"):
        load_image(str(tmp_path / "missing.jpg"))
    bad = tmp_path / "notes.jpg"
    bad.write_text("shopping list")
    with pytest.raises(ValueError, match="notes.jpg.*text"):
        load_image(str(bad))
    Image.new("RGB", (4, 4)).save(tmp_path / "ok.png")
    with pytest.raises(ValueError, match="image_size"):
        load_image(str(tmp_path / "ok.png"), image_size=(0, 4))


# ---------------------------------------------------------------------------------------------
# Bad files.


def _add_bad_files(root):
    """Adds bad files to class `cat` of `root`; returns {filename: reason keyword}."""
    cat = os.path.join(root, "cat")
    open(os.path.join(cat, "empty.jpg"), "wb").close()
    good = io.BytesIO()
    Image.fromarray(_rand((64, 64, 3), 0)).save(good, format="JPEG")
    with open(os.path.join(cat, "truncated.jpg"), "wb") as f:
        f.write(good.getvalue()[: len(good.getvalue()) // 2])
    png = io.BytesIO()
    Image.fromarray(_rand((64, 64, 3), 1)).save(png, format="PNG")
    with open(os.path.join(cat, "cut.png"), "wb") as f:
        f.write(png.getvalue()[: len(png.getvalue()) // 2])
    with open(os.path.join(cat, "readme.jpg"), "w") as f:
        f.write("This is not a photo.\n")
    with open(os.path.join(cat, "phone.png"), "wb") as f:
        f.write(b"\x00\x00\x00\x18ftypheic" + bytes(64))
    with open(os.path.join(cat, "._hidden.jpg"), "wb") as f:  # macOS resource fork.
        f.write(b"\x00\x05\x16\x07\x00\x02\x00\x00Mac OS X        " + bytes(40))
    # Not images by extension: ignored without a word.
    with open(os.path.join(cat, "notes.txt"), "w") as f:
        f.write("hello")
    with open(os.path.join(root, "dog", ".DS_Store"), "wb") as f:
        f.write(bytes(16))
    return {
        "empty.jpg": "empty",
        "truncated.jpg": "truncated",
        "cut.png": "truncated",
        "readme.jpg": "text",
        "phone.png": "unsupported format: HEIC",
        "._hidden.jpg": "unsupported",
    }


def test_bad_files_are_skipped_and_reported(image_folder):
    bad = _add_bad_files(image_folder)
    with pytest.warns(UserWarning, match=r"Skipped 6 unreadable image file\(s\)"):
        data = image_folder_datasets(image_folder, image_size=16, batch_size=4, seed=0)
    reasons = {os.path.basename(p): r for p, r in data.skipped}
    assert sorted(reasons) == sorted(bad)
    for name, keyword in bad.items():
        assert keyword in reasons[name], (name, reasons[name])
    assert data.num_examples == {"train": 12}
    # A whole epoch runs through, twice (the second from the cache), with only the good files.
    for _ in range(2):
        assert sum(int(y.shape[0]) for _, y in data.train) == 12


def test_file_broken_after_the_scan_does_not_stop_the_epoch(image_folder):
    data = image_folder_datasets(image_folder, image_size=8, batch_size=4, cache=False, seed=0)
    assert int(data.train.cardinality()) == 3  # Known length: 12 images in batches of 4.
    victim = data.files["train"][0][0]
    with open(victim, "r+b") as f:
        f.truncate(40)
    # The epoch still completes with 12 images: the broken one is replaced from the next pass.
    for _ in range(2):
        assert sum(int(y.shape[0]) for _, y in data.train) == 12


def test_bad_files_raise_names_every_file(image_folder):
    bad = _add_bad_files(image_folder)
    with pytest.raises(ValueError, match="6 image file") as info:
        image_folder_datasets(image_folder, on_bad_file="raise")
    for name in bad:
        assert name in str(info.value)


def test_class_with_only_bad_files_is_an_error(image_folder):
    os.makedirs(os.path.join(image_folder, "owl"))
    open(os.path.join(image_folder, "owl", "empty.png"), "wb").close()
    with pytest.warns(UserWarning), pytest.raises(ValueError, match="owl.*no readable images"):
        image_folder_datasets(image_folder)


def test_scan_shows_progress_for_many_files(tmp_path, capsys):
    for cls in ("a", "b"):
        os.makedirs(tmp_path / cls)
        for i in range(160):
            Image.new("L", (2, 2), i).save(tmp_path / cls / f"{i}.png")
    data = image_folder_datasets(str(tmp_path), image_size=2, batch_size=64)
    assert data.num_examples == {"train": 320}
    assert "Scanning images: 320 files" in capsys.readouterr().out


# ---------------------------------------------------------------------------------------------
# Layouts, splits, batches.


def test_class_layout_batches(image_folder):
    data = image_folder_datasets(image_folder, image_size=(16, 20), batch_size=5, seed=0)
    assert data.class_names == ["cat", "dog", "fox"]
    assert data.image_size == (16, 20)
    assert data.validation is None and data.test is None
    batches = list(data.train)
    assert [int(y.shape[0]) for _, y in batches] == [5, 5, 2]
    assert int(data.train.cardinality()) == 3
    images, labels = batches[0]
    assert images.dtype == tf.uint8 and labels.dtype == tf.int32
    assert images.shape == (5, 16, 20, 3)
    # Each image still shows its class colour after decoding and resizing.
    for image, label in zip(images.numpy(), labels.numpy()):
        np.testing.assert_allclose(image.reshape(-1, 3).mean(0), class_color(label), atol=8)


def test_validation_split_is_stratified_and_seeded(make_image_folder):
    root = make_image_folder(per_class=10)
    data = image_folder_datasets(root, image_size=8, validation_split=0.2, seed=3)
    assert data.num_examples == {"train": 24, "validation": 6}
    val_labels = [label for _, label in data.files["validation"]]
    assert sorted(val_labels) == [0, 0, 1, 1, 2, 2]
    assert not set(data.files["train"]) & set(data.files["validation"])
    again = image_folder_datasets(root, image_size=8, validation_split=0.2, seed=3)
    assert again.files == data.files
    others = [image_folder_datasets(root, image_size=8, validation_split=0.2, seed=s).files
              for s in (4, 5, 6)]
    assert any(o["validation"] != data.files["validation"] for o in others)


def test_train_order_is_seeded_and_reshuffled_each_epoch(image_folder):
    def epochs(cache):
        data = image_folder_datasets(image_folder, image_size=8, batch_size=12, seed=7,
                                     cache=cache)
        return [next(iter(data.train))[0].numpy() for _ in range(2)]

    for cache in (False, True):
        first, second = epochs(cache)
        again_first, again_second = epochs(cache)
        np.testing.assert_array_equal(first, again_first)
        np.testing.assert_array_equal(second, again_second)
        assert not np.array_equal(first, second)
        # Same images, different order.
        assert sorted(map(bytes, first)) == sorted(map(bytes, second))


def test_split_layout_with_val_alias(make_image_folder):
    root = make_image_folder(splits={"train": 4, "val": 2, "test": 1})
    data = image_folder_datasets(root, image_size=8, batch_size=4)
    assert data.class_names == ["cat", "dog", "fox"]
    assert data.num_examples == {"train": 12, "validation": 6, "test": 3}
    labels = np.concatenate([y.numpy() for _, y in data.validation])
    np.testing.assert_array_equal(labels, [0, 0, 1, 1, 2, 2])  # Not shuffled.
    assert sum(int(y.shape[0]) for _, y in data.test) == 3


def test_split_layout_validation_may_lack_a_class_and_split_from_train(make_image_folder):
    root = make_image_folder(splits={"train": 4})
    write_dir = os.path.join(root, "validation", "dog")
    os.makedirs(write_dir)
    Image.new("RGB", (8, 8)).save(os.path.join(write_dir, "x.png"))
    data = image_folder_datasets(root, image_size=8)
    assert data.num_examples == {"train": 12, "validation": 1}
    assert data.files["validation"][0][1] == 1

    only_train = make_image_folder(name="only_train", splits={"train": 5})
    data = image_folder_datasets(only_train, image_size=8, validation_split=0.2, seed=0)
    assert data.num_examples == {"train": 12, "validation": 3}


def test_class_names_fix_the_label_order(image_folder):
    data = image_folder_datasets(image_folder, image_size=8, class_names=["fox", "cat", "dog"])
    assert data.class_names == ["fox", "cat", "dog"]
    labels = {os.path.basename(os.path.dirname(p)): l for p, l in data.files["train"]}
    assert labels == {"fox": 0, "cat": 1, "dog": 2}


def test_cache_to_file(image_folder, tmp_path):
    cache = str(tmp_path / "cache" / "photos")
    os.makedirs(os.path.dirname(cache))
    data = image_folder_datasets(image_folder, image_size=8, batch_size=4, cache=cache, seed=0)
    for _ in range(2):
        assert sum(int(y.shape[0]) for _, y in data.train) == 12
    assert any(f.startswith("photos_train") for f in os.listdir(os.path.dirname(cache)))


def test_crop_to_aspect_ratio_in_pipeline(tmp_path):
    for cls in ("a", "b"):
        os.makedirs(tmp_path / cls)
        pixels = np.zeros((10, 20, 3), np.uint8)
        pixels[:, :5], pixels[:, 5:15], pixels[:, 15:] = (255, 0, 0), (0, 255, 0), (0, 0, 255)
        Image.fromarray(pixels).save(tmp_path / cls / "bands.png")
    data = image_folder_datasets(str(tmp_path), image_size=6, crop_to_aspect_ratio=True)
    images, _ = next(iter(data.train))
    np.testing.assert_array_equal(images.numpy(), np.full((2, 6, 6, 3), (0, 255, 0), np.uint8))


# ---------------------------------------------------------------------------------------------
# Clear errors.


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"validation_split": 0.0}, "validation_split must be a float in \\(0, 1\\).*=0.0"),
        ({"validation_split": 1.0}, "validation_split.*=1.0"),
        ({"validation_split": "0.1"}, "validation_split.*'0.1'"),
        ({"on_bad_file": "ignore"}, "on_bad_file must be 'skip' or 'raise'.*'ignore'"),
        ({"image_size": 0}, "image_size.*=0"),
        ({"image_size": (32,)}, "image_size.*\\(32,\\)"),
        ({"image_size": (32, -1)}, "image_size.*\\(32, -1\\)"),
        ({"image_size": "big"}, "image_size.*'big'"),
        ({"image_size": 3.5}, "image_size.*3.5"),
        ({"batch_size": 0}, "batch_size must be an int >= 1.*=0"),
        ({"cache": 1.5}, "cache.*1.5"),
        ({"class_names": ["cat", "dog"]}, "class_names must name each class folder"),
    ],
)
def test_bad_arguments(image_folder, kwargs, match):
    with pytest.raises(ValueError, match=match):
        image_folder_datasets(image_folder, **kwargs)


def test_folder_errors(tmp_path, make_image_folder):
    with pytest.raises(ValueError, match="does not exist.*nowhere"):
        image_folder_datasets(str(tmp_path / "nowhere"))
    Image.new("RGB", (4, 4)).save(tmp_path / "loose.jpg")
    with pytest.raises(ValueError, match="is a file"):
        image_folder_datasets(str(tmp_path / "loose.jpg"))
    with pytest.raises(ValueError, match="No class folders.*1 image files directly"):
        image_folder_datasets(str(tmp_path))

    empty = tmp_path / "empty"
    os.makedirs(empty / "cat")
    os.makedirs(empty / "dog")
    (empty / "cat" / "notes.txt").write_text("no images here")
    with pytest.raises(ValueError, match="cat.*has no image files"):
        image_folder_datasets(str(empty))

    single = make_image_folder(name="single", classes=("cat",))
    with pytest.raises(ValueError, match="single class folder \\['cat'\\]"):
        image_folder_datasets(single)


def test_split_layout_errors(make_image_folder):
    root = make_image_folder(splits={"train": 2, "validation": 1})
    extra = os.path.join(root, "validation", "owl")
    os.makedirs(extra)
    Image.new("RGB", (4, 4)).save(os.path.join(extra, "x.png"))
    with pytest.raises(ValueError, match="class folders the train split lacks: \\['owl'\\]"):
        image_folder_datasets(root)

    root = make_image_folder(name="with_val", splits={"train": 2, "val": 1})
    with pytest.raises(ValueError, match="already has a validation folder.*validation_split=0.1"):
        image_folder_datasets(root, validation_split=0.1)

    root = make_image_folder(name="mixed", splits={"train": 2, "cats": 1})
    with pytest.raises(ValueError, match="mixes split folders.*\\['cats'\\]"):
        image_folder_datasets(root)

    root = make_image_folder(name="twice", splits={"train": 2, "val": 1, "validation": 1})
    with pytest.raises(ValueError, match="two folders for the 'validation' split"):
        image_folder_datasets(root)


# ---------------------------------------------------------------------------------------------
# Augmentation in the file pipeline: the random-resized-crop fused into decoding.

RAMP_H, RAMP_W = 200, 256


def _ramp_folder(root, ext, copies=64):
    """Two classes of `copies` links to one image: red = x and green ∝ y (a coordinate map)."""
    y, x = np.mgrid[0:RAMP_H, 0:RAMP_W]
    pixels = np.stack([x, np.round(y * 255 / (RAMP_H - 1)), np.full_like(x, 128)], -1)
    os.makedirs(root)
    first = os.path.join(root, f"ramp.{ext}")
    options = {"quality": 95, "subsampling": 0} if ext == "jpg" else {}
    Image.fromarray(pixels.astype(np.uint8)).save(first, **options)
    for cls in ("a", "b"):
        os.makedirs(os.path.join(root, cls))
        for i in range(copies):
            os.link(first, os.path.join(root, cls, f"{i:02d}.{ext}"))
    os.remove(first)
    return root


def _windows_seen(images):
    """Recovers `(area fraction, aspect w/h, mirrored)` of each crop of a `_ramp_folder` image."""
    images = images.astype(np.float64)
    size = images.shape[1]
    red = images[..., 0].mean(axis=1)  # [N, W]: red depends on x only.
    green = images[..., 1].mean(axis=2) * (RAMP_H - 1) / 255  # [N, H], in pixels.
    # Output pixel j samples the window at (j + 0.5) / size of its width (half-pixel centres).
    w = np.abs(red[:, -1] - red[:, 0]) * size / (size - 1)
    h = (green[:, -1] - green[:, 0]) * size / (size - 1)
    return w * h / (RAMP_H * RAMP_W), w / h, red[:, -1] < red[:, 0]


@pytest.mark.parametrize("ext", ["jpg", "png"])
def test_fused_crop_follows_scale_and_ratio_and_flips_half(tmp_path, ext):
    # At 24 px the crops of a 200×256 JPEG decode at full, 1/2, 1/4 and 1/8 scale; PNG files
    # decode whole and are sliced to a window drawn the same way.
    root = _ramp_folder(str(tmp_path / "ramps"), ext)
    data = image_folder_datasets(root, image_size=24, batch_size=128, cache=False, seed=0,
                                 augment=RandomResizedCrop(horizontal_flip=True), verbose=False)
    images = np.concatenate([x.numpy() for _ in range(2) for x, _ in data.train])
    assert images.shape == (256, 24, 24, 3) and images.dtype == np.uint8
    area, aspect, mirrored = _windows_seen(images)
    # The window is recovered from the pixels, to a few pixels (JPEG error, the 8-pixel grid
    # of 1/8-scale decoding).
    assert area.min() >= 0.08 * 0.85 and area.max() <= 1.1
    assert aspect.min() >= 0.75 * 0.9 and aspect.max() <= 4 / 3 * 1.1
    ref = torchvision_crop_windows(RAMP_H, RAMP_W, 2000)
    ref_area = ref[:, 2] * ref[:, 3] / (RAMP_H * RAMP_W)
    np.testing.assert_allclose(np.quantile(area, [0.25, 0.5, 0.75]),
                               np.quantile(ref_area, [0.25, 0.5, 0.75]), atol=0.08)
    assert np.mean(np.log(aspect)) == pytest.approx(np.mean(np.log(ref[:, 3] / ref[:, 2])),
                                                    abs=0.05)
    assert 0.35 < mirrored.mean() < 0.65


def test_fused_jpeg_crop_matches_decoding_the_whole_file(tmp_path):
    # The same JPEG through the fused decoder and through the decode-then-slice fallback (PIL,
    # bit-identical to TensorFlow's decoder): same window, same pixels. (4:4:4 chroma: with 4:2:0
    # a cropped decode upsamples chroma differently at the window's edge.)
    rng = np.random.default_rng(0)
    smooth = tf.image.resize(rng.integers(0, 256, (1, 12, 16, 3)).astype("float32"), (96, 128))
    path = str(tmp_path / "photo.jpg")
    Image.fromarray(np.uint8(smooth[0].numpy())).save(path, quality=95, subsampling=0)
    data = tf.io.read_file(path)
    crop = RandomResizedCrop(horizontal_flip=True)
    jpeg, pil = krdata._KINDS.index("jpeg"), krdata._KINDS.index("pil")
    # At 50 px no window is DCT-scaled (that needs 100 px of the 96 px height).
    fused = tf.function(krdata._random_crop_decoder(crop, (50, 50), [jpeg]))
    fallback = tf.function(krdata._random_crop_decoder(crop, (50, 50), [pil]))
    for s in range(12):
        seed = tf.constant([s, 0], tf.int64)
        a, b = fused(data, jpeg, seed).numpy(), fallback(data, pil, seed).numpy()
        assert a.shape == b.shape == (50, 50, 3)
        np.testing.assert_array_equal(a, b)
    # A window 2× the output decodes at 1/2 scale: exactly libjpeg's 1/2-scale decode.
    half = krdata._decode_jpeg_window(data, tf.constant([0, 0, 96, 128]), (48, 64)).numpy()
    np.testing.assert_array_equal(
        half, tf.io.decode_jpeg(data, channels=3, ratio=2, dct_method="INTEGER_ACCURATE"))
    quarter = krdata._decode_jpeg_window(data, tf.constant([32, 64, 64, 64]), (16, 16)).numpy()
    np.testing.assert_array_equal(
        quarter, tf.io.decode_jpeg(data, channels=3, ratio=4, dct_method="INTEGER_ACCURATE")
        [8:24, 16:32])


def _build(root, augment, cache=False):
    return image_folder_datasets(root, image_size=16, batch_size=4, seed=0, cache=cache,
                                 augment=augment, verbose=False)


def _two_epochs(data):
    return [np.concatenate([x.numpy() for x, _ in data.train]) for _ in range(2)]


def test_fused_standard_preset_is_seeded_and_fresh_each_epoch(image_folder):
    first, second = _two_epochs(_build(image_folder, "standard"))
    assert first.shape == (12, 16, 16, 3) and first.dtype == np.uint8
    assert not np.array_equal(first, second)  # New crops and colours every epoch.
    again = _two_epochs(_build(image_folder, "standard"))
    np.testing.assert_array_equal(again[0], first)
    np.testing.assert_array_equal(again[1], second)


def test_fused_crop_keeps_labels_caches_files_and_leaves_validation(make_image_folder):
    root = make_image_folder(splits={"train": 4, "validation": 2})
    crop_only = _build(root, RandomResizedCrop())
    # Labels still match the images (each class has its own colour; the crop keeps it).
    for images, labels in crop_only.train:
        for image, label in zip(images.numpy(), labels.numpy()):
            np.testing.assert_allclose(image.reshape(-1, 3).mean(0), class_color(label), atol=10)
    # The cache holds the encoded files: the crops still change every epoch.
    cached = _two_epochs(_build(root, RandomResizedCrop(), cache=True))
    assert cached[0].shape == (12, 16, 16, 3) and not np.array_equal(cached[0], cached[1])

    # Validation is untouched: the deterministic resize of the un-augmented pipeline.
    def validation(data):
        return [np.concatenate([b[i].numpy() for b in data.validation]) for i in (0, 1)]

    expected = validation(_build(root, None))
    assert expected[0].shape == (6, 16, 16, 3)
    for got, want in zip(validation(crop_only), expected):
        np.testing.assert_array_equal(got, want)


def test_other_presets_augment_the_training_batches_only(image_folder):
    plain = image_folder_datasets(image_folder, image_size=16, batch_size=12, seed=0,
                                  validation_split=0.25, verbose=False)
    light = image_folder_datasets(image_folder, image_size=16, batch_size=12, seed=0,
                                  validation_split=0.25, augment="light", verbose=False)
    x, y = next(iter(light.train))
    x0, y0 = next(iter(plain.train))
    assert x.shape == x0.shape and x.dtype == tf.uint8
    np.testing.assert_array_equal(y.numpy(), y0.numpy())
    assert not np.array_equal(x.numpy(), x0.numpy())
    np.testing.assert_array_equal(next(iter(light.validation))[0], next(iter(plain.validation))[0])
    none = image_folder_datasets(image_folder, image_size=16, batch_size=12, seed=0,
                                 validation_split=0.25, augment="none", verbose=False)
    np.testing.assert_array_equal(next(iter(none.train))[0], x0)


def test_fused_crop_survives_a_file_broken_after_the_scan(image_folder):
    for cache in (False, True):
        data = image_folder_datasets(image_folder, image_size=8, batch_size=4, cache=cache,
                                     seed=0, augment=RandomResizedCrop(), verbose=False)
        victim = data.files["train"][0][0]
        with open(victim, "rb") as f:
            original = f.read()
        with open(victim, "r+b") as f:
            f.truncate(40)
        try:
            for _ in range(2):
                assert sum(int(y.shape[0]) for _, y in data.train) == 12
        finally:
            with open(victim, "wb") as f:
                f.write(original)


@pytest.mark.parametrize(
    "augment, match",
    [
        ("heavy", "preset must be one of.*'heavy'"),
        (3, "augment must be a preset name or a Keras layer.*augment=3"),
        (RandomResizedCrop(20, 20),
         "must output image_size.*\\(20, 20\\).*image_size=\\(16, 16\\)"),
    ],
)
def test_bad_augment(image_folder, augment, match):
    with pytest.raises(ValueError, match=match):
        image_folder_datasets(image_folder, image_size=16, augment=augment)


# ---------------------------------------------------------------------------------------------
# TensorFlow Datasets (mocked: never the network).


@pytest.mark.parametrize("name", ["cifar10", "mnist", "tf_flowers"])
def test_tfds_datasets_mocked(name):
    import tensorflow_datasets as tfds

    with tfds.testing.mock_data(num_examples=6):
        data = tfds_datasets(name, image_size=(20, 24), batch_size=4, splits=("train", "test"),
                             seed=0)
        label_feature = tfds.builder(name).info.features["label"]
        assert data.class_names == label_feature.names
        assert data.num_examples == {"train": 6, "validation": 6}
        assert data.test is None
        images, labels = next(iter(data.train))
        assert images.shape == (4, 20, 24, 3) and images.dtype == tf.uint8
        assert labels.dtype == tf.int32
        assert 0 <= labels.numpy().min() and labels.numpy().max() < len(data.class_names)
        if name == "mnist":  # Grayscale, repeated into RGB.
            np.testing.assert_array_equal(images[..., 0], images[..., 2])
        if name == "tf_flowers":  # Class names written in the builder's code.
            assert data.class_names[:2] == ["dandelion", "daisy"]
        assert sum(int(y.shape[0]) for _, y in data.validation) == 6


def test_tfds_datasets_three_splits_default_splits_and_errors():
    import tensorflow_datasets as tfds

    with tfds.testing.mock_data(num_examples=3):
        data = tfds_datasets("beans", image_size=8, batch_size=2,
                             splits=("train", "validation", "test"))
        assert data.class_names == ["angular_leaf_spot", "bean_rust", "healthy"]
        assert data.num_examples == {"train": 3, "validation": 3, "test": 3}
        assert next(iter(data.test))[0].shape == (2, 8, 8, 3)
        data = tfds_datasets("mnist", image_size=8, batch_size=2)
        assert data.num_examples == {"train": 3, "validation": 3}  # train + test.
        with pytest.raises(ValueError, match="splits must be a sequence of 1 to 3"):
            tfds_datasets("mnist", splits="train")


# ---------------------------------------------------------------------------------------------
# Arrays.


def test_array_datasets_batches(tiny_images):
    x, y = tiny_images
    data = array_datasets(x, y, batch_size=3, seed=0, class_names=["no", "yes"])
    assert data.class_names == ["no", "yes"] and data.image_size == (32, 32)
    batches = list(data.train)
    assert [int(b[1].shape[0]) for b in batches] == [3, 3, 2]
    images = np.concatenate([b[0].numpy() for b in batches])
    labels = np.concatenate([b[1].numpy() for b in batches])
    assert images.dtype == np.uint8 and labels.dtype == np.int32
    # Shuffled, but every (image, label) pair intact.
    order = [int(np.flatnonzero((x == im).all(axis=(1, 2, 3)))[0]) for im in images]
    assert sorted(order) == list(range(8)) and order != list(range(8))
    np.testing.assert_array_equal(labels, y[order])


def test_array_datasets_split_and_conversions(tiny_images):
    x, y = tiny_images
    data = array_datasets(x.astype(np.float32), y, validation_split=0.25, seed=1, batch_size=8)
    assert data.num_examples == {"train": 6, "validation": 2}
    val_x, val_y = next(iter(data.validation))
    assert sorted(val_y.numpy().tolist()) == [0, 1]
    gray = array_datasets(x[..., 0], y, image_size=16, batch_size=8)
    images, _ = next(iter(gray.train))
    assert images.shape == (8, 16, 16, 3)
    np.testing.assert_array_equal(images[..., 0], images[..., 1])


def test_array_datasets_without_tensorflow_gives_pydataset(tiny_images, monkeypatch):
    import keras

    x, y = tiny_images
    with_tf = array_datasets(x, y, x_val=x[:5], y_val=y[:5], batch_size=3, seed=0)
    monkeypatch.setattr(krdata, "_optional_tensorflow", lambda: None)
    data = array_datasets(x, y, x_val=x[:5], y_val=y[:5], batch_size=3, seed=0)
    assert isinstance(data.train, keras.utils.PyDataset)
    assert len(data.train) == 3 and len(data.validation) == 2
    for (a, b), (c, d) in zip(with_tf.validation, (data.validation[i] for i in range(2))):
        np.testing.assert_array_equal(a.numpy(), c)
        np.testing.assert_array_equal(b.numpy(), d)
    first = np.concatenate([data.train[i][1] for i in range(3)])
    assert sorted(first) == sorted(y)
    orders = []
    for _ in range(3):
        orders.append(np.concatenate([data.train[i][0] for i in range(3)]))
        data.train.on_epoch_end()
    assert not all(np.array_equal(orders[0], o) for o in orders[1:])


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"x_train": np.random.rand(4, 8, 8, 3)}, "floats in \\[0, 1\\].*x_train \\* 255"),
        ({"x_train": np.full((4, 8, 8, 3), 300.0)}, "must hold pixel values in \\[0, 255\\]"),
        ({"x_train": np.zeros((4, 8, 8, 3), np.int16) - 1}, "x_train must hold pixel values"),
        ({"x_train": np.zeros((4, 8, 8, 2), np.uint8)}, "x_train.shape=\\(4, 8, 8, 2\\)"),
        ({"y_train": [0, 1, 0]}, "same length.*len\\(y_train\\)=3, len\\(x_train\\)=4"),
        ({"y_train": np.eye(2)[[0, 1, 0, 1]]}, "argmax"),
        ({"y_train": [0, 1, -1, 0]}, "y_train must be >= 0.*-1"),
        ({"y_train": [0.5, 1, 0, 1]}, "integer class indices"),
        ({"class_names": ["a"]}, "Labels must be < len\\(class_names\\)=1.*label 1"),
        ({"x_val": np.zeros((2, 8, 8, 3), np.uint8)}, "Pass x_val and y_val together"),
        ({"x_val": np.zeros((2, 8, 8, 3), np.uint8), "y_val": [0, 1], "validation_split": 0.5},
         "either x_val/y_val or validation_split.*0.5"),
        ({"x_val": np.zeros((2, 9, 8, 3), np.uint8), "y_val": [0, 1]}, "x_val images must have"),
        ({"batch_size": -2}, "batch_size.*-2"),
        ({"validation_split": 1.5}, "validation_split.*1.5"),
    ],
)
def test_array_datasets_errors(kwargs, match):
    args = {"x_train": np.zeros((4, 8, 8, 3), np.uint8), "y_train": [0, 1, 0, 1], **kwargs}
    with pytest.raises(ValueError, match=match):
        array_datasets(**args)
