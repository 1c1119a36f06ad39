"""Assemble the report: one self-contained HTML page (inline PNGs and CSS, no script, no
network), with the plotted numbers embedded as JSON in ``<script type="application/json"
id="lmspec-report-data">``.

The page is built with ``html.escape`` and f-strings rather than a template engine: it is one
fixed layout, and this keeps the ``report`` extra to matplotlib alone.
"""

from __future__ import annotations

import datetime
import json
from html import escape
from typing import Any

from .._version import __version__
from .figures import Plot, confusion, curve, overlay, regression
from .runs import Run, number

CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:0;color:#1d1d1f;background:#fafafa}
header{background:#17324d;color:#fff;padding:18px 32px}
header h1{margin:0;font-size:22px}header p{margin:4px 0 0;opacity:.85;font-size:13px}
main{padding:8px 32px 40px;max-width:1400px}
h2{font-size:18px;border-bottom:1px solid #ddd;padding-bottom:4px;margin-top:28px}
.grid{display:flex;flex-wrap:wrap;gap:16px;align-items:flex-start}
figure{margin:0;background:#fff;border:1px solid #e3e3e3;border-radius:6px;padding:6px}
figure img{display:block;max-width:100%}
table{border-collapse:collapse;background:#fff;font-size:13px;margin:6px 0}
th,td{border:1px solid #e0e0e0;padding:4px 10px;text-align:left;vertical-align:top}
th{background:#f0f3f6}td.num{text-align:right;font-variant-numeric:tabular-nums}
pre{background:#fff;border:1px solid #e3e3e3;padding:10px;overflow:auto;font-size:12px;max-height:480px}
.note{color:#8a5a00;font-size:13px}.diff{background:#fff6e0}
.metric{display:inline-block;background:#fff;border:1px solid #e3e3e3;border-radius:6px;padding:8px 14px;margin:4px}
.metric b{display:block;font-size:20px}
td.text{white-space:pre-wrap;font-family:ui-monospace,monospace;background:#f6f8fa;max-width:520px}
"""


def _num(v: Any) -> str:
    """A value for the page, escaped: numbers to 6 significant digits, anything else as text."""
    if isinstance(v, bool) or v is None:
        return escape(str(v)) if v is not None else "–"
    if isinstance(v, int | float):
        try:
            return f"{v:.6g}"
        except OverflowError:  # an integer beyond float range
            return escape(str(v))
    return escape(str(v))


def _figure(p: Plot) -> str:
    return (f'<figure id="fig-{escape(p.id)}"><img alt="{escape(p.title)}" '
            f'src="data:image/png;base64,{p.png}"></figure>')


def _table(head: list[str], rows: list[list[Any]], *, classes: list[str] | None = None) -> str:
    out = ["<table><tr>", *(f"<th>{escape(h)}</th>" for h in head), "</tr>"]
    for k, row in enumerate(rows):
        cls = f' class="{classes[k]}"' if classes and classes[k] else ""
        cells = "".join(f'<td class="num">{_num(c)}</td>' if isinstance(c, int | float) and not isinstance(c, bool)
                        else f"<td>{_num(c)}</td>" for c in row)
        out.append(f"<tr{cls}>{cells}</tr>")
    out.append("</table>")
    return "".join(out)


def _page(title: str, subtitle: str, body: list[str], data: dict[str, Any]) -> str:
    # No "<" at all inside the element: "</script" would end it, and "<!--" would change how the
    # browser reads up to the end of the page.
    blob = json.dumps(data, separators=(",", ":")).replace("<", "\\u003c")
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
        # Nothing may load from elsewhere: the report must open offline, anywhere.
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; img-src data:; "
        "style-src 'unsafe-inline'\">"
        f"<title>{escape(title)}</title><style>{CSS}</style></head><body>"
        f"<header><h1>{escape(title)}</h1><p>{subtitle}</p></header><main>{''.join(body)}</main>"
        f'<script type="application/json" id="lmspec-report-data">{blob}</script></body></html>\n'
    )


def _stamp() -> str:
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    return f"lmspec {escape(__version__)} · {now}"


# --- one run ---------------------------------------------------------------------------------


def _curves(run: Run) -> list[Plot]:
    plots = [curve(run, "loss", "Loss", [("train", "train", "loss"), ("validation", "validation", "loss")],
                   ylabel="loss")]
    preference = bool(run.series("train", "rewardAccuracy")[0])
    if preference:  # a dpo or simpo run: what its users read first, as TRL logs it
        plots.append(curve(run, "reward-accuracy", "Reward accuracy",
                           [("train", "train", "rewardAccuracy"), ("validation", "validation", "rewardAccuracy")],
                           ylabel="share of pairs, chosen reward higher"))
        plots.append(curve(run, "rewards", "Rewards", [
            (f"{side} ({split})", split, key) for split in ("train", "validation")
            for side, key in (("chosen", "rewardChosen"), ("rejected", "rewardRejected"), ("margin", "rewardMargin"))],
            ylabel="reward"))
        plots.append(curve(run, "logps", "Log-probabilities of the answers", [
            (f"{side} ({split})", split, key) for split in ("train", "validation")
            for side, key in (("chosen", "logpChosen"), ("rejected", "logpRejected"))], ylabel="log-probability"))
    for m in run.declared:
        if m != "loss" and not (preference and m in ("rewardAccuracy", "rewardMargin")):
            plots.append(curve(run, f"metric-{m}", f"Validation {m}", [("validation", "validation", m)], ylabel=m))
    plots.append(curve(run, "lr", "Learning rate", [("lr", "train", "lr")], ylabel="learning rate"))
    plots.append(curve(run, "throughput", "Throughput", [("samples/s", "train", "samples_per_s")],
                       ylabel="samples / s"))
    return [p for p in plots if p is not None]


def _test_section(run: Run, plots: list[Plot]) -> list[str]:
    body = ["<h2>Test metrics</h2>"]
    test = run.test_metrics()
    loss = number(test.get("loss"))
    if run.task == "causal-lm" and "perplexity" not in test and loss is not None:
        import math

        test["perplexity (exp loss)"] = math.exp(min(loss, 50.0))
    if test:
        body.append("".join(f'<span class="metric">{escape(k)}<b>{_num(v)}</b></span>' for k, v in test.items()))
    else:
        body.append('<p class="note">no test metrics (evaluation disabled or an empty test split)</p>')
    pred = run.predictions
    if pred is not None and pred.task == "classification":
        plot, rows = confusion(pred)
        plots.append(plot)
        body += ["<h2>Classes</h2>", '<div class="grid">', _figure(plot),
                 _table(["class", "precision", "recall", "support"],
                        [[r["class"], r["precision"], r["recall"], r["support"]] for r in rows]), "</div>"]
    elif pred is not None:
        pair = regression(pred)
        plots.extend(pair)
        body += ["<h2>Predictions</h2>", '<div class="grid">', *map(_figure, pair), "</div>"]
    if run.answers:
        body += ["<h2>Sample answers</h2>",
                 '<p class="note">greedy answers by the exported model to held-out conversations</p>',
                 "<table><tr><th>prompt</th><th>answer</th><th>reference</th></tr>",
                 *(f'<tr><td class="text">{escape(p)}</td><td class="text">{escape(a)}</td>'
                   f'<td class="text">{escape(r)}</td></tr>' for p, a, r in run.answers), "</table>"]
    if run.samples:
        body += ["<h2>Sample generations</h2>",
                 '<p class="note">greedy continuations by the exported model of held-out text</p>',
                 "<table><tr><th>prompt</th><th>continuation</th></tr>",
                 *(f'<tr><td class="text">{escape(p)}</td><td class="text">{escape(c)}</td></tr>'
                   for p, c in run.samples), "</table>"]
    return body


def _lock_section(run: Run) -> list[str]:
    lock = run.lock
    body = ["<h2>Lock</h2>"]
    if not lock:
        return [*body, '<p class="note">no lock.json</p>']
    keys = ["lmspec", "python", "torch", "deepspeed", "seed", "worldSize", "dataFingerprint"]
    body.append(_table(["field", "value"], [[k, lock.get(k)] for k in keys if k in lock]))
    files = lock.get("dataFiles")
    if isinstance(files, dict) and files:
        body.append(_table(["data file", "sha256"], [[k, v] for k, v in files.items()]))
    body.append("<details><summary>DeepSpeed config</summary><pre>"
                f"{escape(json.dumps(lock.get('deepspeedConfig', {}), indent=2))}</pre></details>")
    return body


def _count(value: Any, noun: str) -> str:
    """``1 epoch``, ``2.86 epochs``, ``? steps`` (a value the summary lacks or that is no number)."""
    n = number(value)
    return f"{escape(str(value))} {noun}" if n == 1 else f"{escape(str(value)) if n is not None else '?'} {noun}s"


def single(run: Run) -> str:
    plots = _curves(run)
    s = run.summary
    facts = (f"{escape(str(run.path))} · task {escape(str(run.task))} · {_count(s.get('steps'), 'step')} · "
             f"{_count(s.get('epochs'), 'epoch')}"
             + (" · stopped early" if s.get("stoppedEarly") is True else "") + f" · {_stamp()}")
    body = [f'<p class="note">{escape(n)}</p>' for n in run.notes]
    body += ["<h2>Training</h2>",
             '<p class="note">dotted: checkpoints · dashed blue: resume · red: early stop</p>',
             '<div class="grid">', *map(_figure, plots), "</div>"]
    body += _test_section(run, plots)
    body += _lock_section(run)
    body += ["<h2>Rendered manifests</h2>",
             f"<details><summary>rendered.yaml</summary><pre>{escape(run.rendered_text)}</pre></details>"]
    data = {"runs": [{"label": run.label, "path": str(run.path)}], "figures": {p.id: p.data for p in plots}}
    return _page(f"lmspec report — {run.name}", facts, body, data)


# --- several runs ----------------------------------------------------------------------------


def _flat(run: Run) -> dict[str, str]:
    from ..train.tracking import flat_params

    out = flat_params(run.rendered)
    for k, v in run.lock.items():
        if k != "deepspeedConfig":  # derived from the TrainingJob, compared there
            out[f"lock.{k}"] = json.dumps(v, sort_keys=True)
    return out


def compare(runs: list[Run]) -> str:
    seen: dict[str, int] = {}
    for r in runs:
        seen[r.name] = seen.get(r.name, 0) + 1
    for r in runs:
        if seen[r.name] > 1:
            r.label = f"{r.name} ({r.path.name})"
    plots: list[Plot | None] = [overlay(runs, "compare-train-loss", "Training loss", "train", "loss", ylabel="loss")]
    metrics = list(dict.fromkeys(m for r in runs for m in ["loss", *r.declared]))
    for m in metrics:
        plots.append(overlay(runs, f"compare-validation-{m}", f"Validation {m}", "validation", m, ylabel=m))
    plots.append(overlay(runs, "compare-lr", "Learning rate", "train", "lr", ylabel="learning rate"))
    shown = [p for p in plots if p is not None]
    finals = [r.final_metrics() for r in runs]
    keys = list(dict.fromkeys(k for f in finals for k in f))
    flats = [_flat(r) for r in runs]
    fields = sorted(set().union(*flats))
    differ = [f for f in fields if len({fl.get(f) for fl in flats}) > 1]
    body = ["<h2>Runs</h2>",
            _table(["run", "directory", "task", "steps", "stopped early"],
                   [[r.label, str(r.path), r.task, r.summary.get("steps"), r.summary.get("stoppedEarly")]
                    for r in runs]),
            "<h2>Curves</h2>", '<div class="grid">', *map(_figure, shown), "</div>",
            "<h2>Final metrics</h2>",
            _table(["metric", *[r.label for r in runs]], [[k, *[f.get(k) for f in finals]] for k in keys]),
            f"<h2>Manifest and lock fields that differ ({len(differ)} of {len(fields)})</h2>",
            _table(["field", *[r.label for r in runs]], [[f, *[fl.get(f, "–") for fl in flats]] for f in differ])
            if differ else '<p class="note">the runs were declared identically</p>']
    for r in runs:
        body += [f"<details><summary>{escape(r.label)}: rendered.yaml</summary>"
                 f"<pre>{escape(r.rendered_text)}</pre></details>"]
    data = {"runs": [{"label": r.label, "path": str(r.path)} for r in runs],
            "figures": {p.id: p.data for p in shown},
            "finalMetrics": {r.label: f for r, f in zip(runs, finals, strict=True)},
            "differingFields": differ}
    return _page(f"lmspec report — {len(runs)} runs compared", _stamp(), body, data)
