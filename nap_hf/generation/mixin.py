"""THE mask-predict loop. `DiffusionGenerationMixin.generate` runs every decoding strategy of the
paper through one loop: forward -> candidates + scores on the rows a strategy may commit -> commit.

Cost: the LM head (and every full-vocabulary operation) runs only on the positions that can be
committed at this step (`StepPlan.rows`), never on the whole canvas; sampling at T > 0 draws from
softmax(logits / T) in float32 (the distribution of LLaDA's float64 Gumbel-max), and steps whose
budget is zero run no forward pass."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from transformers import GenerationConfig, LogitsProcessorList
from transformers.generation.streamers import BaseStreamer
from transformers.utils import logging

from ..alignment import align_predictions, model_shifts_logits
from ..data.format import parse_canvas
from .cache import CachedForward, check_cache_support
from .canvas import Canvas, nap_canvas, nap_layout, plain_canvas
from .config import DIFFUSION_FIELDS, DiffusionGenerationConfig
from .early_stop import EarlyStop, closing_tag_ids
from .isolated import IsolatedPathsForward, check_isolation, isolated_canvas_inputs
from .output import DiffusionGenerateOutput, DiffusionStep
from .scores import SCORES, score_of
from .strategies import DecodeState, Strategy, strategy_class
from .streaming import StreamBridge

logger = logging.get_logger(__name__)

__all__ = ["DiffusionGenerationMixin", "candidates_and_scores", "filter_logits", "SCORES"]


def filter_logits(logits: torch.Tensor, top_k: int | None, top_p: float | None) -> torch.Tensor:
    """Top-k then top-p (nucleus) filtering of (N, V) logits: removed entries become -inf."""
    if top_k is not None and 0 < top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None and top_p < 1.0:
        sorted_logits, sorted_idx = torch.sort(logits, descending=True, dim=-1)
        cum = sorted_logits.softmax(-1).cumsum(-1)
        remove = cum > top_p
        remove[..., 1:] = remove[..., :-1].clone()  # keep the first token above the threshold
        remove[..., 0] = False
        logits = logits.masked_fill(remove.scatter(-1, sorted_idx, remove), float("-inf"))
    return logits


def sample_categorical(probs: torch.Tensor, generator: torch.Generator | None = None) -> torch.LongTensor:
    """One exact draw per row of (N, V) probabilities by inverting the CDF with ONE uniform number per row
    (`torch.multinomial` draws an exponential per vocabulary entry: ~6x the LM-head cost per row at V = 32k).
    Entries with zero probability are never drawn (the result is capped at the last non-zero entry)."""
    cdf = probs.cumsum(-1)
    total = cdf[:, -1:].contiguous()
    u = torch.rand(cdf.shape[0], 1, generator=generator, device=cdf.device, dtype=cdf.dtype) * total
    idx = torch.searchsorted(cdf, u, right=True)
    return torch.minimum(idx, torch.searchsorted(cdf, total)).squeeze(-1)


def candidates_and_scores(
    logits: torch.Tensor,
    *,
    temperature: float,
    score_kind: str | None,
    tempered_scores: bool = False,
    top_k: int | None = None,
    top_p: float | None = None,
    generator: torch.Generator | None = None,
) -> tuple[torch.LongTensor, torch.Tensor | None]:
    """Candidate token and score for each of N rows of (N, V) logits.

    Candidates: argmax at T = 0, else one draw from softmax(filter(logits / T)). Scores (higher = surer): the
    registered score `score_kind` (:data:`~nap_hf.generation.scores.SCORES`: `confidence` p(x0), `margin`
    p1 - p2, `entropy` sum p log p, `dream_entropy`), under softmax(logits) (LLaDA) or, with
    `tempered_scores`, under the tempered and filtered distribution (Dream). bf16/fp16 logits are
    promoted to float32; float64 stays float64."""
    if logits.dtype in (torch.float16, torch.bfloat16):
        logits = logits.float()
    sampled = temperature > 0
    if sampled:
        tempered = filter_logits(logits / temperature, top_k, top_p)
        probs = tempered.softmax(-1)
        x0 = sample_categorical(probs, generator)
    else:
        tempered = filter_logits(logits, top_k, top_p) if (top_k or top_p is not None) else logits
        x0 = tempered.argmax(-1)
    if score_kind is None:
        return x0, None
    base = tempered if tempered_scores else logits
    lse = base.logsumexp(-1, keepdim=True)
    score = score_of(score_kind)(base, lse, x0)
    return x0, score


class DiffusionGenerationMixin:
    """Gives a masked-diffusion model the diffusion `generate`. The model must provide `forward` returning
    `.logits`; when it also has `get_decoder()` and `get_output_embeddings()` (as LLaDA and Dream here), the
    loop runs the trunk once per step and the LM head on the committable rows only."""

    generation_config_class = DiffusionGenerationConfig

    # ------------------------------------------------------------------ configuration
    def adjust_generation_fn(
        self, generation_config, from_auto_class, from_pipeline, pretrained_model_name_or_path, **kwargs
    ) -> None:
        """Called by `from_pretrained`: load `generation_config.json` as a `DiffusionGenerationConfig`."""
        if generation_config is not None:
            self.generation_config = DiffusionGenerationConfig.from_generation_config(
                generation_config, self.config
            )
            return
        if pretrained_model_name_or_path is None:
            return
        keys = (
            "cache_dir",
            "force_download",
            "proxies",
            "local_files_only",
            "token",
            "revision",
            "subfolder",
        )
        try:
            loaded = DiffusionGenerationConfig.from_pretrained(
                pretrained_model_name_or_path, **{k: kwargs[k] for k in keys if k in kwargs}
            )
            self.generation_config = DiffusionGenerationConfig.from_generation_config(loaded, self.config)
        except OSError:
            pass

    def _diffusion_config(
        self, generation_config: GenerationConfig | None, kwargs: dict
    ) -> DiffusionGenerationConfig:
        base = (
            generation_config if generation_config is not None else getattr(self, "generation_config", None)
        )
        cfg = DiffusionGenerationConfig.from_generation_config(base, getattr(self, "config", None))
        if "max_new_tokens" in kwargs:
            value = kwargs.pop("max_new_tokens")
            if kwargs.get("gen_length") is not None and value is not None and value != kwargs["gen_length"]:
                raise ValueError("pass either `gen_length` or `max_new_tokens` (its alias), not both.")
            kwargs.setdefault("gen_length", value)
        known = (
            set(DIFFUSION_FIELDS)
            | {"eos_token_id", "pad_token_id"}
            | set(getattr(self, "_extra_generate_fields", ()))
        )
        unknown = sorted(k for k in kwargs if k not in known)
        if unknown:
            raise ValueError(
                f"generate() got unknown argument(s) {unknown}. Diffusion decoding takes: {sorted(known)}."
            )
        for key, value in kwargs.items():
            if value is not None or key in (
                "block_length",
                "alg_temp",
                "top_k",
                "top_p",
                "seed",
                "cache_implementation",
            ):
                setattr(cfg, key, value)
        cfg.max_new_tokens = cfg.gen_length
        if cfg.shift_logits is None:
            cfg.shift_logits = model_shifts_logits(self)
        return cfg

    @staticmethod
    def _strategy_for(cfg: DiffusionGenerationConfig) -> Strategy:
        """Check what this call needs at run time (a mask id, a pad id that is not it), the generic fields
        (:meth:`DiffusionGenerationConfig.validate_diffusion`), and build the strategy, which checks its own
        settings. Each check raises a `ValueError` naming the argument and the fix."""
        strategy_class(cfg.strategy)
        if cfg.mask_token_id is None:
            raise ValueError(
                "no mask token id: pass `mask_token_id=` to generate() or set `model.config.mask_token_id`."
            )
        if cfg.pad_token_id is not None and cfg.pad_token_id == cfg.mask_token_id:
            raise ValueError(
                f"pad_token_id ({cfg.pad_token_id}) equals mask_token_id: padding would be decoded as masks. "
                "Use a different pad token (LLaDA and Dream pad with EOS)."
            )
        cfg.validate_diffusion()
        return strategy_class(cfg.strategy)(cfg)

    # ------------------------------------------------------------------ model calls
    def _diffusion_logits(
        self,
        x: torch.LongTensor,
        attention_mask: torch.Tensor | None,
        position_ids: torch.LongTensor,
        rows: torch.BoolTensor,
        shift: bool,
    ) -> torch.Tensor:
        """Aligned logits (N, V) for the N positions of `rows` (row-major), from one forward pass over
        the (B, L) canvas. The LM head runs on those N rows only when the model exposes its trunk."""
        decoder = self.get_decoder() if hasattr(self, "get_decoder") else None
        head = self.get_output_embeddings() if hasattr(self, "get_output_embeddings") else None
        if decoder is not None and head is not None and decoder is not self:
            hidden = decoder(
                input_ids=x, attention_mask=attention_mask, position_ids=position_ids
            ).last_hidden_state
            return head(align_predictions(hidden, shift)[rows])  # (N, V)
        logits = self(input_ids=x, attention_mask=attention_mask).logits  # (B, L, V)
        return align_predictions(logits, shift)[rows]

    # ------------------------------------------------------------------ the loop
    @torch.no_grad()
    def generate(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        generation_config: GenerationConfig | None = None,
        *,
        generator: torch.Generator | None = None,
        logits_processor: LogitsProcessorList | list | None = None,
        step_callback: Callable[[DiffusionStep], Any] | None = None,
        streamer: BaseStreamer | None = None,
        **kwargs,
    ) -> torch.LongTensor | DiffusionGenerateOutput:
        r"""Masked-diffusion decoding: start from the prompt followed by `gen_length` masks and, each step,
        run the model once and commit some masked positions (never re-masked) until none is left.

        Args:
            input_ids: (B, P) prompt ids, LEFT-padded (`tokenizer.padding_side = "left"`). Mask tokens inside
                the prompt are filled in too (infilling).
            attention_mask: (B, P), 1 for real tokens.
            generation_config: defaults (else `model.generation_config`); any
                :class:`DiffusionGenerationConfig` field may also be passed as a keyword
                (`strategy`, `steps`, `gen_length`/`max_new_tokens`, `block_length`, `temperature`, `score`,
                `threshold`, `cfg_scale`, `logits_eos_inf`, `alg`, `alg_temp`, `eps`, `top_k`, `top_p`,
                `num_return_sequences`, `seed`, `output_history`, `return_dict_in_generate`, `mask_token_id`).
            generator: a `torch.Generator` for every random draw (sampling, `random` order, Dream's `origin`).
            logits_processor: transformers `LogitsProcessor`s, applied to the candidate rows' logits (e.g.
                `SuppressTokensLogitsProcessor`); `input_ids` they see is the current canvas of each row.
            step_callback: called after every step with a :class:`DiffusionStep` (live displays, histories).
            streamer: a transformers `BaseStreamer` (e.g. `TextStreamer`, `TextDiffusionStreamer`): `put` gets
                the prompt, then each run of generated tokens once every position before it is committed (in
                every row), `end` closes; a streamer with `put_draft` also gets, after every step, the draft of
                the rest of the canvas (committed tokens and the latest candidates), as DiffusionGemma does.

        Returns:
            the (B * num_return_sequences, P + G) sequences, or a :class:`DiffusionGenerateOutput` with
            `sequences`, `trace` and `nfe` (and `history`) when `return_dict_in_generate=True`.

        Example:
        ```python
        >>> out = model.generate(input_ids, strategy="confidence", steps=64, gen_length=128, block_length=32,
        ...                      return_dict_in_generate=True)  # doctest: +SKIP
        >>> from nap_hf.metrics import global_arness
        >>> global_arness(out.trace).mean  # doctest: +SKIP
        ```
        """
        tokenizer = kwargs.pop("tokenizer", None)
        _check_prompt(input_ids, attention_mask)
        cfg = self._diffusion_config(generation_config, kwargs)
        strategy = self._strategy_for(cfg)
        check_cache_support(self, cfg.cache_implementation)
        if cfg.early_stop and cfg.eos_token_id is None:
            raise ValueError(
                "early_stop=True needs an EOS id for the filler: pass `eos_token_id=` to generate()."
            )
        if generator is None and cfg.seed is not None:
            generator = torch.Generator(device=input_ids.device).manual_seed(int(cfg.seed))
        if cfg.num_return_sequences > 1:
            input_ids = input_ids.repeat_interleave(cfg.num_return_sequences, 0)
            if attention_mask is not None:
                attention_mask = attention_mask.repeat_interleave(cfg.num_return_sequences, 0)
        canvas = _build_canvas(input_ids, attention_mask, cfg, strategy, tokenizer)
        if cfg.path_isolation:
            check_isolation(self, cfg, canvas)
            canvas.isolation = isolated_canvas_inputs(canvas, attention_mask, self.dtype)
        if cfg.cache_implementation is not None:
            strategy.check_cache()
        processors = LogitsProcessorList(logits_processor or [])
        bridge = (
            StreamBridge(streamer, input_ids, mask_id=cfg.mask_token_id) if streamer is not None else None
        )
        if bridge is not None:
            step_callback = bridge.chain(step_callback)
        out = self._diffusion_loop(
            input_ids, attention_mask, cfg, strategy, generator, processors, step_callback, canvas
        )
        if bridge is not None:
            bridge.end(out.sequences if isinstance(out, DiffusionGenerateOutput) else out)
        if isinstance(out, DiffusionGenerateOutput) and canvas.layout is not None and tokenizer is not None:
            _parse_slots(out, canvas, cfg, tokenizer)
        return out

    def _canvas_positions(
        self, input_ids: torch.LongTensor, attention_mask: torch.Tensor | None, canvas: Canvas
    ) -> tuple[torch.Tensor | None, torch.LongTensor]:
        """The (B, L) padding mask of the whole canvas (None without padding) and its RoPE positions (left
        padding skipped); refuses a canvas longer than the model's maximum length."""
        B, P = input_ids.shape
        L = canvas.ids.shape[1]
        prompt_real = (
            attention_mask.bool()
            if attention_mask is not None
            else torch.ones_like(input_ids, dtype=torch.bool)
        )
        full_mask = torch.cat(
            [prompt_real, torch.ones(B, L - P, dtype=torch.bool, device=input_ids.device)], dim=1
        )
        max_len = getattr(getattr(self, "config", None), "max_position_embeddings", None)
        if max_len is not None and L > max_len:
            raise ValueError(
                f"the canvas ({L} tokens = prompt {P} + generation {L - P}) exceeds the model's maximum length "
                f"({max_len}); shorten the prompt or gen_length."
            )
        attn = None if bool(full_mask.all()) else full_mask.long()
        if canvas.isolation is not None:  # path isolation: the layout's own mask and positions (§10)
            return attn, canvas.isolation.position_ids
        return attn, (full_mask.long().cumsum(-1) - 1).clamp(min=0)

    def _decoding_pass(self, cfg, canvas: Canvas, attn, position_ids) -> Callable:
        """The step's model call: `forward(x, plan) -> (N, V)` aligned logits of `plan.rows`, with classifier-
        free guidance (`cfg_scale`: the unconditional canvas masks the prompt; two passes in one batch) and,
        with `cache_implementation`, a KV cache that this call's loop owns (:class:`CachedForward`); with
        `path_isolation=True` the isolated pass (:class:`IsolatedPathsForward`, which takes the cache into its path
        rows), with `"masked"` the whole canvas under the isolated mask."""
        mask_id, shift = cfg.mask_token_id, cfg.shift_logits
        cfg_scale = float(cfg.cfg_scale or 0.0)
        guided = cfg_scale > 0
        if guided:
            prompt_index = canvas.ids != mask_id  # everything that was not a mask at the start
            attn = None if attn is None else torch.cat([attn, attn], 0)
            position_ids = torch.cat([position_ids, position_ids], 0)
        cached = None
        if canvas.isolation is not None:
            if cfg.path_isolation is True:  # the paths as rows over one exact prompt cache (§10)
                cached = IsolatedPathsForward(
                    self,
                    canvas,
                    attn,
                    shift,
                    distribute=cfg.distribute_paths,
                    cache_implementation=cfg.cache_implementation,
                    cache_refresh=cfg.cache_refresh,
                )
            else:  # "masked": the whole canvas under the isolated mask (the exact reference)
                attn = canvas.isolation.attention_mask
        elif cfg.cache_implementation is not None:
            cached = CachedForward(
                self, cfg.cache_implementation, cfg.cache_refresh, attn, position_ids, shift
            )

        def logits_of(x: torch.LongTensor, rows: torch.BoolTensor, window) -> torch.Tensor:
            if cached is not None:
                return cached(x, rows, window)
            return self._diffusion_logits(x, attn, position_ids, rows, shift)

        def forward(x: torch.LongTensor, plan) -> torch.Tensor:
            if not guided:
                return logits_of(x, plan.rows, plan.window)
            both = logits_of(
                torch.cat([x, x.masked_fill(prompt_index, mask_id)], 0),
                torch.cat([plan.rows, plan.rows], 0),
                plan.window,
            )
            cond, uncond = both.chunk(2, dim=0)
            return uncond + (cfg_scale + 1) * (cond - uncond)

        forward.passes = 2 if guided else 1
        forward.cache = cached
        return forward

    # long: the mask-predict loop (docs/design.md §2) read top to bottom: set-up, then forward -> candidates
    # -> select -> commit, then the output; its state is local, and splitting it would scatter that state.
    def _diffusion_loop(
        self,
        input_ids: torch.LongTensor,
        attention_mask: torch.Tensor | None,
        cfg: DiffusionGenerationConfig,
        strategy: Strategy,
        generator: torch.Generator | None,
        processors: LogitsProcessorList,
        step_callback: Callable[[DiffusionStep], Any] | None,
        canvas: Canvas,
    ) -> torch.LongTensor | DiffusionGenerateOutput:
        """Run `strategy` to completion on `canvas`."""
        device = input_ids.device
        B, P = input_ids.shape
        mask_id = cfg.mask_token_id
        attn, position_ids = self._canvas_positions(input_ids, attention_mask, canvas)
        x = canvas.ids.clone()
        L = x.shape[1]
        trace = torch.full((B, L), -1, dtype=torch.long, device=device)
        state = DecodeState(
            x=x,
            fillable=canvas.fillable,
            mask_token_id=mask_id,
            gen_start=P,
            gen_length=L - P,
            generator=generator,
            config=cfg,
            regions=list(canvas.regions),
            filled=torch.zeros_like(canvas.fillable),
        )
        eos = cfg.eos_token_id if cfg.logits_eos_inf else None
        eos_ids = [eos] if isinstance(eos, int) else list(eos or [])
        history = [] if cfg.output_history else None
        forward = self._decoding_pass(cfg, canvas, attn, position_ids)
        if isinstance(forward.cache, IsolatedPathsForward):  # distributed paths: the gather fixes their trace
            forward.cache.trace = trace
        filler = EarlyStop(canvas, cfg) if cfg.early_stop else None
        nfe = 0
        strategy.begin(state)
        while (plan := strategy.plan(state)) is not None:
            rows = plan.rows
            logits = forward(x, plan)  # (N, V) for the N positions of rows
            nfe += forward.passes
            # the mask token is never a candidate: a committed position must stay committed
            logits[:, mask_id] = float("-inf")
            if eos_ids:
                logits[:, eos_ids] = float("-inf")
            if len(processors):
                logits = processors(x[rows.nonzero()[:, 0]], logits)
            score_kind = strategy.score_kind if plan.commit is None else None
            x0, score = candidates_and_scores(
                logits,
                temperature=float(cfg.temperature),
                score_kind=score_kind,
                tempered_scores=strategy.tempered_scores,
                top_k=cfg.top_k,
                top_p=cfg.top_p,
                generator=generator,
            )
            cand = torch.full_like(x, mask_id)
            cand[rows] = x0
            if plan.commit is not None:
                commit = plan.commit
            else:
                scores = torch.full((B, L), float("-inf"), dtype=score.dtype, device=device)
                scores[rows] = score
                commit = strategy.select(state, plan, scores) & rows
            x[commit] = cand[commit]
            if filler is not None:  # early exit: EOS filler behind a committed EOS / closing tag (no forward)
                commit = commit | filler(state)
            if forward.cache is not None:
                forward.cache.committed(commit)
            trace[commit] = state.step
            if history is not None:
                history.append(x.clone())
            if step_callback is not None:
                step_callback(
                    DiffusionStep(
                        state.step, nfe, sequences=x, committed=commit, trace=trace, candidates=cand
                    )
                )
            state.step += 1
        left = state.masked
        if bool(left.any()):  # a strategy bug; never return half-decoded text silently
            raise RuntimeError(
                f"decoding ended with {int(left.sum())} masked position(s) left (strategy {cfg.strategy!r})."
            )
        if not cfg.return_dict_in_generate:
            return x
        return DiffusionGenerateOutput(
            sequences=x,
            trace=trace,
            nfe=nfe,
            history=tuple(history) if history is not None else None,
            regions=[list(canvas.regions) for _ in range(B)],
            position_ids=position_ids,
        )


