"""The one image loader: every split, validation and single-image predict decode through here.

Pillow does the decoding because it handles what competition folders contain (EXIF rotation,
CMYK, palette transparency, 16-bit PNG, animated GIF) the same way everywhere. It releases the GIL
only while it decodes pixels, so kit.decode runs it on threads for large images and in processes for many
small ones (read_images, decoding_process_setup). Plain JPEGs and PNGs (kit.headers.plain_image) are the
exception: TensorFlow's decoders, which never hold the GIL, give exactly read_image's pixels for them (tested),
and kit.decode uses them.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import signal
import stat
import sys
import threading
import time
import warnings
from collections import deque
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageFile, ImageOps

from .errors import ImageError
from .hashes import image_signature
from .headers import PNG_SIGNATURE, plain_image, png_damage

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")

# Transparent pixels are composited on white: most competition images with alpha are
# product cut-outs or scanned marks on a white page.
BACKGROUND = (255, 255, 255)

# Pillow's decompression-bomb guard stays on; we only make it an error instead of a warning.
ImageFile.LOAD_TRUNCATED_IMAGES = False


def is_image_name(name: str) -> bool:
    return name.lower().endswith(IMAGE_EXTENSIONS)


def _sniff(path: str | Path) -> str | None:
    """A clearer reason than Pillow's for the commonest non-images: empty files and saved web pages."""
    try:
        with open(path, "rb") as f:
            head = f.read(64)
    except OSError:
        return None
    if not head:
        return "empty file (0 bytes)"
    if head.lstrip().lower().startswith((b"<!doctype html", b"<html", b"<?xml", b"<head", b"<body")):
        return "HTML/XML text, not an image (a web page saved with an image name?)"
    return None


# warnings.catch_warnings swaps a process-wide filter list: two threads inside it at once (kit validate
# opens images on a thread pool) can restore each other's filters and let a decompression bomb through
# as a mere warning. Opening reads only the header, so holding a lock around it costs little.
_OPEN_LOCK = threading.Lock()


def _open(path: str | Path) -> Image.Image:
    try:
        mode = os.stat(path).st_mode
    except OSError:
        mode = None  # Pillow's open below says what is wrong, in the usual words
    if mode is not None and not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):  # opening a FIFO would wait forever
        raise ImageError(f"{path}: not a regular file (a FIFO, socket or device), so not an image")
    try:
        with _OPEN_LOCK, warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im = Image.open(path)
            im.seek(0)  # animated GIF/WebP/TIFF: the first frame
            return im
    except FileNotFoundError:
        raise ImageError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise ImageError(f"{path}: is a directory, not an image") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise ImageError(f"{path}: image too large ({e}); resize it below {Image.MAX_IMAGE_PIXELS} pixels") from None
    except Exception as e:  # Pillow raises many types for bad bytes; all mean "not an image"
        raise ImageError(f"{path}: not a readable image ({_sniff(path) or _reason(e)})") from None


def _reason(e: Exception) -> str:
    text = str(e).splitlines()[0] if str(e) else type(e).__name__
    return text.replace(str(Path.cwd()) + "/", "")


def _to_mode(im: Image.Image, channels: int) -> Image.Image:
    """Convert any Pillow mode to L (channels=1) or RGB (channels=3), scaling 16-bit, compositing alpha."""
    if im.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        arr = np.asarray(im, dtype=np.float64)
        peak = 65535.0 if (im.mode.startswith("I;16") or arr.max(initial=0) > 255) else 255.0
        im = Image.fromarray(np.clip(arr * (255.0 / peak) + 0.5, 0, 255).astype(np.uint8), "L")
    if im.mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
    if im.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = im.convert("RGBA")
        canvas = Image.new("RGBA", rgba.size, BACKGROUND + (255,))
        im = Image.alpha_composite(canvas, rgba).convert("RGB")
    if channels == 1:
        return im if im.mode == "L" else im.convert("L")
    return im if im.mode == "RGB" else im.convert("RGB")


