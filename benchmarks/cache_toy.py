"""KV caching and early exit on nap-tiny (docs/caching.md): parallel-forced decoding of held-out toy problems
with `cache_implementation` None / "prefix" / "dual" and `early_stop` off / on, at k = 1 / 2 / 4 tokens per
step: accuracy, NFE and wall time in one table. Also the refresh policies of the dual cache (`cache_refresh`
"any" / "all" / every 4 steps) and Fast-dLLM's threshold rule on the structured canvas with and without the
dual cache.

The cache needs blocks inside the paths: every cached row and its no-cache twin use `block_length=10` (two
blocks per 20-position path slot); the rows "no blocks" are the shipped setting (toy_replication.py).
Each configuration is one JSON file under `--out`; a re-run skips those already there (resumable). NFE: the
forward passes of a batch of 100 (with early exit, the batch runs until its slowest row is done) and per
problem (its last commit's step + 1). Wall times come from runs made one after the other on a shared machine:
their ratios carry the load of the moment (benchmarks/decode.py --cache measures speed side by side).

`--isolated` runs models/nap-tiny-isolated with `path_isolation=True` instead (docs/isolation.md): no cache and
the dual cache inside the path rows, blocks of 10 and no blocks, at each k; files `iso-*.json`, table
`table-iso-n200.md`. The prompt's cache is exact there, so only the paths' blocks are approximated.

```bash
OMP_NUM_THREADS=1 python benchmarks/cache_toy.py --threads 1            # 200 problems (about an hour here)
OMP_NUM_THREADS=1 python benchmarks/cache_toy.py --threads 1 --isolated # nap-tiny-isolated (about 15 min)
python benchmarks/cache_toy.py --n 40 --ks 1                            # a quick look
python benchmarks/cache_toy.py --render                                 # the table from the files only
```
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from nap_hf.io import write_text_atomic  # noqa: E402

BLOCK = 10


def configurations(ks: list[int]) -> list[tuple[str, dict]]:
    """(key, generate overrides) in the order they run: the main table first."""
    out = []
    for k in ks:
        for early in (False, True):
            for cache in (None, "prefix", "dual"):
                extra = {"block_length": BLOCK, "cache_implementation": cache, "early_stop": early}
                out.append((f"pf-k{k}-b{BLOCK}-{cache or 'none'}-es{int(early)}", {"k": k, **extra}))
    for k in ks:
        out.append((f"pf-k{k}-noblocks-none-es0", {"k": k}))
    for k in ks[:2]:
        for refresh in ("all", 4):
            extra = {"block_length": BLOCK, "cache_implementation": "dual", "cache_refresh": refresh}
            out.append((f"pf-k{k}-b{BLOCK}-dual-refresh{refresh}", {"k": k, **extra}))
    for cache in (None, "dual"):
        out.append(
            (
                f"threshold-nap-{cache or 'none'}",
                {"strategy": "threshold", "canvas": "nap", "cache_implementation": cache},
            )
        )
    return out


def isolated_configurations(ks: list[int]) -> list[tuple[str, dict]]:
    """`--isolated`: every row decodes with isolated paths; no cache and the dual cache in the path rows."""
    out = []
    for k in ks:
        for cache in (None, "dual"):
            extra = {"block_length": BLOCK, "cache_implementation": cache, "path_isolation": True}
            out.append((f"iso-pf-k{k}-b{BLOCK}-{cache or 'none'}-es0", {"k": k, **extra}))
    for k in ks:
        out.append((f"iso-pf-k{k}-noblocks-none-es0", {"k": k, "path_isolation": True}))
    return out


def run_one(model, tok, problems, spec: dict, batch_size: int) -> dict:
    from nap_hf.data import build_layout
    from nap_hf.evaluation.toy import (
        TOY_SUMMARY_LENGTH,
        ToyDecoding,
        score_toy_records,
        toy_path_length,
        toy_prompts,
        toy_record,
    )

    spec = dict(spec)
    k = spec.pop("k", 1)
    if spec.get("strategy") == "threshold":
        kwargs = {
            "strategy": "threshold",
            "canvas": "nap",
            "m": 3,
            "path_length": toy_path_length(1),
            "summary_length": TOY_SUMMARY_LENGTH,
            "gen_length": build_layout(tok, 3, toy_path_length(1), TOY_SUMMARY_LENGTH).length,
            "steps": 3 * toy_path_length(1) + TOY_SUMMARY_LENGTH,
            "tokenizer": tok,
        }
    else:
        kwargs = ToyDecoding(strategy="parallel_forced", tokens_per_step=k).generate_kwargs(tok)
    kwargs.update(spec)
    records, nfe, row_nfe = [], [], []
    t0 = time.perf_counter()
    for start in range(0, len(problems), batch_size):
        batch = problems[start : start + batch_size]
        out = model.generate(**toy_prompts(tok, batch), return_dict_in_generate=True, **kwargs)
        nfe.append(out.nfe)
        row_nfe += (out.trace.max(-1).values + 1).tolist()  # the forward passes each problem needed
        records += [toy_record(p, out.answer[i], out.paths[i]) for i, p in enumerate(batch)]
    seconds = time.perf_counter() - t0
    scores = score_toy_records(records)
    return {
        "accuracy": scores["accuracy"],
        "nfe": sum(nfe) / len(nfe),
        "row_nfe": sum(row_nfe) / len(row_nfe),
        "seconds": round(seconds, 1),
        "n": len(records),
        "k": k,
        "settings": {key: value for key, value in kwargs.items() if key != "tokenizer"},
    }


def baseline_key(key: str, row: dict) -> str:
    """The no-cache twin of a configuration: same k, blocks and early_stop (refresh rows: early_stop off)."""
    if key.startswith("threshold"):
        return "threshold-nap-none"
    if "refresh" in key:
        return f"pf-k{row['k']}-b{BLOCK}-none-es0"
    return key.replace("-prefix-", "-none-").replace("-dual-", "-none-")


def table(results: dict[str, dict]) -> str:
    lines = [
        "| configuration | accuracy (%) | NFE (batch of 100) | NFE per problem | wall (s) | wall speed-up vs "
        "same-k no cache |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for key, row in results.items():
        base = results.get(baseline_key(key, row))
        speed = f"{base['seconds'] / row['seconds']:.2f}x" if base else "n/a"
        row_nfe = f"{row['row_nfe']:.1f}" if "row_nfe" in row else "n/a"
        lines.append(
            f"| {key} | {100 * row['accuracy']:.1f} | {row['nfe']:.1f} | {row_nfe} | {row['seconds']:.1f} | {speed} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=None, help="default models/nap-tiny (models/nap-tiny-isolated)")
    parser.add_argument(
        "--isolated",
        action="store_true",
        help="nap-tiny-isolated, path_isolation=True: none vs dual in the rows",
    )
    parser.add_argument("--n", type=int, default=200, help="held-out problems")
    parser.add_argument("--ks", type=int, nargs="+", default=[1, 2, 4], help="tokens per step")
    parser.add_argument("--batch_size", type=int, default=100)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--render", action="store_true", help="print the table from the saved files only")
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "cache_toy"))
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    from transformers import AutoModel, AutoTokenizer

    import nap_hf  # noqa: F401
    from nap_hf.data.toy_arithmetic import ToyArithmetic

    if args.model is None:
        args.model = str(REPO / "models" / ("nap-tiny-isolated" if args.isolated else "nap-tiny"))
    out = Path(args.out)
    tag = "iso-" if args.isolated else ""
    model = tok = problems = None
    results: dict[str, dict] = {}
    for key, spec in (isolated_configurations if args.isolated else configurations)(args.ks):
        file = out / f"{key}-n{args.n}.json"
        if file.exists():
            results[key] = json.loads(file.read_text())
            continue
        if args.render:
            continue
        if model is None:
            model, tok = (
                AutoModel.from_pretrained(args.model).eval(),
                AutoTokenizer.from_pretrained(args.model),
            )
            task = ToyArithmetic(seed=0, digits=1)
            problems = [task.problem(i, "test") for i in range(args.n)]
            run_one(model, tok, problems[:2], spec, args.batch_size)  # warm-up, not timed
        row = run_one(model, tok, problems, spec, args.batch_size)
        write_text_atomic(file, json.dumps(row) + "\n")
        results[key] = row
        print(
            f"{key:36s} acc {100 * row['accuracy']:5.1f}%  NFE {row['nfe']:6.1f}  {row['seconds']:7.1f} s",
            flush=True,
        )
        write_text_atomic(out / f"table-{tag}n{args.n}.md", table(results))
    text = table(results)
    write_text_atomic(out / f"table-{tag}n{args.n}.md", text)
    print("\n" + text)


if __name__ == "__main__":
    main()
