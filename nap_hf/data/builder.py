"""The NAP data builder (docs/design.md §6): P independent teacher traces per question, a summary conditioned on
the gold answer, written as NAP instances AND as the Long-CoT baseline from the SAME traces; resumable after a
crash at any moment.

    from nap_hf.data import AssemblySettings, GenerationSettings, build_parallel_dataset, load_source
    from nap_hf.data.teachers import OpenAICompatibleTeacher

    problems = load_source("gsm8k", split="train")
    teacher = OpenAICompatibleTeacher("Qwen/Qwen2.5-7B-Instruct", "http://localhost:8000/v1", temperature=1.0)
    data = build_parallel_dataset(problems, teacher, "data/nap-gsm8k", GenerationSettings(num_paths=3))
    data["nap"], data["longcot"]            # the same questions, the same traces, two renderings

Decided here:

* **Two kinds of settings, two types.** :class:`GenerationSettings` decide what the teacher is asked (P, the
  seed, the teacher prompt, the summary mode, the answer checker, the text format): every one of its fields,
  with the teacher's identity, enters the work directory's fingerprint (:func:`generation_settings`).
  :class:`AssemblySettings` (the row prompt, the filters, the tokenizer and slot sizes) are applied when the
  dataset is assembled from the stored records and never enter it, so changing them re-assembles without
  asking the teacher anything. How the build runs (``shard_size``, ``resume``, ``work_dir``, ...) are plain
  keyword arguments of :func:`build_parallel_dataset`.
* **Output layout.** ``<output_dir>/dataset`` is a ``save_to_disk`` :class:`datasets.DatasetDict` with two
  SPLITS, ``nap`` and ``longcot`` (train with ``--dataset_name <output_dir>/dataset --dataset_train_split
  nap``); ``<output_dir>/nap.jsonl`` and ``<output_dir>/longcot.jsonl`` hold the same rows as JSON lines
  (``--dataset_name <output_dir>/nap.jsonl``); the Hub folder (:func:`nap_hf.hub.write_hub_folder`) has two
  CONFIGS, ``nap`` and ``longcot``, each with a ``train`` split (``load_dataset(repo, "nap")``,
  ``--dataset_config nap``). ``<output_dir>/stats.json`` holds the counts and the correctness statistics.
* **Rows.** Every row is in both forms :class:`~nap_hf.DiffusionSFTTrainer` takes, built from one prompt:
  conversational ``prompt`` (``[{"role": "user", "content": question}]``, the chat template is applied at
  training time with the generation prompt, as in evaluation) and ``completion`` (``[{"role": "assistant",
  ...}]``), and ``messages`` (prompt + completion), plus metadata (:data:`COLUMNS`).
* **Prompts.** The teacher sees ``teacher_prompt_template`` (default: the question, no extra instruction,
  docs/design.md §6) as one user message; the training rows carry ``prompt_template`` (default: the
  question), the prompt the NAP-trained model is evaluated with.
* **Seeds.** Path j (0-based) of problem ``id`` is sampled with :func:`path_seed` ``(seed, id, j)``, a
  SHA-256 of the three, so a rerun (or a resumed run) asks the teacher the very same requests.
* **Generation vs. filtering.** The work directory stores EVERY generated record (traces, teacher token
  counts, finish reasons, parsed answers, correctness, summary); the filters and the row prompt
  (:class:`AssemblySettings`) are applied when the dataset is assembled.
* **Work directory** (``<output_dir>/work`` unless ``work_dir`` is given): a :class:`nap_hf.io.JsonlStore` of
  shards ``shards/shard-000042.jsonl`` (a header line, then one complete record per problem; written
  atomically with fsync) and ``manifest.json`` (atomic, fsync: the settings, their fingerprint, the finished
  shards with their ids). A shard written but not yet listed (a kill between the two writes) is adopted when
  its header carries the same fingerprint; temporary files of a killed write are removed. One builder at a
  time per work directory (an ``flock`` on ``work/.lock``).
* **Drops** (each instance counted under its FIRST failing reason, in this order): ``empty_path`` (a blank
  trace), ``truncated_path`` (finish reason ``"length"``, with ``drop_truncated``), ``format_tags`` (a trace
  or summary that holds a tag of the format, so the instance would not read back as written),
  ``no_correct_path`` (with ``require_correct_path``), ``does_not_fit`` (with ``require_fit``: the trainer's
  own slot-aligned rule, :func:`~nap_hf.data.format.render_slot_aligned` of the parsed instance).
* **Teacher summaries** (``summary="teacher"``): the teacher gets :data:`SUMMARY_PROMPT` (question, the P
  attempts, the gold answer); a summary whose last ``\\boxed{}`` is not the gold answer gets the template
  sentence appended (``summary_source="teacher+template"``), an empty one or one holding a format tag is
  replaced by the template (``"template_fallback"``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

# .format: the helpers the builder uses (the same names nap_hf.data re-exports: an import list, not logic).
from ..io import JsonlStore, exclusive_lock, fsync_dir, replace_dir, write_jsonl_atomic, write_text_atomic
from .format import (
    DEFAULT_FORMAT,
    SUMMARY_TEMPLATE,
    NAPFormat,
    build_layout,
    encode_segment,
    parse_instance,
    parse_longcot,
    render_instance,
    render_longcot,
    render_slot_aligned,
    render_summary,
)
from .format import extract_answer as _boxed_answer

__all__ = [
    "SUMMARY_PROMPT",
    "DROP_REASONS",
    "COLUMNS",
    "GenerationSettings",
    "AssemblySettings",
    "SettingsMismatchError",
    "build_parallel_dataset",
    "generation_settings",
    "path_seed",
    "teacher_messages",
    "read_build_stats",
    "load_records",
]

logger = logging.getLogger(__name__)

SUMMARY_PROMPT = (
    "Here is a problem, {num_paths} independent attempts at solving it, and its correct final answer.\n\n"
    "Problem:\n{question}\n\n{attempts}\n\nCorrect final answer: {answer}\n\n"
    "Write a short summary (at most three sentences) that compares the attempts and says which of them reach "
    "the correct answer. End the summary with exactly: The final answer is \\boxed{{{answer}}}."
)
"""The prompt of a teacher-written summary (``summary="teacher"``): ``{num_paths}``, ``{question}``,
``{attempts}`` (``"Attempt 1:\\n{path}"`` blocks separated by blank lines) and ``{answer}`` (the gold answer)."""

DROP_REASONS: tuple[str, ...] = (
    "empty_path",
    "truncated_path",
    "format_tags",
    "no_correct_path",
    "does_not_fit",
)
"""Why an instance is left out, in the order the checks run (an instance counts under its first reason)."""

COLUMNS: dict[str, str] = {
    "prompt": "conversational prompt: [{'role': 'user', 'content': question}] (a system message first if set)",
    "completion": "[{'role': 'assistant', 'content': the NAP instance or the Long-CoT text}]",
    "messages": "prompt + completion (the conversational form)",
    "id": "problem id (from the source)",
    "source": "source dataset of the problem",
    "question": "the question text",
    "gold_answer": "the reference answer",
    "summary": "the summary (conditioned on the gold answer)",
    "summary_source": "'template', 'teacher', 'teacher+template' or 'template_fallback'",
    "path_answers": "the final answer parsed from each trace (null when none)",
    "path_correct": "whether each trace's answer matches the gold answer",
    "num_correct": "number of correct traces",
    "path_finish_reasons": "the teacher's finish reason of each trace ('stop', 'length', ...)",
    "path_num_tokens": "the teacher's token count of each trace (null when the teacher does not say)",
    "path_tokenizer_tokens": "tokens of each trace's slot content (trace + closing tag) in the `tokenizer` "
    "given to the builder (null without one)",
    "path_seeds": "the sampling seed of each trace",
}
"""The columns of both splits, with their meaning (also written into the dataset card)."""

_MANIFEST_FORMAT = "nap-hf/build-manifest"
_VERSION = 1
_SHARD_TAG = re.compile(r"^\d{6}$")  # shard-000042.jsonl
# describe() keys that do not change what the teacher writes (connection, speed, retries)
_OPERATIONAL_KEYS = frozenset(
    {
        "base_url",
        "max_concurrency",
        "concurrency",
        "timeout",
        "max_retries",
        "retries",
        "batch_size",
        "device",
        "device_map",
        "api_key",
        "backoff",
        "initial_backoff",
        "max_backoff",
        "client",
        "headers",
        "organization",
        "authenticated",
    }
)


class SettingsMismatchError(ValueError):
    """The work directory was started with other generation settings."""


# ------------------------------------------------------------------------------------------ the settings
def _check_int(name: str, value: Any, what: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"`{name}` must be an int >= 1 ({what}), got {value!r}.")


@dataclass(frozen=True)
class GenerationSettings:
    """What the teacher is asked: every field enters the work directory's fingerprint
    (:func:`generation_settings`), so a build resumes only with the same values.

    Args:
        num_paths: P, traces per question (the paper: 3).
        seed: base seed of the per-trace seeds (:func:`path_seed`).
        summary: ``"template"`` (the reference sentence with the gold answer, :func:`render_summary`) or
            ``"teacher"`` (the teacher summarises the traces given the gold answer, :data:`SUMMARY_PROMPT`).
        teacher_prompt_template / teacher_system_prompt: the teacher's request (``{question}`` is replaced).
        answer_task: ``"gsm8k"`` (numeric) or ``"math"`` (math-verify) answer checking; None picks ``gsm8k``
            for sources whose name contains "gsm", ``math`` otherwise.
        fmt: the NAP text format.
    """

    num_paths: int = 3
    seed: int = 0
    summary: Literal["template", "teacher"] = "template"
    teacher_prompt_template: str = "{question}"
    teacher_system_prompt: str | None = None
    answer_task: str | None = None
    fmt: NAPFormat = DEFAULT_FORMAT

    def __post_init__(self) -> None:
        _check_int("num_paths", self.num_paths, "traces per question")
        if self.summary not in ("template", "teacher"):
            raise ValueError(f"`summary` must be 'template' or 'teacher', got {self.summary!r}.")
        _fill(self.teacher_prompt_template, "", "teacher_prompt_template")
        if self.answer_task is not None:
            _answer_task("", self.answer_task)


@dataclass(frozen=True)
class AssemblySettings:
    """How the dataset is assembled from the stored records: none of these fields enters the fingerprint, so
    changing them (or the tokenizer) re-assembles without asking the teacher anything.

    Args:
        prompt_template / system_prompt: the prompt of the training rows (default: the question alone, as in
            evaluation).
        require_correct_path: drop instances with no correct trace.
        drop_truncated: drop instances with a trace cut at the token budget (finish reason ``"length"``).
        require_fit / tokenizer / path_length / summary_length: with ``require_fit`` drop instances whose paths
            or summary do not fit the slot-aligned layout of ``num_paths`` slots of ``path_length`` tokens and
            a summary slot of ``summary_length`` (the trainer's rule); a ``tokenizer`` alone adds token counts.
    """

    prompt_template: str = "{question}"
    system_prompt: str | None = None
    require_correct_path: bool = True
    drop_truncated: bool = True
    require_fit: bool = False
    tokenizer: Any = None
    path_length: int | None = None
    summary_length: int | None = None

    def __post_init__(self) -> None:
        _fill(self.prompt_template, "", "prompt_template")
        if not self.require_fit:
            return
        names = ("tokenizer", "path_length", "summary_length")
        missing = [n for n in names if getattr(self, n) is None]
        if missing:
            raise ValueError(
                f"`require_fit=True` needs {', '.join(f'`{m}`' for m in missing)}: the slot-aligned layout is "
                "measured with the student's tokenizer and slot sizes (e.g. path_length=330, summary_length=32)."
            )

    def record(self) -> dict[str, Any]:
        """The fields as written into ``stats.json`` (the tokenizer by its name)."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        out["tokenizer"] = (
            getattr(self.tokenizer, "name_or_path", None) if self.tokenizer is not None else None
        )
        return out

    def fit_rule(self, generation: GenerationSettings) -> tuple[Any, Any, int] | None:
        """``(tokenizer, layout, filler id)`` of the ``does_not_fit`` check, None without ``require_fit``."""
        if not self.require_fit:
            return None
        layout = build_layout(
            self.tokenizer, generation.num_paths, self.path_length, self.summary_length, generation.fmt
        )
        return self.tokenizer, layout, int(getattr(self.tokenizer, "eos_token_id", None) or 0)


