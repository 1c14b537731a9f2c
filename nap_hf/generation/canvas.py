"""The canvas a decoding run starts from: the (left-padded) prompt followed by either `gen_length` masks or
the structured NAP canvas of Eq. 5 (`prompt | B1 R1 | ... | Bm Rm | BS S`, headers clamped, slots masked),
with the positions the loop may fill and the named regions of every row."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from ..data.format import DEFAULT_FORMAT, CanvasLayout, build_layout
from .regions import Region

__all__ = ["Canvas", "plain_canvas", "nap_canvas", "nap_layout"]


@dataclass
class Canvas:
    """Initial canvas of a batch. `ids` and `fillable` are (B, L); `regions` hold for every row (prompts are
    left-padded to one length, so the structured part sits at the same columns in every row)."""

    ids: torch.LongTensor
    fillable: torch.BoolTensor
    prompt_length: int
    regions: list[Region]
    layout: CanvasLayout | None = None
    close_ids: list[list[int]] | None = None  # structured canvas: each slot's closing-tag ids (early exit)
    isolation: Any = None  # path isolation: the layout's IsolatedInputs (nap_hf.isolation), set by generate

    @property
    def n_slots(self) -> int:
        """Positions to fill in the generated part (headers excluded, prompt masks not counted)."""
        return int(self.fillable[0, self.prompt_length :].sum())


def _prompt_fillable(input_ids, attention_mask, mask_id) -> torch.BoolTensor:
    real = (
        attention_mask.bool() if attention_mask is not None else torch.ones_like(input_ids, dtype=torch.bool)
    )
    return (input_ids == mask_id) & real  # masks inside the prompt are filled in too (infilling)


def plain_canvas(input_ids, attention_mask, gen_length: int, mask_id: int) -> Canvas:
    B, P = input_ids.shape
    ids = torch.cat([input_ids, input_ids.new_full((B, gen_length), mask_id)], 1)
    gen = torch.ones(B, gen_length, dtype=torch.bool, device=input_ids.device)
    fillable = torch.cat([_prompt_fillable(input_ids, attention_mask, mask_id), gen], 1)
    regions = [
        Region("prompt", 0, P, label="prompt"),
        Region("generation", P, P + gen_length, label="generation"),
    ]
    return Canvas(ids, fillable, P, regions)


def nap_layout(config, tokenizer) -> CanvasLayout:
    """The structured layout from the generation config (`m`, `path_length`, `summary_length`, `header_ids`)
    and the model's tokenizer (headers tokenized as plain text, segment by segment)."""
    for name in ("m", "path_length", "summary_length"):
        value = getattr(config, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {value!r}.")
    if config.block_length is not None and config.path_length % config.block_length:
        raise ValueError(
            f"block_length ({config.block_length}) must divide path_length ({config.path_length}): on the "
            "structured canvas, blocks are laid out inside each path slot."
        )
    if config.header_ids is None and tokenizer is None:
        raise ValueError(
            "the structured canvas needs the header token ids: pass `tokenizer=` to generate() (as for "
            "`stop_strings`), or set `generation_config.header_ids`."
        )
    return build_layout(
        tokenizer,
        config.m,
        config.path_length,
        config.summary_length,
        DEFAULT_FORMAT,
        header_ids=config.header_ids,
    )


def nap_canvas(input_ids, attention_mask, layout: CanvasLayout, mask_id: int) -> Canvas:
    B, P = input_ids.shape
    device = input_ids.device
    template = torch.tensor(layout.template(mask_id), dtype=input_ids.dtype, device=device)
    slots = torch.tensor(layout.slot_mask(), dtype=torch.bool, device=device)
    ids = torch.cat([input_ids, template.expand(B, -1)], 1)
    fillable = torch.cat([_prompt_fillable(input_ids, attention_mask, mask_id), slots.expand(B, -1)], 1)
    regions = [Region("prompt", 0, P, label="prompt")]
    for span in layout.spans:
        if span.kind == "header":
            label = f"<think {span.index}>" if span.index is not None else "<summary>"
        else:
            label = f"think {span.index}" if span.kind == "path" else "summary"
        regions.append(Region(span.kind, P + span.start, P + span.end, index=span.index, label=label))
    return Canvas(ids, fillable, P, regions, layout)
