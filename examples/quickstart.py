"""Quickstart: NAP-D with the embedded nap-tiny model, then every decoding strategy and how autoregressive it is.

    make demo                      # set-up + this script, offline
    python examples/quickstart.py --model PATH_OR_HUB_ID   # any LLaDA / Dream checkpoint: every strategy

With the embedded model (`models/nap-tiny`, a ~2M-parameter LLaDA-architecture model trained here on toy
arithmetic by `recipes/nap_tiny.py`), the demo solves held-out problems with
`generate(strategy="parallel_forced", m=3)`: the canvas fills step by step, then the three paths, the summary,
the answer against the gold answer, NFE and Global-ARness@1 are printed and the decoding-dynamics figure is
written to `outputs/demo/`. Without it (or with `--untrained`), the default model is a seeded tiny RANDOM
LLaDA checkpoint in the hub's exact format, clearly labelled: its text is noise, but the decoding orders, NFE,
AR-ness and the trace are the real machinery. The trace of every run is written to `outputs/demo/traces.json`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import torch
from transformers import AutoModel, AutoTokenizer

import nap_hf  # noqa: F401  (registers LLaDA / Dream with the Auto classes)
from nap_hf.metrics import global_arness, local_arness
from nap_hf.testing import write_tiny_llada

PF = dict(m=3, path_length=16, summary_length=8)  # parallel-forced canvas: 3 x 16 + 8 slots, headers clamped
RUNS = [
    # (label, generate kwargs)
    ("ar", dict(strategy="ar")),
    ("confidence", dict(strategy="confidence")),
    ("confidence, blocks of 16", dict(strategy="confidence", block_length=16)),
    ("confidence, margin", dict(strategy="confidence", score="margin")),
    ("random", dict(strategy="random", seed=0)),
    ("threshold 0.9 (Fast-dLLM)", dict(strategy="threshold", block_length=16)),
    ("confidence, T=1", dict(strategy="confidence", temperature=1.0, seed=0)),
    ("parallel_forced m=3 (NAP-D)", dict(strategy="parallel_forced", **PF)),
    ("confidence on the NAP canvas", dict(strategy="confidence", canvas="nap", **PF)),
]


def progress_bar(gen_start: int):
    """A per-step callback that draws the generation region filling up: '#' committed, '.' masked."""

    def show(step):
        row = step.trace[0, gen_start:]
        line = "".join("#" if t >= 0 else "." for t in row.tolist())
        if sys.stdout.isatty():  # redraw in place on a terminal, one line per step in a log
            sys.stdout.write(f"\r  step {step.step:3d}  {line}")
            sys.stdout.flush()
        else:
            print(f"  step {step.step:3d}  {line}")

    return show


NAP_TINY = Path(__file__).resolve().parent.parent / "models" / "nap-tiny"


def canvas_view(tok, gen_start: int, mask_id: int, every: int):
    """A per-step callback that prints the structured canvas every `every` steps: committed tokens as text
    (a newline as '/', EOS filler as nothing), masked positions as '_'."""
    eos = tok.eos_token_id

    def show(step):
        if step.step % every:
            return
        pieces = []
        for tid in step.sequences[0, gen_start:].tolist():
            if tid == mask_id:
                pieces.append("_")
            elif tid != eos:
                pieces.append(tok.decode([tid]).replace("\n", "/"))
        print(f"  step {step.step:3d} | " + "".join(pieces))

    return show


def nap_tiny_demo(path: Path, out_dir: Path, n: int) -> None:
    """Solve `n` held-out toy problems with parallel-forced decoding (m = 3) on the embedded nap-tiny."""
    from nap_hf.data.toy_arithmetic import ToyArithmetic, equation_is_right, parse_equations
    from nap_hf.evaluation.toy import toy_prompts

    model = AutoModel.from_pretrained(path).eval()
    tok = AutoTokenizer.from_pretrained(path)
    gen = model.generation_config
    print("=" * 78)
    print(
        f"nap-tiny: {sum(p.numel() for p in model.parameters()) / 1e6:.1f}M-parameter LLaDA-architecture model "
        f"trained on this project's toy\narithmetic task ({path}): 2-3 gains and losses of single-digit "
        "amounts, three solution\nmethods per problem, 12% of the training paths carry one arithmetic slip."
    )
    print("=" * 78)
    task = ToyArithmetic(seed=0)
    problems = [task.problem(i, "test") for i in range(n)]
    inputs = toy_prompts(tok, problems)  # one batch, left-padded; the live view follows problem 1
    P = inputs["input_ids"].shape[1]
    print(f"\nproblem 1 (held out): {problems[0].question}")
    t0 = time.perf_counter()
    out = model.generate(
        **inputs,
        tokenizer=tok,
        return_dict_in_generate=True,
        step_callback=canvas_view(tok, P, model.config.mask_token_id, every=12),
    )
    dt = time.perf_counter() - t0
    correct = 0
    for i, problem in enumerate(problems):
        if i:
            print(f"\nproblem {i + 1} (held out): {problem.question}")
        for j, text in enumerate(out.paths[i], 1):
            eqs = parse_equations(text)
            result = eqs[-1][3] if eqs and eqs[-1] is not None else "?"
            flag = "" if eqs and all(equation_is_right(eq) for eq in eqs) else "  (a wrong equation)"
            print(f"  think {j}: {text.replace(chr(10), '  '):24s} -> {result}{flag}")
        ok = out.answer[i] is not None and out.answer[i].strip() == str(problem.answer)
        correct += ok
        print(f"  summary: {out.summary[i]!r}")
        print(
            f"  answer {out.answer[i]} vs gold {problem.answer}: {'correct' if ok else 'WRONG'}   "
            f"Global-ARness@1 {global_arness(out.trace[i : i + 1, P:]).mean:.3f}"
        )
    print(
        f"\n{correct}/{n} correct; strategy={gen.strategy}, m={gen.m}, NFE {out.nfe} ({gen.steps} steps, 1 token "
        f"per step), {dt:.1f} s for the batch"
    )
    write_figure(
        out.trace, out.regions, ["nap-tiny, parallel-forced m=3"], out_dir / "decoding_dynamics_nap_tiny.png"
    )


def write_figure(traces, regions, titles: list[str], path: Path) -> None:
    """The decoding-dynamics figure (the paper's Figure 1 view) of one or more runs, written to `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        from nap_hf.plotting import plot_decoding_dynamics
    except ImportError as err:
        print(f"(no figure: {err})")
        return
    plot_decoding_dynamics(traces, regions=regions, titles=titles, path=path)
    print(f"decoding-dynamics figure (the paper's Figure 1 view) written to {path}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--model", default=None, help="checkpoint path or hub id (default: tiny untrained LLaDA)"
    )
    parser.add_argument(
        "--prompt", default="Ann has 12 apples and buys 7 more. How many apples does Ann have?"
    )
    parser.add_argument("--gen-length", type=int, default=48)
    parser.add_argument("--steps", type=int, default=24)
    parser.add_argument("--out", default="outputs/demo", help="folder for traces.json")
    parser.add_argument("--untrained", action="store_true", help="skip nap-tiny, use the tiny random model")
    parser.add_argument("--problems", type=int, default=3, help="held-out problems nap-tiny solves")
    args = parser.parse_args()

    if args.model is None and not args.untrained and (NAP_TINY / "model.safetensors").exists():
        nap_tiny_demo(NAP_TINY, Path(args.out), args.problems)
        print("\nEvery decoding strategy on the same kind of model (untrained, for the machinery):\n")

    torch.manual_seed(0)
    if args.model is None:
        path = write_tiny_llada(Path(tempfile.mkdtemp(prefix="nap-tiny-random-")), d_model=128, n_layers=2)
        print("=" * 78)
        print("UNTRAINED MODEL: a seeded tiny random LLaDA checkpoint (hub format), not a trained model.")
        print("Its text is noise; the decoding orders, NFE and AR-ness below are the real machinery.")
        print("=" * 78)
    else:
        path = args.model
    model = AutoModel.from_pretrained(path).eval()
    tok = AutoTokenizer.from_pretrained(path)
    inputs = tok.apply_chat_template(
        [{"role": "user", "content": args.prompt}],
        add_generation_prompt=True,
        return_tensors="pt",
        return_dict=True,
    )
    P = inputs["input_ids"].shape[1]
    print(f"model: {type(model).__name__} from {path}\nprompt ({P} tokens): {args.prompt!r}")
    print(f"gen_length={args.gen_length} steps={args.steps}\n")

    print("confidence order, live (one line per step):")
    model.generate(
        **inputs,
        strategy="confidence",
        steps=args.steps,
        gen_length=args.gen_length,
        step_callback=progress_bar(P),
    )
    print("\n")

    rows, traces, runs = [], {}, {}
    for label, kwargs in RUNS:
        t0 = time.perf_counter()
        out = model.generate(
            **inputs,
            tokenizer=tok,
            steps=args.steps,
            gen_length=args.gen_length,
            return_dict_in_generate=True,
            **kwargs,
        )
        dt = time.perf_counter() - t0
        g, lo = global_arness(out.trace).mean, local_arness(out.trace).mean
        text = tok.decode(out.sequences[0, P:], skip_special_tokens=True).replace("\n", " ")
        rows.append((label, out.nfe, g, lo, dt, text))
        runs[label] = out
        traces[label] = {
            "kwargs": kwargs,
            "nfe": out.nfe,
            "global_arness@1": g,
            "local_arness@1": lo,
            "trace": out.trace[0, P:].tolist(),
            "tokens": out.sequences[0, P:].tolist(),
        }

    print(f"{'strategy':28s} {'NFE':>4s} {'Global@1':>9s} {'Local@1':>8s} {'time s':>7s}  text")
    for label, nfe, g, lo, dt, text in rows:
        print(f"{label:28s} {nfe:4d} {g:9.3f} {lo:8.3f} {dt:7.2f}  {text[:40]!r}")

    pf = runs["parallel_forced m=3 (NAP-D)"]
    print(
        "\nparallel-forced: the three paths and the summary, each cut at its closing tag (untrained: noise)"
    )
    for j, text in enumerate(pf.paths[0], 1):
        print(f"  think {j}: {text[:60]!r}")
    print(f"  summary: {pf.summary[0][:60]!r}   answer: {pf.answer[0]}")

    out_dir = Path(args.out)
    labels = ["ar", "confidence", "random", "parallel_forced m=3 (NAP-D)"]
    write_figure(
        [runs[k].trace for k in labels],
        [None, None, None, pf.regions],
        ["AR order", "confidence (AO)", "random", "parallel-forced"],
        out_dir / ("decoding_dynamics_untrained.png" if args.model is None else "decoding_dynamics.png"),
    )
    fd, tmp = tempfile.mkstemp(dir=out_dir, prefix=".traces.")
    with os.fdopen(fd, "w") as f:
        json.dump(
            {"model": str(path), "untrained": args.model is None, "prompt": args.prompt, "runs": traces}, f
        )
    os.replace(tmp, out_dir / "traces.json")
    print(f"\ntraces (decoding step of every generated position) written to {out_dir / 'traces.json'}")


if __name__ == "__main__":
    main()
