"""The one image loader: channel handling, sizes, and errors that name the file."""

import io

import numpy as np
import pytest
from PIL import Image

import kit.images
from kit.errors import ImageError
from kit.images import read_image


def test_gray_to_one_channel_and_resize(tmp_path):
    Image.fromarray(np.full((10, 20), 100, np.uint8)).save(tmp_path / "g.png")
    arr = read_image(tmp_path / "g.png", 8, channels=1)
    assert arr.shape == (8, 8, 1) and arr.dtype == np.uint8 and int(arr.mean()) == 100


def test_gray_to_rgb_repeats_the_value(tmp_path):
    Image.fromarray(np.full((4, 4), 77, np.uint8)).save(tmp_path / "g.png")
    arr = read_image(tmp_path / "g.png", channels=3)
    assert arr.shape == (4, 4, 3) and (arr == 77).all()


def test_rgba_is_composited_on_white(tmp_path):
    a = np.zeros((4, 4, 4), np.uint8)  # fully transparent black
    Image.fromarray(a, "RGBA").save(tmp_path / "t.png")
    assert (read_image(tmp_path / "t.png", channels=3) == 255).all()


def test_palette_with_transparency(tmp_path):
    im = Image.new("P", (4, 4), 0)
    im.putpalette([0, 0, 0, 10, 20, 30] + [0] * 762)
    im.info["transparency"] = 0
    im.save(tmp_path / "p.png", transparency=0)
    assert (read_image(tmp_path / "p.png", channels=3) == 255).all()


def test_16_bit_png_is_scaled_not_clipped(tmp_path):
    Image.fromarray(np.full((4, 4), 65535, np.uint16)).save(tmp_path / "d.png")
    Image.fromarray(np.full((4, 4), 32768, np.uint16)).save(tmp_path / "h.png")
    assert (read_image(tmp_path / "d.png", channels=1) == 255).all()
    assert (read_image(tmp_path / "h.png", channels=1) == 128).all()


@pytest.mark.parametrize("suffix", [".jpg", ".png", ".webp"])
def test_exif_orientation_is_applied(tmp_path, suffix):
    im = Image.new("L", (6, 2), 0)
    exif = im.getexif()
    exif[0x0112] = 6  # rotate 90° clockwise when displayed
    im.save(tmp_path / f"r{suffix}", exif=exif)
    assert read_image(tmp_path / f"r{suffix}", channels=1).shape == (6, 2, 1)
    im.save(tmp_path / f"plain{suffix}")
    assert read_image(str(tmp_path / f"plain{suffix}"), channels=1).shape == (2, 6, 1)


def test_xmp_orientation_is_applied(tmp_path):
    xmp = b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">' \
          b'<rdf:Description xmlns:tiff="http://ns.adobe.com/tiff/1.0/" tiff:Orientation="6"/></rdf:RDF></x:xmpmeta>'
    Image.new("L", (6, 2), 0).save(tmp_path / "x.jpg", xmp=xmp)
    assert read_image(tmp_path / "x.jpg", channels=1).shape == (6, 2, 1)


def test_cmyk_jpeg(tmp_path):
    Image.new("CMYK", (4, 4), (0, 0, 0, 0)).save(tmp_path / "c.jpg")
    arr = read_image(tmp_path / "c.jpg", channels=3)
    assert arr.shape == (4, 4, 3) and arr.min() > 240


def test_animated_gif_first_frame(tmp_path):
    frames = [Image.new("L", (4, 4), v) for v in (10, 200)]
    frames[0].save(tmp_path / "a.gif", save_all=True, append_images=frames[1:])
    assert abs(int(read_image(tmp_path / "a.gif", channels=1).mean()) - 10) <= 1


def test_large_jpeg_uses_reduced_decoding_with_same_result_shape(tmp_path):
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (800, 600, 3), dtype=np.uint8)).save(tmp_path / "big.jpg")
    assert read_image(tmp_path / "big.jpg", 64).shape == (64, 64, 3)


