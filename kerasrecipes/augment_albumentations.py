"""albumentations in `tf.data`: one `tf.numpy_function` call per batch (`albumentations_map`)."""

import numpy as np

from kerasrecipes.utils import check_image_size


def albumentations_map(compose, image_size=None, seed=None):
    """A `tf.data` batch map that applies an albumentations `A.Compose` to every image.

    The whole batch goes through **one** `tf.numpy_function` call (one Python round-trip per
    batch, not per image), and the outputs get static shapes again, so Keras sees
    `[B, H, W, 3]` uint8. Elements are `(images, labels)` or `(images, labels, targets)` where
    `targets` is a dict with `"mask"` (`[B, H, W]` or `[B, H, W, K]` uint8) and/or `"bboxes"`
    (`[B, N, 4]` float32 in the compose's `bbox_params` format, rows of -1 are padding); masks and
    boxes are passed to the compose only when given (boxes keep their padded shape; boxes the
    compose drops become -1 rows). Use `A.Compose(..., bbox_params=A.BboxParams(format=...,
    label_fields=["bbox_ids"]))` for boxes.

    Args:
        compose: `albumentations.Compose` (or any callable `compose(image=...) -> dict`).
        image_size: optional int or (height, width). The images' size after the compose (when it
            crops or resizes). Defaults to `None` (the input size).
        seed: optional int. Seeds the compose (`set_random_seed(seed + batch_index)`), so a
            sequentially mapped dataset (`dataset.map(fn)`, no `num_parallel_calls`) is
            reproducible. Defaults to `None`.

    Returns:
        A function for `dataset.map`.

    Example:
    >>> import albumentations as A
    >>> fn = albumentations_map(A.Compose([A.HorizontalFlip(), A.RandomBrightnessContrast()]))
    >>> train = data.train.map(fn, num_parallel_calls=tf.data.AUTOTUNE)
    """
    import threading

    import tensorflow as tf

    if not callable(compose):
        raise ValueError(f"compose must be an albumentations Compose. Received: compose={compose!r}")
    if seed is not None and not isinstance(seed, int):
        raise ValueError(f"seed must be an int or None. Received: seed={seed!r}")
    size = None if image_size is None else check_image_size(image_size)
    state = {"batch": 0}
    lock = threading.Lock()

    def run(images, masks=None, boxes=None):
        out_images, out_masks, out_boxes = [], [], []
        with lock:
            if seed is not None and hasattr(compose, "set_random_seed"):
                compose.set_random_seed(seed + state["batch"])
            state["batch"] += 1
            for i in range(len(images)):
                kwargs = {"image": images[i]}
                if masks is not None:
                    kwargs["mask"] = masks[i]
                if boxes is not None:
                    valid = ~np.all(boxes[i] == -1, axis=-1)
                    kwargs["bboxes"] = boxes[i][valid]
                    kwargs["bbox_ids"] = np.nonzero(valid)[0]
                result = compose(**kwargs)
                out_images.append(np.asarray(result["image"], dtype=np.uint8))
                if masks is not None:
                    out_masks.append(np.asarray(result["mask"], dtype=masks.dtype))
                if boxes is not None:
                    padded = np.full(boxes[i].shape, -1.0, np.float32)
                    kept = np.asarray(result["bboxes"], np.float32).reshape(-1, 4)
                    padded[: len(kept)] = kept
                    out_boxes.append(padded)
        results = [np.stack(out_images)]
        if masks is not None:
            results.append(np.stack(out_masks))
        if boxes is not None:
            results.append(np.stack(out_boxes))
        return tuple(results)

    def apply(images, labels, targets=None):
        targets = dict(targets or {})
        unknown = set(targets) - {"mask", "bboxes"}
        if unknown:
            raise ValueError(f"targets may hold 'mask' and 'bboxes'. Received keys: {sorted(unknown)}")
        keys = [k for k in ("mask", "bboxes") if k in targets]
        inputs = [images] + [targets[k] for k in keys]
        dtypes = [tf.uint8] + [targets[k].dtype for k in keys]

        def numpy_run(*arrays):
            named = dict(zip(keys, arrays[1:]))
            return run(arrays[0], named.get("mask"), named.get("bboxes"))

        outputs = tf.numpy_function(numpy_run, inputs, dtypes, stateful=True)
        height, width = size or (images.shape[1], images.shape[2])
        outputs[0].set_shape([images.shape[0], height, width, 3])
        out_targets = {}
        for key, tensor, original in zip(keys, outputs[1:], inputs[1:]):
            if key == "mask":
                tensor.set_shape([original.shape[0], height, width, *original.shape[3:]])
            else:
                tensor.set_shape(original.shape)
            out_targets[key] = tensor
        if targets:
            return outputs[0], labels, out_targets
        return outputs[0], labels

    return apply
