"""Tests for kerasrecipes.data.decode and graph_decode: every format becomes the same RGB uint8."""

import io
import os
import re
import struct
import zlib

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from kerasrecipes.data import decode as krdecode
from kerasrecipes.data import folders as krfolders
from kerasrecipes.data import graph_decode
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


# ---------------------------------------------------------------------------------------------
# Bytes: the PIL path (`decode_bytes`), the in-graph path (`decode_image_bytes`, what
# `serve_bytes` runs) and the scan's check with the pipeline's own decoder.


def _encoded(image, fmt, **options):
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def _png_header_only(width, height):
    """A PNG that declares `width` × `height` pixels and holds none (a few dozen bytes)."""
    def chunk(tag, body):
        return struct.pack(">I", len(body)) + tag + body + struct.pack(">I", zlib.crc32(tag + body))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2,
                                                              0, 0, 0)) + chunk(b"IEND", b""))


def _graph_cases(folder, decode_cases):
    """{name: path} of files the in-graph decoder must decode exactly as `load_image` does."""
    cases = {name: path for name, (path, _, _) in decode_cases.items() if name != "tiff"}
    rgb = _rand((12, 8, 3), 10)  # not square: a rotation changes the shape

    def save(name, image, fmt, **options):
        cases[name] = os.path.join(folder, name)
        image.save(cases[name], fmt, **options)

    for orientation in range(10):  # 0 and 9 are not orientations: the image stays as stored
        exif = Image.Exif()
        exif[0x0112] = orientation
        for fmt, options in (("JPEG", {"quality": 95}), ("PNG", {}), ("WEBP", {"lossless": True})):
            save(f"orientation{orientation}.{fmt.lower()}", Image.fromarray(rgb), fmt,
                 exif=exif.tobytes(), **options)
    save("xmp_orientation6.jpeg", Image.fromarray(rgb), "JPEG", quality=95,
         xmp=b'<x:xmpmeta><rdf:Description tiff:Orientation="6"/></x:xmpmeta>')
    save("1bit.png", Image.fromarray(rgb).convert("1"), "PNG")
    save("2bit_palette.png", Image.fromarray(rgb).convert("P", colors=4), "PNG", bits=2)
    save("gray_alpha.png", Image.fromarray(rgb).convert("LA"), "PNG")
    save("rgb_trns.png", Image.fromarray(rgb), "PNG", transparency=tuple(rgb[0, 0].tolist()))
    save("alpha.webp", Image.fromarray(np.dstack([rgb, rgb[..., 0]])), "WEBP", quality=80)
    save("lossy.webp", Image.fromarray(rgb), "WEBP", quality=80)
    save("cmyk_random.jpg", Image.fromarray(rgb).convert("CMYK"), "JPEG", quality=90)
    save("palette.gif", Image.fromarray(rgb).convert("P"), "GIF")
    save("rgba32.bmp", Image.fromarray(np.dstack([rgb, rgb[..., 0]])), "BMP")
    return cases


def test_decode_image_bytes_gives_the_pixels_of_training(decode_cases, tmp_path):
    """TensorFlow ops only, yet `load_image`'s pixels for every format it takes: EXIF (and XMP)
    orientation applied, every PNG depth and transparency, CMYK JPEG, WebP, GIF, BMP."""
    decode = tf.function(graph_decode.decode_image_bytes,
                         input_signature=[tf.TensorSpec([], tf.string)])  # traced once
    for name, path in _graph_cases(str(tmp_path), decode_cases).items():
        with open(path, "rb") as f:
            image = decode(tf.constant(f.read())).numpy()
        expected = load_image(path)
        assert image.shape == expected.shape, name
        assert np.array_equal(image, expected), name


def _gif_first_frame_not_covering():
    """A GIF with a 4×4 screen whose only frame is 2×2 at (1, 1)."""
    data = bytearray(_encoded(Image.new("P", (2, 2), 1), "GIF"))
    data[6:10] = struct.pack("<HH", 4, 4)
    at = 13 + (3 * 2 ** ((data[10] & 7) + 1) if data[10] & 0x80 else 0)
    while data[at] == 0x21:  # skip extensions: label, then sub-blocks
        at += 2
        while data[at]:
            at += data[at] + 1
        at += 1
    assert data[at] == 0x2C
    data[at + 1:at + 5] = struct.pack("<HH", 1, 1)
    return bytes(data)


