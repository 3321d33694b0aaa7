"""Published-style competition folders with a known truth (#31, item 5): a random generator for the property test
and rebuilds of real layouts, all from tiny images.

A Layout's truth is what kit must train on and predict, independent of how kit names things:
- `train`: key → label for every image kit must train on (training + validation). A key is the image file's path
  relative to the data folder, or `table.csv:LINE` for an image stored as pixels in a table;
- `test`: the test ids in the sample's order (or the test table's), or None when only the test images are known;
- `test_keys`: every official test image (never to be trained on; kit's test images when there is no sample);
- `content`: key → a hash of the decoded pixels, so an image is recognised wherever kit reads it from (a derived
  folder of extracted zips or converted pixel tables, a link, a nested copy of the folder).
`expected` is "read" (kit must read it as published, without flags) or "refuse" (genuinely ambiguous: kit must
stop with one line holding a `kit run DATA …` command that reads one of `alternatives`).
"""

import hashlib
import json
import random
import shutil
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from conftest import make_image, write_csv
from PIL import Image

PATTERN_NAMES = ("cat", "dog", "emu")
SIZES = (8, 10, 12)


def pixels_hash(array: np.ndarray) -> str:
    return hashlib.sha1(np.ascontiguousarray(array, dtype=np.uint8).tobytes()).hexdigest()


def image_hash(path) -> str:
    """The decoded pixels of an image file, in gray, hashed: the same for a file and any copy of it."""
    with Image.open(path) as im:
        return pixels_hash(np.asarray(im.convert("L")))


@dataclass
class Layout:
    name: str
    data: Path
    train: dict = field(default_factory=dict)  # key → label
    test: list | None = None  # test ids in the sample's (or test table's) order
    test_keys: list = field(default_factory=list)  # official test images
    classes: list = field(default_factory=list)
    expected: str = "read"
    content: dict = field(default_factory=dict)  # key → pixel hash
    exact_labels: bool = True  # False: any one-to-one renaming of the labels is right (no sample names them)
    alternatives: list = field(default_factory=list)  # for "refuse": other (train, test_keys) truths that are right
    notes: str = ""

    def describe(self) -> str:
        files = sorted(str(p.relative_to(self.data)) for p in self.data.rglob("*") if p.is_file())
        shown = files if len(files) <= 40 else files[:40] + [f"… {len(files) - 40} more"]
        return f"{self.name} ({self.expected}; {self.notes}): " + ", ".join(shown)


class Maker:
    """Writes tiny, pairwise distinct images and tables under a data folder, recording their truth."""

    def __init__(self, data: Path, name: str, rng: random.Random, size: int = 10):
        self.layout = Layout(name=name, data=data)
        self.data, self.rng, self.size = data, rng, size
        self.seed = rng.randrange(1 << 20) * 1000

    def _array(self, label_index: int) -> np.ndarray:
        self.seed += 1
        return np.asarray(make_image(PATTERN_NAMES[label_index % 3], self.seed, size=self.size))

    def image(self, rel: str, label_index: int = 0, mode: str = "RGB") -> str:
        """An image file at rel; returns rel. Its pixel hash is recorded (jpg is lossy: hashed as decoded)."""
        path = self.data / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        im = Image.fromarray(self._array(label_index), "L")
        im = im.convert(mode) if mode != "L" else im
        suffix = path.suffix.lower()
        im.save(path, format="JPEG" if suffix in (".jpg", ".jpeg") else "PNG" if suffix == ".png" else None,
                **({"quality": 95} if suffix in (".jpg", ".jpeg") else {}))
        self.layout.content[rel] = image_hash(path)
        return rel

    def pixel_row(self, key: str, label_index: int, side: int = 8) -> list[int]:
        """A row of pixel values (side × side gray), recorded under key."""
        saved, self.size = self.size, side
        array = self._array(label_index)
        self.size = saved
        self.layout.content[key] = pixels_hash(array)
        return array.reshape(-1).tolist()

    def train(self, key: str, label) -> None:
        self.layout.train[key] = str(label)

    def csv(self, rel: str, header, rows) -> None:
        (self.data / rel).parent.mkdir(parents=True, exist_ok=True)
        write_csv(self.data / rel, header, rows)

    def text(self, rel: str, text: str) -> None:
        (self.data / rel).parent.mkdir(parents=True, exist_ok=True)
        (self.data / rel).write_text(text, encoding="utf-8")

    def done(self, classes) -> Layout:
        layout = self.layout
        layout.classes = sorted({str(c) for c in classes})
        hashes = list(layout.content.values())
        assert len(set(hashes)) == len(hashes), "two generated images have the same pixels"
        return layout


# ------------------------------------------------------------------------------------------------ names

