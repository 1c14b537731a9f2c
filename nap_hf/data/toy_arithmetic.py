"""A seeded synthetic task for nap-tiny: multi-step arithmetic word problems (2-3 operations, several templates
and wordings) whose solutions follow genuinely different orders of operations, with a share of noisy paths that
contain one arithmetic slip (the paper's Figure 5), emitted through the NAP format module.

Numbers (decided here, so that a ~2M-parameter model can learn the arithmetic on a CPU). The default,
``digits=1``, keeps every operand in [1, 9] and every intermediate value of every method in [0, 9], so an
equation is a single-digit fact and the difficulty lies in the structure (which operands, in which order, a
slip that propagates), not in carries. ``digits=2`` is the harder calibration that was tried first: operands in
[10, 99], values in [0, 99], written in the paths with two digits least-significant first (23 -> ``32``), so
a carry is local; a 2.2M-parameter model reached 54% correct equations and 4% answers after 4000 steps on it
(docs/nap_tiny.md). Questions and the boxed answer use ordinary decimal notation.

A path is one equation per line, e.g. for "7 - 3 + 4" (``digits=1``)::

    7-3=4
    4+4=8

or for "23 + 15 - 18" (``digits=2``)::

    32+51=83
    83-81=02

and the summary is ``The answer is \\boxed{20}.``: written from the gold answer (docs/design.md §6), so it is
correct even when a path slipped. ``python -m nap_hf.data.toy_arithmetic OUT_DIR`` writes the train / test JSONL
files (NAP and Long-CoT variants of the SAME traces) and the tokenizer.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import random
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .format import render_instance, render_longcot

__all__ = [
    "ToyProblem",
    "ToyInstance",
    "ToyArithmetic",
    "to_lsd",
    "from_lsd",
    "toy_summary",
    "parse_equations",
    "equation_is_right",
    "numbers_key",
    "majority_answer",
    "TOY_PATH_LENGTH",
    "toy_path_length",
    "TOY_SUMMARY_LENGTH",
    "TOY_TAGS",
    "build_toy_tokenizer",
]

TOY_PATH_LENGTH = 20
"""Slot size of one path in the nap-tiny canvas (default task, ``digits=1``: 3 equations x 6 tokens + the
closing tag fit). The ``digits=2`` task needs :func:`toy_path_length` (32)."""
TOY_SUMMARY_LENGTH = 12
"""Slot size of the summary in the nap-tiny canvas."""
TOY_TAGS = [
    *[f"<think {j}>" for j in range(1, 4)],
    *[f"</think {j}>" for j in range(1, 4)],
    "<think>",
    "</think>",
    "<summary>",
    "</summary>",
]
"""Format tags that the toy tokenizer keeps as single (non-special) tokens."""


@dataclass(frozen=True)
class _Numbers:
    """Everything that depends on the number width: operand range, how a path writes and reads a number, the
    slips, and the path slot that 3 equations (3 numbers + 2 signs each), 2 newlines and the closing tag fit."""

    low: int
    high: int
    write: Any
    read: Any
    slips: tuple[int, ...]
    path_length: int


def _numbers(digits: int) -> _Numbers:
    if digits == 1:
        return _Numbers(1, 9, str, int, (1, -1, 2, -2), TOY_PATH_LENGTH)
    if digits == 2:
        return _Numbers(10, 99, to_lsd, from_lsd, (10, -10, 1, -1, 2, -2), 32)
    raise ValueError(f"`digits` must be 1 or 2, got {digits}.")


def toy_path_length(digits: int) -> int:
    """Slot size of one path for numbers of `digits` digits (20 for 1, 32 for 2)."""
    return _numbers(digits).path_length


def to_lsd(value: int) -> str:
    """Two digits, least-significant first: 23 -> "32", 7 -> "70"."""
    if not 0 <= value <= 99:
        raise ValueError(f"toy numbers are in [0, 99], got {value}.")
    return f"{value % 10}{value // 10}"


def from_lsd(text: str) -> int:
    """Inverse of :func:`to_lsd`."""
    if len(text) != 2 or not text.isdigit():
        raise ValueError(f"expected two digits, got {text!r}.")
    return int(text[0]) + 10 * int(text[1])


_EQUATION = re.compile(r"^\s*(\d+)\s*([+-])\s*(\d+)\s*=\s*(\d+)\s*$")


def parse_equations(text: str, digits: int = 1) -> list[Equation | None]:
    """The equations of a decoded path (one per non-empty line), as ``(left, op, right, result)`` values; a
    line that is not an equation of `digits`-digit numbers gives None."""
    read = _numbers(digits).read
    out: list[Equation | None] = []
    for line in text.splitlines():
        if not line.strip():
            continue
        match = _EQUATION.match(line)
        if match is None or any(len(match.group(g)) != digits for g in (1, 3, 4)):
            out.append(None)
            continue
        out.append((read(match.group(1)), match.group(2), read(match.group(3)), read(match.group(4))))
    return out


def equation_is_right(eq: Equation | None) -> bool:
    """Whether a parsed equation's arithmetic is right (None, a malformed line, is not)."""
    return eq is not None and _apply(eq[0], eq[1], eq[2]) == eq[3]


