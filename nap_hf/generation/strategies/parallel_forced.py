"""Parallel-forced decoding (NAP-D, paper §5.3): the canvas holds m path slots and a summary slot behind
clamped headers; every step hands its token budget to the slots (macro-parallel: each unfinished path
advances, none lags its ideal progress by more than one token) and commits, inside each slot, its
highest-scoring masked positions (micro-confidence, no left-to-right rule).

The exact rule (docs/design.md §3, decided here): with S steps, N_path = m x path_length and N_sum = summary_length,
`summary="after"` gives the summary S_s = max(1, round(S N_sum / (N_path + N_sum))) steps after the
S_p = S - S_s path steps; the per-step path budget k_t is LLaDA's split of N_path over S_p steps, handed out
one token at a time to the unfinished slot furthest behind its ideal progress n_j (t+1) / S_p - committed_j
(ties: fewer masks left, then lower j). `summary="concurrent"` makes the summary one more slot of that rule."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ..regions import Region
from .base import DecodeState, StepPlan, Strategy, llada_num_transfer_tokens, register_strategy, topk_mask

__all__ = ["ParallelForcedPlan", "ParallelForcedStrategy", "allocate_budget", "split_steps"]


def split_steps(steps: int, n_path: int, n_summary: int, summary: str) -> tuple[int, int]:
    """(path steps S_p, summary steps S_s) for a total of `steps` (already clamped to the slot count).
    With `summary="concurrent"` the summary shares the path steps: (steps, 0)."""
    if summary == "concurrent":
        return steps, 0
    s_sum = max(1, round(steps * n_summary / (n_path + n_summary)))
    s_sum = min(s_sum, n_summary, steps - 1)
    return steps - s_sum, s_sum


def allocate_budget(
    budget: int, sizes: list[int], committed: list[int], t: int, phase_steps: int
) -> list[int]:
    """Hand `budget` tokens out one at a time, each to the unfinished slot furthest behind its ideal
    progress `sizes[j] * (t + 1) / phase_steps - committed[j]` (counting what this step already handed
    out; ties: fewer masks left, then lower j). Integer arithmetic (deficits scaled by `phase_steps`), so
    there are no float ties. Returns the tokens per slot."""
    done = list(committed)
    give = [0] * len(sizes)
    for _ in range(budget):
        best = None
        for j, n in enumerate(sizes):
            if done[j] >= n:
                continue
            key = (n * (t + 1) - done[j] * phase_steps, -(n - done[j]), -j)
            if best is None or key > best[0]:
                best = (key, j)
        if best is None:
            break
        done[best[1]] += 1
        give[best[1]] += 1
    return give


@dataclass
class ParallelForcedPlan(StepPlan):
    """A parallel-forced step: `must` (B, L) positions taken for sure (whole earlier blocks of a path, with
    `block_length`), and per active slot `(region, k)`: its ranked masked positions and budget per row."""

    must: torch.BoolTensor | None = None
    picks: list[tuple[torch.BoolTensor, torch.LongTensor]] = field(default_factory=list)


@register_strategy
class ParallelForcedStrategy(Strategy):
    """`strategy="parallel_forced"`: needs a structured canvas (the loop builds it from `m`, `path_length`,
    `summary_length` and the headers). `score=` picks the micro-confidence ("confidence", "margin",
    "entropy"); `block_length=` makes each path semi-autoregressive inside its slot."""

    name = "parallel_forced"
    canvas = "nap"
    uses_blocks = True
    ranks_by_score = True

    def check_config(self) -> None:
        super().check_config()
        if self.config.summary == "after" and self.config.steps < 2:
            raise ValueError("steps must be >= 2 with summary='after' (one path step and one summary step).")

    def begin(self, state: DecodeState) -> None:
        regions: list[Region] = state.regions
        self.paths = [r for r in regions if r.kind == "path"]
        summaries = [r for r in regions if r.kind == "summary"]
        self.concurrent = self.config.summary == "concurrent"
        self.path_slots = self.paths + (summaries if self.concurrent else [])
        self.summary_slots = [] if self.concurrent else summaries
        n_path = sum(len(r) for r in self.paths)
        n_sum = sum(len(r) for r in summaries)
        self.s_path, self.s_sum = split_steps(self.config.steps, n_path, n_sum, self.config.summary)
        device = state.x.device
        self.path_budget = llada_num_transfer_tokens(
            torch.tensor([sum(len(r) for r in self.path_slots)], device=device), self.s_path
        )[0].tolist()
        self.sum_budget = (
            llada_num_transfer_tokens(torch.tensor([n_sum], device=device), self.s_sum)[0].tolist()
            if self.s_sum
            else []
        )
        self.t = 0
        block = self.config.block_length
        L = state.x.shape[1]
        pos = torch.arange(L, device=device)
        # rank key inside a slot: earlier block first (semi-AR within a path when block_length is set)
        self.block_of = torch.zeros(L, dtype=torch.long, device=device)
        for r in self.path_slots + self.summary_slots:
            if block and r.kind == "path":
                self.block_of[r.start : r.end] = (pos[r.start : r.end] - r.start) // block
        self.slot_masks = []
        for r in self.path_slots + self.summary_slots:
            m = torch.zeros(L, dtype=torch.bool, device=device)
            m[r.start : r.end] = True
            self.slot_masks.append(m)
        self.sizes = [len(r) for r in self.path_slots + self.summary_slots]
        B = state.x.shape[0]
        self.sum_start: list[int | None] = [None] * B  # step at which each row's summary phase began
        self.dropped = [[0] * len(self.sizes) for _ in range(B)]  # shares of early-closed slots, dropped

    def plan(self, state: DecodeState) -> StepPlan | None:
        masked = state.masked
        n_slots = len(self.slot_masks)
        while self.t < self.s_path + self.s_sum:
            # per row and slot: masked positions left and early-exit filler (one host sync per step)
            counts = torch.stack([(masked & m).sum(-1) for m in self.slot_masks], -1)
            filled = torch.stack([(state.filled & m).sum(-1) for m in self.slot_masks], -1)
            left, filled = counts.tolist(), filled.tolist()
            give = torch.zeros(masked.shape[0], n_slots, dtype=torch.long)
            active = torch.zeros(masked.shape[0], n_slots, dtype=torch.bool)
            for row in range(masked.shape[0]):
                phase = self._row_phase(row, left[row])
                if phase is None:
                    continue
                slots, budget, t, phase_steps = phase
                give[row, slots] = torch.tensor(
                    self._row_share(row, slots, budget, t, phase_steps, left, filled)
                )
                active[row, slots] = torch.tensor([left[row][j] > 0 for j in slots])
            self.t += 1
            if bool((give > 0).any()):
                return self._plan_slots(masked, active.to(masked.device), give.to(masked.device))
        return None

    def _row_phase(self, row: int, left: list[int]) -> tuple[list[int], int, int, int] | None:
        """(slots, budget, step in phase, phase steps) of `row` at step `self.t`, or None when it is done. The
        path phase ends at step S_p, or earlier once every path slot is closed or full (early exit)."""
        n_path = len(self.path_slots)
        if self.sum_start[row] is None and (self.t >= self.s_path or not any(left[:n_path])):
            self.sum_start[row] = self.t
        if self.sum_start[row] is None:
            return list(range(n_path)), self.path_budget[self.t], self.t, self.s_path
        t = self.t - self.sum_start[row]
        if t >= self.s_sum or not any(left[n_path:]):
            return None
        return list(range(n_path, len(self.slot_masks))), self.sum_budget[t], t, self.s_sum

    def _row_share(self, row, slots, budget, t, phase_steps, left, filled) -> list[int]:
        """The docs/design.md §3 allocation for one row. A slot closed early (filler behind its committed closing tag)
        keeps taking its share as if its filler were still to decode: the share goes to its masked positions
        before the tag while it has some, and the rest is dropped, so every slot keeps its pace."""
        sizes = [self.sizes[j] for j in slots]
        committed = [
            n - left[row][j] - filled[row][j] + self.dropped[row][j]
            for j, n in zip(slots, sizes, strict=True)
        ]
        share = allocate_budget(budget, sizes, committed, t, phase_steps)
        for i, j in enumerate(slots):
            if filled[row][j]:
                used = min(share[i], left[row][j])
                self.dropped[row][j] += share[i] - used
                share[i] = used
        return share

    def _plan_slots(
        self, masked: torch.BoolTensor, active: torch.BoolTensor, give: torch.LongTensor
    ) -> ParallelForcedPlan:
        """Per slot: positions taken for sure (earlier blocks, with block_length), a ranked remainder, and the
        active window: the current block of every unfinished slot of each row's phase (`active`, (B, slots);
        the blocks up to the last one this step reaches), or the whole slot without blocks."""
        plan = ParallelForcedPlan(rows=torch.zeros_like(masked), must=torch.zeros_like(masked))
        plan.window = torch.zeros(masked.shape[1], dtype=torch.bool, device=masked.device)
        for j in range(active.shape[1]):
            if not bool(active[:, j].any()):
                continue
            in_slot = masked & self.slot_masks[j] & active[:, j, None]
            k = give[:, j]
            if self.config.block_length:
                # the k-th masked position of the slot (left to right) closes the last block needed
                reach = in_slot & (in_slot.long().cumsum(-1) <= k[:, None])
                last = torch.where(reach, self.block_of, -1).max(-1).values[:, None]
                first = torch.where(in_slot, self.block_of, self.block_of.numel()).min(-1).values[:, None]
                current = (self.block_of >= first) & (self.block_of <= torch.maximum(first, last))
                plan.window |= (current & in_slot.any(-1, keepdim=True) & self.slot_masks[j]).any(0)
                sure = in_slot & (self.block_of < last)
                plan.must |= sure
                in_slot = in_slot & (self.block_of == last)
                k = k - sure.sum(-1)
            else:
                plan.window |= self.slot_masks[j]
            plan.picks.append((in_slot & (k > 0)[:, None], k))
        plan.rows = plan.must.clone()
        for region, _ in plan.picks:
            plan.rows |= region
        return plan

    def check_cache(self) -> None:
        if not self.config.block_length:
            raise ValueError(
                f"cache_implementation={self.config.cache_implementation!r} with strategy='parallel_forced' needs "
                "blocks inside the paths: pass block_length= (it must divide path_length; the paper's canvas "
                "uses 30)."
            )

    def select(self, state: DecodeState, plan: ParallelForcedPlan, scores: torch.Tensor) -> torch.BoolTensor:
        """Micro-confidence: inside each slot, its `k` best-scoring masked positions (after the positions of
        earlier blocks, which are taken whole when `block_length` is set)."""
        commit = plan.must.clone()
        for region, k in plan.picks:
            commit |= topk_mask(scores.masked_fill(~region, float("-inf")), k)
        return commit
