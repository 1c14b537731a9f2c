"""The SeqDep scorer: a causal LM ``p_AR`` that turns a :class:`~nap_hf.metrics.seqdep.plan.ScoringPlan`
into log-probabilities, and the :class:`SeqDepScorer` API around it.

Tokenization (decided here): the prompt, and every ``lead``, ``text`` and ``tail``, are tokenized ON THEIR
OWN (``add_special_tokens=False``) and the ids concatenated, so the tokens of segment n are identical in the
two conditions and in every row of a batch (a tokenizer that prepends a space per call, like SentencePiece
Llama-2, would need segments without leading spaces). The prompt ``x`` is the question in the scorer's chat
template with the generation prompt when ``use_chat_template`` (default: when the tokenizer has one),
else the raw prompt tokenized with the tokenizer's special tokens; without a prompt, ``x`` is the BOS token
(EOS where there is no BOS) so that the first scored token has a context.

The scorer must be a causal LM, which is read from its config, never from a model-family name: an
encoder-decoder, ``is_causal=False`` (bidirectional attention, as this package's LLaDA and Dream declare) or
a ``mask_token_id`` without ``is_causal=True`` (a masked or masked-diffusion LM, such as the hub's LLaDA and
Dream remote code) is refused.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch

from ...data.format import DEFAULT_FORMAT, NAPFormat, encode_segment
from .plan import PlanSettings, PreparedExample, Row, ScoringPlan, SegmentIds, Term, plan_scoring
from .results import SeqDepOutput, SeqDepResult
from .segment import Segment, SegmentsArg, split_segments

__all__ = ["SeqDepScorer", "seqdep", "not_causal_reason"]

_LOGSOFTMAX_CHUNK = 4096  # positions per log-softmax call


def not_causal_reason(config: Any) -> str | None:
    """Why ``config`` (a model's ``config``) says the model is not a causal LM, or None when it may be one."""
    if config is None:
        return None
    if getattr(config, "is_encoder_decoder", False):
        return "its config sets is_encoder_decoder=True"
    causal = getattr(config, "is_causal", None)
    if causal is False:
        return "its config sets is_causal=False (bidirectional attention)"
    mask = getattr(config, "mask_token_id", None)
    if causal is None and mask is not None:
        return f"its config has a mask_token_id ({mask}) and no is_causal=True, the mark of a masked LM"
    return None


def _check_causal_lm(model: Any) -> None:
    if not isinstance(model, torch.nn.Module):
        raise ValueError(
            f"`model` must be a torch causal LM (e.g. AutoModelForCausalLM), got {type(model).__name__}. "
            "Fix: load it first, or use SeqDepScorer.from_pretrained(path)."
        )
    reason = not_causal_reason(getattr(model, "config", None))
    if reason is not None:
        raise ValueError(
            f"`model` must be a causal (autoregressive) LM, but {reason}: SeqDep needs p_AR(next token | "
            "prefix), and a bidirectional / masked-diffusion model gives no such probability. Fix: pass an "
            "AutoModelForCausalLM such as SmolLM2, Qwen2.5 or Llama 3 (a causal model whose config carries a "
            "mask_token_id: set `model.config.is_causal = True`)."
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


def _as_dtype(dtype: torch.dtype | str | None) -> torch.dtype | None:
    if isinstance(dtype, str):
        if not isinstance(getattr(torch, dtype, None), torch.dtype):
            raise ValueError(
                f"`dtype` must be a torch dtype or its name ('float32', 'bfloat16'), got {dtype!r}."
            )
        return getattr(torch, dtype)
    return dtype


@dataclass(frozen=True)
class _Batch:
    """Model inputs for some rows, and where their scored tokens are."""

    ids: torch.Tensor  # (B, L) right-padded
    mask: torch.Tensor  # (B, L)
    row: torch.Tensor  # (T,) batch row of every scored token
    position: torch.Tensor  # (T,) its position in the row
    term: torch.Tensor  # (T,) index of its term in `terms`
    terms: tuple[Term, ...]


def _batch_inputs(rows: Sequence[Row], batch: Sequence[int], pad_id: int) -> _Batch:
    width = max(len(rows[i].ids) for i in batch)
    ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    b_idx, p_idx, term_idx = [], [], []
    terms: list[Term] = []
    for b, i in enumerate(batch):
        row = rows[i]
        ids[b, : len(row.ids)] = torch.tensor(row.ids, dtype=torch.long)
        mask[b, : len(row.ids)] = 1
        for span in row.spans:
            n = span.end - span.start
            b_idx += [b] * n
            p_idx += list(range(span.start, span.end))
            term_idx += [len(terms)] * n
            terms.append(span.term)
    as_long = dict(dtype=torch.long)
    return _Batch(
        ids,
        mask,
        torch.tensor(b_idx, **as_long),
        torch.tensor(p_idx, **as_long),
        torch.tensor(term_idx, **as_long),
        tuple(terms),
    )


def _token_logprobs(logits: torch.Tensor, batch: _Batch) -> torch.Tensor:
    """float64 log-probability (T,) of every scored token of ``batch`` under ``logits`` (B, L, V).

    The log-softmax runs in float32 (float64 for a float64 model), a few thousand positions at a time so
    that a large vocabulary never needs a second full-size copy of the logits."""
    b_t, p_t = batch.row.to(logits.device), batch.position.to(logits.device)
    tgt = batch.ids.to(logits.device)[b_t, p_t]  # (T,)
    up = torch.float64 if logits.dtype == torch.float64 else torch.float32
    out = torch.empty(len(b_t), dtype=torch.float64, device=logits.device)  # (T,)
    for c in range(0, len(b_t), _LOGSOFTMAX_CHUNK):
        sl = slice(c, c + _LOGSOFTMAX_CHUNK)
        sel = logits[b_t[sl], p_t[sl] - 1].to(up)  # (t, V): logits at p - 1 predict token p
        out[sl] = sel.log_softmax(-1).gather(-1, tgt[sl, None])[:, 0].double()
    return out


class SeqDepScorer:
    """Scores SeqDep (Eq. 4) with a causal LM ``p_AR``; see :mod:`nap_hf.metrics.seqdep` for every rule.

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
        _check_causal_lm(model)
        if tokenizer is None or not callable(tokenizer):
            raise ValueError("`tokenizer` must be the scorer's tokenizer (callable on text), got None.")
        PlanSettings(  # checks the arguments
            batch_size=batch_size,
            max_length=max_length,
            max_tokens_per_batch=max_tokens_per_batch,
            truncation=truncation,
        )
        if use_chat_template and not getattr(tokenizer, "chat_template", None):
            raise ValueError(
                "`use_chat_template=True` but the tokenizer has no chat template. "
                "Fix: use_chat_template=False (raw prompt) or set tokenizer.chat_template."
            )
        dtype = _as_dtype(dtype)
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

    @property
    def plan_settings(self) -> PlanSettings:
        """The current row and batch settings (read from the attributes at every call)."""
        return PlanSettings(
            batch_size=self.batch_size,
            max_length=self.max_length,
            max_tokens_per_batch=self.max_tokens_per_batch,
            truncation=self.truncation,
            share_prefix=self.share_prefix,
        )

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

    def prepare(self, segments: Sequence[Segment], prompt: Any) -> PreparedExample:
        """Token ids of one example: its prompt and segments, every part tokenized on its own."""

        def enc(text: str) -> tuple[int, ...]:
            return tuple(encode_segment(self.tokenizer, text))

        pieces = tuple(SegmentIds(enc(s.lead), enc(s.text), enc(s.tail)) for s in segments)
        return PreparedExample(prompt=tuple(self.prompt_ids(prompt)), segments=pieces)

    # --------------------------------------------------------------------------------------- scoring

    def plan(
        self,
        texts: Sequence[str | Sequence[str | Segment]],
        prompts: Sequence[Any] | None = None,
        **split: Any,
    ) -> ScoringPlan:
        """The rows and batches :meth:`score` runs for the same arguments (nothing is scored); ``split``:
        ``segments`` / ``separator`` / ``fmt`` of :func:`~nap_hf.metrics.split_segments`."""
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
        prepared = [self.prepare(split_segments(t, **split), p) for t, p in zip(texts, prompts, strict=True)]
        return plan_scoring(prepared, self.plan_settings)

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
            segments / separator / fmt: see :func:`~nap_hf.metrics.split_segments`.

        Returns:
            A :class:`SeqDepOutput` with one :class:`SeqDepResult` per output, in order.
        """
        plan = self.plan(texts, prompts, segments=segments, separator=separator, fmt=fmt)
        out = SeqDepOutput.from_plan(plan, self.run(plan))
        if out.num_truncated or out.num_too_long:
            warnings.warn(
                f"SeqDep: {out.num_truncated} example(s) lost trailing segments and {out.num_too_long} were "
                f"skipped because they exceed max_length={self.max_length} tokens (counted in `num_truncated` "
                "/ `num_too_long`). Fix: raise `max_length` if the scorer's context allows it.",
                stacklevel=2,
            )
        return out

    def score_one(
        self, text: str | Sequence[str | Segment], prompt: Any = None, **kwargs: Any
    ) -> SeqDepResult:
        """SeqDep of one output (unbatched); ``kwargs`` as in :meth:`score`."""
        return self.score([text], [prompt], **kwargs)[0]

    def run(self, plan: ScoringPlan) -> dict[Term, float]:
        """The summed log-probability (nats, float64) of every term of ``plan``, batch by batch."""
        logp: dict[Term, float] = {}
        show = self.progress if self.progress is not None else len(plan.batches) > 16
        bar = None
        if show:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(plan.rows), desc="SeqDep rows", unit="row")
        try:
            for batch in plan.batches:
                logp.update(self._forward(plan.rows, batch))
                if bar is not None:
                    bar.update(len(batch))
        finally:
            if bar is not None:
                bar.close()
        return logp

    @torch.inference_mode()
    def _forward(self, rows: Sequence[Row], batch: Sequence[int]) -> dict[Term, float]:
        inputs = _batch_inputs(rows, batch, self.pad_token_id)
        out = self.model(
            input_ids=inputs.ids.to(self.device), attention_mask=inputs.mask.to(self.device), use_cache=False
        )
        logits = out.logits if hasattr(out, "logits") else out[0]  # (B, L, V)
        tok_logp = _token_logprobs(logits, inputs)  # (T,)
        sums = torch.zeros(len(inputs.terms), dtype=torch.float64, device=logits.device)
        sums.index_add_(0, inputs.term.to(logits.device), tok_logp)
        return dict(zip(inputs.terms, sums.tolist(), strict=True))


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