def toy_summary(answer: int | str) -> str:
    """The toy summary sentence (a short form of docs/design.md §6's template, to fit a 12-token slot)."""
    return f"The answer is \\boxed{{{answer}}}."


# --------------------------------------------------------------------------------------------------- wording
_NAMES = [
    "Ann",
    "Ben",
    "Cleo",
    "Dan",
    "Eve",
    "Finn",
    "Gus",
    "Hana",
    "Ivy",
    "Jack",
    "Kim",
    "Leo",
    "Mia",
    "Noah",
]
_PRONOUN = {
    "Ann": "She", "Cleo": "She", "Eve": "She", "Hana": "She", "Ivy": "She", "Kim": "She", "Mia": "She",
    "Ben": "He", "Dan": "He", "Finn": "He", "Gus": "He", "Jack": "He", "Leo": "He", "Noah": "He",
}  # fmt: skip
_THEN = ["Then", "After that,", "Later,", "Next,"]


@dataclass(frozen=True)
class _Template:
    """A story: the opening (start value), gain and loss phrasings of an event, and the question."""

    start: tuple[str, ...]
    gain: tuple[str, ...]
    loss: tuple[str, ...]
    question: tuple[str, ...]
    items: tuple[str, ...] = ("",)


# Word-problem templates as data: one _Template per scenario, the same fields by construction.
_TEMPLATES = [
    _Template(
        start=("{name} has {a} {item}.", "{name} owns {a} {item}."),
        gain=("{pron} buys {x} more.", "{pron} finds {x} more.", "{pron} gets {x} from {other}."),
        loss=("{pron} gives {x} to {other}.", "{pron} loses {x}.", "{pron} sells {x}."),
        question=("How many {item} does {name} have now?", "How many {item} are left?"),
        items=("apples", "marbles", "stickers", "cards", "coins", "shells", "stamps", "pencils"),
    ),
    _Template(
        start=("A bus leaves the depot with {a} people.", "There are {a} people on a bus."),
        gain=("At a stop {x} people get on.", "{x} people board the bus."),
        loss=("At a stop {x} people get off.", "{x} people leave the bus."),
        question=("How many people are on the bus now?", "How many people are still on the bus?"),
    ),
    _Template(
        start=("A tank holds {a} liters of water.", "There are {a} liters of water in a tank."),
        gain=("{x} liters are poured in.", "Rain adds {x} liters."),
        loss=("{x} liters are drained.", "{x} liters leak out."),
        question=("How many liters are in the tank now?", "How much water is in the tank, in liters?"),
    ),
    _Template(
        start=("A shelf has {a} books.", "The library shelf holds {a} books."),
        gain=("The librarian adds {x} books.", "{x} books are returned to the shelf."),
        loss=("{x} books are borrowed.", "The librarian removes {x} books."),
        question=("How many books are on the shelf now?", "How many books does the shelf hold now?"),
    ),
    _Template(
        start=("{name} has {a} dollars.", "{name} saved {a} dollars."),
        gain=("{pron} earns {x} dollars.", "{pron} is given {x} dollars."),
        loss=("{pron} spends {x} dollars.", "{pron} pays {x} dollars for lunch."),
        question=(
            "How many dollars does {name} have now?",
            "How much money does {name} have left, in dollars?",
        ),
    ),
    _Template(
        start=("{name} starts a game with {a} points.", "In a game, {name} has {a} points."),
        gain=("{pron} wins {x} points.", "{pron} scores {x} more points."),
        loss=("{pron} loses {x} points.", "A penalty costs {pron_l} {x} points."),
        question=("How many points does {name} have now?", "What is {name}'s score now?"),
    ),
]


