"""Isolated paths (`generate(path_isolation=True)`, docs/isolation.md) against full-attention parallel-forced
decoding, side by side in one process, on random LLaDA-architecture models (no download). Prints figures; it
is not a test. Run as `benchmarks/decode.py --isolation [...]` or directly.

Suite `steps` (default): for each canvas (`--paths`, default m = 3 and 8, each path `--path-length` 330 behind
a 2-token header, summary 32 behind a 1-token header, prompt `--prompt-length` 128: at m = 3 the paper's
canvas) it runs `generate(strategy="parallel_forced", steps=--steps, block_length=30)` in these modes:

* `full`: today's full bidirectional attention over the whole canvas every step;
* `masked`: the whole canvas under the isolation mask (the slow exact reference; m = 3 only, `--masked-all`
  for every m);
* `isolated`: the prompt once, then the m paths as m rows of header + path over the shared prompt cache, then
  the summary columns alone over the prompt and path keys;
* `full+dual` / `isolated+dual`: Fast-dLLM's dual cache (on the whole canvas / inside the path rows).

All modes share the blocks of 30 inside the paths, so their schedules and NFE are identical. `--repeats`
rounds run the modes in turn (the order rotates each round); ratios are medians over rounds of the ratio within
a round, so load from other processes hits both sides of a ratio alike. Per run it reports: wall time and
tokens/s (generated tokens / wall time), the median step time of the path phase (step 0, with the prompt pass,
excluded) and of the summary phase, tokens through the trunk (a forward pre-hook on the decoder: query tokens
of every call, per step and in all), and the attention keys a path query reads (prompt + header + path for
isolated rows, the whole canvas otherwise). The isolated run's tokens are compared with the masked run's
(the share of generated tokens that agree: float32 on random weights, whose predictions are nearly uniform,
flips near-ties, so this is reported, not asserted; `--dtype float64` makes it exact, and the tests check
exactness in float64).

Suite `distributed` (`--distributed`): `distribute_paths=True` under `torch.distributed.run` (gloo, CPU),
`--nprocs` processes (default 2) with one thread each, against one process with one thread, at m =
`--dist-paths` (default 3, 4, 8). Each process times `--path-steps` path steps (default 6; step 0 and the
prompt pass excluded) and the run stops there (the path phase has no communication, so stopping early is
exact); the wall time of the phase is the slowest process's. It also reports each process's tokens through
the trunk over those steps. m = 3 splits 2 + 1 over 2 processes, so it cannot reach 0.5x.

    .venv/bin/python benchmarks/decode.py --isolation                     # steps suite, m = 3 and 8
    .venv/bin/python benchmarks/decode.py --isolation --distributed       # 1 vs 2 processes, m = 3, 4, 8
    .venv/bin/python benchmarks/decode.py --isolation --quick             # smoke run: small canvas, 1 round
    .venv/bin/python benchmarks/decode.py --isolation --render benchmarks/results/decode_isolation_steps.json

Results: `decode_isolation_steps.{json,md}` / `decode_isolation_distributed.{json,md}` in `--out-dir`
(default benchmarks/results/), written atomically; progress goes to stderr. The model's config is marked
`path_isolation=True` so that the warning for models trained without isolation stays quiet: the weights are
random, only the cost is measured.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from decode import CACHE_SHAPES, _cpu_name, build_cache_model, log, write_atomic  # noqa: E402

from nap_hf.data import build_layout  # noqa: E402
from nap_hf.generation.isolated import path_shares  # noqa: E402
from nap_hf.isolation import path_header_width  # noqa: E402

BLOCK = 30
SUMMARY = 32
MODES = ("full", "masked", "isolated", "full+dual", "isolated+dual")


# --------------------------------------------------------------------------- canvas and one run


def header_ids(m: int) -> list[list[int]]:
    """Two-token path headers (distinct ids, as `<think j>` is several tokens) and a one-token summary header."""
    return [[5 + 2 * j, 6 + 2 * j] for j in range(m)] + [[5 + 2 * m]]


def canvas_facts(m: int, path_length: int, prompt_length: int) -> dict:
    """Canvas length and the keys one path query attends to, full attention vs an isolated path row (from the
    layout `generate` builds, so they follow the headers above)."""
    layout = build_layout(None, m, path_length, SUMMARY, header_ids=header_ids(m))
    L = prompt_length + layout.length
    return {
        "canvas": L,
        "keys_full": L,
        "keys_isolated": prompt_length + path_header_width(layout) + path_length,
        "summary_columns": len(layout.header_spans[-1]) + SUMMARY,
    }


def generate_kwargs(mode: str, m: int, path_length: int, steps: int) -> dict:
    kwargs = dict(
        strategy="parallel_forced",
        m=m,
        path_length=path_length,
        summary_length=SUMMARY,
        header_ids=header_ids(m),
        block_length=BLOCK,
        steps=steps,
    )
    if mode.startswith("isolated"):
        kwargs["path_isolation"] = True
    elif mode == "masked":
        kwargs["path_isolation"] = "masked"
    if mode.endswith("+dual"):
        kwargs["cache_implementation"] = "dual"
    return kwargs


class _Stop(Exception):
    """Raised by the step callback to end a run after the steps it times."""


class Meter:
    """Per step of one `generate` call: wall time (callback to callback) and query tokens through the trunk (a
    forward pre-hook on the decoder, summed over its calls in that step)."""

    def __init__(self, model, summary_from: int, stop_after: int | None = None):
        self.summary_from, self.stop_after = summary_from, stop_after
        self.times: list[float] = []
        self.tokens: list[int] = [0]
        self.summary_steps: set[int] = set()
        self.last = time.perf_counter()
        self.handle = model.get_decoder().register_forward_pre_hook(self.hook, with_kwargs=True)

    def hook(self, module, args, kwargs):
        ids = kwargs["input_ids"]
        self.tokens[-1] += ids.shape[0] * ids.shape[1]

    def tick(self, step) -> None:
        now = time.perf_counter()
        self.times.append(now - self.last)
        self.last = now
        if bool(step.committed[:, self.summary_from :].any()):
            self.summary_steps.add(step.step)
        if self.stop_after is not None and step.step + 1 >= self.stop_after:
            raise _Stop
        self.tokens.append(0)

    def close(self) -> None:
        self.handle.remove()


def one_run(
    model, prompt: torch.LongTensor, kwargs: dict, facts: dict, stop_after: int | None = None
) -> dict:
    meter = Meter(model, facts["canvas"] - SUMMARY, stop_after)
    out = None
    t0 = time.perf_counter()
    meter.last = t0
    try:
        out = model.generate(prompt, return_dict_in_generate=True, step_callback=meter.tick, **kwargs)
    except _Stop:
        pass
    finally:
        meter.close()
    seconds = time.perf_counter() - t0
    steps = range(len(meter.times))
    path = [s for s in steps if s not in meter.summary_steps and s > 0]
    summary = sorted(meter.summary_steps)
    med = statistics.median
    result = {
        "seconds": seconds,
        "steps_run": len(meter.times),
        "path_step_ms": 1e3 * med(meter.times[s] for s in path) if path else None,
        "summary_step_ms": 1e3 * med(meter.times[s] for s in summary) if summary else None,
        "summary_steps": len(summary),
        "summary_phase_ms": 1e3 * sum(meter.times[s] for s in summary),
        "summary_phase_tokens": sum(meter.tokens[s] for s in summary),
        "step_ms": [round(1e3 * t, 2) for t in meter.times],
        "step_tokens": meter.tokens[: len(meter.times)],
        "summary_step_ids": summary,
        "trunk_tokens": sum(meter.tokens),
        "trunk_tokens_step0": meter.tokens[0],
        "path_step_tokens": med(meter.tokens[s] for s in path) if path else None,
        "summary_step_tokens": med(meter.tokens[s] for s in summary) if summary else None,
        "path_steps_tokens": sum(meter.tokens[s] for s in path),
        "path_steps_seconds": sum(meter.times[s] for s in path),
    }
    if out is not None:
        result["nfe"] = out.nfe
        result["tokens_per_s"] = (out.sequences.shape[1] - prompt.shape[1]) * prompt.shape[0] / seconds
        result["sequences"] = out.sequences.tolist()
    return result


def make_model(shape: str, threads: int | None, dtype: str = "float32"):
    if threads:
        torch.set_num_threads(threads)
    model = build_cache_model(shape, "cpu", getattr(torch, dtype))
    model.config.path_isolation = True  # random weights: only the cost is measured (module docstring)
    return model


def make_prompt(prompt_length: int, batch: int = 1) -> torch.LongTensor:
    g = torch.Generator().manual_seed(1234)
    return torch.randint(2 + 64, 31000, (batch, prompt_length), generator=g)  # clear of the header ids


# --------------------------------------------------------------------------- suite: per-step costs


def suite_steps(args) -> dict:
    model = make_model(args.shape, args.threads, args.dtype)
    prompt = make_prompt(args.prompt_length, args.batch_size)
    report = {"meta": meta(args), "results": []}
    for m in args.paths:
        facts = canvas_facts(m, args.path_length, args.prompt_length)
        modes = [mode for mode in MODES if mode != "masked" or m == args.paths[0] or args.masked_all]
        for mode in modes:  # warm-up of every code path (4 steps), untimed
            one_run(
                model, prompt, generate_kwargs(mode, m, args.path_length, args.steps), facts, stop_after=4
            )
        rounds: dict[str, list[dict]] = {mode: [] for mode in modes}
        for r in range(args.repeats):
            order = modes[r % len(modes) :] + modes[: r % len(modes)]
            for mode in order:
                run = one_run(model, prompt, generate_kwargs(mode, m, args.path_length, args.steps), facts)
                rounds[mode].append(run)
                log(
                    f"m={m} {mode}: {run['seconds']:.1f} s, NFE {run['nfe']}, path step "
                    f"{run['path_step_ms']:.0f} ms, trunk tokens {run['trunk_tokens']}"
                )
        entry = {"m": m, "path_length": args.path_length, "steps": args.steps, **facts, "runs": rounds}
        entry["ratios"] = ratios(rounds)
        if "masked" in rounds:
            P = args.prompt_length
            iso = torch.tensor([run["sequences"] for run in rounds["isolated"]])[..., P:]
            ref = torch.tensor([run["sequences"] for run in rounds["masked"]])[..., P:]
            entry["isolated_agrees_with_masked"] = (iso == ref).double().mean().item()
        for runs in rounds.values():
            for run in runs:
                run.pop("sequences", None)
        report["results"].append(entry)
    return with_analytic(report)


def with_analytic(report: dict) -> dict:
    """The report with the analytic per-step counts of its canvases, at its shape and at the 8B shapes."""
    meta = report["meta"]
    report["analytic"] = [
        analytic_macs(shape, e["m"], meta["path_length"], meta["prompt_length"])
        for shape in dict.fromkeys([meta["shape"], "llada-8b", "dream-7b"])
        for e in report["results"]
    ]
    return report


def ratios(rounds: dict[str, list[dict]]) -> dict:
    """Medians over rounds of (mode / its full-attention twin) within a round: wall time, path step, summary
    step, and tokens through the trunk (exact counts, the same every round)."""
    pairs = [("isolated", "full"), ("isolated+dual", "full+dual"), ("isolated+dual", "full")]
    if "masked" in rounds:
        pairs.append(("masked", "full"))
    out = {}
    for a, b in pairs:
        key = f"{a} / {b}"
        out[key] = {}
        for field in ("seconds", "path_step_ms", "summary_phase_ms", "trunk_tokens"):
            vals = [
                x[field] / y[field]
                for x, y in zip(rounds[a], rounds[b], strict=True)
                if x[field] and y[field]
            ]
            out[key][field] = statistics.median(vals) if vals else None
    return out


def summary_phase(run: dict) -> str:
    return f"{run['summary_steps']}, {run['summary_phase_ms']:.0f}, {run['summary_phase_tokens']}"


def markdown_steps(report: dict) -> str:
    meta = report["meta"]
    lines = [
        f"Isolated paths vs full attention, parallel-forced, side by side ({meta['shape']}, {meta['device']}, "
        f"{meta['dtype']}, {meta['threads']} threads, batch {meta['batch_size']}, prompt {meta['prompt_length']}, "
        f"blocks of {BLOCK} inside the paths, {meta['repeats']} round(s); {meta['cpu']}, torch {meta['torch']}). "
        "Times: best run; ratios: medians over rounds of the within-round ratio.",
        "",
        "| m | canvas | steps | mode | NFE | wall s | tok/s | path step ms | trunk tokens per path step "
        "| keys per path query | summary phase: steps, ms, trunk tokens | trunk tokens in all |",
        "|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---|---:|",
    ]

    def f(v, spec=".0f"):
        return "n/a" if v is None else format(v, spec)

    for e in report["results"]:
        for mode, runs in e["runs"].items():
            best = min(runs, key=lambda r: r["seconds"])
            keys = e["keys_isolated"] if mode.startswith("isolated") else e["keys_full"]
            lines.append(
                f"| {e['m']} | {e['canvas']} | {e['steps']} | {mode} | {best['nfe']} | {best['seconds']:.1f} "
                f"| {best['tokens_per_s']:.1f} | {f(best['path_step_ms'])} | {f(best['path_step_tokens'])} "
                f"| {keys} | {summary_phase(best)} | {best['trunk_tokens']} |"
            )
    lines += [
        "",
        "| m | ratio | wall time | path step | summary phase | trunk tokens |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for e in report["results"]:
        for key, r in e["ratios"].items():
            lines.append(
                f"| {e['m']} | {key} | {f(r['seconds'], '.2f')} | {f(r['path_step_ms'], '.2f')} "
                f"| {f(r['summary_phase_ms'], '.2f')} | {f(r['trunk_tokens'], '.2f')} |"
            )
    same = [
        f"m={e['m']}: {100 * e['isolated_agrees_with_masked']:.1f}%"
        for e in report["results"]
        if "isolated_agrees_with_masked" in e
    ]
    if same:
        lines += [
            "",
            f"Generated tokens of the isolated run equal to the masked reference's ({meta['dtype']}): {', '.join(same)}.",
        ]
    text = "\n".join(lines) + "\n"
    return text + ("\n" + markdown_analytic(report["analytic"]) if report.get("analytic") else "")


def analytic_macs(shape: str, m: int, path_length: int, prompt_length: int) -> dict:
    """Multiply-accumulates of the trunk in one decoding step, counted from the shape (not measured): per query
    token and layer the projections (q, k, v, o: 2 d^2 + 2 d d_kv) and the MLP (3 d d_mlp, SwiGLU), plus 2 d
    per attended key (scores and values). Full attention runs the whole canvas over the whole canvas; an isolated
    path step runs the m rows over prompt + row; an isolated summary step runs the summary columns over the
    canvas. The LM head is left out (it runs on the same candidate rows in every mode)."""
    spec = CACHE_SHAPES[shape]
    d = spec.get("d_model", spec.get("hidden_size"))
    layers = spec.get("n_layers", spec.get("num_hidden_layers"))
    d_mlp = spec.get("mlp_hidden_size", spec.get("intermediate_size"))
    heads = spec.get("n_heads", spec.get("num_attention_heads"))
    d_kv = d * spec.get("num_key_value_heads", heads) // heads
    linear = 2 * d * d + 2 * d * d_kv + 3 * d * d_mlp
    f = canvas_facts(m, path_length, prompt_length)
    rows = m * (f["keys_isolated"] - prompt_length)

    def macs(queries: int, keys: int) -> float:
        return layers * queries * (linear + 2 * d * keys)

    full = macs(f["canvas"], f["canvas"])
    path = macs(rows, f["keys_isolated"])
    summary = macs(f["summary_columns"], f["canvas"])
    return {
        "shape": shape,
        "m": m,
        "full_step_tmacs": full / 1e12,
        "isolated_path_step_tmacs": path / 1e12,
        "isolated_summary_step_tmacs": summary / 1e12,
        "path_step_ratio": path / full,
        "summary_step_ratio": summary / full,
        "attention_share_full": 2 * d * f["canvas"] / (linear + 2 * d * f["canvas"]),
    }


def markdown_analytic(rows: list[dict]) -> str:
    lines = [
        "Trunk multiply-accumulates per step, counted from the shapes (analytic, not measured; LM head left out):",
        "",
        "| shape | m | full step (T) | isolated path step (T) | ratio | isolated summary step (T) | ratio "
        "| attention share of a full step |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['shape']} | {r['m']} | {r['full_step_tmacs']:.3f} | {r['isolated_path_step_tmacs']:.3f} "
            f"| {r['path_step_ratio']:.2f} | {r['isolated_summary_step_tmacs']:.4f} | {r['summary_step_ratio']:.3f} "
            f"| {100 * r['attention_share_full']:.0f}% |"
        )
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- suite: distributed paths


def worker(args) -> None:
    """One process of the distributed suite (or the single-process baseline when not under torchrun): time
    `--path-steps` path steps and write this rank's figures to `--worker-out`."""
    distributed = "RANK" in os.environ
    rank, world = 0, 1
    if distributed:
        torch.distributed.init_process_group("gloo")
        rank, world = torch.distributed.get_rank(), torch.distributed.get_world_size()
    model = make_model(args.shape, 1)
    prompt = make_prompt(args.prompt_length, args.batch_size)
    m = args.paths[0]
    facts = canvas_facts(m, args.path_length, args.prompt_length)
    kwargs = generate_kwargs("isolated", m, args.path_length, args.steps)
    kwargs["distribute_paths"] = distributed
    stop = 1 + args.path_steps
    one_run(model, prompt, kwargs, facts, stop_after=2)  # warm-up, untimed
    if distributed:
        torch.distributed.barrier()
    run = one_run(model, prompt, kwargs, facts, stop_after=stop)
    if run["steps_run"] != stop or run["summary_step_ms"] is not None:
        raise RuntimeError(f"--path-steps {args.path_steps} reaches past the path phase; lower it")
    result = {"rank": rank, "world": world, "m": m, **{k: v for k, v in run.items() if k != "sequences"}}
    write_atomic(Path(f"{args.worker_out}.{rank}.json"), json.dumps(result) + "\n")
    if distributed:
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()


