"""#31, item 5: kit reads any published-style competition folder by its content.

(a) A property over generated layouts (tests/layouts.py): kit.data.load_competition reads exactly the truth's
(image, label) pairs for training (+ validation), never an official test image among them, and the test ids in the
sample's order — or, where the layout is genuinely ambiguous, stops with one line holding a `kit run DATA …` command
whose flags then read the truth. CI runs fixed seeds (derandomize); by hand, many more:

    KIT_LAYOUT_EXAMPLES=2000 .venv/bin/python -m pytest tests/test_layout_properties.py -n 0 -q
    .venv/bin/python tests/test_layout_properties.py 500      # every failure, tallied by family, without stopping

(b) One test per real layout rebuilt at its real file names, columns and id formats (tests/layouts.py).
Images are compared by their decoded pixels, so a derived folder (zips, pixel tables), a link or a nested copy of
the folder reads as the same image; paths in messages are real paths relative to the data folder.
"""

import os
import random
import re
import shlex
import sys
import tempfile
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).parent))
from layouts import REAL_LAYOUTS, Layout, Maker, generate, image_hash  # noqa: E402

from kit.data import load_competition  # noqa: E402
from kit.errors import KitError  # noqa: E402

FLAGS = {"--train-csv": "train_csv", "--label-col": "label_col", "--train-images": "train_images",
         "--test-images": "test_images", "--test-csv": "test_csv", "--sample": "sample",
         "--label-from-name": "label_from_name"}
COMMAND = re.compile(r"kit run (.*)$")


def _shown(path, layout: Layout) -> str:
    real = os.path.realpath(path)
    data = os.path.realpath(layout.data)
    return os.path.relpath(real, data) if real.startswith(data + os.sep) else str(path)


def _hash(path) -> str:
    """The pixel hash of an image kit reads, or a mark naming a file that is no image (junk read as one)."""
    try:
        return image_hash(path)
    except Exception as e:  # noqa: BLE001 - any undecodable file is a finding, not a crash
        return f"<not an image: {type(e).__name__}>"


def _read_pairs(comp, layout: Layout) -> list[tuple[str, str, str]]:
    """(pixel hash, label, shown path) of every image kit trains on: comp.train and comp.validation."""
    frames = [f for f in (comp.train, comp.validation) if f is not None and len(f)]
    return [(_hash(p), str(lab), _shown(p, layout)) for f in frames for p, lab in zip(f["path"], f["label"])]


def _few(items, n=4) -> str:
    items = sorted(items)
    return ", ".join(map(str, items[:n])) + (f" … ({len(items)} in all)" if len(items) > n else "")


def truth_mismatch(comp, layout: Layout, train=None, test_keys=None) -> str:
    """'' when comp is the truth (or the given alternative); else what differs, in one paragraph."""
    train = layout.train if train is None else train
    test_keys = layout.test_keys if test_keys is None else test_keys
    key_of = {h: k for k, h in layout.content.items()}
    pairs = _read_pairs(comp, layout)
    wrong = []
    tests = {layout.content[k] for k in test_keys}
    trained_tests = [p for h, _, p in pairs if h in tests]
    if trained_tests:
        wrong.append(f"trains on {len(trained_tests)} official test image(s): {_few(trained_tests)}")
    if not pairs:
        wrong.append("reads no training image at all, and raises no error")
    truth = Counter((layout.content[k], lab) for k, lab in train.items())
    if not layout.exact_labels:  # any one-to-one renaming of the labels is right
        truth_label = {layout.content[k]: lab for k, lab in train.items()}
        renames = {(lab, truth_label[h]) for h, lab, _ in pairs if h in truth_label}
        if len({a for a, _ in renames}) == len(renames) == len({b for _, b in renames}):
            pairs = [(h, dict(renames).get(lab, lab), p) for h, lab, p in pairs]
    read = Counter((h, lab) for h, lab, _ in pairs)
    missing, extra = truth - read, read - truth
    if missing:
        wrong.append(f"misses {sum(missing.values())} of {len(train)} truth pair(s): "
                     + _few(f"{key_of[h]}={lab}" for h, lab in missing))
    if extra:
        where = {(h, lab): p for h, lab, p in pairs}
        wrong.append(f"reads {sum(extra.values())} pair(s) not in the truth: "
                     + _few(f"{where[hl]}={hl[1]}" + ("" if hl[0] in key_of else " (not a truth image)") for hl in extra))
    test = comp.test if comp.test is not None and len(comp.test) else None
    if layout.test is not None:
        ids = None if test is None else [str(i) for i in test["id"]]
        if ids != layout.test:
            wrong.append(f"test ids {None if ids is None else _few(ids)} (in order) instead of the sample's "
                         f"{_few(layout.test)}")
    if test_keys and test is not None:
        got = {_hash(p): p for p in test["path"] if isinstance(p, str) and os.path.isfile(p)}
        if set(got) != tests:
            others = [_shown(p, layout) for h, p in got.items() if h not in tests]
            wrong.append(f"test images differ: {len(tests - set(got))} official test image(s) missing, "
                         f"{len(others)} other file(s) among them{': ' + _few(others) if others else ''}")
    elif test_keys and layout.test is None:
        wrong.append(f"no test images; expected {len(tests)} ({_few(test_keys, 2)})")
    elif not test_keys and test is not None:
        wrong.append(f"test images {_few(map(str, test['id']), 3)} where the layout has no test set")
    return "; ".join(wrong)


