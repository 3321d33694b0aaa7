"""tf.data input pipeline: parallel decode (training images in an order drawn from the seed) → uint8 → batch → cache;
the first epoch as decoded, later ones unbatched and shuffled → augment (train only) → prefetch."""

from __future__ import annotations

import atexit
import hashlib
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from .decode import DECODE_CHUNK, decoded_images, with_labels
from .errors import DataError
from .quiet import keras
from .quiet import tensorflow as tf
from .runs import atomic_write

AUTOTUNE = tf.data.AUTOTUNE


def make_augmenter(level: str, seed: int) -> keras.Sequential | None:
    """Keras preprocessing layers applied to whole uint8 batches; None for "none".

    "light" only shifts and zooms (safe for digits and text); "strong" adds horizontal flips,
    rotation and contrast, which suit photos and clothing but can change a digit's meaning.
    "shift-vflip" is the CIFAR-10 tutorial's (shifts up to 40% and vertical flips), kept for its recipe.
    """
    if level == "none":
        return None
    if level == "shift-vflip":
        return keras.Sequential([keras.layers.RandomTranslation(0.4, 0.4, seed=seed),
                                 keras.layers.RandomFlip("vertical", seed=seed + 1)], name="augment_shift_vflip")
    layers = [keras.layers.RandomTranslation(0.1, 0.1, seed=seed), keras.layers.RandomZoom(0.1, seed=seed + 1)]
    if level == "strong":
        layers = [keras.layers.RandomFlip("horizontal", seed=seed + 2), keras.layers.RandomRotation(0.05, seed=seed + 3),
                  *layers, keras.layers.RandomContrast(0.2, seed=seed + 4)]
    return keras.Sequential(layers, name=f"augment_{level}")


SHUFFLE_BUFFER_BYTES = 256 << 20  # decoded images held for shuffling: all of a small set, ~1,700 at 224 px RGB


def make_dataset(paths, labels=None, *, image_size: int, channels: int, batch_size: int, cache: bool | str = True
                 ) -> tf.data.Dataset:
    """Batches of (uint8 images, int labels) — or images alone when labels is None — in the files' order.

    cache: True keeps the decoded images in memory, a string is a file prefix for an on-disk cache (see
    disk_cache), False decodes on every pass.
    """
    return decoded_set(paths, labels, image_size, channels, cache, batch_size=batch_size).prefetch(AUTOTUNE)


def disk_cache(paths, image_size: int, channels: int, cache_dir: str = "", name: str = "train") -> str:
    """A file prefix for kit's on-disk cache in cache_dir (default: a temporary folder removed at exit).

    The cache is one raw file, PREFIX.u8, of the decoded uint8 images in the files' order (see decoded_set). Not
    tf.data's cache(filename): that holds the whole dataset in memory while it writes (tensorflow#50579). The
    prefix is keyed by the file list, its order and the image shape, so a --cache-dir is reused by every run
    on the same images. A cache left half-written by a killed process is deleted, never read.
    """

    folder = Path(cache_dir or _temporary_cache_dir())
    folder.mkdir(parents=True, exist_ok=True)
    key = hashlib.sha256(("\n".join(map(str, paths)) + f"\n{image_size}x{channels}").encode()).hexdigest()[:16]
    prefix = folder / f"kit-{name}-{image_size}x{channels}-{key}"
    if not Path(f"{prefix}.u8").exists():  # never finished: drop what a killed writer left
        for stale in folder.glob(f".{prefix.name}*.tmp"):
            stale.unlink()
    return str(prefix)


def _temporary_cache_dir() -> str:
    folder = tempfile.mkdtemp(prefix="kit-cache-")
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    return folder


def cache_bytes(n_images: int, image_size: int, channels: int) -> int:
    return n_images * image_size * image_size * channels


def decoded_set(paths, labels, image_size: int, channels: int, cache: bool | str,
                order: np.ndarray | None = None, batch_size: int = 0) -> tf.data.Dataset:
    """The decoded images (with their labels) in the files' order, or in `order` (indices into paths), decoded
    once when cached; in batches of batch_size when it is given. An on-disk cache always holds the files' order
    (so it serves every seed); `order` then only changes which rows are read. In memory, batches are cached as
    batches: per image, tf.data's cache costs about what decoding a small PNG does."""
    count = len(paths)
    if labels is not None:
        labels = np.asarray(labels)  # class indices, or a 0/1 row per image for tags
        labels = labels.astype(np.float32 if labels.ndim == 2 else np.int32)
        labels = labels if order is None else labels[order]
    if isinstance(cache, str):
        images = _read_disk_cache(_write_disk_cache(cache, paths, image_size, channels), count, image_size,
                                  channels, order).unbatch()  # unbatch() forgets the count
        ds = with_labels(images.apply(tf.data.experimental.assert_cardinality(count)), labels)
    else:
        paths = list(paths)  # a Series indexes by label, not position
        ds = decoded_images(paths if order is None else [paths[i] for i in order], image_size, channels, labels)
    ds = ds.batch(batch_size) if batch_size else ds
    return ds.cache() if cache is True else ds


