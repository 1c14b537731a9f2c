"""Tests for nap_hf.metrics.arness (Global-/Local-ARness of decoding traces)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from nap_hf.metrics import ARnessResult, commit_order, global_arness, local_arness

# --------------------------------------------------------------------------- reference


def ref_order(row: list[int], mask: list[bool] | None = None) -> list[int]:
    """Counted positions sorted by (step, position)."""
    mask = mask if mask is not None else [True] * len(row)
    return [j for s, j in sorted((s, j) for j, s in enumerate(row) if s >= 0 and mask[j])]


def ref_global(row: list[int], k: int, mask: list[bool] | None = None) -> float:
    order = ref_order(row, mask)
    if not order:
        return float("nan")
    masked = set(order)
    hits = 0
    for p in order:
        if p in sorted(masked)[:k]:
            hits += 1
        masked.remove(p)
    return hits / len(order)


def ref_local(row: list[int], k: int, mask: list[bool] | None = None) -> float:
    order = ref_order(row, mask)
    if not order:
        return float("nan")
    hits = 0
    for c in range(len(order)):
        if c >= k and all(order[c - i] == order[c] - i for i in range(1, k + 1)):
            hits += 1
    return hits / len(order)


def same(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or math.isclose(a, b, abs_tol=1e-12)


# --------------------------------------------------------------------------- hand-computed examples


def test_pure_ar_order():
    L = 7
    for trace in ([list(range(L))], [[0, 0, 0, 1, 1, 2, 3]], [[0] * L]):
        assert global_arness(trace).per_row == [1.0]
        assert global_arness(trace, k=3).mean == 1.0
        assert local_arness(trace).mean == pytest.approx((L - 1) / L)
        assert local_arness(trace, k=2).mean == pytest.approx((L - 2) / L)
        assert commit_order(trace) == [list(range(L))]


def test_pure_right_to_left_order():
    trace = [[3, 2, 1, 0]]
    assert commit_order(trace) == [[3, 2, 1, 0]]
    assert global_arness(trace).mean == pytest.approx(1 / 4)  # only the last commit scores
    assert global_arness(trace, k=2).mean == pytest.approx(2 / 4)
    assert local_arness(trace).mean == 0.0


def test_several_commits_per_step_and_unfilled_positions():
    # counted positions 2, 3, 4, 5 with steps 1, 0, 0, 2 -> order 3, 4, 2, 5
    trace = torch.tensor([-1, -1, 1, 0, 0, 2, -1])
    assert commit_order(trace) == [[3, 4, 2, 5]]
    # Global@1: 3 (M={2,3,4,5}) no; 4 (M={2,4,5}) no; 2 yes; 5 yes
    assert global_arness(trace).mean == pytest.approx(2 / 4)
    # Global@2: 3 in {2,3}; 4 in {2,4}; 2; 5 -> all
    assert global_arness(trace, k=2).mean == 1.0
    # Local@1: 4 after 3 yes; 2 after 4 no; 5 after 2 no
    assert local_arness(trace).mean == pytest.approx(1 / 4)
    assert local_arness(trace, k=2).mean == 0.0


def test_local_k2_scores():
    # order 0, 1, 2, 4, 3, 5, 6, 7: Local@2 scores at 2 (1, 0), 7 (6, 5)
    #                               Local@1 scores at 1, 2, 6, 7
    trace = [0, 1, 2, 4, 3, 5, 6, 7]
    assert commit_order(trace) == [[0, 1, 2, 4, 3, 5, 6, 7]]
    assert local_arness(trace, k=1).mean == pytest.approx(4 / 8)
    assert local_arness(trace, k=2).mean == pytest.approx(2 / 8)
    # Global@1: all but the commit of 4 (M={3,4,...}) score
    assert global_arness(trace, k=1).mean == pytest.approx(7 / 8)
    assert global_arness(trace, k=2).mean == 1.0


def test_positions_mask_uses_original_coordinates():
    trace = [0, 1, 2, 3, 4, 5]
    positions = [True, True, False, True, True, True]
    assert commit_order(trace, positions=positions) == [[0, 1, 3, 4, 5]]
    assert global_arness(trace, positions=positions).mean == 1.0
    # 3 after 1 is not adjacent in original coordinates -> 1, 4, 5 score
    assert local_arness(trace, positions=positions).mean == pytest.approx(3 / 5)


def test_positions_mask_with_unfilled_and_reordering():
    trace = torch.tensor([[2, 0, 1, -1, 3]])
    positions = torch.tensor([True, True, False, True, True])
    # counted: 0 (step 2), 1 (step 0), 4 (step 3) -> order 1, 0, 4
    assert commit_order(trace, positions) == [[1, 0, 4]]
    assert global_arness(trace, positions=positions).mean == pytest.approx(2 / 3)
    assert local_arness(trace, positions=positions).mean == 0.0


def test_positions_per_row_mask():
    trace = torch.tensor([[0, 1, 2, 3], [0, 1, 2, 3]])
    positions = torch.tensor([[True, True, True, True], [False, True, True, False]])
    res = local_arness(trace, positions=positions)
    assert res.per_row == pytest.approx([3 / 4, 1 / 2])


def test_batch_per_row_and_mean():
    trace = torch.tensor([[0, 1, 2, 3], [3, 2, 1, 0], [-1, -1, -1, -1]])
    res = global_arness(trace)
    assert isinstance(res, ARnessResult)
    assert res.per_row[:2] == pytest.approx([1.0, 0.25])
    assert math.isnan(res.per_row[2])  # empty row -> nan, excluded from mean
    assert res.mean == pytest.approx(0.625)
    assert float(res) == res.mean
    loc = local_arness(trace)
    assert loc.per_row[:2] == pytest.approx([0.75, 0.0]) and math.isnan(loc.per_row[2])
    assert loc.mean == pytest.approx(0.375)
    assert commit_order(trace) == [[0, 1, 2, 3], [3, 2, 1, 0], []]


def test_input_types_agree():
    rows = [[1, 0, -1, 2, 2], [0, 3, 2, 1, -1]]
    expected = global_arness(torch.tensor(rows), k=2).per_row
    assert global_arness(rows, k=2).per_row == expected
    assert global_arness(np.array(rows), k=2).per_row == expected
    assert global_arness(torch.tensor(rows, dtype=torch.int32), k=2).per_row == expected


def test_large_k():
    trace = [3, 2, 1, 0]
    assert global_arness(trace, k=10).mean == 1.0
    assert local_arness(trace, k=10).mean == 0.0
    assert local_arness([0, 1, 2, 3], k=4).mean == 0.0
    assert local_arness([0, 1, 2, 3], k=3).mean == pytest.approx(1 / 4)


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize("fn", [global_arness, local_arness])
@pytest.mark.parametrize("k", [0, -1, 1.5, True, "2", None])
def test_bad_k(fn, k):
    with pytest.raises(ValueError, match="k"):
        fn([[0, 1, 2]], k=k)


@pytest.mark.parametrize("fn", [global_arness, local_arness, commit_order])
def test_bad_positions_shape(fn):
    trace = torch.zeros(2, 4, dtype=torch.long)
    for positions in (
        torch.ones(3, dtype=torch.bool),
        torch.ones(3, 4, dtype=torch.bool),
        torch.ones(2, 4, 1, dtype=torch.bool),
    ):
        with pytest.raises(ValueError, match="positions"):
            fn(trace, positions=positions)


def test_bad_trace():
    with pytest.raises(ValueError, match="trace"):
        global_arness(torch.zeros(2, 3, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="trace"):
        local_arness(torch.zeros(2, 3))  # float steps
    with pytest.raises(ValueError, match="trace"):
        commit_order([[0, -2, 1]])


@pytest.mark.parametrize("fn", [global_arness, local_arness])
def test_all_rows_empty_raises(fn):
    with pytest.raises(ValueError):
        fn([[-1, -1], [-1, -1]])
    with pytest.raises(ValueError):
        fn([[0, 1]], positions=[False, False])
    with pytest.raises(ValueError):
        fn(torch.zeros(0, 5, dtype=torch.long))


# --------------------------------------------------------------------------- properties


@st.composite
def traces(draw):
    """A batch of rows: random steps (ties allowed), some -1, optional positions mask."""
    B = draw(st.integers(1, 4))
    L = draw(st.integers(1, 24))
    max_step = draw(st.integers(0, L))
    rows = draw(st.lists(st.lists(st.integers(-1, max_step), min_size=L, max_size=L), min_size=B, max_size=B))
    mask = draw(st.none() | st.lists(st.booleans(), min_size=L, max_size=L))
    return rows, mask


def _nonempty(rows, mask):
    return any(ref_order(r, mask) for r in rows)


@settings(max_examples=50, deadline=None)
@given(perm=st.permutations(list(range(16))), L=st.integers(1, 16), k=st.integers(1, 5))
def test_permutation_orders_match_reference(perm, L, k):
    order = [p for p in perm if p < L]
    trace = [0] * L
    for step, p in enumerate(order):
        trace[p] = step
    assert commit_order(trace) == [order]
    assert same(global_arness(trace, k=k).mean, ref_global(trace, k))
    assert same(local_arness(trace, k=k).mean, ref_local(trace, k))


@settings(max_examples=50, deadline=None)
@given(data=traces(), k=st.integers(1, 4))
def test_random_traces_match_reference(data, k):
    rows, mask = data
    assert commit_order(rows, mask) == [ref_order(r, mask) for r in rows]
    if not _nonempty(rows, mask):
        with pytest.raises(ValueError):
            global_arness(rows, k=k, positions=mask)
        return
    for fn, ref in ((global_arness, ref_global), (local_arness, ref_local)):
        res = fn(rows, k=k, positions=mask)
        expected = [ref(r, k, mask) for r in rows]
        assert all(same(a, b) for a, b in zip(res.per_row, expected, strict=True))
        valid = [v for v in expected if not math.isnan(v)]
        assert res.mean == pytest.approx(sum(valid) / len(valid))
        assert all(0.0 <= v <= 1.0 for v in valid)
        # single-row calls agree with the batch
        for r, v in zip(rows, res.per_row, strict=True):
            if ref_order(r, mask):
                assert same(fn([r], k=k, positions=mask).mean, v)


@settings(max_examples=50, deadline=None)
@given(data=traces())
def test_monotone_in_k(data):
    rows, mask = data
    if not _nonempty(rows, mask):
        return
    L = len(rows[0])
    g = [global_arness(rows, k=k, positions=mask).mean for k in range(1, L + 2)]
    loc = [local_arness(rows, k=k, positions=mask).mean for k in range(1, L + 2)]
    assert all(a <= b + 1e-12 for a, b in zip(g[:-1], g[1:], strict=True))  # Global non-decreasing in k
    assert all(a >= b - 1e-12 for a, b in zip(loc[:-1], loc[1:], strict=True))  # Local non-increasing in k
    assert g[-1] == pytest.approx(1.0)  # k >= L: every commit is among the k smallest
    assert loc[-1] == 0.0


@settings(max_examples=50, deadline=None)
@given(data=traces(), k=st.integers(1, 4), gaps=st.lists(st.integers(1, 5), min_size=30, max_size=30))
def test_step_relabelling_invariance(data, k, gaps):
    """Only the (step, position) order matters: a strictly increasing relabelling of the
    steps, or splitting a step's commits into consecutive steps by ascending position,
    leaves every result unchanged."""
    rows, mask = data
    if not _nonempty(rows, mask):
        return
    L = len(rows[0])
    relabel = np.cumsum(gaps).tolist()  # strictly increasing map step -> new label
    relabelled = [[relabel[s] if s >= 0 else -1 for s in r] for r in rows]
    split = [[s * L + j if s >= 0 else -1 for j, s in enumerate(r)] for r in rows]  # no ties left
    for fn in (global_arness, local_arness):
        base = fn(rows, k=k, positions=mask).per_row
        for other in (relabelled, split):
            assert all(same(a, b) for a, b in zip(base, fn(other, k=k, positions=mask).per_row, strict=True))


def test_batch_size_speed_smoke():
    B, L = 64, 2048
    g = torch.Generator().manual_seed(0)
    trace = torch.stack([torch.randperm(L, generator=g) // 8 for _ in range(B)])
    res = global_arness(trace, k=2)
    assert len(res.per_row) == B and 0.0 <= res.mean <= 1.0
    assert len(local_arness(trace, k=2).per_row) == B
