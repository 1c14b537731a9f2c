"""Decoding-dynamics plots (the NAP paper's Figure 1): the decoding step at which each token position was
committed, one point per generated position, with the canvas regions (path slots, summary, headers)
shaded behind.

    from nap_hf.plotting import plot_decoding_dynamics

    out = model.generate(..., return_dict_in_generate=True)
    plot_decoding_dynamics(out.trace, out.regions, "dynamics.png")

`plot_seqdep` draws the SeqDep figures (Figures 3 and 7): SeqDep against output length, one binned-mean
line per dataset over a faint scatter of the examples.

Needs matplotlib (`pip install 'nap-hf[plot]'`); it is imported lazily and never through `pyplot`, so
plotting works headless and leaves the interactive backend alone.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from .generation.regions import Region
from .io import save_figure_atomic

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["plot_decoding_dynamics", "plot_seqdep"]

# Path slots cycle through these (colour-blind-friendly tab10 order, grey left out for headers/summary).
_PATH_COLORS = (
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#d62728",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#17becf",
    "#bcbd22",
)
_SUMMARY_COLOR = "#4d4d4d"
_HEADER_COLOR = "#9e9e9e"
_POINT_COLOR = "#1a1a2e"


def _import_matplotlib():
    try:
        import matplotlib  # noqa: F401
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as e:
        raise ImportError(
            "nap_hf.plotting needs matplotlib, which is not installed. Fix: pip install 'nap-hf[plot]'"
        ) from e
    return Figure, FigureCanvasAgg


def _is_trace_like(x: Any) -> bool:
    return hasattr(x, "detach") or isinstance(x, np.ndarray)


def _as_trace(x: Any, name: str) -> tuple[np.ndarray, bool]:
    """A trace (tensor / array / list, 1-D or 2-D) as (2-D int64 array, was 1-D)."""
    if hasattr(x, "detach"):  # torch.Tensor, without importing torch
        x = x.detach().cpu().numpy()
    arr = np.asarray(x)
    if arr.dtype == object:
        raise ValueError(f"`{name}` must be a rectangular (B, L) or (L,) array of steps.")
    one_d = arr.ndim == 1
    if one_d:
        arr = arr[None, :]
    if arr.ndim != 2:
        raise ValueError(f"`{name}` must be (B, L) or (L,), got {arr.ndim} dimensions (shape {arr.shape}).")
    if arr.size and arr.dtype.kind not in "iub":
        if arr.dtype.kind != "f" or not np.all(np.isfinite(arr)) or not np.all(arr == np.round(arr)):
            raise ValueError(f"`{name}` must hold integer decoding steps (or -1), got dtype {arr.dtype}.")
    arr = arr.astype(np.int64)
    if arr.size and arr.min() < -1:
        raise ValueError(
            f"`{name}` holds {int(arr.min())}: steps are >= 0, or -1 for positions not generated."
        )
    return arr, one_d


def _split_traces(trace: Any) -> tuple[list[Any], bool]:
    """(runs, several): a tensor/array/flat list is one run; a list/tuple of traces is several."""
    if (
        isinstance(trace, (list, tuple))
        and trace
        and all(_is_trace_like(t) or isinstance(t, (list, tuple)) for t in trace)
    ):
        return list(trace), True
    return [trace], False


def _is_region_list(x: Any) -> bool:
    return isinstance(x, (list, tuple)) and all(isinstance(r, Region) for r in x)


def _row_regions(entry: Any, row: int, n_rows: int, name: str) -> list[Region]:
    """One run's regions for `row`: None, a list of `Region`, or per-row lists (`out.regions`)."""
    if entry is None:
        return []
    if _is_region_list(entry):
        return list(entry)
    if isinstance(entry, (list, tuple)) and all(r is None or _is_region_list(r) for r in entry):
        if len(entry) != n_rows:
            raise ValueError(
                f"`{name}` looks like per-row regions ({len(entry)} rows) but the trace has {n_rows} rows."
            )
        return list(entry[row] or [])
    raise ValueError(f"`{name}` must be None, a list of Region, or one list of Region per row of the trace.")


def _runs_regions(regions: Any, n_runs: int, several: bool) -> list[Any]:
    if not several or regions is None or _is_region_list(regions):
        return [regions] * n_runs  # one run, or shared by every run
    if not isinstance(regions, (list, tuple)):
        raise ValueError("`regions` must be None, a list of Region, or one entry per trace.")
    if len(regions) != n_runs:
        raise ValueError(f"`regions` has {len(regions)} entries but `trace` has {n_runs} runs.")
    return list(regions)