# Where Pillow's getexif() finds an orientation. Most images carry none, and skipping exif_transpose for them
# saves a third of the time a 28-px PNG takes to load.
ORIENTATION_SOURCES = ("exif", "Raw profile type exif", "XML:com.adobe.xmp", "xmp")


def read_image(path, image_size: int | None = None, channels: int = 3) -> np.ndarray:
    """Decode one image file to a uint8 array (H, W, channels), resized to image_size×image_size."""
    im = _open(path)  # str or Path alike; no Path() here: it costs as much as decoding a tiny PNG
    try:
        with im:
            if image_size and im.format == "JPEG":
                # DCT scaling: decode big JPEGs at 1/2, 1/4 or 1/8 size directly (much faster).
                im.draft("RGB" if channels == 3 else "L", (image_size, image_size))
            im.load()  # before looking at im.info: a PNG may keep its EXIF chunk after the pixels
            if hasattr(im, "tag_v2") or any(key in im.info for key in ORIENTATION_SOURCES):
                im = ImageOps.exif_transpose(im)
            arr = np.asarray(_resized(_to_mode(im, channels), image_size), dtype=np.uint8)
    except ImageError:
        raise
    except Exception as e:
        raise ImageError(f"{path}: not a readable image ({_reason(e)})") from None
    return arr.reshape(arr.shape[0], arr.shape[1], channels)


def _resized(im: Image.Image, image_size: int | None) -> Image.Image:
    if image_size and im.size != (image_size, image_size):
        im = im.resize((image_size, image_size), Image.BILINEAR, reducing_gap=3.0)
    return im


def draft_ratios(heights: np.ndarray, widths: np.ndarray, image_size: int) -> np.ndarray:
    """The DCT scaling read_image's draft() gives JPEGs of these sizes: Pillow decodes at the largest of 1/2, 1/4,
    1/8 that keeps both sides at least image_size (then resizes what is still not image_size). kit.decode asks
    TensorFlow's decoder for the same, so both give the same pixels; this is the one place the rule is written."""
    scale = np.minimum(heights // image_size, widths // image_size)
    return np.select([scale >= 8, scale >= 4, scale >= 2], [8, 4, 2], 1)


def resize_pixels(pixels: np.ndarray, image_size: int) -> np.ndarray:
    """read_image's resize, for pixels kit.pipeline decoded with TensorFlow's decoders: the same Pillow call."""
    channels = pixels.shape[-1]
    im = Image.fromarray(pixels[..., 0] if channels == 1 else pixels)
    return np.asarray(_resized(im, image_size), dtype=np.uint8).reshape(image_size, image_size, channels)


def read_images(paths, image_size: int, channels: int) -> np.ndarray:
    """read_image over a chunk of files, stacked: one call (and, in a decoding process, one message) per chunk."""
    return np.stack([read_image(p, image_size, channels) for p in paths])


PROCESSES_FROM = 2_000  # images: starting the processes (0.3 s) must pay off
_process_pool = None


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity, which a container or taskset narrows)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def process_pool():
    """(pool, size): one process per usable core for Pillow's work on many images (validating them, decoding small
    ones: Pillow holds the GIL, see kit.decode), started once and kept; (None, 1) on one core.

    Spawned processes import only this module (no TensorFlow, no pandas). multiprocessing would also re-run the
    caller's main script in each of them, which breaks a script without an `if __name__ == "__main__":` guard (or
    one read from stdin); kit hides the script from them while they start, as they never need it.
    """
    global _process_pool
    cores = usable_cores()
    if cores < 2:
        return None, 1
    if _process_pool is None:
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
        _process_pool = pool
    return _process_pool, cores


def in_order(pool, processes: int, work, chunks, *args):
    """work(chunk, *args) of each chunk in the process pool, yielded in the chunks' order, with a few chunks in
    flight per process: the processes stay busy and what waits in memory stays bounded."""
    pending = deque()
    for chunk in chunks:
        pending.append(pool.submit(work, chunk, *args))
        if len(pending) > 4 * processes:
            yield pending.popleft().result()
    while pending:
        yield pending.popleft().result()


