"""The NAP instance format: the ONE place that says how an instance looks as text and as token ids.

Shared by the parallel-forced decoding canvas (docs/design.md §3), the slot-aligned SFT instances (§7), the
data builders (§6) and the evaluation parser, so that all of them agree on every character and every token.

Text level (docs/design.md §6)::

    <think 1>\\n{path 1}\\n</think 1>\\n\\n<think 2>\\n{path 2}\\n</think 2>\\n\\n...<summary>\\n{summary}\\n</summary>

and the Long-CoT baseline built from the same traces::

    <think>\\n{path 1}\\n\\n{path 2}\\n\\n{path 3}\\n</think>\\n\\n{summary}

Token level (decided here): text is tokenized SEGMENT-WISE. Every header, every slot content and the
summary are tokenized independently with ``add_special_tokens=False`` and the canvas / instance is the
concatenation of those id lists. A BPE tokenizer may merge differently across a boundary when it sees the
concatenated string; tokenizing segments independently guarantees that the clamped headers of the
decoding canvas are the very ids the model saw in training, and that every slot decodes on its own.
(Byte-level BPE tokenizers such as LLaDA's and Dream's decode a segment back to its exact text;
SentencePiece tokenizers that add a prefix space per call would need a custom format.)

The canvas (docs/design.md §3, Eq. 5) after the prompt is ``B1 R1 B2 R2 ... Bm Rm BS S``: headers ``Bj`` are
fixed ids, a path slot ``Rj`` has ``path_length`` positions and holds the path text, its closing tag and then
filler (EOS) up to the slot end; the summary slot ``S`` likewise holds ``summary + "\\n</summary>"`` and
filler up to ``summary_length``. Answers are parsed from the summary ONLY.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = [
    "NAPFormat",
    "DEFAULT_FORMAT",
    "SUMMARY_TEMPLATE",
    "ParsedInstance",
    "SlotSpan",
    "CanvasLayout",
    "render_instance",
    "render_longcot",
    "render_summary",
    "parse_instance",
    "parse_longcot",
    "extract_answer",
    "encode_segment",
    "build_layout",
    "render_slot_aligned",
    "parse_canvas",
]

SUMMARY_TEMPLATE = "By analyzing multiple reasoning processes above, I concluded that: The final answer is \\boxed{{{answer}}}."
"""The reference summary sentence (NAP training data); ``{answer}`` is the ground-truth answer."""


def _split_tag(segment: str) -> tuple[str, str, str]:
    """Split a format segment into (leading whitespace, tag, trailing whitespace)."""
    tag = segment.strip()
    start = segment.index(tag) if tag else 0
    return segment[:start], tag, segment[start + len(tag) :]


def _check_index(j: Any, name: str = "j") -> None:
    if isinstance(j, bool) or not isinstance(j, int) or j < 1:
        raise ValueError(f"`{name}` must be a 1-based path number (an int >= 1) or None, got {j!r}.")


@dataclass(frozen=True)
class NAPFormat:
    """The text pieces of a NAP instance. ``{j}`` in the path pieces is replaced by the 1-based path number.

    Attributes:
        path_header: opens path j (``"<think {j}>\\n"``); it is the clamped header ``Bj`` of the canvas.
        path_close: closes path j (``"\\n</think {j}>"``); written by the model inside its slot.
        summary_header: opens the summary (``"<summary>\\n"``), the clamped header ``BS``.
        summary_close: closes the summary (``"\\n</summary>"``).
        separator: between blocks in flat text (``"\\n\\n"``); it does not appear in the canvas.
        longcot_open / longcot_close: wrap the single chain of the Long-CoT baseline.

    Every piece except ``separator`` must contain a non-blank tag (what is left after stripping
    whitespace); the parsers search for these tags.
    """

    # dataclass fields with defaults, one per line (alike in shape to EvalSettings' fields; nothing shared)
    path_header: str = "<think {j}>\n"
    path_close: str = "\n</think {j}>"
    summary_header: str = "<summary>\n"
    summary_close: str = "\n</summary>"
    separator: str = "\n\n"
    longcot_open: str = "<think>\n"
    longcot_close: str = "\n</think>"

    def __post_init__(self) -> None:
        for name in (
            "path_header",
            "path_close",
            "summary_header",
            "summary_close",
            "longcot_open",
            "longcot_close",
        ):
            value = getattr(self, name)
            if not isinstance(value, str) or not value.strip():
                raise ValueError(f"NAPFormat `{name}` must be a string with a non-blank tag, got {value!r}.")
        if not isinstance(self.separator, str):
            raise ValueError(f"NAPFormat `separator` must be a string, got {self.separator!r}.")

    def header(self, j: int | None) -> str:
        """The opening text of path ``j`` (1-based), or of the summary when ``j`` is None."""
        if j is None:
            return self.summary_header
        _check_index(j)
        return self.path_header.replace("{j}", str(j))

    def close(self, j: int | None) -> str:
        """The closing text of path ``j`` (1-based), or of the summary when ``j`` is None."""
        if j is None:
            return self.summary_close
        _check_index(j)
        return self.path_close.replace("{j}", str(j))


DEFAULT_FORMAT = NAPFormat()


# ----------------------------------------------------------------------------------------------- text level


def _check_paths(paths: Sequence[str], name: str = "paths") -> list[str]:
    if isinstance(paths, str) or not isinstance(paths, Sequence):
        raise ValueError(
            f"`{name}` must be a sequence of strings (one per path), got {type(paths).__name__}."
        )
    if len(paths) == 0:
        raise ValueError(f"`{name}` must hold at least one path.")
    for i, p in enumerate(paths):
        if not isinstance(p, str):
            raise ValueError(f"`{name}[{i}]` must be a string, got {type(p).__name__}.")
    return list(paths)


def _check_summary(summary: str) -> None:
    if not isinstance(summary, str):
        raise ValueError(f"`summary` must be a string, got {type(summary).__name__}.")


def render_instance(paths: Sequence[str], summary: str, fmt: NAPFormat = DEFAULT_FORMAT) -> str:
    """The flat text of a NAP instance (docs/design.md §6)::

        <think 1>\\n{p1}\\n</think 1>\\n\\n<think 2>\\n{p2}\\n</think 2>\\n\\n...<summary>\\n{summary}\\n</summary>

    Args:
        paths: the reasoning traces, in order (at least one).
        summary: the summary text (e.g. :func:`render_summary` of the ground-truth answer).
        fmt: the format.
    """
    paths = _check_paths(paths)
    _check_summary(summary)
    blocks = [fmt.header(j) + p + fmt.close(j) for j, p in enumerate(paths, start=1)]
    blocks.append(fmt.header(None) + summary + fmt.close(None))
    return fmt.separator.join(blocks)


def render_longcot(paths: Sequence[str], summary: str, fmt: NAPFormat = DEFAULT_FORMAT) -> str:
    """The Long-CoT baseline text built from the SAME traces as one chain (docs/design.md §6, decided here)::

    <think>\\n{p1}\\n\\n{p2}\\n\\n{p3}\\n</think>\\n\\n{summary}
    """
    paths = _check_paths(paths)
    _check_summary(summary)
    return fmt.longcot_open + fmt.separator.join(paths) + fmt.longcot_close + fmt.separator + summary


def render_summary(answer: str) -> str:
    """The reference summary sentence (:data:`SUMMARY_TEMPLATE`) for a ground-truth ``answer``."""
    if answer is None:
        raise ValueError("`answer` must be given (a string), got None.")
    return SUMMARY_TEMPLATE.format(answer=str(answer).strip())


@dataclass
class ParsedInstance:
    """What a parser found in a NAP output.

    Attributes:
        paths: the path texts in order of their number (for :func:`parse_canvas`: one per slot).
        summary: the summary text, or None when there is no summary block.
        answer: :func:`extract_answer` of the summary ONLY (None without a summary or an answer in it).
    """

    paths: list[str] = field(default_factory=list)
    summary: str | None = None
    answer: str | None = None


def _find(text: str, needle: str, start: int) -> int:
    """``text.find`` that returns ``len(text)`` instead of -1."""
    i = text.find(needle, start)
    return len(text) if i < 0 else i


def _trim(content: str, after_header: str, before_close: str, closed: bool) -> str:
    """Remove the header's trailing and the close's leading whitespace (exactly one copy each)."""
    if after_header and content.startswith(after_header):
        content = content[len(after_header) :]
    if not closed:
        return content.rstrip()
    if before_close and content.endswith(before_close):
        content = content[: -len(before_close)]
    return content


def parse_instance(text: str, fmt: NAPFormat = DEFAULT_FORMAT) -> ParsedInstance:
    """Parse flat NAP text (the inverse of :func:`render_instance`).

    Path blocks are found in order of their number, j = 1, 2, ...: the search for ``<think j>`` starts
    where block j-1 ended, looks only before the next summary header, and stops at the first number not
    found. A path runs to its ``</think j>``;
    one missing its closing tag runs to the next path header, the summary header or the end of the text
    (whichever comes first; trailing whitespace then removed). The summary block is the first
    ``<summary>`` after the paths; it runs to ``</summary>`` or, when that is missing, to the end of the
    text. The answer comes from the summary ONLY (a ``\\boxed`` in a path never counts).

    Round trip: ``parse_instance(render_instance(p, s))`` gives ``p`` and ``s`` back exactly when the
    texts contain none of the tags.
    """
    if not isinstance(text, str):
        raise ValueError(f"`text` must be a string, got {type(text).__name__}.")
    _, sum_tag, sum_trail = _split_tag(fmt.header(None))
    sum_lead, sum_close_tag, _ = _split_tag(fmt.close(None))

    paths: list[str] = []
    pos = 0
    j = 1
    while True:
        _, tag, trail = _split_tag(fmt.header(j))
        at = text.find(tag, pos, _find(text, sum_tag, pos))
        if at < 0:
            break
        start = at + len(tag)
        lead, close_tag, _ = _split_tag(fmt.close(j))
        close_at = _find(text, close_tag, start)
        boundary = min(_find(text, _split_tag(fmt.header(j + 1))[1], start), _find(text, sum_tag, start))
        closed = close_at < boundary
        end = close_at if closed else boundary
        paths.append(_trim(text[start:end], trail, lead, closed))
        pos = end + len(close_tag) if closed else end
        j += 1

    summary: str | None = None
    at = text.find(sum_tag, pos)
    if at >= 0:
        start = at + len(sum_tag)
        close_at = text.find(sum_close_tag, start)
        closed = close_at >= 0
        summary = _trim(text[start : close_at if closed else len(text)], sum_trail, sum_lead, closed)
    return ParsedInstance(paths=paths, summary=summary, answer=extract_answer(summary))


def parse_longcot(text: str, fmt: NAPFormat = DEFAULT_FORMAT) -> ParsedInstance:
    """Parse Long-CoT text (the inverse of :func:`render_longcot` up to the path split).

    ``paths`` holds ONE string, the whole chain between ``<think>`` and ``</think>`` (the opening tag is
    optional: without it the chain starts at the beginning); the summary is the text after ``</think>``
    (one leading separator removed), None when ``</think>`` is missing. The answer comes from the
    summary only.
    """
    if not isinstance(text, str):
        raise ValueError(f"`text` must be a string, got {type(text).__name__}.")
    _, open_tag, open_trail = _split_tag(fmt.longcot_open)
    lead, close_tag, trail = _split_tag(fmt.longcot_close)
    at = text.find(open_tag)
    start = 0 if at < 0 else at + len(open_tag)
    close_at = text.find(close_tag, start)
    closed = close_at >= 0
    chain = _trim(text[start : close_at if closed else len(text)], open_trail, lead, closed)
    summary: str | None = None
    if closed:
        summary = text[close_at + len(close_tag) :]
        sep = trail + fmt.separator
        if summary.startswith(sep):
            summary = summary[len(sep) :]
    return ParsedInstance(paths=[chain], summary=summary, answer=extract_answer(summary))


_BOXED = re.compile(r"\\(?:boxed|fbox)\s*\{")
_FINAL = re.compile(r"the final answer is\s*:?[ \t]*([^\n]*)", re.IGNORECASE)


def _match_braces(text: str, start: int) -> int:
    """Index of the ``}`` closing the group whose content starts at ``start``, or -1 when unbalanced.
    Backslash-escaped braces (``\\{``, ``\\}``) are literal characters, not grouping."""
    depth = 1
    i = start
    while i < len(text):
        c = text[i]
        if c == "\\":
            i += 2
            continue
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    return -1


def extract_answer(text: str | None) -> str | None:
    """The final answer stated in ``text`` (docs/design.md §3), or None.

    1. The last ``\\boxed{...}`` (also ``\\boxed {...}`` and ``\\fbox{...}``) with brace matching, so
       ``\\boxed{\\frac{1}{2}}`` gives ``\\frac{1}{2}``; the content is stripped. A box nested inside an
       earlier complete box is part of that box's content; an unclosed (truncated) box is ignored; an
       empty last box gives None.
    2. Otherwise the last "The final answer is X" (case-insensitive, optional colon): X up to the end of
       its line, with surrounding ``$`` and a trailing period stripped.
    3. Otherwise None (also for None, empty answers and text without either form).
    """
    if text is None:
        return None
    if not isinstance(text, str):
        raise ValueError(f"`text` must be a string or None, got {type(text).__name__}.")
    boxed: str | None = None
    pos = 0
    while True:
        m = _BOXED.search(text, pos)
        if m is None:
            break
        close = _match_braces(text, m.end())
        if close < 0:
            pos = m.end()
            continue
        boxed = text[m.end() : close].strip()
        pos = close + 1
    if boxed is not None:
        return boxed or None
    finals = _FINAL.findall(text)
    if not finals:
        return None
    x = finals[-1].strip()
    while x and (x[-1] in ".$" or x[0] == "$"):
        x = x.rstrip(".").strip().strip("$").strip()
    return x or None


# ---------------------------------------------------------------------------------------------- token level


def encode_segment(tokenizer: Any, text: str) -> list[int]:
    """Token ids of one segment: ``tokenizer(text, add_special_tokens=False)["input_ids"]`` as a list of ints."""
    if not isinstance(text, str):
        raise ValueError(f"`text` must be a string, got {type(text).__name__}.")
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    return [int(i) for i in ids]


SlotKind = Literal["header", "path", "summary"]


# Alike in shape to generation.regions.Region (start/end, len, slice), on purpose: a token span of the data
# format, validated as one; Region is the canvas span `generate` reports. data/ does not import generation/.
@dataclass(frozen=True)
class SlotSpan:
    """A span ``[start, end)`` of the structured region (offsets after the prompt).

    Attributes:
        kind: "header" (clamped ids), "path" (the slot of path ``index``) or "summary" (the summary slot).
        index: the 1-based path number for a path and its header; None for the summary and its header.
        start / end: first position and one past the last.
    """

    kind: SlotKind
    index: int | None
    start: int
    end: int

    def __post_init__(self) -> None:
        if self.kind not in ("header", "path", "summary"):
            raise ValueError(f"SlotSpan `kind` must be 'header', 'path' or 'summary', got {self.kind!r}.")
        if not 0 <= self.start <= self.end:
            raise ValueError(f"SlotSpan needs 0 <= start <= end, got start={self.start}, end={self.end}.")

    def __len__(self) -> int:
        return self.end - self.start

    @property
    def slice(self) -> slice:
        return slice(self.start, self.end)


@dataclass
class CanvasLayout:
    """Where headers and slots lie in the structured region ``B1 R1 ... Bm Rm BS S`` (after the prompt).

    Attributes:
        m: number of paths.
        path_length / summary_length: positions per path slot / in the summary slot.
        spans: in order header 1, path 1, header 2, path 2, ..., summary header, summary; contiguous from 0
            to ``length``.
        header_ids: the clamped ids of each header in order (m path headers, then the summary header).
        length: total positions of the structured region.
    """

    m: int
    path_length: int
    summary_length: int
    spans: list[SlotSpan]
    header_ids: list[list[int]]
    length: int

    def __post_init__(self) -> None:
        if len(self.header_ids) != self.m + 1:
            raise ValueError(
                f"`header_ids` must hold m + 1 = {self.m + 1} lists, got {len(self.header_ids)}."
            )
        if len(self.spans) != 2 * (self.m + 1):
            raise ValueError(
                f"`spans` must hold 2 * (m + 1) = {2 * (self.m + 1)} spans, got {len(self.spans)}."
            )
        pos = 0
        for k, span in enumerate(self.spans):
            if span.start != pos:
                raise ValueError(
                    f"`spans` must be contiguous from 0: span {k} starts at {span.start}, not {pos}."
                )
            pos = span.end
        if pos != self.length:
            raise ValueError(f"`spans` end at {pos} but `length` is {self.length}.")
        for span, ids in zip(self.header_spans, self.header_ids, strict=True):
            if len(span) != len(ids):
                raise ValueError(f"`header_ids`: header span {span} does not hold {len(ids)} ids.")

    @property
    def header_spans(self) -> list[SlotSpan]:
        """The header spans in order (m path headers, then the summary header)."""
        return [s for s in self.spans if s.kind == "header"]

    @property
    def path_spans(self) -> list[SlotSpan]:
        """The m path slots in order."""
        return [s for s in self.spans if s.kind == "path"]

    @property
    def summary_span(self) -> SlotSpan:
        """The summary slot."""
        return self.spans[-1]

    def template(self, mask_token_id: int) -> list[int]:
        """The initial canvas: header ids at their spans, ``mask_token_id`` at every slot position."""
        if isinstance(mask_token_id, bool) or not isinstance(mask_token_id, int):
            raise ValueError(f"`mask_token_id` must be an int, got {mask_token_id!r}.")
        out = [mask_token_id] * self.length
        for span, ids in zip(self.header_spans, self.header_ids, strict=True):
            out[span.slice] = ids
        return out

    def slot_mask(self) -> list[bool]:
        """True at slot positions (paths and summary), False at headers."""
        out = [False] * self.length
        for span in self.spans:
            if span.kind != "header":
                out[span.slice] = [True] * len(span)
        return out


def _check_positive(value: Any, name: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"`{name}` must be an int >= 1, got {value!r}.")


def build_layout(
    tokenizer: Any,
    m: int,
    path_length: int,
    summary_length: int,
    fmt: NAPFormat = DEFAULT_FORMAT,
    header_ids: list[list[int]] | None = None,
) -> CanvasLayout:
    """The canvas layout for ``m`` paths of ``path_length`` positions and a summary of ``summary_length``.

    Headers are ``fmt.header(1..m)`` and ``fmt.header(None)``, each tokenized on its own
    (:func:`encode_segment`), unless ``header_ids`` (m + 1 id lists) are given; then ``tokenizer`` is
    not used and may be None.
    """
    _check_positive(m, "m")
    _check_positive(path_length, "path_length")
    _check_positive(summary_length, "summary_length")
    if header_ids is None:
        if tokenizer is None:
            raise ValueError("`tokenizer` is required when `header_ids` is not given.")
        header_ids = [encode_segment(tokenizer, fmt.header(j)) for j in [*range(1, m + 1), None]]
    else:
        if isinstance(header_ids, (str, bytes)) or len(header_ids) != m + 1:
            raise ValueError(
                f"`header_ids` must hold m + 1 = {m + 1} id lists (m path headers, then the summary header)."
            )
        try:
            header_ids = [[int(i) for i in ids] for ids in header_ids]
        except (TypeError, ValueError) as e:
            raise ValueError(f"`header_ids` must be lists of int token ids: {e}") from e
    spans: list[SlotSpan] = []
    pos = 0
    for k, ids in enumerate(header_ids):
        index = k + 1 if k < m else None
        spans.append(SlotSpan("header", index, pos, pos + len(ids)))
        pos += len(ids)
        size = path_length if k < m else summary_length
        spans.append(SlotSpan("path" if k < m else "summary", index, pos, pos + size))
        pos += size
    # keyword arguments one per line (alike in shape to write_tiny_llada's cfg.update; nothing shared)
    return CanvasLayout(
        m=m,
        path_length=path_length,
        summary_length=summary_length,
        spans=spans,
        header_ids=header_ids,
        length=pos,
    )


def render_slot_aligned(
    tokenizer: Any,
    paths: Sequence[str],
    summary: str,
    layout: CanvasLayout,
    filler_id: int,
    fmt: NAPFormat = DEFAULT_FORMAT,
) -> list[int] | None:
    """The training instance in canvas layout (docs/design.md §7): ``layout.length`` ids.

    Headers are ``layout.header_ids``; path slot j holds ``ids(path_j + fmt.close(j))`` padded with
    ``filler_id`` (EOS) to ``path_length``; the summary slot holds ``ids(summary + fmt.summary_close)``
    padded to ``summary_length``. Every segment is tokenized on its own.

    Returns None when any part does not fit its slot (the caller counts the drops); a part of exactly
    the slot length fits.
    """
    paths = _check_paths(paths)
    _check_summary(summary)
    if len(paths) != layout.m:
        raise ValueError(f"`paths` holds {len(paths)} paths but the layout has m = {layout.m}.")
    if isinstance(filler_id, bool) or not isinstance(filler_id, int):
        raise ValueError(f"`filler_id` must be an int token id (EOS), got {filler_id!r}.")
    contents = [encode_segment(tokenizer, p + fmt.close(j)) for j, p in enumerate(paths, start=1)]
    contents.append(encode_segment(tokenizer, summary + fmt.close(None)))
    sizes = [layout.path_length] * layout.m + [layout.summary_length]
    out: list[int] = []
    for head, ids, size in zip(layout.header_ids, contents, sizes, strict=True):
        if len(ids) > size:
            return None
        out += head
        out += ids
        out += [filler_id] * (size - len(ids))
    return out


def parse_canvas(
    tokenizer: Any,
    ids: Sequence[int],
    layout: CanvasLayout,
    filler_ids: Iterable[int] = (),
    fmt: NAPFormat = DEFAULT_FORMAT,
) -> ParsedInstance:
    """Parse a decoded canvas (the structured region only, ``layout.length`` ids; slice the prompt off).

    Each slot is decoded on its own with ``skip_special_tokens=True`` after dropping ``filler_ids``;
    the text is cut at its closing tag (path j at ``</think j>``, the summary at ``</summary>``) and
    stripped. Headers are not read. ``paths`` always has ``layout.m`` entries and ``summary`` is a
    string; the answer comes from the summary ONLY.
    """
    ids = [int(i) for i in ids]
    if len(ids) != layout.length:
        raise ValueError(
            f"`ids` must hold the structured region only ({layout.length} ids, prompt sliced off), "
            f"got {len(ids)}."
        )
    drop = {int(i) for i in filler_ids}

    def read(span: SlotSpan, j: int | None) -> str:
        kept = [i for i in ids[span.slice] if i not in drop]
        text = tokenizer.decode(kept, skip_special_tokens=True)
        cut = text.find(fmt.close(j).strip())
        return (text if cut < 0 else text[:cut]).strip()

    paths = [read(span, j) for j, span in enumerate(layout.path_spans, start=1)]
    summary = read(layout.summary_span, None)
    return ParsedInstance(paths=paths, summary=summary, answer=extract_answer(summary))