@pytest.mark.parametrize("content", [b"", b"<html></html>", b"\x89PNG\r\n\x1a\n" + b"\0" * 20])
def test_bad_bytes_raise_image_error_naming_file(tmp_path, content):
    (tmp_path / "bad.png").write_bytes(content)
    with pytest.raises(ImageError, match=r"bad.png: not a readable image"):
        read_image(tmp_path / "bad.png", 8)


def test_truncated_jpeg(tmp_path):
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(buf, "JPEG")
    (tmp_path / "t.jpg").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    with pytest.raises(ImageError, match=r"t.jpg: not a readable image"):
        read_image(tmp_path / "t.jpg")


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(ImageError, match="nope.png: file not found"):
        read_image(tmp_path / "nope.png")
    (tmp_path / "dir.png").mkdir()
    with pytest.raises(ImageError, match="dir.png: is a directory"):
        read_image(tmp_path / "dir.png")


def test_an_oversized_image_is_refused_while_other_threads_open_images(tmp_path, monkeypatch):
    """kit validate opens images on a thread pool; the bomb check must hold in every thread, every time."""
    from concurrent.futures import ThreadPoolExecutor

    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 200)  # 16×16 = 256: over the limit, under Pillow's 2× hard stop
    Image.new("L", (16, 16)).save(tmp_path / "big.png")
    Image.new("L", (8, 8)).save(tmp_path / "small.png")

    def open_one(i):
        if i % 2:
            read_image(tmp_path / "small.png")
            return True
        with pytest.raises(ImageError, match="image too large"):
            read_image(tmp_path / "big.png")
        return True

    with ThreadPoolExecutor(8) as pool:
        assert all(pool.map(open_one, range(4000)))


