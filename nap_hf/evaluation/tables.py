"""The paper's tables and figures from evaluation results, with the paper's numbers beside ours.

Input: one or more ``summary.json`` files written by :func:`nap_hf.evaluation.run_eval` (one per model: its
``family`` ``llada`` / ``dream`` and ``training`` ``base`` / ``longcot`` / ``nap`` say where its numbers go).
Every cell reads ``ours (paper)``; ``—`` marks a run that is not there, and a cell is left out of a table only
when neither side has a number.

Which run fills which cell (decided here; the paper names the decoding rules, not our strategy names):

* Table 1 (GSM8K, base models): "AR Order" = ``ar``, "AO (Conf)" = ``confidence``; the "+ Fast-dLLM" row's AO
  cell = ``threshold`` (Fast-dLLM's parallel decoding; its AR cell repeats the ``ar`` run, Fast-dLLM does not
  change AR-order decoding). Steps: the largest budget present (the paper does not say).
* Table 2 / Figure 4: Global-ARness@1 of ``confidence`` for the base and the Long-CoT model.
* Table 3: base and Long-CoT models with ``confidence`` (AO, their standard decoding), NAP models with
  ``parallel_forced`` (m = 3); one row per (benchmark, steps); Tok/Step as in the paper (slots / steps).
* Table 4: AO = ``confidence`` for the base model and ``confidence:nap`` (else ``confidence``) for the NAP
  model; Parallel-Forced = ``parallel_forced`` (m = 3).
* Table 5: NAP models, ``parallel_forced`` at m = 1 / 2 / 3, the largest step budget present.
* Figure 2: accuracy of the base models per decoding order (``ar``, ``confidence``, ``random``), GSM8K and
  MATH-500 side by side, the paper's Table 1 values as open markers.
* Figure 1: the decoding dynamics saved with the runs (``traces/``): LLaDA AO, Dream AO, random, NAP.

Matplotlib is imported lazily and never through ``pyplot``; PNGs are written atomically.
"""

from __future__ import annotations

import json
import math
import os
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from nap_hf.evaluation import paper
from nap_hf.evaluation.answers import canonical_task
from nap_hf.io import save_figure_atomic, write_text_atomic

__all__ = [
    "load_summaries",
    "render_tables",
    "table1",
    "table2",
    "table3",
    "table4",
    "table5",
    "runs_table",
    "plot_accuracy_by_order",
    "plot_arness_shift",
    "plot_dynamics",
    "write_report",
]

_BENCH_NAMES = {"gsm8k": "GSM8K", "math500": "MATH-500", "gpqa": "GPQA"}
_ORDER_NAMES = {
    "ar": "AR order",
    "confidence": "AO (conf)",
    "random": "Random",
    "threshold": "Fast-dLLM",
    "parallel_forced": "Parallel-forced",
}
DASH = "—"


# --------------------------------------------------------------------------------------------- loading


def load_summaries(paths: str | os.PathLike | Iterable[str | os.PathLike]) -> list[dict[str, Any]]:
    """Summaries from ``summary.json`` files or directories (searched recursively), sorted by directory.
    Each gets a ``_dir`` key (its directory, for the saved traces)."""
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    files: list[Path] = []
    for p in paths:
        p = Path(p)
        if p.is_file():
            files.append(p)
        elif p.is_dir():
            files += sorted(p.rglob("summary.json"))
    out = []
    for f in sorted(set(files)):
        with open(f, encoding="utf-8") as fh:
            s = json.load(fh)
        if isinstance(s, dict) and "runs" in s:
            s["_dir"] = str(f.parent)
            out.append(s)
    return out


def _bench(task: str) -> str | None:
    try:
        return canonical_task(task)
    except ValueError:
        return None


