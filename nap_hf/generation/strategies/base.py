"""The small interface every decoding strategy implements, the shared LLaDA step budget, and the
registry. A strategy only answers "which positions now?"; the loop in `generation/mixin.py` owns the
forward pass, candidates, the trace and NFE.

A strategy also declares the facts the rest of the package asks about it (the canvas it decodes, whether it
uses blocks, whether it is stochastic under a config) and validates its own settings when it is built, as a
diffusers scheduler does; nothing outside a strategy's module names it."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch

from ..regions import Region
from ..scores import SCORES

__all__ = [
    "DecodeState",
    "StepPlan",
    "Strategy",
    "STRATEGIES",
    "register_strategy",
    "strategy_class",
    "uses_nap_canvas",
    "llada_num_transfer_tokens",
    "topk_mask",
]


@dataclass
class DecodeState:
    """What a strategy may look at. Tensors are (B, L) over the whole canvas."""

    x: torch.LongTensor  # the canvas, updated in place by the loop
    fillable: torch.BoolTensor  # positions the loop may ever commit (generation region + prompt masks)
    mask_token_id: int
    gen_start: int  # first canvas column of the generation region
    gen_length: int
    generator: torch.Generator | None
    config: Any  # DiffusionGenerationConfig
    step: int = 0  # decoding steps (forward passes of the conditional model) done so far
    # the canvas's spans (prompt, headers, slots or the generated region), in canvas coordinates
    regions: list[Region] = field(default_factory=list)
    filled: torch.BoolTensor | None = (
        None  # (B, L) positions committed as early-exit filler (no model choice)
    )

    @property
    def masked(self) -> torch.BoolTensor:
        return (self.x == self.mask_token_id) & self.fillable


@dataclass
class StepPlan:
    """One step's request. `rows`: positions that need a candidate token (the LM head runs there
    only). `commit`: positions to commit, when the choice does not depend on the model's scores;
    otherwise `None`, and `Strategy.select` chooses after scoring (with budget `k` per row, if set).
    `window`: the step's active window, (L,) canvas columns of every block the step may commit into (the
    same for every row, a superset of `rows`' columns); a KV cache recomputes these columns (dual) or
    everything from the first of them (prefix), and refreshes when the window moves (docs/caching.md).
    `None`: the strategy has no blocks. Strategies that keep state between `plan` and `select` subclass
    this dataclass and put it there."""

    rows: torch.BoolTensor
    commit: torch.BoolTensor | None = None
    k: torch.LongTensor | None = None
    window: torch.BoolTensor | None = None


class Strategy(ABC):
    """Base class. Subclasses set `name`, implement `plan`, and override `select` when the default
    (the `k` best scores per row) is not the rule. They declare what they need (`canvas`, `uses_blocks`,
    `fixed_steps`, ...) and extend `check_config` (calling `super()`) for their own settings; the constructor
    runs it, so a strategy that exists is valid for its config."""

    name: ClassVar[str] = ""
    #: the canvas it decodes: "plain" (prompt + `gen_length` masks), "nap" (always the structured canvas of
    #: docs/design.md §3) or "any" (plain, or the structured one with `canvas="nap"`)
    canvas: ClassVar[str] = "any"
    #: whether `block_length` cuts what it decodes into blocks: on the plain canvas for a "plain"/"any"
    #: strategy (on the structured one these decode the slots as one region), inside the slots for "nap"
    uses_blocks: ClassVar[bool] = False
    #: whether `steps` is a fixed budget split equally over the blocks (False: it adapts as it goes)
    fixed_steps: ClassVar[bool] = True
    #: whether, on the structured canvas without `block_length`, each slot is one of its blocks
    slots_are_blocks: ClassVar[bool] = False
    #: the block length of its reference setting (e.g. Fast-dLLM's 32), for evaluations that leave it unset
    reference_block_length: ClassVar[int | None] = None
    #: which score `select` ranks by (a key of `nap_hf.generation.scores.SCORES`), or None (no model score)
    score_kind: str | None = "confidence"
    #: whether `select` ranks by the config's `score` (then `score_kind` is set from it)
    ranks_by_score: ClassVar[bool] = False
    #: whether scores come from the tempered / filtered distribution (Dream) or the raw logits (LLaDA)
    tempered_scores: bool = False

    def __init__(self, config):
        self.config = config
        self.check_config()
        if self.ranks_by_score:
            self.score_kind = config.score

    # ------------------------------------------------------------------ declarations
    @classmethod
    def on_nap_canvas(cls, canvas: str | None) -> bool:
        """Whether this strategy, with `canvas=` (None or "nap"), decodes the structured canvas."""
        return cls.canvas == "nap" or (cls.canvas == "any" and canvas == "nap")

    @classmethod
    def takes_block_length(cls, canvas: str | None) -> bool:
        """Whether `block_length` applies to this strategy with `canvas=`."""
        return cls.uses_blocks and (cls.canvas == "nap" or not cls.on_nap_canvas(canvas))

    @classmethod
    def is_stochastic(cls, config: Any) -> bool:
        """Whether decoding under `config` (any object with the `DiffusionGenerationConfig` fields) draws
        random numbers, so that its results depend on the seed and on how prompts are batched. Here: sampled
        candidates (`temperature > 0`); strategies that draw positions extend it."""
        return float(getattr(config, "temperature", 0.0) or 0.0) > 0

    # ------------------------------------------------------------------ validation
    def check_config(self) -> None:
        """Raise a `ValueError` naming the fix when `self.config` asks for something this strategy cannot do:
        the canvas, `block_length` on the canvas it decodes, and `score` when `score_kind` follows it.
        Subclasses extend it for their own settings (call `super().check_config()`)."""
        cfg = self.config
        if getattr(cfg, "canvas", None) == "nap" and self.canvas == "plain":
            raise ValueError(
                f"strategy={self.name!r} runs on the plain canvas only: drop canvas='nap', or use one that decodes "
                f"the structured canvas ({_names(lambda c: c.canvas != 'plain')})."
            )
        if getattr(cfg, "block_length", None) is not None:
            self._check_blocks()
        if self.ranks_by_score and cfg.score not in SCORES:
            raise ValueError(f"score={cfg.score!r} is unknown; choose one of {sorted(SCORES)}.")

    def _check_blocks(self) -> None:
        cfg = self.config
        if not self.takes_block_length(cfg.canvas):
            if self.on_nap_canvas(cfg.canvas) and self.uses_blocks:
                raise ValueError(
                    f"block_length on the structured canvas applies to the strategies that decode it themselves "
                    f"({_names(lambda c: c.canvas == 'nap' and c.uses_blocks)}: blocks inside each path); "
                    f"strategy={self.name!r} with canvas='nap' decodes the slots as one region. Drop block_length."
                )
            raise ValueError(
                f"block_length is not part of strategy={self.name!r}'s schedule: drop it, or use a block-wise "
                f"strategy ({_names(lambda c: c.uses_blocks and c.canvas != 'nap')})."
            )
        if self.on_nap_canvas(
            cfg.canvas
        ):  # inside the slots: the canvas layout checks it divides path_length
            return
        if cfg.gen_length % cfg.block_length:
            raise ValueError(
                f"gen_length ({cfg.gen_length}) must be divisible by block_length ({cfg.block_length}); "
                "pick a block_length that divides it."
            )
        n_blocks = cfg.gen_length // cfg.block_length
        if self.fixed_steps and cfg.steps % n_blocks:
            raise ValueError(
                f"steps ({cfg.steps}) must be divisible by the number of blocks ({n_blocks} = gen_length / "
                "block_length); every block gets the same number of steps."
            )

    def check_cache(self) -> None:
        """Raise a `ValueError` naming the fix when this strategy, under its config, declares no active window
        (`StepPlan.window`), which a KV cache needs. Block-wise strategies override it."""
        raise ValueError(
            f"strategy={self.name!r} has no blocks, so it cannot use cache_implementation="
            f"{self.config.cache_implementation!r}: use a block-wise strategy with block_length=... "
            f"({_names(lambda c: c.uses_blocks)}), or cache_implementation=None."
        )

    # ------------------------------------------------------------------ decoding
    def begin(self, state: DecodeState) -> None:  # noqa: B027 (optional hook)
        """Called once before the first step."""

    @abstractmethod
    def plan(self, state: DecodeState) -> StepPlan | None:
        """The next step's request, or `None` when decoding is finished."""

    def select(self, state: DecodeState, plan: StepPlan, scores: torch.Tensor) -> torch.BoolTensor:
        """Choose the positions to commit. `scores` is (B, L), -inf where `plan.rows` is False."""
        return topk_mask(scores, plan.k)