def generation_settings(teacher: Any, generation: GenerationSettings | None = None) -> dict[str, Any]:
    """The fingerprinted record of a build: the teacher (its ``describe()`` minus connection settings), every
    :class:`GenerationSettings` field (``fmt`` as ``format``, an unset ``answer_task`` as ``"auto"``), and the
    summary prompt and template they imply."""
    generation = generation if generation is not None else GenerationSettings()
    out: dict[str, Any] = {"version": _VERSION, "teacher": _teacher_identity(teacher)}
    for f in dataclasses.fields(generation):
        out[f.name] = getattr(generation, f.name)
    out["format"] = asdict(out.pop("fmt"))
    out["answer_task"] = out["answer_task"] or "auto"
    out["summary_prompt"] = SUMMARY_PROMPT if generation.summary == "teacher" else None
    out["summary_template"] = SUMMARY_TEMPLATE
    return out


def _legacy_keywords(names: Sequence[str]) -> str:
    """The error for keywords of the flat signature: which settings object each one belongs to."""
    homes = {f.name: "GenerationSettings" for f in dataclasses.fields(GenerationSettings)}
    homes.update({f.name: "AssemblySettings" for f in dataclasses.fields(AssemblySettings)})
    unknown = [n for n in names if n not in homes]
    if unknown:
        return f"build_parallel_dataset() got unexpected keyword argument(s) {unknown}."
    moved = ", ".join(f"`{n}` -> {homes[n]}({n}=...)" for n in names)
    return (
        f"build_parallel_dataset() takes these settings as objects: {moved}; pass "
        "`generation=GenerationSettings(...)` and `assembly=AssemblySettings(...)`."
    )


