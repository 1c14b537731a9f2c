"""Path isolation (docs/design.md §10): THE one place that turns a structured canvas layout into the attention
mask and the positions of the isolated layout. The trainer (`DiffusionSFTConfig(path_isolation=True)`) and the
decoder (`generate(path_isolation=True)`) both call :func:`isolated_inputs`, so a model is trained on exactly
the mask and positions it is decoded with.

The layout (decided here, after ParaThinker and Multiverse):
- **attention**: the prompt attends to the prompt; path j (its header and its slot) to the prompt and to itself;
  the summary (its header, its slot and any trailing response padding) to everything. Padding is never attended.
- **positions**: every path slot starts at the same position, right after the prompt and the longest path
  header; a shorter header is right-aligned, so that every header ends where its slot starts. The m paths thus
  sit at the same positions, whatever m is and whatever their index (except through the header text). The
  summary header follows one path's end, the summary slot follows its header, and trailing columns continue.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .data.format import CanvasLayout

__all__ = [
    "GROUP_PAD",
    "GROUP_PROMPT",
    "IsolatedInputs",
    "isolated_inputs",
    "layout_groups",
    "layout_offsets",
    "path_header_width",
    "visible_keys",
]

GROUP_PAD = -1  # padding: attended by no query
GROUP_PROMPT = 0  # the prompt; path j is group j (1-based), the summary is group m + 1


def path_header_width(layout: CanvasLayout) -> int:
    """H: the token length of the longest path header. Every path slot starts H positions after the prompt."""
    return max(len(s) for s in layout.header_spans[: layout.m])


def layout_groups(layout: CanvasLayout) -> list[int]:
    """The group of each column of the structured region (``layout.length`` entries): j for the header and
    slot of path j, m + 1 for the summary header and slot."""
    out: list[int] = []
    for span in layout.spans:
        group = span.index if span.index is not None else layout.m + 1
        out += [group] * len(span)
    return out


def layout_offsets(layout: CanvasLayout) -> list[int]:
    """The position of each column of the structured region, counted from the first position after the
    prompt (``layout.length`` entries): headers right-aligned to end at H, each path slot at H..H+path_length-1,
    the summary header from H + path_length on, then the summary slot."""
    width = path_header_width(layout)
    out: list[int] = []
    summary_start = width + layout.path_length
    for span in layout.spans:
        n = len(span)
        if span.kind == "header" and span.index is not None:
            out += list(range(width - n, width))
        elif span.kind == "path":
            out += list(range(width, width + n))
        elif span.kind == "header":
            out += list(range(summary_start, summary_start + n))
        else:
            start = summary_start + len(layout.header_spans[-1])
            out += list(range(start, start + n))
    return out


@dataclass
class IsolatedInputs:
    """What the model takes for an isolated canvas.

    Attributes:
        attention_mask: (B, 1, L, L) additive float mask (0 where a query may attend a key, the dtype's minimum
            elsewhere), as the models take it in training and decoding.
        position_ids: (B, L) RoPE positions (columns no longer equal positions).
        groups: (B, L) the group of each column: -1 padding, 0 prompt, j path j, m + 1 summary.
    """

    attention_mask: torch.Tensor
    position_ids: torch.LongTensor
    groups: torch.LongTensor

    @property
    def visible(self) -> torch.BoolTensor:
        """(B, L, L): whether query column q may attend key column k."""
        return self.attention_mask[:, 0] == 0


def visible_keys(groups: torch.LongTensor, summary_group: int) -> torch.BoolTensor:
    """(B, L, L) visibility from (B, L) groups: a real key k is visible to query q when k is in the prompt, in q's
    own group, or q is in the summary; padding queries see the prompt only (their outputs are never used)."""
    gq, gk = groups[:, :, None], groups[:, None, :]
    real_key = gk != GROUP_PAD
    return real_key & ((gk == GROUP_PROMPT) | (gk == gq) | (gq == summary_group))


def isolated_inputs(
    layout: CanvasLayout,
    real: torch.BoolTensor,
    body_start: torch.LongTensor | int,
    dtype: torch.dtype = torch.float32,
) -> IsolatedInputs:
    """The isolated mask and positions of a (B, L) batch of structured canvases.

    Args:
        layout: the structured region (`nap_hf.data.build_layout`, the same for every row).
        real: (B, L) True for real tokens, False for padding (left padding of a decoding prompt; trailing padding
            is real in training: it is response padding, trained as part of the summary).
        body_start: the column where the structured region starts, per row ((B,) tensor) or for all rows (int):
            the prompt's padded length when decoding, each row's prompt length in training.
        dtype: the float dtype of the additive mask (the model's activations).

    Columns before `body_start` are the prompt; columns after the structured region belong to the summary and
    continue its positions.
    """
    if real.dim() != 2:
        raise ValueError(f"`real` must be (batch, length), got shape {tuple(real.shape)}.")
    B, L = real.shape
    device = real.device
    real = real.bool()
    start = torch.as_tensor(body_start, dtype=torch.long, device=device).expand(B)[:, None]  # (B, 1)
    if bool((start + layout.length > L).any()):
        raise ValueError(
            f"the structured region ({layout.length} columns) does not fit the canvas of {L} columns after "
            f"body_start={start.flatten().tolist()}."
        )
    col = torch.arange(L, device=device)[None, :]
    rel = col - start  # (B, L) column inside the structured region
    in_body = (rel >= 0) & (rel < layout.length)
    after = rel >= layout.length
    table_g = torch.tensor(layout_groups(layout), dtype=torch.long, device=device)
    table_o = torch.tensor(layout_offsets(layout), dtype=torch.long, device=device)
    idx = rel.clamp(0, layout.length - 1)
    summary = layout.m + 1
    groups = torch.where(in_body, table_g[idx], torch.full_like(rel, summary))
    groups = torch.where(rel < 0, torch.full_like(rel, GROUP_PROMPT), groups)
    groups = groups.masked_fill(~real, GROUP_PAD)
    prompt_real = real & (rel < 0)
    n_prompt = prompt_real.sum(-1, keepdim=True)  # real prompt tokens per row
    prompt_pos = (prompt_real.long().cumsum(-1) - 1).clamp(min=0)
    last = int(table_o[-1])
    body_pos = n_prompt + torch.where(after, last + (rel - layout.length + 1), table_o[idx])
    positions = torch.where(rel < 0, prompt_pos, body_pos).masked_fill(~real, 0)
    visible = visible_keys(groups, summary)
    mask = torch.zeros(B, 1, L, L, dtype=dtype, device=device).masked_fill(
        ~visible[:, None], torch.finfo(dtype).min
    )
    return IsolatedInputs(mask, positions, groups)
