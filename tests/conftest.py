"""Tiny competition folders made on the fly: no network, no GPU, no files from outside the test."""

import hashlib
import os
import tempfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
# kit's ledger of the files it wrote (kit.outputs) lives in a folder of the test session's own, never the home's.
os.environ.setdefault("KIT_STATE_DIR", tempfile.mkdtemp(prefix="kit-state-"))
os.environ.setdefault("KIT_CACHE_DIR", tempfile.mkdtemp(prefix="kit-cache-"))  # zips and pixel tables, derived
# --model auto looks for pretrained weights (kit.auto): never the user's settings or Keras cache, never the network.
os.environ["KIT_OFFLINE"] = "1"
os.environ["XDG_CONFIG_HOME"] = tempfile.mkdtemp(prefix="kit-config-")
os.environ["KERAS_HOME"] = tempfile.mkdtemp(prefix="kit-keras-")

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

# Each class is a distinct, easily learned pattern, so a 2-epoch model beats chance clearly.
PATTERNS = {
    "cat": lambda a: a.__setitem__((slice(None), slice(0, a.shape[1] // 2)), 230),
    "dog": lambda a: a.__setitem__((slice(0, a.shape[0] // 2), slice(None)), 230),
    "emu": lambda a: a.__setitem__((slice(a.shape[0] // 4, 3 * a.shape[0] // 4),) * 2, 230),
}


def make_image(label: str, seed: int, size: int = 16, mode: str = "L") -> Image.Image:
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 40, (size, size), dtype=np.uint8)
    PATTERNS[label](a)
    im = Image.fromarray(a, "L")
    return im.convert(mode) if mode != "L" else im


def write_csv(path: Path, header, rows, newline="\n", bom=False, sep=","):
    text = newline.join([sep.join(header)] + [sep.join(map(str, r)) for r in rows]) + newline
    path.write_bytes(("\ufeff" if bom else "").encode() + text.encode("utf-8"))


def make_av_folder(root: Path, n_per_class: int = 8, n_test: int = 6, classes=("cat", "dog", "emu"), size=16,
                   id_fmt="{:05d}") -> Path:
    """AV 'apparels' layout: train.csv (id,label), train/<id>.png, test.csv (id), test/<id>.png, sample."""
    (root / "train").mkdir(parents=True)
    (root / "test").mkdir()
    rows, k = [], 0
    for c in classes:
        for _ in range(n_per_class):
            image_id = id_fmt.format(k)
            make_image(c, k, size).save(root / "train" / f"{image_id}.png")
            rows.append((image_id, c))
            k += 1
    write_csv(root / "train.csv", ["id", "label"], rows)
    test_ids = []
    for j in range(n_test):
        image_id = id_fmt.format(k + j)
        make_image(classes[j % len(classes)], 1000 + j, size).save(root / "test" / f"{image_id}.png")
        test_ids.append(image_id)
    write_csv(root / "test.csv", ["id"], [(i,) for i in test_ids])
    write_csv(root / "sample_submission.csv", ["id", "label"], [(i, classes[0]) for i in test_ids])
    return root


def make_digits_folder(root: Path, n_per_class: int = 8, n_test: int = 6, classes=("cat", "dog", "emu")) -> Path:
    """AV 'digits' layout: filename,label; Images/train/<file>; odd test and sample file names."""
    (root / "Images" / "train").mkdir(parents=True)
    (root / "Images" / "test").mkdir(parents=True)
    rows, k = [], 0
    for c in classes:
        for _ in range(n_per_class):
            make_image(c, k).save(root / "Images" / "train" / f"{k}.png")
            rows.append((f"{k}.png", c))
            k += 1
    write_csv(root / "train.csv", ["filename", "label"], rows)
    names = [f"{k + j}.png" for j in range(n_test)]
    for j, name in enumerate(names):
        make_image(classes[j % len(classes)], 500 + j).save(root / "Images" / "test" / name)
    write_csv(root / "Test_fCbTej3.csv", ["filename"], [(n,) for n in names])
    write_csv(root / "Sample_Submission_lxuyBuB.csv", ["filename", "label"], [(n, classes[0]) for n in names])
    return root


def make_class_folders(root: Path, n_per_class: int = 8, n_test: int = 6, classes=("cat", "dog", "emu"),
                       mode="RGB") -> Path:
    """train/<class>/*.jpg and an unlabelled test/ folder."""
    k = 0
    for c in classes:
        (root / "train" / c).mkdir(parents=True)
        for _ in range(n_per_class):
            make_image(c, k, mode=mode).save(root / "train" / c / f"img{k}.jpg", quality=95)
            k += 1
    (root / "test").mkdir()
    for j in range(n_test):
        make_image(classes[j % len(classes)], 700 + j, mode=mode).save(root / "test" / f"t{j}.jpg", quality=95)
    return root


def folder_hash(root: Path) -> dict:
    """Every file's bytes and every name under root, to prove kit changed nothing."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
            for p in sorted(root.rglob("*"))}


@pytest.fixture
def av_folder(tmp_path):
    return make_av_folder(tmp_path / "comp")


def invoke(*args, **kwargs):
    """The CLI in this process; an exception kit did not turn into one line is a test failure."""
    from kit.cli import cli

    result = CliRunner().invoke(cli, [str(a) for a in args], **kwargs)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    assert "Traceback" not in result.output
    return result


def one_error(result, *parts):
    """Exit 2 and exactly one line, `Error: …`, holding every part."""
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert result.exit_code == 2 and len(errors) == 1, result.output
    for part in parts:
        assert part in errors[0], errors[0]
    return errors[0]


@pytest.fixture
def tiny_backbone(tmp_path):
    """A few convolutions saved as a .keras file, and its sha256."""
    import keras

    inputs = keras.Input((None, None, 3))
    x = keras.layers.Rescaling(1 / 255)(inputs)
    x = keras.layers.Conv2D(4, 3, strides=2, activation="relu")(x)
    x = keras.layers.Conv2D(8, 3, strides=2, activation="relu")(x)
    path = tmp_path / "tiny.keras"
    keras.Model(inputs, x).save(path)
    return path, hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def settings(tmp_path, monkeypatch):
    """Writes $XDG_CONFIG_HOME/kit/config.toml (XDG_CONFIG_HOME a folder of the test's own)."""
    home = tmp_path / "xdg"
    (home / "kit").mkdir(parents=True)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home))

    def write(text):
        (home / "kit" / "config.toml").write_text(text)
        return home / "kit" / "config.toml"

    return write
