"""Peak memory of the pre-training scan: large photos vs. small ones, and vs. the file count.

The scan (`kerasrecipes.data.scan.scan_files`, what `image_folder_datasets` runs before any
dataset is built) reads each file once, hashes its bytes and decodes it with PIL in a thread pool
(JPEGs at 1/8 scale). Its memory must be bounded by the worker count, not by the number or the
size of the files. This benchmark writes folders of generated JPEGs — 4000×3000 photos-like
images (smooth gradients plus noise, quality 90, each file distinct) and small 256×192 ones —
and scans each folder in a fresh process whose peak RSS is reset first (Linux
`/proc/self/clear_refs`), so the number reported is what the scan itself adds on top of the
imported library: `VmHWM - VmRSS before`. With `--png` a folder of 4000×3000 PNGs (decoded in
full: the worst case per worker) is measured too.

Bounded means: the large-file rows do not grow with the file count (compare N/4 and N files),
and stay within a few decoded images per worker.

    python benchmarks/scan_memory.py                     # 200 large files, 50 large, 200 small
    python benchmarks/scan_memory.py --files 400 --png --repeats 3
"""

import argparse
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

_CHILD = r"""
import json, sys, time
from kerasrecipes.data.scan import scan_files

def status(key):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key):
                return int(line.split()[1])

paths = json.load(open(sys.argv[1]))
open("/proc/self/clear_refs", "w").write("5")  # Reset the peak (VmHWM) to the current RSS.
base = status("VmRSS:")
start = time.perf_counter()
checks = scan_files(paths)
seconds = time.perf_counter() - start
bad = [c.reason for c in checks if c.reason]
assert not bad, bad[:3]
print(json.dumps({"seconds": seconds, "peak_growth_kib": status("VmHWM:") - base,
                  "base_kib": base}))
"""


def _photo(width, height, seed):
    """A photo-like uint8 image: smooth colour gradients plus mild noise (JPEG-compressible)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    y = np.linspace(0, 1, height, dtype=np.float32)[:, None]
    x = np.linspace(0, 1, width, dtype=np.float32)[None, :]
    channels = []
    for c in range(3):
        a, b, phase = rng.uniform(1, 6, 3)
        channels.append(127 + 100 * np.sin(a * x * 6.28 + b * y * 3.14 + phase))
    image = np.stack(channels, -1) + rng.normal(0, 6, (height, width, 3))
    return np.clip(image, 0, 255).astype(np.uint8)


def _write_folder(folder, count, width, height, fmt):
    """Writes `count` distinct files of one encoded image (a comment makes each file unique)."""
    from PIL import Image

    os.makedirs(folder, exist_ok=True)
    buffer = io.BytesIO()
    image = Image.fromarray(_photo(width, height, seed=width))
    if fmt == "jpg":
        image.save(buffer, format="JPEG", quality=90)
    else:
        image.save(buffer, format="PNG", compress_level=1)
    data = buffer.getvalue()
    paths = []
    for i in range(count):
        path = os.path.join(folder, f"{i:05d}.{fmt}")
        if fmt == "jpg":
            comment = f"file {i}".encode()
            # A COM segment right after SOI: other bytes, the same decoding work.
            unique = data[:2] + b"\xff\xfe" + (len(comment) + 2).to_bytes(2, "big") + comment \
                + data[2:]
        else:
            unique = data  # The scan's memory does not depend on the bytes being distinct.
        with open(path, "wb") as f:
            f.write(unique)
        paths.append(path)
    return paths


def _measure(paths, workdir):
    listing = os.path.join(workdir, f"paths_{len(paths)}_{os.path.basename(paths[0])}.json")
    with open(listing, "w") as f:
        json.dump(paths, f)
    out = subprocess.run([sys.executable, "-c", _CHILD, listing], capture_output=True, text=True,
                         check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=200, help="files in the largest folders")
    parser.add_argument("--large", default="4000x3000", help="WIDTHxHEIGHT of the large images")
    parser.add_argument("--small", default="256x192", help="WIDTHxHEIGHT of the small images")
    parser.add_argument("--png", action="store_true", help="also measure large PNGs")
    parser.add_argument("--repeats", type=int, default=3, help="runs per case; medians reported")
    parser.add_argument("--workdir", default=None, help="where to write the images (default: a "
                        "temporary folder, removed afterwards)")
    args = parser.parse_args()
    if not os.path.exists("/proc/self/clear_refs"):
        sys.exit("scan_memory needs Linux (/proc/self/clear_refs) to reset the peak RSS.")
    large = tuple(int(v) for v in args.large.split("x"))
    small = tuple(int(v) for v in args.small.split("x"))
    workdir = args.workdir or tempfile.mkdtemp(prefix="scan_memory_")
    quarter = max(1, args.files // 4)
    cases = [
        (f"{large[0]}×{large[1]} JPEG", "jpg", large, quarter),
        (f"{large[0]}×{large[1]} JPEG", "jpg", large, args.files),
        (f"{small[0]}×{small[1]} JPEG", "jpg", small, args.files),
    ]
    if args.png:
        cases.insert(2, (f"{large[0]}×{large[1]} PNG", "png", large, quarter))
    folders = {}
    for _, fmt, size, count in cases:
        key = (fmt, size)
        if key not in folders or len(folders[key]) < count:
            start = time.time()
            folders[key] = _write_folder(os.path.join(workdir, f"{fmt}_{size[0]}x{size[1]}"),
                                         max(count, len(folders.get(key, []))), *size, fmt)
            print(f"wrote {len(folders[key])} {fmt} files of {size[0]}×{size[1]} in "
                  f"{time.time() - start:.0f} s", flush=True)
    results = {i: [] for i in range(len(cases))}
    for repeat in range(args.repeats):  # Round-robin over the cases.
        for i, (name, fmt, size, count) in enumerate(cases):
            result = _measure(folders[(fmt, size)][:count], workdir)
            results[i].append(result)
            print(f"run {repeat + 1}: {name} × {count}: {result['seconds']:.1f} s, peak RSS "
                  f"+{result['peak_growth_kib'] / 1024:.0f} MiB", flush=True)
    workers = min(32, 4 * (os.cpu_count() or 1))
    print(f"\n{os.cpu_count()} CPUs, {workers} scan threads, medians of {args.repeats} runs; peak "
          "RSS growth = VmHWM − VmRSS before the scan, in a fresh process\n")
    print("| files | count | on disk | scan time | files/s | peak RSS growth |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for i, (name, fmt, size, count) in enumerate(cases):
        paths = folders[(fmt, size)][:count]
        disk = sum(os.path.getsize(p) for p in paths) / 2**20
        seconds = statistics.median(r["seconds"] for r in results[i])
        growth = statistics.median(r["peak_growth_kib"] for r in results[i]) / 1024
        print(f"| {name} | {count} | {disk:.0f} MiB | {seconds:.1f} s | {count / seconds:.0f} | "
              f"{growth:.0f} MiB |")
    if args.workdir is None:
        import shutil

        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