def command_flags(message: str) -> dict | None:
    """The flags of the `kit run DATA …` command in a one-line refusal, as load_competition's keywords; None when
    the line holds no such command."""
    match = COMMAND.search(message.replace("`", " "))
    if not match:
        return None
    try:
        tokens = shlex.split(match.group(1))
    except ValueError:
        tokens = match.group(1).split()
    flags, i = {}, 1  # tokens[0] is DATA
    while i < len(tokens):
        name, _, value = tokens[i].partition("=")
        if name not in FLAGS:
            i += 1
            continue
        if not value:
            value, i = (tokens[i + 1] if i + 1 < len(tokens) else ""), i + 1
        flags[FLAGS[name]] = value.rstrip(".;,)")
        i += 1
    return flags


def _refusal_verdict(layout: Layout, message: str) -> str:
    """'' when the refusal's command reads the truth (or an alternative); else why not."""
    if "\n" in message:
        return f"the refusal is not one line: {message!r}"
    flags = command_flags(message)
    if flags is None:
        return f"refused without a `kit run DATA …` command: {message}"
    try:
        comp = load_competition(layout.data, **flags)
    except KitError as e:
        return f"refused: {message} — and its command's flags {flags} are refused too: {e}"
    verdicts = [truth_mismatch(comp, layout)] + [truth_mismatch(comp, layout, t, k) for t, k in layout.alternatives]
    if all(verdicts):
        return f"refused: {message} — its command's flags {flags} read wrongly: {verdicts[0]}"
    return ""


def verdict(layout: Layout) -> str:
    """'' when kit does what the layout expects; else one paragraph saying what it did."""
    try:
        comp = load_competition(layout.data)
    except KitError as e:
        message = str(e)
        problem = _refusal_verdict(layout, message)
        if layout.expected == "read":
            return f"refused a layout it must read: {message}" + (f" [{problem}]" if problem else
                                                                   " [its command works]")
        return problem
    if layout.expected == "refuse":
        return f"read a genuinely ambiguous layout without asking (train from {comp.train_file})"
    problem = truth_mismatch(comp, layout)
    return f"read wrongly (train from {comp.train_file}, test from {comp.test_file}): {problem}" if problem else ""


def check(layout: Layout) -> None:
    problem = verdict(layout)
    assert not problem, f"{layout.name}: {problem}\n  layout: {layout.describe()}"


# ---------------------------------------------------------------------------------------------- (a)


@settings(max_examples=int(os.environ.get("KIT_LAYOUT_EXAMPLES", "20")), derandomize=True, deadline=None,
          database=None, phases=[Phase.explicit, Phase.generate],  # a seed does not shrink to a simpler layout
          suppress_health_check=list(HealthCheck))
@given(seed=st.integers(0, 2**31 - 1))
def test_any_generated_layout_is_read_exactly_or_refused_with_a_working_command(seed):
    with tempfile.TemporaryDirectory(prefix="kit-layout-") as tmp:
        check(generate(Path(tmp), seed))


def test_the_generator_knows_its_truth(tmp_path):
    """The generator's own invariants: distinct pixels, test images apart from training ones, each family made."""
    families = Counter()
    for seed in range(60):
        layout = generate(tmp_path, seed)
        families[layout.name.split("#")[0]] += 1
        assert layout.train and set(layout.train) <= set(layout.content)
        assert not set(layout.train) & set(layout.test_keys)
        assert layout.expected in ("read", "refuse")
    assert len(families) >= 6, families


