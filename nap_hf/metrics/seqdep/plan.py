"""The scoring plan of SeqDep: which token rows go through the scorer, which span of each row is which
log-probability term of Eq. 4, what each example keeps after truncation, and how rows pack into batches.
Pure data built from token ids, no model: :func:`plan_scoring` builds a :class:`ScoringPlan`, the scorer
runs it.

Batching: every conditional term ``log p(s_n | x, s_<n)`` of one example comes from ONE row over the whole
output (a causal LM's log-probs on a prefix do not depend on what follows), plus one row per independent
term ``x + lead_n + text_n``; rows are sorted by length (longest first) and packed into right-padded
batches of at most ``batch_size`` rows (and ``max_tokens_per_batch`` rows x padded length).
``share_prefix=False`` gives each conditional term its own row (2(N-1) rows; same numbers, for checking).
``max_length`` drops the trailing segments whose row does not fit (``truncation="segments"``) or skips the
example (``truncation="skip"``). An example with N < 2 segments (after truncation) is skipped: it has no
rows and no SeqDep value.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from ._checks import check_int

__all__ = [
    "SKIP_FEW_SEGMENTS",
    "SKIP_TOO_LONG",
    "SegmentIds",
    "PreparedExample",
    "Term",
    "Span",
    "Row",
    "ExamplePlan",
    "PlanSettings",
    "ScoringPlan",
    "plan_scoring",
]

SKIP_FEW_SEGMENTS = "fewer_than_2_segments"
SKIP_TOO_LONG = "too_long"
SkipReason = Literal["fewer_than_2_segments", "too_long"]
Truncation = Literal["segments", "skip"]


# The plan's typed records: small frozen dataclasses, alike in shape by design (fields, no logic).
@dataclass(frozen=True)
class SegmentIds:
    """Token ids of one segment, each part tokenized on its own (only ``text`` is scored)."""

    lead: tuple[int, ...]
    text: tuple[int, ...]
    tail: tuple[int, ...]

    @property
    def num_tokens(self) -> int:
        return len(self.lead) + len(self.text) + len(self.tail)


@dataclass(frozen=True)
class PreparedExample:
    """Token ids of one example: the prompt ``x`` and its segments in order."""

    prompt: tuple[int, ...]
    segments: tuple[SegmentIds, ...]


@dataclass(frozen=True)
class Term:
    """One log-probability of Eq. 4: ``log p(s_n | x, s_<n)`` (``conditional``) or ``log p(s_n | x)`` of
    segment ``segment`` (0-based; terms exist for segments 1..N-1) of example ``example``."""

    example: int
    segment: int
    conditional: bool


@dataclass(frozen=True)
class Span:
    """``row.ids[start:end]`` are the scored tokens of ``term`` (the logits at ``start-1 .. end-2``)."""

    start: int
    end: int
    term: Term


# alike in shape to the records above (PreparedExample, Term): fields and a docstring, no logic
@dataclass(frozen=True)
class Row:
    """One sequence for the scorer and the terms read from it."""

    ids: tuple[int, ...]
    spans: tuple[Span, ...]


@dataclass(frozen=True)
class ExamplePlan:
    """What one example keeps.

    Attributes:
        segment_tokens: scored tokens of each segment described by the result: the kept segments, all of
            them when skipped for having fewer than 2, none when skipped as too long.
        num_segments_total: segments before truncation.
        num_tokens: the output's length in scorer tokens (every lead, text and tail, before truncation).
        truncated: trailing segments were dropped to fit ``max_length``.
        skipped: None, ``"fewer_than_2_segments"`` or ``"too_long"``.
    """

    segment_tokens: tuple[int, ...]
    num_segments_total: int
    num_tokens: int
    truncated: bool = False
    skipped: SkipReason | None = None

    @property
    def num_segments(self) -> int:
        """N: the segments scored (or described, when skipped)."""
        return len(self.segment_tokens)

    def terms(self, example: int, conditional: bool) -> list[Term]:
        """The terms of segments 2..N (none when skipped)."""
        if self.skipped is not None:
            return []
        return [Term(example, n, conditional) for n in range(1, self.num_segments)]


@dataclass(frozen=True)
class PlanSettings:
    """How examples become rows and batches (the :class:`~nap_hf.metrics.SeqDepScorer` arguments of the
    same names; checked here)."""

    batch_size: int = 8
    max_length: int | None = None
    max_tokens_per_batch: int | None = None
    truncation: Truncation = "segments"
    share_prefix: bool = True

    def __post_init__(self) -> None:
        check_int(self.batch_size, "batch_size")
        check_int(self.max_length, "max_length", minimum=2, allow_none=True)
        check_int(self.max_tokens_per_batch, "max_tokens_per_batch", allow_none=True)
        if self.truncation not in ("segments", "skip"):
            raise ValueError(f"`truncation` must be 'segments' or 'skip', got {self.truncation!r}.")


@dataclass(frozen=True)
class ScoringPlan:
    """Rows to score, per-example outcomes and the batches (row indices, longest row first)."""

    rows: tuple[Row, ...]
    examples: tuple[ExamplePlan, ...]
    batches: tuple[tuple[int, ...], ...]


def _kept_segments(ex: PreparedExample, limit: int | None) -> int:
    """The longest prefix of segments whose full row ``x + ... + lead_n + text_n`` fits ``limit``."""
    keep, length = 0, len(ex.prompt)
    for seg in ex.segments:
        if limit is not None and length + len(seg.lead) + len(seg.text) > limit:
            break
        keep += 1
        length += seg.num_tokens
    return keep


def _outcome(ex: PreparedExample, settings: PlanSettings) -> ExamplePlan:
    total = len(ex.segments)
    keep = _kept_segments(ex, settings.max_length)
    tokens = [len(s.text) for s in ex.segments]
    common = dict(num_segments_total=total, num_tokens=sum(s.num_tokens for s in ex.segments))
    too_long = keep < total
    if too_long and (settings.truncation == "skip" or keep < 2) and total >= 2:
        return ExamplePlan(segment_tokens=(), skipped=SKIP_TOO_LONG, **common)
    if total < 2:
        return ExamplePlan(segment_tokens=tuple(tokens), skipped=SKIP_FEW_SEGMENTS, **common)
    return ExamplePlan(segment_tokens=tuple(tokens[:keep]), truncated=too_long, **common)


def _example_rows(e: int, ex: PreparedExample, keep: int, share_prefix: bool) -> list[Row]:
    rows: list[Row] = []
    x, pieces = ex.prompt, ex.segments[:keep]
    # conditional: x + s_1 + ... + lead_n + text_n (one shared row, or one row per n)
    full = list(x)
    spans: list[Span] = []
    for n, seg in enumerate(pieces):
        full += seg.lead
        if n >= 1:
            span = Span(len(full), len(full) + len(seg.text), Term(e, n, True))
            if share_prefix:
                spans.append(span)
            else:
                rows.append(Row(ids=tuple(full) + seg.text, spans=(span,)))
        full += seg.text
        if n + 1 < keep:
            full += seg.tail
    if share_prefix:
        rows.append(Row(ids=tuple(full), spans=tuple(spans)))
    # independent: x + lead_n + text_n
    for n in range(1, keep):
        seg = pieces[n]
        start = len(x) + len(seg.lead)
        rows.append(
            Row(ids=x + seg.lead + seg.text, spans=(Span(start, start + len(seg.text), Term(e, n, False)),))
        )
    return rows


def _pack(rows: Sequence[Row], settings: PlanSettings) -> tuple[tuple[int, ...], ...]:
    order = sorted(range(len(rows)), key=lambda i: -len(rows[i].ids))
    batches: list[list[int]] = []
    cap = settings.max_tokens_per_batch
    for i in order:
        if batches:
            cur = batches[-1]
            width = len(rows[cur[0]].ids)  # rows are sorted: the first is the longest
            if len(cur) < settings.batch_size and (cap is None or (len(cur) + 1) * width <= cap):
                cur.append(i)
                continue
        batches.append([i])
    return tuple(tuple(b) for b in batches)


def plan_scoring(prepared: Sequence[PreparedExample], settings: PlanSettings) -> ScoringPlan:
    """The rows, outcomes and batches for ``prepared`` examples (see the module docstring for the rules)."""
    if not isinstance(settings, PlanSettings):
        raise ValueError(f"`settings` must be a PlanSettings, got {type(settings).__name__}.")
    rows: list[Row] = []
    outcomes: list[ExamplePlan] = []
    for e, ex in enumerate(prepared):
        outcome = _outcome(ex, settings)
        outcomes.append(outcome)
        if outcome.skipped is None:
            rows += _example_rows(e, ex, outcome.num_segments, settings.share_prefix)
    return ScoringPlan(rows=tuple(rows), examples=tuple(outcomes), batches=_pack(rows, settings))
