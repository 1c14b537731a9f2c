"""`generate(streamer=...)`: transformers' streamer protocol (`BaseStreamer.put` / `end`) on the mask-predict
loop, with DiffusionGemma's drafts (`put_draft`, as `transformers.TextDiffusionStreamer` shows them).

What a streamer receives:

* `put(prompt)`: the (B, P) prompt ids first, as transformers' `generate` does (`skip_prompt=True` skips it);
* `put(tokens)`: (B, n) generated tokens once they are final, in canvas order: the run of columns after the
  last one put, up to the first column that is still masked in some row (on the structured canvas the
  headers are final from the start);
* `put_draft(value=draft)`, when the streamer has `put_draft`, after every step: (B, G') the columns not put
  yet, holding committed tokens and, elsewhere, the latest candidate the model proposed there (the mask id
  where it has proposed none yet). A new draft replaces the previous one;
* `end()` once decoding is done, after the last tokens are put."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from .output import DiffusionStep

__all__ = ["StreamBridge"]


class StreamBridge:
    """Feeds a streamer from the loop's step callback. `prompt`: the (B, P) prompt ids of the canvas."""

    def __init__(self, streamer: Any, prompt: torch.LongTensor, mask_id: int):
        if not (callable(getattr(streamer, "put", None)) and callable(getattr(streamer, "end", None))):
            raise ValueError(
                f"streamer must follow transformers' BaseStreamer protocol (`put` and `end` methods), got "
                f"{type(streamer).__name__}."
            )
        self.streamer, self.mask_id = streamer, mask_id
        self.done = prompt.shape[1]  # canvas columns before `done` are put already
        self.draft: torch.LongTensor | None = None
        streamer.put(prompt.cpu())

    def chain(self, callback: Callable[[DiffusionStep], Any] | None) -> Callable[[DiffusionStep], Any]:
        """A step callback that feeds the streamer, then calls `callback` (if any)."""

        def on_step(step: DiffusionStep) -> None:
            self.step(step)
            if callback is not None:
                callback(step)

        return on_step

    def step(self, step: DiffusionStep) -> None:
        x = step.sequences  # (B, L)
        self._put_final(x)
        if not callable(getattr(self.streamer, "put_draft", None)):
            return
        draft = x.clone() if self.draft is None else self.draft
        if step.candidates is not None:
            proposed = step.candidates != self.mask_id
            draft[proposed] = step.candidates[proposed]
        committed = x != self.mask_id
        draft[committed] = x[committed]
        self.draft = draft
        self.streamer.put_draft(value=draft[:, self.done :].cpu())

    def end(self, sequences: torch.LongTensor) -> None:
        """Put what is left of the (B, L) final canvas and end the stream."""
        if sequences.shape[1] > self.done:
            self.streamer.put(sequences[:, self.done :].cpu())
            self.done = sequences.shape[1]
        self.streamer.end()

    def _put_final(self, x: torch.LongTensor) -> None:
        """Put the columns after `done` that are final in every row, up to the first masked one."""
        open_ = (x[:, self.done :] == self.mask_id).any(0)  # (L - done,)
        n = int(open_.long().argmax()) if bool(open_.any()) else open_.numel()
        if n:
            self.streamer.put(x[:, self.done : self.done + n].cpu())
            self.done += n
