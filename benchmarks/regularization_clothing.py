"""Validation accuracy on the clothing photos for augmentation / regularization recipes.

EfficientNet-Lite0 (ImageNet weights, offline) at 128 px with the backbone **frozen**: only the
head trains, `head_epochs` epochs per configuration (CPU budget), same seed and data order for all.
Configurations: no augmentation, light, standard, standard + MixUp, standard + CutMix,
standard + label smoothing 0.1; TTA (8 views) is measured on every trained model.

    python benchmarks/regularization_clothing.py --data ../shared/data/clothing
"""

import argparse
import json
import os
import sys
import time

CONFIGS = {
    "none": {"augment": "none"},
    "light": {"augment": "light"},
    "standard": {"augment": "standard"},
    "standard+mixup": {"augment": "standard", "mixup": 0.2},
    "standard+cutmix": {"augment": "standard", "cutmix": 1.0},
    "standard+label_smoothing": {"augment": "standard", "label_smoothing": 0.1},
}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="../shared/data/clothing")
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--epochs", type=int, default=2, help="head epochs per configuration")
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--configs", default=",".join(CONFIGS))
    parser.add_argument("--tta", type=int, default=8)
    parser.add_argument("--out", default=None, help="optional JSON file for the results")
    args = parser.parse_args(argv)
    if not os.path.isdir(os.path.join(args.data, "train")):
        print(f"skipped: {args.data}/train not found (the shared clothing data is not here)")
        return 0
    import keras
    import numpy as np

    import kerasrecipes as kr

    data = kr.image_folder_datasets(args.data, image_size=args.image_size, batch_size=32, seed=0)
    num_classes = len(data.class_names)
    rows = []
    for seed in [int(s) for s in args.seeds.split(",")]:
        for name in args.configs.split(","):
            config = CONFIGS[name]
            keras.utils.set_random_seed(seed)
            model = kr.build_classifier("efficientnet_lite0", num_classes=num_classes,
                                        image_size=args.image_size, augment=config["augment"])
            train = data.train
            if config.get("mixup") or config.get("cutmix"):
                train = kr.mix_dataset(train, num_classes, mixup_alpha=config.get("mixup", 0.0),
                                       cutmix_alpha=config.get("cutmix", 0.0), seed=seed)
            start = time.time()
            history = kr.fine_tune(model, train, data.validation, head_epochs=args.epochs,
                                   epochs=0, lr=1e-3, schedule="warmup_cosine",
                                   label_smoothing=config.get("label_smoothing", 0.0),
                                   verbose=0)
            seconds = time.time() - start
            final = history.history["val_accuracy"][-1]
            tta = kr.tta_accuracy(model, data.validation, n=args.tta)
            rows.append({"config": name, "seed": seed, "val_accuracy": final,
                         "best_val_accuracy": max(history.history["val_accuracy"]),
                         "tta_accuracy": tta["tta_accuracy"], "plain_accuracy": tta["accuracy"],
                         "train_seconds": seconds})
            print(f"[bench] seed {seed} {name:26s} val_acc {final:.4f}  +TTA{args.tta} "
                  f"{tta['tta_accuracy']:.4f}  ({seconds:.0f} s)", flush=True)
    if args.out:
        with open(args.out, "w") as f:
            json.dump(rows, f, indent=2)
    print()
    print(f"| config | val accuracy (epoch {args.epochs}) | + TTA ({args.tta} views) | TTA delta |")
    print("| --- | --- | --- | --- |")
    for name in args.configs.split(","):
        mine = [r for r in rows if r["config"] == name]
        acc = float(np.median([r["val_accuracy"] for r in mine]))
        tta = float(np.median([r["tta_accuracy"] for r in mine]))
        plain = float(np.median([r["plain_accuracy"] for r in mine]))
        print(f"| {name} | {acc:.4f} | {tta:.4f} | {tta - plain:+.4f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
