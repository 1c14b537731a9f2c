"""The evaluation runner: one model, one task, a sweep of decoding strategies x step budgets (x m), with every
setting that moves the numbers recorded next to the numbers.

    from nap_hf.evaluation import run_eval

    summary = run_eval(model, tokenizer, "gsm8k", strategies=["parallel_forced", "confidence"],
                       steps_list=[256, 1024], m=3, out_dir="outputs/eval/llada", batch_size=8)

What a run writes under ``out_dir``:

* ``records/<run>.jsonl``: one JSON line per example (file order), a :class:`Record` (its fields are the
  keys): the run's identifying fields, the example id, prompt text, prediction text (the decoded generation
  region), parsed answer, gold, correct, Global-ARness@1 over all filled positions of the row, NFE and
  seconds. ``<run>`` is ``<task>__<strategy>__steps<S>`` (plus ``__m<m>`` on the structured canvas).
* ``summary.json``: the settings (:class:`EvalSettings`) and, per run, its :class:`RunPlan` (the exact
  ``generate`` keywords, the prompt style, the fingerprint, the canvas sizes and tokens per step) and its
  results: accuracy, mean ARness, mean NFE and timings. Written atomically.
* ``traces/<run>.json``: the decoding trace and canvas regions of the first ``save_traces`` examples
  (Figure 1, :func:`nap_hf.plotting.plot_decoding_dynamics`).

Decisions (recorded in ``summary.json``; change them with the :class:`EvalSettings` fields):

* Prompts: zero-shot, the model's chat template with the generation prompt. The NAP canvas (parallel-forced,
  or any strategy with ``canvas="nap"``, written ``"<strategy>:nap"``) and every fine-tuned model (``training``
  ``"nap"`` / ``"longcot"``) get the question alone, exactly as in training (docs/design.md §6); base models
  on the plain canvas get the question, a newline and the task's chain-of-thought instruction
  (:data:`~nap_hf.evaluation.BASELINE_COT_INSTRUCTION`). ``prompt_style`` forces one or the other.
* Lengths: the structured canvas has ``m`` paths of ``path_length`` (default ``path_budget // m``, the paper's
  990 / m) and a ``summary_length`` summary; plain-canvas baselines generate ``gen_length`` positions,
  by default the NAP canvas length (headers included) for the first ``m``, so both decode the same canvas.
* Blocks: LLaDA baselines are block-wise with ``block_length`` 32 (the paper does so for AO and random),
  Dream baselines have no blocks, Fast-dLLM's rules use blocks of 32 for both (their
  ``Strategy.reference_block_length``);
  ``block_length=0`` turns blocks off, a positive value sets them. A block-wise ``gen_length`` is rounded up
  to a multiple of the block length, and the step budget to the nearest multiple of the number of blocks
  (every block gets the same number of steps, as in LLaDA's ``generate``); the effective steps are recorded.
* Answers: from the summary slot only on the NAP canvas; elsewhere from the text after ``</think>`` when the
  output has one, else the whole text (:func:`~nap_hf.evaluation.extract_answer`).
* Determinism: examples are cut into batches in file order; batch ``b`` draws its random numbers from
  ``seed`` and its first example index. So results do not depend on the number of processes or on
  restarts, and greedy decoding gives the same results at every batch size (up to floating-point ties;
  use float64 to rule them out). Stochastic runs (:func:`is_stochastic`: ``random`` order,
  ``temperature > 0``, Dream's ``origin``) depend on the batch size, which is then part of the run's
  fingerprint.

The parts (``run_eval`` composes them): :class:`EvalSettings` (what the user sets) -> one :class:`RunSpec`
per cell of the sweep -> its frozen :class:`RunPlan` (:meth:`RunPlan.from_settings`: keywords, prompt
style, fingerprint) -> :func:`decode_batch` per batch (pure: one ``generate`` call, answers scored, a
:class:`Record` per example) -> the run's :class:`~nap_hf.io.JsonlStore` (appended, resumed, merged).

Data parallel: pass an ``accelerate`` ``Accelerator`` / ``PartialState`` (``accelerate launch``). Process r
takes batches r, r + world, ...; each writes ``records/<run>.rank<r>.jsonl``; after ``wait_for_everyone``
the main process merges the shards in example order into ``records/<run>.jsonl``, identical to a
one-process run except for the timings.

Resuming (the records of a run are a :class:`nap_hf.io.JsonlStore`): lines are appended one by one (write,
flush, fsync). A restarted run reads what is there (a truncated last line is dropped), skips finished
examples and runs the rest; records from different settings (another fingerprint) are refused rather than
mixed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import math
import os
import time
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType, SimpleNamespace
from typing import Any

import torch

from nap_hf.data.format import DEFAULT_FORMAT, build_layout
from nap_hf.evaluation.answers import extract_answer, is_correct
from nap_hf.evaluation.settings import call_kwargs, plan_generate, uses_nap_canvas
from nap_hf.evaluation.tasks import TASKS, Example, load_task
from nap_hf.evaluation.tasks import _spec as _task_spec
from nap_hf.generation.config import DIFFUSION_FIELDS
from nap_hf.generation.strategies import STRATEGIES, strategy_class
from nap_hf.hub import collect_versions
from nap_hf.io import JsonlStore, write_text_atomic
from nap_hf.io import read_jsonl as read_records
from nap_hf.metrics.arness import global_arness

__all__ = [
    "DEFAULT_STRATEGIES",
    "DEFAULT_STEPS",
    "EvalSettings",
    "RunSpec",
    "RunPlan",
    "Record",
    "DecodedBatch",
    "decode_batch",
    "is_stochastic",
    "left_pad",
    "parse_strategy",
    "run_eval",
    "read_records",
    "load_summary",
    "model_family",
    "RESULT_FIELDS",
]

SUMMARY_FORMAT = "nap_hf.eval/1"
# the default sweep (the paper's Table 1 and 3 decodings): names, as a command line would give them
DEFAULT_STRATEGIES: tuple[str, ...] = ("parallel_forced", "confidence", "random", "ar")
DEFAULT_STEPS: tuple[int, ...] = (256, 336, 512, 1024)
LLADA_BLOCK_LENGTH = 32
"""Block length of LLaDA's block-wise baselines (the paper, LLaDA's GSM8K setting) and of Fast-dLLM."""

# Settings that do not change any number of a greedy run (they are recorded, never fingerprinted).
_EXECUTION_FIELDS = frozenset(
    {
        "model_label",
        "training",
        "limit",
        "strategies",
        "steps",
        "m",
        "batch_size",
        "device",
        "num_processes",
        "save_traces",
        "versions",
        "num_examples",
    }
)


# ------------------------------------------------------------------------------------------------ settings


@dataclass
class EvalSettings:
    """Everything that moves the numbers of an evaluation, recorded in ``summary.json``.

    Model: ``model`` (path / hub id as given), ``model_label`` (name in tables), ``family`` (``"llada"``,
    ``"dream"`` or ``"other"``: from ``config.model_type``), ``training`` (``"base"``, ``"longcot"`` or
    ``"nap"``: where the numbers go in the paper's tables, and the prompt style), ``dtype``.

    Task: ``task`` (a key of :data:`~nap_hf.evaluation.TASKS`), ``source`` (see
    :func:`~nap_hf.evaluation.load_task`), ``limit`` (first N examples), ``task_seed`` (GPQA option order).

    Sweep: ``strategies`` (``generate`` strategies; ``"<strategy>:nap"`` decodes on the structured canvas,
    ``parallel_forced`` always does), ``steps`` (total step budgets), ``m`` (path counts of structured runs).

    Canvas: ``path_length`` (None: ``path_budget // m``), ``path_budget`` (990), ``summary_length`` (32),
    ``summary`` (``"after"`` / ``"concurrent"``), ``gen_length`` (plain canvas; None: the NAP canvas length
    for ``m[0]``), ``block_length`` (None: auto, see the module doc; 0: no blocks).

    Strategy options: ``temperature`` (0: greedy), ``score``, ``threshold``, ``alg``, ``cfg_scale``,
    ``suppress_eos`` (LLaDA's ``logits_eos_inf``, plain canvas only: EOS is the filler of the NAP slots).

    Prompt: ``prompt_style`` (``"auto"``, ``"question"``, ``"cot"``), ``instruction`` (None: the task's),
    ``chat_template`` (True; the template's SHA-256 and the special token ids are recorded),
    ``system_prompt`` (None), ``few_shot`` (0; only zero-shot is implemented).

    Answers: ``fallback_last_number`` (GSM8K: the last number when no boxed / final answer is stated).

    Execution: ``seed``, ``batch_size``, ``device``, ``num_processes``, ``save_traces``, ``versions``.
    """

    # dataclass fields with defaults, one per line (alike in shape to NAPFormat's fields; nothing shared)
    model: str = ""
    model_label: str = ""
    family: str = "other"
    training: str = "base"
    dtype: str = ""
    task: str = "gsm8k"
    source: str | None = None
    limit: int | None = None
    num_examples: int | None = None
    task_seed: int = 0
    strategies: list[str] = field(default_factory=lambda: list(DEFAULT_STRATEGIES))
    steps: list[int] = field(default_factory=lambda: list(DEFAULT_STEPS))
    m: list[int] = field(default_factory=lambda: [3])
    path_length: int | None = None
    path_budget: int = 990
    summary_length: int = 32
    summary: str = "after"
    gen_length: int | None = None
    block_length: int | None = None
    temperature: float = 0.0
    score: str = "confidence"
    threshold: float = 0.9
    alg: str = "maskgit_plus"
    cfg_scale: float = 0.0
    suppress_eos: bool = False
    prompt_style: str = "auto"
    instruction: str | None = None
    chat_template: bool = True
    chat_template_sha256: str | None = None
    special_tokens: dict[str, Any] = field(default_factory=dict)
    system_prompt: str | None = None
    few_shot: int = 0
    fallback_last_number: bool = True
    seed: int = 0
    batch_size: int = 1
    device: str = ""
    num_processes: int = 1
    save_traces: int = 1
    versions: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EvalSettings:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})

    def validate(self) -> None:
        if self.training not in ("base", "longcot", "nap"):
            raise ValueError(f"training must be 'base', 'longcot' or 'nap', got {self.training!r}.")
        if self.prompt_style not in ("auto", "question", "cot"):
            raise ValueError(f"prompt_style must be 'auto', 'question' or 'cot', got {self.prompt_style!r}.")
        if self.few_shot != 0:
            raise ValueError(
                "only zero-shot prompts are implemented (few_shot=0), as in the paper's protocol."
            )
        if not self.strategies:
            raise ValueError("no strategy given.")
        for s in self.strategies:
            parse_strategy(s)
        if not self.steps or any(isinstance(s, bool) or not isinstance(s, int) or s < 1 for s in self.steps):
            raise ValueError(f"steps must be positive integers, got {self.steps!r}.")
        if not self.m or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in self.m):
            raise ValueError(f"m must be positive integers, got {self.m!r}.")
        if isinstance(self.batch_size, bool) or not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {self.batch_size!r}.")
        if self.block_length is not None and self.block_length < 0:
            raise ValueError(
                f"block_length must be None (auto), 0 (no blocks) or positive, got {self.block_length}."
            )
        if self.gen_length is not None and self.gen_length < 1:
            raise ValueError(f"gen_length must be positive, got {self.gen_length}.")
        for m in self.m:
            if self.path_length is None and self.path_budget // m < 1:
                raise ValueError(f"path_budget ({self.path_budget}) is smaller than m ({m}).")
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}.")


def parse_strategy(spec: str) -> tuple[str, str | None]:
    """``"confidence"`` -> ``("confidence", None)``; ``"confidence:nap"`` -> ``("confidence", "nap")``; a
    strategy that always decodes the structured canvas (``Strategy.canvas == "nap"``) -> ``(name, "nap")``."""
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError(f"a strategy must be a non-empty string, got {spec!r}.")
    name, _, canvas = spec.strip().partition(":")
    if canvas not in ("", "nap"):
        raise ValueError(f"strategy {spec!r}: the only canvas suffix is ':nap' (the structured canvas).")
    if name not in STRATEGIES:
        raise ValueError(
            f"strategy {spec!r}: unknown; valid strategies: {sorted(STRATEGIES)} (optionally ':nap')."
        )
    cls = STRATEGIES[name]
    if canvas and cls.canvas == "plain":
        others = sorted(n for n, c in STRATEGIES.items() if c.canvas == "any")
        raise ValueError(
            f"strategy {name!r} runs on the plain canvas only; drop ':nap', or use one of {others} with ':nap'."
        )
    return name, ("nap" if cls.on_nap_canvas(canvas or None) else None)


@dataclass(frozen=True)
class RunSpec:
    """One cell of the sweep: a strategy (``strategy``, on ``canvas``), a step budget, and ``m`` on the
    structured canvas (None on the plain one)."""

    task: str
    strategy: str
    canvas: str | None
    steps: int
    m: int | None

    @property
    def name(self) -> str:
        """The strategy as written on the command line (``confidence:nap``; no suffix for a strategy that
        always decodes the structured canvas)."""
        cls = STRATEGIES.get(self.strategy)
        if self.canvas == "nap" and (cls is None or cls.canvas != "nap"):
            return f"{self.strategy}:nap"
        return self.strategy

    @property
    def key(self) -> str:
        """File-safe run key: ``gsm8k__parallel_forced__steps256__m3``."""
        key = f"{self.task}__{self.name.replace(':', '-')}__steps{self.steps}"
        return key + (f"__m{self.m}" if self.m is not None else "")


def model_family(model: Any) -> str:
    """``"llada"``, ``"dream"`` or ``"other"``, from ``model.config.model_type``."""
    kind = str(getattr(getattr(model, "config", None), "model_type", "") or "").lower()
    if kind.startswith("llada"):
        return "llada"
    if kind.startswith("dream"):
        return "dream"
    return "other"


def is_stochastic(generate_kwargs: Mapping[str, Any]) -> bool:
    """Whether decoding with these ``generate`` keywords draws random numbers, so that its results depend on
    the seed and on how the examples are cut into batches: the strategy's own answer
    (``Strategy.is_stochastic``: sampled tokens, ``temperature > 0``, and whatever the strategy draws, e.g. a
    random order or Dream's ``origin`` rule). Unset keywords take the library defaults (``DIFFUSION_FIELDS``).

    The one answer to "is this run random?": the runner puts the batch size into the fingerprint of such a
    run, and the toy evaluation seeds it."""
    config = SimpleNamespace(**{**DIFFUSION_FIELDS, **generate_kwargs})
    return bool(strategy_class(config.strategy).is_stochastic(config))


def _prompt_style(settings: EvalSettings, run: RunSpec) -> str:
    if settings.prompt_style != "auto":
        return settings.prompt_style
    return "cot" if (run.canvas is None and settings.training == "base") else "question"


def _path_length(settings: EvalSettings, m: int) -> int:
    return settings.path_length if settings.path_length is not None else settings.path_budget // m


def _block_length(settings: EvalSettings, run: RunSpec) -> int | None:
    """The plain canvas's blocks: the settings' (0: none), else the strategy's reference block length
    (Fast-dLLM's), else LLaDA's for LLaDA; None for a strategy without blocks or on the structured canvas."""
    cls = strategy_class(run.strategy)
    if run.canvas is not None or not cls.takes_block_length(None):
        return None
    if settings.block_length is not None:
        return settings.block_length or None
    if cls.reference_block_length is not None:
        return cls.reference_block_length
    return LLADA_BLOCK_LENGTH if settings.family == "llada" else None


def _generate_options(settings: EvalSettings, run: RunSpec, tokenizer: Any) -> dict[str, Any]:
    """The ``generate`` options of a run as the settings state them (before the canvas rules)."""
    options: dict[str, Any] = {
        "strategy": run.strategy,
        "temperature": float(settings.temperature),
        "score": settings.score,
        "threshold": float(settings.threshold),
        "alg": settings.alg,
        "cfg_scale": float(settings.cfg_scale),
    }
    if run.canvas == "nap":
        options.update(
            canvas="nap",
            m=run.m,
            path_length=_path_length(settings, run.m),
            summary_length=settings.summary_length,
            summary=settings.summary,
            block_length=None,
            logits_eos_inf=False,
        )
    else:
        gen_length = settings.gen_length
        if gen_length is None:
            m0 = settings.m[0]
            gen_length = build_layout(
                tokenizer, m0, _path_length(settings, m0), settings.summary_length, DEFAULT_FORMAT
            ).length
        options.update(
            gen_length=gen_length,
            block_length=_block_length(settings, run),
            logits_eos_inf=bool(settings.suppress_eos),
        )
    return {**options, "steps": run.steps}


def _fingerprint(settings: EvalSettings, run: RunSpec, generate_kwargs: Mapping[str, Any], style: str) -> str:
    data = {k: v for k, v in settings.to_dict().items() if k not in _EXECUTION_FIELDS}
    data.update(run=dataclasses.asdict(run), generate_kwargs=dict(generate_kwargs), prompt_style=style)
    if is_stochastic(generate_kwargs):
        data["batch_size"] = settings.batch_size
    blob = json.dumps(data, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def _require_int(name: str, value: Any, minimum: int, hint: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"RunPlan: `{name}` must be an integer >= {minimum}, got {value!r}; {hint}")


_FROM_SETTINGS = "build plans with RunPlan.from_settings(settings, run, tokenizer)."


@dataclass(frozen=True)
class RunPlan:
    """Everything one run of the sweep decodes with, fixed before its first batch (frozen; its
    ``generate_kwargs`` are a read-only mapping). Build it with :meth:`from_settings`; ``summary.json``
    records :meth:`to_dict` for every run, and :func:`decode_batch` needs nothing else from the settings.

    Attributes:
        run: the cell of the sweep (task, strategy, canvas, requested steps, m).
        generate_kwargs: the exact ``generate`` keywords (no seed, no tokenizer: those are per call), from
            :func:`~nap_hf.evaluation.settings.plan_generate`.
        prompt_style: ``"question"`` (the question alone) or ``"cot"`` (question + instruction).
        fingerprint: hash of every setting that moves the numbers; records of another fingerprint are
            refused on resume.
        steps_effective: the step budget after the canvas rules (``generate_kwargs["steps"]``).
        slots: generated positions to decode; ``canvas_length``: generated columns (headers included).
        tokens_per_step: ``slots / steps_effective``.
        header_ids: the NAP canvas headers' token ids (None on the plain canvas).
        model_label, answer_task, fallback_last_number: what a record is labelled and scored with.
        seed: the run's seed; batch ``b`` draws from ``seed`` and its first example index.
    """

    run: RunSpec
    generate_kwargs: Mapping[str, Any] = field(hash=False)  # a read-only copy; plans hash by the rest
    prompt_style: str
    fingerprint: str
    steps_effective: int
    slots: int
    canvas_length: int | None
    tokens_per_step: float
    answer_task: str
    header_ids: tuple[tuple[int, ...], ...] | None = None
    model_label: str = "model"
    fallback_last_number: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.run, RunSpec):
            raise TypeError(
                f"RunPlan: `run` must be a RunSpec, got {type(self.run).__name__}; {_FROM_SETTINGS}"
            )
        if not isinstance(self.generate_kwargs, Mapping):
            raise TypeError(f"RunPlan: `generate_kwargs` must be a mapping; {_FROM_SETTINGS}")
        kwargs = MappingProxyType(dict(self.generate_kwargs))
        object.__setattr__(self, "generate_kwargs", kwargs)
        if self.header_ids is not None:
            object.__setattr__(self, "header_ids", tuple(tuple(int(t) for t in h) for h in self.header_ids))
        if kwargs.get("strategy") != self.run.strategy:
            raise ValueError(
                f"RunPlan: generate_kwargs['strategy'] is {kwargs.get('strategy')!r} but run.strategy is "
                f"{self.run.strategy!r}; {_FROM_SETTINGS}"
            )
        if uses_nap_canvas(kwargs.get("strategy"), kwargs.get("canvas")) != (self.run.canvas == "nap"):
            raise ValueError(
                f"RunPlan: generate_kwargs decode the "
                f"{'plain' if self.run.canvas == 'nap' else 'NAP'} canvas "
                f"but run.canvas is {self.run.canvas!r}; {_FROM_SETTINGS}"
            )
        if self.prompt_style not in ("question", "cot"):
            raise ValueError(
                f"RunPlan: `prompt_style` must be 'question' or 'cot', got {self.prompt_style!r}."
            )
        if not isinstance(self.fingerprint, str) or not self.fingerprint:
            raise ValueError(f"RunPlan: `fingerprint` must be a non-empty string; {_FROM_SETTINGS}")
        _require_int("steps_effective", self.steps_effective, 1, "the step budget after the canvas rules.")
        if kwargs.get("steps") != self.steps_effective:
            raise ValueError(
                f"RunPlan: `steps_effective` ({self.steps_effective}) differs from generate_kwargs['steps'] "
                f"({kwargs.get('steps')!r}); {_FROM_SETTINGS}"
            )
        _require_int("slots", self.slots, 1, "the number of generated positions to decode.")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise ValueError(f"RunPlan: `seed` must be an integer (EvalSettings.seed), got {self.seed!r}.")
        answer_tasks = sorted({spec.answer_task for spec in TASKS.values()})
        if self.answer_task not in answer_tasks:
            raise ValueError(
                f"RunPlan: `answer_task` must be one of {answer_tasks}, got {self.answer_task!r}."
            )

    @classmethod
    def from_settings(cls, settings: EvalSettings, run: RunSpec, tokenizer: Any) -> RunPlan:
        """The plan of ``run`` under ``settings``: the canvas sizes, blocks and step rules of the module doc,
        applied by :func:`~nap_hf.evaluation.settings.plan_generate`; ``tokenizer`` lays out the headers."""
        plan = plan_generate(_generate_options(settings, run, tokenizer), tokenizer=tokenizer)
        style = _prompt_style(settings, run)
        return cls(
            run=run,
            generate_kwargs=plan.kwargs,
            prompt_style=style,
            fingerprint=_fingerprint(settings, run, plan.kwargs, style),
            steps_effective=plan.steps,
            slots=plan.slots,
            canvas_length=plan.canvas_length,
            tokens_per_step=plan.tokens_per_step,
            answer_task=_task_spec(settings.task).answer_task,
            header_ids=plan.header_ids if plan.structured else None,
            model_label=settings.model_label,
            fallback_last_number=settings.fallback_last_number,
            seed=settings.seed,
        )

    @property
    def stochastic(self) -> bool:
        """:func:`is_stochastic` of the keywords."""
        return is_stochastic(self.generate_kwargs)

    def to_dict(self) -> dict[str, Any]:
        """The run's entry in ``summary.json`` (before its results): identity, prompt style, fingerprint, the
        exact keywords and the canvas sizes."""
        run = self.run
        return {
            "task": run.task,
            "strategy": run.name,
            "decoding": run.strategy,
            "canvas": run.canvas,
            "steps": run.steps,
            "m": run.m,
            "prompt_style": self.prompt_style,
            "fingerprint": self.fingerprint,
            "generate_kwargs": dict(self.generate_kwargs),
            "steps_requested": run.steps,
            "canvas_length": self.canvas_length,
            "slots": self.slots,
            "steps_effective": self.steps_effective,
            "tokens_per_step": self.tokens_per_step,
            "header_ids": [list(h) for h in self.header_ids] if self.header_ids is not None else None,
        }


_RESULT = {"result": True}


@dataclass(frozen=True)
class Record:
    """One example's line in ``records/<run>.jsonl``: the fields, in this order, are the line's JSON keys.

    The run's identity (``task``, ``model`` label, ``strategy`` as written, ``steps`` requested, ``m``,
    ``fingerprint``), then the results, identical across batch sizes and processes under greedy decoding
    (:data:`RESULT_FIELDS`: ``id``, file ``index``, ``prompt`` text, ``prediction`` (the decoded generation
    region), NAP ``paths`` and ``summary`` (None on the plain canvas), parsed ``answer``, ``gold``,
    ``correct``, Global-ARness@1 ``arness`` over all filled positions (None when undefined), ``nfe``), and
    ``seconds`` per example (a timing, never identical)."""

    task: str
    model: str
    strategy: str
    steps: int
    m: int | None
    fingerprint: str
    id: str = field(metadata=_RESULT)
    index: int = field(metadata=_RESULT)
    prompt: str = field(metadata=_RESULT)
    prediction: str = field(metadata=_RESULT)
    paths: list[str] | None = field(metadata=_RESULT)
    summary: str | None = field(metadata=_RESULT)
    answer: str | None = field(metadata=_RESULT)
    gold: str = field(metadata=_RESULT)
    correct: bool = field(metadata=_RESULT)
    arness: float | None = field(metadata=_RESULT)
    nfe: int = field(metadata=_RESULT)
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        """The JSON line's object (keys in field order)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Record:
        """A record read back from a JSON line (:func:`read_records`); a line with other keys is refused."""
        names = [f.name for f in dataclasses.fields(cls)]
        missing, unknown = [n for n in names if n not in data], sorted(set(data) - set(names))
        if missing or unknown:
            raise ValueError(
                f"not an evaluation record: missing {missing}, unknown {unknown}; "
                f"a record has the keys {names}."
            )
        return cls(**{n: data[n] for n in names})


RESULT_FIELDS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(Record) if f.metadata.get("result"))
"""Record fields that hold results (identical across batch sizes / processes under greedy decoding);
``seconds`` is a timing and never identical."""


# ------------------------------------------------------------------------------------------------- prompts


def build_prompt(
    tokenizer: Any, example: Example, style: str, instruction: str, settings: EvalSettings
) -> list[int]:
    """Prompt ids of one example: ``question`` (style ``"question"``) or ``question + "\\n" + instruction``
    (``"cot"``), as the user turn of the chat template with the generation prompt (as in training)."""
    content = example.question if style == "question" else f"{example.question}\n{instruction}"
    if settings.chat_template:
        if getattr(tokenizer, "chat_template", None) is None:
            raise ValueError(
                "the tokenizer has no chat template; pass chat_template=False to prompt with the raw text."
            )
        messages = []
        if settings.system_prompt:
            messages.append({"role": "system", "content": settings.system_prompt})
        messages.append({"role": "user", "content": content})
        out = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
        if isinstance(out, dict) or hasattr(out, "keys"):
            out = out["input_ids"]
        return [int(i) for i in out]
    return [int(i) for i in tokenizer(content)["input_ids"]]


# ------------------------------------------------------------------------------------------------ file I/O


def _atomic_write_text(path: Path, text: str) -> None:
    write_text_atomic(path, text, fsync=True)


def _clean(value: Any) -> Any:
    """JSON-safe: NaN / inf floats become None."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def load_summary(out_dir: str | os.PathLike) -> dict[str, Any] | None:
    """``out_dir/summary.json`` as a dict, or None."""
    path = Path(out_dir) / "summary.json"
    if not path.is_file():
        return None
    with open(path, encoding="utf-8") as f:
        return json.load(f)


# ------------------------------------------------------------------------------------------------ decoding


class _Single:
    """Stands in for an accelerate state in a one-process run."""

    process_index = 0
    num_processes = 1
    is_main_process = True

    def wait_for_everyone(self) -> None:
        return None


def _batch_seed(seed: int, start: int) -> int:
    return (int(seed) * 1_000_003 + int(start)) % (2**62)


def left_pad(rows: Sequence[list[int]], pad_id: int, device: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-pad token-id rows to one batch: `(input_ids, attention_mask)`, both (B, max length), on `device`
    (shared by the runner and the lm-eval class)."""
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, width - len(r) :] = torch.tensor(r, dtype=torch.long)
        mask[i, width - len(r) :] = 1
    return ids.to(device), mask.to(device)


def _pad_id(tokenizer: Any) -> int:
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    if pad_id is None:
        raise ValueError("the tokenizer has neither a pad nor an EOS token to left-pad the prompts with.")
    return int(pad_id)


def _model_device(model: Any) -> torch.device:
    param = next(model.parameters(), None)
    return param.device if param is not None else torch.device("cpu")


def _region_dict(r: Any) -> dict[str, Any]:
    return {"kind": r.kind, "start": r.start, "end": r.end, "index": r.index, "label": r.label}


@dataclass(frozen=True)
class DecodedBatch:
    """What :func:`decode_batch` returns: one :class:`Record` per example of the batch (batch order), the
    decoding traces of the examples asked for (``id``, ``index``, ``prompt_length``, ``trace``, ``regions``),
    and the batch's NFE."""

    records: list[Record]
    traces: list[dict[str, Any]]
    nfe: int


def decode_batch(
    model: Any,
    tokenizer: Any,
    plan: RunPlan,
    examples: Sequence[Example],
    prompts: Sequence[list[int]],
    batch: Sequence[int],
    *,
    traces: Collection[int] = (),
    clock: Callable[[], float] = time.perf_counter,
) -> DecodedBatch:
    """Decode one batch of a run: the prompts ``prompts[i]`` of the examples ``examples[i]`` for ``i`` in
    ``batch`` (indices in file order), left-padded, in one ``generate`` call seeded by the batch's first index
    (so a batch decodes the same in any process and after any restart), then answers extracted and scored.

    Pure: it reads and writes no file and keeps no state; the same inputs give the same records. ``seconds``
    (per example, the call's wall time over the batch size, CUDA synchronised) comes from ``clock``.
    ``traces``: the example indices whose decoding trace to return.
    """
    if not batch:
        raise ValueError("decode_batch: `batch` is empty; pass the example indices to decode.")
    device = _model_device(model)
    input_ids, attention_mask = left_pad([prompts[i] for i in batch], _pad_id(tokenizer), device)  # (B, P)
    kw = call_kwargs(plan.generate_kwargs, tokenizer=tokenizer, seed=_batch_seed(plan.seed, batch[0]))
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    t0 = clock()
    out = model.generate(input_ids, attention_mask=attention_mask, return_dict_in_generate=True, **kw)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = (clock() - t0) / len(batch)
    P = input_ids.shape[1]
    arness = global_arness(out.trace, k=1).per_row
    run, records, kept = plan.run, [], []
    for row, i in enumerate(batch):
        ex = examples[i]
        prediction = tokenizer.decode(out.sequences[row, P:].tolist(), skip_special_tokens=True)
        paths, summary = (out.paths[row], out.summary[row]) if run.canvas == "nap" else (None, None)
        answer = _answer(plan, prediction, summary)
        records.append(
            Record(
                task=run.task,
                model=plan.model_label,
                strategy=run.name,
                steps=run.steps,
                m=run.m,
                fingerprint=plan.fingerprint,
                id=ex.id,
                index=i,
                prompt=tokenizer.decode(prompts[i]),
                prediction=prediction,
                paths=paths,
                summary=summary,
                answer=answer,
                gold=ex.gold,
                correct=bool(is_correct(answer, ex.gold, task=plan.answer_task)),
                arness=_clean(arness[row]),
                nfe=int(out.nfe),
                seconds=seconds,
            )
        )
        if i in traces:
            trace, regions = out.trace[row].tolist(), [_region_dict(r) for r in out.regions[row]]
            kept.append({"id": ex.id, "index": i, "prompt_length": P, "trace": trace, "regions": regions})
    return DecodedBatch(records, kept, int(out.nfe))


def _answer(plan: RunPlan, prediction: str, summary: str | None) -> str | None:
    """From the summary slot on the NAP canvas; elsewhere from the text (after ``</think>`` if any)."""
    fallback = plan.fallback_last_number
    if plan.run.canvas == "nap":
        return extract_answer(
            summary, plan.answer_task, nap=False, longcot=False, fallback_last_number=fallback
        )
    return extract_answer(prediction, plan.answer_task, fallback_last_number=fallback)


# ------------------------------------------------------------------------------------------------ the sweep


def _summarise(records: list[dict[str, Any]]) -> dict[str, Any]:
    n = len(records)
    if n == 0:
        return {"n": 0, "correct": 0, "accuracy": None, "arness": None, "nfe": None, "no_answer": 0}
    arness = [r["arness"] for r in records if r.get("arness") is not None]
    correct = sum(bool(r["correct"]) for r in records)
    return {
        "n": n,
        "correct": correct,
        "accuracy": 100.0 * correct / n,
        "arness": math.fsum(arness) / len(arness) if arness else None,
        "nfe": math.fsum(r["nfe"] for r in records) / n,
        "no_answer": sum(r.get("answer") is None for r in records),
        "seconds": math.fsum(r.get("seconds", 0.0) for r in records),
        "seconds_per_example": math.fsum(r.get("seconds", 0.0) for r in records) / n,
    }


def run_eval(
    model: Any,
    tokenizer: Any,
    /,
    task: str = "gsm8k",
    strategies: Iterable[str] = DEFAULT_STRATEGIES,
    steps_list: Iterable[int] = DEFAULT_STEPS,
    m: int | Iterable[int] = 3,
    *,
    out_dir: str | os.PathLike,
    examples: Sequence[Example] | None = None,
    accelerator: Any = None,
    progress: bool = True,
    **settings: Any,
) -> dict[str, Any]:
    """Evaluate ``model`` on ``task`` for every strategy x step budget (x m on the structured canvas).

    Args:
        model: a LLaDA / Dream model (any model with the diffusion ``generate``), on its device, in eval mode.
        tokenizer: its tokenizer (chat template used; headers of the structured canvas tokenized with it).
        task: a key of :data:`~nap_hf.evaluation.TASKS`.
        strategies: ``generate`` strategies; ``"<strategy>:nap"`` decodes on the structured canvas.
        steps_list: total step budgets.
        m: path count(s) for the structured canvas.
        out_dir: where records, traces and ``summary.json`` go (see the module doc).
        examples: the examples (default: ``load_task(task, source, limit=limit, seed=task_seed)``).
        accelerator: an ``accelerate`` ``Accelerator`` / ``PartialState`` for data-parallel runs.
        progress: show a progress bar (main process) with the accuracy so far.
        **settings: any :class:`EvalSettings` field (``limit``, ``batch_size``, ``seed``, ``path_length``,
            ``gen_length``, ``block_length``, ``training``, ``model``, ``model_label``, ...).

    Returns:
        the summary dict written to ``out_dir/summary.json``.
    """
    state = accelerator if accelerator is not None else _Single()
    sweep = dict(task=task, strategies=list(strategies), steps=[int(s) for s in steps_list])
    sweep["m"] = [int(m)] if isinstance(m, int) else [int(v) for v in m]
    cfg = _eval_settings(model, tokenizer, sweep, settings, num_processes=int(state.num_processes))
    examples = _examples(cfg, examples)
    out = Path(out_dir)
    previous = load_summary(out)
    if previous is not None and previous.get("settings", {}).get("model") not in (None, "", cfg.model):
        raise ValueError(
            f"{out} holds results of another model ({previous['settings']['model']!r}, not {cfg.model!r}); "
            "use one --out-dir per model."
        )
    if state.is_main_process:
        (out / "records").mkdir(parents=True, exist_ok=True)
    state.wait_for_everyone()
    _pad_id(tokenizer)  # fail before the first run
    sweeper = _Sweep(model, tokenizer, cfg, examples, out, state, progress and state.is_main_process)
    results: dict[str, dict[str, Any]] = {}
    for run in _runs(cfg):
        entry = sweeper.run(RunPlan.from_settings(cfg, run, tokenizer))
        if entry is not None:
            results[run.key] = entry
    if state.is_main_process:
        _write_summary(out, previous, cfg, results)
    state.wait_for_everyone()
    return load_summary(out) or {}


def _eval_settings(
    model: Any, tokenizer: Any, sweep: dict[str, Any], settings: dict[str, Any], num_processes: int
) -> EvalSettings:
    """The validated settings of a call: the sweep, what the model and tokenizer say, then ``settings``."""
    names = {f.name for f in dataclasses.fields(EvalSettings)}
    unknown = sorted(set(settings) - names)
    if unknown:
        raise TypeError(f"run_eval() got unknown setting(s) {unknown}; settings are the EvalSettings fields.")
    param = next(model.parameters(), None)
    mconf = getattr(model, "config", None)
    base: dict[str, Any] = {
        **sweep,
        "family": model_family(model),
        "dtype": str(param.dtype).replace("torch.", "") if param is not None else "",
        "device": str(_model_device(model)),
        "num_processes": num_processes,
        "model": str(getattr(mconf, "_name_or_path", "") or ""),
    }
    cfg = EvalSettings(**{**base, **settings})
    cfg.model_label = cfg.model_label or Path(cfg.model).name or "model"
    spec = _task_spec(cfg.task)
    cfg.task = spec.name
    if cfg.instruction is None:
        cfg.instruction = spec.instruction
    cfg.versions = cfg.versions or collect_versions(model)
    template = getattr(tokenizer, "chat_template", None)
    if cfg.chat_template and isinstance(template, str):
        cfg.chat_template_sha256 = hashlib.sha256(template.encode()).hexdigest()
    cfg.special_tokens = {
        "mask_token_id": getattr(mconf, "mask_token_id", None),
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
        "bos_token_id": tokenizer.bos_token_id,
    }
    cfg.validate()
    return cfg


def _examples(cfg: EvalSettings, examples: Sequence[Example] | None) -> list[Example]:
    """The examples of the call (loaded when not given, cut to ``limit``); sets ``cfg.num_examples``."""
    if examples is None:
        examples = load_task(cfg.task, source=cfg.source, limit=cfg.limit, seed=cfg.task_seed)
    elif cfg.limit is not None:
        examples = list(examples)[: cfg.limit]
    examples = list(examples)
    cfg.num_examples = len(examples)
    ids = [e.id for e in examples]
    if len(set(ids)) != len(ids):
        raise ValueError("example ids must be unique.")
    return examples


def _runs(cfg: EvalSettings) -> list[RunSpec]:
    """The cells of the sweep: strategy x steps (x m on the structured canvas), in that order."""
    runs = []
    for strat in cfg.strategies:
        name, canvas = parse_strategy(strat)
        for steps in cfg.steps:
            for mm in cfg.m if canvas == "nap" else [None]:
                runs.append(RunSpec(cfg.task, name, canvas, steps, mm))
    return runs


@dataclass
class _Sweep:
    """What every run of one :func:`run_eval` call shares: the model, settings, examples, out_dir and process
    state (process r takes batches r, r + world, ...), and the prompts per style (built once)."""

    model: Any
    tokenizer: Any
    cfg: EvalSettings
    examples: list[Example]
    out: Path
    state: Any
    progress: bool
    prompt_cache: dict[str, list[list[int]]] = field(default_factory=dict)

    @property
    def batches(self) -> list[list[int]]:
        """This process's batches of example indices."""
        B, n = self.cfg.batch_size, len(self.examples)
        batches = [list(range(i, min(i + B, n))) for i in range(0, n, B)]
        return batches[int(self.state.process_index) :: int(self.state.num_processes)]

    def prompts(self, style: str) -> list[list[int]]:
        if style not in self.prompt_cache:
            cfg = self.cfg
            self.prompt_cache[style] = [
                build_prompt(self.tokenizer, e, style, cfg.instruction, cfg) for e in self.examples
            ]
        return self.prompt_cache[style]

    def run(self, plan: RunPlan) -> dict[str, Any] | None:
        """Decode what is missing of one run, merge the shards (main process) and return its summary entry
        (None on the other processes)."""
        store = JsonlStore(self.out / "records", plan.run.key)  # <key>.jsonl + <key>.rank<r>.jsonl
        done: dict[str, dict[str, Any]] = {}
        for rec in store.records():
            if rec.get("fingerprint") != plan.fingerprint:
                raise ValueError(
                    f"{store.merged_path} holds records made with other settings (fingerprint "
                    f"{rec.get('fingerprint')} != {plan.fingerprint}); "
                    "use a fresh out_dir or delete those files."
                )
            done.setdefault(rec["id"], rec)
        self._decode(plan, store, done)
        self.state.wait_for_everyone()
        entry = None
        if self.state.is_main_process:
            ids = [e.id for e in self.examples]
            merged = _merge(store, ids)
            entry = {
                **plan.to_dict(),
                "records": f"records/{plan.run.key}.jsonl",
                "complete": len(merged) == len(ids),
                **_summarise(merged),
                "settings": self.cfg.to_dict(),
            }
        self.state.wait_for_everyone()
        return entry

    def _decode(self, plan: RunPlan, store: JsonlStore, done: dict[str, dict[str, Any]]) -> None:
        """Decode this process's unfinished batches, appending each new record to its shard as it comes."""
        from tqdm.auto import tqdm

        examples, prompts, batches = self.examples, self.prompts(plan.prompt_style), self.batches
        todo = [b for b in batches if any(examples[i].id not in done for i in b)]
        if not todo:
            return
        mine = {i for b in batches for i in b}
        prior = [done[examples[i].id] for i in mine if examples[i].id in done]
        n_correct, n_seen = sum(bool(r["correct"]) for r in prior), len(prior)
        want_traces = {i for i in range(min(self.cfg.save_traces, len(examples))) if i in mine}
        traces: list[dict[str, Any]] = []
        run = plan.run
        desc = f"{run.name} steps={run.steps}" + (f" m={run.m}" if run.m else "")
        bar = tqdm(total=len(mine), initial=n_seen, desc=desc, disable=not self.progress, dynamic_ncols=True)
        writer = store.appender(f"rank{int(self.state.process_index)}")
        try:
            for batch in todo:
                decoded = decode_batch(
                    self.model, self.tokenizer, plan, examples, prompts, batch, traces=want_traces
                )
                traces += decoded.traces
                for rec in decoded.records:
                    if rec.id in done:
                        continue
                    done[rec.id] = rec.to_dict()
                    writer.write(done[rec.id])
                    n_seen, n_correct = n_seen + 1, n_correct + rec.correct
                    bar.update(1)
                bar.set_postfix(acc=f"{100.0 * n_correct / max(n_seen, 1):.1f}%", nfe=decoded.nfe)
        finally:
            bar.close()
            writer.close()
        if traces:
            _write_traces(self.out / "traces" / f"{run.key}.json", traces)


def _write_traces(path: Path, traces: list[dict[str, Any]]) -> None:
    """Add ``traces`` to the run's trace file (one entry per example id, in example order), atomically."""
    existing = {}
    if path.is_file():
        with contextlib.suppress(json.JSONDecodeError, OSError):
            existing = {t["id"]: t for t in json.loads(path.read_text(encoding="utf-8"))}
    for t in traces:
        existing[t["id"]] = t
    body = sorted(existing.values(), key=lambda t: t["index"])
    _atomic_write_text(path, json.dumps(body) + "\n")


def _write_summary(
    out: Path, previous: dict[str, Any] | None, cfg: EvalSettings, results: dict[str, dict[str, Any]]
) -> None:
    """``summary.json``: this call's settings and runs, over the runs of earlier calls (atomically)."""
    summary = previous if previous is not None and previous.get("format") == SUMMARY_FORMAT else {}
    runs_all = dict(summary.get("runs", {}))
    runs_all.update(results)
    summary = {
        "format": SUMMARY_FORMAT,
        "model_label": cfg.model_label,
        "family": cfg.family,
        "training": cfg.training,
        "settings": cfg.to_dict(),
        "runs": runs_all,
    }
    _atomic_write_text(
        out / "summary.json", json.dumps(summary, indent=2, ensure_ascii=False, default=str) + "\n"
    )


def _merge(store: JsonlStore, ids: list[str]) -> list[dict[str, Any]]:
    """Merge the run's shards into ``<key>.jsonl`` in example order (first record per id wins) and remove
    them."""
    order = {i: n for n, i in enumerate(ids)}
    merged = store.merge(order=lambda r: (order.get(r["id"], len(order)), r.get("index", 0)))
    return [r for r in merged if r["id"] in order]
