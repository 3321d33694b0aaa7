"""#32: photo competitions, generated — whatever the published layout, `kit run DATA` with no flag but the user's
settings file picks the backbone it names, fits the photos' recipe (mirror views) and writes a submission in the
sample's exact format, changing nothing in the data folder.

The layouts are tests/layouts.py's random published-style folders (class folders, tables, one-hot columns, split
lists and tables; wrappers, junk, zips) with photo-sized images, which are then saved in the modes real photo
sets carry (CMYK and grayscale JPEGs, EXIF-rotated ones, RGBA, palette and 16-bit PNGs). The backbone is a tiny
file of the test's own. CI runs a few fixed seeds; by hand, many more:

    KIT_PHOTO_EXAMPLES=40 .venv/bin/python -m pytest tests/test_photo_competitions.py -n 0 -q
"""

import json
import os
import random
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import folder_hash, invoke
from PIL import Image

sys.path.insert(0, str(Path(__file__).parent))
from layouts import Layout, generate  # noqa: E402

PHOTO_SIZES = (64, 72, 80)  # kit.auto.PHOTO_MIN_SIDE and up: photos to kit, yet cheap
PHOTO_FAMILIES = ("class_folders", "table", "one_hot", "split_lists", "split_tables")


def photo_layouts(parent: Path, count: int, first_seed: int = 0) -> list[Layout]:
    """The first `count` generated photo layouts kit must read and can write a submission for (a test set)."""
    layouts, seed = [], first_seed
    while len(layouts) < count:
        layout = generate(parent, seed, sizes=PHOTO_SIZES, families=PHOTO_FAMILIES)
        if layout.expected == "read" and layout.test_keys:
            vary_photo_modes(layout.data, random.Random(seed))
            layouts.append(layout)
        seed += 1
    return layouts


def vary_photo_modes(data: Path, rng: random.Random) -> None:
    """Re-save about half of the loose images in another mode their format allows, as photo sets have them."""
    for path in sorted(p for p in data.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png")):
        if path.name.startswith("._") or rng.random() < 0.5:
            continue
        with Image.open(path) as im:
            rgb = im.convert("RGB")
        if path.suffix.lower() == ".png":
            mode = rng.choice(["RGBA", "P", "LA", "I;16"])
            image = rgb.convert("L").convert("I;16") if mode == "I;16" else rgb.convert(mode)
            image.save(path, format="PNG")
            continue
        kind = rng.choice(["CMYK", "L", "exif"])
        if kind == "exif":  # stored turned, with the tag that turns it back (a phone's photo)
            exif = Image.Exif()
            exif[0x0112] = 6
            rgb.transpose(Image.Transpose.ROTATE_90).save(path, format="JPEG", quality=92, exif=exif)
        else:
            rgb.convert(kind).save(path, format="JPEG", quality=92)


def check_submission(layout: Layout, sub: pd.DataFrame) -> str:
    """'' when the submission answers every official test image in the sample's format, else what is wrong."""
    if layout.test is not None and sub.iloc[:, 0].tolist() != [str(i) for i in layout.test]:
        return f"ids {sub.iloc[:, 0].tolist()[:5]} differ from the sample's {layout.test[:5]}"
    if len(sub) != len(layout.test_keys):
        return f"{len(sub)} rows for {len(layout.test_keys)} test images"
    if len(sub.columns) > 2:  # one probability per class
        values = sub.iloc[:, 1:].to_numpy(dtype=float)
        if set(sub.columns[1:]) != set(layout.classes) or not np.allclose(values.sum(1), 1, atol=1e-4):
            return f"probability columns {list(sub.columns[1:])} for classes {layout.classes}"
        return ""
    answers = set(sub.iloc[:, 1])
    if layout.exact_labels and not answers <= set(layout.classes):
        return f"answers {sorted(answers)[:5]} are not among the classes {layout.classes}"
    return ""


@pytest.mark.parametrize("first_seed", [0, 100, 200])
def test_any_generated_photo_competition_gets_the_settings_backbone_and_a_right_submission(
        tmp_path, tiny_backbone, settings, first_seed):
    path, digest = tiny_backbone
    written = settings(f'[auto]\nbackbone_file = "{path}"\ntrust_model = "{digest}"\n')
    for n, layout in enumerate(photo_layouts(tmp_path / "data", int(os.environ.get("KIT_PHOTO_EXAMPLES", 2)),
                                             first_seed)):
        before, where = folder_hash(layout.data), f"{layout.describe()}"
        result = invoke("run", layout.data, "--runs-dir", tmp_path / "runs", "--name", f"r{n}")
        assert result.exit_code == 0, f"{result.output}\n{where}"
        assert f"→ tiny (from {written})" in result.output and "Model: photos" in result.output, result.output
        config = json.loads((tmp_path / "runs" / f"r{n}" / "config.json").read_text())
        assert (config["model"], config["augment"], config["feature_views"]) == ("backbone_file", "strong", 2)
        sub = pd.read_csv(tmp_path / "runs" / f"r{n}" / "submission.csv", dtype=str, keep_default_na=False)
        problem = check_submission(layout, sub)
        assert not problem, f"{problem}\n{result.output}\n{where}"
        assert folder_hash(layout.data) == before, where  # nothing in the data folder changed


def test_the_checker_tells_a_wrong_submission(tmp_path):
    """The harness: a right answer passes; wrong ids, order, a missing row or an unknown label do not."""
    layout = next(lay for lay in photo_layouts(tmp_path, 6) if lay.test is not None and lay.exact_labels
                  and len(lay.test) > 1)
    label = layout.classes[0]
    right = pd.DataFrame({"id": [str(i) for i in layout.test], "label": label})
    assert check_submission(layout, right) == ""
    assert check_submission(layout, right.iloc[::-1]) != ""
    assert check_submission(layout, right.iloc[1:]) != ""
    assert check_submission(layout, right.assign(label="no-such-class")) != ""