def test_decode_image_bytes_refuses_what_it_cannot_decode_as_training_does(tmp_path):
    rgb = _rand((6, 5, 3), 11)
    palette = Image.fromarray(rgb).convert("P")
    refused = {
        "TIFF": (_encoded(Image.fromarray(rgb), "TIFF"), "TIFF"),
        "transparent GIF": (_encoded(palette, "GIF", transparency=int(np.asarray(palette)[0, 0])),
                            "GIF with transparency"),
        "partial GIF": (_gif_first_frame_not_covering(), "first frame does not cover"),
        "16-colour BMP": (_encoded(Image.fromarray(rgb).convert("P", colors=16), "BMP"),
                          "BMP with a colour palette"),
        "1-bit BMP": (_encoded(Image.fromarray(rgb).convert("1"), "BMP"), "BMP"),
        "text": (b"just some text", "not an image"),
        "empty": (b"", "empty image"),
    }
    for name, (data, message) in refused.items():
        with pytest.raises(tf.errors.InvalidArgumentError, match=message):
            graph_decode.decode_image_bytes(tf.constant(data))
    # PIL itself decodes the GIF with a partial first frame, so training would use it.
    assert krdecode.decode_bytes(refused["partial GIF"][0]).shape == (4, 4, 3)


def test_decode_image_batch_gives_a_verdict_per_item():
    rgb = _rand((20, 30, 3), 12)
    jpeg = _encoded(Image.fromarray(rgb), "JPEG", quality=90)
    png = _encoded(Image.fromarray(rgb), "PNG")
    frames = [Image.fromarray(np.roll(rgb, i, axis=0)).convert("P") for i in range(3)]
    animated = _encoded(frames[0], "GIF", save_all=True, append_images=frames[1:])
    batch = {
        "jpeg": (jpeg, ""),
        "empty": (b"", "empty image (0 bytes)"),
        "garbage": (b"\x00\x01garbage" * 5, "not an image in a format serve_bytes decodes"),
        "truncated": (jpeg[: len(jpeg) // 2], "corrupt or truncated image: the decoder failed"),
        "1x1": (_encoded(Image.new("RGB", (1, 1), (9, 8, 7)), "PNG"), ""),
        # No pixel data at all: refused from the header alone, before any decoding.
        "huge": (_png_header_only(30000, 20000), "image too large: 30000 × 20000 = 600000000 "
                 "pixels, over the limit of 1000 (max_image_pixels); send it resized"),
        "no frame header": (b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + bytes(200),
                            "corrupt image: its header cannot be read"),
        "animated": (animated, "animated GIF too large to decode: 3 frames of 30 × 20 = 1800"),
        "png": (png, ""),
    }
    names = list(batch)
    blobs = tf.constant([batch[n][0] for n in names])
    # Traced once (a graph, as in serve_bytes), called four times.
    spec = [tf.TensorSpec([None], tf.string)]
    decode = tf.function(
        lambda b: graph_decode.decode_image_batch(b, (8, 8), max_image_pixels=1000),
        input_signature=spec)
    images, ok, error = decode(blobs)
    assert ok.numpy().tolist() == [not batch[n][1] for n in names]
    for name, message in zip(names, error.numpy()):
        assert message.decode().startswith(batch[name][1]), (name, message)
    for i, name in enumerate(names):
        if batch[name][1]:
            assert not images[i].numpy().any(), name
        else:  # the PIL path's pixels, resized as in training
            expected = krdecode.tf_resize(krdecode.decode_bytes(batch[name][0]), (8, 8))
            np.testing.assert_array_equal(images[i].numpy(), expected.numpy(), err_msg=name)
    again = decode(blobs)
    assert np.array_equal(again[0].numpy(), images.numpy())
    assert again[2].numpy().tolist() == error.numpy().tolist()
    # An empty batch, and the GIF's frames within a larger limit.
    empty = decode(tf.zeros([0], tf.string))
    assert empty[0].shape == (0, 8, 8, 3) and empty[1].shape == (0,)
    unlimited = tf.function(lambda b: graph_decode.decode_image_batch(b, (8, 8)),
                            input_signature=spec)
    assert unlimited(tf.constant([animated]))[1].numpy().all()


def test_decode_bytes_gives_the_pixels_of_load_image(decode_cases):
    for name, (path, _, _) in decode_cases.items():
        with open(path, "rb") as f:
            assert np.array_equal(krdecode.decode_bytes(f.read()), load_image(path)), name
    png = _encoded(Image.new("RGB", (40, 30)), "PNG")
    refusals = [
        (b"", {}, "empty image (0 bytes)"),
        (b"plain text", {}, "not an image"),
        (png, {"max_image_pixels": 1000, "limit_name": "--max-image-pixels"},
         "image too large: 40×30 = 1,200 pixels, over the limit of 1,000 (--max-image-pixels)"),
        (_encoded(Image.new("RGB", (40, 30)), "JPEG")[:300], {}, "truncated image"),
    ]
    for data, options, message in refusals:
        with pytest.raises(krdecode.ImageDecodeError, match=re.escape(message)):
            krdecode.decode_bytes(data, **options)


def test_decode_bytes_resizes_like_load_image(decode_cases, tmp_path):
    """`image_size` (what the server uses: decode and resize in one TensorFlow call for JPEG and
    PNG) gives the pixels of `load_image(path, image_size)`, for every decode path, with and
    without the crop, and for a file TensorFlow's decoder rejects (PIL, then the resize)."""
    rgb = _rand((SIZE, SIZE + 7, 3), 14)
    data = bytearray(_encoded(Image.fromarray(rgb), "PNG"))
    at = data.index(b"IDAT")
    data[at + 4 + struct.unpack(">I", data[at - 4:at])[0]] ^= 0xFF  # TF refuses, PIL reads
    (tmp_path / "bad_crc.png").write_bytes(bytes(data))
    cases = {name: path for name, (path, _, _) in decode_cases.items()}
    cases["bad_crc"] = str(tmp_path / "bad_crc.png")
    for name, path in cases.items():
        with open(path, "rb") as f:
            blob = f.read()
        for size, crop in (((5, 9), False), ((5, 9), True), ((23, 11), False)):
            expected = load_image(path, image_size=size, crop_to_aspect_ratio=crop)
            actual = krdecode.decode_bytes(blob, image_size=size, crop_to_aspect_ratio=crop)
            assert np.array_equal(actual, expected), (name, size, crop)
    image = krdecode.decode_bytes(open(cases["bad_crc"], "rb").read())
    assert np.array_equal(krdecode.resize_uint8(image, image.shape[:2]), image)
    assert krdecode.resize_uint8(image, (4, 4)).shape == (4, 4, 3)


def test_files_tensorflow_rejects_take_the_pil_path(tmp_path):
    """A PNG whose IDAT checksum is wrong: PIL reads it, TensorFlow's decoder refuses it. The scan
    checks each file with the decoder the pipeline uses, so it takes the PIL path."""
    rgb = _rand((SIZE, SIZE, 3), 13)
    data = bytearray(_encoded(Image.fromarray(rgb), "PNG"))
    at = data.index(b"IDAT")
    data[at + 4 + struct.unpack(">I", data[at - 4:at])[0]] ^= 0xFF  # the chunk's CRC
    path = tmp_path / "bad_crc.png"
    path.write_bytes(bytes(data))
    assert krdecode.pipeline_decodes(bytes(data), "png") is False
    assert krdecode.pipeline_decodes(_encoded(Image.fromarray(rgb), "PNG"), "png") is True
    assert krdecode.pipeline_decodes(bytes(data), "pil") is None
    assert krscan.inspect_file(str(path)) == ("pil", None)
    np.testing.assert_array_equal(load_image(path), rgb)
    # And the training pipeline reads it among good files.
    root = tmp_path / "root"
    for cls in ("a", "b"):
        os.makedirs(root / cls)
        Image.fromarray(rgb).save(root / cls / "good.png")
    os.replace(path, root / "a" / "bad_crc.png")
    data = image_folder_datasets(str(root), image_size=SIZE, batch_size=8, validation_split=None,
                                 cache=False, verbose=False)
    assert data.skipped == []
    images = np.concatenate([x for x, _ in data.train.as_numpy_iterator()])
    assert len(images) == 3 and all(np.array_equal(image, rgb) for image in images)
