"""The `kerasrecipes` command line: a thin layer over the Python API.

Every flag is checked while the command line is parsed (argparse `type=` validators: exit status
2 and a message that repeats the value, with the closest names for a misspelt one), and the
checks that need several flags or the file system (`--out`, `--weights FILE`) run before any data
is scanned. TensorFlow's native start-up lines are kept off stderr unless `--verbose`.

Modules: `arguments` (the flag validators, the data flags and loading), `finetune` (the main
job, `--resume`, the export), `commands` (the other subcommands); the parser and `main` here.
"""

import argparse
import sys

from kerasrecipes.cli.arguments import (
    AUGMENTS,
    OPTIMIZERS,
    PRECISIONS,
    SCHEDULES,
    add_data_arguments,
    choice,
    float_in,
    fraction,
    int_at_least,
    non_negative_float,
    positive_float,
    positive_int,
    probability,
    unfreeze_arg,
)
from kerasrecipes.cli.commands import (
    EXPORT_FORMATS,
    backbones_command,
    doctor_command,
    export_command,
    lr_find_command,
    predict_command,
    serve_command,
)
from kerasrecipes.cli.finetune import finetune_command
from kerasrecipes.startup import import_tensorflow_quietly


def build_parser():
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--verbose", action="store_true", default=argparse.SUPPRESS,
                        help="keep TensorFlow's native start-up log lines")
    parser = argparse.ArgumentParser(
        prog="kerasrecipes", description="Train image classifiers the way the best do.",
        parents=[common],
    )
    sub = parser.add_subparsers(dest="command", required=True)

    ft = sub.add_parser("finetune", parents=[common],
                        help="fine-tune a pretrained backbone on an image folder")
    ft.add_argument("data", nargs="?", help="image folder (root/<class>/* or root/train|validation"
                    "/<class>/*); omit to use the embedded demo data")
    add_data_arguments(ft)
    ft.add_argument("--head-epochs", type=int_at_least(0), default=4,
                    help="epochs with the backbone frozen (default 4)")
    ft.add_argument("--epochs", type=int_at_least(0), default=3,
                    help="epochs after unfreezing (default 3)")
    ft.add_argument("--lr", type=positive_float, default=1e-3, help="head-stage peak learning "
                    "rate (default 1e-3)")
    ft.add_argument("--fine-tune-lr", type=positive_float, default=None,
                    help="peak learning rate of the head after unfreezing; the layer groups get "
                    "it divided by up to --lr-mult (default: --lr)")
    ft.add_argument("--no-feature-cache", dest="cache_features", action="store_false",
                    help="run the frozen backbone over every image in every head epoch (with "
                    "augmentation) instead of computing its features once")
    ft.add_argument("--lr-mult", type=float_in(1.0, low_open=False, what="a number >= 1"),
                    default=10.0, help="head LR / first-group LR after unfreezing")
    ft.add_argument("--unfreeze", default="4", type=unfreeze_arg,
                    help="'all', 'gradual' or N (the top N layer groups; default 4)")
    ft.add_argument("--optimizer", default="adamw", type=choice(OPTIMIZERS, "optimizer"),
                    help=f"one of {', '.join(OPTIMIZERS)} (default: adamw)")
    ft.add_argument("--weight-decay", type=non_negative_float, default=None)
    ft.add_argument("--schedule", default="one_cycle", type=choice(SCHEDULES, "schedule"),
                    help=f"LR schedule of each stage: {', '.join(SCHEDULES)}; one_cycle also "
                    "cycles the momentum (default: one_cycle)")
    clip = ft.add_mutually_exclusive_group()
    clip.add_argument("--clipnorm", type=float, default=None, metavar="NORM",
                      help="clip each gradient to this norm")
    clip.add_argument("--clipvalue", type=float, nargs="?", const=5.0, default=None,
                      metavar="VALUE",
                      help="clip gradient elements to [-VALUE, VALUE]; without VALUE: 5, the "
                           "classic recipe")
    clip.add_argument("--global-clipnorm", type=float, default=None, metavar="NORM",
                      help="scale all gradients together to at most this global norm")
    ft.add_argument("--augment", default="light", type=choice(AUGMENTS, "augment preset"),
                    help=f"one of {', '.join(AUGMENTS)} (default: light)")
    ft.add_argument("--mixup", type=non_negative_float, default=0.0, metavar="ALPHA",
                    help="MixUp Beta(alpha, alpha); 0 = off (with --cutmix: random switch)")
    ft.add_argument("--cutmix", type=non_negative_float, default=0.0, metavar="ALPHA",
                    help="CutMix Beta(alpha, alpha); 0 = off")
    ft.add_argument("--label-smoothing", type=probability, default=0.0)
    ft.add_argument("--dropout", type=probability, default=0.2)
    ft.add_argument("--patience", type=int_at_least(0), default=3,
                    help="early-stopping patience")
    ft.add_argument("--validation-split", type=fraction, default=None,
                    help="fraction held out when DIR has no validation folder (default 0.1)")
    ft.add_argument("--seed", type=int, default=42)
    ft.add_argument("--resume", action="store_true",
                    help="continue an interrupted run (Ctrl-C, SIGTERM, a crash, a failed "
                    "export) with the same arguments: at most one epoch is lost; the backup "
                    "lives in OUT.backup until the export is written. Other arguments than the "
                    "run's are refused, named")
    ft.add_argument("--precision", default="float32", type=choice(PRECISIONS, "precision"),
                    help="mixed precision for GPUs/TPUs (outputs stay float32): "
                    f"{', '.join(PRECISIONS)}")
    ft.add_argument("--out", default=None, help="export directory (default saved_models/...); "
                    "replaced as a whole, so it must be new, empty or an earlier export")
    ft.set_defaults(func=finetune_command)

    pr = sub.add_parser("predict", parents=[common],
                        help="top-k classes of images ([MODEL_DIR] IMAGE...)")
    pr.add_argument("items", nargs="+", metavar="MODEL_DIR_OR_IMAGE",
                    help="an exported model directory (optional), then image paths; without a "
                    "model directory the ImageNet EfficientNet-Lite0 classifier is used")
    pr.add_argument("--top", type=int, default=5)
    pr.set_defaults(func=predict_command)

    ex = sub.add_parser("export", parents=[common],
                        help="export a .keras model as SavedModel / TFLite / ONNX / "
                        "OpenVINO")
    ex.add_argument("model", help="a .keras file (finetune writes OUT/model.keras)")
    ex.add_argument("--out", required=True, help="output directory")
    ex.add_argument("--formats", default="savedmodel,tflite,tflite-dynamic,onnx",
                    help=f"comma-separated subset of {','.join(EXPORT_FORMATS)}")
    ex.add_argument("--labels", default=None,
                    help="labels.txt with one class name a line (default: next to the model)")
    ex.set_defaults(func=export_command)

    sv = sub.add_parser("serve", parents=[common],
                        help="serve an exported model over HTTP (TF Serving's REST API "
                        "with dynamic batching, plus POST /predict for file uploads)")
    sv.add_argument("model_dir", metavar="SAVED_MODEL_DIR",
                    help="an export (finetune's --out, kr.export_saved_model) or a TF Serving "
                    "base directory with numeric versions")
    sv.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0: all)")
    sv.add_argument("--port", type=int, default=8501, help="TCP port (0: a free one); 8501 is "
                    "TF Serving's REST port")
    sv.add_argument("--workers", type=int, default=1,
                    help="server processes, each with its own copy of the model")
    sv.add_argument("--model-name", default=None,
                    help="the <name> in /v1/models/<name> (default: the directory's name)")
    sv.add_argument("--max-batch", type=int, default=32,
                    help="most images in one model call; 1 turns batching off")
    sv.add_argument("--batch-timeout-ms", type=float, default=10.0,
                    help="how long a batch waits for more images after its first one (only "
                         "while other requests are arriving)")
    sv.add_argument("--max-queue", type=int, default=256,
                    help="most images waiting for the model; beyond it: 503 + Retry-After")
    sv.add_argument("--max-request-bytes", type=int, default=32 * 2**20,
                    help="largest request body; beyond it: 413 (default 32 MiB)")
    sv.add_argument("--max-image-pixels", type=int, default=50_000_000,
                    help="images with more pixels are refused by their header, undecoded")
    sv.add_argument("--drain-timeout", type=float, default=30.0,
                    help="seconds SIGTERM waits for in-flight requests before exiting")
    sv.add_argument("--log-level", default="warning",
                    choices=["critical", "error", "warning", "info", "debug"],
                    help="uvicorn's log level; info also logs every request")
    sv.set_defaults(func=serve_command)

    lf = sub.add_parser("lr-find", parents=[common],
                        help="learning-rate range test: plot and suggested LRs")
    lf.add_argument("data", nargs="?", help="image folder; omit to use the embedded demo data")
    add_data_arguments(lf)
    lf.add_argument("--stage", default="head", type=choice(("head", "all"), "stage"),
                    help="'head': backbone frozen (the first stage of finetune); 'all': every "
                    "group trainable with discriminative LRs (--lr-mult)")
    lf.add_argument("--lr-mult", type=float_in(1.0, low_open=False, what="a number >= 1"),
                    default=10.0)
    lf.add_argument("--optimizer", default="adamw", type=choice(OPTIMIZERS, "optimizer"),
                    help=f"one of {', '.join(OPTIMIZERS)} (default: adamw)")
    lf.add_argument("--augment", default="light", type=choice(AUGMENTS, "augment preset"),
                    help=f"one of {', '.join(AUGMENTS)} (default: light)")
    lf.add_argument("--min-lr", type=positive_float, default=1e-7)
    lf.add_argument("--max-lr", type=positive_float, default=10.0)
    lf.add_argument("--num-steps", type=int_at_least(2), default=100)
    lf.add_argument("--seed", type=int, default=42)
    lf.add_argument("--out", default="lr_find.png", help="PNG of the curve")
    lf.set_defaults(func=lr_find_command)

    bb = sub.add_parser("backbones", parents=[common], help="list registered backbones")
    bb.set_defaults(func=backbones_command)

    dr = sub.add_parser("doctor", parents=[common],
                        help="sanity checks before training: initial loss, overfit a "
                        "few batches, inputs, labels, activation/loss, LR range test; writes a "
                        "Markdown report (exit status 1 when a check fails)")
    dr.add_argument("data", nargs="?", help="image folder, as for finetune; omit to use the "
                    "embedded demo data")
    add_data_arguments(dr)
    dr.add_argument("--dropout", type=probability, default=0.2)
    # Small defaults keep the demo run to a few minutes on 2 CPU cores.
    dr.add_argument("--overfit-batches", type=positive_int, default=2)
    dr.add_argument("--overfit-steps", type=positive_int, default=80)
    dr.add_argument("--overfit-lr", type=positive_float, default=1e-3)
    dr.add_argument("--lr-finder-steps", type=int_at_least(2), default=40)
    dr.add_argument("--no-lr-finder", action="store_true", help="skip the LR range test")
    dr.add_argument("--validation-split", type=fraction, default=None)
    dr.add_argument("--seed", type=int, default=42)
    dr.add_argument("--out", default="doctor_report", help="report folder")
    dr.set_defaults(func=doctor_command)
    return parser


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    # Before parsing: the --backbone check imports kerasrecipes, and so TensorFlow.
    if "--verbose" not in argv and not {"-h", "--help"} & set(argv):
        import_tensorflow_quietly()  # Run by `import kerasrecipes` already for the script.
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exit:  # A bad flag (status 2, message printed) or --help (0).
        return exit.code
    args.argv = argv  # For the --resume command line that an interrupted finetune prints.
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print(f"kerasrecipes {args.command}: interrupted", file=sys.stderr)
        return 130
    except (ValueError, FileNotFoundError, ImportError) as error:
        print(f"kerasrecipes {args.command}: error: {error}", file=sys.stderr)
        return 2
    except OSError as error:  # A full disk, a read-only folder: said plainly, no traceback.
        print(f"kerasrecipes {args.command}: error: {error.strerror or error}", file=sys.stderr)
        return 1
    except Exception as error:
        # TensorFlow's file writes (SavedModel, TFLite) raise OpErrors, e.g. ResourceExhausted
        # for a full disk: the same plain message.
        tf = sys.modules.get("tensorflow")
        if tf is None or not isinstance(error, tf.errors.OpError):
            raise
        print(f"kerasrecipes {args.command}: error: {error.message}", file=sys.stderr)
        return 1
