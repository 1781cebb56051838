"""Evaluation outputs: ``metrics.json``, a Markdown report, and the two figures papers show.

``curve.png`` is the success curve (fraction of frames whose worst joint is within D mm) and
``per_joint.png`` the per-joint mean error bars. Figures are drawn on bare ``Figure`` objects
(Agg canvas), so nothing touches pyplot's global state or needs a display.

The middle layer of :mod:`handvox.eval`: it turns scores
(:class:`handvox.eval.metrics.MethodResult`, however obtained: files, :mod:`handvox.eval.protocol`,
a benchmark) into the report; it reads no prediction files (that is :mod:`handvox.eval.files`).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from matplotlib.ticker import MaxNLocator

from handvox.atomic import atomic_path, write_text
from handvox.camera import Camera
from handvox.errors import HandvoxError
from handvox.eval.metrics import PROTOCOL, SYNTHETIC_PROTOCOL, TABLE_THRESHOLDS_MM, MethodResult
from handvox.joints import JointSet

DPI = 150
# The evaluated method is red and drawn on top; the rest take distinct colours and dash patterns so
# that the curves stay apart in grey-scale print too.
HIGHLIGHT = "#d62728"
COLORS = ("#1f77b4", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#17becf", "#e377c2", "#7f7f7f")
DASHES = ("--", "-.", ":", (0, (5, 1.5, 1, 1.5, 1, 1.5)), (0, (8, 2)), (0, (3, 1)))
_UPPER = {"mcp", "pip", "dip", "cmc", "ip"}


def joint_label(name: str) -> str:
    """Readable joint name: ``thumb_root2`` -> ``Thumb root 2``, ``index_mcp`` -> ``Index MCP``."""
    words = []
    for w in name.split("_"):
        stem = w.rstrip("0123456789")
        num = w[len(stem) :]
        words.append(stem.upper() if stem in _UPPER else stem)
        if num:
            words.append(num)
    text = " ".join(words)
    return text[:1].upper() + text[1:]


def method_style(i: int) -> dict:
    """Colour, line style and width of the i-th method (0 = the evaluated one)."""
    if i == 0:
        return {"color": HIGHLIGHT, "linestyle": "-", "linewidth": 2.4, "zorder": 10}
    return {
        "color": COLORS[(i - 1) % len(COLORS)],
        "linestyle": DASHES[(i - 1) % len(DASHES)],
        "linewidth": 1.6,
        "zorder": 5,
    }


# --- metrics.json -----------------------------------------------------------------------------
def _r(x: float) -> float:
    return round(float(x), 6)


def build_metrics(
    dataset: str, joint_set: JointSet, camera: Camera, gt_path: Path, results: list[MethodResult]
) -> dict:
    """Everything the report shows, as plain JSON-ready data."""
    total = results[0].frames_total
    methods = []
    for res in results:
        methods.append(
            {
                "name": res.name,
                "file": None if res.file is None else str(res.file),
                "format": res.pred_format,
                "frames_scored": res.frames_scored,
                "frames_in_labels": res.frames_total,
                "coverage": "partial" if res.partial else "full",
                "coverage_note": res.coverage_note or f"scored on all {res.frames_total} frames",
                "mean_error_mm": _r(res.mean_error),
                "per_joint_mean_error_mm": {
                    n: _r(e) for n, e in zip(joint_set.names, res.per_joint, strict=True)
                },
                "fraction_of_frames_within_mm": [_r(f) for f in res.curve],
                "percent_of_frames_within_mm": {str(t): _r(p) for t, p in res.table().items()},
            }
        )
    return {
        "dataset": dataset,
        "joint_set": joint_set.name,
        "joints": list(joint_set.names),
        "joint_labels": [joint_label(n) for n in joint_set.names],
        "ground_truth": str(gt_path),
        "frames_in_labels": total,
        "camera": camera.to_dict(),
        "protocol": SYNTHETIC_PROTOCOL if dataset == "synthetic" else PROTOCOL,
        "thresholds_mm": [int(t) for t in results[0].thresholds_mm],
        "table_thresholds_mm": list(TABLE_THRESHOLDS_MM),
        "methods": methods,
    }


# --- report.md --------------------------------------------------------------------------------
def _cell(text: str) -> str:
    return str(text).replace("|", "\\|")


def _row(cells: list) -> str:
    return "| " + " | ".join(_cell(c) for c in cells) + " |"


def render_markdown(metrics: dict, images: bool = True) -> str:
    """The report: methods table, per-joint table, notes and (optionally) the figures."""
    ds = metrics["dataset"].upper()
    ts = metrics["table_thresholds_mm"]
    methods = metrics["methods"]
    lines = [
        f"# Evaluation on {ds}",
        "",
        f"Ground truth: `{metrics['ground_truth']}` ({metrics['frames_in_labels']} frames, "
        f"{len(metrics['joints'])} joints, {metrics['joint_set']}).",
        "",
        _row(["Method", "Frames", "Mean error (mm)", *(f"≤{t} mm (%)" for t in ts)]),
        "|" + "---|" + "---:|" * (2 + len(ts)),
    ]
    for m in methods:
        frames = f"{m['frames_scored']}/{m['frames_in_labels']}"
        pct = [f"{m['percent_of_frames_within_mm'][str(t)]:.1f}" for t in ts]
        lines.append(_row([m["name"], frames, f"{m['mean_error_mm']:.3f}", *pct]))

    lines += ["", "Notes:", ""]
    for m in methods:
        if m["coverage"] == "partial":
            lines.append(f"- **{_cell(m['name'])}**: {m['coverage_note']}.")
    lines += [
        "- Mean error: over all joints and frames. ≤D mm: percentage of frames whose *worst* "
        "joint error is within D mm.",
        f"- {metrics['protocol']}",
        "",
        "## Per-joint mean error (mm)",
        "",
        _row(["Joint", *(m["name"] for m in methods)]),
        "|---|" + "---:|" * len(methods),
    ]
    for joint, label in zip(metrics["joints"], metrics["joint_labels"], strict=True):
        errs = [f"{m['per_joint_mean_error_mm'][joint]:.2f}" for m in methods]
        lines.append(_row([label, *errs]))
    lines.append(_row(["**Mean**", *(f"**{m['mean_error_mm']:.2f}**" for m in methods)]))
    if images:
        lines += [
            "",
            "## Figures",
            "",
            "![Fraction of frames within distance](curve.png)",
            "",
            "![Per-joint mean error](per_joint.png)",
        ]
    return "\n".join(lines) + "\n"


# --- figures ----------------------------------------------------------------------------------
def _legend_label(res: MethodResult) -> str:
    extra = f"; {res.frames_scored}/{res.frames_total} frames" if res.partial else ""
    return f"{res.name} ({res.mean_error:.2f} mm{extra})"


def plot_curve(results: list[MethodResult], dataset: str) -> Figure:
    """Success curve: % of frames with worst joint error <= D, D = 0..80 mm. Returns a Figure."""
    fig = Figure(figsize=(6.0, 4.5), dpi=DPI, layout="constrained")
    ax = fig.add_subplot()
    for i, res in enumerate(results):
        ax.plot(res.thresholds_mm, 100.0 * res.curve, label=_legend_label(res), **method_style(i))
    d_max = float(results[0].thresholds_mm[-1])
    ax.set_xlim(0, d_max)
    ax.set_ylim(0, 100)
    ax.set_xticks(np.arange(0, d_max + 1, 10))
    ax.set_yticks(np.arange(0, 101, 10))
    ax.grid(True, color="0.85", linewidth=0.7)
    ax.set_axisbelow(True)
    ax.set_xlabel("Maximum allowed distance to GT (mm)")
    ax.set_ylabel("Fraction of frames within distance (%)")
    ax.set_title(f"{dataset.upper()} test set: worst-joint error", fontsize=11)
    # Below the curves at large D is the one region every curve leaves empty.
    ax.legend(loc="lower right", fontsize=8, framealpha=0.95, title="Method (mean error)",
              title_fontsize=8)  # fmt: skip
    return fig


def plot_per_joint(results: list[MethodResult], joint_set: JointSet, dataset: str) -> Figure:
    """Grouped bars of per-joint mean error, one group per joint plus "Mean". Returns a Figure."""
    labels = [joint_label(n) for n in joint_set.names] + ["Mean"]
    k = len(results)
    x = np.arange(len(labels), dtype=np.float64)
    x[-1] += 0.5  # set the overall mean apart from the joints
    width = min(0.8 / k, 0.3)
    fig_w = float(np.clip(2.0 + len(labels) * (0.25 + 0.07 * k), 6.5, 11.0))
    fig = Figure(figsize=(fig_w, 4.4), dpi=DPI, layout="constrained")
    ax = fig.add_subplot()
    for i, res in enumerate(results):
        vals = np.append(res.per_joint, res.mean_error)
        style = method_style(i)
        ax.bar(x + (i - (k - 1) / 2) * width, vals, width, color=style["color"],
               edgecolor="black" if i == 0 else "none", linewidth=0.6,
               label=_legend_label(res), zorder=3)  # fmt: skip
    ax.axvline((x[-2] + x[-1]) / 2, color="0.5", linestyle=":", linewidth=1)
    ax.set_xticks(x)
    ax.set_xticklabels(labels, rotation=45, ha="right", rotation_mode="anchor")
    ax.get_xticklabels()[-1].set_fontweight("bold")
    ax.set_xlim(x[0] - 0.6, x[-1] + 0.6)
    ax.set_ylabel("Mean error (mm)")
    ax.yaxis.set_major_locator(MaxNLocator(nbins=8, integer=True))
    ax.grid(True, axis="y", color="0.85", linewidth=0.7, zorder=0)
    ax.set_axisbelow(True)
    ax.set_title(f"{dataset.upper()} test set: per-joint mean error", fontsize=11)
    ncol = k if k <= 4 else -(-k // 2)
    fig.legend(loc="outside lower center", ncol=ncol, fontsize=8, frameon=False)
    return fig


# --- writing ----------------------------------------------------------------------------------
def plot_domain_matrix(results: dict[str, dict], title: str) -> Figure:
    """The cross-domain suite's scores (:func:`handvox.eval.protocol.score_domain_sets`) as two
    rows of bars: mean joint error and share of frames within 40 mm, per set."""
    names = list(results)
    mean = [results[n]["mean_error_mm"] for n in names]
    p40 = [results[n]["percent_within_mm"]["40"] for n in names]
    fig = Figure(figsize=(max(6.0, 1.3 * len(names)), 5.5))
    a, b = fig.subplots(2, 1, sharex=True)
    a.bar(names, mean, color="#4c72b0")
    a.set(ylabel="mean joint error (mm)", title=title)
    b.bar(names, p40, color="#55a868")
    b.set(ylabel="frames, every joint ≤ 40 mm (%)", ylim=(0, 105))
    for i, (m, p) in enumerate(zip(mean, p40, strict=True)):
        a.text(i, m, f"{m:.1f}", ha="center", va="bottom", fontsize=8)
        b.text(i, p, f"{p:.0f}", ha="center", va="bottom", fontsize=8)
    b.tick_params(axis="x", labelrotation=25)
    fig.tight_layout()
    return fig


def plot_leave_one_out(
    runs: dict[str, dict[str, dict]], held_out: dict[str, list[str]], title: str
) -> Figure:
    """Leave-one-out runs on the cross-domain suite as a matrix: one row per run (``runs``: run
    name -> :func:`handvox.eval.protocol.score_domain_sets` output), one column per set, the
    mean joint error in each cell; the cells of the sets a run was trained without
    (``held_out``: run name -> set names) framed."""
    names = list(runs)
    sets = list(next(iter(runs.values())))
    err = np.array([[runs[r][s]["mean_error_mm"] for s in sets] for r in names])
    fig = Figure(figsize=(max(6.0, 1.25 * len(sets) + 2.0), 1.0 + 0.7 * len(names)))
    ax = fig.subplots()
    im = ax.imshow(np.log(err), cmap="viridis_r", aspect="auto")
    for i, r in enumerate(names):
        for j, s in enumerate(sets):
            ax.text(j, i, f"{err[i, j]:.1f}", ha="center", va="center", fontsize=9,
                    color="white" if im.norm(np.log(err[i, j])) > 0.6 else "black")  # fmt: skip
            if s in held_out.get(r, ()):
                ax.add_patch(Rectangle((j - 0.48, i - 0.48), 0.96, 0.96, fill=False,
                                       edgecolor="#d62728", linewidth=2.5))  # fmt: skip
    ax.set_xticks(range(len(sets)), sets, rotation=25, ha="right")
    ax.set_yticks(range(len(names)), names)
    ax.set_title(title + " (mean joint error, mm; framed: trained without)", fontsize=10)
    fig.tight_layout()
    return fig


def write_report(
    out: Path, metrics: dict, markdown: str, results: list[MethodResult], joint_set: JointSet
) -> list[Path]:
    """Write ``metrics.json``, ``report.md``, ``curve.png``, ``per_joint.png`` into ``out``."""
    if out.exists() and not out.is_dir():
        raise HandvoxError(f"{out}: exists and is not a folder; --out needs a folder")
    out.mkdir(parents=True, exist_ok=True)
    dataset = metrics["dataset"]
    paths = [out / n for n in ("metrics.json", "report.md", "curve.png", "per_joint.png")]
    text = json.dumps(metrics, indent=2) + "\n"
    write_text(paths[0], text)
    write_text(paths[1], markdown)
    for path, fig in (
        (paths[2], plot_curve(results, dataset)),
        (paths[3], plot_per_joint(results, joint_set, dataset)),
    ):
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png", dpi=DPI)
    return paths
