"""Recreate this folder from scikit-learn's bundled digits: `python sample_data/make_sample_data.py`.

Writes the AV "Identify the apparels" layout (train.csv + train/<id>.png, test.csv + test/<id>.png,
sample_submission.csv). The answer key for the test images is not kept here (a competitor never has
it); `kit datasets export digits DIR` writes one beside DIR.
"""

import shutil
import tempfile
from pathlib import Path

from kit.datasets import export_arrays, load_digits_arrays

here = Path(__file__).resolve().parent
for name in ("train", "test"):
    shutil.rmtree(here / name, ignore_errors=True)
with tempfile.TemporaryDirectory() as tmp:
    export_arrays(load_digits_arrays(), here, layout="av", answers=Path(tmp) / "answers.csv", force=True)
print(f"wrote {here}")
