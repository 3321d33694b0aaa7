"""Decoding images for training and prediction, as fast as the machine allows, to exactly the pixels of kit's one
loader (kit.images.read_image): plain JPEGs and PNGs (kit.headers.plain_image) in TensorFlow's own decoders, which
never hold Python's GIL; every other file through read_image, on tf.data's threads or, for many small images, in
one process per core. kit.pipeline builds datasets on top of decoded_images."""

from __future__ import annotations

import numpy as np

from . import images  # by module: what the processes import
from .images import (
    PROCESSES_FROM,
    draft_ratios,
    read_image,
    read_images,
    resize_pixels,
)
from .quiet import tensorflow as tf

AUTOTUNE = tf.data.AUTOTUNE
DECODE_CHUNK = 32  # files per call: one call per image costs more than decoding a small PNG
# Pillow holds the GIL for the Python-level work around each image (about 0.1 ms), and releases it only while
# it decodes and resizes pixels. Small images are nearly all such work, so threads leave the second core idle
# (28-px PNGs on 2 cores: 2,300 images/s on threads, below a plain loop's 6,000; 9,800 on two processes), and
# kit decodes many of them in one process per core. Large images are more GIL-free pixel work, and moving
# their pixels from other processes cost more than it saved (224-px photos: 1,470 images/s on threads, 730 on
# processes piping the pixels back, 1,180 writing them to shared memory), so they stay on tf.data's threads,
# except plain JPEGs and PNGs, which skip Pillow altogether (_decoded_images).
# Numbers: `python benchmarks/pipeline.py`, this module's history in git.
PROCESS_MAX_IMAGE_BYTES = 32 << 10  # decoded bytes per image (64×64 RGB is 12 KB, 224×224 RGB 147 KB)
# Files in TensorFlow's decoders at once: two per core, not AUTOTUNE. AUTOTUNE starts low and, over a first epoch of
# small images (under a second), often stays near one core's worth: 12,000 28-px PNGs on 2 cores decoded at
# 11,000-14,000 images/s under AUTOTUNE and 16,000-17,500 with 4 in flight (`benchmarks/pipeline.py --alternate`).
DECODE_CALLS = 2 * images.usable_cores()


def decoded_images(paths, image_size: int, channels: int, labels: np.ndarray | None = None) -> tf.data.Dataset:
    """Every image decoded to uint8 (image_size, image_size, channels), in the files' order, on every core; with
    labels (one per file), (image, label) pairs.

    Plain JPEGs and PNGs (kit.headers.plain_image: most competition images) decode in TensorFlow's own decoders,
    which give the very pixels kit's Pillow loader gives but never hold Python's GIL, so they keep every core
    busy (see the README's Performance table). Everything else goes through kit's one loader, read_image.
    A label rides along with its file through the decoding map: zipped on afterwards, the labels cost a sixth of
    a first epoch of 12,000 small PNGs (0.59 s decoding alone, 0.69 s with the zip, measured).
    """
    paths = [str(p) for p in paths]
    found = images.plain_files(paths, channels)
    plain = np.array([f is not None for f in found])
    if not plain.any():
        decoded = _decoded_chunks(paths, image_size, channels).unbatch()
        return with_labels(decoded.apply(tf.data.experimental.assert_cardinality(len(paths))), labels)
    is_png = np.array([f is not None and f[0] == "png" for f in found])
    height, width = np.array([f[1:] if f else (0, 0) for f in found]).T
    ratio = np.where(is_png, 1, draft_ratios(height, width, image_size))  # JPEGs at read_image's DCT scaling
    resize = plain & ((-(-height // ratio) != image_size) | (-(-width // ratio) != image_size))
    codec = np.where(is_png, CODECS.index("png"), np.log2(ratio).astype(np.int32))  # see CODECS
    decode_plain = _native_decoder(image_size, channels, set(codec[plain]), set(resize[plain]))
    if plain.all():
        return _decoded_rows((paths, codec, resize), decode_plain, labels)

    def load(path):
        return read_image(path.decode("utf-8"), image_size, channels)

    def decode(path, codec, resize, is_plain):
        return tf.cond(is_plain, lambda: decode_plain(path, codec, resize),
                       lambda: tf.ensure_shape(tf.numpy_function(load, [path], tf.uint8, stateful=False),
                                               (image_size, image_size, channels)))

    return _decoded_rows((paths, codec, resize, plain), decode, labels)


def _decoded_rows(columns: tuple, decode, labels: np.ndarray | None) -> tf.data.Dataset:
    """decode over the files' rows on every core; with labels, each row's label passed through beside it."""
    if labels is None:
        return tf.data.Dataset.from_tensor_slices(columns).map(decode, num_parallel_calls=DECODE_CALLS)
    return tf.data.Dataset.from_tensor_slices((*columns, labels)).map(lambda *row: (decode(*row[:-1]), row[-1]),
                                                                       num_parallel_calls=DECODE_CALLS)


def with_labels(images: tf.data.Dataset, labels: np.ndarray | None) -> tf.data.Dataset:
    """(image, label) pairs of a dataset of images in the files' order and the files' labels (None: images)."""
    return images if labels is None else tf.data.Dataset.zip((images, tf.data.Dataset.from_tensor_slices(labels)))


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
    if len(paths) >= PROCESSES_FROM and image_size * image_size * channels <= PROCESS_MAX_IMAGE_BYTES:
        pool, processes = images.process_pool()
    if pool is None:
        def load(chunk):
            return read_images([p.decode("utf-8") for p in chunk], image_size, channels)

        def in_threads(chunk):  # AUTOTUNE runs several chunks at once
            return tf.ensure_shape(tf.numpy_function(load, [chunk], tf.uint8, stateful=False), spec.shape)

        return tf.data.Dataset.from_tensor_slices(paths).batch(DECODE_CHUNK).map(in_threads,
                                                                                num_parallel_calls=AUTOTUNE)

    def in_processes():
        chunks = (paths[start:start + DECODE_CHUNK] for start in range(0, len(paths), DECODE_CHUNK))
        yield from images.in_order(pool, processes, images.read_images, chunks, image_size, channels)

    return tf.data.Dataset.from_generator(in_processes, output_signature=spec)
