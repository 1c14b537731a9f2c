"""`DiffusionGenerateOutput`: what `generate(..., return_dict_in_generate=True)` returns."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers.utils import ModelOutput

from .regions import Region

__all__ = ["DiffusionGenerateOutput", "DiffusionStep"]


@dataclass
class DiffusionGenerateOutput(ModelOutput):
    """
    Args:
        sequences: (B, P + G) the left-padded prompt followed by the generated region (HF decoder-only
            convention).
        trace: (B, P + G) the 0-based decoding step at which each position was committed; -1 for the
            prompt, padding and clamped positions. Feed it to `nap_hf.metrics.global_arness`.
        nfe: number of model forward passes (a classifier-free-guidance step counts 2).
        history: with `output_history=True`, the canvas after every step (Dream's `output_history`).
        regions: per row, the spans (:class:`~nap_hf.generation.regions.Region`) of the prompt and of every
            header and slot (structured canvas) or of the generated region, in `sequences` coordinates.
        paths: structured canvas with a tokenizer: per row, the m path texts, each cut at its closing tag.
        summary: per row, the summary text (cut at `</summary>`).
        answer: per row, the answer parsed from the summary ONLY (last `\\boxed{}`, else "The final answer
            is X"), or None.
        position_ids: (B, P + G) the RoPE position of every column of `sequences`. With `path_isolation` the
            paths share positions, so columns no longer equal positions; otherwise the positions count real
            tokens (left padding skipped).
    """

    sequences: torch.LongTensor | None = None
    trace: torch.LongTensor | None = None
    nfe: int | None = None
    history: tuple[torch.LongTensor, ...] | None = None
    regions: list[list[Region]] | None = None
    paths: list[list[str]] | None = None
    summary: list[str | None] | None = None
    answer: list[str | None] | None = None
    position_ids: torch.LongTensor | None = None


@dataclass
class DiffusionStep:
    """Passed to `generate(step_callback=...)` after every step. Tensors are live views: copy what
    you keep. `candidates`: (B, L) this step's candidate tokens on the rows it asked the model for
    (`StepPlan.rows`), the mask id elsewhere."""

    step: int
    nfe: int
    sequences: torch.LongTensor
    committed: torch.BoolTensor
    trace: torch.LongTensor
    candidates: torch.LongTensor | None = None