def _find(
    summaries: Sequence[dict[str, Any]],
    family: str,
    training: str,
    bench: str,
    strategy: str,
    steps: int | None = None,
    m: int | None = None,
) -> dict[str, Any] | None:
    """The run of (family, training) on ``bench`` with ``strategy`` (and ``steps``, ``m``); with
    ``steps=None`` the largest budget present. The first summary (by directory) that has it wins."""
    for s in summaries:
        if s.get("family") != family or s.get("training") != training:
            continue
        cands = [
            r
            for r in s["runs"].values()
            if _bench(r["task"]) == bench
            and r["strategy"] == strategy
            and (steps is None or r["steps"] == steps)
            and (m is None or r.get("m") == m)
            and r.get("n")
        ]
        if cands:
            return max(cands, key=lambda r: r["steps"])
    return None


def _steps_present(summaries: Sequence[dict[str, Any]], **filters: Any) -> list[int]:
    found = set()
    for s in summaries:
        if any(s.get(k) != v for k, v in filters.items() if k in ("family", "training")):
            continue
        for r in s["runs"].values():
            if "bench" in filters and _bench(r["task"]) != filters["bench"]:
                continue
            if "strategies" in filters and r["strategy"] not in filters["strategies"]:
                continue
            if r.get("n"):
                found.add(int(r["steps"]))
    return sorted(found)


# --------------------------------------------------------------------------------------------- cells


def _fmt(value: float | None, digits: int) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return DASH
    return f"{value:.{digits}f}"


def _cell(ours: float | None, theirs: float | None, digits: int = 1) -> str:
    return f"{_fmt(ours, digits)} ({_fmt(theirs, digits)})"


def _acc(run: dict[str, Any] | None) -> float | None:
    return None if run is None else run.get("accuracy")


def _arness(run: dict[str, Any] | None) -> float | None:
    return None if run is None else run.get("arness")


def _partial(run: dict[str, Any] | None) -> str:
    """A marker for a run on part of the benchmark (``--limit``)."""
    if run is None:
        return ""
    n = run.get("n")
    total = (run.get("settings") or {}).get("num_examples")
    if not run.get("complete", True) or (run.get("settings") or {}).get("limit") is not None:
        return f"<sup>n={n}</sup>" if n is not None else ""
    return "" if total is None or n == total else f"<sup>n={n}</sup>"