# --------------------------------------------------------------------------------------------------- problems
@dataclass(frozen=True)
class ToyProblem:
    """One word problem: ``start`` followed by signed ``events`` (``+x`` gain, ``-x`` loss)."""

    id: str
    question: str
    start: int
    events: tuple[int, ...]

    @property
    def answer(self) -> int:
        return self.start + sum(self.events)


Equation = tuple[int, str, int, int]  # (left, op, right, result)
Operand = tuple[str, int]  # ("lit", value) or ("eq", index of an earlier equation whose result it uses)
Program = tuple[tuple[Operand, str, Operand], ...]


def _eq_text(eq: Equation, digits: int) -> str:
    left, op, right, result = eq
    write = _numbers(digits).write
    return f"{write(left)}{op}{write(right)}={write(result)}"


def _apply(left: int, op: str, right: int) -> int:
    return left + right if op == "+" else left - right


def run_program(program: Program, slip: tuple[int, int] | None = None) -> tuple[Equation, ...]:
    """The equations of a method; `slip=(k, delta)` makes equation k's result off by `delta`, and later
    equations use the wrong value (they are computed correctly from it)."""
    results: list[int] = []
    eqs: list[Equation] = []
    for k, (a, op, b) in enumerate(program):
        left = a[1] if a[0] == "lit" else results[a[1]]
        right = b[1] if b[0] == "lit" else results[b[1]]
        value = _apply(left, op, right)
        if slip is not None and slip[0] == k:
            value += slip[1]
        results.append(value)
        eqs.append((left, op, right, value))
    return tuple(eqs)


def _in_range(eqs: Sequence[Equation], max_value: int) -> bool:
    return all(0 <= v <= max_value for eq in eqs for v in (eq[0], eq[2], eq[3]))


def solution_methods(start: int, events: Sequence[int], max_value: int = 9) -> list[Program]:
    """Every distinct method (a program of equations) that solves the problem with all values in
    [0, `max_value`]:
    the events applied one by one in any order, and the grouped methods (total gain and total loss first, then
    applied in either order; or the net change first)."""
    methods: list[Program] = []
    seen: set[tuple[Equation, ...]] = set()

    def add(program: list[tuple[Operand, str, Operand]]) -> None:
        eqs = run_program(tuple(program))
        if program and _in_range(eqs, max_value) and eqs not in seen:
            seen.add(eqs)
            methods.append(tuple(program))

    lit = lambda v: ("lit", v)  # noqa: E731
    ref = lambda k: ("eq", k)  # noqa: E731
    for order in itertools.permutations(events):  # one by one, in any order
        program: list[tuple[Operand, str, Operand]] = []
        for k, e in enumerate(order):
            program.append((lit(start) if k == 0 else ref(k - 1), "+" if e > 0 else "-", lit(abs(e))))
        add(program)
    gains = [e for e in events if e > 0]
    losses = [-e for e in events if e < 0]

    def combine(values: list[int], offset: int) -> tuple[Operand, list[tuple[Operand, str, Operand]]]:
        """Sum `values` with equations numbered from `offset`; the operand that holds the total."""
        out: list[tuple[Operand, str, Operand]] = []
        total: Operand = lit(values[0])
        for v in values[1:]:
            out.append((total, "+", lit(v)))
            total = ref(offset + len(out) - 1)
        return total, out

    if not losses and len(gains) > 1:  # all gains: their total first
        g, g_prog = combine(gains, 0)
        add(g_prog + [(lit(start), "+", g)])
    if not gains and len(losses) > 1:  # all losses: their total first
        lo, l_prog = combine(losses, 0)
        add(l_prog + [(lit(start), "-", lo)])
    if gains and losses:
        g, g_prog = combine(gains, 0)
        lo, l_prog = combine(losses, len(g_prog))
        base = g_prog + l_prog
        n = len(base)
        if max(len(gains), len(losses)) > 1:  # group the gains and the losses first, apply in either order
            add(base + [(lit(start), "+", g), (ref(n), "-", lo)])
            add(base + [(lit(start), "-", lo), (ref(n), "+", g)])
        net = run_program(tuple(base))  # the net change first
        g_value = g[1] if g[0] == "lit" else net[g[1]][3]
        l_value = lo[1] if lo[0] == "lit" else net[lo[1]][3]
        if g_value >= l_value:
            add(base + [(g, "-", lo), (lit(start), "+", ref(n))])
        else:
            add(base + [(lo, "-", g), (lit(start), "-", ref(n))])
    return methods


