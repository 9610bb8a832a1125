"""Render a comparison: a Markdown table for the terminal; CSV, JSON and a plot beside the runs."""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path
from typing import Any

from mnist_cnn import compare_chart
from mnist_cnn.compare import METRICS
from mnist_cnn.errors import UserError
from mnist_cnn.runs import save_figure, write_json_atomic, write_text_atomic


def _cell(d: dict[str, Any] | None, pct: bool) -> str:
    if d is None:
        return "none (no validation set)"
    scale, unit = (100, "%") if pct else (1, "")
    if d["std"] is None:
        return f"{scale * d['mean']:.2f}{unit} (n=1)" if pct else f"{d['mean']:.4f} (n=1)"
    lo, hi = (scale * v for v in d["ci95"])
    mark = "*" if d.get("ci95_clipped") else ""
    if pct:
        return f"{scale * d['mean']:.2f} ± {scale * d['std']:.2f}{unit} [{lo:.2f}, {hi:.2f}]{mark}"
    return f"{d['mean']:.4f} ± {d['std']:.4f} [{lo:.4f}, {hi:.4f}]{mark}"


def _sections(result: dict[str, Any]) -> str:
    """callbacks (10 settings), logger.name: one line, however many keys."""
    counts: dict[str, int] = {}
    for key in result["ignored_differences"]:
        section = key.split(".")[0] if key.startswith(("callbacks.", "logger.")) else key
        counts[section] = counts.get(section, 0) + 1
    return ", ".join(f"{k} ({n} settings)" if n > 1 else k for k, n in counts.items())


def _folds(result: dict[str, Any]) -> list[str]:
    """Cross-validated groups: their folds, the variance split, and how a recipe is chosen."""
    folded = [g for g in result["groups"] if g.get("folds")]
    if not folded:
        return []
    lines = ["", "Cross-validated: recipes are chosen on their validation folds (val acc, paired "
             "by fold and seed); the test set is reported, never used to choose."]  # fmt: skip
    for g in folded:
        by_fold = ", ".join(f"fold {f} {100 * v:.2f}%" for f, v in g["per_fold"].items())
        seeds = len({json.dumps(s) for s in g["seeds"]})
        line = f"- {g['group']}: {len(g['per_fold'])} folds x {seeds} seeds; test acc {by_fold}"
        if g.get("variance"):
            v = g["variance"]
            line += (f"; test acc variance: fold {100 * v['fold']:.0f}%, seed "
                     f"{100 * v['seed']:.0f}%, neither {100 * v['residual']:.0f}%")  # fmt: skip
        lines.append(line)
    return lines


def markdown(result: dict[str, Any]) -> str:
    lines = [
        "| group | n | test acc (mean ± std [95% CI]) | min | max | test loss | val acc "
        "| parameters | fit s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for g in result["groups"]:
        acc = g["test/acc"]
        fit = g.get("train_seconds")
        params = ", ".join(f"{p:,}" for p in g.get("num_params", [])) or "?"
        cells = [
            g["group"],
            acc["n"],
            _cell(acc, True),
            f"{100 * acc['min']:.2f}%",
            f"{100 * acc['max']:.2f}%",
            _cell(g["test/loss"], False),
            _cell(g["val/acc"], True),
            params,
            f"{fit['mean']:.0f}" if fit else "?",
        ]
        lines.append("| " + " | ".join(map(str, cells)) + " |")
    clipped = (
        (g[m] or {}).get("ci95_clipped") for g in result["groups"] for m in ("test/acc", "val/acc")
    )
    if any(clipped):
        lines += [
            "",
            "* the t-interval passed 100% at this n and is clipped to the possible range.",
        ]
    if result.get("partial"):
        lines += [
            "",
            f"Runs on part of the data ({', '.join(result['partial'])}): a smoke comparison, "
            "not a result to quote.",
        ]
    if result["differing_keys"]:
        lines += ["", f"Grouped by: {', '.join(result['differing_keys'])} (seeds pooled)."]
    if result.get("ignored_differences"):
        lines.append(f"Not grouped by (no effect on the arithmetic): {_sections(result)}.")
    for group, epochs in result.get("planned_epochs", {}).items():
        lines.append(
            f"Epochs planned from budget_seconds, each run on its machine (pooled as one recipe; "
            f"the plans are in the runs' metrics.json): {group}: {', '.join(map(str, epochs))}."
        )
    lines += _folds(result)
    for t in result["tests"]:
        p = "n/a" if t["p"] is None else f"{t['p']:.3g}"
        holm = f", Holm-adjusted {t['p_holm']:.3g}" if t.get("p_holm") is not None else ""
        metric = t.get("metric", "test/acc").replace("/", " ")
        lines.append(
            f"- {t['a']} vs {t['b']}: {metric} difference {100 * t['diff']:+.3f} points, "
            f"{t.get('test', 'Welch')} p = {p}{holm}: {t['verdict']}"
        )
    for n in result.get("not_compared", []):
        lines.append(f"- {n['a']} vs {n['b']}: not tested, {n['why']}")
    for c in result["reproducibility"]:
        state = (
            "bit-identical" if c["bit_identical"] else f"differ (max {c['max_metric_diff']:.3g})"
        )
        if not c["bit_identical"]:
            causes = c.get("recorded_differences") or []
            state += f": {'; '.join(causes)}" if causes else ": no recorded cause"
        lines.append(f"- same config and seed {c['seed']}: {state}: {' and '.join(c['runs'])}")
    if result.get("pruned"):
        lines += ["", "Pruned by the search (not failures, in no group):"]
        lines += [f"- {e['path']}: {e['reason'].removeprefix('pruned by the search ')}"
                  for e in result["pruned"]]  # fmt: skip
    if result["excluded"]:
        lines += ["", "Excluded:"] + [f"- {e['path']}: {e['reason']}" for e in result["excluded"]]
    return "\n".join(lines)


def default_out_dir(result: dict[str, Any]) -> Path:
    paths = [p for g in result["groups"] for p in g["runs"]]
    return Path(os.path.commonpath(paths)) if len(paths) > 1 else Path(paths[0]).parent


def write(result: dict[str, Any], out_dir: Path) -> list[Path]:
    """comparison.json, comparison.csv and comparison.png in out_dir; returns their paths."""
    if os.path.lexists(out_dir) and not out_dir.is_dir():
        raise UserError(f"--out {out_dir}: not a directory; give a directory (new or existing)")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"--out {out_dir}: cannot create it ({exc.strerror or exc})") from None
    write_json_atomic(out_dir / "comparison.json", result)
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(
        [
            "group",
            "n",
            *(f"{m} {s}" for m in METRICS for s in ("mean", "std", "ci95_low", "ci95_high")),
        ]
    )
    for g in result["groups"]:
        row = [g["group"], g["test/acc"]["n"]]
        for m in METRICS:
            d = g[m] or {"mean": None, "std": None, "ci95": None}  # None: no validation set
            row += [d["mean"], d["std"], *(d["ci95"] or (None, None))]
        writer.writerow(row)
    write_text_atomic(out_dir / "comparison.csv", buffer.getvalue())
    points = {g["group"]: g["test/acc"] for g in result["groups"]}
    save_figure(compare_chart.group_comparison(points), out_dir / "comparison.png")
    return [out_dir / n for n in ("comparison.json", "comparison.csv", "comparison.png")]