def _region_label(r: Region) -> str:
    if r.label:
        return r.label
    if r.kind == "path":
        return f"path {r.index}" if r.index is not None else "path"
    return "summary" if r.kind == "summary" else ""


def _draw_run(
    ax: Axes,
    steps_row: np.ndarray,
    regions: list[Region],
    *,
    title: str | None,
    marker_size: float | None,
    run_name: str,
) -> int:
    """Draw one run into `ax`; returns the offset subtracted from positions."""
    from matplotlib.transforms import blended_transform_factory

    positions = np.flatnonzero(steps_row >= 0)
    if positions.size == 0:
        raise ValueError(f"{run_name} has no generated position (every entry is -1) in the plotted row.")
    drawn = [r for r in regions if r.kind in ("path", "summary", "header") and len(r) > 0]
    # Origin: the start of the generated region (its first header when the canvas is structured).
    offset = int(min([int(positions[0])] + [r.start for r in drawn]))
    steps = steps_row[positions]
    ys = positions - offset

    label_tf = blended_transform_factory(ax.transAxes, ax.transData)
    for r in sorted(drawn, key=lambda r: r.start):
        lo, hi = r.start - offset - 0.5, r.end - offset - 0.5
        if r.kind == "header":
            ax.axhspan(lo, hi, color=_HEADER_COLOR, alpha=0.45, lw=0, zorder=0)
            # keeps a header visible when it is thinner than a pixel on a long canvas
            ax.axhline((lo + hi) / 2, color=_HEADER_COLOR, lw=0.8, alpha=0.8, zorder=0)
            continue
        if r.kind == "path":
            color = _PATH_COLORS[((r.index or 1) - 1) % len(_PATH_COLORS)]
            alpha = 0.16
        else:
            color, alpha = _SUMMARY_COLOR, 0.13
        ax.axhspan(lo, hi, color=color, alpha=alpha, lw=0, zorder=0)
        label = _region_label(r)
        if label:
            ax.text(
                0.985,
                (lo + hi) / 2,
                label,
                transform=label_tf,
                ha="right",
                va="center",
                fontsize=8,
                color=color,
                fontweight="bold",
                zorder=3,
                clip_on=True,
                bbox={"boxstyle": "round,pad=0.2", "fc": "white", "ec": "none", "alpha": 0.85},
            )

    if marker_size is None:  # small enough that a few thousand points stay readable
        marker_size = float(np.clip(3000.0 / positions.size, 1.0, 16.0))
    ax.scatter(steps, ys, s=marker_size, c=_POINT_COLOR, marker="o", linewidths=0, zorder=2)
    ax.set_xlabel("decoding step")
    ax.margins(x=0.02, y=0.01)
    ax.grid(True, color="0.9", lw=0.6, zorder=-1)
    ax.set_axisbelow(True)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    if title:
        ax.set_title(title, fontsize=11)
    return offset


def _plotted_rows(
    runs: list[Any], several: bool, regions: Any, run_regions: list[Any], row: int
) -> list[tuple[np.ndarray, list[Region]]]:
    """(steps of the plotted row, its regions) for each run, checked: `row` in range, something generated."""
    rows: list[tuple[np.ndarray, list[Region]]] = []
    for i, t in enumerate(runs):
        name = f"trace[{i}]" if several else "trace"
        arr, one_d = _as_trace(t, name)
        if one_d:
            r = 0  # a 1-D trace is one row
        else:
            r = row
            if not -arr.shape[0] <= r < arr.shape[0]:
                raise ValueError(f"`row`={row} is out of range for {name} with {arr.shape[0]} row(s).")
        if not (arr[r] >= 0).any():
            raise ValueError(f"{name} has no generated position (every entry is -1) in row {r}.")
        reg_name = f"regions[{i}]" if several and not _is_region_list(regions) else "regions"
        rows.append((arr[r], _row_regions(run_regions[i], r % arr.shape[0], arr.shape[0], reg_name)))
    return rows


def _dynamics_axes(
    ax: Axes | Sequence[Axes] | None, n: int, figsize: tuple[float, float] | None
) -> tuple[Figure, list[Axes]]:
    """The figure and one Axes per run: a new figure (shared y axis) when `ax` is None, else the given Axes."""
    if ax is None:
        FigureCls, FigureCanvasAgg = _import_matplotlib()
        width = 4.2 * n + 0.8 if n > 1 else 6.0
        fig = FigureCls(figsize=figsize or (width, 4.6), layout="constrained")
        FigureCanvasAgg(fig)
        return fig, list(fig.subplots(1, n, sharey=True, squeeze=False)[0])
    axes = list(ax) if isinstance(ax, (list, tuple, np.ndarray)) else [ax]
    if len(axes) != n:
        raise ValueError(f"`ax` has {len(axes)} Axes but `trace` has {n} run(s).")
    return axes[0].figure, axes


