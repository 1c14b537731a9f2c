"""AR-ness metrics for diffusion-LM decoding traces.

This module measures how *autoregressive* (left-to-right) the decoding order of a
masked-diffusion language model is, following the Global-/Local-ARness metrics of
DiffuCoder, as used by the NAP paper (§3.2).

Trace format
------------
A decoding *trace* is an integer tensor of shape ``(B, L)`` (a list of lists or a numpy
array is accepted too; a 1-D input is treated as a single row).  Entry ``trace[b, j]`` is
the 0-based decoding step at which position ``j`` of row ``b`` was committed (unmasked),
or ``-1`` if the position was not generated (prompt, padding, clamped header, ...).
Values below ``-1`` are rejected.

Commit order
------------
Per row, the *commit order* ``p_1, ..., p_L`` lists the counted generated positions sorted
by ``(step, position)`` ascending: several positions committed in the same step are
ordered by ascending position and treated as consecutive commits.  Here ``L`` is the
number of *counted* positions of the row (not the canvas width).

Restricting the measure (``positions``)
---------------------------------------
The optional ``positions`` argument is a boolean mask of shape ``(B, L)``, ``(1, L)`` or
``(L,)`` (the latter two are broadcast over rows).  A position is *counted* iff
``trace >= 0`` **and** ``positions`` is True.  Both the commit order and the still-masked
set ``M`` are restricted to counted positions, i.e. the metrics are computed on the
subsequence of counted positions.  Positions keep their **original** indices, so for
Local-ARness adjacency is judged in original coordinates: if position 5 is excluded, a
commit of 6 right after 4 is *not* a local-AR step (``4 != 6 - 1``).

Empty rows
----------
A row with no counted position gets ``float('nan')`` in ``per_row`` and is excluded from
``mean``.  If *all* rows are empty a ``ValueError`` is raised.
"""

from __future__ import annotations

import math
import operator
from bisect import bisect_left
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

__all__ = ["ARnessResult", "commit_order", "global_arness", "local_arness"]


@dataclass
class ARnessResult:
    """Result of an AR-ness measurement.

    Attributes:
        per_row: one value per row of the trace (``nan`` for rows without counted positions).
        mean: unweighted mean of ``per_row`` over the non-empty rows.
    """

    per_row: list[float]
    mean: float

    def __float__(self) -> float:
        return self.mean


# --------------------------------------------------------------------------- helpers


def _check_k(k: Any) -> int:
    if isinstance(k, bool):
        raise ValueError(f"k must be an integer >= 1, got {k!r}")
    try:
        k_int = operator.index(k)
    except TypeError:
        raise ValueError(f"k must be an integer >= 1, got {k!r}") from None
    if k_int < 1:
        raise ValueError(f"k must be an integer >= 1, got {k!r}")
    return k_int


