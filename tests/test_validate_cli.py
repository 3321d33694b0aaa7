"""`kit validate` and bad input through the CLI: exit status, one-line messages, data folder untouched."""

import json

import numpy as np
import pytest
from catalogue import CASES
from click.testing import CliRunner
from conftest import folder_hash, make_av_folder
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kit.cli import cli
from kit.errors import ImageError
from kit.images import read_image


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def test_exit_status_clean_warnings_strict_errors_and_json(tmp_path):
    data = make_av_folder(tmp_path / "c")
    assert invoke("validate", data, "--strict").exit_code == 0
    (data / "train" / "00003.png").rename(data / "train" / "00003.jpg")  # a warning only
    before = folder_hash(data)
    assert invoke("validate", data).exit_code == 0
    assert invoke("validate", data, "--strict").exit_code == 1
    (data / "train" / "00004.png").write_bytes(b"junk")  # now an error
    before = folder_hash(data)
    result = invoke("validate", data, "--json", tmp_path / "r.json")
    assert result.exit_code == 2
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["errors"] == 1 and report["warnings"] == 1
    assert report["cases"]["unreadable_image"]["first"][0]["row"] == 6
    assert report["cases"]["extension_mismatch"]["count"] == 1
    assert folder_hash(data) == before


@pytest.mark.parametrize("break_it,message", [
    (lambda d: (d / "train.csv").write_text("id,label\n"), "Error: train.csv: has a header (id, label) but no rows"),
    (lambda d: (d / "train.csv").write_text("id\n1\n"),
     "Error: train.csv: only one column (id); expected an id column and a label column"),
    (lambda d: (d / "train.csv").write_bytes(b"id,label\n1,\xff\n"),
     "Error: train.csv:2: not UTF-8 (byte 0xff); save the file as UTF-8"),
    (lambda d: (d / "train.csv").write_text("a,b,c\n1,2,3\n"),
     "Error: train.csv: cannot tell which column is the label (columns: a, b, c); pass --label-col NAME: "
     "`kit run DATA --label-col b`"),
])
def test_table_errors_are_one_line_without_traceback(tmp_path, break_it, message):
    data = make_av_folder(tmp_path / "c")
    break_it(data)
    before = folder_hash(data)
    result = invoke("validate", data)
    assert result.exit_code == 2
    assert result.output.strip() == message
    assert "Traceback" not in result.output
    assert folder_hash(data) == before


@pytest.mark.parametrize("name", sorted(CASES))
def test_catalogue_case_through_the_cli(tmp_path, name):
    """Each bad input: the decided exit status, its exact one-line message, no traceback, the folder untouched."""
    break_it, status, line = CASES[name]
    data = make_av_folder(tmp_path / "comp")
    break_it(data)
    before = folder_hash(data)
    result = invoke("validate", data)
    assert result.exit_code == status, result.output
    assert line.format(d=data) in result.output.splitlines(), result.output
    assert "Traceback" not in result.output and not (result.exception and not isinstance(result.exception,
                                                                                           SystemExit))
    assert folder_hash(data) == before


def test_on_bad_image_skip_trains_without_them_and_records_them(tmp_path):
    data = make_av_folder(tmp_path / "c", n_per_class=10)
    (data / "train" / "00002.png").write_bytes(b"")
    (data / "train" / "00005.png").unlink()
    before = folder_hash(data)
    result = invoke("train", data, "--on-bad-image", "skip", "--runs-dir", tmp_path / "runs", "--name", "s",
                    "--epochs", "1", "--image-size", "16")
    assert result.exit_code == 0, result.output
    skipped = (tmp_path / "runs" / "s" / "skipped.csv").read_text().splitlines()
    assert skipped[0] == "file,row,reason" and len(skipped) == 3
    assert skipped[1].startswith("train.csv,4,image 'train/00002.png' not a readable image (empty file")
    assert json.loads((tmp_path / "runs" / "s" / "metrics.json").read_text())["num_train"] + \
        json.loads((tmp_path / "runs" / "s" / "metrics.json").read_text())["num_validation"] == 28
    assert folder_hash(data) == before


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=300), st.sampled_from([".png", ".jpg", ".gif", ".bmp", ".webp", ".tif"]))
def test_loader_fuzz_only_kit_errors_naming_the_file(tmp_path, content, ext):
    path = tmp_path / f"fuzz{ext}"
    path.write_bytes(content)
    try:
        arr = read_image(path, 8, channels=3)
    except ImageError as e:
        assert str(e).startswith(str(path) + ": ") and "\n" not in str(e)
    else:
        assert arr.shape == (8, 8, 3) and arr.dtype == np.uint8


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.integers(0, 2**32 - 1), st.integers(1, 40))
def test_loader_fuzz_mutated_real_images(tmp_path, seed, flips):
    """Real PNG/JPEG bytes with random bytes changed: decoded or a kit error, never anything else."""
    import io

    from PIL import Image

    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (12, 12, 3), dtype=np.uint8)).save(buf, ["PNG", "JPEG"][seed % 2])
    data = bytearray(buf.getvalue())
    for i in rng.integers(0, len(data), flips):
        data[i] = int(rng.integers(0, 256))
    path = tmp_path / "m.img"
    path.write_bytes(bytes(data))
    try:
        read_image(path, 8, channels=1)
    except ImageError as e:
        assert str(e).startswith(str(path) + ": ")
