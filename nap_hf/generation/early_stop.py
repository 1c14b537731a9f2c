"""Early exit on filler (`early_stop=True`, docs/caching.md): a fixed-length canvas is mostly filler once
the text has ended, so the loop commits that filler at once instead of spending forward passes on it.

One rule for both canvases: each span has a trigger (the plain canvas: EOS over the generation region;
the structured canvas: each slot's closing tag, `</think j>` or `</summary>`, as token ids); once the whole
trigger is committed somewhere in its span, every position after it in the span that is still masked is
committed as EOS. The filler is no model choice: it costs no forward pass and sits outside the step's
budget; the trace gives it the step whose commit triggered it."""

from __future__ import annotations

import torch

from ..data.format import DEFAULT_FORMAT, encode_segment
from .canvas import Canvas
from .strategies import DecodeState

__all__ = ["EarlyStop", "closing_tag_ids"]


def closing_tag_ids(tokenizer, m: int) -> list[list[int]]:
    """The token ids of the m path closing tags and the summary's (`</think j>`, `</summary>`), tokenized as
    plain text on their own, without the newline that precedes them in a slot."""
    return [encode_segment(tokenizer, DEFAULT_FORMAT.close(j).strip()) for j in [*range(1, m + 1), None]]


class EarlyStop:
    """`early(state)` writes the filler into `state.x` and `state.filled` and returns it as (B, L) bools."""

    def __init__(self, canvas: Canvas, config):
        eos = config.eos_token_id
        self.eos = int(eos if isinstance(eos, int) else list(eos)[0])
        if canvas.layout is None:
            gen = [r for r in canvas.regions if r.kind == "generation"]
            self.spans = [(r.start, r.end, [self.eos]) for r in gen]
        else:
            slots = [r for r in canvas.regions if r.kind in ("path", "summary")]
            self.spans = [(r.start, r.end, ids) for r, ids in zip(slots, canvas.close_ids, strict=True)]

    def __call__(self, state: DecodeState) -> torch.BoolTensor:
        x, masked = state.x, state.masked
        fill = torch.zeros_like(masked)
        for start, end, tag in self.spans:
            seg = x[:, start:end]  # (B, n)
            n, t = seg.shape[1], len(tag)
            if t > n:
                continue
            hit = torch.ones(seg.shape[0], n - t + 1, dtype=torch.bool, device=x.device)
            for k, tok in enumerate(
                tag
            ):  # the trigger starts at column q when seg[q + k] == tag[k] for all k
                hit &= seg[:, k : n - t + 1 + k] == tok
            ends = torch.zeros_like(seg, dtype=torch.bool)
            ends[:, t - 1 :] = hit  # the trigger's last column
            after = (ends.long().cumsum(-1) - ends.long()) > 0  # strictly after a complete trigger
            fill[:, start:end] = after & masked[:, start:end]
        if bool(fill.any()):
            x[fill] = self.eos
            state.filled |= fill
        return fill