def test_the_checker_tells_right_from_wrong_and_runs_the_refusals_command(tmp_path):
    """The harness itself: a layout kit reads today passes, the same with one label changed does not; a refusal's
    `kit run DATA …` command is parsed and run, and one that reads nothing right is a failure."""
    m = Maker(tmp_path / "plain", "plain", random.Random(0))
    for i, c in enumerate(("cat", "dog")):
        for k in range(3):
            m.train(m.image(f"train/{c}/{c}{k}.png", i), c)
    layout = m.done(["cat", "dog"])
    assert verdict(layout) == ""
    first = sorted(layout.train)[0]
    layout.train[first] = "emu"
    assert "misses 1 of 6" in verdict(layout)
    layout.train[first] = "cat"
    layout.expected = "refuse"
    assert "without asking" in verdict(layout)
    assert command_flags("x.csv: 2 tables; run `kit run /d --train-images train,extra --label-col 'my label'`") == \
        {"train_images": "train,extra", "label_col": "my label"}
    assert _refusal_verdict(layout, "ambiguous; run `kit run DATA --train-images train`") == ""
    assert "refused too" in _refusal_verdict(layout, "ambiguous; run `kit run DATA --train-images nowhere`")
    assert "without a `kit run" in _refusal_verdict(layout, "ambiguous; pass --train-images FOLDER")


# ---------------------------------------------------------------------------------------------- (b)


def test_caltech101_class_folders_one_level_down(tmp_path):
    check(REAL_LAYOUTS["caltech101"](tmp_path))


def test_stanford_dogs_class_folders_beside_annotations(tmp_path):
    check(REAL_LAYOUTS["stanford_dogs"](tmp_path))


def test_food101_meta_split_lists(tmp_path):
    check(REAL_LAYOUTS["food101"](tmp_path))


def test_chest_xray_splits_nested_copy_and_macosx(tmp_path):
    check(REAL_LAYOUTS["chest_xray"](tmp_path))


def test_state_farm_nested_class_folders_with_a_drivers_table(tmp_path):
    check(REAL_LAYOUTS["state_farm"](tmp_path))


def test_oxford_pets_split_lists_and_class_in_the_name(tmp_path):
    check(REAL_LAYOUTS["oxford_pets"](tmp_path))


def test_plant_pathology_one_hot_labels(tmp_path):
    check(REAL_LAYOUTS["plant_pathology"](tmp_path))


def test_ham10000_id_not_the_first_column_images_in_two_parts(tmp_path):
    check(REAL_LAYOUTS["ham10000"](tmp_path))


def test_fer2013_pixel_strings_and_usage_column(tmp_path):
    check(REAL_LAYOUTS["fer2013"](tmp_path))


def test_kannada_mnist_extra_labelled_table_is_not_the_answer_key(tmp_path):
    from kit.sources import answer_key

    layout = REAL_LAYOUTS["kannada_mnist"](tmp_path)
    check(layout)
    key = answer_key(layout.data)
    assert key is None, f"an answer key was made for test.csv: {key} (Dig-MNIST.csv holds other images)"


def test_av_emergency_vehicles_train_and_test_images_in_one_folder(tmp_path):
    check(REAL_LAYOUTS["av_emergency"](tmp_path))


def test_a_folder_of_npy_arrays_is_refused_in_one_line_naming_the_format(tmp_path):
    layout = REAL_LAYOUTS["npy_arrays"](tmp_path)
    with pytest.raises(KitError) as caught:
        load_competition(layout.data)
    message = str(caught.value)
    assert "\n" not in message and re.search(r"\.npy|numpy", message, re.IGNORECASE), message


# ------------------------------------------------------------------------------------------ by hand


def main(n: int, first: int = 0) -> None:
    """Every failure over seeds first..first+n-1, tallied by family (what the property test stops at the first of)."""
    tally, failures = Counter(), Counter()
    for seed in range(first, first + n):
        with tempfile.TemporaryDirectory(prefix="kit-layout-") as tmp:
            layout = generate(Path(tmp), seed)
            family = layout.name.split("#")[0]
            tally[family] += 1
            problem = verdict(layout)
            if problem:
                failures[family] += 1
                print(f"seed {seed} {family} ({layout.notes}): {problem}"[:600])
    for family in sorted(tally):
        print(f"{family:15s} {tally[family] - failures[family]:5d} / {tally[family]:5d} pass")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 100, int(sys.argv[2]) if len(sys.argv) > 2 else 0)