def _slip(program: Program, rng: random.Random, digits: int) -> tuple[Equation, ...] | None:
    """The method with ONE arithmetic slip (a units digit off by one or two; with two digits also a dropped
    carry / borrow), propagated to the later equations that use the wrong value. None if no slip keeps every
    value in range."""
    numbers = _numbers(digits)
    for _ in range(20):
        k = rng.randrange(len(program))
        eqs = run_program(program, slip=(k, rng.choice(numbers.slips)))
        if _in_range(eqs, numbers.high):
            return eqs
    return None


@dataclass
class ToyInstance:
    """A problem with its m traces (one per path) and which of them slipped."""

    problem: ToyProblem
    methods: list[tuple[Equation, ...]]  # the equations of each path, as written
    slipped: list[bool]
    digits: int = 1

    @property
    def paths(self) -> list[str]:
        return ["\n".join(_eq_text(eq, self.digits) for eq in eqs) for eqs in self.methods]

    @property
    def path_answers(self) -> list[int]:
        return [eqs[-1][3] for eqs in self.methods]

    @property
    def summary(self) -> str:
        return toy_summary(self.problem.answer)

    def rows(self) -> dict[str, dict[str, Any]]:
        """The NAP and the Long-CoT row of this instance (prompt/completion form + metadata)."""
        meta = {
            "id": self.problem.id,
            "gold_answer": str(self.problem.answer),
            "path_answers": [str(a) for a in self.path_answers],
            "path_correct": [a == self.problem.answer for a in self.path_answers],
            "slipped": list(self.slipped),
        }
        prompt = [{"role": "user", "content": self.problem.question}]
        return {
            "nap": {"prompt": prompt, "completion": render_instance(self.paths, self.summary), **meta},
            "longcot": {"prompt": prompt, "completion": render_longcot(self.paths, self.summary), **meta},
        }


def majority_answer(answers: Sequence[Any]) -> Any:
    """The most frequent answer; ties go to the one that appears first (what a perfect vote would pick)."""
    counts = Counter(answers)
    best = max(counts.values())
    return next(a for a in answers if counts[a] == best)


