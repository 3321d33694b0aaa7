"""Property check of the doctor's near-duplicate finding: copies made with random transformations (JPEG quality,
shifts of 1-2 pixels, resizing by 80-200%, a small brightness change, PNG <-> JPEG) among look-alike distractors
(families of images sharing a picture's layout, each with detail of its own) are found, and look-alikes are not."""

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from kit.doctor import train_test_pairs
from kit.hashes import image_signature, near_duplicates, unpack


def smooth(rng, size: int, cells: int, amplitude: float) -> np.ndarray:
    """Random colour texture: a cells x cells grid of colours, resized smoothly to size x size."""
    grid = rng.uniform(0, amplitude, (cells, cells, 3)).astype(np.float32)
    return np.stack([np.asarray(Image.fromarray(grid[:, :, c]).resize((size, size), Image.BICUBIC))
                     for c in range(3)], axis=2)


def look_alike(rng, base: np.ndarray) -> Image.Image:
    """A family member: the family's layout plus detail of its own (a person tells them apart at a glance)."""
    size = base.shape[0]
    detail = smooth(rng, size, int(rng.integers(5, 9)), float(rng.uniform(20, 35)))
    return Image.fromarray(np.clip(base + detail, 0, 255).astype(np.uint8))


def transformed(rng, im: Image.Image) -> tuple[Image.Image, str]:
    """A copy as people make them: shifted by 1-2 pixels (the edge repeated), resized by 80-200%, a little brighter
    or darker, saved as JPEG (quality 60-95) or PNG; at least one of the first three."""
    a = np.asarray(im).astype(np.float32)
    kinds = set(rng.choice(["shift", "resize", "brightness"], int(rng.integers(1, 4)), replace=False))
    if "shift" in kinds:
        dy, dx = rng.integers(-2, 3, 2)
        a = np.pad(a, [(2, 2), (2, 2), (0, 0)], mode="edge")[2 + dy:2 + dy + im.height, 2 + dx:2 + dx + im.width]
    if "brightness" in kinds:
        a = a * rng.uniform(0.9, 1.1) + rng.uniform(-12, 12)
    out = Image.fromarray(np.clip(a, 0, 255).astype(np.uint8))
    if "resize" in kinds:
        scale = rng.uniform(0.8, 2.0)
        out = out.resize((round(im.width * scale), round(im.height * scale)), Image.BILINEAR)
    return out, ",".join(sorted(kinds))


def turned_or_cropped(rng, im: Image.Image) -> tuple[Image.Image, str]:
    """A copy turned or cropped as a competitor's leak often is: mirrored, rotated by 90/180/270 degrees, or cropped
    by 3-20% of each side's length (anywhere), then transformed as above (JPEG, shift, resize, brightness)."""
    kind = str(rng.choice(["crop", "mirror", "rot90", "rot180", "rot270", "mirror+rot90"]))
    if kind == "crop":
        keep_w, keep_h = rng.uniform(0.8, 0.97, 2)
        w, h = round(im.width * keep_w), round(im.height * keep_h)
        x0, y0 = int(rng.integers(0, im.width - w + 1)), int(rng.integers(0, im.height - h + 1))
        im = im.crop((x0, y0, x0 + w, y0 + h))
    else:
        if kind.startswith("mirror"):
            im = im.transpose(Image.FLIP_LEFT_RIGHT)
        turns = {"rot90": Image.ROTATE_90, "rot180": Image.ROTATE_180, "rot270": Image.ROTATE_270}
        for name, how in turns.items():
            if kind.endswith(name):
                im = im.transpose(how)
    out, more = transformed(rng, im) if rng.random() < 0.7 else (im, "")
    return out, ",".join(filter(None, [kind, more]))


def save(im: Image.Image, path_stem, rng) -> str:
    if rng.random() < 0.5:
        path = f"{path_stem}.png"
        im.save(path)
    else:
        path = f"{path_stem}.jpg"
        im.save(path, quality=int(rng.integers(60, 96)))
    return path


def signatures(paths: list[str]) -> np.ndarray:
    out = []
    for p in paths:
        with Image.open(p) as im:
            im.load()
            out.append(image_signature(im))
    return unpack(out)[0]


def planted_set(root, seed: int, families: int = 40, members: int = 4, copies: int = 30, geometric: bool = False):
    """(train table, test table, the planted (test id, train id) copies): every family has members in train and
    test; some test images are copied into train. geometric: the copies are turned or cropped (turned_or_cropped)
    and half go the other way, a training image's copy added to test (a test photo re-cropped from a training one)."""
    rng = np.random.default_rng(seed)
    train, test = [], []
    for f in range(families):
        size = int(rng.integers(40, 90))
        base = smooth(rng, size, int(rng.integers(2, 5)), 180)
        for m in range(members):
            table = test if m == 0 else train
            name = f"f{f:03d}m{m}"
            table.append({"id": name, "path": save(look_alike(rng, base), root / name, rng), "label": "x"})
    planted = set()
    if geometric:
        sources = [(test, train, k) for k in range(len(test))] + [(train, test, k) for k in range(len(train))]
        for n, s in enumerate(rng.choice(len(sources), copies, replace=False)):
            source, target, k = sources[s]
            copy, _ = turned_or_cropped(rng, Image.open(source[k]["path"]).convert("RGB"))
            name = f"copy{n:03d}"
            target.append({"id": name, "path": save(copy, root / name, rng), "label": "x"})
            planted.add((source[k]["id"], name) if target is train else (name, source[k]["id"]))
        return pd.DataFrame(train), pd.DataFrame(test), planted
    for k in rng.choice(len(test), copies, replace=False):
        copy, _ = transformed(rng, Image.open(test[k]["path"]).convert("RGB"))
        name = f"copy{k:03d}"
        train.append({"id": name, "path": save(copy, root / name, rng), "label": "x"})
        planted.add((test[k]["id"], name))
    return pd.DataFrame(train), pd.DataFrame(test), planted


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_planted_copies_are_found_and_look_alikes_are_not(tmp_path, seed):
    train, test, planted = planted_set(tmp_path, seed)
    pairs = train_test_pairs(train, signatures(list(train["path"])), test, signatures(list(test["path"])))
    found = {(p["test"], p["train"]) for p in pairs}
    recall = len(found & planted) / len(planted)
    precision = len(found & planted) / max(1, len(found))
    assert recall >= 0.9 and precision >= 0.9, (recall, precision, sorted(found ^ planted))


