"""The HTML report (dplr_verify.html, `dplr report html`, `dplr verify --html`): one self-contained page per
report, every plot shown in a real headless browser (Debian's chromium) with no console errors."""
import copy
import json
import os
import pathlib
import re
import shutil
import subprocess
import sys

import ml_dtypes
import numpy as np
import pytest

import dplr_verify as dv
from dplr_verify import html as dv_html

BF16 = np.dtype(ml_dtypes.bfloat16)
REPOSITORY = pathlib.Path(__file__).resolve().parents[2]
SCREENSHOT = REPOSITORY / "docs" / "img" / "failing-report.png"


def failing_report():
    """A bf16 case whose o has one planted error (and whose gradients are exact, rounded)."""
    case = dv.gen("fla", B=1, T=64, H=2, K=16, V=16, dtype="bf16", seed=8)
    exact = dv.reference(**case)
    recorded = {**case, **{n: exact[n].astype(BF16 if n in ("o",) else np.float32) for n in
                           ("o", "ht", "dq", "dk", "dv", "da", "db", "dgk", "dh0")}}
    o = recorded["o"].astype(np.float64)
    o[0, 40, 1, 3] += 2.0 * np.abs(o).max()
    recorded["o"] = o.astype(BF16)
    return dv.verify(recorded)


@pytest.fixture(scope="module")
def stage_report(dplr_binary, tmp_path_factory):
    """A real `dplr stages --compare` report: a kernel's stage tensors, exact but for one element of v_new,
    so stage h is the first to diverge."""
    work = tmp_path_factory.mktemp("stages")
    case = ["--dist", "fla", "--shape", "1,64,2,16,16", "--dtype", "bf16", "-C", "16"]
    subprocess.run([dplr_binary, "stages", *case, "-o", "exact.safetensors", "--report", ""], cwd=work, check=True,
                   capture_output=True)
    stages = dv.read(work / "exact.safetensors")
    stages.pop("metadata")
    kernel = {name: values.astype(np.float32) for name, values in stages.items()}
    v_new = kernel["v_new"].astype(np.float64)
    v_new[0, 37, 1, 5] += 0.5 * np.abs(v_new).max()
    kernel["v_new"] = v_new.astype(np.float32)
    dv.record(work / "kernel.safetensors", **kernel)
    proc = subprocess.run([dplr_binary, "stages", *case, "-o", "exact.safetensors", "--compare", "kernel.safetensors",
                           "--report", "stages.json"], cwd=work, capture_output=True, text=True)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    return json.loads((work / "stages.json").read_text())


def without_locality(report):
    """The report with every tensor's metrics.locality null: the pages the counts below are written for."""
    report = copy.deepcopy(dict(report))
    for case in report["cases"]:
        for tensor in case["tensors"] + ((case.get("stages") or {}).get("results") or []):
            tensor["metrics"]["locality"] = None
    return report


def with_locality(report):
    """The report with metrics.locality on o as issue 10's report writes it (in progress on main: layout,
    block_tokens, groups, grid of local ratios per (sequence, head) x block), a bad block at head 1, tokens
    32-47; the page must draw it when present and do without it otherwise."""
    report = without_locality(report)
    o = next(t for t in report["cases"][0]["tensors"] if t["name"] == "o")
    grid = [[0.9, 1.1, 1.0, 0.8], [1.0, 0.95, 40.0, 1.2]]
    block = {"sequence": 0, "head": 1, "token_begin": 32, "token_end": 48, "elements": 256, "rel_rmse": 0.05,
             "local_ratio": 40.0}
    o["metrics"]["locality"] = {"layout": "tokens", "block_tokens": 16, "floor": 0.0017, "worst_block": block,
                                "groups_total": 2, "grid": grid,
                                "groups": [{"sequence": 0, "head": h, "rel_rmse": 0.01, "worst_block": block}
                                           for h in (0, 1)]}
    o["tolerance"]["local_ratio"] = 4.0
    return report


def plot_count(page):
    return len(re.findall(r'<img class="plot"', page))


