"""What a file's headers say, without decoding it: whether TensorFlow's decoder turns it into exactly the pixels of
kit's loader (plain_image, used by kit.decode for training and by validation), and whether a PNG is damaged in a
way libpng refuses (png_damage). No TensorFlow here: validation uses it too."""

from __future__ import annotations

import os
import zlib

from PIL import Image

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