CLASS_POOLS = (
    ["cat", "dog", "emu"], ["NORMAL", "PNEUMONIA"], ["daisy", "rose", "tulip", "dandelion"],
    ["Abyssinian", "Bengal", "beagle"], ["c0", "c1", "c2"], ["akiec", "bcc", "mel", "nv"],
    ["apple_pie", "baby back ribs", "Sushi"], ["0", "1", "2"],
)
FILE_NAMES = (
    lambda c, k: f"img{k}.jpg", lambda c, k: f"{c}_{k}.png", lambda c, k: f"IMG_{k:04d}.JPG",
    lambda c, k: f"{k}.jpeg", lambda c, k: f"image_{k:04d}.jpg",
)
ID_COLUMNS = ("id", "image_id", "image", "filename", "Filename", "file_name", "img", "image_names", "ImageId")
LABEL_COLUMNS = ("label", "class", "category", "dx", "species", "target", "breed", "Id")
TABLE_NAMES = ("train.csv", "labels.csv", "train_labels.csv", "trainLabels.csv", "metadata.csv", "train_v2.csv")
IMAGE_FOLDERS = ("images", "train", "train_images", "Images/train", "data/images", "jpg")
WRAPPERS = ("competition", "dataset", "comp")


def _n(rng, low=3, high=5):
    return rng.randint(low, high)


# -------------------------------------------------------------------------------------- the families


def gen_class_folders(m: Maker, rng: random.Random, base: str) -> Layout:
    """Class folders at some depth, maybe with val/ and test/ beside them, annotations/ beside, a sample."""
    classes = rng.choice(CLASS_POOLS)
    depth = rng.choice(["", "train/", "X/images/", "data/X/train/"]).replace("X", rng.choice(["Flowers", "dataset",
                                                                                           "seg", "101_Objects"]))
    name_of = rng.choice(FILE_NAMES)
    k = 0
    for i, c in enumerate(classes):
        for _ in range(_n(rng)):
            m.train(m.image(f"{base}{depth}{c}/{name_of(c, k)}", i), c)
            k += 1
    notes = [f"classes in {depth or './'}"]
    split = depth.endswith("train/")
    parent = base + depth[: -len("train/")] if split else base
    if split and rng.random() < 0.5:
        val = rng.choice(["val", "valid", "validation"])
        for i, c in enumerate(classes):
            for _ in range(2):
                m.train(m.image(f"{parent}{val}/{c}/{name_of(c, k)}", i), c)
                k += 1
        notes.append(f"{val}/ labelled")
    if not split and rng.random() < 0.5:  # class folders beside a folder of annotations (Stanford Dogs)
        where = base + (depth.rsplit("/", 2)[0] + "/" if depth.count("/") >= 2 else "")
        for c in classes[:2]:
            m.text(f"{where}annotations/{c}/{c}_0.xml", f"<annotation><name>{c}</name></annotation>")
        m.text(f"{where}annotations/list.txt", "\n".join(f"{c} {i}" for i, c in enumerate(classes)) + "\n")
        notes.append("annotations/ beside")
    test_dir = f"{parent}test/" if split else f"{base}test/"
    kind = rng.choice(["none", "flat", "labelled", "sample"] if split else ["none", "flat", "sample"])
    if kind == "labelled":
        for i, c in enumerate(classes):
            for _ in range(2):
                m.layout.test_keys.append(m.image(f"{test_dir}{c}/{name_of(c, k)}", i))
                k += 1
    elif kind in ("flat", "sample"):
        names = [f"t{j}.jpg" for j in range(_n(rng))]
        m.layout.test_keys = [m.image(f"{test_dir}{name}", j) for j, name in enumerate(names)]
        if kind == "sample":
            ext = rng.random() < 0.5
            ids = [n if ext else n[:-4] for n in names]
            rng.shuffle(ids)
            m.csv(base + rng.choice(["sample_submission.csv", "sampleSubmission.csv", "submission_format.csv"]),
                  [rng.choice(["id", "file", "image_id"]), rng.choice(["label", "class"])], [(i, classes[0]) for i in ids])
            m.layout.test = ids
    notes.append(f"test: {kind}")
    m.layout.notes = ", ".join(notes)
    return m.done(classes)


def _id_case(rng):
    return rng.choice([str, str, str.lower, str.upper])


