"""The one image loader: every split, validation and single-image predict decode through here.

Pillow does the decoding because it handles what competition folders contain (EXIF rotation,
CMYK, palette transparency, 16-bit PNG, animated GIF) the same way everywhere. It releases the GIL
only while it decodes pixels, so kit.pipeline decodes large images on threads and many small ones in
processes (read_images, decoding_process_setup). Plain JPEGs and PNGs (plain_image) are the exception:
TensorFlow's decoders, which never hold the GIL, give exactly read_image's pixels for them (tested),
and kit.pipeline uses them.
"""

from __future__ import annotations

import os
import signal
import stat
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


def resize_pixels(pixels: np.ndarray, image_size: int) -> np.ndarray:
    """read_image's resize, for pixels kit.pipeline decoded with TensorFlow's decoders: the same Pillow call."""
    channels = pixels.shape[-1]
    im = Image.fromarray(pixels[..., 0] if channels == 1 else pixels)
    return np.asarray(_resized(im, image_size), dtype=np.uint8).reshape(image_size, image_size, channels)


# Start-of-frame markers: Huffman-coded baseline, extended and progressive JPEGs (nearly all of them) can be plain;
# lossless, hierarchical and arithmetic-coded frames are left to Pillow.
HUFFMAN_FRAMES = (0xC0, 0xC1, 0xC2)
OTHER_FRAMES = (0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF)
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# PNG chunks that change what read_image returns: transparency (composited on white), EXIF (orientation), animation.
PNG_CHUNKS_FOR_PILLOW = (b"tRNS", b"eXIf", b"acTL")
# Text chunks whose keyword Pillow reads an orientation from (ORIENTATION_SOURCES); other text is only text.
PNG_ORIENTATION_TEXT = (b"Raw profile type exif\0", b"XML:com.adobe.xmp\0")


