"""Property tests for #30: random archives, pixel tables, label maps, name patterns, linked tables and outputs
through links. Whatever the input: no traceback, exit 0 or 2 with one `Error:` line, the user's files unchanged
and nothing written outside kit's cache and the named output. CI runs a fixed, small number of examples;
KIT_PROPERTY_EXAMPLES=500 runs many more by hand."""

import io
import os
import shutil
import tarfile
import zipfile

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import folder_hash, make_av_folder, make_image, write_csv
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from kit.answers import Answer, checked_label_map
from kit.cli import cli
from kit.config import Config
from kit.errors import KitError

EXAMPLES = int(os.environ.get("KIT_PROPERTY_EXAMPLES", "15"))
PROPERTY = settings(max_examples=EXAMPLES, deadline=None, derandomize=EXAMPLES <= 50,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


def checked(*args, env=None):
    """kit in this process: exit 0, or 2 with exactly one Error line; never a traceback."""
    result = CliRunner().invoke(cli, [str(a) for a in args], env=env)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    assert "Traceback" not in result.output
    lines = result.output.splitlines()
    errors = [line for line in lines if line.startswith("Error:")]
    listed = [line for line in lines if line.startswith("error: ")]  # `kit validate` lists every bad row
    assert result.exit_code in (0, 2), result.output
    assert len(errors) <= 1 and (result.exit_code == 2) == bool(errors or listed), result.output
    return result, errors or listed


def png(seed: int) -> bytes:
    out = io.BytesIO()
    make_image("cat", seed).save(out, format="PNG")
    return out.getvalue()


MEMBER_NAMES = st.sampled_from([
    "test/00024.png", "test/00025.png", "test/sub/00026.png", "00027.png", "test/00028.PNG", "sample_submission.csv",
    "../evil.png", "/abs.png", "C:/win.png", "__MACOSX/test/._00024.png", "test/._00029.png", "test", "test/x/y.png",
    "test/00024.png", "dir/../../up.png", "train.zip", "test/\u00e9.png", "test/a b.png",
])
PAYLOADS = st.sampled_from(["png", "random", "zeros", "empty", "csv"])
DAMAGE = st.sampled_from(["none", "none", "none", "encrypted", "deflate64", "truncated", "flip", "symlink"])


def _payload(kind: str, seed: int) -> bytes:
    return {"png": png(seed), "random": np.random.default_rng(seed).bytes(300), "zeros": b"\0" * (3 << 20),
            "empty": b"", "csv": b"id,label\n1,cat\n"}[kind]


def _write_zip(path, members, method, damage):
    with zipfile.ZipFile(path, "w") as z:
        for name, data in members:
            info = zipfile.ZipInfo(name)
            info.compress_type = method
            if damage == "symlink" and name.endswith(".png"):
                info.external_attr = 0o120777 << 16
            z.writestr(info, data)
    raw = bytearray(path.read_bytes())
    if damage == "encrypted":
        raw[6] |= 1
        central = raw.find(b"PK\x01\x02")
        raw[central + 8] |= 1
    elif damage == "deflate64":
        raw[8] = 9
        central = raw.find(b"PK\x01\x02")
        raw[central + 10] = 9
    elif damage == "truncated":
        raw = raw[: max(10, len(raw) // 2)]
    elif damage == "flip" and len(raw) > 80:
        for i in range(40, 70):
            raw[i] ^= 0xA5
    path.write_bytes(bytes(raw))


def _write_tar(path, members, damage):
    with tarfile.open(path, "w:gz") as t:
        for name, data in members:
            info = tarfile.TarInfo(name)
            if damage == "symlink" and name.endswith(".png"):
                info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
                t.addfile(info)
                continue
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    if damage == "truncated":
        path.write_bytes(path.read_bytes()[:max(10, path.stat().st_size // 2)])


@PROPERTY
@given(names=st.lists(MEMBER_NAMES, min_size=1, max_size=8), payloads=st.lists(PAYLOADS, min_size=8, max_size=8),
       method=st.sampled_from([zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA]),
       damage=DAMAGE, kind=st.sampled_from(["test.zip", "test.tar.gz", "comp.zip"]))
def test_random_archives_never_escape(tmp_path_factory, names, payloads, method, damage, kind):
    tmp = tmp_path_factory.mktemp("arch")
    data = make_av_folder(tmp / "D")
    shutil.rmtree(data / "test")
    members = [(n, _payload(p, i)) for i, (n, p) in enumerate(zip(names, payloads))]
    if kind.endswith(".zip"):
        _write_zip(data / kind, members, method, damage)
    else:
        _write_tar(data / kind, members, damage)
    outside = folder_hash(tmp)
    result, errors = checked("validate", data, env={"KIT_CACHE_DIR": str(tmp / "cache")})
    assert {k: v for k, v in folder_hash(tmp).items() if not k.startswith("cache")} == outside
    for path in (tmp / "cache").rglob("*"):  # whatever was extracted stayed in the cache
        assert os.path.realpath(path).startswith((str(tmp / "cache"), str(data)))


@PROPERTY
@given(side=st.sampled_from([4, 5, 7]), rgb=st.booleans(), order=st.randoms(use_true_random=False),
       first=st.sampled_from([0, 1, 2]), gap=st.booleans(), label_at=st.integers(0, 3),
       bad=st.sampled_from(["none", "none", "blank", "256", "1.5", "-1", "x"]),
       test_side=st.sampled_from(["same", "same", "other", "none"]))
def test_random_pixel_tables_are_read_in_pixel_order_or_refused(tmp_path_factory, side, rgb, order, first, gap,
                                                                  label_at, bad, test_side):
    tmp = tmp_path_factory.mktemp("pix")
    data = tmp / "D"
    data.mkdir()
    n = side * side * (3 if rgb else 1)
    numbers = [i + first for i in range(n)]
    if gap:
        numbers[n // 2] += n
    columns = [f"pixel{i}" for i in numbers]
    rng = np.random.default_rng(side)
    rows = rng.integers(0, 256, (6, n)).tolist()
    shuffled = list(range(n))
    order.shuffle(shuffled)
    header = [columns[i] for i in shuffled]
    header.insert(label_at, "label")
    body = []
    for k, row in enumerate(rows):
        cells = [str(row[i]) for i in shuffled]
        cells.insert(label_at, "ab"[k % 2])
        body.append(cells)
    if bad != "none":
        body[3][0 if label_at else 1] = "" if bad == "blank" else bad
    write_csv(data / "train.csv", header, body)
    if test_side != "none":
        t = n if test_side == "same" else n + 3 * 3
        write_csv(data / "test.csv", [f"pixel{i}" for i in range(t)], [[0] * t] * 2)
    before = folder_hash(data)
    result, errors = checked("validate", data, env={"KIT_CACHE_DIR": str(tmp / "cache")})
    assert folder_hash(data) == before
    clean = first in (0, 1) and not gap and bad == "none" and test_side != "other"
    assert (result.exit_code == 0) == clean, result.output
    if clean:  # each row's image holds its pixels in their numbered order
        from kit.data import load_competition

        comp = load_competition(data)
        image = np.asarray(Image.open(sorted(comp.train["path"])[0]))
        assert np.array_equal(image.ravel(), np.asarray(rows[0], dtype=np.uint8))


@PROPERTY
@given(pairs=st.lists(st.tuples(st.sampled_from(["cat", "dog", "emu", "Cat", " cat", ""]),
                                st.sampled_from(["0", "1", "2", "", "dog", " 1"])), max_size=4),
       kind=st.sampled_from(["label", "label", "probability", "probabilities"]))
def test_random_label_maps_are_exact_or_refused(pairs, kind):
    text = ",".join(f"{k}={v}" for k, v in pairs)
    classes = ["cat", "dog"]
    try:
        mapping = checked_label_map(Config(label_map=text).validate(), classes, Answer(kind, positive="dog"))
    except KitError as e:
        assert "\n" not in str(e)
        return
    if mapping:  # accepted: exactly the classes, distinct non-empty values, and only for labels
        assert kind == "label" and sorted(mapping) == classes
        assert len(set(mapping.values())) == 2 and all(v.strip() for v in mapping.values())
    else:
        assert not text.strip(", ")


PATTERN_PARTS = ["^", "(", ")", "[a-z]+", "(a|aa)+", "?", "*", "\\.", "$", "(cat|dog)", ".*", "\\d+", "(?:x)", "{2}",
                 "[", "\\"]


@PROPERTY
@given(parts=st.lists(st.sampled_from(PATTERN_PARTS), min_size=1, max_size=7))
def test_random_name_patterns_are_one_line_and_never_hang(tmp_path_factory, parts):
    tmp = tmp_path_factory.mktemp("names")
    data = tmp / "N"
    (data / "train").mkdir(parents=True)
    for k, name in enumerate(["cat.1.png", "dog.2.png", "cat.3.png", "dog.4.png", "a" * 30 + ".png"]):
        make_image("cat", k).save(data / "train" / name)
    checked("validate", data, "--label-from-name", "".join(parts))


LINKABLE = ["train.csv", "test.csv", "sample_submission.csv", "train", "test", "train/00001.png"]


@PROPERTY
@given(entry=st.sampled_from(LINKABLE), outside=st.booleans(), follow=st.booleans())
def test_random_links_out_are_refused_unless_followed(tmp_path_factory, entry, outside, follow):
    tmp = tmp_path_factory.mktemp("links")
    data = make_av_folder(tmp / "D")
    target = (tmp / "elsewhere" / entry) if outside else (data / "inside" / entry)
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(data / entry, target)
    (data / entry).symlink_to(target)
    before = folder_hash(tmp)
    result, errors = checked("validate", data, *(["--follow-symlinks"] if follow else []),
                             env={"KIT_CACHE_DIR": str(tmp / "cache")})
    assert folder_hash(tmp) == before
    if outside and not follow:
        assert errors and "leads outside the data folder" in errors[0], result.output
    else:
        assert result.exit_code == 0, result.output


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("run")
    data = make_av_folder(tmp / "comp")
    result, _ = checked("train", data, "--runs-dir", tmp / "runs", "--name", "r", "--epochs", "1", "--image-size",
                        "8", "--augment", "none")
    assert result.exit_code == 0, result.output
    return tmp / "runs" / "r"


@PROPERTY
@given(link_at=st.sampled_from(["folder", "file", "parent"]), command=st.sampled_from(["make-submission", "export"]),
       force=st.booleans())
def test_writes_never_cross_a_link(finished_run, tmp_path_factory, link_at, command, force):
    tmp = tmp_path_factory.mktemp("out")
    keep = tmp / "keep"
    (keep / "inner").mkdir(parents=True)
    (keep / "mine.csv").write_text("mine\n")
    (keep / "inner" / "mine.csv").write_text("mine\n")
    if link_at == "folder":
        (tmp / "via").symlink_to(keep)
        output = tmp / "via" / ("mine.csv" if command == "make-submission" else "inner")
    elif link_at == "file":
        (tmp / "sub.csv").symlink_to(keep / "mine.csv")
        output = tmp / "sub.csv"
    else:
        (tmp / "up").symlink_to(keep)
        output = tmp / "up" / "inner" / "new.csv"
    before = folder_hash(keep)
    result, errors = checked(command, finished_run, "-o", output, *(["--force"] if force else []))
    assert folder_hash(keep) == before
    assert errors and "link" in errors[0], result.output
