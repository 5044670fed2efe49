"""Builds `kerasrecipes/assets/clothing_demo.zip`, the demo data set shipped inside the package.

The source is the clothing-dataset-small (CC0 1.0,
https://github.com/alexeygrigorev/clothing-dataset-small), laid out as `train/<class>/*.jpg` and
`validation/<class>/*.jpg`. Every image of both splits is kept, downscaled so its shorter side is
`N` pixels and re-encoded as JPEG (`optimize=True`). The tool walks a ladder of `(N, quality)`
candidates, largest first, and keeps the first whose zip fits the size budget (20 MB): a 10% sample predicts each candidate's size so only the likely winner is
written in full. On clothing-dataset-small that is N=128 at quality 82 (160, 144 and 128 at quality
85 give 30.4, 25.3 and 21.2 MB). The output is deterministic: files are written in sorted order
with a fixed timestamp, so re-running the tool on the same source gives a byte-identical zip.

Usage:

    python tools/make_demo_data.py                      # reads ../shared/data/clothing
    python tools/make_demo_data.py --src /path/to/clothing --out /tmp/demo.zip
"""

import argparse
import concurrent.futures
import io
import os
import sys
import zipfile

from PIL import Image
from PIL import ImageOps

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_SRC = os.path.join(REPO_ROOT, "..", "shared", "data", "clothing")
DEFAULT_OUT = os.path.join(REPO_ROOT, "kerasrecipes", "assets", "clothing_demo.zip")
LICENSE_OUT = os.path.join(REPO_ROOT, "kerasrecipes", "assets", "CLOTHING_LICENSE.txt")
SPLITS = ("train", "validation")
# (shorter side N, JPEG quality), best first: a larger N before a higher quality.
CANDIDATES = ((160, 85), (144, 85), (128, 85), (128, 82), (128, 80), (128, 75), (112, 80))
# A fixed timestamp keeps the zip byte-identical between runs.
_ZIP_DATE = (2024, 1, 1, 0, 0, 0)
_LICENSE_HEADER = (
    "The demo images in clothing_demo.zip are downscaled copies of the clothing-dataset-small\n"
    "by Alexey Grigorev (https://github.com/alexeygrigorev/clothing-dataset-small), a subset of\n"
    "the clothing dataset (https://github.com/alexeygrigorev/clothing-dataset), released under\n"
    "CC0 1.0 Universal. Its license follows.\n\n"
)


def list_images(src):
    """Returns sorted `(archive_name, source_path)` pairs for every image of every split."""
    items = []
    for split in SPLITS:
        split_dir = os.path.join(src, split)
        if not os.path.isdir(split_dir):
            raise ValueError(f"Expected a `{split}` folder in src. Received: src={src!r}")
        for class_name in sorted(os.listdir(split_dir)):
            class_dir = os.path.join(split_dir, class_name)
            if not os.path.isdir(class_dir):
                continue
            for fname in sorted(os.listdir(class_dir)):
                if fname.lower().endswith((".jpg", ".jpeg", ".png")):
                    stem = os.path.splitext(fname)[0]
                    name = f"{split}/{class_name}/{stem}.jpg"
                    items.append((name, os.path.join(class_dir, fname)))
    if not items:
        raise ValueError(f"No images found under src. Received: src={src!r}")
    return items


def encode(path, short_side, quality=85):
    """Returns the JPEG bytes of `path` downscaled so its shorter side is `short_side` pixels."""
    with Image.open(path) as img:
        img = ImageOps.exif_transpose(img).convert("RGB")
        w, h = img.size
        scale = short_side / min(w, h)
        if scale < 1:
            size = (max(1, round(w * scale)), max(1, round(h * scale)))
            img = img.resize(size, Image.Resampling.LANCZOS)
        buf = io.BytesIO()
        img.save(buf, format="JPEG", quality=quality, optimize=True)
        return buf.getvalue()


def write_zip(items, out, short_side, quality=85, workers=None):
    """Writes all `items` to the zip `out` at `short_side` pixels; returns its size in bytes."""
    tmp = out + ".tmp"
    with concurrent.futures.ThreadPoolExecutor(workers or os.cpu_count()) as pool:
        blobs = pool.map(lambda item: encode(item[1], short_side, quality), items)
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED) as zf:
            for (name, _), blob in zip(items, blobs):
                info = zipfile.ZipInfo(name, date_time=_ZIP_DATE)
                info.external_attr = 0o644 << 16
                zf.writestr(info, blob)
    os.replace(tmp, out)
    return os.path.getsize(out)


def _estimate(items, short_side, quality):
    """Predicts the zip size from every 10th image (the sample is deterministic)."""
    sample = items[::10]
    with concurrent.futures.ThreadPoolExecutor(os.cpu_count()) as pool:
        total = sum(map(len, pool.map(lambda item: encode(item[1], short_side, quality), sample)))
    # ~100 bytes of zip headers per entry.
    return (total / len(sample) + 100) * len(items)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--src", default=DEFAULT_SRC, help="clothing-dataset-small folder")
    parser.add_argument("--out", default=DEFAULT_OUT, help="zip file to write")
    parser.add_argument("--max-mb", type=float, default=20.0, help="size budget in MB (10^6 bytes)")
    args = parser.parse_args(argv)

    items = list_images(args.src)
    budget = int(args.max_mb * 1_000_000)
    for short_side, quality in CANDIDATES:
        estimate = _estimate(items, short_side, quality)
        print(f"N={short_side} q={quality}: ~{estimate / 1e6:.1f} MB (estimated)", file=sys.stderr)
        if estimate > budget * 1.02:
            continue
        size = write_zip(items, args.out, short_side, quality)
        print(f"N={short_side} q={quality}: {len(items)} images, {size / 1e6:.2f} MB",
              file=sys.stderr)
        if size <= budget:
            break
    else:
        raise SystemExit(f"No candidate fits in --max-mb={args.max_mb}.")

    license_src = os.path.join(args.src, "LICENSE")
    if os.path.exists(license_src) and os.path.abspath(args.out) == os.path.abspath(DEFAULT_OUT):
        with open(license_src, encoding="utf-8") as f:
            license_text = f.read()
        with open(LICENSE_OUT, "w", encoding="utf-8") as f:
            f.write(_LICENSE_HEADER + license_text)
    print(f"Wrote {args.out}: N={short_side}, quality={quality}, {size} bytes")


if __name__ == "__main__":
    main()