def plain_image(path: str, channels: int) -> tuple[str, int, int] | None:
    """("jpeg" or "png", height, width) when TensorFlow's decoder turns this file into exactly read_image's pixels
    (kit.pipeline then uses it); None otherwise, which is always safe: the file goes through read_image.

    JPEG: both decode with libjpeg-turbo, and with the same DCT method and scaling they agree to the bit (tested),
    but TensorFlow knows nothing of EXIF or XMP orientation (APP1) or Adobe colour transforms (APP14, CMYK); so an
    8-bit Huffman-coded JPEG in gray or YCbCr, upright (EXIF orientation absent or 1, no XMP), without APP14.
    PNG is lossless, so any decoder agrees: an 8-bit gray or RGB PNG (RGB only for 3 channels: Pillow's gray
    conversion is its own) with no transparency, EXIF, orientation text or animation. Either way no more pixels
    than Pillow's bomb guard allows. Reads only segment and chunk headers, with os.read (a Python file object
    costs twice as much).
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)  # a FIFO must not block: it fails below, harmlessly
    except OSError:
        return None
    try:
        head = _Bytes(fd)
        if head.at(0, 8) == PNG_SIGNATURE:
            kind, size = "png", _plain_png_size(head, channels)
        elif head.at(0, 2) == b"\xff\xd8":
            kind, size = "jpeg", _plain_jpeg_size(head)
        else:
            return None
        if size is None or not 0 < size[0] * size[1] <= (Image.MAX_IMAGE_PIXELS or size[0] * size[1]):
            return None
        return kind, *size
    except OSError:
        return None
    finally:
        os.close(fd)


class _Bytes:
    """Bytes of an open file by offset, read 4 KB at a time: headers are small and mostly at the start."""

    def __init__(self, fd: int):
        self.fd, self.block, self.base, self.to_the_end = fd, b"", 0, False

    def at(self, offset: int, n: int) -> bytes:
        end = self.base + len(self.block)
        if not (self.base <= offset and (offset + n <= end or self.to_the_end)):
            size = max(n, 4096)
            self.block, self.base = os.pread(self.fd, size, offset), offset
            self.to_the_end = len(self.block) < size
        return self.block[offset - self.base:offset - self.base + n]


def _plain_jpeg_size(head: _Bytes) -> tuple[int, int] | None:
    at, size = 2, None
    while True:  # every segment up to the pixels: Pillow reads an APP1 segment even after the frame header
        segment = head.at(at, 10)  # marker, length and (for a frame) precision, height, width, components
        if len(segment) < 10 or segment[0] != 0xFF:
            return None
        marker, length = segment[1], int.from_bytes(segment[2:4], "big")
        if marker == 0xDA:  # start of scan: the pixels follow
            return size
        if marker == 0xEE or marker in OTHER_FRAMES or length < 2:
            return None
        if marker == 0xE1 and not _upright_app1(head.at(at + 4, length - 2)):
            return None
        if marker in HUFFMAN_FRAMES:
            if size is not None or segment[4] != 8 or segment[9] not in (1, 3):
                return None
            size = int.from_bytes(segment[5:7], "big"), int.from_bytes(segment[7:9], "big")
        at += 2 + length


def _upright_app1(payload: bytes) -> bool:
    """Whether an APP1 segment leaves read_image's exif_transpose nothing to do: EXIF whose first directory has no
    orientation or orientation 1 (camera photos nearly always carry EXIF). XMP may hold an orientation: no."""
    if payload.startswith(b"http://ns.adobe.com/xap/1.0/\0"):
        return False
    if not payload.startswith(b"Exif\0\0"):
        return True  # Pillow ignores other APP1 payloads
    tiff = payload[6:]
    order = {b"II": "little", b"MM": "big"}.get(tiff[:2])
    if order is None or len(tiff) < 8:
        return False
    directory = int.from_bytes(tiff[4:8], order)
    entries = int.from_bytes(tiff[directory:directory + 2], order)
    if len(tiff) < directory + 2 + 12 * entries:
        return False
    for k in range(entries):  # 12 bytes each: tag, type, count, value
        entry = tiff[directory + 2 + 12 * k:directory + 14 + 12 * k]
        if int.from_bytes(entry[:2], order) == 0x0112:  # orientation: one SHORT, 1 meaning upright
            one_short = entry[2:8] == (3).to_bytes(2, order) + (1).to_bytes(4, order)
            return one_short and int.from_bytes(entry[8:10], order) == 1
    return True


def _plain_png_size(head: _Bytes, channels: int) -> tuple[int, int] | None:
    header = head.at(8, 25)  # IHDR: length, type, width, height, bit depth, colour type, …
    if len(header) < 25 or header[4:8] != b"IHDR" or header[16] != 8 or header[17] not in (0, 2):
        return None
    if header[17] == 2 and channels == 1:
        return None
    size = int.from_bytes(header[12:16], "big"), int.from_bytes(header[8:12], "big")  # (height, width)
    if head.to_the_end and head.base == 0 and head.block[-8:-4] == b"IEND":  # the whole file is in hand: look for
        # the chunks by name, at C speed
        unwanted = PNG_CHUNKS_FOR_PILLOW + PNG_ORIENTATION_TEXT  # (a false alarm in the pixels costs only time)
        return None if any(name in head.block for name in unwanted) else size
    at = 8
    while True:  # every chunk up to IEND: an EXIF chunk may follow the pixels
        chunk = head.at(at, 8 + 23)  # length, type, and enough of a text chunk's keyword
        if len(chunk) < 12:
            return None
        kind = chunk[4:8]
        if kind in PNG_CHUNKS_FOR_PILLOW or (kind in (b"tEXt", b"zTXt", b"iTXt")
                                             and chunk[8:].startswith(PNG_ORIENTATION_TEXT)):
            return None
        if kind == b"IEND":
            return size
        at += 12 + int.from_bytes(chunk[:4], "big")


def png_damage(data: bytes) -> str | None:
    """Where a PNG's bytes are damaged in a way libpng (TensorFlow's PNG decoder) refuses but Pillow may not notice:
    a chunk whose CRC does not match, or a file cut inside a chunk; None when every chunk is whole."""
    import zlib

    at = 8
    while at + 12 <= len(data):
        length = int.from_bytes(data[at:at + 4], "big")
        kind = data[at + 4:at + 8]
        end = at + 8 + length
        if end + 4 > len(data):
            return f"the file ends inside its {kind.decode('latin-1')} chunk"
        if zlib.crc32(data[at + 4:end]) != int.from_bytes(data[end:end + 4], "big"):
            return f"CRC error in its {kind.decode('latin-1')} chunk (corrupt bytes)"
        if kind == b"IEND":
            return None
        at = end + 4
    return "no IEND chunk (the file is cut short)"


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
