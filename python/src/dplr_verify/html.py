"""One self-contained HTML page of a dplr JSON report (reports/SCHEMA.md): what a failing CI job links to.

    python -m dplr_verify.html REPORT.json -o report.html      (what `dplr report html` runs)

The page holds the verdict and policy, and per case: the table of tensors, the floor ratios against their
gates, the histograms of log2 relative errors, per tensor the local floor ratio against token position and
as a (sequence, head) x block heatmap where the report carries the per-block grid (metrics.locality), and
for stage comparisons the pipeline with the first diverging stage marked. Plots are matplotlib figures embedded as PNG (data: URIs), so the page needs no
other file and no network. The JSON report is the only input; optional fields may be null or missing.
"""
from __future__ import annotations

import argparse
import base64
import html
import io
import json
import math
import sys
from typing import Any

VERDICT_COLOURS = {"pass": "#1a7f37", "fail": "#cf222e", "error": "#8250df"}


def _real(value: Any) -> float | None:
    """A report real: a number, or the strings "Infinity", "-Infinity", "NaN"; None when absent."""
    if value is None:
        return None
    return float(value)


def _format(value: Any, digits: int = 3) -> str:
    number = _real(value)
    if number is None:
        return "-"
    if math.isnan(number) or math.isinf(number) or number == 0:
        return str(number)
    return f"{number:.{digits}g}"


def _figure_html(figure, alt: str) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(figure)
    data = base64.b64encode(buffer.getvalue()).decode("ascii")
    return f'<figure><img class="plot" alt="{html.escape(alt)}" src="data:image/png;base64,{data}"></figure>'


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # no display: CI machines and headless runs
    import matplotlib.pyplot as plt

    return plt


def floor_ratio_plot(tensors: list[dict], title: str) -> str | None:
    """Each tensor's floor ratio (1.0: as good as correctly rounded) beside its gate, on a log scale."""
    rows = [(t["name"], _real((t["metrics"].get("floor") or {}).get("ratio")), _real(t["tolerance"].get("floor_ratio")),
             t["verdict"]) for t in tensors]
    rows = [r for r in rows if r[1] is not None and math.isfinite(r[1])]
    if not rows:
        return None
    plt = _pyplot()
    figure, axes = plt.subplots(figsize=(max(4.0, 0.7 * len(rows) + 1.5), 3.2))
    positions = range(len(rows))
    axes.bar(positions, [max(r[1], 1e-3) for r in rows], color=[VERDICT_COLOURS[r[3]] for r in rows], alpha=0.8,
             label="floor ratio")
    gated = [(i, r[2]) for i, r in enumerate(rows) if r[2] is not None]
    if gated:
        axes.scatter([i for i, _ in gated], [g for _, g in gated], marker="_", s=900, color="black", zorder=3,
                     label="gate")
    axes.axhline(1.0, color="grey", linestyle=":", linewidth=1, label="correctly rounded")
    axes.set_yscale("log")
    axes.set_xticks(list(positions), [r[0] for r in rows])
    axes.set_ylabel("rel RMSE / floor")
    axes.set_title(title)
    axes.legend(fontsize="small")
    return _figure_html(figure, f"{title}: floor ratios against their gates")


def error_histogram_plot(tensors: list[dict], title: str) -> str | None:
    """The histograms of log2 relative errors (metrics.histogram: 61 bins from 2^-60 to 1) of up to ten tensors."""
    # At most ten lines stay readable: the tensors that do not pass, then the worst floor ratios.
    ranked = sorted(tensors, key=lambda t: (t["verdict"] == "pass",
                                            -(_real((t["metrics"].get("floor") or {}).get("ratio")) or 0.0)))
    histograms = [(t["name"], t["metrics"].get("histogram")) for t in ranked]
    histograms = [(name, h) for name, h in histograms if h and sum(h.get("counts", [])) > 0][:10]
    if not histograms:
        return None
    plt = _pyplot()
    figure, axes = plt.subplots(figsize=(6.5, 3.2))
    for name, h in histograms:
        low = h.get("min_log2", -60)
        bins = list(range(low, low + len(h["counts"])))
        axes.step(bins, h["counts"], where="post", label=name)
    axes.set_yscale("symlog", linthresh=1)
    axes.set_xlabel("floor(log2 relative error)")
    axes.set_ylabel("elements")
    axes.set_title(title)
    axes.legend(fontsize="small", ncol=3)
    return _figure_html(figure, f"{title}: histogram of log2 relative errors")