def test_page_is_self_contained_and_has_every_plot(stage_report, report_schema):
    report_schema.validate(stage_report)
    page = dv_html.render(without_locality(stage_report))
    # the pipeline; floor ratios and error histograms (the stage results are the case's tensors: one table)
    assert plot_count(page) == 3 and page.count("<table>") == 1
    # The real report carries metrics.locality: the failing v_new gets its two locality plots as well.
    assert plot_count(dv_html.render(stage_report)) == 3 + 2
    assert not re.search(r'(src|href)="(?!data:)', page)  # nothing outside the page
    assert 'alt="' in page and "first diverging stage h" in page
    assert '<span class="verdict fail">fail</span>' in page
    assert "[0, 37, 1, 5]" in page  # the worst element of v_new
    assert "policy strict" in page


def test_locality_plots_when_the_report_has_them():
    report = with_locality(failing_report())
    page = dv_html.render(report)
    assert plot_count(page) == 2 + 2  # floor ratios and histograms; o's local ratio by token and its heatmap
    assert "heatmap of the local floor ratio" in page and "against token position per head" in page


def test_missing_optional_fields_are_tolerated():
    report = json.loads(json.dumps(failing_report()))
    for tensor in report["cases"][0]["tensors"]:
        tensor["metrics"].pop("histogram")
        tensor["metrics"]["floor"] = None
        tensor["metrics"].pop("locality")
    report["cases"][0].pop("reference")
    page = dv_html.render(report)
    assert plot_count(page) == 0 and "<table>" in page


def chromium():
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    pytest.skip("no chromium (Debian: apt-get install chromium; scripts/install-deps.sh installs it)")


def browse(page_path, *options):
    proc = subprocess.run([chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--enable-logging=stderr", "--v=0",
                           "--virtual-time-budget=5000", *options, page_path.as_uri()],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    console = [line for line in proc.stderr.splitlines() if ":CONSOLE" in line]
    return proc.stdout, console


@pytest.mark.parametrize("which", ["stages", "verify with locality"])
def test_browser_shows_every_plot_without_console_errors(tmp_path, stage_report, which):
    page_path = tmp_path / "report.html"
    page = dv_html.render(without_locality(stage_report) if which == "stages" else with_locality(failing_report()))
    page_path.write_text(page)
    dom, console = browse(page_path, "--dump-dom")
    assert console == []
    shown = re.search(r'data-plots-shown="(\d+)"', dom)
    assert shown and int(shown.group(1)) == plot_count(page) == (3 if which == "stages" else 4)

    # The test's own eyes: a page with a console error is seen as one.
    broken = tmp_path / "broken.html"
    broken.write_text(page.replace("<script>", "<script>console.error('planted');", 1))
    assert "planted" in broken.read_text()
    assert any("planted" in line for line in browse(broken, "--dump-dom")[1])


def test_screenshot_of_a_failing_case(tmp_path, stage_report):
    """Writes docs/img/failing-report.png (the README shows it) when DPLR_UPDATE_SCREENSHOT=1; else into tmp."""
    page_path = tmp_path / "report.html"
    page_path.write_text(dv_html.render(stage_report))
    target = SCREENSHOT if os.environ.get("DPLR_UPDATE_SCREENSHOT") == "1" else tmp_path / "shot.png"
    target.parent.mkdir(parents=True, exist_ok=True)
    browse(page_path, f"--screenshot={target}", "--window-size=1100,1500", "--hide-scrollbars")
    assert target.stat().st_size > 10_000


def test_dplr_report_html_and_verify_html(dplr_binary, recorded_dir, tmp_path):
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    report = tmp_path / "report.json"
    page = tmp_path / "verify.html"
    proc = subprocess.run([dplr_binary, "verify", str(recorded_dir / "fla_chunk_default_bf16.safetensors"),
                           "--report", str(report), "--html", str(page), "--python", sys.executable],
                          capture_output=True, text=True, env=environment, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # floor ratios and histograms; every tensor passes, so the one with the worst block gets its two locality plots
    assert f"html: {page}" in proc.stdout and plot_count(page.read_text()) == 2 + 2

    again = tmp_path / "again.html"
    proc = subprocess.run([dplr_binary, "report", "html", str(report), "-o", str(again), "--python", sys.executable],
                          capture_output=True, text=True, env=environment)
    assert proc.returncode == 0, proc.stderr
    assert plot_count(again.read_text()) == 2 + 2

    # Without the package the command says what it needs, and exits 2.
    proc = subprocess.run([dplr_binary, "report", "html", str(report), "-o", str(again), "--python", "/bin/false"],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and "pip install ./python" in proc.stderr