def _check_prompt(input_ids: torch.LongTensor | None, attention_mask: torch.Tensor | None) -> None:
    """A (B, P) prompt, and a mask of its shape with left padding only."""
    if input_ids is None:
        raise ValueError("input_ids is required: the (batch, prompt_length) prompt ids (left-padded).")
    if input_ids.dim() != 2:
        raise ValueError(f"input_ids must be (batch, prompt_length), got shape {tuple(input_ids.shape)}.")
    if attention_mask is None:
        return
    if attention_mask.shape != input_ids.shape:
        raise ValueError(
            f"attention_mask shape {tuple(attention_mask.shape)} must match input_ids {tuple(input_ids.shape)}."
        )
    am = attention_mask.long()
    if bool((am[:, 1:] < am[:, :-1]).any()):
        raise ValueError(
            "attention_mask shows right padding; diffusion decoding needs LEFT padding "
            "(set `tokenizer.padding_side = 'left'`)."
        )


def _build_canvas(
    input_ids, attention_mask, cfg: DiffusionGenerationConfig, strategy: Strategy, tokenizer
) -> Canvas:
    """The canvas the strategy declares (`Strategy.on_nap_canvas`): the structured one (its `steps` clamped to
    the slot count) or the plain one; with `early_stop` on the structured canvas, its closing tags."""
    if strategy.on_nap_canvas(cfg.canvas):
        canvas = nap_canvas(input_ids, attention_mask, nap_layout(cfg, tokenizer), cfg.mask_token_id)
        if cfg.steps > canvas.n_slots:
            logger.warning(
                "steps=%d exceeds the %d slot positions of the canvas; clamped to %d (no forward pass is idle).",
                cfg.steps,
                canvas.n_slots,
                canvas.n_slots,
            )
            cfg.steps = canvas.n_slots
    else:
        canvas = plain_canvas(input_ids, attention_mask, cfg.gen_length, cfg.mask_token_id)
    if cfg.early_stop and canvas.layout is not None:
        if tokenizer is None:
            raise ValueError(
                "early_stop=True on the structured canvas needs `tokenizer=` (to find each slot's closing tag)."
            )
        canvas.close_ids = closing_tag_ids(tokenizer, cfg.m)
    return canvas


def _parse_slots(
    out: DiffusionGenerateOutput, canvas: Canvas, cfg: DiffusionGenerationConfig, tokenizer
) -> None:
    """Fill `out.paths`, `out.summary` and `out.answer` from the decoded structured canvas."""
    fillers = {i for i in (cfg.eos_token_id, cfg.pad_token_id) if isinstance(i, int)}
    parsed = [
        parse_canvas(tokenizer, row[canvas.prompt_length :].tolist(), canvas.layout, filler_ids=fillers)
        for row in out.sequences
    ]
    out.paths = [p.paths for p in parsed]
    out.summary = [p.summary for p in parsed]
    out.answer = [p.answer for p in parsed]
