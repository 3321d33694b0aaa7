"""tf.data pipeline: uint8 batches in a stable order, seeded shuffling, augmentation on training only."""

import numpy as np

from conftest import make_image
from kit.pipeline import make_dataset


def _files(tmp_path, n=10):
    paths = []
    for k in range(n):
        p = tmp_path / f"{k}.png"
        make_image(("cat", "dog")[k % 2], k, size=12).save(p)
        paths.append(str(p))
    return paths


def test_eval_batches_are_uint8_in_order(tmp_path):
    paths = _files(tmp_path)
    batches = list(make_dataset(paths, list(range(10)), image_size=8, channels=1, batch_size=4).as_numpy_iterator())
    assert [len(b[1]) for b in batches] == [4, 4, 2]
    assert batches[0][0].dtype == np.uint8 and batches[0][0].shape == (4, 8, 8, 1)
    assert np.concatenate([b[1] for b in batches]).tolist() == list(range(10))


def test_training_order_is_seeded_and_reshuffled_each_epoch(tmp_path):
    paths = _files(tmp_path)

    def epochs(seed):
        ds = make_dataset(paths, list(range(10)), image_size=8, channels=1, batch_size=10, training=True, seed=seed)
        return [next(iter(ds))[1].numpy().tolist() for _ in range(2)]

    first, again = epochs(1), epochs(1)
    assert first == again  # same seed, same order
    assert first[0] != first[1]  # a new order every epoch
    assert sorted(first[0]) == list(range(10))


def test_augmentation_changes_training_batches_only(tmp_path):
    paths = _files(tmp_path)
    plain = next(iter(make_dataset(paths, [0] * 10, image_size=12, channels=1, batch_size=10)))[0].numpy()
    aug = make_dataset(paths, list(range(10)), image_size=12, channels=1, batch_size=10, training=True,
                       augment="strong", seed=3)
    images, labels = next(iter(aug))
    images, order = images.numpy(), labels.numpy()
    assert images.dtype == np.uint8
    assert not np.array_equal(images, plain[order])  # augmented
    val = make_dataset(paths, [0] * 10, image_size=12, channels=1, batch_size=10, augment="strong")
    assert np.array_equal(next(iter(val))[0].numpy(), plain)  # augment ignored outside training
