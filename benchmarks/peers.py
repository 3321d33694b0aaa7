"""kit against what its users would otherwise run, at the same wall time, interleaved (#22, item 1).

Usage: python benchmarks/peers.py [--sets fashion,cifar10] [--budgets 30,60,120,300,600] [--rounds 1]
                                  [--peers keras-io,tutorials,fastai] [--fastai-python PY] [--work DIR]
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
  --fastai-python, or in this one; skipped without it).
Sets (built once under --work; ../shared must be beside the project):
- fashion: Fashion-MNIST in the Analytics Vidhya layout (`kit datasets export fashion_mnist DIR --limit 12000`:
  12,000 training and 2,400 test 28-px PNGs; needs ../shared/scripts/get-datasets.sh run once);
- cifar10: ../shared's CIFAR-10 JPEGs, 1,000 per class in class folders (train/<class>/) and 2,000 unlabelled
  test images (test/), 32 px.
Prints a table of its rows and appends them to --record (benchmarks/peers.jsonl, with the date and commit); the
accuracy-vs-time plot shows every recorded row, so runs of a few sets or budgets each add up to one picture
(--replot: only redraw it).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

from _shared import SHARED

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


def timed(command: list[str]) -> float:
    """Seconds of a whole process, start to exit; exits with its output when it fails."""
    started = time.time()
    result = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
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


def chosen_peers(names: list[str], fastai_python: str) -> list[tuple[str, str, str, str]]:
    """(key, name, script, the python that runs it) of each peer asked for that can run here."""
    peers = {"keras-io": ("keras-io convnet (tf.data)", KERAS_IO, sys.executable),
             "tutorials": ("tutorials' load_img loop + CNN", TUTORIAL, sys.executable),
             "fastai": ("fastai resnet18, pretrained=False", FASTAI, fastai_python or sys.executable)}
    unknown = set(names) - set(peers)
    if unknown:
        sys.exit(f"--peers: unknown {', '.join(sorted(unknown))} (known: {', '.join(peers)})")
    if "fastai" in names and not _imports_fastai(peers["fastai"][2]):
        print(f"fastai: skipped (not importable by {peers['fastai'][2]}; pip install torch torchvision fastai "
              "in a virtual environment of its own and pass its python as --fastai-python)")
        names = [n for n in names if n != "fastai"]
    return [(n, *peers[n]) for n in names]


def _imports_fastai(python: str) -> bool:
    """Whether `python` exists and can import fastai (asked once: importing torch takes seconds)."""
    try:
        return subprocess.run([python, "-c", "import fastai"], capture_output=True).returncode == 0
    except OSError:  # no such file, or not a program
        return False


def calibrate(python: str, script: Path, data: Path, work: Path) -> tuple[float, float]:
    """(fixed seconds, seconds per epoch) of a peer's whole job, from a 1-epoch and a 4-epoch run."""
    one, four = (timed([python, str(script), str(data), str(e), str(work / "calibration.csv")])
                 for e in (1, 4))
    per_epoch = max(0.1, (four - one) / 3)
    return max(0.0, one - per_epoch), per_epoch


def kit_at(data: Path, answers: Path, seconds: float, runs: Path, name: str) -> tuple[float, float, str]:
    wall = timed([sys.executable, "-m", "kit", "run", str(data), "--runs-dir", str(runs), "--name", name, "--force",
                  "--time-budget", f"{seconds:.0f}"])
    config = json.loads((runs / name / "config.json").read_text())
    return wall, score(runs / name / "submission.csv", answers), f"{config['model']}, {config['epochs']} epochs"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", default="/tmp/kit-bench-peers")
    parser.add_argument("--sets", default="fashion,cifar10")
    parser.add_argument("--budgets", default="30,60,120,300,600", help="seconds, comma-separated")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--peers", default="keras-io,tutorials,fastai", help="which peers, comma-separated")
    parser.add_argument("--fastai-python", default="", help="a python with fastai installed (default: this one)")
    parser.add_argument("--record", default=str(Path(__file__).with_name("peers.jsonl")))
    parser.add_argument("--plot", default=str(Path(__file__).with_name("peers.png")))
    parser.add_argument("--replot", action="store_true", help="only draw the plot of the recorded rows")
    args = parser.parse_args()
    if args.replot:
        return plot(args.record, args.plot)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    rows, peers = [], chosen_peers(args.peers.split(","), args.fastai_python)
    for set_name in args.sets.split(","):
        data, answers = {"fashion": prepare_fashion, "cifar10": prepare_cifar10}[set_name](work)
        for k, peer, source, python in peers:
            script = work / f"peer-{k}.py"
            script.write_text(source)
            fixed, per_epoch = calibrate(python, script, data, work)
            print(f"{set_name} {peer}: {fixed:.1f} s fixed, {per_epoch:.1f} s per epoch", flush=True)
            for round_ in range(args.rounds):
                for budget in map(float, args.budgets.split(",")):
                    epochs = max(1, round((budget - fixed) / per_epoch))
                    sub = work / f"peer-{set_name}-{k}-{budget:.0f}-{round_}.csv"
                    wall = timed([python, str(script), str(data), str(epochs), str(sub)])
                    per_epoch = max(0.1, (wall - fixed) / epochs)  # a longer run measures the pace better
                    kit = kit_at(data, answers, wall, work / "runs", f"{set_name}-{k}-{budget:.0f}-{round_}")
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