@dataclass
class ToyArithmetic:
    """Seeded generator of toy problems and NAP instances.

    Args:
        seed: everything (problems, methods, slips) is a function of the seed and the problem index.
        num_paths: paths per instance (m).
        slip_rate: probability that a path contains one arithmetic slip.
        min_ops / max_ops: operations per problem (events after the start value).
        question_numbers: `"decimal"` (ordinary numbers in the question) or `"lsd"` (the paths' two-digit,
            least-significant-first form, so a path copies its operands verbatim; only with ``digits=2``).
        digits: 1 (default: operands in [1, 9], every value in [0, 9]) or 2 (operands in [10, 99], values in
            [0, 99], written least-significant first in the paths; see the module docstring).

    Example:
    ```python
    >>> task = ToyArithmetic(seed=0)
    >>> inst = task.instance(0)
    >>> inst.problem.answer == int(inst.summary.split("{")[1].split("}")[0])
    True
    ```
    """

    seed: int = 0
    num_paths: int = 3
    slip_rate: float = 0.12
    question_numbers: str = "decimal"
    min_ops: int = 2
    max_ops: int = 3
    digits: int = 1
    templates: list[_Template] = field(default_factory=lambda: list(_TEMPLATES))

    def __post_init__(self) -> None:
        if not 0.0 <= self.slip_rate < 1.0:
            raise ValueError(f"`slip_rate` must be in [0, 1), got {self.slip_rate}.")
        if not 1 <= self.min_ops <= self.max_ops <= 3:
            raise ValueError("need 1 <= `min_ops` <= `max_ops` <= 3 (a path slot holds 3 equations).")
        if self.question_numbers not in ("decimal", "lsd"):
            raise ValueError(f"`question_numbers` must be 'decimal' or 'lsd', got {self.question_numbers!r}.")
        _numbers(self.digits)  # validates `digits`
        if self.question_numbers == "lsd" and self.digits != 2:
            raise ValueError(
                "`question_numbers='lsd'` needs `digits=2` (single digits read the same both ways)."
            )
        if self.num_paths < 1:
            raise ValueError(f"`num_paths` must be >= 1, got {self.num_paths}.")

    def _rng(self, split: str, index: int) -> random.Random:
        digest = hashlib.sha256(f"{self.seed}:{split}:{index}".encode()).digest()
        return random.Random(int.from_bytes(digest[:8], "big"))

    def problem(self, index: int, split: str = "train") -> ToyProblem:
        """Problem `index` of `split` (a different seeded stream per split)."""
        rng = self._rng(split, index)
        while True:
            n_ops = rng.randint(self.min_ops, self.max_ops)
            low, high = self.numbers.low, self.numbers.high
            start = rng.randint(low, high)
            events = tuple(rng.choice([1, -1]) * rng.randint(low, high) for _ in range(n_ops))
            if len(solution_methods(start, events, high)) >= 2:  # >= 2 different methods
                break
        tpl = rng.choice(self.templates)
        name, other = rng.sample(_NAMES, 2)
        pron = _PRONOUN[name]
        item = rng.choice(tpl.items)
        fill = dict(name=name, other=other, pron=pron, pron_l="her" if pron == "She" else "him", item=item)
        num = to_lsd if self.question_numbers == "lsd" else str
        sentences = [rng.choice(tpl.start).format(a=num(start), **fill)]
        for k, e in enumerate(events):
            sentence = rng.choice(tpl.gain if e > 0 else tpl.loss).format(x=num(abs(e)), **fill)
            if k > 0 and rng.random() < 0.5:
                then = rng.choice(_THEN)
                sentence = (
                    f"{then} {sentence[0].lower()}{sentence[1:]}"
                    if not sentence.startswith(tuple(_NAMES))
                    else f"{then} {sentence}"
                )
            sentences.append(sentence)
        sentences.append(rng.choice(tpl.question).format(**fill))
        return ToyProblem(id=f"toy:{split}:{index}", question=" ".join(sentences), start=start, events=events)

    def instance(self, index: int, split: str = "train") -> ToyInstance:
        """Problem `index` with `num_paths` traces: distinct methods where the problem has enough, each slipping
        with probability `slip_rate`."""
        problem = self.problem(index, split)
        rng = self._rng(split + ":paths", index)
        methods = solution_methods(problem.start, problem.events, self.numbers.high)
        if len(methods) >= self.num_paths:
            chosen = rng.sample(methods, self.num_paths)
        else:
            chosen = [methods[i % len(methods)] for i in range(self.num_paths)]
            rng.shuffle(chosen)
        out, slipped = [], []
        for program in chosen:
            bad = _slip(program, rng, self.digits) if rng.random() < self.slip_rate else None
            out.append(bad if bad is not None else run_program(program))
            slipped.append(bad is not None)
        return ToyInstance(problem=problem, methods=out, slipped=slipped, digits=self.digits)

    @property
    def numbers(self) -> _Numbers:
        return _numbers(self.digits)

    @property
    def path_length(self) -> int:
        """The canvas slot size of one path for this task's numbers."""
        return self.numbers.path_length

    def instances(self, n: int, split: str = "train", start: int = 0) -> list[ToyInstance]:
        return [self.instance(i, split) for i in range(start, start + n)]

    def test_questions(self, n: int) -> set[str]:
        return {self.problem(i, "test").question for i in range(n)}

    def test_numbers(self, n: int) -> set[tuple[int, tuple[int, ...]]]:
        """The number content (:func:`numbers_key`) of the first `n` test problems."""
        return {numbers_key(self.problem(i, "test")) for i in range(n)}

    def train_instances(self, n: int, test_size: int = 200) -> list[ToyInstance]:
        """`n` training instances that share neither the question text nor the numbers (start value and the
        multiset of events, :func:`numbers_key`) with one of the first `test_size` test problems: a test
        problem's answer can't be recalled, only computed."""
        held_out = self.test_questions(test_size)
        held_numbers = self.test_numbers(test_size)
        out, i = [], 0
        while len(out) < n:
            inst = self.instance(i, "train")
            if inst.problem.question not in held_out and numbers_key(inst.problem) not in held_numbers:
                out.append(inst)
            i += 1
        return out