def plot_decoding_dynamics(
    trace: Any,
    regions: Any = None,
    path: str | os.PathLike | None = None,
    *,
    titles: Sequence[str] | None = None,
    row: int = 0,
    ax: Axes | Sequence[Axes] | None = None,
    suptitle: str | None = None,
    figsize: tuple[float, float] | None = None,
    dpi: int = 150,
    marker_size: float | None = None,
) -> Figure:
    """Plot decoding dynamics as in the NAP paper's Figure 1: the token position committed (y) against the
    decoding step (x), one point per generated position.

    Args:
        trace: the step at which each position was committed, -1 where nothing was generated (prompt,
            padding, clamped headers): `DiffusionGenerateOutput.trace`, a (B, L) or (L,) tensor, array
            or flat list. A list/tuple of such traces plots several runs side by side (one subplot each,
            shared y axis); pass a nested-list (B, L) trace as an array to keep it one run.
        regions: the canvas regions (`Region`, in `sequences` coordinates) of the plotted row: a list of
            `Region`, or per-row lists (`out.regions`, indexed by `row`), or None. Path slots are shaded
            one colour per path, the summary slot grey, headers as thin grey bands, with labels at the
            right edge; prompt and "generation" regions are not drawn. With several runs: one entry per
            run (each as above), or one list shared by all runs, or None.
        path: if given, the figure is written there (format from the suffix, PNG by default) atomically,
            creating parent directories.
        titles: one subplot title per run.
        row: the batch row to plot (a 1-D trace is its own single row and ignores it).
        ax: draw into this Axes (one run) or these Axes (one per run) instead of a new figure.
        suptitle: a title over the whole figure.
        figsize / dpi: size of a new figure, resolution of the written file.
        marker_size: scatter marker area in points^2 (default: scaled by the number of points).

    Positions on the y axis are relative to the start of the generated region: the first path/summary/
    header region when regions are given, else the first generated position.

    Returns:
        The matplotlib `Figure` (rendered with the Agg canvas; `pyplot` is never touched).
    """
    _import_matplotlib()  # before any check: a missing matplotlib fails first, naming the fix

    runs, several = _split_traces(trace)
    n = len(runs)
    if titles is not None:
        if isinstance(titles, str):
            titles = [titles]
        titles = list(titles)
        if len(titles) != n:
            raise ValueError(f"`titles` has {len(titles)} entries but `trace` has {n} run(s).")
    run_regions = _runs_regions(regions, n, several)

    rows = _plotted_rows(runs, several, regions, run_regions, row)
    fig, axes = _dynamics_axes(ax, n, figsize)
    for i, (a, (steps_row, regs)) in enumerate(zip(axes, rows, strict=True)):
        name = f"trace[{i}]" if several else "trace"
        _draw_run(
            a,
            steps_row,
            regs,
            title=titles[i] if titles else None,
            marker_size=marker_size,
            run_name=name,
        )
    axes[0].set_ylabel("token position (from generation start)")
    if suptitle:
        fig.suptitle(suptitle)

    if path is not None:
        save_figure_atomic(fig, path, dpi)
    return fig


# ------------------------------------------------------------------------------------------ SeqDep figure

