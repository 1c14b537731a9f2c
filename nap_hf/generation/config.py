"""`DiffusionGenerationConfig`: the defaults of the diffusion `generate`, saved with a checkpoint as
`generation_config.json` (a transformers `GenerationConfig` with diffusion fields)."""

from __future__ import annotations

from typing import Any

from transformers import GenerationConfig

from .strategies import strategy_class

__all__ = ["DiffusionGenerationConfig", "DIFFUSION_FIELDS"]

# name -> default. Every field is documented in the class docstring.
DIFFUSION_FIELDS: dict[str, Any] = {
    "strategy": "confidence",  # the default strategy (LLaDA's low-confidence remasking)
    "steps": 128,
    "gen_length": 128,
    "block_length": None,
    "temperature": 0.0,
    "score": "confidence",
    "threshold": 0.9,
    "cfg_scale": 0.0,
    "logits_eos_inf": False,
    "alg": "maskgit_plus",
    "alg_temp": None,
    "eps": 1e-3,
    "top_k": None,
    "top_p": None,
    "mask_token_id": None,
    "shift_logits": None,
    "output_history": False,
    "return_dict_in_generate": False,
    "num_return_sequences": 1,
    "seed": None,
    "factor": 1.0,
    # KV cache (docs/caching.md) and early exit on filler
    "cache_implementation": None,
    "cache_refresh": "any",
    "early_stop": False,
    # structured (NAP) canvas: parallel-forced decoding, or other strategies with canvas="nap"
    "canvas": None,
    "m": 3,
    "path_length": 330,
    "summary_length": 32,
    "summary": "after",
    "header_ids": None,
    # isolated paths (docs/design.md §10)
    "path_isolation": False,
    "distribute_paths": False,
}


