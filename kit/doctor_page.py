"""`kit doctor`'s outputs: the run of it (read, validate, diagnose, write) and doctor.html, one self-contained page
with the image pairs side by side, the suspicious labels with the model's view, and the shift."""

from __future__ import annotations

import time
from html import escape
from pathlib import Path
from types import SimpleNamespace

from .doctor import SHIFT_MEANINGFUL_AUC, Diagnosis, diagnose, save_summary

SHOWN = 60  # items per section of doctor.html (all of them are in the --json file)


def run_doctor(data, reading, run_dir, time_budget, html, json_file, force: bool, log,
               started: float | None = None) -> tuple[Diagnosis, list[Path]]:
    """Read and validate DATA (reading: the reading flags as a dict, or a Config), diagnose it, write doctor.html
    (and the JSON), remember the summary line."""
    from .data import ReadOptions, load_competition
    from .outputs import check_output, record_written
    from .runs import atomic_write, write_json
    from .validation import validate

    started = started or time.time()
    html_path = check_output(html, "--output", force, [data])
    json_path = check_output(json_file, "--json", force, [data]) if json_file else None
    comp = load_competition(data, ReadOptions.of(SimpleNamespace(**reading) if isinstance(reading, dict) else reading))
    report = validate(comp, progress=not getattr(log, "quiet", False))
    if report.errors:
        log(f"Doctor: {len(report.errors)} validation error(s) (run `kit validate {data}`); images that do not read "
            "are left out")
    found = diagnose(comp, report, run_dir, time_budget, log=log, started=started)
    written = []
    for path, write in ((html_path, lambda p: _write_text(p, render_html(found, data), atomic_write)),
                        (json_path, lambda p: write_json(p, found.to_dict()))):
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            write(path)
            record_written(path)
            written.append(path)
    save_summary(data, found, html_path, json_path, report.fingerprint)
    return found, written


def _write_text(path: Path, text: str, atomic_write) -> None:
    with atomic_write(path, encoding="utf-8") as f:
        f.write(text)


def _thumbnail_uri(path: str) -> str | None:
    """A small JPEG of the image, embedded (photos at full size would make the page tens of megabytes)."""
    import base64
    import io

    from PIL import Image

    from .errors import ImageError
    from .images import read_image

    try:
        im = Image.fromarray(read_image(path, None, 3))
    except ImageError:
        return None
    im.thumbnail((112, 112))
    buf = io.BytesIO()
    im.save(buf, format="JPEG", quality=85)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _tile(found: Diagnosis, image_id: str, lines: list[tuple[str, str]]) -> str:
    """One image with a few lines under it (class names: good, bad or none)."""
    path = found.paths.get(image_id)
    uri = _thumbnail_uri(path) if path else None
    image = f"<img alt='{escape(image_id)}' src='{uri}'>" if uri else "<div>(image not found)</div>"
    text = "".join(f"<div class={kind}>{escape(line)}</div>" if kind else f"<div>{escape(line)}</div>"
                   for kind, line in lines)
    return f"<div class=mistake>{image}{text}</div>"


def _leaks(found: Diagnosis) -> str:
    pairs = found.train_test_duplicates
    rows = "".join(f"<div class=pair>{_tile(found, p['test'], [('', 'test ' + p['test'])])}"
                   f"{_tile(found, p['train'], [('', 'train ' + p['train']), ('good', p['train_label'])])}"
                   f"<div class=dist>distance {p['distance']:.4f}"
                   f"{(' · test image ' + escape(p['transform'])) if p.get('transform') else ''}</div></div>"
                   for p in pairs[:SHOWN])
    return (f"<h2>Train/test near-duplicates ({len(pairs)})</h2><p>Test images with a near-copy in training: a leak "
            "(the training label is the answer) and a sign that validation may lie.</p><section id=leaks "
            f"class=pairs>{rows or '<p>None found.</p>'}</section>")


def _groups(found: Diagnosis) -> str:
    groups = sorted(found.train_duplicates, key=lambda g: not g["conflicting"])
    rows = "".join("<div class=pair>" + "".join(
        _tile(found, i, [("", i), ("bad" if g["conflicting"] else "good", lab)]) for i, lab in
        zip(g["ids"][:6], g["labels"][:6])) + f"<div class=dist>{'conflicting labels · ' if g['conflicting'] else ''}"
        f"distance ≤ {g['distance']:.4f}</div></div>" for g in groups[:SHOWN])
    conflicting = sum(g["conflicting"] for g in groups)
    return (f"<h2>Near-duplicates in train ({len(groups)} groups, {conflicting} with conflicting labels)</h2><p>kit's "
            "own validation split and folds keep each group on one side.</p><section id=duplicates class=pairs>"
            f"{rows or '<p>None found.</p>'}</section>")


def _labels(found: Diagnosis) -> str:
    issues = found.label_issues
    tiles = "".join(_tile(found, x["id"], [("", x["id"]), ("bad", f"labelled {x['label']}"),
                                           ("good", f"looks like {x['suggested']} ({x['suggested_probability']:.0%})")])
                    for x in issues[:SHOWN])
    return (f"<h2>Likely label errors ({len(issues)}, most suspicious first)</h2><p>{escape('; '.join(found.notes))}"
            f"</p><section id=labels class=grid>{tiles or '<p>None found.</p>'}</section>")


def _shift(found: Diagnosis) -> str:
    shift = found.shift
    if shift is None:
        return "<h2>Shift</h2><p>No test set.</p>"
    verdict = "train and test differ" if shift["auc"] >= SHIFT_MEANINGFUL_AUC else "no shift worth a note"
    rows = "".join(f"<tr><td>{escape(name)}</td><td>{f['auc']:.3f}</td><td>{f['train_mean']:.4g}</td>"
                   f"<td>{f['test_mean']:.4g}</td></tr>" for name, f in
                   sorted(shift["features"].items(), key=lambda kv: -abs(kv[1]["auc"] - 0.5)))
    tiles = "".join(_tile(found, x["id"], [("", x["id"]), ("bad", f"P(test) {x['p_test']:.2f}")])
                    for x in shift["most_unlike"][:24])
    return (f"<h2>Shift: adversarial validation AUC {shift['auc']:.3f} ({verdict})</h2><p>A classifier told test "
            "from training images by these statistics, cross-validated (0.5: indistinguishable). Each statistic's "
            f"own AUC:</p><table><tr><th>statistic</th><th>AUC</th><th>train mean</th><th>test mean</th></tr>{rows}"
            f"</table><h2>Test images most unlike training</h2><section id=shift class=grid>{tiles}</section>")


def render_html(found: Diagnosis, data) -> str:
    """doctor.html: one self-contained page (images embedded)."""
    from .reports import CSS

    css = CSS + (".pairs{display:flex;flex-direction:column;gap:8px}.pair{display:flex;gap:8px;align-items:center}"
                 ".dist{color:#5b6474;font-size:12px}")
    parts = [f"<h1>kit doctor</h1><div class=sub>{escape(str(data))} · {time.strftime('%Y-%m-%d %H:%M')}</div>",
             f"<p><b>{escape(found.summary())}</b></p>", _leaks(found), _groups(found), _labels(found), _shift(found),
             f"<p class=sub>Seconds: {escape(str(found.seconds))}</p>"]
    return (f"<!doctype html><html lang=en><head><meta charset=utf-8><title>kit doctor · {escape(str(data))}</title>"
            f"<meta name=viewport content='width=device-width,initial-scale=1'><style>{css}</style></head>"
            f"<body><main>{''.join(parts)}</main></body></html>\n")
