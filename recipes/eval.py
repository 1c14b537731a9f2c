"""Evaluate a LLaDA / Dream checkpoint on GSM8K / MATH-500 / GPQA under a sweep of decoding strategies and
step budgets, and write the paper's tables (ours beside the paper's numbers) and figures.

Writes to `--out-dir` (default `outputs/eval/<model label>`): `records/*.jsonl` (one line per example: id,
prompt, prediction, parsed answer, gold, correct, Global-ARness@1, NFE, seconds), `summary.json` (every setting
that moves the numbers, per-run accuracy / ARness / NFE / tokens per step), `traces/*.json` (decoding traces of
the first example), `tables.md` (Tables 1-5 in the paper's layout, `ours (paper)`) and `figure2.png`
(accuracy per decoding order; `figure1.png` / `figure4.png` when the runs allow). Restarting the same command
resumes: finished examples are skipped. Run from the repository root.

# One GPU: the Table 3 sweep of NAP-LLaDA (parallel-forced, m = 3, 330-token paths, 32-token summary)
```bash
python recipes/eval.py --model outputs/nap-llada-8b-instruct --training nap --task gsm8k \
    --strategy parallel_forced --steps 256 336 512 1024 --m 3 --batch-size 8
```

# 8 GPUs, data parallel (examples sharded over processes, results merged, identical to one process)
```bash
accelerate launch --num_processes 8 recipes/eval.py --model GSAI-ML/LLaDA-8B-Instruct --task gsm8k \
    --strategy parallel_forced confidence random ar --steps 256 336 512 1024 --m 3 --batch-size 8
```
(`--multi_gpu` is implied by `--num_processes > 1` on a GPU machine; `--config_file
recipes/accelerate_configs/ddp.yaml` works too.)

# Quick look: 50 problems
```bash
python recipes/eval.py --model Dream-org/Dream-v0-Instruct-7B --task gsm8k --strategy confidence ar \
    --steps 256 --limit 50
```

# Rebuild the tables and figures of every run under a folder (one sub-folder per model)
```bash
python recipes/eval.py --tables-only --out-dir outputs/eval
```

# CPU smoke run (a tiny random model: accuracy ~0, the plumbing is real)
```bash
python -m nap_hf.testing tiny-llada outputs/tiny-llada
python recipes/eval.py --model outputs/tiny-llada --task gsm8k --limit 5 --steps 8 16 \
    --path-length 8 --summary-length 8 --dtype float32
```

Defaults (all recorded in `summary.json`): zero-shot; the chat template with the generation prompt; NAP
canvas runs and fine-tuned models (`--training nap|longcot`) get the question alone (as in training), base
models on the plain canvas the question plus the chain-of-thought instruction; path_length = 990 / m, summary
32; baselines generate the NAP canvas length; LLaDA baselines are block-wise (block_length 32), Dream
baselines have no blocks; greedy (temperature 0); bf16. See `nap_hf.evaluation.runner` for every rule.

The model is loaded through `nap_hf`'s Auto classes (local LLaDA / Dream code); remote code is never run
unless you pass `--trust-remote-code`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

_DTYPES = ("bfloat16", "float16", "float32", "float64", "auto")


def make_parser() -> argparse.ArgumentParser:
    from nap_hf.evaluation.runner import DEFAULT_STEPS, DEFAULT_STRATEGIES

    p = argparse.ArgumentParser(
        prog="recipes/eval.py",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    g = p.add_argument_group("model")
    g.add_argument("--model", help="checkpoint path or Hub id (required unless --tables-only)")
    g.add_argument("--revision", default=None, help="Hub revision")
    g.add_argument("--dtype", default="bfloat16", choices=_DTYPES)
    g.add_argument(
        "--training",
        default="base",
        choices=("base", "longcot", "nap"),
        help="what the model is (its column in the tables; fine-tuned models are prompted as in training)",
    )
    g.add_argument(
        "--model-label", default=None, help="name in the tables (default: the model's folder name)"
    )
    g.add_argument("--trust-remote-code", action="store_true", help="allow the checkpoint's own code (off)")

    g = p.add_argument_group("task")
    g.add_argument("--task", nargs="+", default=["gsm8k"], help="gsm8k, math500, gpqa_diamond, gpqa_main")
    g.add_argument("--source", default=None, help="task data: a local file, 'offline', 'hub' or a Hub id")
    g.add_argument("--limit", type=int, default=None, help="first N examples only")

    g = p.add_argument_group("decoding sweep")
    g.add_argument(
        "--strategy",
        nargs="+",
        default=list(DEFAULT_STRATEGIES),
        help="generate strategies (ar, confidence, random, threshold, dream, parallel_forced); "
        "'<strategy>:nap' decodes on the structured NAP canvas",
    )
    g.add_argument("--steps", nargs="+", type=int, default=list(DEFAULT_STEPS), help="total step budgets")
    g.add_argument("--m", nargs="+", type=int, default=[3], help="parallel paths of the NAP canvas")
    g.add_argument(
        "--path-length", type=int, default=None, help="positions per path (default: path budget / m)"
    )
    g.add_argument("--path-budget", type=int, default=990, help="m x path_length when --path-length is unset")
    g.add_argument("--summary-length", type=int, default=32)
    g.add_argument("--summary", default="after", choices=("after", "concurrent"))
    g.add_argument(
        "--gen-length", type=int, default=None, help="plain canvas length (default: NAP canvas length)"
    )
    g.add_argument(
        "--block-length",
        type=int,
        default=None,
        help="plain-canvas blocks (default: 32 for LLaDA and Fast-dLLM, none for Dream; 0: no blocks)",
    )
    g.add_argument("--temperature", type=float, default=0.0)
    g.add_argument("--score", default="confidence", choices=("confidence", "margin", "entropy"))
    g.add_argument("--threshold", type=float, default=0.9, help="Fast-dLLM threshold (strategy threshold)")
    g.add_argument("--alg", default="maskgit_plus", help="Dream's rule (strategy dream)")
    g.add_argument("--cfg-scale", type=float, default=0.0)
    g.add_argument(
        "--suppress-eos", action="store_true", help="forbid EOS on the plain canvas (logits_eos_inf)"
    )

    g = p.add_argument_group("prompt")
    g.add_argument("--prompt-style", default="auto", choices=("auto", "question", "cot"))
    g.add_argument("--no-chat-template", action="store_true", help="prompt with the raw text")
    g.add_argument("--system-prompt", default=None)

    g = p.add_argument_group("run")
    g.add_argument("--out-dir", default=None, help="default: outputs/eval/<model label>")
    g.add_argument("--batch-size", type=int, default=1)
    g.add_argument("--seed", type=int, default=0)
    g.add_argument(
        "--save-traces", type=int, default=1, help="keep the decoding trace of the first N examples"
    )
    g.add_argument("--no-progress", action="store_true")
    g.add_argument(
        "--tables-only",
        action="store_true",
        help="rebuild tables.md and the figures from every summary.json under --out-dir; no decoding",
    )
    return p


def load_model(args, device):
    import torch
    from transformers import AutoModel, AutoTokenizer

    import nap_hf  # noqa: F401  (registers LLaDA and Dream with the Auto classes)

    dtype = "auto" if args.dtype == "auto" else getattr(torch, args.dtype)
    model = AutoModel.from_pretrained(
        args.model, dtype=dtype, revision=args.revision, trust_remote_code=args.trust_remote_code
    )
    tokenizer = AutoTokenizer.from_pretrained(
        args.model, revision=args.revision, trust_remote_code=args.trust_remote_code
    )
    return model.to(device).eval(), tokenizer


def main(argv: list[str] | None = None) -> int:
    parser = make_parser()
    args = parser.parse_args(argv)
    from nap_hf.evaluation.tables import load_summaries, write_report

    if args.tables_only:
        root = Path(args.out_dir or "outputs/eval")
        summaries = load_summaries(root)
        if not summaries:
            parser.error(f"no summary.json under {root}")
        for name, path in write_report(summaries, root).items():
            print(f"{name}: {path}")
        return 0
    if not args.model:
        parser.error("--model is required (or --tables-only)")
    if args.limit is not None and args.limit < 1:
        parser.error("--limit must be >= 1")

    import torch
    from accelerate import PartialState

    from nap_hf.evaluation.runner import run_eval

    # on a machine without CUDA, a multi-process launch joins a gloo group on the CPU
    state = PartialState(cpu=not torch.cuda.is_available())
    label = args.model_label or Path(args.model.rstrip("/")).name
    out_dir = Path(args.out_dir or Path("outputs/eval") / label)
    model, tokenizer = load_model(args, state.device)
    summary = None
    for task in args.task:
        summary = run_eval(
            model,
            tokenizer,
            task,
            args.strategy,
            args.steps,
            args.m,
            out_dir=out_dir,
            accelerator=state,
            progress=not args.no_progress,
            model=args.model,
            model_label=label,
            training=args.training,
            source=args.source,
            limit=args.limit,
            path_length=args.path_length,
            path_budget=args.path_budget,
            summary_length=args.summary_length,
            summary=args.summary,
            gen_length=args.gen_length,
            block_length=args.block_length,
            temperature=args.temperature,
            score=args.score,
            threshold=args.threshold,
            alg=args.alg,
            cfg_scale=args.cfg_scale,
            suppress_eos=args.suppress_eos,
            prompt_style=args.prompt_style,
            chat_template=not args.no_chat_template,
            system_prompt=args.system_prompt,
            seed=args.seed,
            batch_size=args.batch_size,
            save_traces=args.save_traces,
        )
    if state.is_main_process:
        written = write_report(load_summaries(out_dir), out_dir)
        tasks = _canonical(args.task)
        for run in (summary or {}).get("runs", {}).values():
            if run["task"] not in tasks:
                continue
            acc = "-" if run.get("accuracy") is None else f"{run['accuracy']:.1f}"
            arness = "-" if run.get("arness") is None else f"{run['arness']:.3f}"
            m = "" if run.get("m") is None else f"m {run['m']}"
            print(
                f"{run['task']:>12} {run['strategy']:>20} steps {run['steps']:>5} {m:>4}  acc {acc:>5}  "
                f"ARness {arness}  NFE {run['nfe']:.0f}  n {run['n']}"
            )
        for name, path in written.items():
            print(f"{name}: {path}")
    state.wait_for_everyone()
    return 0


def _canonical(tasks: list[str]) -> list[str]:
    from nap_hf.evaluation.tasks import _spec

    return [_spec(t).name for t in tasks]


if __name__ == "__main__":
    sys.exit(main())
