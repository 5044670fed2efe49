import json
import os

import pytest

from kerasrecipes.cli import main


@pytest.fixture
def photo_folder(make_image_folder):
    return make_image_folder(classes=("red", "green", "blue"), per_class=8)


def test_finetune_then_predict_from_the_command_line(photo_folder, tmp_path, capsys):
    out = tmp_path / "out"
    code = main([
        "finetune", str(photo_folder), "--backbone", "mobilenetv3small", "--weights", "none",
        "--image-size", "32", "--batch-size", "8", "--head-epochs", "1", "--epochs", "1",
        "--validation-split", "0.25", "--out", str(out),
    ])
    assert code == 0
    printed = capsys.readouterr().out
    assert "stage 1 (head, 1 epochs): best val_accuracy" in printed
    assert "stage 2 (fine_tune, 1 epochs): best val_accuracy" in printed
    expected = {"saved_model.pb", "model.keras", "metrics.json", "history.png", "report.md",
                "labels.txt"}
    assert expected <= set(os.listdir(out))
    metrics = json.load(open(out / "metrics.json"))
    assert metrics["class_names"] == ["blue", "green", "red"]
    assert 0.0 <= metrics["final"]["accuracy"] <= 1.0
    assert [s["name"] for s in metrics["stages"]] == ["head", "fine_tune"]

    image = os.path.join(photo_folder, "red", "000.jpg")
    assert main(["predict", str(out), image, "--top", "2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == image and len(lines) == 3
    assert lines[1].split()[-1] in {"blue", "green", "red"}

    exported = tmp_path / "exported"
    assert main(["export", str(out / "model.keras"), "--out", str(exported),
                 "--formats", "savedmodel,tflite-dynamic"]) == 0
    assert sorted(os.listdir(exported)) == ["model_tflite-dynamic.tflite", "saved_model"]
    capsys.readouterr()
    assert main(["predict", str(exported / "saved_model"), image, "--top", "1"]) == 0
    again = capsys.readouterr().out.splitlines()
    assert again[1].split()[-1] == lines[1].split()[-1]  # same model, same top class
    assert main(["export", str(out / "model.keras"), "--out", str(exported),
                 "--formats", "coreml"]) == 2
    assert "--formats takes" in capsys.readouterr().err


def test_bad_input_is_a_clear_error_not_a_traceback(tmp_path, capsys):
    assert main(["finetune", str(tmp_path / "missing"), "--weights", "none"]) == 2
    err = capsys.readouterr().err
    assert "finetune: error:" in err and "missing" in err
    assert main(["finetune", str(tmp_path), "--backbone", "resnet51"]) == 2
    assert "unknown backbone 'resnet51'. Did you mean 'resnet50'" in capsys.readouterr().err


def test_backbones_lists_the_registry(capsys):
    assert main(["backbones"]) == 0
    printed = capsys.readouterr().out
    assert "efficientnet_lite0" in printed and "resnet50" in printed


def test_predict_without_a_model_uses_the_imagenet_lite0_classifier(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("KERASRECIPES_CACHE", str(tmp_path))
    image = os.path.join(os.path.dirname(__file__), "data", "chelsea.jpg")
    assert main(["predict", image, "--top", "1"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].split()[1:] == ["285", "Egyptian", "cat"]


def test_finetune_passes_schedule_and_clipping_and_checks_them_first(photo_folder, tmp_path,
                                                                      capsys, monkeypatch):
    import kerasrecipes
    from kerasrecipes.cli import build_parser

    defaults = build_parser().parse_args(["finetune"])
    assert defaults.schedule == "one_cycle"
    assert (defaults.clipnorm, defaults.clipvalue, defaults.global_clipnorm) == (None, None, None)
    assert build_parser().parse_args(["finetune", "--clipvalue"]).clipvalue == 5.0
    assert build_parser().parse_args(["finetune", "--clipvalue", "2"]).clipvalue == 2.0
    with pytest.raises(SystemExit):  # argparse: at most one way of clipping
        build_parser().parse_args(["finetune", "--clipnorm", "1", "--clipvalue", "5"])
    capsys.readouterr()
    # Checked before the data is loaded: the error is about the value, not the missing folder.
    assert main(["finetune", str(tmp_path / "missing"), "--clipvalue", "-1"]) == 2
    assert "clipvalue must be a positive float" in capsys.readouterr().err

    received = {}

    def fake_fine_tune(model, train, validation=None, **kwargs):
        received.update(kwargs)
        raise ValueError("stopped by the test")

    monkeypatch.setattr(kerasrecipes, "fine_tune", fake_fine_tune)
    assert main(["finetune", str(photo_folder), "--backbone", "mobilenetv3small", "--weights",
                 "none", "--image-size", "32", "--batch-size", "8", "--global-clipnorm", "1.5",
                 "--schedule", "warmup_cosine", "--out", str(tmp_path / "out")]) == 2
    assert "stopped by the test" in capsys.readouterr().err
    assert received["schedule"] == "warmup_cosine"
    assert received["global_clipnorm"] == 1.5
    assert received["clipnorm"] is None and received["clipvalue"] is None


def test_predict_names_each_bad_file_and_goes_on(tmp_path, capsys):
    import numpy as np
    from PIL import Image

    import kerasrecipes as kr
    from tiny_models import TINY

    model = kr.build_classifier(TINY, num_classes=3, weights=None)
    export = kr.export_saved_model(model, tmp_path / "export", class_names=["a", "b", "c"])
    good = [str(tmp_path / "good.jpg"), str(tmp_path / "good.png")]
    for path in good:
        Image.fromarray(np.full((20, 24, 3), 120, "uint8")).save(path)
    (tmp_path / "text.jpg").write_text("not an image")
    (tmp_path / "empty.png").write_bytes(b"")
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(open(good[0], "rb").read()[:200])
    bad = [str(tmp_path / "text.jpg"), str(tmp_path / "empty.png"), str(truncated),
           str(tmp_path / "missing.jpg")]
    assert main(["predict", str(export), good[0], *bad, good[1], "--top", "1"]) == 1
    captured = capsys.readouterr()
    lines = captured.out.splitlines()
    assert lines[0::2] == good and len(lines) == 4
    for path in bad:
        assert f"skipped {path}: " in captured.err
    assert "4 of 6 files could not be read" in captured.err


# ---------------------------------------------------------------------------------------------
# Reliability: flags checked before the scan, --out, a full disk, bad model files, a quiet start.


@pytest.fixture
def no_scan(monkeypatch):
    """Fails the test if any data is scanned."""
    import kerasrecipes

    def refuse(*args, **kwargs):
        raise AssertionError("the data was scanned before the flags were checked")

    monkeypatch.setattr(kerasrecipes, "image_folder_datasets", refuse)
    monkeypatch.setattr(kerasrecipes.datasets, "load_demo", refuse)


@pytest.mark.parametrize("argv, message", [
    (["--epochs", "-1"], "argument --epochs: must be an integer >= 0. Received: -1"),
    (["--head-epochs", "two"], "argument --head-epochs: must be an integer >= 0. Received: 'two'"),
    (["--head-epochs", "0", "--epochs", "0"], "--head-epochs and --epochs are both 0"),
    (["--batch-size", "0"], "argument --batch-size: must be an integer >= 1. Received: 0"),
    (["--image-size", "-32"], "argument --image-size: must be an integer >= 1. Received: -32"),
    (["--image-size", "224x224"], "argument --image-size: must be an integer >= 1. Received: "
                                  "'224x224'"),
    (["--lr", "0"], "argument --lr: must be a positive number. Received: 0"),
    (["--lr", "inf"], "argument --lr: must be a positive number. Received: inf"),
    (["--lr-mult", "0.5"], "argument --lr-mult: must be a number >= 1. Received: 0.5"),
    (["--weight-decay=-1e-4"], "argument --weight-decay: must be a number >= 0"),
    (["--validation-split", "0"], "argument --validation-split: must be a fraction in (0, 1)"),
    (["--validation-split", "1.5"], "Received: 1.5"),
    (["--dropout", "1"], "argument --dropout: must be a number in [0, 1). Received: 1"),
    (["--label-smoothing", "-0.1"], "argument --label-smoothing: must be a number in [0, 1)"),
    (["--patience", "-1"], "argument --patience: must be an integer >= 0"),
    (["--unfreeze", "0"], "argument --unfreeze: must be 'all', 'gradual' or a number"),
    (["--backbone", "efficientnet_lite9"], "unknown backbone 'efficientnet_lite9'. Did you mean "
                                           "'efficientnet_lite"),
    (["--backbone", "MobileNetV4Small"], "unknown backbone 'MobileNetV4Small'. Did you mean "
                                         "'mobilenetv3small'"),
    (["--optimizer", "adamx"], "unknown optimizer 'adamx'. Did you mean 'adam' or 'adamw'"),
    (["--schedule", "cosine"], "unknown schedule 'cosine'. Did you mean"),
    (["--augment", "strng"], "unknown augment preset 'strng'. Did you mean 'strong'?"),
    (["--precision", "fp16"], "unknown precision 'fp16'"),
    (["--weights", "missing.weights.h5"], "argument --weights: must be 'imagenet', 'none' or a "
                                          "weights file. Received: 'missing.weights.h5'"),
    (["--clipvalue", "-1"], "clipvalue must be a positive float"),
    (["--max-image-pixels", "0"], "argument --max-image-pixels: must be an integer >= 1"),
])
def test_finetune_flags_are_checked_before_the_scan(photo_folder, no_scan, capsys, argv,
                                                    message):
    assert main(["finetune", photo_folder, "--weights", "none", *argv]) == 2
    assert message in capsys.readouterr().err


def test_close_names_and_case_are_accepted(photo_folder, no_scan, capsys):
    from kerasrecipes.cli import build_parser

    args = build_parser().parse_args(["finetune", "--backbone", "MobileNet-V3-Small",
                                      "--optimizer", "AdamW", "--weights", "None"])
    assert (args.backbone, args.optimizer, args.weights) == ("MobileNet-V3-Small", "adamw", "none")
    assert build_parser().parse_args(["finetune", "--backbone", "hub:some_preset"]).backbone == \
        "hub:some_preset"


@pytest.mark.parametrize("argv, message", [
    (["lr-find", "--min-lr", "1", "--max-lr", "0.1"], "--max-lr must be larger than --min-lr. "
                                                      "Received: --min-lr 1.0 --max-lr 0.1"),
    (["lr-find", "--num-steps", "1"], "argument --num-steps: must be an integer >= 2"),
    (["lr-find", "--stage", "body"], "unknown stage 'body'"),
    (["lr-find", "--optimizer", "sdg"], "unknown optimizer 'sdg'. Did you mean 'sgd'"),
    (["doctor", "--overfit-batches", "0"], "argument --overfit-batches: must be an integer >= 1"),
    (["doctor", "--overfit-lr", "-1"], "argument --overfit-lr: must be a positive number"),
    (["doctor", "--backbone", "resnet5"], "unknown backbone 'resnet5'. Did you mean 'resnet50'"),
    (["doctor", "--validation-split", "2"], "argument --validation-split: must be a fraction"),
])
def test_lr_find_and_doctor_flags_are_checked_before_the_scan(photo_folder, no_scan, capsys,
                                                              argv, message):
    assert main([argv[0], photo_folder, *argv[1:]]) == 2
    assert message in capsys.readouterr().err


def test_out_that_is_not_ours_or_cannot_be_written_stops_before_the_scan(photo_folder, no_scan,
                                                                         tmp_path, capsys,
                                                                         monkeypatch):
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    (theirs / "thesis.tex").write_text("years of work")
    assert main(["finetune", photo_folder, "--weights", "none", "--out", str(theirs)]) == 2
    err = capsys.readouterr().err
    assert f"--out '{theirs}' exists and was not written by kerasrecipes" in err
    assert "thesis.tex" in err and (theirs / "thesis.tex").read_text() == "years of work"

    (tmp_path / "afile").write_text("x")
    assert main(["finetune", photo_folder, "--out", str(tmp_path / "afile")]) == 2
    assert "--out must be a folder" in capsys.readouterr().err

    import tempfile

    from kerasrecipes import saving

    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(saving.tempfile, "mkstemp", denied)
    assert main(["finetune", photo_folder, "--out", str(tmp_path / "new" / "out")]) == 2
    assert (f"--out '{tmp_path / 'new' / 'out'}' cannot be written: the folder '{tmp_path}' is "
            "not writable (Permission denied)") in capsys.readouterr().err
    assert main(["doctor", photo_folder, "--out", str(tmp_path / "report")]) == 2
    assert "cannot be written" in capsys.readouterr().err
    monkeypatch.setattr(saving.tempfile, "mkstemp", tempfile.mkstemp)


def _mount_tmpfs(path, options):
    import subprocess

    os.makedirs(path, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)],
                          capture_output=True)
    return done.returncode == 0


def _umount(path):
    import subprocess

    subprocess.run(["umount", "-l", str(path)], capture_output=True)


def test_read_only_out_on_a_real_read_only_mount(photo_folder, no_scan, tmp_path, capsys):
    mount = tmp_path / "ro"
    if not _mount_tmpfs(mount, "ro,size=1m"):
        pytest.skip("cannot mount a read-only tmpfs here (needs root)")
    try:
        assert main(["finetune", photo_folder, "--out", str(mount / "out")]) == 2
        assert "is not writable (Read-only file system)" in capsys.readouterr().err
    finally:
        _umount(mount)


@pytest.fixture
def tiny_backbone():
    """Registers `tiny_test_net` for CLI runs that must be fast."""
    from kerasrecipes import registry
    from tiny_models import TINY

    registry.register_backbone(TINY)
    yield TINY.name


def _tiny_finetune(folder, out, *extra):
    return main(["finetune", folder, "--backbone", "tiny_test_net", "--weights", "none",
                 "--image-size", "16", "--batch-size", "8", "--head-epochs", "1", "--epochs",
                 "0", "--validation-split", "0.25", "--out", str(out), *extra])


def _snapshot(folder):
    return {os.path.relpath(os.path.join(d, f), folder): open(os.path.join(d, f), "rb").read()
            for d, _, files in os.walk(folder) for f in files}


def test_full_disk_after_training_keeps_the_previous_export(photo_folder, tiny_backbone,
                                                            tmp_path, capsys, monkeypatch):
    import errno

    import keras

    import kerasrecipes as kr
    from tiny_models import TINY

    out = tmp_path / "exports" / "photos"
    previous = kr.build_classifier(TINY, num_classes=3, weights=None)
    kr.export_saved_model(previous, out, class_names=["blue", "green", "red"])
    (out / "metrics.json").write_text("{}")
    before = _snapshot(out)

    def full_disk(self, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(keras.Model, "save", full_disk)
    assert _tiny_finetune(photo_folder, out, "--seed", "7") == 1
    captured = capsys.readouterr()
    # The data report came first, before training.
    report = captured.out.index("data report for")
    assert captured.out.index("stage 1 (head") > report
    assert "blue" in captured.out[report:] and "total" in captured.out[report:]
    err = captured.err
    assert "Training finished, but writing" in err and "No space left on device" in err
    assert "is intact" in err
    assert _snapshot(out) == before
    # No staging folder or temporary file left; the trained weights are kept in the backup.
    assert sorted(os.listdir(out.parent)) == ["photos", "photos.backup"]
    assert "the trained weights are kept in" in err and "--resume" in err

    # Space again: --resume writes the export from the backup, without training again.
    monkeypatch.undo()
    assert _tiny_finetune(photo_folder, out, "--seed", "7", "--resume") == 0
    printed = capsys.readouterr().out
    assert "1 stage(s) already done" in printed and "Epoch 1/" not in printed
    assert _snapshot(out) != before and (out / "model.keras").exists()
    assert os.listdir(out.parent) == ["photos"]  # the backup goes once the export is in


@pytest.mark.slow  # 10 s; the fast suite keeps the simulated full disk above
def test_full_disk_on_a_real_small_tmpfs(photo_folder, tiny_backbone, tmp_path, capsys):
    mount = tmp_path / "small"
    if not _mount_tmpfs(mount, "size=4m"):
        pytest.skip("cannot mount a small tmpfs here (needs root)")
    try:
        out = mount / "out"
        assert _tiny_finetune(photo_folder, out) == 0
        before = _snapshot(out)
        fd = os.open(mount / "filler", os.O_WRONLY | os.O_CREAT)  # Fill the disk...
        try:
            while True:
                os.write(fd, bytes(64 * 1024))
        except OSError:
            pass
        finally:
            os.close(fd)
        # ... then leave less room than one more export takes.
        os.truncate(mount / "filler", os.path.getsize(mount / "filler") - 256 * 1024)
        capsys.readouterr()
        assert _tiny_finetune(photo_folder, out, "--seed", "7") == 1
        assert "No space left on device" in capsys.readouterr().err
        assert _snapshot(out) == before
        assert sorted(os.listdir(mount)) == ["filler", "out", "out.backup"]
    finally:
        _umount(mount)


def test_export_names_a_model_file_it_cannot_load(tmp_path, capsys):
    bad = tmp_path / "model.keras"
    bad.write_text("hello")
    assert main(["export", str(bad), "--out", str(tmp_path / "x"), "--formats",
                 "savedmodel"]) == 2
    assert f"Cannot load the model '{bad}': it holds text" in capsys.readouterr().err
    assert not os.path.exists(tmp_path / "x")


def _native_lines(stderr):
    from kerasrecipes.startup import drop_native_log_lines

    data = stderr.encode()
    return [line for line in data.splitlines(keepends=True)
            if line not in drop_native_log_lines(line)]


def test_the_command_starts_quietly(tmp_path):
    import subprocess
    import sys

    script = os.path.join(os.path.dirname(sys.executable), "kerasrecipes")
    env = {k: v for k, v in os.environ.items() if not k.startswith("TF_CPP")}
    quiet = subprocess.run([script, "backbones"], capture_output=True, text=True, env=env,
                           timeout=300)
    assert quiet.returncode == 0 and "efficientnet_lite0" in quiet.stdout
    assert _native_lines(quiet.stderr) == [] and "absl" not in quiet.stderr, quiet.stderr
    loud = subprocess.run([script, "--verbose", "backbones"], capture_output=True, text=True,
                          env=env, timeout=300)
    assert loud.returncode == 0 and loud.stdout == quiet.stdout
    # What the filter takes away (on a machine where TensorFlow says nothing, nothing).
    assert loud.stderr.count("\n") >= quiet.stderr.count("\n")


@pytest.mark.slow
def test_finetune_starts_quietly(photo_folder, tmp_path):
    import subprocess
    import sys

    script = os.path.join(os.path.dirname(sys.executable), "kerasrecipes")
    env = {k: v for k, v in os.environ.items() if not k.startswith("TF_CPP")}
    run = subprocess.run([script, "finetune", photo_folder, "--backbone", "mobilenetv3small",
                          "--weights", "none", "--image-size", "32", "--batch-size", "8",
                          "--head-epochs", "1", "--epochs", "0", "--validation-split", "0.25",
                          "--out", str(tmp_path / "out")],
                         capture_output=True, text=True, env=env, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.startswith("[kerasrecipes] data report for")
    assert _native_lines(run.stderr) == [], run.stderr[-3000:]


# ---------------------------------------------------------------------------------------------
# Reliability, long runs: an interrupted run, --resume with other arguments, a NaN loss, the
# backup kept until the export is written.


def _with_callbacks(monkeypatch, *callbacks):
    """Makes the CLI's fine_tune run with extra callbacks (what a test does to the run)."""
    import kerasrecipes

    real = kerasrecipes.fine_tune

    def fine_tune(*args, **kwargs):
        return real(*args, callbacks=list(callbacks), **kwargs)

    monkeypatch.setattr(kerasrecipes, "fine_tune", fine_tune)


def test_resume_with_other_arguments_is_refused_naming_them(photo_folder, tiny_backbone,
                                                            tmp_path, capsys, monkeypatch):
    import kerasrecipes
    from kerasrecipes.interrupt import TrainingInterrupted

    def interrupted(*args, **kwargs):
        raise TrainingInterrupted("SIGINT", "head", 1, 2)

    monkeypatch.setattr(kerasrecipes, "fine_tune", interrupted)
    out = tmp_path / "out"
    assert _tiny_finetune(photo_folder, out, "--lr", "0.001") == 130
    err = capsys.readouterr().err
    assert "stopped by SIGINT in stage 'head', epoch 1, after batch 2" in err
    arguments = json.loads((tmp_path / "out.backup" / "arguments.json").read_text())
    assert arguments["arguments"]["lr"] == 0.001
    assert arguments["arguments"]["data"] == os.path.abspath(photo_folder)
    assert arguments["command"].endswith("--lr 0.001 --resume")

    def refuse(*args, **kwargs):
        raise AssertionError("the data was scanned before the arguments were compared")

    monkeypatch.setattr(kerasrecipes, "image_folder_datasets", refuse)
    assert _tiny_finetune(photo_folder, out, "--lr", "0.01", "--batch-size", "4",
                          "--resume") == 2
    err = capsys.readouterr().err
    assert (f"--resume: the run in '{tmp_path / 'out.backup'}' was started with other "
            "arguments: --batch-size 4 (the run being resumed: 8); --lr 0.01 (the run being "
            "resumed: 0.001). Resume it with the arguments it was started with, or drop "
            "--resume") in err
    assert (tmp_path / "out.backup" / "arguments.json").exists()  # untouched


def test_a_nan_loss_through_the_cli_exports_the_best_weights(photo_folder, tiny_backbone,
                                                             tmp_path, capsys, monkeypatch):
    import keras
    import numpy as np

    import kerasrecipes as kr

    class PoisonAtEpoch3(keras.callbacks.Callback):
        """NaN weights after the first batch of epoch 3 (the 2nd fine-tuning epoch)."""

        logs, weights = [], []

        def on_epoch_begin(self, epoch, logs=None):
            self.epoch = epoch

        def on_train_batch_end(self, batch, logs=None):
            if (self.epoch, batch) == (2, 0):
                self.model.set_weights([np.full_like(w, np.nan) for w in
                                        self.model.get_weights()])

        def on_epoch_end(self, epoch, logs=None):
            self.logs.append(logs["val_loss"])
            self.weights.append(self.model.get_weights())

    _with_callbacks(monkeypatch, PoisonAtEpoch3())
    out = tmp_path / "out"
    keras.utils.set_random_seed(0)
    with pytest.warns(UserWarning, match="loss became nan"):
        code = _tiny_finetune(photo_folder, out, "--epochs", "3", "--patience", "5")
    assert code == 1
    err = capsys.readouterr().err
    assert ("kerasrecipes finetune: training stopped early in stage 'fine_tune': the loss became "
            "nan at epoch 3, batch 2") in err
    assert f"{out} has the best weights so far (epoch " in err and "try a 3-10x lower --lr" in err
    # The export has the weights of the best epoch before the divergence.
    best = int(np.argmin(PoisonAtEpoch3.logs[:2]))
    exported = kr.load_model(out / "model.keras").get_weights()
    assert all(np.array_equal(a, b) for a, b in zip(exported, PoisonAtEpoch3.weights[best]))
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["stages"][-1]["restored"]["epoch"] == best + 1
    assert not (tmp_path / "out.backup").exists()  # the run is over, and its export written
