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
    assert "Unknown backbone 'resnet51'" in capsys.readouterr().err


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