# ------------------------------------------------------------------------------------------ small pieces
def path_seed(seed: int, problem_id: str, index: int | str) -> int:
    """The sampling seed of trace ``index`` (or ``"summary"``) of problem ``problem_id``: the first 31 bits of
    SHA-256(``seed``, ``problem_id``, ``index``), stable across runs, processes and Python versions (unlike
    ``hash()``)."""
    digest = hashlib.sha256(f"{int(seed)}\x1f{problem_id}\x1f{index}".encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF


def _fill(template: str, question: str, name: str) -> str:
    if not isinstance(template, str) or "{question}" not in template:
        raise ValueError(f"`{name}` must be a string containing '{{question}}', got {template!r}.")
    return template.replace("{question}", question)


def teacher_messages(
    question: str, template: str = "{question}", system_prompt: str | None = None
) -> list[dict[str, str]]:
    """The chat messages of one request: an optional system message, then one user message with ``template``'s
    ``{question}`` replaced by the question (other braces in the template are kept as written)."""
    messages = [{"role": "system", "content": system_prompt}] if system_prompt else []
    messages.append({"role": "user", "content": _fill(template, question, "template")})
    return messages


def _answer_task(problem_source: str, answer_task: str | None) -> str:
    """``gsm8k`` or ``math500`` (the answer checkers of :mod:`nap_hf.evaluation.answers`)."""
    from ..evaluation.answers import canonical_task

    if answer_task is not None:
        kind = canonical_task(answer_task)
        if kind == "gpqa":
            raise ValueError("`answer_task` must be 'gsm8k' or 'math' (GPQA questions are not NAP sources).")
        return kind
    return "gsm8k" if "gsm" in str(problem_source).lower() else "math500"


def _teacher_identity(teacher: Any) -> dict[str, Any]:
    """What decides the teacher's text: its ``describe()`` without connection / speed settings, plus its
    temperature and token budget."""
    try:
        described = dict(teacher.describe()) if hasattr(teacher, "describe") else {}
    except Exception as e:  # a describe() that fails must not hide the build
        logger.warning("teacher.describe() failed (%s); fingerprinting its class only", e)
        described = {}
    out = {k: v for k, v in described.items() if k not in _OPERATIONAL_KEYS}
    out.setdefault("class", type(teacher).__name__)
    for attr in ("temperature", "max_new_tokens"):
        if attr not in out and getattr(teacher, attr, None) is not None:
            out[attr] = getattr(teacher, attr)
    return json.loads(json.dumps(out, sort_keys=True, default=str))


def _fingerprint(settings: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _diff_keys(old: Any, new: Any, prefix: str = "") -> list[str]:
    if isinstance(old, Mapping) and isinstance(new, Mapping):
        out = []
        for k in sorted(set(old) | set(new)):
            out += _diff_keys(old.get(k), new.get(k), f"{prefix}{k}.")
        return out
    return [] if old == new else [prefix.rstrip(".")]


# ------------------------------------------------------------------------------------------ the work dir
class _WorkDir:
    """The build's :class:`~nap_hf.io.JsonlStore` (numbered shards written whole, each with a header) plus an
    atomic manifest; one builder at a time (:meth:`locked`)."""

    def __init__(self, root: Path):
        self.root = root
        self.store = JsonlStore(root / "shards", "shard", sep="-", header=True)
        self.manifest_path = root / "manifest.json"
        self.manifest: dict[str, Any] = {}

    def locked(self):
        """The ``flock`` on ``work/.lock`` (a context manager)."""
        return exclusive_lock(
            self.root / ".lock",
            f"another build is running in {self.root} (its lock is held); wait for it, or pass another "
            "`output_dir` / `work_dir`.",
        )

    def open(self, settings: dict[str, Any], *, resume: bool, force_resume: bool) -> None:
        """Start a new build, or continue the one in the work dir (same settings, or ``force_resume``)."""
        fingerprint = _fingerprint(settings)
        self.store.folder.mkdir(parents=True, exist_ok=True)
        for tmp in self.root.glob(".manifest.json.*"):
            tmp.unlink(missing_ok=True)  # a write killed before its rename
        self.store.remove_partial_writes()
        if self.manifest_path.exists() and not resume:
            logger.warning("resume=False: discarding the previous work in %s", self.root)
            self.store.clear()
            self.manifest_path.unlink()
        if self.manifest_path.exists():
            changed = self._continue(settings, fingerprint, force_resume)
        else:
            self.manifest = {
                "format": _MANIFEST_FORMAT,
                "version": _VERSION,
                "fingerprint": fingerprint,
                "settings": settings,
                "shards": [],
            }
            changed = True
        changed |= self._adopt_unlisted()
        if changed:
            self.save_manifest()

    def _continue(self, settings: dict[str, Any], fingerprint: str, force_resume: bool) -> bool:
        """Read the manifest and check its settings; True when it changed (``force_resume``)."""
        self.manifest = json.loads(self.manifest_path.read_text(encoding="utf-8"))
        if self.manifest.get("format") != _MANIFEST_FORMAT:
            raise ValueError(
                f"{self.manifest_path} is not a nap-hf build manifest; pass another `output_dir`."
            )
        if self.manifest["fingerprint"] == fingerprint:
            return False
        keys = _diff_keys(self.manifest.get("settings", {}), settings)
        if not force_resume:
            raise SettingsMismatchError(
                f"the work directory {self.root} was started with other generation settings "
                f"(differing: {', '.join(keys) or 'fingerprint'}). Rerun with the same settings to "
                "resume; or pass `force_resume=True` (--force_resume) to keep its finished questions "
                "and generate the rest with the new settings; or `resume=False` (--no_resume) to "
                "discard it; or use another `output_dir`."
            )
        fixed = [k for k in keys if k.split(".")[0] in ("num_paths", "format", "version")]
        if fixed:
            raise SettingsMismatchError(
                f"`force_resume` cannot mix instances built with other {', '.join(fixed)}: every instance "
                f"of a build has the same number of paths and format. Use another `output_dir`, or "
                "`resume=False` (--no_resume) to discard the previous work."
            )
        logger.warning("force_resume: keeping finished shards generated with other settings (%s)", keys)
        self.manifest.setdefault("previous_settings", []).append(self.manifest["settings"])
        self.manifest["settings"] = settings
        self.manifest["fingerprint"] = fingerprint
        return True

    def _adopt_unlisted(self) -> bool:
        """List the complete shards of this build that a kill left unlisted; True when there were any."""
        accepted = {
            self.manifest["fingerprint"],
            *(_fingerprint(s) for s in self.manifest.get("previous_settings", [])),
        }
        listed = {s["file"] for s in self.manifest["shards"]}
        adopted = False
        for path in self.store.shard_paths():
            if path.name in listed or not _SHARD_TAG.match(self.store.tag_of(path)):
                continue
            shard = self.store.read_shard(path)
            if not shard.complete or shard.header.get("fingerprint") not in accepted:
                logger.warning("ignoring %s: not a complete shard of this build", path)
                continue
            self.manifest["shards"].append(_shard_entry(path.name, shard.records))
            adopted = True
        self.manifest["shards"].sort(key=lambda s: s["file"])
        return adopted

    def save_manifest(self) -> None:
        self.manifest["num_records"] = sum(len(s["ids"]) for s in self.manifest["shards"])
        self.manifest["updated"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        write_text_atomic(self.manifest_path, json.dumps(self.manifest, indent=1) + "\n", fsync=True)
        fsync_dir(self.root)

    def done_ids(self) -> set[str]:
        return {i for s in self.manifest["shards"] for i in s["ids"]}

    def write_shard(self, records: list[dict[str, Any]]) -> str:
        """Write one shard (atomic, fsync), then list it in the manifest (atomic, fsync)."""
        used = [int(t) for p in self.store.shard_paths() if _SHARD_TAG.match(t := self.store.tag_of(p))]
        tag = f"{max(used, default=-1) + 1:06d}"
        path = self.store.shard_path(tag)
        self.store.write_shard(
            tag, records, {"shard": path.name, "fingerprint": self.manifest["fingerprint"]}
        )
        self.manifest["shards"].append(_shard_entry(path.name, records))
        self.save_manifest()
        return path.name

    def records(self) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for entry in self.manifest["shards"]:
            shard = self.store.read_shard(self.store.folder / entry["file"])
            if not shard.complete:
                logger.warning("the listed shard %s is incomplete or unreadable", shard.path)
            for r in shard.records:
                out[r["id"]] = r  # a later record of an id (force_resume) wins; ids are unique otherwise
        return out


def _shard_entry(name: str, records: list[dict[str, Any]]) -> dict[str, Any]:
    return {"file": name, "ids": [r["id"] for r in records]}


def load_records(work_dir: str | os.PathLike) -> dict[str, dict[str, Any]]:
    """Every finished record of a work directory (``<output_dir>/work``), by problem id: the raw traces,
    finish reasons, token counts, seeds, parsed answers, correctness and summary of each problem."""
    wd = _WorkDir(Path(work_dir))
    if not wd.manifest_path.exists():
        raise FileNotFoundError(
            f"no build manifest in {work_dir}; pass the `work` folder of a build's output_dir."
        )
    wd.manifest = json.loads(wd.manifest_path.read_text(encoding="utf-8"))
    return wd.records()


# ------------------------------------------------------------------------------------------ generation
def _completion_fields(c: Any) -> tuple[str, str | None, int | None]:
    if isinstance(c, str):
        return c, None, None
    text = getattr(c, "text", None)
    if text is None and isinstance(c, Mapping):
        return str(c.get("text") or ""), c.get("finish_reason"), c.get("num_tokens")
    return str(text or ""), getattr(c, "finish_reason", None), getattr(c, "num_tokens", None)


def _generate(teacher: Any, messages: list[list[dict[str, str]]], seeds: list[int]) -> list[tuple]:
    if not messages:
        return []
    out = list(teacher.generate(messages, seeds))
    if len(out) != len(messages):
        raise RuntimeError(
            f"the teacher returned {len(out)} completions for {len(messages)} requests; "
            "`Teacher.generate` must return one completion per (messages, seed) pair."
        )
    return [_completion_fields(c) for c in out]


def _majority(answers: Sequence[str | None], task: str) -> str | None:
    from ..evaluation.answers import normalize_number

    keys: Counter[str] = Counter()
    first: dict[str, str] = {}
    for a in answers:
        if a is None or not a.strip():
            continue
        key = (normalize_number(a) if task == "gsm8k" else None) or re.sub(r"\s+", "", a)
        keys[key] += 1
        first.setdefault(key, a)
    if not keys:
        return None
    best = max(keys.values())
    return next(first[k] for k in first if keys[k] == best)


def _generate_chunk(
    problems: Sequence[Any], teacher: Any, generation: GenerationSettings
) -> tuple[list[dict[str, Any]], int]:
    """Records of a chunk of problems (one ``generate`` call for all their paths, one for teacher summaries),
    and the number of teacher requests made."""
    g = generation
    messages, seeds = [], []
    for p in problems:
        m = teacher_messages(p.question, g.teacher_prompt_template, g.teacher_system_prompt)
        for j in range(g.num_paths):
            messages.append(m)
            seeds.append(path_seed(g.seed, p.id, j))
    outs = _generate(teacher, messages, seeds)
    records = [
        _path_record(
            p,
            outs[k * g.num_paths : (k + 1) * g.num_paths],
            seeds[k * g.num_paths : (k + 1) * g.num_paths],
            g.answer_task,
        )
        for k, p in enumerate(problems)
    ]
    requests = len(messages)
    if g.summary == "teacher":
        requests += _teacher_summaries(records, teacher, g)
    return records, requests


def _path_record(p: Any, block: Sequence[tuple], seeds: list[int], answer_task: str | None) -> dict[str, Any]:
    """The record of one problem from its P completions: traces, answers, correctness, the template summary."""
    from ..evaluation.answers import extract_answer, is_correct

    task = _answer_task(getattr(p, "source", ""), answer_task)
    gold = str(p.answer).strip()
    paths = [text.strip() for text, _, _ in block]
    answers = [extract_answer(t, task, nap=False, longcot=False) if t else None for t in paths]
    correct = [bool(is_correct(a, gold, task)) for a in answers]
    majority = _majority(answers, task)
    return {
        "id": str(p.id),
        "source": str(getattr(p, "source", "") or ""),
        "question": p.question,
        "gold_answer": gold,
        "answer_task": task,
        "paths": paths,
        "path_finish_reasons": [fr for _, fr, _ in block],
        "path_num_tokens": [n if n is None else int(n) for _, _, n in block],
        "path_seeds": seeds,
        "path_answers": answers,
        "path_correct": correct,
        "majority_answer": majority,
        "summary": render_summary(gold),
        "summary_source": "template",
        "num_correct": sum(correct),
        "majority_correct": majority is not None and bool(is_correct(majority, gold, task)),
    }


def _teacher_summaries(records: list[dict[str, Any]], teacher: Any, generation: GenerationSettings) -> int:
    """Replace the template summaries of ``records`` (those with a non-empty trace) by teacher-written ones
    (see the module doc); returns the number of requests."""
    from ..evaluation.answers import is_correct

    todo = [r for r in records if any(r["paths"])]
    prompts, seeds = [], []
    for r in todo:
        attempts = "\n\n".join(f"Attempt {j}:\n{t}" for j, t in enumerate(r["paths"], start=1))
        text = (
            SUMMARY_PROMPT.replace("{num_paths}", str(generation.num_paths))
            .replace("{question}", r["question"])
            .replace("{attempts}", attempts)
            .replace("{answer}", r["gold_answer"])
        )
        prompts.append(teacher_messages(text, "{question}", generation.teacher_system_prompt))
        seeds.append(path_seed(generation.seed, r["id"], "summary"))
    outs = _generate(teacher, prompts, seeds)
    tags = _format_tags(generation.fmt, generation.num_paths)
    for r, (text, finish, _), s in zip(todo, outs, seeds, strict=True):
        r["summary_seed"] = s
        r["summary_finish_reason"] = finish
        text = text.strip()
        if not text or any(t in text for t in tags):
            r["summary"], r["summary_source"] = render_summary(r["gold_answer"]), "template_fallback"
        elif is_correct(_boxed_answer(text), r["gold_answer"], r["answer_task"]):
            r["summary"], r["summary_source"] = text, "teacher"
        else:
            r["summary"] = f"{text} {render_summary(r['gold_answer'])}"
            r["summary_source"] = "teacher+template"
    return len(prompts)


def _format_tags(fmt: NAPFormat, m: int) -> list[str]:
    tags = [
        fmt.header(None).strip(),
        fmt.close(None).strip(),
        fmt.longcot_open.strip(),
        fmt.longcot_close.strip(),
    ]
    for j in range(1, m + 2):
        tags += [fmt.header(j).strip(), fmt.close(j).strip()]
    return tags


# ------------------------------------------------------------------------------------------ assembly
def _drop_reason(
    r: Mapping[str, Any],
    *,
    require_correct_path: bool,
    drop_truncated: bool,
    fit: tuple[Any, Any, int] | None,
    fmt: NAPFormat,
) -> str | None:
    paths, summary = r["paths"], r["summary"]
    if any(not p.strip() for p in paths):
        return "empty_path"
    if drop_truncated and any(fr == "length" for fr in r["path_finish_reasons"]):
        return "truncated_path"
    parsed = parse_instance(render_instance(paths, summary, fmt), fmt)
    chain = parse_longcot(render_longcot(paths, summary, fmt), fmt)
    if (
        parsed.paths != paths
        or parsed.summary != summary
        or chain.paths != [fmt.separator.join(paths)]
        or chain.summary != summary
    ):
        return "format_tags"
    if require_correct_path and not any(r["path_correct"]):
        return "no_correct_path"
    if fit is not None:
        tok, layout, filler = fit
        if render_slot_aligned(tok, parsed.paths, parsed.summary, layout, filler_id=filler, fmt=fmt) is None:
            return "does_not_fit"
    return None


def _correctness(records: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    n = len(records)
    paths = [c for r in records for c in r["path_correct"]]
    answered = [a is not None for r in records for a in r["path_answers"]]
    truncated = [fr == "length" for r in records for fr in r["path_finish_reasons"]]

    def frac(x: float, d: int) -> float | None:
        return round(x / d, 4) if d else None

    at_least_one = sum(1 for r in records if any(r["path_correct"]))
    all_correct = sum(1 for r in records if r["path_correct"] and all(r["path_correct"]))
    majority = sum(1 for r in records if r.get("majority_correct"))
    return {
        "instances": n,
        "paths": len(paths),
        "fraction_paths_correct": frac(sum(paths), len(paths)),
        "fraction_paths_with_answer": frac(sum(answered), len(answered)),
        "fraction_paths_truncated": frac(sum(truncated), len(truncated)),
        "instances_with_at_least_one_correct": at_least_one,
        "fraction_instances_with_at_least_one_correct": frac(at_least_one, n),
        "instances_with_all_correct": all_correct,
        "fraction_instances_with_all_correct": frac(all_correct, n),
        "majority_vote_accuracy": frac(majority, n),
    }


def _features():
    from datasets import Features, Value

    msg = [{"role": Value("string"), "content": Value("string")}]
    return Features(
        {
            "prompt": msg,
            "completion": msg,
            "messages": msg,
            "id": Value("string"),
            "source": Value("string"),
            "question": Value("string"),
            "gold_answer": Value("string"),
            "summary": Value("string"),
            "summary_source": Value("string"),
            "path_answers": [Value("string")],
            "path_correct": [Value("bool")],
            "num_correct": Value("int32"),
            "path_finish_reasons": [Value("string")],
            "path_num_tokens": [Value("int64")],
            "path_tokenizer_tokens": [Value("int64")],
            "path_seeds": [Value("int64")],
        }
    )


def _rows(
    r: Mapping[str, Any],
    *,
    prompt_template: str,
    system_prompt: str | None,
    fmt: NAPFormat,
    tokenizer: Any,
) -> tuple[dict[str, Any], dict[str, Any]]:
    prompt = teacher_messages(r["question"], prompt_template, system_prompt)
    tok_counts: list[int | None] = [None] * len(r["paths"])
    if tokenizer is not None:
        tok_counts = [
            len(encode_segment(tokenizer, p + fmt.close(j))) for j, p in enumerate(r["paths"], start=1)
        ]
    meta = {
        "id": r["id"],
        "source": r["source"],
        "question": r["question"],
        "gold_answer": r["gold_answer"],
        "summary": r["summary"],
        "summary_source": r["summary_source"],
        "path_answers": r["path_answers"],
        "path_correct": r["path_correct"],
        "num_correct": r["num_correct"],
        "path_finish_reasons": r["path_finish_reasons"],
        "path_num_tokens": r["path_num_tokens"],
        "path_tokenizer_tokens": tok_counts,
        "path_seeds": r["path_seeds"],
    }
    out = []
    for text in (
        render_instance(r["paths"], r["summary"], fmt),
        render_longcot(r["paths"], r["summary"], fmt),
    ):
        completion = [{"role": "assistant", "content": text}]
        out.append({"prompt": prompt, "completion": completion, "messages": prompt + completion, **meta})
    return out[0], out[1]


def _save_outputs(data: Any, output_dir: Path, progress: bool) -> None:
    """``dataset/`` (save_to_disk, atomic), ``nap.jsonl`` and ``longcot.jsonl`` (atomic)."""
    import datasets as ds_lib

    for stale in output_dir.glob(".dataset.*.tmp"):
        shutil.rmtree(stale, ignore_errors=True)
    was_disabled = ds_lib.are_progress_bars_disabled()
    if not progress:
        ds_lib.disable_progress_bars()
    staging = Path(tempfile.mkdtemp(dir=output_dir, prefix=".dataset.", suffix=".tmp"))
    try:
        data.save_to_disk(str(staging / "d"))
        replace_dir(staging / "d", output_dir / "dataset")
        for split, ds in data.items():
            write_jsonl_atomic(output_dir / f"{split}.jsonl", _iter_rows(ds))
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        if not was_disabled:
            ds_lib.enable_progress_bars()


def _iter_rows(ds: Any):
    for batch in ds.iter(batch_size=1000):
        for values in zip(*batch.values(), strict=True):
            yield dict(zip(batch, values, strict=True))


def _json_safe(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


# ------------------------------------------------------------------------------------------ the builder
def _problem_list(problems: Any, source_info: Mapping[str, Any] | None) -> tuple[list[Any], Any]:
    """The problems as a list (ids checked unique) and the source information (a ProblemSet's ``info``)."""
    info = source_info
    if hasattr(problems, "problems"):
        info = info if info is not None else getattr(problems, "info", None)
        problems = problems.problems
    problems = list(problems)
    dupes = sorted(i for i, c in Counter(str(p.id) for p in problems).items() if c > 1)
    if dupes:
        raise ValueError(
            f"problem ids must be unique; repeated: {dupes[:10]}{' ...' if len(dupes) > 10 else ''}."
        )
    return problems, info


def _generate_missing(
    wd: _WorkDir,
    problems: list[Any],
    teacher: Any,
    generation: GenerationSettings,
    shard_size: int,
    progress: bool,
) -> tuple[int, int]:
    """Ask the teacher for the problems the work directory does not hold yet, one shard at a time; returns
    (problems generated, teacher requests)."""
    done = wd.done_ids()
    todo = [p for p in problems if str(p.id) not in done]
    requests = 0
    bar = _progress(total=len(problems), initial=len(problems) - len(todo), enabled=progress)
    try:
        for start in range(0, len(todo), shard_size):
            chunk = todo[start : start + shard_size]
            records, n = _generate_chunk(chunk, teacher, generation)
            requests += n
            wd.write_shard(records)
            bar.update(len(chunk))
    finally:
        bar.close()
    return len(todo), requests


def _assemble(
    problems: list[Any],
    records: Mapping[str, dict[str, Any]],
    generation: GenerationSettings,
    assembly: AssemblySettings,
) -> tuple[Any, list[dict[str, Any]], list[dict[str, Any]], Counter]:
    """The ``nap`` / ``longcot`` DatasetDict of the records that pass the filters, with the kept records, all
    records of ``problems`` and the drops by reason."""
    from datasets import Dataset, DatasetDict

    fit = assembly.fit_rule(generation)
    rows: dict[str, list[dict[str, Any]]] = {"nap": [], "longcot": []}
    kept, chosen, dropped_by = [], [], Counter()
    for p in problems:
        r = records[str(p.id)]
        if r["question"] != p.question or r["gold_answer"] != str(p.answer).strip():
            raise ValueError(
                f"the work directory holds another question or answer for id {p.id!r}; problem ids must "
                "identify a question. Use another `output_dir` (or `work_dir`) for another source."
            )
        chosen.append(r)
        reason = _drop_reason(
            r,
            require_correct_path=assembly.require_correct_path,
            drop_truncated=assembly.drop_truncated,
            fit=fit,
            fmt=generation.fmt,
        )
        if reason is not None:
            dropped_by[reason] += 1
            continue
        kept.append(r)
        nap_row, cot_row = _rows(
            r,
            prompt_template=assembly.prompt_template,
            system_prompt=assembly.system_prompt,
            fmt=generation.fmt,
            tokenizer=assembly.tokenizer,
        )
        rows["nap"].append(nap_row)
        rows["longcot"].append(cot_row)
    features = _features()
    data = DatasetDict(
        {
            name: Dataset.from_dict({k: [row[k] for row in split] for k in features}, features=features)
            for name, split in rows.items()
        }
    )
    return data, kept, chosen, dropped_by


def _stats(
    wd: _WorkDir,
    assembly: AssemblySettings,
    info: Any,
    problems: list[Any],
    kept: list[dict[str, Any]],
    chosen: list[dict[str, Any]],
    dropped_by: Counter,
    generated: tuple[int, int],
    started: float,
) -> dict[str, Any]:
    """The ``stats.json`` of a build."""
    return {
        "generation_settings": wd.manifest["settings"],
        "fingerprint": wd.manifest["fingerprint"],
        "assembly": assembly.record(),
        "source": _json_safe(dict(info)) if info else None,
        "sources": dict(Counter(r["source"] for r in kept)),
        "counts": {
            "problems": len(problems),
            "generated_this_run": generated[0],
            "teacher_requests_this_run": generated[1],
            "kept": len(kept),
            "dropped": sum(dropped_by.values()),
            "dropped_by_reason": {k: dropped_by.get(k, 0) for k in DROP_REASONS},
        },
        "correctness": {"all": _correctness(chosen), "kept": _correctness(kept)},
        "summary_sources": dict(Counter(r["summary_source"] for r in kept)),
        "seconds_this_run": round(time.time() - started, 2),
    }


def build_parallel_dataset(
    problems: Any,
    teacher: Any,
    output_dir: str | os.PathLike,
    generation: GenerationSettings | None = None,
    assembly: AssemblySettings | None = None,
    *,
    shard_size: int = 32,
    resume: bool = True,
    force_resume: bool = False,
    progress: bool = True,
    source_info: Mapping[str, Any] | None = None,
    work_dir: str | os.PathLike | None = None,
    **flat_settings: Any,
):
    """Build NAP training data from ``problems`` with ``teacher`` (docs/design.md §6) and return a
    :class:`datasets.DatasetDict` with the splits ``nap`` and ``longcot`` (the same instances, the same traces).

    For every problem the teacher writes ``num_paths`` independent traces (seeds :func:`path_seed`), each
    trace's answer is parsed and checked against the gold answer (:mod:`nap_hf.evaluation.answers`), and the
    summary is conditioned on the gold answer. Work is saved shard by shard; rerunning the same call after an
    interruption (even SIGKILL) asks the teacher only for what is missing. Outputs in ``output_dir``:
    ``dataset/`` (``save_to_disk``), ``nap.jsonl``, ``longcot.jsonl``, ``stats.json`` and ``work/``.

    Args:
        problems: a :class:`~nap_hf.data.sources.ProblemSet` (its ``info`` is used as ``source_info``) or a
            sequence of problems (objects with ``id``, ``question``, ``answer`` and ``source``); ids must be
            unique.
        teacher: a :class:`~nap_hf.data.teachers.Teacher` (``generate(messages, seeds)``); it is called once per
            shard with ``shard_size * num_paths`` requests (an OpenAI-compatible teacher runs them
            concurrently, a Transformers teacher in batches).
        output_dir: where the outputs (and, by default, the work directory) go.
        generation: what the teacher is asked (:class:`GenerationSettings`; fingerprinted).
        assembly: the row prompt and the filters (:class:`AssemblySettings`; not fingerprinted).
        shard_size: problems per shard (and per teacher call).
        resume: continue the build found in the work directory (False: discard it and start over).
        force_resume: continue even though the generation settings changed (finished questions are kept).
        progress: show a tqdm bar (questions, with rate and ETA).
        source_info: information about the source (licence, decontamination, ...) for ``stats.json`` and the
            card; defaults to ``problems.info``.
        work_dir: the work directory (default ``output_dir/work``); builds that differ only in assembly
            settings can share one.

    Raises:
        SettingsMismatchError: the work directory holds a build with other generation settings.
    """
    if flat_settings:
        raise TypeError(_legacy_keywords(list(flat_settings)))
    generation = generation if generation is not None else GenerationSettings()
    assembly = assembly if assembly is not None else AssemblySettings()
    for name, value, kind in (
        ("generation", generation, GenerationSettings),
        ("assembly", assembly, AssemblySettings),
    ):
        if not isinstance(value, kind):
            raise TypeError(f"`{name}` must be a {kind.__name__}, got {type(value).__name__}.")
    _check_int("shard_size", shard_size, "problems per shard")
    if not hasattr(teacher, "generate"):
        raise ValueError(
            f"`teacher` must have a `generate(messages, seeds)` method, got {type(teacher).__name__}."
        )
    assembly.fit_rule(generation)  # a layout that cannot be built fails before the teacher is asked
    problems, info = _problem_list(problems, source_info)
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    started = time.time()
    wd = _WorkDir(Path(work_dir) if work_dir is not None else output_dir / "work")
    with wd.locked():
        wd.open(generation_settings(teacher, generation), resume=resume, force_resume=force_resume)
        generated = _generate_missing(wd, problems, teacher, generation, shard_size, progress)
        records = wd.records()
    data, kept, chosen, dropped_by = _assemble(problems, records, generation, assembly)
    stats = _stats(wd, assembly, info, problems, kept, chosen, dropped_by, generated, started)
    _save_outputs(data, output_dir, progress)
    write_text_atomic(
        output_dir / "stats.json", json.dumps(stats, indent=2, ensure_ascii=False) + "\n", fsync=True
    )
    logger.info("NAP build: %d kept of %d problems (dropped: %s)", len(kept), len(problems), dict(dropped_by))
    return data


def _progress(total: int, initial: int, enabled: bool):
    try:
        from tqdm.auto import tqdm
    except ImportError:  # pragma: no cover - tqdm comes with transformers / datasets
        enabled = False
    if not enabled:
        return _NoBar()
    return tqdm(
        total=total, initial=initial, unit="question", desc="NAP build", dynamic_ncols=True, smoothing=0.1
    )


class _NoBar:
    def update(self, n: int) -> None:
        pass

    def close(self) -> None:
        pass


def read_build_stats(output_dir: str | os.PathLike) -> dict[str, Any]:
    """The ``stats.json`` of a finished build (counts, correctness, drops, settings, source info)."""
    path = Path(output_dir) / "stats.json"
    if not path.is_file():
        raise FileNotFoundError(f"no stats.json in {output_dir}: run build_parallel_dataset there first.")
    return json.loads(path.read_text(encoding="utf-8"))