def test_kits_split_groups_most_planted_copies_and_few_look_alikes(tmp_path):
    """kit run's grouping (thumbnails only, no second look) on the same kind of set: train and test as one table."""
    train, test, planted = planted_set(tmp_path, 7)
    both = pd.concat([train, test], ignore_index=True)
    i, j, _ = near_duplicates(signatures(list(both["path"])))
    ids = both["id"].to_numpy()
    found = {tuple(sorted((ids[a], ids[b]))) for a, b in zip(i, j)}
    planted = {tuple(sorted(p)) for p in planted}
    assert len(found & planted) >= 0.8 * len(planted), sorted(planted - found)
    assert len(found - planted) <= 0.2 * len(found), sorted(found - planted)


def test_copy_residual_tells_a_brighter_shifted_copy_from_a_look_alike():
    from kit.hashes import VERIFY_RESIDUAL, copy_residual

    rng = np.random.default_rng(3)
    base = smooth(rng, 60, 3, 180)
    original, other = look_alike(rng, base), look_alike(rng, base)
    a = np.asarray(original.convert("L")).astype(np.float32)
    moved = np.pad(a, 2, mode="edge")[1:61, 3:63]  # moved a pixel down and a pixel left; then brighter, larger
    copy = Image.fromarray(np.clip(moved * 1.08 + 9, 0, 255).astype(np.uint8)).resize((90, 90), Image.BILINEAR)
    gray = [np.asarray(im.convert("L")) for im in (original, copy, other)]
    assert copy_residual(gray[0], gray[1]) <= VERIFY_RESIDUAL / 2
    assert copy_residual(gray[0], gray[2]) > 4 * VERIFY_RESIDUAL


def test_a_cropped_copy_is_left_to_the_thumbnails(tmp_path):
    """A copy cropped by 5% on one side has another shape: the second look cannot align it, so a pair of different
    shapes that passes the thumbnail test is kept (the sizes come from the signatures, as in kit doctor)."""
    rng = np.random.default_rng(12)  # a seed whose cropped copy fails the second look (residual 0.011)
    base = smooth(rng, 64, 3, 180)
    train, test = [], []
    for m in range(6):
        im = Image.fromarray(np.clip(base + smooth(rng, 64, 6, 15), 0, 255).astype(np.uint8))  # close look-alikes
        (test if m == 0 else train).append({"id": f"m{m}", "path": save(im, tmp_path / f"m{m}", rng), "label": "x"})
    Image.open(test[0]["path"]).convert("RGB").crop((3, 0, 64, 64)).save(tmp_path / "crop.png")
    train.append({"id": "crop", "path": str(tmp_path / "crop.png"), "label": "x"})
    train, test = pd.DataFrame(train), pd.DataFrame(test)
    sizes = [np.array([Image.open(p).size for p in t["path"]], dtype=float) for t in (train, test)]
    pairs = train_test_pairs(train, signatures(list(train["path"])), test, signatures(list(test["path"])), *sizes)
    assert [(p["test"], p["train"]) for p in pairs] == [("m0", "crop")]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_mirrored_rotated_and_cropped_copies_are_found_both_ways(tmp_path, seed):
    """Copies mirrored, rotated by 90/180/270 degrees or cropped by 3-20% of a side (with JPEG, shifts, resizing,
    brightness on top), some from test into train and some from train into test, among look-alike families."""
    train, test, planted = planted_set(tmp_path, seed, geometric=True)
    sizes = [np.array([Image.open(p).size for p in t["path"]], dtype=float) for t in (train, test)]
    pairs = train_test_pairs(train, signatures(list(train["path"])), test, signatures(list(test["path"])), *sizes)
    found = {(p["test"], p["train"]) for p in pairs}
    recall = len(found & planted) / len(planted)
    precision = len(found & planted) / max(1, len(found))
    assert recall >= 0.9 and precision >= 0.9, (recall, precision, sorted(found ^ planted))
    assert any(p.get("transform") for p in pairs)  # the report says how a copy was turned or cropped


def test_a_mirrored_copy_is_matched_in_its_transform():
    """dihedral's 8 transforms: a half turn keeps the perceptual hash (one search finds both), a mirror does not."""
    from kit.hashes import dihedral, perceptual_hashes

    rng = np.random.default_rng(5)
    thumb = np.asarray(look_alike(rng, smooth(rng, 32, 3, 180)).convert("L"))[None]
    hashes = perceptual_hashes(np.concatenate([dihedral(thumb, t) for t in range(8)]))
    assert np.allclose(hashes[0], hashes[2], atol=1e-5) and np.allclose(hashes[4], hashes[6], atol=1e-5)
    assert not np.allclose(hashes[0], hashes[4], atol=1e-3)
    assert np.array_equal(dihedral(dihedral(thumb, 1), 3), thumb)