def _local_grid(tensor: dict):
    """metrics.locality of a token tensor (issue 10's per-block figures), when the report carries its grid:
    (rows of local ratios per block, a label per row, tokens per block, the local-ratio gate)."""
    locality = tensor["metrics"].get("locality")
    if not locality or locality.get("layout") != "tokens" or not locality.get("grid"):
        return None
    grid = [[_real(x) for x in row] for row in locality["grid"]]
    groups = locality.get("groups") or []
    labels = ([f"seq {g['sequence']} head {g['head']}" for g in groups] if len(groups) == len(grid)
              else [f"group {i}" for i in range(len(grid))])
    return grid, labels, locality.get("block_tokens") or 1, _real(tensor["tolerance"].get("local_ratio"))


def locality_plots(tensor: dict, title: str) -> list[str]:
    """The local floor ratio against token position, one line per (sequence, head), and as a heatmap of
    (sequence, head) x block of tokens; both with the gate where the policy sets one."""
    found = _local_grid(tensor)
    if not found:
        return []
    grid, labels, block_tokens, gate = found
    import numpy as np

    width = max(len(row) for row in grid)
    values = np.full((len(grid), width), np.nan)
    for i, row in enumerate(grid):
        values[i, :len(row)] = [np.nan if x is None else x for x in row]
    plt = _pyplot()
    figure, axes = plt.subplots(figsize=(6.5, 3.2))
    starts = np.arange(width) * block_tokens
    for i, label in enumerate(labels[:16]):  # more lines than this are unreadable; the heatmap has them all
        axes.step(starts, values[i], where="post", label=label)
    if gate is not None:
        axes.axhline(gate, color="black", linestyle="--", linewidth=1, label="gate")
    axes.set_yscale("log")
    axes.set_xlabel(f"token (blocks of {block_tokens})")
    axes.set_ylabel("local floor ratio")
    axes.set_title(f"{title}: local floor ratio by token")
    axes.legend(fontsize="x-small", ncol=2)
    plots = [_figure_html(figure, f"{title}: local floor ratio against token position per head")]

    figure, axes = plt.subplots(figsize=(6.5, max(2.0, 0.25 * len(grid) + 1.2)))
    floor = np.nanmin(values[values > 0]) if np.any(values > 0) else 1e-3
    image = axes.imshow(np.log10(np.maximum(values, floor)), aspect="auto", cmap="magma", interpolation="nearest",
                        extent=(0, width * block_tokens, len(grid), 0))
    colour_bar = figure.colorbar(image, ax=axes)
    colour_bar.set_label("log10 local floor ratio" + (f" (gate {gate:g})" if gate is not None else ""))
    axes.set_yticks(np.arange(len(grid)) + 0.5, labels if len(labels) <= 32 else [""] * len(labels))
    axes.set_xlabel("token")
    axes.set_title(f"{title}: local floor ratio, (sequence, head) x block")
    plots.append(_figure_html(figure, f"{title}: heatmap of the local floor ratio, head x block of tokens"))
    return plots


def located_tensors(tensors: list[dict]) -> list[dict]:
    """The tensors whose locality is plotted: those that do not pass, or when all pass the one with the worst
    block (two plots a tensor; a case has up to nine tensors, a stage comparison dozens)."""
    with_grid = [t for t in tensors if _local_grid(t)]
    failing = [t for t in with_grid if t["verdict"] != "pass"]
    if failing or not with_grid:
        return failing
    worst = max(with_grid, key=lambda t: _real(t["metrics"]["locality"]["worst_block"]["local_ratio"]) or 0.0)
    return [worst]