def training_order(count: int, seed: int) -> np.ndarray:
    """The first epoch's order of the training images, by the seed alone. They are decoded (and cached) in this
    order, so the first epoch reads them as they come, with no shuffle buffer to fill: its first batch is ready
    after batch_size images instead of after the whole buffer, and training starts while the rest decode.
    Later epochs shuffle the cache."""
    return np.random.default_rng([seed, 0]).permutation(count)


def _write_disk_cache(prefix: str, paths, image_size: int, channels: int) -> str:
    """Decode every image once, in order, into PREFIX.u8 (written atomically) unless it is already there."""

    path = f"{prefix}.u8"
    if not Path(path).exists():
        with atomic_write(path, "wb") as f:
            for chunk in decoded_images(paths, image_size, channels).batch(DECODE_CHUNK).as_numpy_iterator():
                f.write(chunk.tobytes())
    return path


def _read_disk_cache(path: str, count: int, image_size: int, channels: int,
                     order: np.ndarray | None = None) -> tf.data.Dataset:
    """Chunks of images read back from a raw cache file with plain reads (page cache, not process memory), in
    the file's order or in `order`."""
    image_bytes = image_size * image_size * channels
    if Path(path).stat().st_size != count * image_bytes:
        raise DataError(f"{path}: holds {Path(path).stat().st_size} bytes, not {count} images of {image_bytes}; "
                        "delete it")

    def read(start):
        start = int(start)
        n = min(DECODE_CHUNK, count - start)
        with open(path, "rb") as f:
            if order is None:
                data = os.pread(f.fileno(), n * image_bytes, start * image_bytes)
            else:
                data = b"".join(os.pread(f.fileno(), image_bytes, int(i) * image_bytes) for i in order[start:start + n])
        return np.frombuffer(data, np.uint8).reshape(n, image_size, image_size, channels)

    def tf_read(start):
        images = tf.numpy_function(read, [start], tf.uint8, stateful=False)
        return tf.ensure_shape(images, (None, image_size, image_size, channels))

    return tf.data.Dataset.range(0, count, DECODE_CHUNK).map(tf_read, num_parallel_calls=AUTOTUNE)


