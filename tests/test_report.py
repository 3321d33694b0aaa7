"""report.html: self-contained, every section present, and (when Chromium is installed) renders cleanly."""

import re
import shutil
import subprocess

import pytest
from click.testing import CliRunner
from conftest import make_av_folder

from kit.cli import cli

SECTIONS = ("metrics", "submission", "per-class", "plots", "mistakes", "config")
OPTIONAL = ("validation",)  # when the run has RUN/validation.json


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("rep")
    data = make_av_folder(tmp / "c", n_per_class=10)
    result = CliRunner().invoke(cli, ["train", str(data), "--runs-dir", str(tmp / "runs"), "--name", "r", "--epochs",
                                      "1", "--image-size", "16", "--augment", "none"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return tmp / "runs" / "r"


def test_report_is_self_contained_with_all_sections(run_dir):
    html = (run_dir / "report.html").read_text()
    for section in SECTIONS:
        assert f"<section id={section}" in html
    sources = re.findall(r"src='([^']*)'", html)
    assert len(sources) >= 2 and all(s.startswith("data:image/png;base64,") for s in sources)
    assert "http://" not in html and "https://" not in html
    for name in ("cat", "dog", "emu"):
        assert f"<td>{name}</td>" in html
    wrong = html.count("class=mistake>")
    import pandas as pd

    pred = pd.read_csv(run_dir / "val_predictions.csv", dtype=str)
    assert wrong == min(24, int((pred["label"] != pred["predicted"]).sum()))


def test_kit_report_rewrites_html_only_when_asked(run_dir):
    (run_dir / "report.html").unlink()
    assert CliRunner().invoke(cli, ["report", str(run_dir)]).exit_code == 0
    assert not (run_dir / "report.html").exists()
    assert CliRunner().invoke(cli, ["report", str(run_dir), "--rewrite"]).exit_code == 0
    assert (run_dir / "report.html").is_file()


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (apt-get install chromium)")
def test_report_renders_in_headless_chromium(run_dir, tmp_path):
    # A copy with a probe script: it records every section's height and any image that failed to decode.
    probe = ("<script>addEventListener('load',()=>{const s=[...document.querySelectorAll('section')]"
             ".map(e=>e.id+':'+e.getBoundingClientRect().height);const bad=[...document.images]"
             ".filter(i=>!i.complete||i.naturalWidth===0).length;document.body.setAttribute('data-probe',"
             "s.join(',')+';broken='+bad)})</script>")
    page = tmp_path / "probe.html"
    page.write_text((run_dir / "report.html").read_text().replace("</body>", probe + "</body>"))
    out = subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=5000",
                          "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120).stdout
    found = re.search(r'data-probe="([^"]*)"', out)
    assert found, out[:500]
    heights, broken = found.group(1).split(";broken=")
    assert broken == "0"
    for item in heights.split(","):
        section, height = item.split(":")
        assert section in SECTIONS + OPTIONAL and float(height) > 10, item
    shot = tmp_path / "shot.png"
    subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={tmp_path / 'profile2'}", "--window-size=1200,2000",
                    f"--screenshot={shot}", (run_dir / "report.html").as_uri()], capture_output=True, timeout=120)
    assert shot.stat().st_size > 10_000