def pipeline_plot(stages: dict, title: str) -> str | None:
    """The chunk-form pipeline, one box per stage coloured by its worst verdict; the first diverging stage
    is outlined and labelled."""
    results = stages.get("results") or []
    if not results:
        return None
    order: list[str] = []
    worst: dict[str, str] = {}
    rank = {"pass": 0, "fail": 1, "error": 2}
    for r in results:
        if r["stage"] not in worst:
            order.append(r["stage"])
            worst[r["stage"]] = r["verdict"]
        elif rank[r["verdict"]] > rank[worst[r["stage"]]]:
            worst[r["stage"]] = r["verdict"]
    first = stages.get("first_diverging_stage")
    plt = _pyplot()
    figure, axes = plt.subplots(figsize=(max(4.0, 1.6 * len(order)), 1.6))
    for i, stage in enumerate(order):
        diverging = stage == first
        axes.add_patch(plt.Rectangle((i * 1.5, 0), 1.1, 1, facecolor=VERDICT_COLOURS[worst[stage]], alpha=0.85,
                                     linewidth=3 if diverging else 0, edgecolor="black"))
        axes.text(i * 1.5 + 0.55, 0.5, stage, ha="center", va="center", color="white",
                  fontsize=12 if len(stage) <= 6 else 8)
        if diverging:
            axes.text(i * 1.5 + 0.55, -0.3, "first diverging", ha="center", va="center", fontsize=9)
        if i + 1 < len(order):
            axes.annotate("", xy=(i * 1.5 + 1.45, 0.5), xytext=(i * 1.5 + 1.15, 0.5),
                          arrowprops=dict(arrowstyle="->"))
    axes.set_xlim(-0.2, 1.5 * len(order))
    axes.set_ylim(-0.6, 1.2)
    axes.axis("off")
    axes.set_title(title)
    return _figure_html(figure, f"{title}: stage pipeline" + (f", first diverging stage {first}" if first else ""))


def _tensor_table(tensors: list[dict]) -> str:
    head = ("tensor", "dtype", "judged as", "rel RMSE", "floor ratio", "gate", "max ulp", "worst element",
            "actual", "exact", "verdict")
    rows = []
    for t in tensors:
        m = t["metrics"]
        worst = m.get("max_abs_error") or {}
        name = (t["stage"] + "/" if "stage" in t else "") + t["name"]
        cells = (name, t["dtype"], t["judged_as"], _format(m.get("rel_rmse")),
                 _format((m.get("floor") or {}).get("ratio")), _format(t["tolerance"].get("floor_ratio")),
                 _format((m.get("ulp") or {}).get("max", {}).get("value")), str(worst.get("index", "")),
                 _format(worst.get("actual"), 6), _format(worst.get("expected"), 6))
        verdict = t["verdict"]
        rows.append("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells)
                    + f'<td class="verdict {verdict}">{verdict}</td></tr>')
        if verdict != "pass" and t.get("reason"):
            rows.append(f'<tr class="reason"><td colspan="{len(head) + 1}">{html.escape(t["reason"])}</td></tr>')
    header = "".join(f"<th>{h}</th>" for h in head)
    return f'<table><thead><tr>{header}</tr></thead><tbody>{"".join(rows)}</tbody></table>'


def _case_section(case: dict) -> str:
    case_id = case.get("id", "")
    parts = [f'<section class="case"><h2>{html.escape(case_id)} '
             f'<span class="verdict {case["verdict"]}">{case["verdict"]}</span></h2>']
    shape = case.get("shape")
    facts = []
    if shape:
        facts.append("shape " + " ".join(f"{k}={shape[k]}" for k in ("B", "T", "H", "K", "V", "N") if k in shape))
    if case.get("working_dtype"):
        facts.append(f"working dtype {case['working_dtype']}")
    reference = case.get("reference")
    if reference:
        bits = reference.get("estimated_bits") or {}
        certified = f", certified against {reference['estimated_against']} to {min(bits.values()):.1f} bits" \
            if reference.get("estimated_against") and bits else ""
        facts.append(f"reference {reference['precision']}{certified}")
    parts.append(f'<p class="facts">{html.escape("; ".join(facts))}</p>')
    for note in case.get("notes") or []:
        parts.append(f'<p class="note">note: {html.escape(note)}</p>')
    tensors = case.get("tensors") or []
    stages = case.get("stages") or {}
    results = stages.get("results") or []
    if results:  # the pipeline first: where it went wrong is the first question
        plot = pipeline_plot(stages, f"{case_id}: pipeline")
        if plot:
            parts.append(plot)
    if tensors:
        parts.append(_tensor_table(tensors))
        for plot in (floor_ratio_plot(tensors, f"{case_id}: floor ratios"),
                     error_histogram_plot(tensors, f"{case_id}: relative errors")):
            if plot:
                parts.append(plot)
        for tensor in located_tensors(tensors):
            parts.extend(locality_plots(tensor, f"{case_id}: {tensor['name']}"))
    # `dplr stages` reports each stage tensor twice (the case's tensors and the stage results); one table then.
    if results and sorted(r["name"] for r in results) != sorted(t["name"] for t in tensors):
        parts.append("<h3>Stages</h3>")
        parts.append(_tensor_table(results))
        plot = floor_ratio_plot(results, f"{case_id}: stage floor ratios")
        if plot:
            parts.append(plot)
    parts.append("</section>")
    return "\n".join(parts)


STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5em; color: #1f2328; }
table { border-collapse: collapse; margin: 0.5em 0 1em; font-size: 0.9em; }
th, td { border: 1px solid #d0d7de; padding: 0.2em 0.5em; text-align: right; }
th { background: #f6f8fa; }
td:first-child { text-align: left; font-weight: 600; }
tr.reason td { text-align: left; color: #57606a; font-size: 0.85em; }
.verdict { font-weight: 700; text-transform: uppercase; }
.verdict.pass { color: #1a7f37; } .verdict.fail { color: #cf222e; } .verdict.error { color: #8250df; }
.note { color: #57606a; margin: 0.1em 0; }
img.plot { max-width: 100%; }
figure { margin: 0.5em 0; }
"""


# Counts, once the page has loaded, the plots the browser decoded and shows (body's data-plots-shown), so a
# headless browser's DOM says whether every plot appeared (python/tests/test_html.py).
PLOTS_SHOWN = ("window.addEventListener('load', () => { document.body.dataset.plotsShown = "
               "Array.from(document.images).filter(i => i.complete && i.naturalWidth > 0).length; });")


def render(report: dict) -> str:
    """The page of one report, as a string."""
    verdict = report.get("verdict", "error")
    policy = report.get("policy") or {}
    title = f"dplr {report.get('command', '')}: {verdict}"
    body = [f'<h1>dplr {html.escape(report.get("command", ""))} <span class="verdict {verdict}">{verdict}</span></h1>',
            f'<p>policy {html.escape(policy.get("preset", ""))}'
            + (f' ({html.escape("; ".join(policy.get("sources") or []))})' if policy.get("sources") else "")
            + f'; {html.escape(report.get("start_time", ""))}; '
            + f'{html.escape((report.get("tool") or {}).get("name", ""))} '
            + f'{html.escape((report.get("tool") or {}).get("version", ""))} '
            + f'{html.escape((report.get("tool") or {}).get("git_revision", ""))}</p>']
    if report.get("input_error"):
        body.append(f'<p class="verdict error">input error: {html.escape(report["input_error"])}</p>')
    cases = report.get("cases") or []
    failing = [c for c in cases if c.get("verdict") != "pass"]
    body.append(f"<p>{len(cases)} case(s), {len(failing)} not passing.</p>")
    for case in failing + [c for c in cases if c.get("verdict") == "pass"]:  # failures first: people look first
        body.append(_case_section(case))
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f"<style>{STYLE}</style></head><body>\n" + "\n".join(body) + f"\n<script>{PLOTS_SHOWN}</script>"
            "\n</body></html>\n")


def write(report_path: str, out_path: str) -> None:
    with open(report_path, encoding="utf-8") as f:
        report = json.load(f)
    page = render(report)
    with open(out_path, "w", encoding="utf-8") as f:
        f.write(page)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dplr_verify.html", description=__doc__.splitlines()[0])
    parser.add_argument("report", help="a dplr JSON report")
    parser.add_argument("-o", "--out", required=True, help="the HTML page to write")
    arguments = parser.parse_args(argv)
    try:
        write(arguments.report, arguments.out)
    except (OSError, ValueError, KeyError) as error:
        print(f"dplr report html: {arguments.report}: {error}", file=sys.stderr)
        return 2
    print(f"html: {arguments.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
