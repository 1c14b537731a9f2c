"""Evaluation of nap-tiny on the toy arithmetic task (`nap_hf.data.toy_arithmetic`): accuracy and
Global-ARness@1 of a decoding rule at a given number of tokens per step, on held-out problems."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import torch

from ..data.format import build_layout, parse_instance, parse_longcot
from ..data.toy_arithmetic import (
    TOY_SUMMARY_LENGTH,
    ToyProblem,
    equation_is_right,
    majority_answer,
    parse_equations,
    toy_path_length,
)
from ..metrics import global_arness
from .runner import is_stochastic
from .settings import plan_generate, uses_nap_canvas

__all__ = [
    "ToyDecoding",
    "ToyResult",
    "content_positions",
    "evaluate_toy",
    "score_toy_records",
    "toy_prompts",
    "toy_record",
]

LONGCOT_GEN_LENGTH = 72
"""Generated length of the Long-CoT model (its longest training completion is 67 tokens + EOS)."""


@dataclass(frozen=True)
class ToyDecoding:
    """A decoding rule for the toy evaluation.

    Args:
        strategy: `parallel_forced`, `confidence` (AO), `ar` or `random`.
        tokens_per_step: k; steps = generated slots / k.
        m: parallel-forced paths (the slot size keeps the total budget of 3 paths when m < 3, unless
            `path_length` is set).
        layout: `nap` (the NAP model: structured length, NAP text) or `longcot` (the Long-CoT model).
        digits: the task's number width (`ToyArithmetic.digits`), which sets the path slot size.
        temperature: 0 = argmax tokens (the paper's setting); > 0 = tokens sampled from softmax(logits / T),
            seeded (`generate(seed=0)`) so that a rerun decodes the same text.
        path_isolation: decode with isolated paths (`generate(path_isolation=...)`, docs/design.md §10): False,
            True (paths as rows over the prompt cache) or "masked" (the exact reference).
        path_length: slot size of every path on the structured canvas; None (default) = the constant-budget rule
            `3 * toy_path_length(digits) // m` (the paper's Table 4 setting), an int = that size for any m (Table
            5's setting: more paths, each as long as in training).
    """

    strategy: str = "parallel_forced"  # the default: NAP's decoding
    tokens_per_step: int = 1
    m: int = 3
    layout: Literal["nap", "longcot"] = "nap"
    digits: int = 1
    temperature: float = 0.0
    path_isolation: bool | str = False
    path_length: int | None = None

    def __post_init__(self) -> None:
        if self.temperature < 0:
            raise ValueError(f"`temperature` must be >= 0 (0 = argmax), got {self.temperature!r}.")
        if self.path_length is not None and (
            isinstance(self.path_length, bool)
            or not isinstance(self.path_length, int)
            or self.path_length < 1
        ):
            raise ValueError(
                f"`path_length` must be an integer >= 1 or None (the constant-budget rule), got {self.path_length!r}."
            )

    @property
    def slot_length(self) -> int:
        """Slot size of one path on the structured canvas: `path_length`, or the constant-budget rule."""
        if self.path_length is not None:
            return self.path_length
        return 3 * toy_path_length(self.digits) // self.m

    @property
    def name(self) -> str:
        extra = f" m={self.m}" if uses_nap_canvas(self.strategy, None) and self.m != 3 else ""
        extra += f" T={self.temperature:g}" if self.temperature else ""
        extra += f" L={self.path_length}" if self.path_length is not None else ""
        extra += " isolated" if self.path_isolation else ""
        return f"{self.layout}/{self.strategy}{extra} k={self.tokens_per_step}"

    def generate_kwargs(self, tokenizer: Any) -> dict[str, Any]:
        """`generate` keyword arguments (steps follow from the slot count and k), by
        :func:`~nap_hf.evaluation.settings.plan_generate`."""
        options: dict[str, Any] = {"strategy": self.strategy}
        if uses_nap_canvas(self.strategy, None):  # a strategy that decodes the structured canvas itself
            options.update(m=self.m, path_length=self.slot_length, summary_length=TOY_SUMMARY_LENGTH)
        elif self.layout == "nap":
            options["gen_length"] = build_layout(
                tokenizer, 3, toy_path_length(self.digits), TOY_SUMMARY_LENGTH
            ).length
        else:
            options["gen_length"] = LONGCOT_GEN_LENGTH
        if self.temperature:
            options["temperature"] = self.temperature
        if self.path_isolation:
            options["path_isolation"] = self.path_isolation
        plan = plan_generate(options, tokens_per_step=self.tokens_per_step)
        return plan.call_kwargs(tokenizer, seed=0 if is_stochastic(plan.kwargs) else None)


@dataclass
class ToyResult:
    """Accuracy and Global-ARness@1 of one decoding rule; `records` hold every problem's output.

    `equation_accuracy` is the share of the decoded equations (one per non-empty line of the reasoning) whose
    arithmetic is right; `vote_accuracy` the accuracy of a majority vote over the decoded paths' last results
    (NAP layout only; None for Long-CoT), to compare with the summary's `accuracy`.

    Where the reasoning goes wrong: `path_accuracy` is the share of decoded paths (the one chain for Long-CoT)
    whose last result is the gold answer; `misread_share` the share of the wrong paths whose every equation is
    arithmetically right, i.e. the path used the wrong numbers or signs of the question rather than slipping;
    `identical_paths` the share of problems whose decoded paths are all the same text (NAP layout only), where
    a vote over the paths cannot repair anything.

    `content_arness` is Global-ARness@1 over the content positions only (:func:`content_positions`: the digits
    of the operands, results and answer; scaffolding such as `=`, operators, newlines, tags, EOS filler and
    summary wording left out), None when no problem has a committed digit.
    """

    decoding: str
    accuracy: float
    global_arness: float
    nfe: float
    n: int
    equation_accuracy: float = 0.0
    vote_accuracy: float | None = None
    path_accuracy: float = 0.0
    misread_share: float = 0.0
    identical_paths: float | None = None
    content_arness: float | None = None
    records: list[dict[str, Any]] = field(default_factory=list)


def content_positions(
    tokenizer: Any, ids: torch.Tensor, cache: dict[int, bool] | None = None
) -> torch.BoolTensor:
    """(B, L) mask of the content tokens of decoded rows `ids` (B, L): the tokens whose text is digits only (the
    operands and results of the equations, the boxed answer). Everything else is scaffolding: `=`, operators,
    newlines, format tags, EOS filler, the summary's wording. `cache` (token id -> is content) may be shared
    between calls; each id is decoded once."""
    cache = {} if cache is None else cache
    flat = ids.reshape(-1).tolist()
    for i in set(flat) - cache.keys():
        text = tokenizer.decode([i]).strip()
        cache[i] = bool(text) and text.isascii() and text.isdigit()
    return torch.tensor([cache[i] for i in flat], dtype=torch.bool).reshape(ids.shape)


def toy_prompts(tokenizer: Any, problems: Sequence[ToyProblem]) -> dict[str, torch.Tensor]:
    """Left-padded chat-template prompts (the question only, as in training)."""
    tokenizer.padding_side = "left"
    texts = [
        tokenizer.apply_chat_template(
            [{"role": "user", "content": p.question}], tokenize=False, add_generation_prompt=True
        )
        for p in problems
    ]
    return tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)


def _answer(text: str, layout: str) -> tuple[str | None, list[str]]:
    """The answer (from the summary / after `</think>`) and the paths of a decoded free-canvas text."""
    parsed = parse_instance(text) if layout == "nap" else parse_longcot(text)
    return parsed.answer, parsed.paths


def _same(answer: str | None, gold: int) -> bool:
    if answer is None:
        return False
    try:
        return int(answer.strip()) == gold
    except ValueError:
        return False


@torch.no_grad()
def evaluate_toy(
    model: Any,
    tokenizer: Any,
    problems: Sequence[ToyProblem],
    decoding: ToyDecoding,
    *,
    batch_size: int = 100,
) -> ToyResult:
    """Decode every problem with `decoding`, parse the answer from the summary (NAP) or the text after
    ``</think>`` (Long-CoT), and score it against the gold answer."""
    if not problems:
        raise ValueError("`problems` is empty.")
    records, nfe = [], []
    content_cache: dict[int, bool] = {}
    kwargs = decoding.generate_kwargs(tokenizer)
    for start in range(0, len(problems), batch_size):
        batch = problems[start : start + batch_size]
        inputs = toy_prompts(tokenizer, batch)
        P = inputs["input_ids"].shape[1]
        out = model.generate(**inputs, return_dict_in_generate=True, **kwargs)
        nfe.append(out.nfe)
        for i, problem in enumerate(batch):
            trace = out.trace[i : i + 1, P:]
            g = global_arness(trace).mean
            content = content_positions(tokenizer, out.sequences[i : i + 1, P:], content_cache) & (trace >= 0)
            c = global_arness(trace, positions=content).mean if bool(content.any()) else None
            if out.answer is not None:
                answer, paths = out.answer[i], out.paths[i]
            else:
                text = tokenizer.decode(out.sequences[i, P:], skip_special_tokens=True)
                answer, paths = _answer(text, decoding.layout)
            records.append(toy_record(problem, answer, paths, decoding.digits, g, content_arness=c))
    return ToyResult(
        decoding=decoding.name,
        nfe=sum(nfe) / len(nfe),
        n=len(records),
        records=records,
        **score_toy_records(records, decoding.layout),
    )


def toy_record(
    problem: ToyProblem,
    answer: str | None,
    paths: Sequence[str],
    digits: int = 1,
    arness: float = 0.0,
    *,
    content_arness: float | None = None,
) -> dict[str, Any]:
    """One problem's decoded output, checked: the answer against the gold, each path's equations re-computed.
    `arness` / `content_arness`: the row's Global-ARness@1 over all generated / content positions."""
    equations = [parse_equations(p, digits) for p in paths]
    return {
        "id": problem.id,
        "gold": problem.answer,
        "answer": answer,
        "correct": _same(answer, problem.answer),
        "paths": list(paths),
        "path_answers": [eqs[-1][3] if eqs and eqs[-1] is not None else None for eqs in equations],
        "equations_right": [equation_is_right(eq) for eqs in equations for eq in eqs],
        "paths_arithmetic_right": [bool(eqs) and all(map(equation_is_right, eqs)) for eqs in equations],
        "global_arness@1": arness,
        "content_arness@1": content_arness,
    }


def score_toy_records(records: Sequence[dict[str, Any]], layout: str = "nap") -> dict[str, Any]:
    """The aggregate fields of :class:`ToyResult` (all but `decoding`, `nfe`, `n`) from `toy_record` rows."""
    if not records:
        raise ValueError("`records` is empty.")
    n = len(records)
    equations_right = [ok for r in records for ok in r["equations_right"]]
    # (path right?, arithmetic right?) for every decoded path
    paths = [
        (a == r["gold"], ok)
        for r in records
        for a, ok in zip(r["path_answers"], r["paths_arithmetic_right"], strict=True)
    ]
    wrong = [ok for right, ok in paths if not right]
    vote = identical = None
    if layout == "nap":
        vote = (
            sum(bool(r["path_answers"]) and majority_answer(r["path_answers"]) == r["gold"] for r in records)
            / n
        )
        identical = sum(len(r["paths"]) > 1 and len(set(r["paths"])) == 1 for r in records) / n
    content = [r["content_arness@1"] for r in records if r.get("content_arness@1") is not None]
    return {
        "accuracy": sum(r["correct"] for r in records) / n,
        "global_arness": sum(r["global_arness@1"] for r in records) / n,
        "equation_accuracy": sum(equations_right) / max(1, len(equations_right)),
        "vote_accuracy": vote,
        "path_accuracy": sum(right for right, _ in paths) / max(1, len(paths)),
        "misread_share": sum(wrong) / max(1, len(wrong)),
        "identical_paths": identical,
        "content_arness": sum(content) / len(content) if content else None,
    }