def _md(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------- tables


def table1(summaries: Sequence[dict[str, Any]], steps: int | None = None) -> str:
    """Table 1 (GSM8K): ARness and accuracy of the base models under AR order and AO (confidence)."""
    rows = []
    used_steps = set()
    for fam in paper.FAMILIES:
        ar = _find(summaries, fam, "base", "gsm8k", "ar", steps)
        for variant, ao_strategy, label in (
            ("base", "confidence", paper.FAMILY_NAMES[fam]),
            ("fast_dllm", "threshold", "+ Fast-dLLM"),
        ):
            ao = _find(summaries, fam, "base", "gsm8k", ao_strategy, steps)
            ref = paper.TABLE1[fam][variant]
            used_steps |= {r["steps"] for r in (ar, ao) if r is not None}
            rows.append(
                [
                    label,
                    _cell(_arness(ar), ref["ar"][0], 2),
                    _cell(_acc(ar), ref["ar"][1]) + _partial(ar),
                    _cell(_arness(ao), ref["ao"][0], 2),
                    _cell(_acc(ao), ref["ao"][1]) + _partial(ao),
                ]
            )
    head = ["Model", "AR Order ARness", "AR Order Acc", "AO (Conf) ARness", "AO (Conf) Acc"]
    note = (
        f"Steps: {', '.join(map(str, sorted(used_steps))) or DASH} "
        f"({'given' if steps is not None else 'the largest budget present'}). "
        "ARness = Global-ARness@1 over all generated positions; the Fast-dLLM rows' AO cells are the "
        "`threshold` runs, their AR cells repeat the `ar` run."
    )
    return (
        "### Table 1. ARness and accuracy per decoding order (GSM8K), ours (paper)\n\n"
        + _md(head, rows)
        + f"\n\n{note}\n"
    )


def table2(summaries: Sequence[dict[str, Any]], steps: int | None = None) -> str:
    """Table 2: Global-ARness@1 under AO decoding, base -> Long-CoT SFT (GSM8K)."""
    rows = []
    for fam in paper.FAMILIES:
        base = _arness(_find(summaries, fam, "base", "gsm8k", "confidence", steps))
        cot = _arness(_find(summaries, fam, "longcot", "gsm8k", "confidence", steps))
        ref = paper.TABLE2[fam]
        delta = None if base is None or cot is None else cot - base
        rows.append(
            [
                paper.FAMILY_NAMES[fam],
                _cell(base, ref["base"], 2),
                _cell(cot, ref["longcot"], 2),
                f"{'' if delta is None or delta < 0 else '+'}{_fmt(delta, 2)} ({ref['longcot'] - ref['base']:+.2f})",
            ]
        )
    head = ["Model", "Base (Pretrained)", "Long-CoT (SFT)", "Change"]
    return "### Table 2. Global ARness@1 under AO decoding (GSM8K), ours (paper)\n\n" + _md(head, rows) + "\n"


def table3(summaries: Sequence[dict[str, Any]], m: int = 3) -> str:
    """Table 3: accuracy per benchmark x steps (x tokens/step) for base, Long-CoT and NAP models."""
    cols = [(fam, tr) for fam in paper.FAMILIES for tr in paper.TRAININGS]
    names = {
        ("llada", "base"): "LLaDA 8B",
        ("llada", "longcot"): "LLaDA 8B (Long-CoT)",
        ("llada", "nap"): "NAP-LLaDA 8B",
        ("dream", "base"): "Dream-7B",
        ("dream", "longcot"): "Dream-7B (Long-CoT)",
        ("dream", "nap"): "NAP-Dream-7B",
    }
    rows = []
    for bench in ("gsm8k", "math500", "gpqa"):
        steps_all = sorted(
            set(_steps_present(summaries, bench=bench, strategies=("confidence", "parallel_forced")))
            | {s for fam in paper.FAMILIES for s in paper.TABLE3[bench][fam]["base"]}
        )
        first = True
        for steps in steps_all:
            cells = []
            tps = None
            any_value = False
            for fam, tr in cols:
                strategy = "parallel_forced" if tr == "nap" else "confidence"
                run = _find(summaries, fam, tr, bench, strategy, steps, m if tr == "nap" else None)
                ref = paper.paper_value("table3", bench, fam, tr, steps)
                if run is not None and (tps is None or tr == "nap"):
                    tps = run.get("tokens_per_step")
                any_value |= run is not None or ref is not None
                cells.append(_cell(_acc(run), ref) + _partial(run))
            if not any_value:
                continue
            paper_tps = paper.PAPER_TOKENS_PER_STEP.get(steps)
            tps_cell = f"{_fmt(tps, 2)} ({paper_tps if paper_tps is not None else DASH})"
            rows.append([_BENCH_NAMES[bench] if first else "", str(steps), tps_cell, *cells])
            first = False
    head = ["Benchmark", "Steps", "Tok/Step", *[names[c] for c in cols]]
    note = (
        "Base and Long-CoT models: `confidence` (AO; LLaDA block-wise) on the plain canvas; NAP models: "
        f"`parallel_forced`, m = {m}. Tok/Step: slots / steps of the row's NAP run (else of its first run). GPQA: the split evaluated "
        "(the paper does not say which)."
    )
    return (
        "### Table 3. Accuracy under different step budgets, ours (paper)\n\n"
        + _md(head, rows)
        + f"\n\n{note}\n"
    )


def table4(summaries: Sequence[dict[str, Any]], m: int = 3) -> str:
    """Table 4: training data x decoding (GSM8K), Dream as in the paper, LLaDA too when present."""
    sections = []
    for fam in ("dream", "llada"):
        steps_all = sorted(
            set(
                _steps_present(
                    summaries,
                    family=fam,
                    bench="gsm8k",
                    strategies=("confidence", "confidence:nap", "parallel_forced"),
                )
            )
            | (set(paper.TABLE4["base"]["ao"]) if fam == "dream" else set())
        )
        rows = []
        have = False
        for tr in ("base", "nap"):
            for dec, label in (("ao", "AO"), ("parallel_forced", "Parallel-Forced")):
                cells = []
                for steps in steps_all:
                    if dec == "ao":
                        run = None
                        if tr == "nap":
                            run = _find(summaries, fam, tr, "gsm8k", "confidence:nap", steps, m) or _find(
                                summaries, fam, tr, "gsm8k", "confidence:nap", steps
                            )
                        run = run or _find(summaries, fam, tr, "gsm8k", "confidence", steps)
                    else:
                        run = _find(summaries, fam, tr, "gsm8k", "parallel_forced", steps, m)
                    have |= run is not None
                    ref = paper.paper_value("table4", tr, dec, steps) if fam == "dream" else None
                    cells.append(_cell(_acc(run), ref) + _partial(run))
                rows.append(
                    [
                        f"{paper.TRAINING_NAMES[tr]}{' (Pretrained)' if tr == 'base' else ' (Ours)'}",
                        label,
                        *cells,
                    ]
                )
        if fam == "llada" and not have:
            continue
        head = ["Training Data", "Decoding", *map(str, steps_all)]
        sections.append(f"**{paper.FAMILY_NAMES[fam]}**\n\n" + _md(head, rows))
    note = (
        "AO: `confidence` (NAP model: `confidence:nap`, the structured canvas, when present); Parallel-Forced: "
        f"`parallel_forced`, m = {m}. The paper reports Dream-7B only."
    )
    return (
        "### Table 4. GSM8K accuracy: training data x decoding, ours (paper)\n\n"
        + "\n\n".join(sections)
        + f"\n\n{note}\n"
    )


def table5(summaries: Sequence[dict[str, Any]], steps: int | None = None) -> str:
    """Table 5: NAP models with m = 1 / 2 / 3 parallel paths (GSM8K, parallel-forced)."""
    rows = []
    used = set()
    for fam, label in (("dream", "NAP-Dream"), ("llada", "NAP-LLaDA")):
        cells = []
        for m in (1, 2, 3):
            run = _find(summaries, fam, "nap", "gsm8k", "parallel_forced", steps, m)
            if run is not None:
                used.add((run["steps"], run.get("generate_kwargs", {}).get("path_length")))
            cells.append(_cell(_acc(run), paper.TABLE5[fam][m]) + _partial(run))
        rows.append([label, *cells])
    head = ["Method", "1 Path", "2 Paths", "3 Paths"]
    detail = ", ".join(
        f"steps {s}, path_length {p}" for s, p in sorted(used, key=lambda t: (t[0], t[1] or 0))
    )
    note = f"Parallel-forced; total path budget fixed (path_length = 990 / m in the paper). Runs: {detail or DASH}."
    return (
        "### Table 5. GSM8K accuracy with m parallel paths, ours (paper)\n\n"
        + _md(head, rows)
        + f"\n\n{note}\n"
    )


def runs_table(summaries: Sequence[dict[str, Any]]) -> str:
    """Every run found: model, task, strategy, steps, m, n, accuracy, ARness, NFE, tokens/step, timings."""
    head = [
        "Model",
        "Training",
        "Task",
        "Strategy",
        "Steps (eff.)",
        "m",
        "n",
        "Acc",
        "ARness",
        "NFE",
        "Tok/Step",
        "s/example",
    ]
    rows = []
    for s in summaries:
        for r in s["runs"].values():
            rows.append(
                [
                    s.get("model_label", ""),
                    s.get("training", ""),
                    r["task"],
                    r["strategy"],
                    f"{r['steps']} ({r.get('steps_effective', r['steps'])})",
                    DASH if r.get("m") is None else str(r["m"]),
                    str(r.get("n", 0)) + ("" if r.get("complete", True) else " (incomplete)"),
                    _fmt(r.get("accuracy"), 1),
                    _fmt(r.get("arness"), 3),
                    _fmt(r.get("nfe"), 1),
                    _fmt(r.get("tokens_per_step"), 2),
                    _fmt(r.get("seconds_per_example"), 2),
                ]
            )
    return "### All runs\n\n" + _md(head, rows) + "\n"


def render_tables(summaries: Sequence[dict[str, Any]]) -> str:
    """Tables 1-5 and the list of runs as one markdown document."""
    parts = [
        "# NAP evaluation: ours (paper)\n",
        "Every cell is `ours (paper)`; `—` = not run / not reported; <sup>n=N</sup> marks a run on N examples only "
        "(`--limit`). Accuracy in %, ARness = Global-ARness@1.\n",
        table1(summaries),
        table2(summaries),
        table3(summaries),
        table4(summaries),
        table5(summaries),
        runs_table(summaries),
    ]
    return "\n".join(parts)


# --------------------------------------------------------------------------------------------- figures


def _figure(figsize: tuple[float, float]):
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as e:
        raise ImportError("the figures need matplotlib: pip install 'nap-hf[plot]'") from e
    fig = Figure(figsize=figsize, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Any, path: str | os.PathLike, dpi: int = 150) -> Path:
    return save_figure_atomic(fig, path, dpi)


_COLORS = {
    "ar": "#1f77b4",
    "confidence": "#ff7f0e",
    "random": "#2ca02c",
    "threshold": "#9467bd",
    "parallel_forced": "#d62728",
}


def _annotate_bars(ax: Any, bars: Any, labels: Sequence[str]) -> None:
    """Each bar's height above it, with its label (the run's Global-ARness@1) in parentheses below that."""
    for bar, lab in zip(bars, labels, strict=True):
        ax.annotate(
            f"{bar.get_height():.1f}" + (f"\n({lab})" if lab else ""),
            (bar.get_x() + bar.get_width() / 2, bar.get_height()),
            ha="center",
            va="bottom",
            fontsize=6.5,
            xytext=(0, 2),
            textcoords="offset points",
            zorder=5,
        )


def _legend_below(fig: Any, axes: Sequence[Any]) -> None:
    """One legend under the figure: every label once, the handle of the first panel that has it."""
    handles, labels = axes[0].get_legend_handles_labels()
    seen = dict(zip(labels, handles, strict=True))
    for ax in axes[1:]:
        for h, lab in zip(*ax.get_legend_handles_labels(), strict=True):
            seen.setdefault(lab, h)
    fig.legend(
        list(seen.values()),
        list(seen.keys()),
        loc="outside lower center",
        ncol=len(seen),
        fontsize=8,
        frameon=False,
    )


def plot_accuracy_by_order(
    summaries: Sequence[dict[str, Any]],
    path: str | os.PathLike | None = None,
    *,
    tasks: Sequence[str] = ("gsm8k", "math500"),
    strategies: Sequence[str] = ("ar", "confidence", "random"),
    training: str = "base",
    steps: int | None = None,
):
    """Figure 2: accuracy per decoding order, one panel per benchmark, bars grouped by model (family), the
    run's Global-ARness@1 under each bar, and the paper's Table 1 values (GSM8K AR / AO) as open diamonds.

    Returns the matplotlib Figure (written to ``path`` when given). Raises ValueError when no run fits."""
    benches = [b for b in (_bench(t) for t in tasks) if b is not None]
    fams = [
        f
        for f in paper.FAMILIES
        if any(s.get("family") == f and s.get("training") == training for s in summaries)
    ]
    if not fams:
        raise ValueError(f"no {training!r} model among the summaries: nothing to plot.")
    panels = [
        b
        for b in benches
        if any(_find(summaries, f, training, b, st, steps) for f in fams for st in strategies)
    ]
    if not panels:
        raise ValueError(f"no run of {list(strategies)} on {list(tasks)}: nothing to plot.")
    fig = _figure((4.6 * len(panels) + 0.6, 4.0))
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    width = 0.8 / len(strategies)
    for ax, bench in zip(axes, panels, strict=True):
        for j, st in enumerate(strategies):
            xs, ys, labels = [], [], []
            for i, fam in enumerate(fams):
                run = _find(summaries, fam, training, bench, st, steps)
                x = i + (j - (len(strategies) - 1) / 2) * width
                if run is not None and run.get("accuracy") is not None:
                    xs.append(x)
                    ys.append(run["accuracy"])
                    labels.append(f"{run['arness']:.2f}" if run.get("arness") is not None else "")
                ref = paper.paper_value("table1", fam, "base", {"ar": "ar", "confidence": "ao"}.get(st, ""))
                if bench == "gsm8k" and training == "base" and ref is not None:
                    ax.plot(
                        [x],
                        [ref[1]],
                        marker="_",
                        ms=22 / max(1, len(fams)) + 8,
                        mew=2.2,
                        color="black",
                        ls="none",
                        zorder=4,
                        label="paper" if (j, i) == (0, 0) else None,
                    )
            bars = ax.bar(
                xs,
                ys,
                width=width * 0.92,
                color=_COLORS.get(st, "#7f7f7f"),
                label=_ORDER_NAMES.get(st, st),
                zorder=2,
            )
            _annotate_bars(ax, bars, labels)
        ax.set_xticks(range(len(fams)), [paper.FAMILY_NAMES[f] for f in fams])
        ax.set_title(_BENCH_NAMES[bench])
        ax.set_ylabel("accuracy (%)")
        ax.set_ylim(0, 105)
        ax.grid(True, axis="y", color="0.9", zorder=0)
        ax.set_axisbelow(True)
        for side in ("top", "right"):
            ax.spines[side].set_visible(False)
    _legend_below(fig, axes)
    fig.suptitle(
        "Accuracy per decoding order (in parentheses: Global-ARness@1; black bars: the paper)", fontsize=10
    )
    if path is not None:
        _save(fig, path)
    return fig


def plot_arness_shift(
    summaries: Sequence[dict[str, Any]], path: str | os.PathLike | None = None, steps: int | None = None
):
    """Figure 4: Global-ARness@1 under AO of the base and the Long-CoT model per family (GSM8K), with the
    change annotated; the paper's values as open diamonds."""
    fams = [
        f
        for f in paper.FAMILIES
        if _find(summaries, f, "base", "gsm8k", "confidence", steps)
        or _find(summaries, f, "longcot", "gsm8k", "confidence", steps)
    ]
    if not fams:
        raise ValueError("no base / Long-CoT `confidence` run on GSM8K: nothing to plot.")
    fig = _figure((5.0, 3.8))
    ax = fig.subplots()
    for j, (tr, color) in enumerate((("base", "#8c8c8c"), ("longcot", "#d62728"))):
        for i, fam in enumerate(fams):
            x = i + (j - 0.5) * 0.38
            v = _arness(_find(summaries, fam, tr, "gsm8k", "confidence", steps))
            if v is not None:
                ax.bar(
                    [x],
                    [v],
                    width=0.36,
                    color=color,
                    zorder=2,
                )
                ax.annotate(
                    f"{v:.2f}",
                    (x, v),
                    ha="center",
                    va="bottom",
                    fontsize=8,
                    xytext=(0, 2),
                    textcoords="offset points",
                )
            ax.plot(
                [x],
                [paper.TABLE2[fam][tr]],
                marker="_",
                ms=26,
                mew=2.2,
                color="black",
                ls="none",
                zorder=4,
            )
    ax.set_xticks(range(len(fams)), [paper.FAMILY_NAMES[f] for f in fams])
    ax.set_ylim(0, 1.18)
    ax.set_ylabel("Global-ARness@1 (AO)")
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    handles = [
        Patch(color="#8c8c8c", label="Base"),
        Patch(color="#d62728", label="Long-CoT"),
        Line2D([], [], marker="_", ms=14, mew=2.2, color="black", ls="none", label="paper"),
    ]
    ax.legend(handles=handles, fontsize=8, frameon=False, loc="upper left", ncol=3)
    ax.set_title("Long-CoT supervision and ARness (GSM8K)", fontsize=10)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    if path is not None:
        _save(fig, path)
    return fig


def _load_trace(summary: dict[str, Any], run: dict[str, Any]) -> dict[str, Any] | None:
    key = Path(run["records"]).name.removesuffix(".jsonl")
    path = Path(summary.get("_dir", ".")) / "traces" / f"{key}.json"
    if not path.is_file():
        return None
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    return data[0] if data else None


def plot_dynamics(
    summaries: Sequence[dict[str, Any]], path: str | os.PathLike | None = None, steps: int | None = None
):
    """Figure 1: decoding dynamics (position against step) of the first example: (a) LLaDA AO, (b) Dream AO,
    (c) random order, (d) NAP parallel-forced, from the traces saved with the runs; panels without a trace
    are left out."""
    from nap_hf.generation.regions import Region
    from nap_hf.plotting import plot_decoding_dynamics

    panels = []
    wanted = [
        ("(a) LLaDA, AO", [("llada", "base", "confidence")]),
        ("(b) Dream, AO", [("dream", "base", "confidence")]),
        ("(c) Random", [("llada", "base", "random"), ("dream", "base", "random")]),
        ("(d) NAP", [("dream", "nap", "parallel_forced"), ("llada", "nap", "parallel_forced")]),
    ]
    for title, options in wanted:
        for fam, tr, st in options:
            for s in summaries:
                if s.get("family") != fam or s.get("training") != tr:
                    continue
                run = _find([s], fam, tr, "gsm8k", st, steps) or next(
                    (r for r in s["runs"].values() if r["strategy"] == st and r.get("n")), None
                )
                t = _load_trace(s, run) if run is not None else None
                if t is not None:
                    panels.append((title, t))
                    break
            if panels and panels[-1][0] == title:
                break
    if not panels:
        raise ValueError("no saved trace (traces/*.json) for Figure 1.")
    traces = [p[1]["trace"] for p in panels]
    regions = [[Region(**r) for r in p[1]["regions"]] for p in panels]
    fig = plot_decoding_dynamics(traces, regions, path, titles=[p[0] for p in panels])
    return fig


def write_report(
    summaries: Sequence[dict[str, Any]] | str | os.PathLike, out_dir: str | os.PathLike
) -> dict[str, Path]:
    """Write ``tables.md`` and the figures that the runs allow (``figure1.png``, ``figure2.png``,
    ``figure4.png``) to ``out_dir``; returns {name: path}."""
    if isinstance(summaries, (str, os.PathLike)):
        summaries = load_summaries(summaries)
    out = Path(out_dir)
    written: dict[str, Path] = {}
    text = render_tables(summaries)

    write_text_atomic(out / "tables.md", text, fsync=True)
    written["tables"] = out / "tables.md"
    for name, fn in (
        ("figure2", plot_accuracy_by_order),
        ("figure4", plot_arness_shift),
        ("figure1", plot_dynamics),
    ):
        try:
            fn(summaries, out / f"{name}.png")
        except ValueError:  # no run for this figure
            continue
        except ImportError as e:  # matplotlib missing: tables only
            warnings.warn(f"{name} not written: {e}", stacklevel=2)
            continue
        written[name] = out / f"{name}.png"
    return written
