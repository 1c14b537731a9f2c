"""Tests for nap_hf.plotting.plot_decoding_dynamics (the paper's Figure 1 view)."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

pytest.importorskip("matplotlib")

from matplotlib.collections import PathCollection  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from nap_hf.generation.regions import Region  # noqa: E402
from nap_hf.plotting import plot_decoding_dynamics  # noqa: E402

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
P, H, S, K, SUM = 6, 2, 12, 3, 8  # prompt, header, path slot, paths, summary slot


def layout() -> tuple[list[Region], int]:
    """Prompt, then `<think k>` header + path slot for each path, then summary header + summary slot."""
    regs = [Region("prompt", 0, P, label="prompt")]
    pos = P
    for k in range(1, K + 1):
        regs.append(Region("header", pos, pos + H, index=k, label=f"<think {k}>"))
        pos += H
        regs.append(Region("path", pos, pos + S, index=k, label=f"think {k}"))
        pos += S
    regs.append(Region("header", pos, pos + H, label="<summary>"))
    pos += H
    regs.append(Region("summary", pos, pos + SUM, label="summary"))
    return regs, pos + SUM


REGIONS, L = layout()
GEN = [p for r in REGIONS if r.kind in ("path", "summary") for p in range(r.start, r.end)]


def make(steps: dict[int, int], rows: int = 2) -> torch.Tensor:
    t = torch.full((rows, L), -1, dtype=torch.long)
    for p, s in steps.items():
        t[:, p] = s
    return t


def ar_trace() -> torch.Tensor:
    return make({p: i for i, p in enumerate(GEN)})


def random_trace() -> torch.Tensor:
    perm = np.random.default_rng(0).permutation(len(GEN))
    return make({p: int(perm[i]) for i, p in enumerate(GEN)})


def parallel_forced_trace() -> torch.Tensor:
    """The K path slots advance together (one token each per step), then the summary."""
    steps = {}
    for r in REGIONS:
        for j, p in enumerate(range(r.start, r.end)):
            if r.kind == "path":
                steps[p] = j
            elif r.kind == "summary":
                steps[p] = S + j
    return make(steps)


def scatter_points(ax) -> np.ndarray:
    cols = [c for c in ax.collections if isinstance(c, PathCollection)]
    assert len(cols) == 1
    return np.asarray(cols[0].get_offsets())


def expected_points(trace_row, offset: int) -> np.ndarray:
    row = np.asarray(trace_row)
    pos = np.flatnonzero(row >= 0)
    return np.stack([row[pos], pos - offset], axis=1).astype(float)


def assert_png(path, min_bytes: int = 5_000):
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC
    assert min_bytes < len(data) < 5_000_000


FIRST_HEADER = P  # the generated region starts with the first header


def test_single_run_png_and_points(tmp_path):
    trace = parallel_forced_trace()
    out = tmp_path / "a" / "b" / "dyn.png"  # parent dirs are created
    fig = plot_decoding_dynamics(trace, REGIONS, out, titles=["parallel-forced"])
    assert isinstance(fig, Figure)
    assert_png(out)
    assert not [f for f in out.parent.iterdir() if f.name != "dyn.png"]  # no temp file left behind
    assert len(fig.axes) == 1
    ax = fig.axes[0]
    np.testing.assert_array_equal(scatter_points(ax), expected_points(trace[0], FIRST_HEADER))
    assert ax.get_xlabel() == "decoding step"
    assert "token position" in ax.get_ylabel()
    assert ax.get_title() == "parallel-forced"
    texts = {t.get_text() for t in ax.texts}
    assert {"think 1", "think 2", "think 3", "summary"} <= texts
    assert "prompt" not in texts


def test_four_runs_side_by_side(tmp_path):
    traces = [ar_trace(), ar_trace()[1], random_trace().numpy(), parallel_forced_trace()]
    titles = ["AR order", "confidence", "random", "parallel-forced"]
    out = tmp_path / "dyn4.png"
    fig = plot_decoding_dynamics(traces, [None, REGIONS, REGIONS, REGIONS], out, titles=titles, row=1)
    assert_png(out, min_bytes=10_000)
    assert len(fig.axes) == 4
    assert [a.get_title() for a in fig.axes] == titles
    # run 0 has no regions: positions count from its first generated position
    np.testing.assert_array_equal(scatter_points(fig.axes[0]), expected_points(traces[0][1], GEN[0]))
    for ax, t in zip(fig.axes[1:], traces[1:], strict=True):
        row = t if np.ndim(t) == 1 else t[1]
        np.testing.assert_array_equal(scatter_points(ax), expected_points(row, FIRST_HEADER))
    # shared y axis
    assert fig.axes[0].get_ylim() == fig.axes[3].get_ylim()
    assert not fig.axes[0].texts and fig.axes[3].texts


def test_shared_regions_lists_and_per_row_regions():
    traces = [[int(s) for s in ar_trace()[0]], parallel_forced_trace()]  # a flat list is one run
    fig = plot_decoding_dynamics(traces, REGIONS)
    assert len(fig.axes) == 2 and all(a.texts for a in fig.axes)
    # per-row regions (as `out.regions`), single run: regions[row] is used
    fig = plot_decoding_dynamics(parallel_forced_trace(), [REGIONS, []], row=1)
    assert not fig.axes[0].texts
    fig = plot_decoding_dynamics(parallel_forced_trace(), [[], REGIONS], row=1)
    assert fig.axes[0].texts


def test_into_given_axes():
    fig = Figure()
    axes = fig.subplots(1, 2)
    got = plot_decoding_dynamics([ar_trace(), random_trace()], ax=list(axes))
    assert got is fig
    assert all(len(scatter_points(a)) == len(GEN) for a in axes)


def test_errors(tmp_path):
    t = ar_trace()
    with pytest.raises(ValueError, match="titles"):
        plot_decoding_dynamics([t, t], titles=["one"])
    with pytest.raises(ValueError, match="regions"):
        plot_decoding_dynamics([t, t, t], [REGIONS, None])
    with pytest.raises(ValueError, match="regions"):
        plot_decoding_dynamics(t, [REGIONS, REGIONS, REGIONS])  # per-row lists, wrong row count
    with pytest.raises(ValueError, match="row"):
        plot_decoding_dynamics(t, row=2)
    with pytest.raises(ValueError, match=r"trace\[1\].*row"):
        plot_decoding_dynamics([t[0], t], row=5)
    with pytest.raises(ValueError, match=r"trace\[1\].*no generated position"):
        plot_decoding_dynamics([t, torch.full((2, L), -1)])
    with pytest.raises(ValueError, match="no generated position"):
        plot_decoding_dynamics(t.clone().fill_(-1))
    with pytest.raises(ValueError, match="trace"):
        plot_decoding_dynamics(torch.zeros(2, 3, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="trace"):
        plot_decoding_dynamics(t - 5)
    with pytest.raises(ValueError, match="ax"):
        plot_decoding_dynamics([t, t], ax=Figure().subplots(1, 3).tolist())
    assert not list(tmp_path.iterdir())


def test_missing_matplotlib(monkeypatch):
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(ImportError, match=r"pip install 'nap-hf\[plot\]'"):
        plot_decoding_dynamics(ar_trace())