def numbers_key(problem: ToyProblem) -> tuple[int, tuple[int, ...]]:
    """What a problem is about, up to wording and event order: the start value and the sorted events."""
    return problem.start, tuple(sorted(problem.events))


def data_stats(instances: Sequence[ToyInstance]) -> dict[str, float]:
    """Slip rate, share of paths correct, and the accuracy a perfect majority vote over the paths would reach
    (the ceiling of a model that only votes over its own paths)."""
    paths = [c for inst in instances for c in (a == inst.problem.answer for a in inst.path_answers)]
    vote = [majority_answer(inst.path_answers) == inst.problem.answer for inst in instances]
    any_ok = [any(a == inst.problem.answer for a in inst.path_answers) for inst in instances]
    return {
        "instances": len(instances),
        "slip_rate": sum(s for inst in instances for s in inst.slipped) / max(1, len(paths)),
        "paths_correct": sum(paths) / max(1, len(paths)),
        "majority_vote_ceiling": sum(vote) / max(1, len(vote)),
        "any_path_correct": sum(any_ok) / max(1, len(any_ok)),
    }


# --------------------------------------------------------------------------------------------------- tokenizer
def build_toy_tokenizer(corpus: Sequence[str], vocab_size: int = 448, specials: Sequence[str] = ()):
    """A byte-level BPE (`tokenizers.Tokenizer`) for the toy task: every digit is its own token, the format tags
    (:data:`TOY_TAGS`) are single added tokens, `specials` (e.g. LLaDA's) are appended as special tokens."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False)]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False
    )
    tok.train_from_iterator(corpus, trainer=trainer)
    tok.add_tokens([AddedToken(t, normalized=False, special=False) for t in TOY_TAGS])
    if specials:
        tok.add_special_tokens(list(specials))
    return tok


# --------------------------------------------------------------------------------------------------- CLI
def _write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    from ..io import write_text_atomic

    write_text_atomic(path, "".join(json.dumps(r) + "\n" for r in rows))


def write_toy_data(
    out_dir: str | Path,
    *,
    n_train: int,
    n_test: int = 200,
    seed: int = 0,
    question_numbers: str = "decimal",
    digits: int = 1,
) -> dict[str, Any]:
    """Write ``{nap,longcot}-train.jsonl`` and ``test.jsonl`` (questions + gold, never in train) and
    ``stats.json`` to `out_dir`; return the stats."""
    out = Path(out_dir)
    task = ToyArithmetic(seed=seed, question_numbers=question_numbers, digits=digits)
    train = task.train_instances(n_train, test_size=n_test)
    rows = [inst.rows() for inst in train]
    _write_jsonl(out / "nap-train.jsonl", [r["nap"] for r in rows])
    _write_jsonl(out / "longcot-train.jsonl", [r["longcot"] for r in rows])
    test = task.instances(n_test, "test")
    _write_jsonl(out / "test.jsonl", [{**asdict(t.problem), "answer": t.problem.answer} for t in test])
    stats = {
        "seed": seed,
        "question_numbers": question_numbers,
        "digits": digits,
        "train": data_stats(train),
        "test": data_stats(test),
    }
    from ..io import write_text_atomic

    write_text_atomic(out / "stats.json", json.dumps(stats, indent=2) + "\n")
    return stats


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out_dir")
    parser.add_argument("--n_train", type=int, default=100_000)
    parser.add_argument("--n_test", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--digits", type=int, choices=[1, 2], default=1)
    args = parser.parse_args(argv)
    stats = write_toy_data(
        args.out_dir, n_train=args.n_train, n_test=args.n_test, seed=args.seed, digits=args.digits
    )
    print(json.dumps(stats, indent=2))


if __name__ == "__main__":
    main()
