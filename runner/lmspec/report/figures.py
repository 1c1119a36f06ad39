"""The report's figures, drawn with matplotlib (no pyplot: no global state, no display).

Every figure is returned with the numbers it plots (:class:`Plot.data`), which the report embeds
as JSON beside the image: readers (and the tests) can check a curve against ``metrics.jsonl``.
"""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from .runs import Run, TestPredictions

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

EVENT_STYLE = {
    "checkpoint": {"color": "#8c8c8c", "linestyle": ":", "label": "checkpoint"},
    "resume": {"color": "#1f77b4", "linestyle": "--", "label": "resume"},
    "earlyStop": {"color": "#d62728", "linestyle": "-", "label": "early stop"},
}


@dataclass
class Plot:
    id: str
    title: str
    png: str
    """base64 PNG."""
    data: dict[str, Any] = field(default_factory=dict)


def _figure(width: float = 5.5, height: float = 3.2) -> tuple[Figure, Axes]:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=96, layout="constrained")
    return fig, fig.add_subplot()


def _png(fig: Figure) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _mark_events(ax: Axes, events: list[dict[str, Any]]) -> dict[str, list[int]]:
    marked: dict[str, list[int]] = {}
    for e in events:
        style = EVENT_STYLE.get(str(e.get("event")))
        if style is None:
            continue
        steps = marked.setdefault(str(e["event"]), [])
        ax.axvline(int(e["step"]), color=style["color"], linestyle=style["linestyle"], linewidth=1,
                   label=style["label"] if not steps else None)
        steps.append(int(e["step"]))
    return marked


def curve(run: Run, plot_id: str, title: str, lines: list[tuple[str, str, str]], *,
          ylabel: str, events: bool = True, logy: bool = False) -> Plot | None:
    """Lines ``(label, split, key)`` of one run against the optimizer step."""
    fig, ax = _figure()
    series: dict[str, dict[str, list[float]]] = {}
    for label, split, key in lines:
        x, y = run.series(split, key)
        if not x:
            continue
        ax.plot(x, y, marker="o" if len(x) < 30 else None, markersize=3, label=label)
        series[label] = {"split": split, "key": key, "x": x, "y": y}  # type: ignore[dict-item]
    if not series:
        return None
    marked = _mark_events(ax, run.events()) if events else {}
    _finish(ax, title, ylabel, logy)
    return Plot(plot_id, title, _png(fig), {"series": series, "events": marked})


def overlay(runs: list[Run], plot_id: str, title: str, split: str, key: str, *, ylabel: str) -> Plot | None:
    """The same curve of several runs on one axis."""
    fig, ax = _figure()
    series = {}
    for run in runs:
        x, y = run.series(split, key)
        if x:
            ax.plot(x, y, label=run.label)
            series[run.label] = {"split": split, "key": key, "x": x, "y": y}
    if not series:
        return None
    _finish(ax, title, ylabel, logy=False)
    return Plot(plot_id, title, _png(fig), {"series": series})


def _finish(ax: Axes, title: str, ylabel: str, logy: bool) -> None:
    from matplotlib.ticker import MaxNLocator

    ax.set_title(title, fontsize=11)
    ax.set_xlabel("optimizer step")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # steps are whole: no tick at 22.5
    ax.set_ylabel(ylabel)
    if logy:
        ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)


def confusion(pred: TestPredictions) -> tuple[Plot, list[dict[str, Any]]]:
    """Confusion matrix (rows: true class, columns: predicted) and per-class precision/recall."""
    classes = pred.classes or [str(i) for i in range(int(max(pred.targets.max(), pred.outputs.max())) + 1)]
    k = len(classes)
    matrix = np.zeros((k, k), dtype=np.int64)
    np.add.at(matrix, (pred.targets, pred.outputs), 1)
    fig, ax = _figure(1.2 + 0.7 * k, 1.0 + 0.6 * k)
    ax.imshow(matrix, cmap="Blues")
    for i in range(k):
        for j in range(k):
            ax.text(j, i, str(matrix[i, j]), ha="center", va="center",
                    color="white" if matrix[i, j] > matrix.max() / 2 else "black")
    ax.set_xticks(range(k), classes, rotation=30, ha="right")
    ax.set_yticks(range(k), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title("Confusion matrix (test split)", fontsize=11)
    rows = []
    for i, c in enumerate(classes):
        predicted, actual = int(matrix[:, i].sum()), int(matrix[i, :].sum())
        rows.append({"class": c, "support": actual,
                     "precision": float(matrix[i, i] / predicted) if predicted else None,
                     "recall": float(matrix[i, i] / actual) if actual else None})
    plot = Plot("confusion", "Confusion matrix", _png(fig),
                {"classes": classes, "matrix": matrix.tolist(), "perClass": rows})
    return plot, rows


def regression(pred: TestPredictions) -> list[Plot]:
    """Predicted against true values, and residuals against predictions."""
    t, p = pred.targets, pred.outputs
    fig, ax = _figure(4.6, 4.0)
    ax.scatter(t, p, s=12, alpha=0.7)
    lo, hi = float(min(t.min(), p.min())), float(max(t.max(), p.max()))
    ax.plot([lo, hi], [lo, hi], color="#8c8c8c", linestyle="--", linewidth=1, label="y = x")
    ax.set_xlabel("true")
    ax.set_ylabel("predicted")
    ax.set_title("Predicted vs true (test split)", fontsize=11)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    first = Plot("predicted-vs-true", "Predicted vs true", _png(fig),
                 {"true": t.tolist(), "predicted": p.tolist()})
    fig, ax = _figure(4.6, 4.0)
    ax.scatter(p, p - t, s=12, alpha=0.7, color="#ff7f0e")
    ax.axhline(0.0, color="#8c8c8c", linestyle="--", linewidth=1)
    ax.set_xlabel("predicted")
    ax.set_ylabel("predicted − true")
    ax.set_title("Residuals (test split)", fontsize=11)
    ax.grid(alpha=0.3)
    second = Plot("residuals", "Residuals", _png(fig), {"predicted": p.tolist(), "residual": (p - t).tolist()})
    return [first, second]
