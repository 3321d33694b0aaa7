"""tf.data input pipeline: parallel decode → uint8 → cache → shuffle → batch → augment (train only) → prefetch."""

from __future__ import annotations

import numpy as np
import tensorflow as tf
import keras

from .images import read_image

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


def _loader(image_size: int, channels: int):
    def load(path):
        return read_image(path.decode("utf-8"), image_size, channels)

    def tf_load(path):
        image = tf.numpy_function(load, [path], tf.uint8, stateful=False)
        return tf.ensure_shape(image, (image_size, image_size, channels))

    return tf_load


def make_dataset(paths, labels=None, *, image_size: int, channels: int, batch_size: int, training: bool = False,
                 seed: int = 0, augment: str = "none", cache: bool = True) -> tf.data.Dataset:
    """Batches of (uint8 images, int labels) — or images alone when labels is None — in a stable order.

    Training data is decoded once (cached), reshuffled every epoch from the seed, and augmented per batch.
    """
    paths = tf.constant([str(p) for p in paths])
    ds = tf.data.Dataset.from_tensor_slices(paths).map(_loader(image_size, channels), num_parallel_calls=AUTOTUNE)
    if labels is not None:
        ds = tf.data.Dataset.zip((ds, tf.data.Dataset.from_tensor_slices(np.asarray(labels, dtype=np.int32))))
    if cache:
        ds = ds.cache()
    if training:
        ds = ds.shuffle(min(len(paths), 20_000), seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size)
    if training:
        ds = augment_batches(ds, augment, seed)
    return ds.prefetch(AUTOTUNE)


def make_balanced_dataset(paths, labels, *, image_size: int, channels: int, batch_size: int, seed: int = 0,
                          augment: str = "none") -> tf.data.Dataset:
    """An endless training stream drawing every class equally often (re-sampled per class), augmented per batch.

    Used with steps_per_epoch, so an "epoch" still means as many images as the training split holds.
    """
    labels = np.asarray(labels, dtype=np.int32)
    paths = np.asarray([str(p) for p in paths])
    load = _loader(image_size, channels)
    streams = []
    for k, c in enumerate(np.unique(labels)):
        chosen = paths[labels == c]
        ds = tf.data.Dataset.from_tensor_slices((chosen, np.full(len(chosen), c, np.int32)))
        ds = ds.map(lambda p, y: (load(p), y), num_parallel_calls=AUTOTUNE).cache()
        streams.append(ds.shuffle(len(chosen), seed=seed + k, reshuffle_each_iteration=True).repeat())
    ds = tf.data.Dataset.sample_from_datasets(streams, weights=[1.0 / len(streams)] * len(streams), seed=seed)
    return augment_batches(ds.batch(batch_size), augment, seed).prefetch(AUTOTUNE)


def augment_batches(ds: tf.data.Dataset, level: str, seed: int) -> tf.data.Dataset:
    """Apply the augmentation of `level` to whole uint8 batches of (images, labels); uint8 stays uint8."""
    augmenter = make_augmenter(level, seed)
    if augmenter is None:
        return ds

    def apply(images, labels):
        out = augmenter(tf.cast(images, tf.float32), training=True)
        return tf.cast(tf.clip_by_value(tf.round(out), 0, 255), tf.uint8), labels

    return ds.map(apply, num_parallel_calls=AUTOTUNE)


def load_images(paths, image_size: int, channels: int, batch_size: int = 256) -> np.ndarray:
    """Decode a list of files into one uint8 array (for small sets: reports, single predictions)."""
    ds = make_dataset(paths, image_size=image_size, channels=channels, batch_size=batch_size, cache=False)
    batches = list(ds.as_numpy_iterator())
    return np.concatenate(batches) if batches else np.zeros((0, image_size, image_size, channels), np.uint8)
