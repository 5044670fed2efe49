"""Tests of `kerasrecipes.augment_albumentations` (`kr.albumentations_map`)."""

import numpy as np
import pytest
import tensorflow as tf

A = pytest.importorskip("albumentations")

from kerasrecipes.augment_albumentations import albumentations_map  # noqa: E402


def _dataset(n=6, size=24):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (n, size, size, 3)).astype("uint8")
    return images, tf.data.Dataset.from_tensor_slices((images, np.arange(n, dtype="int32"))).batch(4)


def test_real_compose_per_batch_with_static_shapes_and_reproducible_seed():
    images, ds = _dataset()
    compose = A.Compose([A.RandomResizedCrop((16, 16), scale=(0.3, 1.0)), A.HorizontalFlip(),
                         A.RandomBrightnessContrast(p=1.0)])
    mapped = ds.map(albumentations_map(compose, image_size=16, seed=7))
    assert mapped.element_spec[0].shape.as_list() == [None, 16, 16, 3]
    first = [(x.numpy(), y.numpy()) for x, y in mapped]
    second = [x.numpy() for x, _ in ds.map(albumentations_map(compose, image_size=16, seed=7))]
    assert all(np.array_equal(a[0], b) for a, b in zip(first, second))
    assert first[0][0].dtype == np.uint8 and first[0][0].shape == (4, 16, 16, 3)
    np.testing.assert_array_equal(np.concatenate([y for _, y in first]), np.arange(6))
    other = [x.numpy() for x, _ in ds.map(albumentations_map(compose, image_size=16, seed=8))]
    assert not np.array_equal(first[0][0], other[0])


def test_one_numpy_call_per_batch():
    images, ds = _dataset(n=8)
    calls = []

    def compose(image):
        calls.append(1)
        return {"image": image[::-1]}

    fn = albumentations_map(compose)
    out = [x.numpy() for x, _ in ds.map(fn)]
    np.testing.assert_array_equal(np.concatenate(out), images[:, ::-1])
    assert len(calls) == 8  # per image inside the compose, but in 2 numpy_function calls


def test_masks_and_boxes_only_when_given():
    images, _ = _dataset(n=4, size=20)
    masks = (images[..., 0] > 128).astype("uint8")
    boxes = np.full((4, 3, 4), -1.0, "float32")
    boxes[:, 0] = [2, 3, 10, 12]
    ds = tf.data.Dataset.from_tensor_slices(
        (images, np.arange(4), {"mask": masks, "bboxes": boxes})).batch(2)
    compose = A.Compose([A.HorizontalFlip(p=1.0)],
                        bbox_params=A.BboxParams(format="pascal_voc", label_fields=["bbox_ids"]))
    x, y, targets = next(iter(ds.map(albumentations_map(compose))))
    np.testing.assert_array_equal(x.numpy(), images[:2, :, ::-1])
    np.testing.assert_array_equal(targets["mask"].numpy(), masks[:2, :, ::-1])
    np.testing.assert_allclose(targets["bboxes"].numpy()[:, 0], [[10, 3, 18, 12]] * 2)
    np.testing.assert_array_equal(targets["bboxes"].numpy()[:, 1:], -1)
    with pytest.raises(ValueError, match="compose must be an albumentations Compose"):
        albumentations_map("flip")


def test_the_old_import_paths_give_the_same_function():
    import kerasrecipes as kr
    from kerasrecipes import data

    assert data.albumentations_map is albumentations_map
    assert kr.albumentations_map is albumentations_map