def _launch(args, m: int, nprocs: int, out: Path, port: int) -> list[dict]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    script = [str(Path(__file__).resolve()), "--worker", "--worker-out", str(out), "--paths", str(m)]
    script += ["--shape", args.shape, "--path-length", str(args.path_length), "--steps", str(args.steps)]
    script += ["--path-steps", str(args.path_steps), "--prompt-length", str(args.prompt_length)]
    script += ["--batch-size", str(args.batch_size)]
    if nprocs == 1:
        cmd = [sys.executable, *script]
    else:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nprocs)]
        cmd += ["--master_port", str(port), *script]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=args.timeout)
    if proc.returncode:
        raise RuntimeError(f"{' '.join(cmd[:6])} ... failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return [json.loads(Path(f"{out}.{r}.json").read_text()) for r in range(nprocs)]


def suite_distributed(args) -> dict:
    report = {"meta": meta(args, threads=1), "results": []}
    report["meta"].update(nprocs=args.nprocs, path_steps=args.path_steps)
    with tempfile.TemporaryDirectory() as tmp:
        for m in args.dist_paths:
            rounds: dict[int, list[list[dict]]] = {1: [], args.nprocs: []}
            for r in range(args.repeats):
                order = [1, args.nprocs] if r % 2 == 0 else [args.nprocs, 1]
                for n in order:
                    ranks = _launch(args, m, n, Path(tmp) / f"m{m}-n{n}-r{r}", 29600 + r)
                    rounds[n].append(ranks)
                    wall = max(x["path_steps_seconds"] for x in ranks)
                    log(f"distributed m={m} processes={n}: path phase {wall:.2f} s ({args.path_steps} steps)")
            one, many = rounds[1], rounds[args.nprocs]
            ratio = statistics.median(
                max(x["path_steps_seconds"] for x in b) / max(x["path_steps_seconds"] for x in a)
                for a, b in zip(one, many, strict=True)
            )
            report["results"].append(
                {
                    "m": m,
                    "ratio": ratio,
                    "one_s": min(max(x["path_steps_seconds"] for x in a) for a in one),
                    "many_s": min(max(x["path_steps_seconds"] for x in b) for b in many),
                    "one_tokens": one[0][0]["path_steps_tokens"],
                    "many_tokens": [x["path_steps_tokens"] for x in many[0]],
                    "rounds": {str(k): v for k, v in rounds.items()},
                }
            )
    return report


def markdown_distributed(report: dict) -> str:
    meta = report["meta"]
    n = meta["nprocs"]
    lines = [
        f"Distributed paths (`distribute_paths=True`, gloo): the path phase with 1 process vs {n}, one thread each "
        f"({meta['shape']}, prompt {meta['prompt_length']}, path_length {meta['path_length']}, "
        f"{meta['path_steps']} path steps timed, {meta['repeats']} round(s); {meta['cpu']}, torch {meta['torch']}). "
        "Wall time: the slowest process, best round; ratio: median over rounds; trunk tokens: query tokens through "
        "the trunk over the timed steps, per process.",
        "",
        f"| m | paths per process | 1 process s | {n} processes s | ratio ({n} / 1) | goal <= 0.6 | trunk tokens, 1 process "
        f"| trunk tokens per process ({n}) |",
        "|---|---|---:|---:|---:|---|---:|---|",
    ]
    for e in report["results"]:
        shares = "+".join(str(len(s)) for s in path_shares(e["m"], n))
        lines.append(
            f"| {e['m']} | {shares} | {e['one_s']:.2f} | {e['many_s']:.2f} | {e['ratio']:.2f} "
            f"| {'yes' if e['ratio'] <= 0.6 else 'no'} | {e['one_tokens']} | {', '.join(map(str, e['many_tokens']))} |"
        )
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- command line


def meta(args, threads: int | None = None) -> dict:
    return {
        "cpu": _cpu_name(),
        "torch": torch.__version__,
        "device": "cpu",
        "dtype": getattr(args, "dtype", "float32"),
        "shape": args.shape,
        "threads": threads or torch.get_num_threads(),
        "batch_size": args.batch_size,
        "prompt_length": args.prompt_length,
        "path_length": args.path_length,
        "repeats": args.repeats,
    }


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter
    )
    p.add_argument("--shape", default="trunk-heavy", choices=sorted(CACHE_SHAPES))
    p.add_argument("--paths", type=int, nargs="+", default=[3, 8], help="m of each canvas (default 3 8)")
    p.add_argument("--path-length", type=int, default=330)
    p.add_argument("--prompt-length", type=int, default=128)
    p.add_argument("--batch-size", type=int, default=1)
    p.add_argument(
        "--dtype", default="float32", choices=["float32", "float64"], help="steps suite (default float32)"
    )
    p.add_argument("--out-name", default=None, help="results file name without suffix (default by suite)")
    p.add_argument("--steps", type=int, default=64, help="decoding steps of each run (default 64)")
    p.add_argument("--repeats", type=int, default=2, help="rounds (default 2)")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    p.add_argument(
        "--masked-all", action="store_true", help="run the masked reference at every m, not only the first"
    )
    p.add_argument(
        "--quick", action="store_true", help="smoke run: m = 2 and 3, path_length 60, prompt 32, 1 round"
    )
    p.add_argument("--distributed", action="store_true", help="the distributed suite instead")
    p.add_argument("--nprocs", type=int, default=2)
    p.add_argument("--dist-paths", type=int, nargs="+", default=[3, 4, 8], help="m of the distributed suite")
    p.add_argument(
        "--path-steps", type=int, default=6, help="path steps timed per distributed run (default 6)"
    )
    p.add_argument("--timeout", type=int, default=1800, help="seconds per distributed launch")
    p.add_argument("--out-dir", type=Path, default=HERE / "results")
    p.add_argument("--render", type=Path, metavar="JSON", help="re-summarize a saved results file (no runs)")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--worker-out", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.quick:
        args.paths, args.dist_paths = [2, 3], [2, 3]
        args.path_length, args.prompt_length, args.repeats, args.steps = 60, 32, 1, 24
        args.path_steps = min(args.path_steps, 4)
    if args.path_length % BLOCK:
        p.error(f"--path-length must be a multiple of the block length {BLOCK}")
    return args


def main(argv=None) -> dict | None:
    args = parse_args(argv)
    if args.worker:
        worker(args)
        return None
    name = args.out_name or ("decode_isolation_distributed" if args.distributed else "decode_isolation_steps")
    if args.quick:
        name += "_quick"
    if args.render:
        report = json.loads(args.render.read_text())
        args.distributed = "nprocs" in report["meta"]
        if not args.distributed:
            report = with_analytic(report)
    else:
        report = suite_distributed(args) if args.distributed else suite_steps(args)
    md = markdown_distributed(report) if args.distributed else markdown_steps(report)
    print(md)
    if args.render:
        name = args.render.stem
    write_atomic(args.out_dir / f"{name}.json", json.dumps(report, indent=1) + "\n")
    write_atomic(args.out_dir / f"{name}.md", md)
    return report


if __name__ == "__main__":
    main()