# One colour per dataset: green first (the paper's Figure 7 curve), then tab10.
_SEQDEP_COLORS = ("#2ca02c", "#1f77b4", "#ff7f0e", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf")


def _seqdep_series(data: Any) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(name, lengths, values) per dataset from a SeqDepOutput, a list of SeqDepResult, a (lengths, values)
    pair, or a mapping name -> any of these."""

    def one(name: str, item: Any) -> tuple[str, np.ndarray, np.ndarray]:
        if hasattr(item, "lengths") and hasattr(item, "seqdeps"):  # SeqDepOutput
            lengths, values = item.lengths, item.seqdeps
        elif isinstance(item, (list, tuple)) and item and all(hasattr(r, "num_tokens") for r in item):
            lengths, values = [r.num_tokens for r in item], [r.seqdep for r in item]
        elif isinstance(item, (list, tuple)) and len(item) == 2:
            lengths, values = item
        else:
            raise ValueError(
                f"`data[{name!r}]` must be a SeqDepOutput, a list of SeqDepResult or a (lengths, values) pair, "
                f"got {type(item).__name__}."
            )
        lengths_a = np.asarray(lengths, dtype=np.float64).reshape(-1)
        values_a = np.asarray(values, dtype=np.float64).reshape(-1)
        if lengths_a.shape != values_a.shape:
            raise ValueError(f"`data[{name!r}]`: {lengths_a.size} lengths but {values_a.size} values.")
        ok = np.isfinite(lengths_a) & np.isfinite(values_a)
        return name, lengths_a[ok], values_a[ok]

    if isinstance(data, dict):
        if not data:
            raise ValueError("`data` is an empty mapping; give at least one dataset.")
        series = [one(str(k), v) for k, v in data.items()]
    else:
        series = [one("SeqDep", data)]
    if not any(v.size for _, _, v in series):
        raise ValueError("`data` holds no finite SeqDep value to plot (every example was skipped?).")
    return series


def _shared_bins(series: list[tuple[str, np.ndarray, np.ndarray]], bins: Any) -> Any:
    """A bin count becomes equal-width edges over the lengths of ALL series (so the lines share bins);
    explicit edges are returned as they are."""
    if isinstance(bins, int) and not isinstance(bins, bool):
        all_lengths = np.concatenate([x for _, x, _ in series])
        lo, hi = float(all_lengths.min()), float(all_lengths.max())
        if hi == lo:
            lo, hi = lo - 0.5, hi + 0.5
        bins = list(np.linspace(lo, hi, max(int(bins), 1) + 1))
    return bins


def plot_seqdep(
    data: Any,
    path: str | os.PathLike | None = None,
    *,
    bins: int | Sequence[float] = 10,
    min_count: int = 1,
    scatter: bool = True,
    band: bool = True,
    ax: Axes | None = None,
    title: str | None = None,
    xlabel: str = "output length (scorer tokens)",
    ylabel: str = "SeqDep (nats)",
    figsize: tuple[float, float] = (6.4, 4.4),
    dpi: int = 150,
) -> Figure:
    """Plot SeqDep against output length as in the NAP paper's Figures 3 and 7: a faint scatter of the
    examples and the binned mean (± one standard error) per dataset.

    Args:
        data: a `SeqDepOutput`, a list of `SeqDepResult`, a ``(lengths, values)`` pair, or a mapping
            ``{name: any of these}`` for one line per dataset (e.g. NAP beside Long-CoT). Skipped examples
            (``nan``) are left out.
        path: if given, the figure is written there atomically (format from the suffix, PNG by default).
        bins: number of equal-width length bins over ALL datasets together (so the lines share bins), or
            explicit edges.
        min_count: bins with fewer examples are not drawn.
        scatter / band: draw the examples / the standard-error band.
        ax: draw into this Axes instead of a new figure.
        title / xlabel / ylabel / figsize / dpi: figure text, size and file resolution.

    Returns:
        The matplotlib `Figure` (Agg canvas; `pyplot` is never touched).
    """
    from .metrics.seqdep import binned_seqdep

    FigureCls, FigureCanvasAgg = _import_matplotlib()
    series = _seqdep_series(data)
    bins = _shared_bins(series, bins)

    if ax is None:
        fig = FigureCls(figsize=figsize, layout="constrained")
        FigureCanvasAgg(fig)
        ax = fig.subplots()
    else:
        fig = ax.figure
    for k, (name, lengths, values) in enumerate(series):
        color = _SEQDEP_COLORS[k % len(_SEQDEP_COLORS)]
        if scatter and values.size:
            ax.scatter(lengths, values, s=9, color=color, alpha=0.25, linewidths=0, zorder=1)
        binned = binned_seqdep(lengths, values, bins=bins, min_count=min_count)
        centers, mean = np.asarray(binned.centers), np.asarray(binned.mean)
        err = np.nan_to_num(np.asarray(binned.stderr), nan=0.0)
        shown = np.isfinite(mean)
        mean_all = float(values.mean()) if values.size else float("nan")
        label = f"{name} (n={values.size}, mean {mean_all:.2f})"
        ax.plot(centers[shown], mean[shown], "-o", color=color, lw=2.0, ms=4, label=label, zorder=3)
        if band and shown.any():
            ax.fill_between(
                centers[shown],
                (mean - err)[shown],
                (mean + err)[shown],
                color=color,
                alpha=0.18,
                lw=0,
                zorder=2,
            )
    ax.axhline(0.0, color="0.6", lw=0.8, ls="--", zorder=0)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(True, color="0.9", lw=0.6, zorder=-1)
    ax.set_axisbelow(True)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    ax.legend(frameon=False, fontsize=8, loc="best")
    if title:
        ax.set_title(title, fontsize=11)
    if path is not None:
        save_figure_atomic(fig, path, dpi)
    return fig
