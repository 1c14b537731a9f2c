"""`Region`: a named span of the canvas (prompt, a clamped header, a path slot, the summary slot), in
`sequences` coordinates. `generate` reports them per row (`out.regions`); plots shade them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["Region", "RegionKind"]

RegionKind = Literal["prompt", "header", "path", "summary", "generation"]


# Alike in shape to data.format.SlotSpan (start/end, len, slice), on purpose: the canvas span `generate`
# reports, with a label; SlotSpan is the data format's span. data/ does not import generation/.
@dataclass(frozen=True)
class Region:
    """A span `[start, end)` of one row of `sequences`.

    Args:
        kind: "prompt", "header" (clamped text such as `<think 2>\\n`), "path" (the slot of path `index`),
            "summary" (the summary slot; its header is a "header" region with `index=None`), or "generation"
            (the whole generated region of an unstructured canvas).
        start / end: first position and one past the last, in `sequences` coordinates.
        index: 1-based path number for "path" and its "header"; None otherwise.
        label: human-readable name used in plots ("think 1", "summary", ...).
    """

    kind: RegionKind
    start: int
    end: int
    index: int | None = None
    label: str = ""

    def __post_init__(self):
        if self.end < self.start:
            raise ValueError(f"Region {self.label or self.kind!r}: end ({self.end}) < start ({self.start}).")

    def __len__(self) -> int:
        return self.end - self.start

    @property
    def slice(self) -> slice:
        return slice(self.start, self.end)