def make_training_stream(paths, labels, *, image_size: int, channels: int, batch_size: int, seed: int,
                         augment: str, epochs: int, first_epoch: int = 0, skip_batches: int = 0,
                         cache: bool | str = True, decoded: tf.data.Dataset | None = None) -> tf.data.Dataset:
    """The training batches of epochs first_epoch..epochs-1 as one finite stream (fit it with steps_per_epoch).

    Images are decoded once (cached in memory, or on disk when `cache` is a file prefix). The first epoch reads
    them in training_order(seed), each later one in a shuffle seeded by (seed, epoch), and each batch's
    augmentation is seeded by its index in the whole run, so a run resumed at any epoch and batch (skip_batches
    into first_epoch) sees exactly the batches an uninterrupted run would. `decoded`: training_set of the same
    files, seed and batch size, shared by a run's streams so that a second stream (after the epoch a
    --time-budget times, or Ctrl-C) reads the cache the first filled instead of decoding every image again. The
    shuffle buffer is bounded in bytes: give the files in a random order (as training does) so that a buffer
    smaller than the set still mixes classes that are sorted on disk.
    """
    base = decoded if decoded is not None else training_set(paths, labels, image_size, channels, seed, cache,
                                                             batch_size)
    buffer = max(1, min(len(paths), SHUFFLE_BUFFER_BYTES // cache_bytes(1, image_size, channels)))
    ds = shuffled_epochs(base, len(paths), buffer, batch_size=batch_size, seed=seed, epochs=epochs,
                         first_epoch=first_epoch, skip_batches=skip_batches)
    steps = -(-len(paths) // batch_size)
    return augment_batches(ds, augment, seed, first_batch=first_epoch * steps + skip_batches).prefetch(AUTOTUNE)


def training_set(paths, labels, image_size: int, channels: int, seed: int, cache: bool | str,
                 batch_size: int) -> tf.data.Dataset:
    """Batches of the training images in training_order(seed), decoded once when cached: the first epoch's
    batches, which make_training_stream's later epochs unbatch and shuffle."""
    return decoded_set(paths, labels, image_size, channels, cache, training_order(len(paths), seed), batch_size)


def make_array_stream(x: np.ndarray, y: np.ndarray, *, batch_size: int, seed: int, epochs: int, first_epoch: int = 0,
                      skip_batches: int = 0) -> tf.data.Dataset:
    """make_training_stream for arrays already in memory (cached backbone features): same per-epoch seeding."""
    order = training_order(len(x), seed)
    base = tf.data.Dataset.from_tensor_slices((x[order], y[order])).batch(batch_size)
    return shuffled_epochs(base, len(x), len(x), batch_size=batch_size, seed=seed, epochs=epochs,
                           first_epoch=first_epoch, skip_batches=skip_batches).prefetch(AUTOTUNE)


def shuffled_epochs(batches: tf.data.Dataset, count: int, buffer: int, *, batch_size: int, seed: int,
                    epochs: int, first_epoch: int = 0, skip_batches: int = 0) -> tf.data.Dataset:
    """Epochs first_epoch..epochs-1 of `batches` of `count` images (the first epoch's, in its random order): the
    first epoch as they are, each later one their images shuffled by (seed, epoch) alone and batched again."""
    def epoch(e: int) -> tf.data.Dataset:  # a Python seed per epoch: shuffle() rejects tensor seeds under a global seed
        if e == 0:
            return batches
        images = batches.unbatch().apply(tf.data.experimental.assert_cardinality(count))  # unbatch() forgets it
        return images.shuffle(buffer, seed=seed * 100_003 + e, reshuffle_each_iteration=False).batch(batch_size)

    ds = epoch(first_epoch).skip(skip_batches)
    for e in range(first_epoch + 1, epochs):  # every epoch reads the same cache
        ds = ds.concatenate(epoch(e))
    return ds


def make_balanced_dataset(paths, labels, *, image_size: int, channels: int, batch_size: int, seed: int = 0,
                          augment: str = "none", skip_batches: int = 0) -> tf.data.Dataset:
    """An endless training stream drawing every class equally often (re-sampled per class), augmented per batch.

    Used with steps_per_epoch, so an "epoch" still means as many images as the training split holds. The stream
    is the same on every run with the same seed; a resumed run skips the batches already trained on.
    """
    labels = np.asarray(labels, dtype=np.int32)
    paths = np.asarray([str(p) for p in paths])
    streams = []
    for k, c in enumerate(np.unique(labels)):
        chosen = paths[labels == c]
        ds = decoded_set(chosen, np.full(len(chosen), c, np.int32), image_size, channels, cache=True)
        streams.append(ds.shuffle(len(chosen), seed=seed + k, reshuffle_each_iteration=True).repeat())
    ds = tf.data.Dataset.sample_from_datasets(streams, weights=[1.0 / len(streams)] * len(streams), seed=seed)
    ds = ds.batch(batch_size).skip(skip_batches)
    return augment_batches(ds, augment, seed, first_batch=skip_batches).prefetch(AUTOTUNE)


class _BatchSeeds(keras.random.SeedGenerator):
    """Stateless seeds for one batch: (key, 1), (key, 2), … for the random draws of the augmentation layers.

    Keras' own SeedGenerator keeps a state variable that advances as tf.data runs ahead; keyed seeds make a
    batch's augmentation depend only on its index, which is what lets a resumed run repeat it exactly.
    """

    def __init__(self, key):  # no super().__init__(): no state variable at all
        self.key = tf.cast(key, tf.int64)
        self.count = 0

    def next(self, ordered=True):
        self.count += 1
        return tf.stack([self.key, tf.constant(self.count, tf.int64)])


def mirror_axis(level: str) -> int | None:
    """The image axis an augmentation level mirrors along (2: left-right for strong, 1: upside down for
    shift-vflip), or None: the mirror image is then a view the model never saw in training."""
    return {"strong": 2, "shift-vflip": 1}.get(level)


def mirrored_batches(ds: tf.data.Dataset, axis: int) -> tf.data.Dataset:
    """Batches of (images, labels) with every image mirrored along `axis` (of the batch: 1 rows, 2 columns)."""
    return ds.map(lambda images, labels: (tf.reverse(images, axis=[axis]), labels))


def augment_batches(ds: tf.data.Dataset, level: str, seed: int, first_batch: int = 0) -> tf.data.Dataset:
    """Apply the augmentation of `level` to whole uint8 batches of (images, labels); uint8 stays uint8.

    Batch number i (counting from first_batch) is augmented with seeds derived from (seed, i) alone.
    """
    augmenter = make_augmenter(level, seed)
    if augmenter is None:
        return ds

    def apply(i, batch):
        images, labels = batch
        seeds = _BatchSeeds(seed * 1_000_003 + i)
        out = tf.cast(images, tf.float32)
        for layer in augmenter.layers:
            out = layer.transform_images(out, layer.get_random_transformation(out, training=True, seed=seeds))
        return tf.cast(tf.clip_by_value(tf.round(out), 0, 255), tf.uint8), labels

    return ds.enumerate(start=first_batch).map(apply, num_parallel_calls=AUTOTUNE)


def load_images(paths, image_size: int, channels: int, batch_size: int = 256) -> np.ndarray:
    """Decode a list of files into one uint8 array (for small sets: reports, single predictions)."""
    ds = make_dataset(paths, image_size=image_size, channels=channels, batch_size=batch_size, cache=False)
    batches = list(ds.as_numpy_iterator())
    return np.concatenate(batches) if batches else np.zeros((0, image_size, image_size, channels), np.uint8)
