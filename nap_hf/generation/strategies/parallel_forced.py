"""Parallel-forced decoding (NAP-D, paper §5.3): the canvas holds m path slots and a summary slot behind
clamped headers; every step hands its token budget to the slots (macro-parallel: each unfinished path
advances, none lags its ideal progress by more than one token) and commits, inside each slot, its
highest-scoring masked positions (micro-confidence, no left-to-right rule).

The exact rule (SPEC §3, decided here): with S steps, N_path = m x path_length and N_sum = summary_length,
`summary="after"` gives the summary S_s = max(1, round(S N_sum / (N_path + N_sum))) steps after the
S_p = S - S_s path steps; the per-step path budget k_t is LLaDA's split of N_path over S_p steps, handed out
one token at a time to the unfinished slot furthest behind its ideal progress n_j (t+1) / S_p - committed_j
(ties: fewer masks left, then lower j). `summary="concurrent"` makes the summary one more slot of that rule."""

from __future__ import annotations

import torch

from ..regions import Region
from .base import DecodeState, StepPlan, Strategy, llada_num_transfer_tokens, register_strategy, topk_mask

__all__ = ["ParallelForcedStrategy", "allocate_budget", "split_steps"]


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


@register_strategy
class ParallelForcedStrategy(Strategy):
    """`strategy="parallel_forced"`: needs a structured canvas (the loop builds it from `m`, `path_length`,
    `summary_length` and the headers). `score=` picks the micro-confidence ("confidence", "margin",
    "entropy"); `block_length=` makes each path semi-autoregressive inside its slot."""

    name = "parallel_forced"

    def __init__(self, config):
        super().__init__(config)
        self.score_kind = config.score

    def begin(self, state: DecodeState) -> None:
        regions: list[Region] = state.extra["regions"]
        self.paths = [r for r in regions if r.kind == "path"]
        summaries = [r for r in regions if r.kind == "summary"]
        self.concurrent = self.config.summary == "concurrent"
        self.path_slots = self.paths + (summaries if self.concurrent else [])
        self.summary_slots = [] if self.concurrent else summaries
        n_path = sum(len(r) for r in self.paths)
        n_sum = sum(len(r) for r in summaries)
        self.s_path, self.s_sum = split_steps(state.extra["steps"], n_path, n_sum, self.config.summary)
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

    def plan(self, state: DecodeState) -> StepPlan | None:
        masked = state.masked
        if self.t < self.s_path:
            slots, budget, t, phase = (
                range(len(self.path_slots)),
                self.path_budget[self.t],
                self.t,
                self.s_path,
            )
        elif self.t < self.s_path + self.s_sum:
            base = len(self.path_slots)
            slots = range(base, base + len(self.summary_slots))
            t = self.t - self.s_path
            budget, phase = self.sum_budget[t], self.s_sum
        else:
            return None
        self.t += 1
        # Every row has the same layout and budgets and commits exactly what it is given, so all rows progress
        # alike: allocate once (row 0; one host sync per step) and give every row the same share.
        sizes = [self.sizes[j] for j in slots]
        left = torch.stack([(masked[0] & self.slot_masks[j]).sum() for j in slots]).tolist()
        committed = [n - rest for n, rest in zip(sizes, left, strict=True)]
        share = torch.zeros(len(self.slot_masks), dtype=torch.long, device=masked.device)
        share[list(slots)] = torch.tensor(
            allocate_budget(budget, sizes, committed, t, phase), device=masked.device
        )
        give = share.expand(masked.shape[0], -1)
        # per slot: positions taken for sure (earlier blocks, with block_length) and a ranked remainder
        self.must = torch.zeros_like(masked)
        self.pick: list[tuple[torch.BoolTensor, torch.LongTensor]] = []
        for j in slots:
            in_slot = masked & self.slot_masks[j]
            k = give[:, j]
            if self.config.block_length:
                # the k-th masked position of the slot (left to right) closes the last block needed
                reach = in_slot & (in_slot.long().cumsum(-1) <= k[:, None])
                last = torch.where(reach, self.block_of, -1).max(-1).values[:, None]
                sure = in_slot & (self.block_of < last)
                self.must |= sure
                in_slot = in_slot & (self.block_of == last)
                k = k - sure.sum(-1)
            self.pick.append((in_slot & (k > 0)[:, None], k))
        rows = self.must.clone()
        for region, _ in self.pick:
            rows |= region
        return StepPlan(rows=rows)

    def select(self, state: DecodeState, plan: StepPlan, scores: torch.Tensor) -> torch.BoolTensor:
        """Micro-confidence: inside each slot, its `k` best-scoring masked positions (after the positions of
        earlier blocks, which are taken whole when `block_length` is set)."""
        commit = self.must.clone()
        for region, k in self.pick:
            commit |= topk_mask(scores.masked_fill(~region, float("-inf")), k)
        return commit