def gen_table(m: Maker, rng: random.Random, base: str) -> Layout:
    """A table of ids and labels (id column anywhere, extra columns), images in a folder, test table and sample."""
    classes = rng.choice(CLASS_POOLS)
    id_col, label_col = rng.choice(ID_COLUMNS), rng.choice(LABEL_COLUMNS)
    folder = rng.choice(IMAGE_FOLDERS) + "/"
    stem_of = rng.choice([lambda k: f"ISIC_{k:07d}", lambda k: f"{k}", lambda k: f"img_{k:04d}", lambda k: f"Train_{k}"])
    ext = rng.choice([".jpg", ".png", ".JPG", ".jpeg"])
    with_ext, case = rng.random() < 0.5, _id_case(rng)
    extra = rng.choice(["none", "none", "lesion", "index_classname"])
    rows, k = [], 0
    for i, c in enumerate(classes):
        for _ in range(_n(rng)):
            rel = m.image(f"{base}{folder}{stem_of(k)}{ext}", i)
            m.train(rel, c if extra != "index_classname" else i)
            rows.append((case(stem_of(k) + (ext if with_ext else "")), c, i, k))
            k += 1
    rng.shuffle(rows)
    if extra == "lesion":  # HAM10000: the lesion's id first, the image's second; lesions repeat
        header = ["lesion_id", id_col, label_col, "age", "sex"]
        body = [(f"HAM_{k // 2:07d}", i, c, 40 + k, "male") for i, c, _, k in rows]
    elif extra == "index_classname":  # index, Filename, Label (a number), ClassName
        header, body = ["index", id_col, label_col, "ClassName"], [(n, i, ci, c) for n, (i, c, ci, _) in
                                                                   enumerate(rows)]
        m.layout.exact_labels = False
    else:
        header, body = [id_col, label_col], [(i, c) for i, c, _, _ in rows]
        if rng.random() < 0.3:
            header, body = header[::-1], [r[::-1] for r in body]
    table = rng.choice(TABLE_NAMES)
    m.csv(base + table, header, body)
    notes = [f"{table} {header}", f"images in {folder}", "ids with ext" if with_ext else "ids without ext"]
    kind = rng.choice(["none", "test_table", "sample_only"])
    if kind != "none":
        test_folder = rng.choice([folder, "test/", "test_images/"])
        ids = []
        for j in range(_n(rng)):
            m.layout.test_keys.append(m.image(f"{base}{test_folder}{stem_of(500 + j)}{ext}", j))
            ids.append(case(stem_of(500 + j) + (ext if with_ext else "")))
        rng.shuffle(ids)
        test_id = id_col if rng.random() < 0.7 else "id"
        if kind == "test_table":
            m.csv(base + "test.csv", [test_id], [(i,) for i in ids])
        first = str(classes[0])
        m.csv(base + rng.choice(["sample_submission.csv", "sampleSubmission.csv", "SampleSubmission.csv"]),
              [test_id, label_col if extra != "index_classname" else "Label"], [(i, first) for i in ids])
        m.layout.test = ids
    notes.append(f"test: {kind}")
    m.layout.notes = ", ".join(notes)
    return m.done(classes if extra != "index_classname" else range(len(classes)))


def gen_one_hot(m: Maker, rng: random.Random, base: str) -> Layout:
    """Plant Pathology style: image_id + one column per class of 1/0 (or 1.0/0.0), a sample of probabilities."""
    classes = rng.choice([["healthy", "multiple_diseases", "rust", "scab"], ["MEL", "NV", "BCC", "AKIEC"],
                          ["cat", "dog", "emu"]])
    one, zero = rng.choice([("1", "0"), ("1.0", "0.0")])
    folder = rng.choice(["images/", "train/", ""])
    id_col = rng.choice(["image_id", "image", "id"])
    rows, k = [], 0
    for i, c in enumerate(classes):
        for _ in range(_n(rng)):
            m.train(m.image(f"{base}{folder}Train_{k}.jpg", i), c)
            rows.append([f"Train_{k}"] + [one if j == i else zero for j in range(len(classes))])
            k += 1
    rng.shuffle(rows)
    m.csv(base + "train.csv", [id_col] + classes, rows)
    ids = [f"Test_{j}" for j in range(_n(rng))]
    test_folder = folder if folder != "train/" else "test/"
    m.layout.test_keys = [m.image(f"{base}{test_folder}{i}.jpg", j) for j, i in enumerate(ids)]
    m.csv(base + "test.csv", [id_col], [(i,) for i in ids])
    p = f"{1 / len(classes):.2f}"
    m.csv(base + "sample_submission.csv", [id_col] + classes, [[i] + [p] * len(classes) for i in ids])
    m.layout.test = ids
    m.layout.notes = f"one-hot {one}/{zero}, images in {folder or './'}"
    return m.done(classes)


