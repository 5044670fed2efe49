"""The flags' validators (argparse `type=`), the data flags and loading: shared by the commands.

Each validator raises `ArgumentTypeError` with the value repeated (exit status 2), with the
closest names for a misspelt one.
"""

import argparse
import difflib
import math
import os

DEMO_IMAGE_SIZE = 128
OPTIMIZERS = ("sgd", "nesterov", "rmsprop", "adagrad", "adam", "adamw")
SCHEDULES = ("one_cycle", "warmup_cosine", "constant", "step", "sgdr")
AUGMENTS = ("none", "light", "standard", "strong")
PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")


# ---------------------------------------------------------------------------------------------
# Flag validators (argparse `type=`): each raises ArgumentTypeError with the value repeated.


def int_at_least(low):
    def parse(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"must be an integer >= {low}. Received: {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be an integer >= {low}. Received: {value}")
        return value

    return parse


def float_in(low, high=math.inf, low_open=True, high_open=True, what=None):
    left, right = "(" if low_open else "[", ")" if high_open else "]"
    interval = what or f"a number in {left}{low}, {high}{right}"

    def parse(text):
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {interval}. Received: {text!r}") from None
        too_low = value <= low if low_open else value < low
        too_high = value >= high if high_open else value > high
        if math.isnan(value) or too_low or too_high:
            raise argparse.ArgumentTypeError(f"must be {interval}. Received: {text}")
        return value

    return parse


positive_int = int_at_least(1)
positive_float = float_in(0.0, what="a positive number")
non_negative_float = float_in(0.0, low_open=False, what="a number >= 0")
fraction = float_in(0.0, 1.0, what="a fraction in (0, 1), e.g. 0.1")
probability = float_in(0.0, 1.0, low_open=False, what="a number in [0, 1)")


def unknown_name(text, names, what):
    close = difflib.get_close_matches(text.lower(), list(names), n=3, cutoff=0.5)
    hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    return argparse.ArgumentTypeError(
        f"unknown {what} {text!r}.{hint} Choose one of: {', '.join(names)}.")


def choice(names, what):
    """A `type=` for a fixed set of names that suggests the closest ones for a typo."""

    def parse(text):
        if text in names:
            return text
        if text.lower() in names:
            return text.lower()
        raise unknown_name(text, names, what)

    return parse


def backbone_arg(text):
    """A registry name (any case, `-`/`_` ignored) or `hub:<preset>`; suggests close names."""
    if text.startswith("hub:"):
        return text
    import kerasrecipes as kr
    from kerasrecipes.registry import registry_key

    names = kr.list_backbones()
    if registry_key(text) in {registry_key(n) for n in names}:
        return text
    by_key = {registry_key(n): n for n in names}
    close = difflib.get_close_matches(registry_key(text), list(by_key), n=3, cutoff=0.5)
    hint = (f" Did you mean {' or '.join(repr(by_key[c]) for c in close)}?" if close else "")
    raise argparse.ArgumentTypeError(
        f"unknown backbone {text!r}.{hint} See `kerasrecipes backbones` for the list, or pass "
        "hub:<keras-hub preset or folder>.")


def weights_arg(text):
    if text.lower() in ("imagenet", "none"):
        return text.lower()
    if not os.path.isfile(text):
        raise argparse.ArgumentTypeError(
            f"must be 'imagenet', 'none' or a weights file. Received: {text!r} (no such file)")
    return text


def unfreeze_arg(text):
    if text in ("all", "gradual"):
        return text
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"must be 'all', 'gradual' or a number of layer groups >= 1. Received: {text!r}"
        ) from None
    if value < 1:
        raise argparse.ArgumentTypeError(
            f"must be 'all', 'gradual' or a number of layer groups >= 1. Received: {value}")
    return str(value)


def load_data(args):
    """The data of a subcommand: DIR if given, else the embedded demo data. Returns (data, name).

    The data report (per-class counts, then every warning about the data) is printed once,
    before training.
    """
    import warnings

    import kerasrecipes as kr

    options = dict(batch_size=args.batch_size, seed=args.seed, dedupe=args.dedupe,
                   max_image_pixels=args.max_image_pixels)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if args.data is None:
            image_size = args.image_size or DEMO_IMAGE_SIZE
            print(f"[kerasrecipes] no DIR given: using the embedded demo data "
                  f"({image_size} px clothing photos, 10 classes)")
            data = kr.datasets.load_demo(image_size=image_size, **options)
            name, shown = "demo", "the demo data"
        else:
            data = kr.image_folder_datasets(
                args.data, image_size=args.image_size or kr.get_backbone(args.backbone).image_size,
                validation_split=getattr(args, "validation_split", None), **options)
            name, shown = os.path.basename(os.path.normpath(args.data)), args.data
    print(f"[kerasrecipes] data report for {shown}:")
    print("\n".join(f"  {line}" for line in data.report.summary().splitlines()))
    for warning in caught:
        if str(warning.message) not in data.report.warnings:
            warnings.warn_explicit(warning.message, warning.category, warning.filename,
                                   warning.lineno)
    return data, name


def add_data_arguments(parser):
    """The flags of the data a training subcommand scans (finetune, lr-find, doctor)."""
    parser.add_argument("--backbone", default="efficientnet_lite0", type=backbone_arg,
                        help="see `kerasrecipes backbones`")
    parser.add_argument("--weights", default="imagenet", type=weights_arg,
                        help="'imagenet', 'none' or a weights file")
    parser.add_argument("--image-size", type=positive_int, default=None,
                        help=f"default: the backbone's (demo data: {DEMO_IMAGE_SIZE})")
    parser.add_argument("--batch-size", type=positive_int, default=32)
    parser.add_argument("--dedupe", action="store_true",
                        help="drop exact duplicate files before training: a copy in train of a "
                        "validation/test image goes, evaluation stays as it is (the data report "
                        "lists duplicates either way)")
    parser.add_argument("--max-image-pixels", type=positive_int, default=89_478_485,
                        help="images with more pixels are refused from their header, undecoded "
                        "(default: PIL's limit, 89,478,485)")
