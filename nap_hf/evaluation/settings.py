"""Evaluation settings -> ``generate`` keyword arguments: the one mapping shared by the evaluation runner
(:mod:`nap_hf.evaluation.runner`), the toy evaluation (:mod:`nap_hf.evaluation.toy`) and the lm-eval model
(:mod:`nap_hf.evaluation.lm_eval_model`).

Each caller states its settings as ``generate`` options (``strategy``, ``steps``, ``m``, ``gen_length``...);
:func:`plan_generate` fills what is left from the model's generation config, applies the canvas rules once,
and returns a :class:`GeneratePlan`: the exact keywords (what a run records), the canvas sizes, and a note
for every setting it had to adjust (so a caller can log each adjustment once, not once per batch):

* NAP canvas (a strategy that always decodes it, or ``canvas="nap"``: :func:`uses_nap_canvas`, see
  ``docs/design.md §3``): ``slots = m x
  path_length + summary_length`` positions are decoded; ``steps`` above ``slots`` is clamped to ``slots``
  (no forward pass would be idle), as ``generate`` itself does.
* Plain canvas with blocks: ``gen_length`` is rounded up to a multiple of ``block_length`` and ``steps`` to a
  multiple of the block count (every block gets the same number of steps, as in LLaDA's ``generate``;
  strategies whose steps adapt, ``Strategy.fixed_steps = False`` such as Fast-dLLM's, keep theirs).
* ``tokens_per_step=k`` instead of ``steps``: ``steps = slots // k`` (at least 1).

The seed and the tokenizer (which the NAP canvas needs for its headers) are per call:
:func:`call_kwargs`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from nap_hf.data.format import build_layout
from nap_hf.generation.config import DIFFUSION_FIELDS
from nap_hf.generation.strategies import STRATEGIES, uses_nap_canvas

__all__ = ["GeneratePlan", "plan_generate", "call_kwargs", "uses_nap_canvas"]


@dataclass(frozen=True)
class GeneratePlan:
    """The ``generate`` keywords of a run (``kwargs``: no seed, no tokenizer) and what they amount to.

    ``slots``: generated positions to decode (NAP: the path and summary slots; plain: ``gen_length``);
    ``canvas_length``: generated columns (NAP: slots plus headers; None when neither a tokenizer nor
    ``header_ids`` was at hand to lay the headers out); ``steps_requested``: the step budget asked for
    (None when it came from ``tokens_per_step``); ``notes``: one sentence per adjusted setting.
    """

    kwargs: dict[str, Any]
    structured: bool
    slots: int
    canvas_length: int | None
    steps_requested: int | None
    header_ids: list[list[int]] | None = None
    notes: tuple[str, ...] = ()

    @property
    def steps(self) -> int:
        """The effective step budget."""
        return int(self.kwargs["steps"])

    @property
    def tokens_per_step(self) -> float:
        return self.slots / self.steps

    def call_kwargs(self, tokenizer: Any = None, seed: int | None = None) -> dict[str, Any]:
        """:func:`call_kwargs` of this plan's keywords (its canvas known, defaults included)."""
        return call_kwargs(self.kwargs, tokenizer=tokenizer, seed=seed, structured=self.structured)


def call_kwargs(
    kwargs: Mapping[str, Any],
    *,
    tokenizer: Any = None,
    seed: int | None = None,
    structured: bool | None = None,
) -> dict[str, Any]:
    """``kwargs`` plus the per-call arguments: ``tokenizer`` on the NAP canvas (its headers are tokenized
    with it; ``structured`` None: the canvas that ``kwargs`` name), ``seed`` when given."""
    out = dict(kwargs)
    if structured is None:
        structured = uses_nap_canvas(out.get("strategy"), out.get("canvas"))
    if tokenizer is not None and structured:
        out["tokenizer"] = tokenizer
    if seed is not None:
        out["seed"] = int(seed)
    return out


def _positive(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"`{name}` must be a positive integer, got {value!r}.")
    return value


def plan_generate(
    options: Mapping[str, Any],
    *,
    tokenizer: Any = None,
    defaults: Any = None,
    tokens_per_step: int | None = None,
) -> GeneratePlan:
    """Turn evaluation settings into the exact ``generate`` keywords (see the module doc for the rules).

    Args:
        options: ``generate`` options set by the caller; they are passed on as given, except ``steps`` and
            ``gen_length``, which the canvas rules may adjust (``steps`` is always in the result).
        tokenizer: lays out the NAP canvas headers for ``canvas_length`` (optional).
        defaults: where unset options come from: a (diffusion) generation config, e.g. the checkpoint's;
            None: the library defaults (``DIFFUSION_FIELDS``).
        tokens_per_step: ``k``, instead of ``steps``: ``steps = slots // k``.
    """
    unknown = sorted(k for k in options if k not in DIFFUSION_FIELDS)
    if unknown:
        raise ValueError(f"unknown generate option(s) {unknown}; valid options: {sorted(DIFFUSION_FIELDS)}.")

    def get(name: str) -> Any:
        if name in options:
            return options[name]
        return (
            getattr(defaults, name, DIFFUSION_FIELDS[name])
            if defaults is not None
            else DIFFUSION_FIELDS[name]
        )

    if options.get("distribute_paths"):
        raise ValueError(
            "distribute_paths is not an evaluation option: evaluation processes hold different prompts, while "
            "distributed paths need every process to decode the same ones (docs/generation.md). Leave it unset; "
            "path_isolation=True alone decodes the paths as rows in each process."
        )
    if tokens_per_step is not None and "steps" in options:
        raise ValueError("pass either `steps` or `tokens_per_step`, not both.")
    kwargs, notes = dict(options), []
    requested = None if tokens_per_step is not None else _positive("steps", get("steps"))
    structured = uses_nap_canvas(get("strategy"), get("canvas"))
    header_ids = canvas_length = None
    if structured:
        m, path_length = _positive("m", get("m")), _positive("path_length", get("path_length"))
        summary_length = _positive("summary_length", get("summary_length"))
        slots = m * path_length + summary_length
        if tokenizer is not None or get("header_ids") is not None:
            layout = build_layout(tokenizer, m, path_length, summary_length, header_ids=get("header_ids"))
            header_ids, canvas_length = layout.header_ids, layout.length
        steps = slots // _positive("tokens_per_step", tokens_per_step) if requested is None else requested
        if steps > slots:
            notes.append(
                f"steps={steps} exceeds the {slots} slot positions of the canvas; clamped to {slots}."
            )
            steps = slots
    else:
        gen_length = _positive("gen_length", get("gen_length"))
        block = get("block_length")
        if block is not None:
            block = _positive("block_length", block)
            if gen_length % block:
                rounded = -(-gen_length // block) * block
                notes.append(
                    f"gen_length={gen_length} rounded up to {rounded}, a multiple of block_length={block}."
                )
                gen_length = kwargs["gen_length"] = rounded
        slots = canvas_length = gen_length
        steps = (
            gen_length // _positive("tokens_per_step", tokens_per_step) if requested is None else requested
        )
        n_blocks = gen_length // block if block is not None else 1
        strategy = STRATEGIES.get(get("strategy"))
        if (strategy is None or strategy.fixed_steps) and steps % n_blocks:
            rounded = max(1, round(steps / n_blocks)) * n_blocks
            notes.append(f"steps={steps} rounded to {rounded}, a multiple of the {n_blocks} blocks.")
            steps = rounded
    kwargs["steps"] = max(1, steps)
    return GeneratePlan(kwargs, structured, slots, canvas_length, requested, header_ids, tuple(notes))