def gen_split_lists(m: Maker, rng: random.Random, base: str) -> Layout:
    """Official split lists: Food-101's meta/train.txt + test.txt (class/stem), or Oxford Pets'
    annotations/trainval.txt + test.txt (Stem classid species breedid; the class is the stem before its last _)."""
    if rng.random() < 0.5:
        classes = ["apple_pie", "bibimbap", "sushi"]
        lines = {"train": [], "test": []}
        for i, c in enumerate(classes):
            for j in range(_n(rng, 4, 6)):
                stem = str(100000 + i * 100 + j)
                rel = m.image(f"{base}food-101/images/{c}/{stem}.jpg", i)
                split = "test" if j < 2 else "train"
                lines[split].append(f"{c}/{stem}")
                if split == "train":
                    m.train(rel, c)
                else:
                    m.layout.test_keys.append(rel)
        for split, entries in lines.items():
            m.text(f"{base}food-101/meta/{split}.txt", "\n".join(entries) + "\n")
        m.text(f"{base}food-101/meta/classes.txt", "\n".join(classes) + "\n")
        m.text(f"{base}food-101/meta/labels.txt", "\n".join(c.replace("_", " ").title() for c in classes) + "\n")
        m.text(f"{base}food-101/meta/train.json", json.dumps({c: [l for l in lines["train"] if l.startswith(c)]
                                                             for c in classes}))
        m.text(f"{base}food-101/README.txt", "Food-101\n")
        m.layout.notes = "Food-101 meta/train.txt + test.txt"
        return m.done(classes)
    classes = ["Abyssinian", "Bengal", "american_bulldog", "basset_hound"]
    lines = {"trainval": [], "test": []}
    for i, c in enumerate(classes):
        for j in range(1, _n(rng, 4, 6) + 1):
            stem = f"{c}_{j}"
            rel = m.image(f"{base}images/{stem}.jpg", i)
            split = "test" if j <= 2 else "trainval"
            lines[split].append(f"{stem} {i + 1} {1 if c[0].isupper() else 2} {j}")
            if split == "trainval":
                m.train(rel, c)
            else:
                m.layout.test_keys.append(rel)
            m.image(f"{base}annotations/trimaps/{stem}.png", i, mode="L")  # masks, not training images
            m.layout.content.pop(f"{base}annotations/trimaps/{stem}.png")
    for split, entries in lines.items():
        m.text(f"{base}annotations/{split}.txt", "\n".join(entries) + "\n")
    m.text(f"{base}annotations/list.txt", "#Image CLASS-ID SPECIES BREED ID\n" +
           "\n".join(lines["trainval"] + lines["test"]) + "\n")
    m.layout.exact_labels = False  # the breed's name or its CLASS-ID: both are right without a sample
    m.layout.notes = "Oxford Pets annotations/trainval.txt + test.txt"
    return m.done(classes)


def gen_split_tables(m: Maker, rng: random.Random, base: str) -> Layout:
    """train.csv, validation.csv (val.csv, valid.csv), test.csv: the test labelled or not, with a sample or not."""
    classes = rng.choice(CLASS_POOLS)
    id_col, label_col = rng.choice(ID_COLUMNS), rng.choice(LABEL_COLUMNS)
    folder = rng.choice(["images/", "data/"])
    val_name = rng.choice(["validation.csv", "val.csv", "valid.csv"])
    k, tables = 0, {"train": [], "val": [], "test": []}
    for i, c in enumerate(classes):
        for split, n in (("train", _n(rng)), ("val", 2), ("test", 2)):
            for _ in range(n):
                rel = m.image(f"{base}{folder}{k:05d}.png", i)
                tables[split].append((f"{k:05d}.png", c))
                (m.layout.test_keys.append(rel) if split == "test" else m.train(rel, c))
                k += 1
    for split in tables.values():
        rng.shuffle(split)
    m.csv(base + "train.csv", [id_col, label_col], tables["train"])
    m.csv(base + val_name, [id_col, label_col], tables["val"])
    labelled = rng.random() < 0.5
    m.csv(base + "test.csv", [id_col, label_col] if labelled else [id_col],
          tables["test"] if labelled else [(i,) for i, _ in tables["test"]])
    m.layout.test = [i for i, _ in tables["test"]]
    if not labelled and rng.random() < 0.5:
        m.csv(base + "sample_submission.csv", [id_col, label_col], [(i, classes[0]) for i, _ in tables["test"]])
    m.layout.notes = f"train.csv + {val_name} + test.csv ({'labelled' if labelled else 'unlabelled'})"
    return m.done(classes)


EMOTIONS = 7


def gen_pixel_strings(m: Maker, rng: random.Random, base: str) -> Layout:
    """FER-2013: emotion, pixels (space-separated), Usage (Training / PublicTest / PrivateTest) in one table;
    PublicTest is the validation split, PrivateTest the test."""
    name, header = rng.choice([("fer2013.csv", ["emotion", "pixels", "Usage"]),
                               ("icml_face_data.csv", ["emotion", " Usage", " pixels"])])
    rows, line = [], 2
    for usage, n in (("Training", 4), ("PublicTest", 1), ("PrivateTest", 1)):
        for e in range(EMOTIONS):
            for _ in range(n):
                key = f"{base}{name}:{line}"
                pixels = " ".join(map(str, m.pixel_row(key, e)))
                rows.append({"emotion": e, "pixels": pixels, "Usage": usage})
                (m.layout.test_keys.append(key) if usage == "PrivateTest" else m.train(key, e))
                line += 1
    names = [h.strip() for h in header]
    m.csv(base + name, header, [[r[h] for h in names] for r in rows])
    m.layout.notes = f"{name} {names}"
    return m.done(range(EMOTIONS))


