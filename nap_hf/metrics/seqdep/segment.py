"""Segmentation for SeqDep: cut one output into :class:`Segment` pieces ``lead + text + tail`` that partition
it exactly (``"".join(lead + text + tail) == output`` for the built-in modes).

Only ``text`` is scored; ``lead`` (e.g. a ``<think 2>`` header) is context right before it in BOTH
conditions, ``tail`` (a newline, a closing tag) is context for the later segments only. Between two
segments, whitespace up to and including the last newline is the tail of the earlier one; spaces after it
start the next segment's text (so ``" B."`` keeps the space a byte-level BPE merges into its first word).
Modes:

- ``"lines"`` (default): every non-blank line.
- ``"steps"``: paragraphs (text between blank lines), the "reasoning steps" of a long CoT.
- ``"sentences"``: sentences (ends at ``.``, ``!``, ``?`` before whitespace) and lines.
- ``"nap_paths"``: the parallel paths and the summary of a NAP instance (found with
  :func:`nap_hf.data.parse_instance`): lead = the path header ``<think j>\\n``, text = the path, tail =
  ``\\n</think j>\\n\\n``; text before the first header belongs to the first lead. Empty paths are not
  segments (their text stays in the context).
- a callable ``text -> list[str | Segment]``, or an explicit list per example in place of the text.
  Plain strings are used as ``text``; consecutive strings are joined by ``separator`` (a tail).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from ...data.format import DEFAULT_FORMAT, NAPFormat, parse_instance

__all__ = ["Segment", "SegmentMode", "SEGMENT_MODES", "SegmentsArg", "split_segments"]

SegmentMode = Literal["lines", "steps", "sentences", "nap_paths"]
SEGMENT_MODES: tuple[str, ...] = ("lines", "steps", "sentences", "nap_paths")
SegmentsArg = SegmentMode | Callable[[str], Sequence[Any]]


@dataclass(frozen=True)
class Segment:
    """One segment of an output: ``lead + text + tail``; only ``text`` is scored.

    Attributes:
        text: the scored text (its token log-probs are summed).
        lead: context right before ``text`` in both conditions, not scored (e.g. ``"<think 2>\\n"``).
        tail: context after ``text``, seen only by later segments, not scored (e.g. ``"\\n"``).
    """

    text: str
    lead: str = ""
    tail: str = ""

    def __post_init__(self) -> None:
        for name in ("text", "lead", "tail"):
            if not isinstance(getattr(self, name), str):
                raise ValueError(
                    f"Segment `{name}` must be a string, got {type(getattr(self, name)).__name__}."
                )


_LINE_BODY = re.compile(r"[^\n]*\S[^\n]*")
_STEP_SPLIT = re.compile(r"\n[ \t\r\f\v]*\n\s*")
_SENTENCE_SPLIT = re.compile(r"(?<=[.!?])\s+|\s*\n\s*")


def _trimmed(text: str, start: int, end: int) -> tuple[int, int] | None:
    """``[start, end)`` without surrounding whitespace, or None when blank."""
    piece = text[start:end]
    stripped = piece.strip()
    if not stripped:
        return None
    s = start + piece.index(stripped[0])
    return s, s + len(stripped)


def _spans_between(text: str, splitter: re.Pattern) -> list[tuple[int, int]]:
    spans, pos = [], 0
    for m in splitter.finditer(text):
        if (span := _trimmed(text, pos, m.start())) is not None:
            spans.append(span)
        pos = m.end()
    if (span := _trimmed(text, pos, len(text))) is not None:
        spans.append(span)
    return spans


def _partition(text: str, spans: list[tuple[int, int]]) -> list[Segment]:
    """Segments from non-overlapping text spans: the gap between two spans goes, up to and including its
    last newline, to the earlier tail; the rest (spaces) starts the later text. Before the first span: lead."""
    if not spans:
        return []
    starts = [spans[0][0]]
    tails_end = []
    for (_, e0), (s1, _) in zip(spans[:-1], spans[1:], strict=True):
        nl = text.rfind("\n", e0, s1)
        cut = nl + 1 if nl >= 0 else e0
        tails_end.append(cut)
        starts.append(cut)
    tails_end.append(len(text))
    out = [
        Segment(
            lead=text[: starts[0]], text=text[starts[0] : spans[0][1]], tail=text[spans[0][1] : tails_end[0]]
        )
    ]
    for k in range(1, len(spans)):
        out.append(Segment(text=text[starts[k] : spans[k][1]], tail=text[spans[k][1] : tails_end[k]]))
    return out


def _nap_segments(text: str, fmt: NAPFormat) -> list[Segment]:
    """Paths and summary of a NAP instance; headers are leads, closing tags and separators tails."""
    parsed = parse_instance(text, fmt)
    found: list[tuple[int, int, int]] = []  # (header start, text start, text end)
    pos = 0
    blocks = [(j, p) for j, p in enumerate(parsed.paths, start=1)]
    if parsed.summary is not None:
        blocks.append((None, parsed.summary))
    for j, body in blocks:
        tag = fmt.header(j).strip()
        head = text.find(tag, pos)
        if head < 0:  # cannot happen for parse_instance output; be safe
            break
        pos = head + len(tag)
        if not body.strip():
            continue
        start = text.find(body, pos)
        if start < 0:
            break
        found.append((head, start, start + len(body)))
        pos = start + len(body)
    out = []
    for k, (head, start, end) in enumerate(found):
        lead_start = 0 if k == 0 else head
        tail_end = found[k + 1][0] if k + 1 < len(found) else len(text)
        out.append(Segment(lead=text[lead_start:start], text=text[start:end], tail=text[end:tail_end]))
    return out


def _from_pieces(pieces: Sequence[Any], separator: str, where: str) -> list[Segment]:
    if isinstance(pieces, (str, bytes)) or not isinstance(pieces, Sequence):
        raise ValueError(
            f"{where} must be a list of strings or `Segment`s, got {type(pieces).__name__}. "
            "Fix: return/pass a list such as ['step 1', 'step 2']."
        )
    out: list[Segment] = []
    for i, p in enumerate(pieces):
        if isinstance(p, Segment):
            out.append(p)
        elif isinstance(p, str):
            out.append(Segment(text=p, tail=separator if i + 1 < len(pieces) else ""))
        else:
            raise ValueError(f"{where}[{i}] must be a string or a `Segment`, got {type(p).__name__}.")
    return _drop_empty(out)


def _drop_empty(segments: list[Segment]) -> list[Segment]:
    """Remove segments with blank text, keeping their lead/tail text in the context of a neighbour."""
    out: list[Segment] = []
    carry = ""
    for s in segments:
        if s.text.strip():
            out.append(Segment(text=s.text, lead=carry + s.lead, tail=s.tail))
            carry = ""
        elif out:
            last = out[-1]
            out[-1] = Segment(text=last.text, lead=last.lead, tail=last.tail + s.lead + s.text + s.tail)
        else:
            carry += s.lead + s.text + s.tail
    return out


def split_segments(
    text: str | Sequence[str | Segment],
    segments: SegmentsArg = "lines",
    *,
    separator: str = "\n",
    fmt: NAPFormat = DEFAULT_FORMAT,
) -> list[Segment]:
    """Cut one output into :class:`Segment` pieces (see the module docstring for the modes).

    Args:
        text: the output text, or an explicit list of strings / `Segment`s (used as given).
        segments: ``"lines"``, ``"steps"``, ``"sentences"``, ``"nap_paths"`` or a callable
            ``text -> list[str | Segment]``.
        separator: the tail between consecutive plain strings of an explicit list or a callable's result.
        fmt: the NAP format (``"nap_paths"`` only).

    Returns:
        The segments in order, blank ones removed (their text kept as context). For the built-in modes
        ``"".join(s.lead + s.text + s.tail for s in result) == text`` whenever the text has a non-blank
        segment.
    """
    if not isinstance(separator, str):
        raise ValueError(f"`separator` must be a string, got {type(separator).__name__}.")
    if not isinstance(text, str):
        return _from_pieces(text, separator, "an explicit segment list")
    if callable(segments):
        return _from_pieces(segments(text), separator, "the result of the `segments` callable")
    if segments == "lines":
        return _partition(text, [_trimmed(text, *m.span()) for m in _LINE_BODY.finditer(text)])
    if segments == "steps":
        return _partition(text, _spans_between(text, _STEP_SPLIT))
    if segments == "sentences":
        return _partition(text, _spans_between(text, _SENTENCE_SPLIT))
    if segments == "nap_paths":
        if not isinstance(fmt, NAPFormat):
            raise ValueError(f"`fmt` must be a NAPFormat, got {type(fmt).__name__}.")
        return _nap_segments(text, fmt)
    raise ValueError(
        f"`segments` must be one of {list(SEGMENT_MODES)} or a callable text -> list of strings, got {segments!r}."
    )