def _photo(height, width, seed=0):
    """A JPEG-like photo: smooth gradients plus noise, so DCT scaling and resizing have detail to work on."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([x * 255 // max(1, width - 1), y * 255 // max(1, height - 1), (x + y) % 256], axis=-1)
    return Image.fromarray(np.clip(base + rng.integers(-30, 30, base.shape), 0, 255).astype(np.uint8))


def _exif_segment(orientation: int | None, order: bytes = b"II") -> bytes:
    """An APP1 EXIF segment whose first directory holds one entry: an orientation, or a camera make."""
    endian = "little" if order == b"II" else "big"
    tag, kind, value = (0x0112, 3, orientation) if orientation else (0x010F, 2, 0x4B4954)  # a SHORT, or "KIT"
    entry = tag.to_bytes(2, endian) + kind.to_bytes(2, endian) + (1).to_bytes(4, endian) + \
        (value.to_bytes(2, endian) + b"\0\0" if kind == 3 else value.to_bytes(4, "big"))
    tiff = order + (42).to_bytes(2, endian) + (8).to_bytes(4, endian) + (1).to_bytes(2, endian) + entry + b"\0" * 4
    payload = b"Exif\0\0" + tiff
    return b"\xff\xe1" + (len(payload) + 2).to_bytes(2, "big") + payload


def _jpeg_with(path, segment: bytes, before: bytes = b"\xff\xdb") -> None:
    """Insert a segment before the first `before` marker (quantisation tables: early; start of scan: late)."""
    data = path.read_bytes()
    at = data.index(before)
    path.write_bytes(data[:at] + segment + data[at:])


def test_exif_orientation_is_read_wherever_the_segment_is(tmp_path):
    for name, orientation, order, before in (("ii", 6, b"II", b"\xff\xdb"), ("mm", 6, b"MM", b"\xff\xdb"),
                                             ("late", 6, b"II", b"\xff\xda"), ("upright", 1, b"MM", b"\xff\xdb")):
        Image.new("L", (6, 2), 0).save(tmp_path / f"{name}.jpg")
        _jpeg_with(tmp_path / f"{name}.jpg", _exif_segment(orientation, order), before)
        assert read_image(tmp_path / f"{name}.jpg", channels=1).shape == ((6, 2, 1) if orientation == 6 else (2, 6, 1))


def test_plain_image_accepts_only_what_tensorflow_decodes_like_pillow(tmp_path, monkeypatch):
    from PIL import PngImagePlugin

    from kit.headers import plain_image

    photo = _photo(30, 40)
    exif = photo.getexif()
    exif[0x0112] = 6
    photo.save(tmp_path / "rgb.jpg")
    photo.convert("L").save(tmp_path / "gray.jpg")
    photo.save(tmp_path / "progressive.jpg", progressive=True)
    photo.save(tmp_path / "comment.jpg", comment=b"x" * 5000)  # segments beyond the first block read
    photo.save(tmp_path / "rotated.jpg", exif=exif)
    photo.save(tmp_path / "xmp.jpg", xmp=b"<x:xmpmeta/>")
    photo.convert("CMYK").save(tmp_path / "cmyk.jpg")
    (tmp_path / "head.jpg").write_bytes((tmp_path / "rgb.jpg").read_bytes()[:30])
    for name, orientation, order, before in (("upright", 1, b"II", b"\xff\xdb"), ("upright-mm", 1, b"MM", b"\xff\xdb"),
                                             ("camera", None, b"II", b"\xff\xdb"), ("rotated-mm", 6, b"MM", b"\xff\xdb"),
                                             ("rotated-late", 6, b"II", b"\xff\xda")):
        photo.save(tmp_path / f"{name}.jpg")
        _jpeg_with(tmp_path / f"{name}.jpg", _exif_segment(orientation, order), before)
    photo.save(tmp_path / "rgb.png")
    photo.convert("L").save(tmp_path / "gray.png")
    photo.save(tmp_path / "interlaced.png", interlace=1)
    text = PngImagePlugin.PngInfo()
    text.add_text("Comment", "made by a test")
    photo.save(tmp_path / "text.png", pnginfo=text)
    photo.save(tmp_path / "png-named.jpg", "PNG")
    photo.save(tmp_path / "rotated.png", exif=exif)
    raw_exif = PngImagePlugin.PngInfo()
    raw_exif.add_text("Raw profile type exif", "exif\n6\n00")
    photo.save(tmp_path / "raw-exif.png", pnginfo=raw_exif)
    photo.convert("P").save(tmp_path / "palette.png")
    photo.convert("RGBA").save(tmp_path / "rgba.png")
    photo.convert("L").save(tmp_path / "transparent.png", transparency=0)
    Image.fromarray(np.full((30, 40), 300, np.uint16)).save(tmp_path / "16bit.png")
    photo.save(tmp_path / "animated.png", save_all=True, append_images=[photo.convert("L").convert("RGB")])
    (tmp_path / "head.png").write_bytes((tmp_path / "rgb.png").read_bytes()[:60])
    for name in ("rgb.jpg", "gray.jpg", "progressive.jpg", "comment.jpg", "upright.jpg", "upright-mm.jpg",
                 "camera.jpg", "gray.png", "rgb.png", "interlaced.png", "text.png"):
        assert plain_image(str(tmp_path / name), 3) == (name[-3:].replace("jpg", "jpeg"), 30, 40), name
    assert plain_image(str(tmp_path / "png-named.jpg"), 3) == ("png", 30, 40)  # the bytes decide, not the name
    assert plain_image(str(tmp_path / "rgb.jpg"), 1) == ("jpeg", 30, 40)  # libjpeg's gray is Pillow's draft("L")
    assert plain_image(str(tmp_path / "rgb.png"), 1) is None  # Pillow's RGB-to-gray weights are its own
    for name in ("rotated.jpg", "rotated-mm.jpg", "rotated-late.jpg", "xmp.jpg", "cmyk.jpg", "head.jpg", "rotated.png", "raw-exif.png", "palette.png",
                 "rgba.png", "transparent.png", "16bit.png", "animated.png", "head.png", "missing.png"):
        assert plain_image(str(tmp_path / name), 3) is None, name
    every = sorted(str(p) for p in tmp_path.iterdir()) + [str(tmp_path / "missing.png")]
    monkeypatch.setattr(kit.images, "PROCESSES_FROM", 4)  # many files: headers read in one process per core
    assert kit.images.plain_files(every, 3) == [plain_image(p, 3) for p in every]
    assert sum(found is not None for found in kit.images.plain_files(every, 3)) == 12
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 30 * 40 - 1)  # Pillow would refuse them: so must the fast path
    assert plain_image(str(tmp_path / "rgb.jpg"), 3) is None and plain_image(str(tmp_path / "rgb.png"), 3) is None
