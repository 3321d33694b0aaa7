"""The bad-input catalogue: each case breaks a fresh AV-layout folder (24 training images 00000-00023, classes
cat/dog/emu by eight, test ids 00024-00029) in one way. Used by test_validate_cli.py through the CLI."""

import os
import unicodedata

import numpy as np
from conftest import make_image, write_csv
from PIL import Image

TRAIN_ROWS = [(f"{k:05d}", ("cat", "dog", "emu")[k // 8]) for k in range(24)]


def rows_with(*changes):
    """train.csv rows with some (index → (id, label)) replaced; a None value drops the row."""
    rows = list(TRAIN_ROWS)
    for index, row in changes:
        rows[index] = row
    return [r for r in rows if r is not None]


def train_csv(d, rows, **kwargs):
    write_csv(d / "train.csv", ["id", "label"], rows, **kwargs)


def image(d, name, mode="L", size=16, **save):
    im = make_image("cat", 7, size=size)
    im = im.convert(mode) if mode != "L" else im
    im.save(d / "train" / name, **save)


def replace_png(d, k, name, mode="L", **save):
    (d / "train" / f"{k:05d}.png").unlink()
    image(d, name, mode, **save)


def truncated_jpeg(d):
    (d / "train" / "00003.png").unlink()
    image(d, "00003.jpg", "RGB", size=64, quality=95)
    data = (d / "train" / "00003.jpg").read_bytes()
    (d / "train" / "00003.jpg").write_bytes(data[: len(data) // 2])


def rgba(d):
    (d / "train" / "00003.png").unlink()
    a = np.zeros((16, 16, 4), np.uint8)
    a[..., 3] = 128
    Image.fromarray(a, "RGBA").save(d / "train" / "00003.png")


def palette_transparency(d):
    im = make_image("cat", 3).convert("P")
    im.info["transparency"] = 0
    im.save(d / "train" / "00003.png", transparency=0)


def exif_rotated(d):
    (d / "train" / "00003.png").unlink()
    im = make_image("cat", 3, size=16).convert("RGB").resize((16, 24))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° on display
    im.save(d / "train" / "00003.jpg", exif=exif, quality=95)


def animated_gif(d):
    (d / "train" / "00003.png").unlink()
    frames = [make_image("cat", s).convert("P") for s in (3, 4)]
    frames[0].save(d / "train" / "00003.gif", save_all=True, append_images=frames[1:])


def sixteen_bit(d):
    (d / "train" / "00003.png").unlink()
    Image.fromarray((np.arange(256, dtype=np.uint16).reshape(16, 16) * 256)).save(d / "train" / "00003.png")


def bomb(d):
    (d / "train" / "00003.png").unlink()
    Image.new("L", (13000, 13000)).save(d / "train" / "00003.png", optimize=False)


def nfd_name(d):
    name = unicodedata.normalize("NFC", "café")
    (d / "train" / "00003.png").rename(d / "train" / f"{unicodedata.normalize('NFD', name)}.png")
    train_csv(d, rows_with((3, (name, "cat"))))


def dangling_symlink(d):
    (d / "train" / "00003.png").unlink()
    os.symlink(d / "nowhere.png", d / "train" / "00003.png")


def directory_like_image(d):
    (d / "train" / "00003.png").unlink()
    (d / "train" / "00003.png").mkdir()


def symlink_outside(d):
    (d / "train" / "00003.png").unlink()
    outside = d.parent / "outside.png"
    make_image("cat", 3).save(outside)
    os.symlink(outside, d / "train" / "00003.png")


def duplicate_image_across_splits(d):
    (d / "test" / "00024.png").write_bytes((d / "train" / "00003.png").read_bytes())


def duplicate_image_within_train(d):
    (d / "train" / "00004.png").write_bytes((d / "train" / "00003.png").read_bytes())


def sample_disagrees(d):
    write_csv(d / "sample_submission.csv", ["id", "label"], [(f"{k:05d}", "cat") for k in range(25, 31)])


def test_image_missing(d):
    (d / "test" / "00026.png").unlink()


# name → (break the folder, exit status of `kit validate`, one exact line of its output; {d} = the folder)
CASES = {}


def _register_all():
    simple = {
        # images
        "missing image": (lambda d: (d / "train" / "00003.png").unlink(), 2,
            "error: train.csv:5: image '00003' not found in train/ (looked for 00003, 00003.png, 00003.jpg, …)"),
        "zero-byte image": (lambda d: (d / "train" / "00003.png").write_bytes(b""), 2,
            "error: train.csv:5: image 'train/00003.png' not a readable image (empty file (0 bytes))"),
        "truncated jpeg": (truncated_jpeg, 2,
            "error: train.csv:5: image 'train/00003.jpg' not a readable image (image file is truncated (99 bytes not "
            'processed))'),
        "corrupt bytes": (lambda d: (d / "train" / "00003.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40), 2,
            "error: train.csv:5: image 'train/00003.png' not a readable image (cannot identify image file "
            "'{d}/train/00003.png')"),
        "png named jpg": (lambda d: (d / "train" / "00003.png").rename(d / "train" / "00003.jpg"), 0,
            "warning: train.csv:5: image 'train/00003.jpg' holds PNG data; decoded by its content"),
        "html named jpg": (lambda d: ((d / "train" / "00003.png").unlink(),
                                      (d / "train" / "00003.jpg").write_text("<html><body>404</body></html>")), 2,
            "error: train.csv:5: image 'train/00003.jpg' not a readable image (HTML/XML text, not an image (a web "
            'page saved with an image name?))'),
        "rgba png": (rgba, 0, 'fallback: transparency composited on white: 1 image(s)'),
        "palette with transparency": (palette_transparency, 0,
            'fallback: transparency composited on white: 1 image(s)'),
        "rgb mixed with grayscale": (lambda d: image(d, "00003.png", "RGB"), 0,
            'image sizes: 16x16 (24); modes: L (23), RGB (1)'),
        "cmyk jpeg": (lambda d: replace_png(d, 3, "00003.jpg", "CMYK", quality=95), 0,
            'fallback: CMYK converted to RGB: 1 image(s)'),
        "16-bit png": (sixteen_bit, 0, 'fallback: 16-bit or float pixels scaled to 8 bits: 1 image(s)'),
        "exif orientation": (exif_rotated, 0, 'fallback: EXIF orientation applied: 1 image(s)'),
        "animated gif": (animated_gif, 0, 'fallback: animation: first frame used: 1 image(s)'),
        "webp": (lambda d: replace_png(d, 3, "00003.webp"), 0, 'image sizes: 16x16 (24); modes: L (23), RGB (1)'),
        "tiff": (lambda d: replace_png(d, 3, "00003.tif"), 0, 'image sizes: 16x16 (24); modes: L (24)'),
        "bmp": (lambda d: replace_png(d, 3, "00003.bmp"), 0, 'image sizes: 16x16 (24); modes: L (24)'),
        "decompression bomb": (bomb, 2,
            "error: train.csv:5: image 'train/00003.png' image too large (Image size (169000000 pixels) exceeds "
            'limit of 89478485 pixels, could be decompression bomb DOS attack.); resize it below 89478485 pixels'),
        "upper-case extension": (lambda d: (d / "train" / "00003.png").rename(d / "train" / "00003.PNG"), 0,
            'image sizes: 16x16 (24); modes: L (24)'),
        "two files for one id": (lambda d: image(d, "00003.jpg", "RGB"), 0,
            "warning: train.csv:5: id '00003' matches 00003.jpg, 00003.png in train/; using 00003.png"),
        "unicode nfd file name": (nfd_name, 0, 'image sizes: 16x16 (24); modes: L (24)'),
        "directory named like an image": (directory_like_image, 2,
            "error: train.csv:5: '00003.png' in train/ is a folder, not an image"),
        "dangling symlink": (dangling_symlink, 2,
            "error: train.csv:5: image '00003' not found in train/ (looked for 00003, 00003.png, 00003.jpg, …)"),
        "symlink leading outside": (symlink_outside, 2,
            "error: train.csv:5: image '00003.png' is a symlink that leads outside the data folder"),
        # tables
        "utf-8 bom": (lambda d: train_csv(d, TRAIN_ROWS, bom=True), 0, 'image sizes: 16x16 (24); modes: L (24)'),
        "semicolon delimiter": (lambda d: train_csv(d, TRAIN_ROWS, sep=";"), 0,
            'image sizes: 16x16 (24); modes: L (24)'),
        "tab delimiter": (lambda d: train_csv(d, TRAIN_ROWS, sep="\t"), 0, 'image sizes: 16x16 (24); modes: L (24)'),
        "crlf line endings": (lambda d: train_csv(d, TRAIN_ROWS, newline="\r\n"), 0,
            'image sizes: 16x16 (24); modes: L (24)'),
        "cr-only line endings": (lambda d: train_csv(d, TRAIN_ROWS, newline="\r"), 0,
            'image sizes: 16x16 (24); modes: L (24)'),
        "quoted field with comma": (lambda d: write_csv(d / "train.csv", ["id", "label", "note"],
                                                        [(i, c, '"big, fluffy"') for i, c in TRAIN_ROWS]), 0,
            'image sizes: 16x16 (24); modes: L (24)'),
        "id written as float": (lambda d: ((d / "train" / "00003.png").rename(d / "train" / "3.png"),
                                           train_csv(d, rows_with((3, ("3.0", "cat"))))), 0,
            "warning: train.csv:5: id '3.0' looks like a number saved as a float (Excel?); matched 3.png"),
        "id in scientific notation": (lambda d: train_csv(d, rows_with((3, ("1.23E+04", "cat")))), 2,
            "error: train.csv:5: id '1.23E+04' looks like Excel scientific notation, so the real id was lost; "
            're-export the table with the id column formatted as text'),
        "duplicate identical rows": (lambda d: train_csv(d, TRAIN_ROWS + [TRAIN_ROWS[3]]), 0,
            'warning: train.csv:26: exact repeat of an earlier row; used once'),
        "duplicate id, conflicting labels": (lambda d: train_csv(d, TRAIN_ROWS + [("00003", "dog")]), 2,
            "error: train.csv:26: id '00003' appears 2 times with labels cat, dog (rows 5, 26); ids must be unique"),
        "empty label": (lambda d: train_csv(d, rows_with((3, ("00003", "")))), 2,
            'error: train.csv:5: empty label; every training row needs a class'),
        "literal NA label": (lambda d: train_csv(d, rows_with((3, ("00003", "NA")), (4, ("00004", "NA")))), 0,
            "warning: train.csv: label 'NA' (2 rows) is kept as a class name; if it means 'missing', remove those "
            'rows'),
        "labels differing by case and space": (lambda d: train_csv(d, rows_with((3, ("00003", "Cat ")),
                                                                               (4, ("00004", "Cat ")))), 0,
            "warning: train.csv: labels 'Cat', 'cat' differ only in case, number format or invisible "
            'characters; they are kept as separate classes — fix train.csv if they are one class'),
        "class with one image": (lambda d: train_csv(d, rows_with((3, ("00003", "fox")))), 0,
            "warning: train.csv:5: 1 class(es) have a single image ('fox'); they are kept in training only, never in "
            "validation"),
        "renamed column": (lambda d: write_csv(d / "train.csv", ["image", "label"], TRAIN_ROWS), 0,
            'image sizes: 16x16 (24); modes: L (24)'),
        "empty table": (lambda d: (d / "train.csv").write_text("id,label\n"), 2,
            'Error: train.csv: has a header (id, label) but no rows'),
        "not utf-8": (lambda d: (d / "train.csv").write_bytes("id,label\n00000,caf\xe9\n".encode("latin-1")), 2,
            'Error: train.csv:2: not UTF-8 (byte 0xe9); save the file as UTF-8'),
        "path traversal in a table": (lambda d: train_csv(d, rows_with((3, ("../outside", "cat")))), 2,
            "error: train.csv:5: id '../outside' goes up with '..'; ids must name files inside the data folder"),
        "absolute path in a table": (lambda d: train_csv(d, rows_with((3, ("/etc/passwd", "cat")))), 2,
            "error: train.csv:5: id '/etc/passwd' is an absolute path; ids must name files inside the data folder"),
        # the folder as a whole
        "sample and test table disagree": (sample_disagrees, 2,
            "error: sample_submission.csv: ids differ from test.csv: 1 only in the sample ('00030'), 1 only in the "
            "test set ('00024')"),
        "test image missing": (test_image_missing, 2,
            "error: test.csv:4: image '00026' not found in test/ (looked for 00026, 00026.png, 00026.jpg, …)"),
        "unlisted images": (lambda d: image(d, "extra.png"), 0,
            'warning: train/extra.png: 1 image file(s) in the image folders are in no table (ignored)'),
        "duplicate images within train": (duplicate_image_within_train, 0,
            "warning: train.csv:6: 2 identical images (label cat): 'train/00003.png', 'train/00004.png'"),
        "duplicate image across train and test": (duplicate_image_across_splits, 0,
            "warning: test.csv:2: test image 'test/00024.png' is identical to training image 'train/00003.png' "
            '(label cat)'),
    }
    for name, (fn, status, line) in simple.items():
        CASES[name] = (fn, status, line)


_register_all()
