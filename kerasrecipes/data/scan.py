"""Finding the image files of a folder and checking every one before training.

The scan fully decodes every file with PIL (in a thread pool), so empty, truncated, mislabelled
and unsupported files are reported before training starts instead of crashing it mid-epoch, and
it decides which decode path (`kerasrecipes.data.decode.KINDS`) each file takes.
"""

import concurrent.futures
import os
import struct
import warnings

from kerasrecipes.data.decode import png_header

IMAGE_EXTENSIONS = (
    ".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff",
)
_PROGRESS_MIN_FILES = 300


def _sniff_reason(path):
    """Explains a file PIL cannot identify: text, HEIC, or an unknown format."""
    with open(path, "rb") as f:
        head = f.read(512)
    if head[4:12] in (b"ftypheic", b"ftypheix", b"ftypmif1", b"ftyphevc", b"ftypavif"):
        return "unsupported format: HEIC/AVIF (convert it to JPEG or PNG)"
    if head.lstrip().startswith(b"<svg") or b"<svg" in head[:256]:
        return "unsupported format: SVG vector image (export it to PNG)"
    try:
        head.decode("utf-8")
        if all(32 <= b < 127 or b in (9, 10, 13) for b in head[:64]):
            return "not an image: the file holds text"
    except UnicodeDecodeError:
        pass
    return "unsupported or unrecognised image format"


def inspect_file(path):
    """Fully decodes `path` with PIL; returns `(kind, None)` or `(None, reason)`."""
    from PIL import Image
    from PIL import UnidentifiedImageError

    try:
        if os.path.getsize(path) == 0:
            return None, "empty file (0 bytes)"
        with Image.open(path) as img:
            fmt, mode = img.format, img.mode
            orientation = img.getexif().get(0x0112, 1)
            has_transparency = "transparency" in img.info
            if fmt in ("JPEG", "MPO"):
                # Decoding at 1/8 scale still reads the whole entropy-coded stream, so
                # truncation is caught at a fraction of the cost.
                img.draft(mode, (max(1, img.size[0] // 8), max(1, img.size[1] // 8)))
            img.load()
    except Image.DecompressionBombError as e:
        return None, f"image too large ({e})"
    except UnidentifiedImageError:
        return None, _sniff_reason(path)
    except (OSError, SyntaxError, ValueError, EOFError, struct.error) as e:
        message = str(e)
        if "truncated" in message.lower() or isinstance(e, EOFError):
            return None, f"truncated image ({message or 'unexpected end of file'})"
        return None, f"corrupt image ({type(e).__name__}: {message})"
    except Exception as e:  # Any PIL plugin failure means the file is unusable, not a crash.
        return None, f"corrupt image ({type(e).__name__}: {e})"

    if orientation not in (None, 1):
        return "pil", None  # TensorFlow ignores EXIF orientation.
    if fmt in ("JPEG", "MPO") and mode in ("RGB", "L"):
        return "jpeg", None
    if fmt == "PNG":
        bit_depth, color_type = png_header(path)
        if bit_depth is None:
            return "pil", None
        if bit_depth == 16 or color_type in (4, 6) or has_transparency:
            return "png_wide", None
        return "png", None
    return "pil", None


def scan_files(paths, verbose=False, desc="Scanning images"):
    """Inspects `paths` in a thread pool; returns a list of `(kind, reason)` in the same order."""
    if not paths:
        return []
    results = [None] * len(paths)
    progbar = None
    if verbose and len(paths) > _PROGRESS_MIN_FILES:
        import keras

        print(f"{desc}: {len(paths)} files")
        progbar = keras.utils.Progbar(len(paths), unit_name="file")
    workers = min(32, 4 * (os.cpu_count() or 1))
    # PIL's chatter (EXIF, palette, size warnings) is silenced around the whole pool: real
    # problems raise, and `catch_warnings` is not thread-safe, so never enter it per thread.
    with warnings.catch_warnings(), concurrent.futures.ThreadPoolExecutor(workers) as pool:
        warnings.filterwarnings("ignore", module=r"PIL(\..*)?$")
        futures = {pool.submit(inspect_file, p): i for i, p in enumerate(paths)}
        done = 0
        for future in concurrent.futures.as_completed(futures):
            results[futures[future]] = future.result()
            done += 1
            if progbar is not None and (done % 50 == 0 or done == len(paths)):
                progbar.update(done)
    return results


def is_image_name(name):
    """True for a file name with one of `IMAGE_EXTENSIONS` (any case)."""
    # Hidden files with an image extension (e.g. macOS `._photo.jpg` resource forks) are
    # scanned like any other, so a bad one is reported rather than silently dropped.
    return name.lower().endswith(IMAGE_EXTENSIONS)


def list_images(folder):
    """Sorted paths of files with an image extension under `folder` (recursive, no dot folders)."""
    paths = []
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        paths.extend(os.path.join(dirpath, f) for f in sorted(filenames) if is_image_name(f))
    return paths


def format_bad(bad, limit):
    """The first `limit` `(path, reason)` pairs as indented lines, and how many more there are."""
    lines = [f"  {path}: {reason}" for path, reason in bad[:limit]]
    if len(bad) > limit:
        lines.append(f"  ... and {len(bad) - limit} more")
    return "\n".join(lines)