def gen_ambiguous(m: Maker, rng: random.Random, base: str) -> Layout:
    """Two sets of class folders of different classes and equal size, nothing saying which is the competition:
    kit must ask (its command naming one of them reads that one)."""
    sets = {"setA": ["cat", "dog", "emu"], "setB": ["red", "green", "blue"]}
    truths = {}
    for folder, classes in sets.items():
        pairs = {}
        for i, c in enumerate(classes):
            for k in range(3):
                pairs[m.image(f"{base}{folder}/{c}/{c}{k}.jpg", i)] = c
        truths[folder] = pairs
    m.layout.train = truths["setA"]
    m.layout.alternatives = [(truths["setB"], [])]
    m.layout.expected = "refuse"
    m.layout.notes = "two equal sets of class folders"
    return m.done(sets["setA"])


FAMILIES = {
    "class_folders": (gen_class_folders, 5), "table": (gen_table, 5), "one_hot": (gen_one_hot, 2),
    "split_lists": (gen_split_lists, 2), "split_tables": (gen_split_tables, 2),
    "pixel_strings": (gen_pixel_strings, 1), "ambiguous": (gen_ambiguous, 1),
}


# ---------------------------------------------------------------------------------- wrappers, junk, zips


def add_junk(data: Path, rng: random.Random) -> None:
    """What downloads carry: macOS' __MACOSX/ with AppleDouble ._ files, .DS_Store, Thumbs.db, a README, a LICENSE."""
    images = [p for p in data.rglob("*") if p.is_file() and p.suffix.lower() in (".jpg", ".jpeg", ".png")]
    for p in rng.sample(images, min(4, len(images))):
        rel = p.relative_to(data)
        junk = data / "__MACOSX" / rel.parent / f"._{rel.name}"
        junk.parent.mkdir(parents=True, exist_ok=True)
        junk.write_bytes(b"\x00\x05\x16\x07\x00\x02\x00\x00Mac OS X        ")
        (p.parent / f"._{p.name}").write_bytes(b"\x00\x05\x16\x07\x00\x02")  # beside the image too (tar of a Mac)
    for d in {p.parent for p in images}:
        if rng.random() < 0.5:
            (d / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
        if rng.random() < 0.3:
            (d / "Thumbs.db").write_bytes(b"\xd0\xcf\x11\xe0")
    (data / "README.md").write_text("# A competition\n", encoding="utf-8")
    (data / "LICENSE.txt").write_text("CC BY 4.0\n", encoding="utf-8")


def zip_folder(data: Path, rel: str, archive: str) -> None:
    """Replace data/rel (a folder or the whole data folder when rel is '') by a zip of it at data/archive."""
    source = data / rel if rel else data
    files = sorted(p for p in source.rglob("*") if p.is_file())
    target = data / archive
    with zipfile.ZipFile(target.with_suffix(".tmp"), "w") as z:
        for p in files:
            z.write(p, p.relative_to(data).as_posix() if rel else p.relative_to(data).as_posix())
    if rel:
        shutil.rmtree(source)
    else:
        for p in list(data.iterdir()):
            if p != target.with_suffix(".tmp"):
                shutil.rmtree(p) if p.is_dir() else p.unlink()
    target.with_suffix(".tmp").rename(target)


def generate(parent: Path, seed: int, sizes=SIZES, families=None) -> Layout:
    """One random published-style competition folder under parent/, with its truth: its images `sizes` px square,
    its family one of `families` (default: any)."""
    rng = random.Random(seed)
    names = [f for f in FAMILIES if families is None or f in families]
    family = rng.choices(names, weights=[FAMILIES[f][1] for f in names])[0]
    data = parent / f"gen-{seed}"
    data.mkdir(parents=True)
    base = f"{rng.choice(WRAPPERS)}/" if rng.random() < 0.25 else ""  # one wrapping folder (comp/…)
    m = Maker(data, f"{family}#{seed}", rng, size=rng.choice(sizes))
    layout = FAMILIES[family][0](m, rng, base)
    if base:
        layout.notes += f", wrapped in {base}"
    if rng.random() < 0.3:
        add_junk(data, rng)
        layout.notes += ", junk"
    if family in ("class_folders", "table") and rng.random() < 0.25:
        tops = sorted(p.name for p in data.iterdir() if p.is_dir() and p.name != "__MACOSX")
        if base or rng.random() < 0.5 or not tops:
            zip_folder(data, "", f"{data.name}.zip")
            layout.notes += ", all in one zip"
        else:
            top = rng.choice(tops)
            zip_folder(data, top, f"{top}.zip")
            layout.notes += f", {top}/ zipped"
    return layout


# ------------------------------------------------------------------------------ real layouts, rebuilt


def caltech101(parent: Path) -> Layout:
    """Caltech-101: 101_ObjectCategories/<class>/image_0001.jpg, nothing else; no test set."""
    m = Maker(parent / "caltech-101", "Caltech-101", random.Random(101))
    classes = ["accordion", "airplanes", "anchor"]
    for i, c in enumerate(classes):
        for k in range(1, 5):
            m.train(m.image(f"101_ObjectCategories/{c}/image_{k:04d}.jpg", i), c)
    return m.done(classes)


def stanford_dogs(parent: Path) -> Layout:
    """Stanford Dogs (Kaggle): images/Images/<wnid>-<breed>/<wnid>_<n>.jpg beside annotations/Annotation/<same>/<stem>
    (XML without an extension)."""
    m = Maker(parent / "stanford-dogs-dataset", "Stanford Dogs", random.Random(120))
    classes = ["n02085620-Chihuahua", "n02085782-Japanese_spaniel", "n02086240-Shih-Tzu"]
    for i, c in enumerate(classes):
        wnid = c.split("-")[0]
        for k in range(4):
            stem = f"{wnid}_{10074 + k * 17}"
            m.train(m.image(f"images/Images/{c}/{stem}.jpg", i), c)
            m.text(f"annotations/Annotation/{c}/{stem}", f"<annotation><filename>{stem}</filename>"
                   f"<object><name>{c.split('-', 1)[1]}</name></object></annotation>")
    return m.done(classes)


def food101(parent: Path) -> Layout:
    """Food-101: food-101/images/<class>/<n>.jpg, food-101/meta/{train,test}.txt of class/n, classes.txt, labels.txt,
    train.json/test.json, README.txt, license_agreement.txt."""
    m = Maker(parent / "food-101", "Food-101", random.Random(101101))
    classes = ["apple_pie", "baby_back_ribs", "baklava"]
    lists = {"train": [], "test": []}
    for i, c in enumerate(classes):
        for k in range(6):
            stem = str(1005649 + i * 1000 + k * 7)
            rel = m.image(f"food-101/images/{c}/{stem}.jpg", i)
            split = "test" if k < 2 else "train"
            lists[split].append(f"{c}/{stem}")
            m.train(rel, c) if split == "train" else m.layout.test_keys.append(rel)
    for split, entries in lists.items():
        m.text(f"food-101/meta/{split}.txt", "\n".join(entries) + "\n")
        m.text(f"food-101/meta/{split}.json", json.dumps({c: [e for e in entries if e.startswith(c + "/")]
                                                          for c in classes}))
    m.text("food-101/meta/classes.txt", "\n".join(classes) + "\n")
    m.text("food-101/meta/labels.txt", "Apple pie\nBaby back ribs\nBaklava\n")
    m.text("food-101/README.txt", "Structure:\npec/\n  images/\n    <class_name>/\n      <image_id>.jpg\n")
    m.text("food-101/license_agreement.txt", "research only\n")
    return m.done(classes)


def chest_xray(parent: Path) -> Layout:
    """Chest X-ray (Kaggle, paultimothymooney): chest_xray/{train,val,test}/{NORMAL,PNEUMONIA}/*.jpeg, a nested copy
    chest_xray/chest_xray/…, and chest_xray/__MACOSX/chest_xray/… of AppleDouble files. test/ is labelled: never trained on."""
    m = Maker(parent / "chest-xray-pneumonia", "Chest X-ray", random.Random(7))
    classes = ["NORMAL", "PNEUMONIA"]
    names = {"NORMAL": lambda k: f"IM-{115 + k:04d}-0001.jpeg", "PNEUMONIA": lambda k: f"person{k + 1}_bacteria_{k}.jpeg"}
    for split, n in (("train", 5), ("val", 2), ("test", 3)):
        for i, c in enumerate(classes):
            for k in range(n):
                rel = m.image(f"chest_xray/{split}/{c}/{names[c](k + 100 * len(split))}", i, mode="L")
                m.train(rel, c) if split != "test" else m.layout.test_keys.append(rel)
    for p in sorted((m.data / "chest_xray").rglob("*.jpeg")):
        rel = p.relative_to(m.data / "chest_xray")
        copy = m.data / "chest_xray" / "chest_xray" / rel
        copy.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(p, copy)
        junk = m.data / "chest_xray" / "__MACOSX" / "chest_xray" / rel.parent / f"._{rel.name}"
        junk.parent.mkdir(parents=True, exist_ok=True)
        junk.write_bytes(b"\x00\x05\x16\x07\x00\x02\x00\x00Mac OS X        \x00\x02")
    (m.data / "chest_xray" / "chest_xray" / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    m.layout.notes = "the nested copy holds the same images: reading it instead is right too"
    return m.done(classes)


def state_farm(parent: Path) -> Layout:
    """State Farm Distracted Driver: imgs/train/c0..c9/img_<n>.jpg, imgs/test/img_<n>.jpg, driver_imgs_list.csv
    (subject,classname,img), sample_submission.csv (img,c0,…,c9) of probabilities."""
    m = Maker(parent / "state-farm-distracted-driver-detection", "State Farm", random.Random(10))
    classes = [f"c{i}" for i in range(10)]
    drivers, k = [], 0
    for i, c in enumerate(classes):
        for j in range(3):
            name = f"img_{44733 + k * 13}.jpg"
            m.train(m.image(f"imgs/train/{c}/{name}", i), c)
            drivers.append((f"p0{12 + j:02d}", c, name))
            k += 1
    m.csv("driver_imgs_list.csv", ["subject", "classname", "img"], drivers)
    test = [f"img_{k * 7 + 1}.jpg" for k in range(6)]
    m.layout.test_keys = [m.image(f"imgs/test/{n}", j) for j, n in enumerate(test)]
    order = [test[j] for j in (3, 0, 5, 1, 4, 2)]
    m.csv("sample_submission.csv", ["img"] + classes, [[n] + ["0.1"] * 10 for n in order])
    m.layout.test = order
    return m.done(classes)


def oxford_pets(parent: Path) -> Layout:
    """Oxford-IIIT Pets: images/<Breed>_<n>.jpg (cats capitalised, dogs not), annotations/trainval.txt and test.txt
    of `Image CLASS-ID SPECIES BREED-ID`, list.txt with # comments, trimaps/*.png masks (with ._ files), xmls/."""
    m = Maker(parent / "oxford-iiit-pet", "Oxford Pets", random.Random(37))
    breeds = ["Abyssinian", "american_bulldog", "Bengal", "yorkshire_terrier"]
    lists = {"trainval": [], "test": []}
    for i, b in enumerate(breeds):
        species = 1 if b[0].isupper() else 2
        for n in range(1, 6):
            stem = f"{b}_{n}"
            rel = m.image(f"images/{stem}.jpg", i)
            split = "test" if n % 2 == 0 else "trainval"
            lists[split].append(f"{stem} {i + 1} {species} {n}")
            m.train(rel, b) if split == "trainval" else m.layout.test_keys.append(rel)
            mask = m.image(f"annotations/trimaps/{stem}.png", i, mode="L")
            m.layout.content.pop(mask)
            (m.data / "annotations" / "trimaps" / f"._{stem}.png").write_bytes(b"\x00\x05\x16\x07")
            m.text(f"annotations/xmls/{stem}.xml", f"<annotation><filename>{stem}.jpg</filename></annotation>")
    head = ("#Image CLASS-ID SPECIES BREED ID\n#ID: 1:37 Class ids\n#SPECIES: 1:Cat 2:Dog\n"
            "#BREED ID: 1-25:Cat 1:12:Dog\n#All images with 1st letter as captial are cat images\n")
    for split, lines in lists.items():
        m.text(f"annotations/{split}.txt", "\n".join(lines) + "\n")
    m.text("annotations/list.txt", head + "\n".join(lists["trainval"] + lists["test"]) + "\n")
    m.text("annotations/README", "OXFORD-IIIT PET Dataset\n")
    m.layout.exact_labels = False  # the breed's name or its CLASS-ID
    return m.done(breeds)


def plant_pathology(parent: Path) -> Layout:
    """Plant Pathology 2020 (FGVC7): images/Train_<n>.jpg and Test_<n>.jpg, train.csv
    (image_id,healthy,multiple_diseases,rust,scab as 1/0), test.csv (image_id), sample_submission.csv of 0.25s."""
    m = Maker(parent / "plant-pathology-2020-fgvc7", "Plant Pathology", random.Random(2020))
    classes = ["healthy", "multiple_diseases", "rust", "scab"]
    rows = []
    for k in range(16):
        i = [0, 2, 3, 1, 0, 2, 3, 2][k % 8]
        m.train(m.image(f"images/Train_{k}.jpg", i), classes[i])
        rows.append([f"Train_{k}"] + ["1" if j == i else "0" for j in range(4)])
    m.csv("train.csv", ["image_id"] + classes, rows)
    ids = [f"Test_{j}" for j in range(6)]
    m.layout.test_keys = [m.image(f"images/{i}.jpg", j) for j, i in enumerate(ids)]
    m.csv("test.csv", ["image_id"], [(i,) for i in ids])
    m.csv("sample_submission.csv", ["image_id"] + classes, [[i] + ["0.25"] * 4 for i in ids])
    m.layout.test = ids
    return m.done(classes)


def ham10000(parent: Path) -> Layout:
    """Skin Cancer MNIST: HAM10000 (Kaggle): HAM10000_metadata.csv (lesion_id,image_id,dx,dx_type,age,sex,
    localization), HAM10000_images_part_1/ and _part_2/ of ISIC_<n>.jpg, and hmnist_8_8_L.csv (pixel0000…,label:
    small copies of the same images). No test set."""
    m = Maker(parent / "skin-cancer-mnist-ham10000", "HAM10000", random.Random(10000))
    dxs = ["bkl", "nv", "mel", "bcc"]
    rows, pixel_rows = [], []
    for k in range(16):
        i = k % 4
        image_id = f"ISIC_{27419 + k * 3:07d}"
        part = 1 if k < 8 else 2
        m.train(m.image(f"HAM10000_images_part_{part}/{image_id}.jpg", i), dxs[i])
        rows.append((f"HAM_{118 + k // 2:07d}", image_id, dxs[i], "histo", f"{40 + k}.0", "male", "scalp"))
        pixel_rows.append(list(np.random.default_rng(k).integers(0, 255, 64)) + [i])
    m.csv("HAM10000_metadata.csv", ["lesion_id", "image_id", "dx", "dx_type", "age", "sex", "localization"], rows)
    m.csv("hmnist_8_8_L.csv", [f"pixel{j:04d}" for j in range(64)] + ["label"], pixel_rows)
    return m.done(dxs)


def fer2013(parent: Path) -> Layout:
    """FER-2013 (Kaggle): fer2013.csv of emotion (0-6), pixels (48×48 space-separated; here 8×8), Usage (Training,
    PublicTest, PrivateTest). PublicTest is the validation split; PrivateTest the test."""
    m = Maker(parent / "fer2013", "FER-2013", random.Random(2013))
    rows, line = [], 2
    for usage, n in (("Training", 3), ("PublicTest", 1), ("PrivateTest", 1)):
        for e in range(EMOTIONS):
            for _ in range(n):
                key = f"fer2013.csv:{line}"
                rows.append((e, " ".join(map(str, m.pixel_row(key, e))), usage))
                m.train(key, e) if usage != "PrivateTest" else m.layout.test_keys.append(key)
                line += 1
    m.csv("fer2013.csv", ["emotion", "pixels", "Usage"], rows)
    return m.done(range(EMOTIONS))


def kannada_mnist(parent: Path) -> Layout:
    """Kannada-MNIST (Kaggle): train.csv (label,pixel0…), test.csv (id,pixel0…), Dig-MNIST.csv (label,pixel0…: an
    extra labelled set, NOT the answers to test.csv), sample_submission.csv (id,label)."""
    m = Maker(parent / "Kannada-MNIST", "Kannada-MNIST", random.Random(784))
    pixels = [f"pixel{j}" for j in range(64)]
    train = []
    for k in range(21):
        train.append([k % 3] + m.pixel_row(f"train.csv:{k + 2}", k % 3))
        m.train(f"train.csv:{k + 2}", k % 3)
    m.csv("train.csv", ["label"] + pixels, train)
    test = [[j] + m.pixel_row(f"test.csv:{j + 2}", j % 3) for j in range(6)]
    m.layout.test_keys = [f"test.csv:{j + 2}" for j in range(6)]
    m.csv("test.csv", ["id"] + pixels, test)
    dig = [[k % 3] + m.pixel_row(f"Dig-MNIST.csv:{k + 2}", k % 3) for k in range(9)]
    m.csv("Dig-MNIST.csv", ["label"] + pixels, dig)
    m.csv("sample_submission.csv", ["id", "label"], [(j, 0) for j in range(6)])
    m.layout.test = [str(j) for j in range(6)]
    m.layout.notes = "Dig-MNIST.csv must not be taken for the answers"
    return m.done(range(3))


def av_emergency(parent: Path) -> Layout:
    """Analytics Vidhya, emergency vs non-emergency vehicles: images/<n>.jpg (train and test together), train.csv
    (image_names,emergency_or_not), test.csv (image_names), sample_submission.csv of zeros."""
    m = Maker(parent / "av-emergency-vehicles", "AV emergency vehicles", random.Random(1503))
    rows = []
    for k in range(12):
        name = f"{1503 + k * 37}.jpg"
        m.train(m.image(f"images/{name}", k % 2), k % 2)
        rows.append((name, k % 2))
    m.csv("train.csv", ["image_names", "emergency_or_not"], rows)
    test = [f"{1000 + j * 11}.jpg" for j in range(6)]
    m.layout.test_keys = [m.image(f"images/{n}", j % 2) for j, n in enumerate(test)]
    m.csv("test.csv", ["image_names"], [(n,) for n in test])
    m.csv("sample_submission.csv", ["image_names", "emergency_or_not"], [(n, 0) for n in test])
    m.layout.test = test
    return m.done([0, 1])


def npy_arrays(parent: Path) -> Layout:
    """A folder of NumPy arrays only (X_train.npy, y_train.npy, X_test.npy): kit does not read them and must say so
    in one line naming the format."""
    data = parent / "npy-only"
    data.mkdir(parents=True)
    rng = np.random.default_rng(0)
    np.save(data / "X_train.npy", rng.integers(0, 255, (12, 8, 8), dtype=np.uint8))
    np.save(data / "y_train.npy", np.arange(12) % 3)
    np.save(data / "X_test.npy", rng.integers(0, 255, (4, 8, 8), dtype=np.uint8))
    return Layout(name="npy arrays", data=data, expected="refuse", notes="unreadable: .npy")


REAL_LAYOUTS = {
    "caltech101": caltech101, "stanford_dogs": stanford_dogs, "food101": food101, "chest_xray": chest_xray,
    "state_farm": state_farm, "oxford_pets": oxford_pets, "plant_pathology": plant_pathology, "ham10000": ham10000,
    "fer2013": fer2013, "kannada_mnist": kannada_mnist, "av_emergency": av_emergency, "npy_arrays": npy_arrays,
}