STRATEGIES: dict[str, type[Strategy]] = {}


def register_strategy(cls: type[Strategy]) -> type[Strategy]:
    """Class decorator: make a strategy available as `generate(strategy=cls.name)`."""
    if not cls.name:
        raise ValueError(f"{cls.__name__} needs a non-empty `name` to be registered.")
    if cls.canvas not in ("plain", "nap", "any"):
        raise ValueError(f"{cls.__name__}.canvas must be 'plain', 'nap' or 'any', got {cls.canvas!r}.")
    STRATEGIES[cls.name] = cls
    return cls


def strategy_class(name: str) -> type[Strategy]:
    """The registered strategy `name`; a `ValueError` naming the valid ones otherwise."""
    try:
        return STRATEGIES[name]
    except (KeyError, TypeError):
        raise ValueError(f"strategy={name!r} is unknown; valid strategies: {sorted(STRATEGIES)}.") from None


def uses_nap_canvas(strategy: str | None, canvas: str | None) -> bool:
    """Whether `generate(strategy=..., canvas=...)` decodes the structured NAP canvas: the strategy's own
    declaration (`Strategy.on_nap_canvas`); an unknown name follows `canvas` (`generate` will refuse it)."""
    cls = STRATEGIES.get(strategy) if isinstance(strategy, str) else None
    return cls.on_nap_canvas(canvas) if cls is not None else canvas == "nap"


def _names(keep) -> str:
    """The registered strategies whose class passes `keep`, for error messages."""
    return ", ".join(repr(n) for n, c in sorted(STRATEGIES.items()) if keep(c)) or "none registered"


def llada_num_transfer_tokens(num_masked: torch.LongTensor, steps: int) -> torch.LongTensor:
    """LLaDA's per-step budget: `n` masked tokens over `steps` steps gives `n // steps` per step and one
    more in the first `n % steps` steps. (B,) -> (B, steps)."""
    base = (num_masked // steps)[:, None]
    rem = (num_masked % steps)[:, None]
    idx = torch.arange(steps, device=num_masked.device)[None, :]
    return base + (idx < rem).long()


def topk_mask(scores: torch.Tensor, k: torch.LongTensor) -> torch.BoolTensor:
    """Boolean (B, L) mask of the `k[b]` highest `scores[b]` (k may differ per row)."""
    kmax = int(k.max()) if k.numel() else 0
    out = torch.zeros_like(scores, dtype=torch.bool)
    if kmax == 0:
        return out
    idx = torch.topk(scores, kmax, dim=-1).indices  # (B, kmax), best first
    keep = torch.arange(kmax, device=scores.device)[None, :] < k[:, None]
    out.scatter_(1, idx, keep)
    return out
