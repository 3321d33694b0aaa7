"""tf.data input pipeline: parallel decode → uint8 → cache → shuffle → batch → augment (train only) → prefetch."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from .quiet import keras, tensorflow as tf

from .images import plain_image, read_image, read_images, resize_pixels

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


DECODE_CHUNK = 32  # files per call: one call per image costs more than decoding a small PNG
# Pillow holds the GIL for the Python-level work around each image (about 0.1 ms), and releases it only while
# it decodes and resizes pixels. Small images are nearly all such work, so threads leave the second core idle
# (28-px PNGs on 2 cores: 2,300 images/s on threads, below a plain loop's 6,000; 9,800 on two processes), and
# kit decodes many of them in one process per core. Large images are more GIL-free pixel work, and moving
# their pixels from other processes cost more than it saved (224-px photos: 1,470 images/s on threads, 730 on
# processes piping the pixels back, 1,180 writing them to shared memory), so they stay on tf.data's threads,
# except plain JPEGs and PNGs, which skip Pillow altogether (_decoded_images).
# Numbers: `python benchmarks/pipeline.py`, this module's history in git.
PROCESSES_FROM = 2_000  # images: starting the processes (0.3 s) must pay off
PROCESS_MAX_IMAGE_BYTES = 32 << 10  # decoded bytes per image (64×64 RGB is 12 KB, 224×224 RGB 147 KB)
_decoding_pool = None


def _decoded_images(paths, image_size: int, channels: int) -> tf.data.Dataset:
    """Every image decoded to uint8 (image_size, image_size, channels), in the files' order, on every core.

    Plain JPEGs and PNGs (kit.images.plain_image: most competition images) decode in TensorFlow's own decoders,
    which give the very pixels kit's Pillow loader gives but never hold Python's GIL, so they keep every core
    busy (see the README's Performance table). Everything else goes through kit's one loader, read_image.
    """
    paths = [str(p) for p in paths]
    found = [plain_image(p, channels) for p in paths]
    plain = np.array([f is not None for f in found])
    if not plain.any():
        return _decoded_chunks(paths, image_size, channels).unbatch()
    is_png = np.array([f is not None and f[0] == "png" for f in found])
    height, width = np.array([f[1:] if f else (0, 0) for f in found]).T
    # Pillow's draft() (in read_image) decodes a JPEG at the largest of 1/2, 1/4, 1/8 that keeps both sides at
    # least image_size, then resizes what is still not image_size; the same choice, made here for each file.
    scale = np.where(is_png, 1, np.minimum(height // image_size, width // image_size))
    ratio = np.select([scale >= 8, scale >= 4, scale >= 2], [8, 4, 2], 1)
    resize = plain & ((-(-height // ratio) != image_size) | (-(-width // ratio) != image_size))
    codec = np.where(is_png, CODECS.index("png"), np.log2(ratio).astype(np.int32))  # see CODECS
    decode_plain = _native_decoder(image_size, channels, set(codec[plain]), set(resize[plain]))
    if plain.all():
        ds = tf.data.Dataset.from_tensor_slices((paths, codec, resize))
        return ds.map(decode_plain, num_parallel_calls=AUTOTUNE)

    def load(path):
        return read_image(path.decode("utf-8"), image_size, channels)

    def decode(path, codec, resize, is_plain):
        return tf.cond(is_plain, lambda: decode_plain(path, codec, resize),
                       lambda: tf.ensure_shape(tf.numpy_function(load, [path], tf.uint8, stateful=False),
                                               (image_size, image_size, channels)))

    ds = tf.data.Dataset.from_tensor_slices((paths, codec, resize, plain))
    return ds.map(decode, num_parallel_calls=AUTOTUNE)


CODECS = ("jpeg", "jpeg/2", "jpeg/4", "jpeg/8", "png")  # how TensorFlow decodes a plain file: JPEGs at a scaling


def _native_decoder(image_size: int, channels: int, codecs: set, resizes: set):
    """(path, codec, resize) → read_image's pixels of a plain file, with TensorFlow's decoders: for JPEGs libjpeg's
    accurate integer DCT (what Pillow uses) at the scaling Pillow's draft() picks; then, where `resize`,
    read_image's own Pillow resize. Branches only on what varies between the files: control flow in a tf.data
    function costs time on every image."""
    def decoding(codec: int):
        if CODECS[codec] == "png":
            return lambda data: tf.io.decode_png(data, channels=channels)
        return lambda data: tf.io.decode_jpeg(data, channels=channels, ratio=2 ** codec, dct_method="INTEGER_ACCURATE")

    def pillow_resize(pixels):
        return tf.numpy_function(lambda p: resize_pixels(p, image_size), [pixels], tf.uint8, stateful=False)

    def decode(path, codec, resize):
        data = tf.io.read_file(path)
        if len(codecs) == 1:
            pixels = decoding(int(next(iter(codecs))))(data)
        else:
            pixels = tf.switch_case(codec, [lambda c=c: decoding(c)(data) for c in range(len(CODECS))])
        if resizes == {True}:
            pixels = pillow_resize(pixels)
        elif len(resizes) == 2:
            pixels = tf.cond(resize, lambda: pillow_resize(pixels), lambda: pixels)
        return tf.ensure_shape(pixels, (image_size, image_size, channels))

    return decode


def _decoded_chunks(paths, image_size: int, channels: int) -> tf.data.Dataset:
    """Chunks of images decoded by kit's one loader (Pillow) in the files' order, on every core."""
    spec = tf.TensorSpec((None, image_size, image_size, channels), tf.uint8)
    pool, processes = (None, 1)
    if len(paths) >= PROCESSES_FROM and cache_bytes(1, image_size, channels) <= PROCESS_MAX_IMAGE_BYTES:
        pool, processes = _decoding_processes()
    if pool is None:
        def load(chunk):
            return read_images([p.decode("utf-8") for p in chunk], image_size, channels)

        def in_threads(chunk):  # AUTOTUNE runs several chunks at once
            return tf.ensure_shape(tf.numpy_function(load, [chunk], tf.uint8, stateful=False), spec.shape)

        return tf.data.Dataset.from_tensor_slices(paths).batch(DECODE_CHUNK).map(in_threads,
                                                                                num_parallel_calls=AUTOTUNE)

    def in_processes():  # a few chunks in flight per process: memory stays bounded
        from collections import deque

        from . import images  # by module: what the processes import

        pending = deque()
        for start in range(0, len(paths), DECODE_CHUNK):
            pending.append(pool.submit(images.read_images, paths[start:start + DECODE_CHUNK], image_size, channels))
            if len(pending) > 4 * processes:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()

    return tf.data.Dataset.from_generator(in_processes, output_signature=spec)


def _decoding_processes():
    """(pool, size): one decoding process per usable core, started once and kept; (None, 1) on one core.

    Spawned processes import only kit.images (no TensorFlow). multiprocessing would also re-run the caller's
    main script in each of them, which breaks a script without an `if __name__ == "__main__":` guard (or one
    read from stdin); kit hides the script from them while they start, as they never need it.
    """
    global _decoding_pool
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    if cores < 2:
        return None, 1
    if _decoding_pool is None:
        import multiprocessing
        import sys
        import time
        from concurrent.futures import ProcessPoolExecutor

        from .images import decoding_process_setup

        pool = ProcessPoolExecutor(cores, mp_context=multiprocessing.get_context("spawn"),
                                   initializer=decoding_process_setup, initargs=(os.getpid(),))
        main = sys.modules["__main__"]
        hidden = {name: main.__dict__.pop(name) for name in ("__file__", "__spec__") if name in main.__dict__}
        main.__spec__ = None  # multiprocessing reads it unguarded
        try:  # each submit starts one more process while none is idle yet, so `cores` submits start them all
            first_tasks = [pool.submit(time.sleep, 0) for _ in range(cores)]
        finally:
            del main.__spec__
            main.__dict__.update(hidden)
        for task in first_tasks:
            task.result()
        _decoding_pool = pool
    return _decoding_pool, cores


SHUFFLE_BUFFER_BYTES = 256 << 20  # decoded images held for shuffling: all of a small set, ~1,700 at 224 px RGB


def make_dataset(paths, labels=None, *, image_size: int, channels: int, batch_size: int, cache: bool | str = True
                 ) -> tf.data.Dataset:
    """Batches of (uint8 images, int labels) — or images alone when labels is None — in the files' order.

    cache: True keeps the decoded images in memory, a string is a file prefix for an on-disk cache (see
    disk_cache), False decodes on every pass.
    """
    return _decoded(paths, labels, image_size, channels, cache).batch(batch_size).prefetch(AUTOTUNE)


def disk_cache(paths, image_size: int, channels: int, cache_dir: str = "", name: str = "train") -> str:
    """A file prefix for kit's on-disk cache in cache_dir (default: a temporary folder removed at exit).

    The cache is one raw file, PREFIX.u8, of the decoded uint8 images in the files' order (see _decoded). Not
    tf.data's cache(filename): that holds the whole dataset in memory while it writes (tensorflow#50579). The
    prefix is keyed by the file list, its order and the image shape, so a --cache-dir is reused by every run
    on the same images. A cache left half-written by a killed process is deleted, never read.
    """
    import hashlib

    folder = Path(cache_dir or _temporary_cache_dir())
    folder.mkdir(parents=True, exist_ok=True)
    key = hashlib.sha256(("\n".join(map(str, paths)) + f"\n{image_size}x{channels}").encode()).hexdigest()[:16]
    prefix = folder / f"kit-{name}-{image_size}x{channels}-{key}"
    if not Path(f"{prefix}.u8").exists():  # never finished: drop what a killed writer left
        for stale in folder.glob(f".{prefix.name}*.tmp"):
            stale.unlink()
    return str(prefix)


def _temporary_cache_dir() -> str:
    import atexit
    import shutil
    import tempfile

    folder = tempfile.mkdtemp(prefix="kit-cache-")
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    return folder


def cache_bytes(n_images: int, image_size: int, channels: int) -> int:
    return n_images * image_size * image_size * channels


def _decoded(paths, labels, image_size: int, channels: int, cache: bool | str) -> tf.data.Dataset:
    """The decoded images (with their labels) in the files' order, decoded once when cached."""
    count = len(paths)
    if isinstance(cache, str):
        images = _read_disk_cache(_write_disk_cache(cache, paths, image_size, channels), count, image_size,
                                  channels).unbatch()
    else:
        images = _decoded_images(paths, image_size, channels)
    ds = images.apply(tf.data.experimental.assert_cardinality(count))  # unbatch() forgets it, map() may not know it
    if labels is not None:
        ds = tf.data.Dataset.zip((ds, tf.data.Dataset.from_tensor_slices(np.asarray(labels, dtype=np.int32))))
    return ds.cache() if cache is True else ds


def _write_disk_cache(prefix: str, paths, image_size: int, channels: int) -> str:
    """Decode every image once, in order, into PREFIX.u8 (written atomically) unless it is already there."""
    from .runs import atomic_write

    path = f"{prefix}.u8"
    if not Path(path).exists():
        with atomic_write(path, "wb") as f:
            for chunk in _decoded_images(paths, image_size, channels).batch(DECODE_CHUNK).as_numpy_iterator():
                f.write(chunk.tobytes())
    return path


def _read_disk_cache(path: str, count: int, image_size: int, channels: int) -> tf.data.Dataset:
    """Chunks of images read back from a raw cache file with plain reads (page cache, not process memory)."""
    image_bytes = image_size * image_size * channels
    if Path(path).stat().st_size != count * image_bytes:
        from .errors import DataError

        raise DataError(f"{path}: holds {Path(path).stat().st_size} bytes, not {count} images of {image_bytes}; "
                        "delete it")

    def read(start):
        n = min(DECODE_CHUNK, count - int(start))
        with open(path, "rb") as f:
            data = os.pread(f.fileno(), n * image_bytes, int(start) * image_bytes)
        return np.frombuffer(data, np.uint8).reshape(n, image_size, image_size, channels)

    def tf_read(start):
        images = tf.numpy_function(read, [start], tf.uint8, stateful=False)
        return tf.ensure_shape(images, (None, image_size, image_size, channels))

    return tf.data.Dataset.range(0, count, DECODE_CHUNK).map(tf_read, num_parallel_calls=AUTOTUNE)


def make_training_stream(paths, labels, *, image_size: int, channels: int, batch_size: int, seed: int,
                         augment: str, epochs: int, first_epoch: int = 0, skip_batches: int = 0,
                         cache: bool | str = True) -> tf.data.Dataset:
    """The training batches of epochs first_epoch..epochs-1 as one finite stream (fit it with steps_per_epoch).

    Images are decoded once (cached in memory, or on disk when `cache` is a file prefix). Each epoch's order
    is a shuffle seeded by (seed, epoch) and each batch's augmentation is seeded by its index in the whole run,
    so a run resumed at any epoch and batch (skip_batches into first_epoch) sees exactly the batches an
    uninterrupted run would. The shuffle buffer is bounded in bytes: give the files in a random order (as
    training does) so that a buffer smaller than the set still mixes classes that are sorted on disk.
    """
    base = _decoded(paths, labels, image_size, channels, cache=cache)
    buffer = max(1, min(len(paths), SHUFFLE_BUFFER_BYTES // cache_bytes(1, image_size, channels)))
    ds = shuffled_epochs(base, buffer, batch_size=batch_size, seed=seed, epochs=epochs, first_epoch=first_epoch,
                         skip_batches=skip_batches)
    steps = -(-len(paths) // batch_size)
    return augment_batches(ds, augment, seed, first_batch=first_epoch * steps + skip_batches).prefetch(AUTOTUNE)


def make_array_stream(x: np.ndarray, y: np.ndarray, *, batch_size: int, seed: int, epochs: int, first_epoch: int = 0,
                      skip_batches: int = 0) -> tf.data.Dataset:
    """make_training_stream for arrays already in memory (cached backbone features): same per-epoch seeding."""
    base = tf.data.Dataset.from_tensor_slices((x, y))
    return shuffled_epochs(base, len(x), batch_size=batch_size, seed=seed, epochs=epochs, first_epoch=first_epoch,
                           skip_batches=skip_batches).prefetch(AUTOTUNE)


def shuffled_epochs(base: tf.data.Dataset, buffer: int, *, batch_size: int, seed: int, epochs: int,
                    first_epoch: int = 0, skip_batches: int = 0) -> tf.data.Dataset:
    """Batches of epochs first_epoch..epochs-1 of `base`, each epoch shuffled by (seed, epoch) alone."""
    def epoch(e: int) -> tf.data.Dataset:  # a Python seed per epoch: shuffle() rejects tensor seeds under a global seed
        return base.shuffle(buffer, seed=seed * 100_003 + e, reshuffle_each_iteration=False).batch(batch_size)

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
        ds = _decoded(chosen, np.full(len(chosen), c, np.int32), image_size, channels, cache=True)
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
