"""Tests for kerasrecipes.data.decode: every format becomes the same RGB uint8, in PIL and TF."""

import os
import struct
import zlib

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from kerasrecipes.data import decode as krdecode
from kerasrecipes.data import folders as krfolders
from kerasrecipes.data import scan as krscan
from kerasrecipes.data import image_folder_datasets
from kerasrecipes.data import load_image


SIZE = 8  # Decode fixtures are 8x8 and loaded at image_size=8, so no resize touches the pixels.


# ---------------------------------------------------------------------------------------------
# Helpers writing the decode cases and the expected pixels, computed independently of the code.


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
        assert krscan.inspect_file(path) == (kind, None), name


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
    np.testing.assert_array_equal(krdecode.composite_on_white(rgba8),
                                  _on_white(rgba8[:, :3], rgba8[:, 3]))
    np.testing.assert_array_equal(krdecode.composite_on_white(rgba8 * 257, 65535),
                                  krdecode.composite_on_white(rgba8))
    rgba16 = rng.integers(0, 65536, (500, 4)).astype(np.uint16)
    np.testing.assert_array_equal(krdecode.tf_composite_on_white(rgba16).numpy(),
                                  krdecode.composite_on_white(rgba16, 65535))
    values = np.arange(65536)
    np.testing.assert_array_equal(krdecode._scale16_to_8(values), np.round(values / 257.0))


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
    monkeypatch.setattr(krfolders, "optional_tensorflow", lambda: None)
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
