"""The one image loader: every split, validation and single-image predict decode through here.

Pillow does the decoding because it handles what competition folders contain (EXIF rotation,
CMYK, palette transparency, 16-bit PNG, animated GIF) the same way everywhere. It releases the GIL
only while it decodes pixels, so kit.pipeline decodes large images on threads and many small ones in
processes (read_images, decoding_process_setup). Plain JPEGs (plain_jpeg_size) are the one exception:
TensorFlow's decoder, which never holds the GIL, gives exactly read_image's pixels for them (tested),
and kit.pipeline uses it.
"""

from __future__ import annotations

import os
import signal
import threading
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageFile, ImageOps

from .errors import ImageError

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


def resize_pixels(pixels: np.ndarray, image_size: int) -> np.ndarray:
    """read_image's resize, for pixels kit.pipeline decoded with TensorFlow's JPEG decoder: the same Pillow call."""
    channels = pixels.shape[-1]
    im = Image.fromarray(pixels[..., 0] if channels == 1 else pixels)
    return np.asarray(_resized(im, image_size), dtype=np.uint8).reshape(image_size, image_size, channels)


JPEG_EXTENSIONS = (".jpg", ".jpeg")
# Start-of-frame markers: Huffman-coded baseline, extended and progressive JPEGs (nearly all of them) are the ones
# plain_jpeg accepts; lossless, hierarchical and arithmetic-coded frames are left to Pillow.
HUFFMAN_FRAMES = (0xC0, 0xC1, 0xC2)
OTHER_FRAMES = (0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF)


def plain_jpeg_size(path: str) -> tuple[int, int] | None:
    """(height, width) of a JPEG that TensorFlow's decoder turns into exactly read_image's pixels; None otherwise.

    Both decode with libjpeg-turbo: with the same DCT method and scaling they agree to the bit (tested), but
    TensorFlow knows nothing of EXIF or XMP orientation (APP1), Adobe colour transforms (APP14, CMYK) or Pillow's
    decompression-bomb guard. So "plain" means: an 8-bit Huffman-coded JPEG in gray or YCbCr, no APP1 or APP14
    segment, no more pixels than Pillow allows. Reads only the segment headers before the frame (os.read: a
    Python file object would cost twice as much), and anything unexpected answers None, which is always safe:
    the file then goes through read_image.
    """
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        block, base, at = os.read(fd, 4096), 0, 2  # block holds the file's bytes from offset base
        if block[:2] != b"\xff\xd8":
            return None
        while True:
            if at + 10 > base + len(block):  # a frame header is 10 bytes: read on from this segment
                block, base = os.pread(fd, 4096, at), at
                if len(block) < 10:
                    return None
            i = at - base
            marker, length = block[i + 1], int.from_bytes(block[i + 2:i + 4], "big")
            if block[i] != 0xFF or marker in (0xE1, 0xEE, 0xDA) or marker in OTHER_FRAMES or length < 2:
                return None
            if marker in HUFFMAN_FRAMES:  # precision, height, width, components
                height, width = int.from_bytes(block[i + 5:i + 7], "big"), int.from_bytes(block[i + 7:i + 9], "big")
                plain = (block[i + 4] == 8 and block[i + 9] in (1, 3) and height > 0 and width > 0
                         and height * width <= (Image.MAX_IMAGE_PIXELS or height * width))
                return (height, width) if plain else None
            at += 2 + length
    except OSError:
        return None
    finally:
        os.close(fd)


def read_images(paths, image_size: int, channels: int) -> np.ndarray:
    """read_image over a chunk of files, stacked: one call (and, in a decoding process, one message) per chunk."""
    return np.stack([read_image(p, image_size, channels) for p in paths])


def decoding_process_setup(parent_pid: int) -> None:
    """In a decoding process (see kit.pipeline): Ctrl-C is the parent's to handle, and the process exits as soon
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


# Which Pillow formats each file extension may hold without comment.
FORMAT_OF_EXTENSION = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".bmp": "BMP", ".gif": "GIF",
                       ".webp": "WEBP", ".tif": "TIFF", ".tiff": "TIFF"}


def inspect_image(path) -> ImageInfo:
    """Fully decode one image (to catch truncation) and describe it."""
    path = Path(path)
    im = _open(path)
    try:
        with im:
            im.load()
            orientation = im.getexif().get(0x0112, 1) if hasattr(im, "getexif") else 1
            return ImageInfo(im.size[0], im.size[1], im.mode, im.format or "", getattr(im, "n_frames", 1),
                             im.mode in ("RGBA", "LA", "PA") or "transparency" in im.info, orientation not in (1, 0))
    except Exception as e:
        raise ImageError(f"{path}: not a readable image ({_reason(e)})") from None