def stop_process_pool() -> None:
    """Shut the processes down and wait for them (at exit: kit.cli.main)."""
    global _process_pool
    if _process_pool is not None:
        _process_pool.shutdown(wait=True, cancel_futures=True)
        _process_pool = None


def decoding_process_setup(parent_pid: int) -> None:
    """In a worker process (see process_pool): Ctrl-C is the parent's to handle, and the process exits as soon
    as its parent is gone, even killed with SIGKILL, instead of lingering."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)

    def exit_with_parent():
        while os.getppid() == parent_pid:
            time.sleep(0.5)
        os._exit(0)

    threading.Thread(target=exit_with_parent, daemon=True).start()


@dataclass
class ImageInfo:
    width: int
    height: int
    mode: str
    format: str
    frames: int
    transparent: bool
    rotated: bool  # has an EXIF orientation other than "normal"
    signature: bytes | None = None  # kit.hashes.image_signature: for near-duplicates, label and shift checks


# Which Pillow formats each file extension may hold without comment.
FORMAT_OF_EXTENSION = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".bmp": "BMP", ".gif": "GIF",
                       ".webp": "WEBP", ".tif": "TIFF", ".tiff": "TIFF"}


def inspect_image(path, signature: bool = False) -> ImageInfo:
    """Fully decode one image (to catch truncation) and describe it; with signature, also its perceptual signature
    (kit.hashes), made from the pixels decoded here rather than in a second decode."""
    path = Path(path)
    im = _open(path)
    try:
        with im:
            im.load()
            orientation = im.getexif().get(0x0112, 1) if hasattr(im, "getexif") else 1
            return ImageInfo(im.size[0], im.size[1], im.mode, im.format or "", getattr(im, "n_frames", 1),
                             im.mode in ("RGBA", "LA", "PA") or "transparency" in im.info, orientation not in (1, 0),
                             image_signature(im, os.path.getsize(path)) if signature else None)
    except Exception as e:
        raise ImageError(f"{path}: not a readable image ({_reason(e)})") from None


def check_image(path: str, signature: bool = False) -> tuple[ImageInfo, str, str | None]:
    """Decode one image as training will and describe it: (info, content hash, damage Pillow tolerates or None).

    Pillow decodes every file fully; a PNG with a bad chunk CRC that TensorFlow's decoder would get in training
    (kit.headers.plain_image) is an ImageError, as libpng refuses it."""
    info = inspect_image(path, signature)
    with open(path, "rb") as f:
        data = f.read()
    damage = png_damage(data) if data.startswith(PNG_SIGNATURE) else None
    if damage and plain_image(path, 3) is not None:
        raise ImageError(f"{path}: not a readable image ({damage}; TensorFlow's PNG decoder, which training uses "
                         "for this file, rejects it)")
    return info, hashlib.blake2b(data, digest_size=16).hexdigest(), damage


def checked_images(paths) -> list[tuple]:
    """check_image over a chunk of files (one message per chunk in a worker process): (path, info, hash, damage,
    None) for each image that reads (its info with its signature), (path, None, None, None, the error's message) for
    each that does not."""
    checked = []
    for path in paths:
        try:
            checked.append((path, *check_image(path, signature=True), None))
        except ImageError as e:
            checked.append((path, None, None, None, str(e)))
    return checked


def plain_files(paths: list[str], channels: int) -> list:
    """kit.headers.plain_image of every file, in order: many in one process per core (about 8 µs a file, nearly
    all of it Python holding the GIL; on 12,000 PNGs a seventh of the first epoch when done in one thread)."""
    pool, processes = process_pool() if len(paths) >= PROCESSES_FROM else (None, 1)
    if pool is None:
        return [plain_image(p, channels) for p in paths]
    size = -(-len(paths) // (4 * processes))  # a few chunks per process: one slow chunk does not hold the rest
    chunks = (paths[i:i + size] for i in range(0, len(paths), size))
    return [found for chunk in in_order(pool, processes, _plain_chunk, chunks, channels) for found in chunk]


def _plain_chunk(paths: list[str], channels: int) -> list:
    return [plain_image(p, channels) for p in paths]