class DiffusionGenerationConfig(GenerationConfig):
    r"""Defaults of the masked-diffusion decoding loop (`model.generate`). Any field can be overridden
    per call: `model.generate(ids, steps=256, strategy="ar")`.

    Args:
        strategy: which positions to commit each step. `"ar"` (leftmost masked first), `"confidence"`
            (arbitrary order, best `score` first; LLaDA's `low_confidence`), `"random"`, `"threshold"`
            (Fast-dLLM: top-1 plus every candidate with confidence >= `threshold`, per block), `"dream"`
            (Dream's own schedule, see `alg`).
        steps: number of decoding steps (forward passes) for the whole generation region. Steps whose
            budget is zero are skipped, so no forward pass commits nothing.
        gen_length: number of generated positions (`max_new_tokens` is an alias).
        block_length: semi-autoregressive blocks: the region is cut into blocks decoded left to right,
            `steps` split equally among them. `None` = one block.
        temperature: 0 = argmax candidates; > 0 = candidates sampled from softmax(logits / T).
        score: ranking used by `"confidence"`: `"confidence"` (p(x0)), `"margin"` (p1 - p2) or
            `"entropy"` (sum p log p; higher = surer).
        threshold: confidence threshold of the `"threshold"` strategy (Fast-dLLM default 0.9).
        factor: the `"factor"` strategy's f (Fast-dLLM): commit the n best candidates of the block such that
            the n-th has confidence >= 1 - f / (n + 1), at least one.
        cache_implementation: `None` (every step runs the trunk over the whole canvas), `"prefix"` or
            `"dual"` (Fast-dLLM's KV caches; they need blocks: `block_length`, or the structured canvas's
            slots for `threshold` / `factor`). See docs/caching.md.
        cache_refresh: when a cached run refreshes (one full forward, which is that step's decoding pass):
            `"any"` (default; whenever the active window changes, i.e. at each block start, and for
            parallel-forced whenever any path enters a new block), `"all"` (parallel-forced: only once no
            block of the last refresh is still active), or an int N (every N steps; 1 = every step).
        early_stop: early exit on filler (default off, so the paper's NFE stay comparable). Plain canvas: once
            EOS is committed at position i, every masked position after i becomes EOS. Structured canvas: once
            a slot's closing tag is committed, the rest of the slot becomes EOS filler, and parallel-forced's
            path phase ends when every path is closed or full. Filler costs no forward pass and sits outside
            the per-step budget; `trace` gives it the step that triggered it.
        cfg_scale: LLaDA classifier-free guidance (0 = off); the unconditional pass masks the prompt.
        logits_eos_inf: forbid the EOS token as a candidate (LLaDA's option).
        alg: Dream's rule for `strategy="dream"`: `"origin"`, `"maskgit_plus"`, `"topk_margin"`, `"entropy"`.
        alg_temp: Dream's sampling temperature over positions (None/0 = top-k positions).
        eps: Dream's final time of the schedule `linspace(1, eps, steps + 1)`.
        top_k / top_p: candidate filtering at T > 0 (Dream's options).
        mask_token_id: the mask id (defaults to `model.config.mask_token_id`).
        shift_logits: whether the model's raw logits are shifted (Dream); defaults to the model's own.
        output_history: keep the canvas after every step (`out.history`).
        return_dict_in_generate: return a `DiffusionGenerateOutput` instead of the sequences tensor.
        num_return_sequences: samples per prompt.
        seed: seed of a private `torch.Generator` (instead of the global RNG).
        canvas: `None` (prompt + `gen_length` masks) or `"nap"`: the structured canvas of Eq. 5,
            `prompt | B1 R1 | ... | Bm Rm | BS S`, with clamped headers; `strategy="parallel_forced"` implies it.
        m: number of parallel paths (paper: 3).
        path_length: positions of each path slot (paper: 330; Table 5 keeps m x path_length = 990).
        summary_length: positions of the summary slot (paper: 32).
        summary: `"after"` (the summary is decoded once every path is full; default) or `"concurrent"`
            (the summary slot is one more slot of the macro-parallel schedule).
        header_ids: the m + 1 header token-id lists (`<think j>\n` ..., `<summary>\n`); when unset they are
            tokenized as plain text with the `tokenizer` passed to `generate`.
        path_isolation: isolated paths on the structured canvas (docs/design.md §10; models trained with
            `DiffusionSFTConfig(path_isolation=True)`): path j attends to the prompt and itself, the summary to
            everything, every path slot starts at the same position. `True` decodes the m paths as m rows that
            share one exact prompt cache (the prompt runs through the model once), then the summary; `"masked"`
            runs the whole canvas under the isolated mask every step (the slow exact reference, same result).
            Needs `summary="after"`. `False` (default): full attention, as NAP trains.
        distribute_paths: with `path_isolation=True` under `torch.distributed` (e.g. `torchrun`), each process
            decodes its share of the paths with no communication, then one gather, then the summary. Every
            process must call `generate` with the same prompts (it is never switched on by `accelerate launch`
            alone, where processes hold different prompts). Default False.
    """

    def __init__(self, **kwargs):
        gen_length_given = kwargs.get("gen_length") is not None
        ours = {name: kwargs.pop(name, default) for name, default in DIFFUSION_FIELDS.items()}
        if kwargs.get("max_new_tokens") is not None and not gen_length_given:
            ours["gen_length"] = kwargs["max_new_tokens"]
        super().__init__(**kwargs)
        # set after the parent, which would reset the fields it shares with us (temperature, top_k, ...)
        for name, value in ours.items():
            setattr(self, name, value)
        self.max_new_tokens = self.gen_length

    @classmethod
    def from_generation_config(
        cls, config: GenerationConfig | None, model_config=None
    ) -> DiffusionGenerationConfig:
        """Build from whatever `model.generation_config` holds (a plain `GenerationConfig` after
        `from_pretrained`), falling back to the model config for the token ids."""
        data: dict[str, Any] = {}
        if config is not None:
            data = {
                k: v
                for k, v in config.to_dict().items()
                if not k.startswith("_") and not (k in DIFFUSION_FIELDS and v is None)
            }
            data.pop("transformers_version", None)
            if getattr(config, "gen_length", None) is None and data.get("max_new_tokens") is None:
                data.pop("max_new_tokens", None)
        for key in ("mask_token_id", "eos_token_id", "pad_token_id"):
            if data.get(key) is None and model_config is not None:
                data[key] = getattr(model_config, key, None)
        return cls(**data)

    @classmethod
    def from_model_config(cls, model_config) -> DiffusionGenerationConfig:
        """Defaults for a freshly built model: token ids from its config, diffusion fields at their defaults."""
        return cls.from_generation_config(GenerationConfig.from_model_config(model_config), model_config)

    def to_dict(self) -> dict[str, Any]:
        out = super().to_dict()
        out["max_new_tokens"] = out.get("gen_length")  # one length, two names
        return out

    def validate(self, strict: bool = False, **kwargs) -> None:
        """transformers' checks of the shared fields, then :meth:`validate_diffusion` and the strategy's own
        checks (building the strategy runs them, as a diffusers scheduler checks its settings)."""
        # temperature, top_k, ... are meaningful without `do_sample` in diffusion decoding; let the
        # parent check everything else.
        # `cache_implementation` names a diffusion cache ("prefix", "dual"), not one of transformers' caches.
        do_sample, cache = self.do_sample, self.cache_implementation
        self.do_sample, self.cache_implementation = True, None
        try:
            super().validate(strict=strict, **kwargs)
        finally:
            self.do_sample, self.cache_implementation = do_sample, cache
        if "strategy" in self.__dict__:  # the parent's __init__ validates before our fields are set
            self.validate_diffusion()
            strategy_class(self.strategy)(self)

    def validate_diffusion(self) -> None:
        """The checks of the diffusion fields that hold whatever the strategy: a `ValueError` naming the field
        and the fix. The strategy's own settings are its to check (`Strategy.check_config`)."""
        strategy_class(self.strategy)
        for name in ("steps", "gen_length", "num_return_sequences"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                alias = " (max_new_tokens)" if name == "gen_length" else ""
                raise ValueError(f"{name}{alias} must be a positive integer, got {value!r}.")
        block = self.block_length
        if block is not None and (isinstance(block, bool) or not isinstance(block, int) or block <= 0):
            raise ValueError(f"block_length must be a positive integer or None, got {block!r}.")
        if self.temperature is None or self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature!r}.")
        refresh = self.cache_refresh
        if refresh not in ("any", "all") and (
            isinstance(refresh, bool) or not isinstance(refresh, int) or refresh < 1
        ):
            raise ValueError(
                f"cache_refresh={refresh!r} is unknown; use 'any' (whenever the active window changes), 'all' "
                "(once every block of the last refresh is done) or an int N >= 1 (every N steps)."
            )
        if not isinstance(self.early_stop, bool):
            raise ValueError(f"early_stop must be True or False, got {self.early_stop!r}.")
        if self.cfg_scale < 0:
            raise ValueError(f"cfg_scale must be >= 0, got {self.cfg_scale!r}.")
        if self.canvas not in (None, "nap"):
            raise ValueError(
                f"canvas={self.canvas!r} is unknown; use None (plain) or 'nap' (structured, Eq. 5)."
            )
        if self.summary not in ("after", "concurrent"):
            raise ValueError(f"summary={self.summary!r} is unknown; use 'after' or 'concurrent'.")
        if self.path_isolation not in (False, True, "masked"):
            raise ValueError(
                f"path_isolation={self.path_isolation!r} is unknown; use False (full attention), True (isolated "
                "paths, decoded as rows sharing the prompt cache) or 'masked' (the whole canvas under the isolated "
                "mask: the slow exact reference)."
            )
        if self.path_isolation and self.summary == "concurrent":
            raise ValueError(
                "path_isolation needs summary='after': the summary attends to the finished paths, so it cannot be "
                "decoded concurrently with them. Pass summary='after' (the default)."
            )
        if not isinstance(self.distribute_paths, bool):
            raise ValueError(f"distribute_paths must be True or False, got {self.distribute_paths!r}.")
        if self.distribute_paths and self.path_isolation is not True:
            raise ValueError(
                "distribute_paths=True needs path_isolation=True: only isolated paths can be decoded apart."
            )
