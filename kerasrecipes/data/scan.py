"""Finding the image files of a folder, checking every one before training, and the data report.

The scan reads every file once and fully decodes it with PIL (in a thread pool), so empty,
truncated, mislabelled, unsupported, unreadable and oversized files are reported before training
starts instead of crashing it mid-epoch; it decides which decode path
(`kerasrecipes.data.decode.KINDS`) each file takes, and hashes the bytes it read, so exact
duplicates are found without a second read of the files.

`DataReport` is what a careful practitioner checks first: images per class and split, classes
much smaller than the largest, a validation or test split missing a class, exact duplicates
inside a split and across splits (leakage), files left out and why.

Folder walking rules (`list_images`):

- Sub-folders of a class folder are part of the class (searched recursively).
- Hidden folders (name starting with `.`, e.g. `.ipynb_checkpoints`) and tool folders
  (`__MACOSX`, Synology's `@eaDir`) are ignored at every level. Hidden *files* with an image
  extension are scanned like any other file, so a macOS `._photo.jpg` resource fork is named in
  `skipped` rather than silently dropped.
- Symbolic links to files and folders are followed; a folder link that leads back to a folder
  already walked (a loop) is skipped with a warning naming the link; a broken link or a link loop
  behind a file name is an unreadable file (reported like any other).
- A folder that cannot be listed (permission denied) stops the scan with an error naming it:
  skipping it would silently drop its images.
"""

import collections
import concurrent.futures
import contextlib
import dataclasses
import errno
import hashlib
import io
import os
import struct
import threading
import warnings

from kerasrecipes.data.decode import pick_kind, pipeline_decodes