def _prepare(trace: Any, positions: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """Validate inputs; return ``(trace (B, L) int64 CPU, counted (B, L) bool CPU)``."""
    t = trace.detach() if isinstance(trace, torch.Tensor) else torch.as_tensor(trace)
    if t.dim() == 1:
        t = t.unsqueeze(0)
    if t.dim() != 2:
        raise ValueError(f"trace must be 1-D or 2-D (B, L), got shape {tuple(t.shape)}")
    if t.numel() and (t.dtype == torch.bool or t.is_floating_point() or t.is_complex()):
        raise ValueError(f"trace must hold integer decoding steps, got dtype {t.dtype}")
    t = t.to(device="cpu", dtype=torch.long)
    if t.numel() and int(t.min()) < -1:
        raise ValueError("trace entries must be >= -1 (-1 marks positions that were not generated)")

    counted = t >= 0
    if positions is not None:
        pos = positions.detach() if isinstance(positions, torch.Tensor) else torch.as_tensor(positions)
        if pos.dtype != torch.bool:
            raise ValueError(f"positions must be a boolean mask, got dtype {pos.dtype}")
        pos = pos.to("cpu")
        B, L = t.shape
        if pos.dim() == 1:
            pos = pos.unsqueeze(0)
        if pos.dim() != 2 or pos.shape[1] != L or pos.shape[0] not in (1, B):
            raise ValueError(
                f"positions must have shape ({B}, {L}), (1, {L}) or ({L},) to match trace, "
                f"got {tuple(positions.shape) if hasattr(positions, 'shape') else tuple(pos.shape)}"
            )
        counted = counted & pos
    return t, counted


def _sorted_commits(t: torch.Tensor, counted: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Return ``(order (B, L), n (B,))``: per row the counted positions in commit order.

    ``order[b, :n[b]]`` is the commit order of row ``b``; the remaining entries are padding.
    """
    B, L = t.shape
    if t.numel() == 0:
        return torch.zeros(B, L, dtype=torch.long), torch.zeros(B, dtype=torch.long)
    idx = torch.arange(L, dtype=torch.long).expand(B, L)
    # Sort by step, ties by position: a stable sort of the steps keeps positions ascending.
    # Uncounted positions get a key larger than every step so they sink to the end.
    big = int(t.max()) + 1
    key = torch.where(counted, t, torch.full_like(t, big))
    perm = torch.sort(key, dim=1, stable=True).indices
    order = torch.gather(idx, 1, perm)
    n = counted.sum(dim=1)
    return order, n


def _finish(hits: Sequence[int], n: Sequence[int]) -> ARnessResult:
    if not any(n_b > 0 for n_b in n):
        raise ValueError("no counted positions: every row of the trace is empty (all -1 / masked out)")
    per_row = [h / n_b if n_b > 0 else float("nan") for h, n_b in zip(hits, n, strict=True)]
    valid = [v for v in per_row if not math.isnan(v)]
    return ARnessResult(per_row=per_row, mean=math.fsum(valid) / len(valid))


# --------------------------------------------------------------------------- public API


def commit_order(trace: Any, positions: Any = None) -> list[list[int]]:
    """Per row, the counted positions in commit order ``p_1, ..., p_L``.

    Positions are sorted by ``(step, position)`` ascending; only positions with
    ``trace >= 0`` (and ``positions`` True, if given) are included.  Empty rows give ``[]``.
    """
    t, counted = _prepare(trace, positions)
    order, n = _sorted_commits(t, counted)
    return [row[:n_b] for row, n_b in zip(order.tolist(), n.tolist(), strict=True)]


# Its Args/Returns read as local_arness's on purpose: each public metric documents its own arguments.
def global_arness(trace: Any, k: int = 1, positions: Any = None) -> ARnessResult:
    r"""Global-ARness@k of a decoding trace.

    .. math::
        \mathrm{Global}@k = \frac{1}{L}\sum_{c=1}^{L}
            \mathbb{1}\left[p_c \in \text{the } k \text{ smallest positions of } M_{c-1}\right],

    where ``M_{c-1}`` is the set of counted positions still masked before commit ``c``
    (``M_0`` = all counted positions of the row) and ``p_c`` is removed from ``M`` after
    commit ``c``.  Equivalently, commit ``c`` scores iff fewer than ``k`` still-masked
    positions lie to the left of ``p_c``.  A pure left-to-right order scores 1.0 for any
    ``k``; a pure right-to-left order scores ``min(k, L) / L``.

    Args:
        trace: ``(B, L)`` (or ``(L,)``) integer decoding steps, ``-1`` = not generated.
        k: window size, integer ``>= 1``.
        positions: optional boolean mask restricting the counted positions (see module doc).

    Returns:
        :class:`ARnessResult` with one value per row and the mean over non-empty rows.

    Cost: ``O(L log L)`` sorting plus a Python loop over the commits with bisection on a
    sorted list (``O(L)`` memmove per removal, negligible for ``L`` of a few thousand).
    """
    k = _check_k(k)
    t, counted = _prepare(trace, positions)
    order, n = _sorted_commits(t, counted)
    hits: list[int] = []
    n_list = n.tolist()
    for row_order, row_counted, n_b in zip(order.tolist(), counted.tolist(), n_list, strict=True):
        remaining = [j for j, c in enumerate(row_counted) if c]  # ascending
        h = 0
        for p in row_order[:n_b]:
            i = bisect_left(remaining, p)  # number of still-masked positions left of p
            if i < k:
                h += 1
            del remaining[i]
        hits.append(h)
    return _finish(hits, n_list)


# Its Args/Returns read as global_arness's on purpose: each public metric documents its own arguments.
def local_arness(trace: Any, k: int = 1, positions: Any = None) -> ARnessResult:
    r"""Local-ARness@k of a decoding trace.

    .. math::
        \mathrm{Local}@k = \frac{1}{L}\sum_{c=1}^{L}
            \mathbb{1}\left[p_{c-i} = p_c - i \ \ \forall i = 1, \dots, k\right],

    i.e. commit ``c`` scores iff the previous ``k`` commits are exactly the ``k`` positions
    immediately to its left, in order (adjacency in original position indices).  The first
    ``k`` commits cannot score but the denominator stays ``L``, so a pure left-to-right
    order scores ``max(L - k, 0) / L``.

    Args:
        trace: ``(B, L)`` (or ``(L,)``) integer decoding steps, ``-1`` = not generated.
        k: window size, integer ``>= 1``.
        positions: optional boolean mask restricting the counted positions (see module doc).

    Returns:
        :class:`ARnessResult` with one value per row and the mean over non-empty rows.
    """
    k = _check_k(k)
    t, counted = _prepare(trace, positions)
    order, n = _sorted_commits(t, counted)
    B, L = order.shape
    if L - 1 >= k:
        # step[b, j] is True iff commits j and j+1 are both real and p_{j+1} == p_j + 1.
        step = order[:, 1:] - order[:, :-1] == 1
        step &= torch.arange(1, L).unsqueeze(0) < n.unsqueeze(1)
        # Commit c scores iff the k consecutive steps ending at c are all +1 steps.
        hits = step.unfold(1, k, 1).all(dim=-1).sum(dim=1).tolist()
    else:
        hits = [0] * B
    return _finish(hits, n.tolist())