IMAGE_EXTENSIONS = (
    ".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff",
)
# Folders that tools write next to the data: never class folders, never searched for images.
IGNORED_FOLDERS = ("__MACOSX", "@eaDir")
# PIL's own default (`PIL.Image.MAX_IMAGE_PIXELS`): about a 9,459 × 9,459 image, 256 MiB of RGB.
DEFAULT_MAX_IMAGE_PIXELS = int(1024 * 1024 * 1024 // 4 // 3)
# A class with fewer images than this fraction of the largest class is flagged.
IMBALANCE_RATIO = 0.05
SPLITS = ("train", "validation", "test")
_PROGRESS_MIN_FILES = 300

FileCheck = collections.namedtuple("FileCheck", ["kind", "reason", "digest"])
FileCheck.__doc__ = """What the scan learnt about one file: its decode path (`kind`, or `None`),
why it cannot be used (`reason`, or `None`) and the BLAKE2b digest of its bytes (or `None` when
they could not be read)."""


def display_path(path):
    """`path` as shown in a message: quoted when it holds newlines or undecodable bytes."""
    return path if path.isprintable() else repr(path)


def check_max_image_pixels(max_image_pixels):
    """Returns `max_image_pixels` as an int >= 1 or `None` (no limit); raises naming it."""
    if max_image_pixels is None:
        return None
    if isinstance(max_image_pixels, bool) or not isinstance(max_image_pixels, int) or (
        max_image_pixels < 1
    ):
        raise ValueError(
            "max_image_pixels must be a positive int (width × height) or None for no limit. "
            f"Received: max_image_pixels={max_image_pixels!r}"
        )
    return max_image_pixels


def _sniff_reason(head):
    """Explains bytes PIL cannot identify: text, HEIC, a macOS resource fork, or unknown."""
    if head[:4] == b"\x00\x05\x16\x07":
        return ("not an image: a macOS resource fork (AppleDouble '._' file); delete it, e.g. "
                "`find DIR -name '._*' -delete`")
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


def _read_error(path, error):
    """The reason for an `OSError` raised while opening or reading `path`."""
    if isinstance(error, PermissionError):
        return "permission denied: this user cannot read the file (fix it with e.g. chmod a+r)"
    if error.errno == errno.ELOOP:
        return "symbolic link loop: the link never reaches a file"
    if os.path.islink(path) and not os.path.exists(path):
        return f"broken symbolic link to {display_path(os.readlink(path))!r} (it does not exist)"
    if isinstance(error, IsADirectoryError):
        return "a folder named like an image file"
    return f"cannot read the file ({type(error).__name__}: {error.strerror or error})"


class DecodeBudget:
    """Bytes of decoded pixels that the scan's threads may hold at once.

    A thread about to decode an image of `n` bytes (estimated from its header) waits until the
    others hold at most `total - n`; an image larger than the whole budget decodes alone. So a
    folder of large PNGs (decoded in full) does not take one full-size image per thread.
    """

    def __init__(self, total):
        self.total = int(total)
        self.used = 0
        self._cond = threading.Condition()

    @contextlib.contextmanager
    def hold(self, amount):
        amount = max(0, min(int(amount), self.total))
        with self._cond:
            while self.used and self.used + amount > self.total:
                self._cond.wait()
            self.used += amount
        try:
            yield
        finally:
            with self._cond:
                self.used -= amount
                self._cond.notify_all()


# Memory the scan's decoders may hold at once: two full-size 4000 × 3000 PNG decodes.
DECODE_BUDGET_BYTES = 256 * 2**20


def _decoded_bytes(width, height, mode, fmt, size):
    """Estimated peak bytes of decoding an image of `size` bytes on disk.

    Measured on TensorFlow's PNG decoder: about 8 bytes per pixel (its output, the copy to
    numpy and working buffers) plus the encoded bytes; JPEGs decode at 1/8 scale (1/64 of the
    pixels); 16-bit images take twice as much.
    """
    wide = 2 if ("16" in mode or mode in ("I", "F")) else 1
    pixels = width * height if fmt not in ("JPEG", "MPO") else (width // 8 + 1) * (height // 8 + 1)
    return pixels * 8 * wide + size


def check_file(path, max_image_pixels=DEFAULT_MAX_IMAGE_PIXELS, budget=None):
    """Reads `path` once, hashes its bytes and fully decodes them with the pipeline's decoder.

    That is TensorFlow's for the JPEG and PNG files it decodes natively, PIL's for the others
    and for those TensorFlow rejects (they take the PIL path: `decode.pipeline_decodes`), so a
    file the scan passes never fails in the training pipeline.

    An image with more than `max_image_pixels` pixels is refused from its header, before decoding
    (a decompression bomb, e.g. a 20,000 × 20,000 PNG of a few kilobytes, never reaches memory).

    Args:
        path: str. The file.
        max_image_pixels: int or `None`. The pixel limit. Defaults to PIL's (89,478,485).
        budget: optional `DecodeBudget` shared by the threads of a scan.

    Returns:
        `FileCheck(kind, reason, digest)`.
    """
    from PIL import Image
    from PIL import UnidentifiedImageError

    hold = budget.hold if budget is not None else (lambda amount: contextlib.nullcontext())

    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        return FileCheck(None, _read_error(path, e), None)
    digest = hashlib.blake2b(data, digest_size=16).hexdigest()
    if not data:
        return FileCheck(None, "empty file (0 bytes)", digest)
    try:
        with Image.open(io.BytesIO(data)) as img:  # Parses the header only.
            fmt, mode = img.format, img.mode
            width, height = img.size
            if max_image_pixels is not None and width * height > max_image_pixels:
                return FileCheck(None, (
                    f"image too large: {width} × {height} = {width * height:,} pixels, over "
                    f"max_image_pixels={max_image_pixels:,} (refused from its header, not "
                    "decoded; downscale the file or raise max_image_pixels)"), digest)
            with hold(_decoded_bytes(width, height, mode, fmt, len(data))):
                # PIL decodes a whole PNG to look for an EXIF chunk after the pixels: only ask
                # when the file has one.
                has_exif = fmt != "PNG" or b"eXIf" in data
                orientation = img.getexif().get(0x0112, 1) if has_exif else 1
                kind = pick_kind(fmt, mode, orientation, "transparency" in img.info, data[:26])
                # The check is the decoder the pipeline will use: TensorFlow's for its kinds.
                tf_reads = pipeline_decodes(data, kind)
                if tf_reads:
                    return FileCheck(kind, None, digest)
                if fmt in ("JPEG", "MPO"):
                    # Decoding at 1/8 scale still reads the whole entropy-coded stream, so
                    # truncation is caught at a fraction of the cost (and memory).
                    img.draft(mode, (max(1, width // 8), max(1, height // 8)))
                img.load()
    except Image.DecompressionBombError as e:
        return FileCheck(None, f"image too large ({e}); refused from its header, not decoded",
                         digest)
    except UnidentifiedImageError:
        return FileCheck(None, _sniff_reason(data[:512]), digest)
    except (OSError, SyntaxError, ValueError, EOFError, struct.error) as e:
        message = str(e)
        if "truncated" in message.lower() or isinstance(e, EOFError):
            return FileCheck(None, f"truncated image ({message or 'unexpected end of file'})",
                             digest)
        return FileCheck(None, f"corrupt image ({type(e).__name__}: {message})", digest)
    except Exception as e:  # Any PIL plugin failure means the file is unusable, not a crash.
        return FileCheck(None, f"corrupt image ({type(e).__name__}: {e})", digest)

    # PIL read it; a file TensorFlow's decoder rejects takes the PIL path.
    return FileCheck("pil" if tf_reads is False else kind, None, digest)


def inspect_file(path, max_image_pixels=DEFAULT_MAX_IMAGE_PIXELS):
    """Fully decodes `path` with PIL; returns `(kind, None)` or `(None, reason)`."""
    return tuple(check_file(path, max_image_pixels)[:2])


@contextlib.contextmanager
def _pil_pixel_limit():
    """Makes `max_image_pixels` the one limit: PIL's own guard is off while the scan runs.

    PIL raises at twice `PIL.Image.MAX_IMAGE_PIXELS` when it opens a file; `check_file` applies
    its own limit right after the header is parsed, with a message naming it. Process-wide for
    the duration of the scan, restored afterwards.
    """
    from PIL import Image

    saved = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None
    try:
        yield
    finally:
        Image.MAX_IMAGE_PIXELS = saved


def scan_files(paths, verbose=False, desc="Scanning images",
               max_image_pixels=DEFAULT_MAX_IMAGE_PIXELS):
    """Checks `paths` in a thread pool; returns a list of `FileCheck` in the same order.

    Memory stays bounded, whatever the number of files: each worker holds one file's bytes at a
    time, and the decoded pixels of all workers together stay within `DECODE_BUDGET_BYTES`
    (JPEGs decode at 1/8 scale; an image larger than the budget decodes alone).
    """
    if not paths:
        return []
    results = [None] * len(paths)
    progbar = None
    if verbose and len(paths) > _PROGRESS_MIN_FILES:
        import keras

        print(f"{desc}: {len(paths)} files")
        progbar = keras.utils.Progbar(len(paths), unit_name="file")
    workers = min(32, 4 * (os.cpu_count() or 1))
    budget = DecodeBudget(DECODE_BUDGET_BYTES)
    # PIL's chatter (EXIF, palette, size warnings) is silenced around the whole pool: real
    # problems raise, and `catch_warnings` is not thread-safe, so never enter it per thread.
    with warnings.catch_warnings(), _pil_pixel_limit(), \
            concurrent.futures.ThreadPoolExecutor(workers) as pool:
        warnings.filterwarnings("ignore", module=r"PIL(\..*)?$")
        # Submitted in windows, so that pending futures stay few for a million files.
        window = 8 * workers
        done = 0
        for start in range(0, len(paths), window):
            futures = {pool.submit(check_file, p, max_image_pixels, budget): start + i
                       for i, p in enumerate(paths[start:start + window])}
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


def is_ignored_folder(name):
    """True for a hidden folder (`.name`) or one of `IGNORED_FOLDERS`."""
    return name.startswith(".") or name in IGNORED_FOLDERS


def _unreadable_folder(error):
    path = getattr(error, "filename", None) or "?"
    return ValueError(
        f"Cannot read the folder {display_path(os.fspath(path))!r}: "
        f"{error.strerror or error}. Its images would be left out: fix its permissions "
        "(e.g. chmod a+rx) or move it out of the data folder."
    )


def list_images(folder, notes=None):
    """Sorted paths of files with an image extension under `folder` (recursive).

    Hidden and tool folders are left out, symbolic links followed, loops skipped (a message for
    each goes to the list `notes`, when given, else to `warnings.warn`); an unreadable folder
    raises `ValueError` naming it.
    """

    def raise_error(error):
        raise _unreadable_folder(error)

    paths = []
    # A link to the folder itself or to any folder above it is a loop: walking it would come
    # back here (and take the images of other classes on the way).
    seen = set()
    ancestor = os.path.realpath(folder)
    while True:
        stat = os.stat(ancestor)
        seen.add((stat.st_dev, stat.st_ino))
        parent = os.path.dirname(ancestor)
        if parent == ancestor:
            break
        ancestor = parent
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True, onerror=raise_error):
        stat = os.stat(dirpath)
        seen.add((stat.st_dev, stat.st_ino))
        keep = []
        for d in sorted(dirnames):
            if is_ignored_folder(d):
                continue
            sub = os.path.join(dirpath, d)
            try:
                sub_stat = os.stat(sub)
            except OSError:
                continue  # A broken folder link: nothing to read.
            if (sub_stat.st_dev, sub_stat.st_ino) in seen:
                message = (
                    f"Skipped the folder link {display_path(sub)!r} → "
                    f"{display_path(os.path.realpath(sub))!r}: it leads back to a folder already "
                    "scanned or to a folder above it (a symbolic-link loop), so it is not walked "
                    "again."
                )
                if notes is None:
                    warnings.warn(message, stacklevel=2)
                else:
                    notes.append(message)
                continue
            seen.add((sub_stat.st_dev, sub_stat.st_ino))
            keep.append(d)
        dirnames[:] = keep
        paths.extend(os.path.join(dirpath, f) for f in sorted(filenames) if is_image_name(f))
    return paths


def format_bad(bad, limit):
    """The first `limit` `(path, reason)` pairs as indented lines, and how many more there are."""
    lines = [f"  {display_path(path)}: {reason}" for path, reason in bad[:limit]]
    if len(bad) > limit:
        lines.append(f"  ... and {len(bad) - limit} more")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# The data report: class balance, exact duplicates and leakage.

_SPLIT_PRIORITY = {"test": 0, "validation": 1, "train": 2}  # Which copy dedupe keeps: test first.


def find_duplicates(items, digests):
    """Groups of identical files: each a sorted list of `(split, path, label)`, in path order.

    Args:
        items: iterable of `(split, path, label)`.
        digests: dict path → content digest (files without one are left out).
    """
    by_digest = collections.defaultdict(list)
    for split, path, label in items:
        digest = digests.get(path)
        if digest is not None:
            by_digest[digest].append((split, path, label))
    groups = [sorted(g, key=lambda item: item[1]) for g in by_digest.values() if len(g) > 1]
    return sorted(groups, key=lambda g: g[0][1])


def dedupe_plan(groups):
    """Which copies of each duplicate group to drop; returns a list of `(path, reason)`.

    The rule: copies outside the most held-out split of the group are dropped (test is kept over
    validation over train, so evaluation data stays untouched and training loses the leaked
    copy); inside that split the first copy in path order is kept, unless the copies carry
    different labels, in which case all of them are dropped (no copy's label can be trusted).
    """
    dropped = []
    for group in groups:
        keep_split = min((split for split, _, _ in group), key=_SPLIT_PRIORITY.get)
        first = next(item for item in group if item[0] == keep_split)
        same_split = [item for item in group if item[0] == keep_split]
        conflict = len({label for _, _, label in same_split}) > 1
        for split, path, label in group:
            if split != keep_split:
                dropped.append((path, f"copy of {display_path(first[1])} ({keep_split}): "
                                      f"dropped from {split}"))
            elif conflict:
                dropped.append((path, f"identical images with different labels in {split} "
                                      "(all copies dropped)"))
            elif path != first[1]:
                dropped.append((path, f"second copy of {display_path(first[1])} in {split}"))
    return dropped


def class_counts(items, class_names):
    """`{split: [count of class 0, count of class 1, …]}` for the splits present in `items`."""
    counts = {}
    for split, _, label in items:
        counts.setdefault(split, [0] * len(class_names))[label] += 1
    return {split: counts[split] for split in SPLITS if split in counts}


def balance_warnings(counts, class_names, ratio=IMBALANCE_RATIO):
    """Messages for classes under `ratio` of the largest training class, and for missing classes.

    Pure: `counts` as returned by `class_counts`.
    """
    messages = []
    train = counts.get("train")
    if train:
        largest = max(train)
        small = [(class_names[i], c) for i, c in enumerate(train) if c < ratio * largest]
        if small:
            shown = ", ".join(f"{name!r} ({c})" for name, c in small[:10])
            more = f" and {len(small) - 10} more" if len(small) > 10 else ""
            messages.append(
                f"Class imbalance: {len(small)} class(es) have under {ratio:.0%} of the training "
                f"images of the largest class ({largest}): {shown}{more}. Collect more images, "
                "or weight or oversample these classes; check per-class metrics, not only "
                "accuracy."
            )
    for split in ("validation", "test"):
        if split in counts:
            missing = [class_names[i] for i, c in enumerate(counts[split]) if c == 0]
            if missing:
                messages.append(
                    f"The {split} split has no images of {len(missing)} class(es): "
                    f"{missing[:10]}{' …' if len(missing) > 10 else ''}. Its metrics say nothing "
                    f"about them: add {split} images of every class."
                )
    return messages


def duplicate_warnings(groups, limit=3):
    """Messages about `groups` (from `find_duplicates`): copies inside a split, label conflicts
    and copies across splits (leakage), each naming the first `limit` groups."""

    def shown(selected):
        lines = [" = ".join(display_path(path) for _, path, _ in g[:4])
                 + (f" (+{len(g) - 4})" if len(g) > 4 else "") for g in selected[:limit]]
        more = f"\n  ... and {len(selected) - limit} more" if len(selected) > limit else ""
        return "".join(f"\n  {line}" for line in lines) + more

    across = [g for g in groups if len({split for split, _, _ in g}) > 1]
    conflict = [g for g in groups if g not in across and len({l for _, _, l in g}) > 1]
    inside = [g for g in groups if g not in across and g not in conflict]
    messages = []
    if across:
        pairs = collections.Counter(
            " and ".join(sorted({split for split, _, _ in g}, key=SPLITS.index)) for g in across)
        where = ", ".join(f"{n} in {k}" for k, n in sorted(pairs.items()))
        messages.append(
            f"Leakage: {len(across)} image(s) are exact copies in more than one split ({where}): "
            f"evaluation on them is optimistic.{shown(across)}\nPass dedupe=True (CLI: --dedupe) "
            "to drop the copies outside the most held-out split (the train copy goes; test is "
            "kept over validation)."
        )
    if conflict:
        messages.append(
            f"{len(conflict)} image(s) appear under different classes in the same split (one "
            f"label is wrong):{shown(conflict)}\nFix the labels, or pass dedupe=True (CLI: "
            "--dedupe) to drop every copy."
        )
    if inside:
        extra = sum(len(g) - 1 for g in inside)
        messages.append(
            f"{extra} file(s) are exact copies of another file of the same class and split "
            f"(they count more than once):{shown(inside)}\nPass dedupe=True (CLI: --dedupe) to "
            "keep the first copy of each."
        )
    return messages


@dataclasses.dataclass(repr=False)
class DataReport:
    """What the scan found before training: class balance, duplicates, files left out.

    `image_folder_datasets` emits each of `warnings` with `warnings.warn` and returns the report as
    `ImageData.report`; the CLI prints `summary()` before training.

    Args:
        class_names: list of str.
        counts: dict. Split → images per class (after `skipped` and `dropped` are left out).
        duplicates: list of groups of identical files, each a list of `(split, path, label)`.
            With `dedupe=True` these are the groups found before dropping.
        dropped: list of `(path, reason)` left out by `dedupe=True`.
        skipped: list of `(path, reason)` of image files that cannot be read.
        ignored: list of paths of image files lying outside any class folder (not used).
        warnings: list of str. Every warning about the data, in the order emitted.
    """

    class_names: list
    counts: dict
    duplicates: list = dataclasses.field(default_factory=list)
    dropped: list = dataclasses.field(default_factory=list)
    skipped: list = dataclasses.field(default_factory=list)
    ignored: list = dataclasses.field(default_factory=list)
    warnings: list = dataclasses.field(default_factory=list)

    @property
    def ok(self):
        """True when there is nothing to warn about."""
        return not self.warnings

    def summary(self):
        """Per-class counts per split as a text table, then the warnings."""
        splits = [s for s in SPLITS if s in self.counts]
        width = max([len("class")] + [len(name) for name in self.class_names])
        lines = [f"{'class':<{width}}  " + "  ".join(f"{s:>10}" for s in splits)]
        for i, name in enumerate(self.class_names):
            lines.append(f"{name:<{width}}  "
                         + "  ".join(f"{self.counts[s][i]:>10}" for s in splits))
        lines.append(f"{'total':<{width}}  "
                     + "  ".join(f"{sum(self.counts[s]):>10}" for s in splits))
        left_out = []
        if self.skipped:
            left_out.append(f"{len(self.skipped)} unreadable")
        if self.dropped:
            left_out.append(f"{len(self.dropped)} duplicate(s) dropped")
        if self.ignored:
            left_out.append(f"{len(self.ignored)} outside any class folder")
        if left_out:
            lines.append("left out: " + ", ".join(left_out))
        lines.extend(f"warning: {message}" for message in self.warnings)
        return "\n".join(lines)

    def __str__(self):
        return self.summary()

    def __repr__(self):
        return (f"DataReport(counts={self.counts}, duplicates={len(self.duplicates)}, "
                f"dropped={len(self.dropped)}, skipped={len(self.skipped)}, "
                f"warnings={len(self.warnings)})")
