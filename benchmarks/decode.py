"""Decoding cost of `model.generate` against its per-NFE limit, on a tiny LLaDA-architecture model on CPU.

Prints figures; it is not a test. Model: `LLaDAModelLM` with d_model 256, 8 heads, 4 layers, MLP 768,
vocabulary 32000, random weights (`torch.manual_seed(0)`), float32, batch 1; prompt 64 tokens, 256 generated.

For each strategy (`ar`, `confidence`, `random`, `confidence` with block_length 32, `threshold` with
block_length 32), temperature (0, 1) and step count (64, 128, 256; `threshold` is adaptive and runs once per
temperature) it measures:

* NFE (forward passes), wall time of `generate`, tokens/s (= gen_length x batch / wall time), ms per NFE;
* the **per-NFE limit**: one bare trunk forward over the whole canvas (`model.model(input_ids=canvas)`, 320
  tokens) plus the LM head on the 256 generation rows only (`get_output_embeddings()(hidden[:, 64:])`), under
  `torch.no_grad`. It is measured side by side with `generate`, in the same process and inside the same
  run: every few decoding steps (`--limit-samples` per run, default 16) the step callback runs one limit
  forward; that time is subtracted from the run's time, and the run's limit is the mean of its samples
  (total time / count, as the `generate` figure is). Load from other processes then hits both alike;
* the **cost ratio** = generate time / (NFE x limit) of each run, median over `--repeats` runs. Target
  <= 1.15 (column `target met`);
* **peak MB**: how much the process's peak resident memory (VmHWM) rose during `generate` above the resident
  memory just before it (MiB; the model itself is not counted). Measured in one separate worker process
  (`--memory-worker`, started by this script) so that it cannot disturb the timings: the high-water mark is
  reset before each configuration (`/proc/self/clear_refs`), glibc is told to return freed blocks to the OS
  (`MALLOC_MMAP_THRESHOLD_`), and each configuration runs its first `--memory-steps` decoding steps (default
  8; 0 = the whole run). The first steps are the ones with the most candidate rows, and the loop keeps no
  per-step state, so the peak of the whole run is the same (checked: see benchmarks/README.md). Linux only;
  "n/a" elsewhere.

A comparison row `llada-ref` runs a re-implementation, written here, of the costs of LLaDA's reference
`generate` loop for the `confidence` strategy (no blocks): full-vocabulary logits at every canvas position
each step (`model(x).logits`), at T > 0 float64 Gumbel noise over the full vocabulary, and a full softmax.

Commands (from the repository root):

    .venv/bin/python benchmarks/decode.py --quick     # smoke run: steps 64, 1 repeat (measured 1.6 min)
    .venv/bin/python benchmarks/decode.py             # full: steps 64 128 256, 3 repeats (measured 24 min)
    .venv/bin/python benchmarks/decode.py --steps 128 --temperatures 1 --repeats 5 --threads 1
    .venv/bin/python benchmarks/decode.py --parallel-forced --repeats 2  # NAP-D: m = 1/2/3, 1-4 tokens/step
    .venv/bin/python benchmarks/decode.py --render benchmarks/results/decode.json   # re-summarize, no runs
    .venv/bin/python benchmarks/decode.py --isolation   # isolated paths vs full attention (decode_isolation.py)

Results: a markdown table on stdout, and `decode.json` + `decode.md` in `--out-dir` (default
`benchmarks/results/`), written atomically; the JSON keeps every run's samples. Progress goes to stderr.
Run times above are from a shared 2-core AMD EPYC VM (torch 2.13 CPU, 2 threads) where other load comes and
goes: that is why the limit is sampled inside each run, the ratio is a median over runs and the speeds are
the best run's.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

import nap_hf
from nap_hf.generation.cache import DiffusionCache

TARGET = 1.15
HERE = Path(__file__).resolve().parent


# --------------------------------------------------------------------------- model and inputs


def build_model(args) -> nap_hf.LLaDAModelLM:
    torch.manual_seed(0)
    config = nap_hf.LLaDAConfig(
        d_model=256,
        n_heads=8,
        n_layers=4,
        mlp_hidden_size=768,
        vocab_size=32000,
        embedding_size=32000,
        mask_token_id=31999,
        eos_token_id=1,
        pad_token_id=1,
        max_sequence_length=4096,
    )
    return nap_hf.LLaDAModelLM(config).eval().float()


def make_prompt(args) -> torch.LongTensor:
    g = torch.Generator().manual_seed(1234)
    return torch.randint(2, 31000, (args.batch_size, args.prompt_length), generator=g)


# --------------------------------------------------------------------------- configurations


@dataclass
class Config:
    label: str  # strategy name shown in the table
    strategy: str  # nap_hf strategy, or "llada-ref"
    temperature: float
    steps: int | None  # None: adaptive (threshold)
    block: int | None  # block_length (None = the whole generation region)

    @property
    def key(self) -> str:
        return f"{self.label}|T={self.temperature:g}|steps={self.steps}|block={self.block}"


def make_configs(args) -> list[Config]:
    out = []
    for T in args.temperatures:
        for steps in args.steps:
            out.append(Config("ar", "ar", T, steps, None))
            out.append(Config("confidence", "confidence", T, steps, None))
            out.append(Config("random", "random", T, steps, None))
            out.append(Config("confidence", "confidence", T, steps, args.block_length))
            out.append(Config("llada-ref", "llada-ref", T, steps, None))
        out.append(Config("threshold", "threshold", T, None, args.block_length))
    return out


# --------------------------------------------------------------------------- the LLaDA reference loop's costs


class _Stop(Exception):
    pass


@torch.no_grad()
def llada_reference_generate(
    model,
    prompt,
    *,
    steps,
    gen_length,
    block_length,
    temperature,
    mask_id,
    generator=None,
    step_callback=None,
):
    """The per-step work of LLaDA's reference `generate` (remasking "low_confidence"): every step computes
    full-vocabulary logits at every canvas position, at T > 0 Gumbel-max noise in float64 over the full
    vocabulary, a full softmax, and commits the top-k confidences of the current block (LLaDA's budget)."""
    B, P = prompt.shape
    x = torch.cat([prompt, prompt.new_full((B, gen_length), mask_id)], dim=1)
    n_blocks = gen_length // block_length
    steps_per_block = steps // n_blocks
    nfe = 0
    for b in range(n_blocks):
        lo, hi = P + b * block_length, P + (b + 1) * block_length
        n = (x[:, lo:hi] == mask_id).sum(-1)  # (B,)
        budget = (n // steps_per_block)[:, None] + (
            torch.arange(steps_per_block)[None, :] < (n % steps_per_block)[:, None]
        ).long()
        for i in range(steps_per_block):
            masked = x == mask_id
            logits = model(x).logits  # (B, L, V): every position, full vocabulary
            nfe += 1
            if temperature > 0:
                logits64 = logits.double()
                noise = torch.rand(logits64.shape, dtype=torch.float64, generator=generator)
                x0 = (logits64.exp() / (-noise.log()) ** temperature).argmax(-1)
            else:
                x0 = logits.argmax(-1)
            p = logits.softmax(-1)  # full softmax
            conf = p.gather(-1, x0[..., None]).squeeze(-1)
            conf[:, hi:] = float("-inf")
            x0 = torch.where(masked, x0, x)
            conf = torch.where(masked, conf, torch.full_like(conf, float("-inf")))
            commit = torch.zeros_like(masked)
            for j in range(B):
                k = int(budget[j, i])
                if k > 0:
                    commit[j, torch.topk(conf[j], k).indices] = True
            x[commit] = x0[commit]
            if step_callback is not None:
                step_callback(nfe)
    return x, nfe


# --------------------------------------------------------------------------- timed pieces


def run_generate(
    model, prompt, cfg: Config, args, seed: int, max_nfe: int | None = None, between=None
) -> int:
    """One decoding run; returns its NFE. `between(nfe)` is called after every step (the limit samples);
    `max_nfe` stops the run early (memory worker only)."""
    generator = torch.Generator().manual_seed(seed)

    def callback(nfe):
        if between is not None:
            between(nfe)
        if max_nfe is not None and nfe >= max_nfe:
            raise _Stop

    if cfg.strategy == "llada-ref":
        try:
            _, nfe = llada_reference_generate(
                model,
                prompt,
                steps=cfg.steps,
                gen_length=args.gen_length,
                block_length=cfg.block or args.gen_length,
                temperature=cfg.temperature,
                mask_id=model.config.mask_token_id,
                generator=generator,
                step_callback=callback,
            )
        except _Stop:
            nfe = max_nfe
        return nfe
    try:
        out = model.generate(
            prompt,
            strategy=cfg.strategy,
            steps=cfg.steps if cfg.steps is not None else args.gen_length,
            gen_length=args.gen_length,
            block_length=cfg.block,
            temperature=cfg.temperature,
            generator=generator,
            step_callback=(lambda step: callback(step.nfe)) if (between or max_nfe) else None,
            return_dict_in_generate=True,
        )
    except _Stop:
        return max_nfe
    return out.nfe


def timed_generate(model, prompt, cfg: Config, args, seed: int, limit) -> tuple[int, float, list[float]]:
    """A timed `generate` run with limit samples taken between its steps: every `every`-th step, one
    limit forward runs inside the step callback; its time (and the callback's) is subtracted from the run.
    Returns (NFE, generate seconds, limit samples in seconds)."""
    expected_nfe = cfg.steps or args.gen_length
    every = max(1, expected_nfe // args.limit_samples)
    samples: list[float] = []
    spent = [0.0]

    def between(nfe):
        if nfe % every == 0:
            t0 = time.perf_counter()
            limit()
            t1 = time.perf_counter()
            samples.append(t1 - t0)
            spent[0] += time.perf_counter() - t0

    t0 = time.perf_counter()
    nfe = run_generate(model, prompt, cfg, args, seed, between=between)
    total = time.perf_counter() - t0
    return nfe, total - spent[0], samples


def make_limit(model, prompt, args):
    """The per-NFE limit: trunk over the whole canvas + LM head on the generation rows only."""
    mask_id = model.config.mask_token_id
    canvas = torch.cat([prompt, prompt.new_full((prompt.shape[0], args.gen_length), mask_id)], dim=1)
    trunk, head, P = model.model, model.get_output_embeddings(), prompt.shape[1]

    @torch.no_grad()
    def limit():
        hidden = trunk(input_ids=canvas).last_hidden_state
        return head(hidden[:, P:])

    return limit


# --------------------------------------------------------------------------- memory (worker process)


def _proc_status() -> dict[str, float]:
    vals = {}
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(("VmRSS:", "VmHWM:")):
                name, rest = line.split(":", 1)
                vals[name] = int(rest.split()[0]) / 1024  # kB -> MiB
    return vals


def _reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # reset the peak RSS (VmHWM) to the current RSS
        return True
    except OSError:
        return False


def memory_worker(args) -> None:
    """Peak resident-memory rise of each configuration; prints one JSON object on stdout."""
    model = build_model(args)
    prompt = make_prompt(args)
    limit = make_limit(model, prompt, args)
    configs = [Config(**c) for c in json.loads(sys.stdin.read())]
    result: dict = {"baseline_rss_mib": None, "peaks": {}}
    if not _reset_peak():
        print(json.dumps(result))
        return
    # warm-up (first-call allocations of the runtime are not the decoding loop's)
    limit()
    run_generate(model, prompt, Config("w", "confidence", 1.0, args.gen_length, None), args, 0, max_nfe=2)
    max_nfe = args.memory_steps or None
    entries = [("limit", None)] + [(c.key, c) for c in configs]
    for key, cfg in entries:
        gc.collect()
        _reset_peak()
        before = _proc_status()["VmRSS"]
        if cfg is None:
            limit()
        else:
            run_generate(model, prompt, cfg, args, 0, max_nfe=max_nfe)
        result["peaks"][key] = _proc_status()["VmHWM"] - before
        if result["baseline_rss_mib"] is None:  # model + runtime, before the first measurement
            result["baseline_rss_mib"] = before
    print(json.dumps(result))


def measure_memory(args, configs: list[Config]) -> dict:
    if not sys.platform.startswith("linux"):
        return {"baseline_rss_mib": None, "peaks": {}}
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536")
    cmd = [sys.executable, str(Path(__file__).resolve()), "--memory-worker", *_common_argv(args)]
    log(
        f"memory: worker process over {len(configs)} configurations ({args.memory_steps or 'all'} steps each)"
    )
    proc = subprocess.run(
        cmd, input=json.dumps([asdict(c) for c in configs]), capture_output=True, text=True, env=env
    )
    if proc.returncode != 0:
        log(f"memory worker failed (rc {proc.returncode}):\n{proc.stderr[-2000:]}")
        return {"baseline_rss_mib": None, "peaks": {}}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _common_argv(args) -> list[str]:
    out = [
        "--gen-length", str(args.gen_length),
        "--prompt-length", str(args.prompt_length),
        "--batch-size", str(args.batch_size),
        "--block-length", str(args.block_length),
        "--memory-steps", str(args.memory_steps),
    ]  # fmt: skip
    if args.threads:
        out += ["--threads", str(args.threads)]
    return out


# --------------------------------------------------------------------------- main benchmark


@dataclass
class Row:
    config: Config
    nfe: list[int] = field(default_factory=list)
    wall: list[float] = field(default_factory=list)
    limit: list[float] = field(default_factory=list)  # per pair: mean limit time (s)
    ratio: list[float] = field(default_factory=list)  # per pair
    peak_mib: float | None = None


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def benchmark(args) -> dict:
    t_start = time.perf_counter()
    model = build_model(args)
    prompt = make_prompt(args)
    limit = make_limit(model, prompt, args)
    configs = make_configs(args)
    rows = {c.key: Row(c) for c in configs}
    log(
        f"model: LLaDA d_model 256, 4 layers, vocab 32000; canvas {args.prompt_length}+{args.gen_length}, "
        f"batch {args.batch_size}; torch {torch.__version__}, {torch.get_num_threads()} threads; "
        f"{len(configs)} configurations x {args.repeats} repeats"
    )

    # warm-up: allocator, thread pool, every code path once
    for _ in range(3):
        limit()
    for cfg in configs:
        if cfg.steps in (None, min(args.steps)):
            run_generate(model, prompt, cfg, args, 0, max_nfe=2)

    for r in range(args.repeats):
        order = configs if r % 2 == 0 else configs[::-1]  # alternate the order to cancel slow drift
        for i, cfg in enumerate(order):
            nfe, wall, samples = timed_generate(model, prompt, cfg, args, r, limit)
            lim = statistics.fmean(samples)
            row = rows[cfg.key]
            row.nfe.append(nfe)
            row.wall.append(wall)
            row.limit.append(lim)
            row.ratio.append(wall / (nfe * lim))
            log(
                f"[repeat {r + 1}/{args.repeats} {i + 1:2d}/{len(order)}] {cfg.key:48s} NFE {nfe:3d} "
                f"{wall:7.2f} s {wall / nfe * 1e3:7.1f} ms/NFE  limit {lim * 1e3:6.1f} ms (n={len(samples)})  "
                f"ratio {wall / (nfe * lim):5.2f}"
            )

    mem = measure_memory(args, configs) if not args.no_memory else {"baseline_rss_mib": None, "peaks": {}}
    for key, row in rows.items():
        row.peak_mib = mem["peaks"].get(key)

    results = []
    for row in rows.values():
        c = row.config
        entry = {"strategy": c.label, "temperature": c.temperature, "steps": c.steps, "block": c.block}
        entry["peak_mib"] = row.peak_mib
        entry["samples"] = {"nfe": row.nfe, "wall_s": row.wall, "limit_s": row.limit, "cost_ratio": row.ratio}
        results.append(summarize(entry, args.gen_length * args.batch_size))
    return {
        "meta": {
            "command": " ".join([Path(sys.executable).name, *sys.argv]),
            "date": time.strftime("%Y-%m-%d %H:%M:%S"),
            "torch": torch.__version__,
            "nap_hf": nap_hf.__version__,
            "python": platform.python_version(),
            "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {_cpu_name()}",
            "threads": torch.get_num_threads(),
            "model": "LLaDAModelLM d_model 256, 8 heads, 4 layers, MLP 768, vocab 32000, float32, random init (seed 0)",
            "prompt_length": args.prompt_length,
            "gen_length": args.gen_length,
            "batch_size": args.batch_size,
            "repeats": args.repeats,
            "target": TARGET,
            "limit": "trunk forward over the canvas + LM head on the generation rows only, no_grad",
            "peak_mib": "rise of peak RSS during generate over RSS before it, separate worker process, "
            f"first {args.memory_steps or 'all'} steps",
            "limit_peak_mib": mem["peaks"].get("limit"),
            "baseline_rss_mib": mem.get("baseline_rss_mib"),
            "elapsed_s": time.perf_counter() - t_start,
        },
        "results": results,
    }


def summarize(entry: dict, gen_tokens: int) -> dict:
    """Table figures of one configuration from its per-run samples. Speeds (wall s, tokens/s, ms/NFE,
    limit ms/NFE) are the best of the repeats (the run least disturbed by other load); the cost ratio is
    the median of the per-run ratios, each run against the limit sampled during that run."""
    s = entry["samples"]
    per_nfe = [w / n for w, n in zip(s["wall_s"], s["nfe"], strict=True)]
    best = min(range(len(per_nfe)), key=per_nfe.__getitem__)
    ratio = statistics.median(s["cost_ratio"])
    entry.update(
        nfe=int(statistics.median(s["nfe"])),
        wall_s=s["wall_s"][best],
        tokens_per_s=gen_tokens / s["wall_s"][best],
        ms_per_nfe=per_nfe[best] * 1e3,
        limit_ms_per_nfe=min(s["limit_s"]) * 1e3,
        cost_ratio=ratio,
        cost_ratio_range=[min(s["cost_ratio"]), max(s["cost_ratio"])],
        target_met=ratio <= TARGET,
    )
    return entry


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def _sort_key(r: dict):
    order = {"ar": 0, "random": 1, "confidence": 2, "threshold": 3, "llada-ref": 4}
    return (r["temperature"], order.get(r["strategy"], 9), r["block"] or 0, r["steps"] or 0)


def markdown(report: dict) -> str:
    m = report["meta"]
    head = (
        "| strategy | T | steps | block | NFE | wall s | tokens/s | ms/NFE | limit ms/NFE | cost ratio | peak MB "
        "| target met |\n|---|---|---|---|---|---|---|---|---|---|---|---|\n"
    )
    lines = []
    for r in sorted(report["results"], key=_sort_key):
        peak = "n/a" if r["peak_mib"] is None else f"{r['peak_mib']:.0f}"
        met = "—" if r["strategy"] == "llada-ref" else ("yes" if r["target_met"] else "**no**")
        lines.append(
            f"| {r['strategy']} | {r['temperature']:g} | {r['steps'] or 'adaptive'} | {r['block'] or '-'} "
            f"| {r['nfe']} | {r['wall_s']:.2f} | {r['tokens_per_s']:.0f} | {r['ms_per_nfe']:.1f} "
            f"| {r['limit_ms_per_nfe']:.1f} | {r['cost_ratio']:.2f} | {peak} | {met} |"
        )
    lim_peak = m.get("limit_peak_mib")
    notes = (
        f"{m['model']}; prompt {m['prompt_length']}, gen_length {m['gen_length']}, batch {m['batch_size']}; "
        f"torch {m['torch']}, {m['threads']} threads, {m['machine']}; {m['repeats']} repeat(s), "
        f"{m['date']}, {m['elapsed_s'] / 60:.1f} min.\n\n"
        f"cost ratio = generate time / (NFE x limit) of each run, median over the repeats; limit = {m['limit']} "
        f"(sampled between the steps of each run). Target <= {m['target']}. wall s, tokens/s, ms/NFE and limit "
        f"ms/NFE: best of the repeats. peak MB = {m['peak_mib']}"
        + (f"; the limit forward alone: {lim_peak:.0f} MB" if lim_peak is not None else "")
        + ". `llada-ref`: the costs of LLaDA's reference loop (full logits, float64 Gumbel noise), for scale.\n"
    )
    return notes + "\n" + head + "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- parallel-forced (NAP-D)

PF_PATH_POSITIONS = 240  # m x path_length, kept fixed across m as Table 5 keeps 990 (paper: 3 x 330 + 32)
PF_SUMMARY = 16
PF_HEADER = [5, 6, 7]  # a 3-token stand-in for "<think j>\n" (the random model has no tokenizer)


@torch.no_grad()
def benchmark_parallel_forced(args) -> dict:
    """`parallel_forced` at m = 1/2/3 on the paper's canvas shape scaled to the tiny model (m x path_length = 240
    path positions, summary 16; Table 5 keeps the total), steps for 1/2/3/4 tokens per step: NFE, wall time,
    the cost ratio against the per-NFE limit of the same canvas (trunk over the canvas + LM head on its slot rows
    only), sampled between the steps of each run as above, and Global-ARness@1 over the path slots."""
    from nap_hf.metrics import global_arness

    model, prompt = build_model(args), make_prompt(args)
    P = prompt.shape[1]
    trunk, head = model.model, model.get_output_embeddings()
    results = []
    for T in args.temperatures:
        for m in (1, 2, 3):
            path_length = PF_PATH_POSITIONS // m
            slots = m * path_length + PF_SUMMARY
            kw = dict(
                strategy="parallel_forced",
                m=m,
                path_length=path_length,
                summary_length=PF_SUMMARY,
                header_ids=[PF_HEADER] * (m + 1),
                temperature=T,
                return_dict_in_generate=True,
            )
            probe = model.generate(prompt, steps=2, **kw)  # the canvas and its slot rows
            canvas = probe.sequences.clone()
            slot_rows = torch.zeros_like(canvas, dtype=torch.bool)
            path_rows = torch.zeros_like(canvas, dtype=torch.bool)
            for r in probe.regions[0]:
                if r.kind in ("path", "summary"):
                    slot_rows[:, r.slice] = True
                if r.kind == "path":
                    path_rows[:, r.slice] = True
            canvas[slot_rows] = model.config.mask_token_id

            def limit(canvas=canvas, slot_rows=slot_rows):
                return head(trunk(input_ids=canvas).last_hidden_state[slot_rows])

            for _ in range(2):
                limit()
            for k in (1, 2, 3, 4):
                steps = slots // k
                ratios, walls, arness, nfe = [], [], None, None
                for rep in range(args.repeats):
                    every = max(1, steps // args.limit_samples)
                    samples, spent = [], [0.0]

                    def between(step, every=every, samples=samples, spent=spent, limit=limit):
                        if step.nfe % every == 0:
                            t0 = time.perf_counter()
                            limit()
                            samples.append(time.perf_counter() - t0)
                            spent[0] += time.perf_counter() - t0

                    t0 = time.perf_counter()
                    out = model.generate(
                        prompt,
                        steps=steps,
                        generator=torch.Generator().manual_seed(rep),
                        step_callback=between,
                        **kw,
                    )
                    wall = time.perf_counter() - t0 - spent[0]
                    nfe = out.nfe
                    ratios.append(wall / (nfe * statistics.fmean(samples)))
                    walls.append(wall)
                    arness = global_arness(out.trace, positions=path_rows).mean
                entry = {
                    "m": m,
                    "path_length": path_length,
                    "summary_length": PF_SUMMARY,
                    "temperature": T,
                    "tokens_per_step": k,
                    "steps": steps,
                    "nfe": nfe,
                    "wall_s": min(walls),
                    "cost_ratio": statistics.median(ratios),
                    "global_arness@1": arness,
                }
                entry["target_met"] = entry["cost_ratio"] <= TARGET
                results.append(entry)
                log(
                    f"parallel_forced m={m} T={T:g} {k} tok/step: NFE {nfe} {min(walls):.2f} s "
                    f"ratio {entry['cost_ratio']:.2f} Global-ARness@1 {arness:.3f}"
                )
    return {
        "meta": {
            "date": time.strftime("%Y-%m-%d %H:%M:%S"),
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "repeats": args.repeats,
            "prompt_length": P,
            "canvas": f"m x path_length = {PF_PATH_POSITIONS}, summary {PF_SUMMARY}, 3-token headers",
        },
        "results": results,
    }


def markdown_parallel_forced(report: dict) -> str:
    m = report["meta"]
    lines = [
        f"parallel_forced on the scaled paper canvas ({m['canvas']}; prompt {m['prompt_length']}), torch "
        f"{m['torch']}, {m['threads']} threads, {m['repeats']} repeat(s), {m['date']}. cost ratio = generate time / "
        "(NFE x limit), limit = trunk over the same canvas + LM head on its slot rows; median over repeats. "
        "Global-ARness@1 over the path slots.\n",
        "| m | path_length | T | tokens/step | steps | NFE | wall s | cost ratio | Global-ARness@1 | target met |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in report["results"]:
        lines.append(
            f"| {r['m']} | {r['path_length']} | {r['temperature']:g} | {r['tokens_per_step']} | {r['steps']} "
            f"| {r['nfe']} | {r['wall_s']:.2f} | {r['cost_ratio']:.2f} | {r['global_arness@1']:.3f} "
            f"| {'yes' if r['target_met'] else '**no**'} |"
        )
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- KV cache (docs/caching.md)

CACHE_SHAPES = {
    # trunk outweighs the LM head, as at 8B: d_model 512, 8 layers, MLP 2048, vocabulary 32k
    "trunk-heavy": dict(d_model=512, n_heads=8, n_layers=8, mlp_hidden_size=2048, vocab_size=32000),
    # today's decode shape: the LM head and candidate scoring are most of a step
    "decode": dict(d_model=256, n_heads=8, n_layers=4, mlp_hidden_size=768, vocab_size=32000),
    "llada-8b": dict(d_model=4096, n_heads=32, n_layers=32, mlp_hidden_size=12288, vocab_size=126464),
    "dream-7b": dict(
        hidden_size=3584,
        num_attention_heads=28,
        num_key_value_heads=4,
        num_hidden_layers=28,
        intermediate_size=18944,
        vocab_size=152064,
    ),
}


def build_cache_model(shape: str, device: str, dtype: torch.dtype):
    """Random weights in the named shape (no download), on `device` in `dtype`."""
    torch.manual_seed(0)
    spec = dict(CACHE_SHAPES[shape])
    default = torch.get_default_dtype()
    torch.set_default_dtype(
        dtype
    )  # build in the target dtype: an 8B model in float32 first would double the peak
    try:
        return _build_cache_model(shape, spec, device, dtype)
    finally:
        torch.set_default_dtype(default)


def _build_cache_model(shape: str, spec: dict, device: str, dtype: torch.dtype):
    with torch.device(device):
        if shape == "dream-7b":
            config = nap_hf.DreamConfig(
                **spec,
                mask_token_id=151666,
                eos_token_id=151643,
                pad_token_id=151643,
                max_position_embeddings=4096,
            )
            model = nap_hf.DreamModel(config)
        else:
            vocab = spec.pop("vocab_size")
            config = nap_hf.LLaDAConfig(
                **spec,
                vocab_size=vocab,
                embedding_size=vocab,
                mask_token_id=vocab - 1,
                eos_token_id=1,
                pad_token_id=1,
                max_sequence_length=4096,
            )
            model = nap_hf.LLaDAModelLM(config)
    return model.eval().to(dtype)


class StepClock:
    """Per-step wall times of one `generate` call, each tagged with the trunk's input length (a cached step's
    forward is shorter than the canvas)."""

    def __init__(self, model, device: str):
        self.device, self.lengths, self.times = device, [], []
        self.handle = model.get_decoder().register_forward_pre_hook(self.hook, with_kwargs=True)
        self.last = None

    def hook(self, module, args, kwargs):
        self.lengths.append(kwargs["input_ids"].shape[1])

    def tick(self, _step=None):
        if self.device == "cuda":
            torch.cuda.synchronize()
        now = time.perf_counter()
        if self.last is not None:
            self.times.append(now - self.last)
        self.last = now


def cache_run(model, prompt, kwargs: dict, device: str) -> dict:
    clock = StepClock(model, device)
    try:
        clock.tick()
        out = model.generate(prompt, return_dict_in_generate=True, step_callback=clock.tick, **kwargs)
    finally:
        clock.handle.remove()
    seconds = sum(clock.times)
    L = out.sequences.shape[1]
    full = [t for t, n in zip(clock.times, clock.lengths, strict=False) if n == L]
    part = [t for t, n in zip(clock.times, clock.lengths, strict=False) if n < L]
    return {
        "seconds": seconds,
        "nfe": out.nfe,
        "tokens_per_s": (out.sequences.shape[1] - prompt.shape[1]) * prompt.shape[0] / seconds,
        "full_step_ms": 1e3 * statistics.median(full) if full else None,
        "cached_step_ms": 1e3 * statistics.median(part) if part else None,
        "refreshes": len(full),
    }


def cache_cases(args) -> list[tuple[str, str, dict]]:
    """(shape, label, generate kwargs without the cache) of every comparison in `--cases`."""
    cases = []
    block = dict(gen_length=args.gen_length, block_length=args.block_length)
    for shape in args.shapes:
        if "confidence" in args.cases:
            for steps in args.steps:
                cases.append(
                    (shape, f"confidence steps={steps}", dict(strategy="confidence", steps=steps, **block))
                )
        if "threshold" in args.cases:
            cases.append((shape, "threshold 0.9", dict(strategy="threshold", steps=args.gen_length, **block)))
    if "paper" in args.cases:  # prompt 128, m = 3 x 330 + 32, blocks of 30 inside the paths, 4 tokens/step
        headers = [[5, 6], [7, 8], [9, 10], [11]]
        pf = dict(strategy="parallel_forced", m=3, path_length=330, summary_length=32, block_length=30)
        cases.append(
            (
                args.shapes[0],
                "parallel_forced paper canvas steps=256",
                dict(pf, steps=256, header_ids=headers),
            )
        )
    return cases


def benchmark_cache(args) -> dict:
    """Side by side in one process: for each case, `--repeats` rounds of (none, prefix, dual) in turn; the
    speed-up of a round is none's time / the cache's time in that round, reported as the median of rounds."""
    dtype = getattr(torch, args.dtype)
    report = {
        "meta": {
            "cpu": _cpu_name(),
            "torch": torch.__version__,
            "device": args.device,
            "dtype": args.dtype,
            "threads": torch.get_num_threads(),
            "prompt_length": args.prompt_length,
            "gen_length": args.gen_length,
            "repeats": args.repeats,
        },
        "results": [],
    }
    models = {}
    for shape, label, kwargs in cache_cases(args):
        if shape not in models:
            models[shape] = build_cache_model(shape, args.device, dtype)
        model = models[shape]
        P = 128 if "paper" in label else args.prompt_length
        g = torch.Generator().manual_seed(1234)
        prompt = torch.randint(2, 31000, (args.batch_size, P), generator=g).to(args.device)
        warm = dict(
            kwargs,
            steps=8,
            strategy="confidence" if kwargs["strategy"] == "threshold" else kwargs["strategy"],
        )
        for mode in (None, "prefix", "dual"):  # warm-up of every code path (8 steps), untimed
            cache_run(model, prompt, dict(warm, cache_implementation=mode), args.device)
        if args.device == "cuda":
            torch.cuda.reset_peak_memory_stats()
        rounds = {mode: [] for mode in ("none", "prefix", "dual")}
        for r in range(args.repeats):
            order = list(rounds)[r % 3 :] + list(rounds)[: r % 3]  # rotate, so no mode always runs first
            for mode in order:
                rounds[mode].append(
                    cache_run(
                        model,
                        prompt,
                        dict(kwargs, cache_implementation=None if mode == "none" else mode),
                        args.device,
                    )
                )
                log(
                    f"{shape} {label} {mode}: {rounds[mode][-1]['seconds']:.2f} s, NFE {rounds[mode][-1]['nfe']}"
                )
        entry = {"shape": shape, "case": label, "runs": rounds}
        for mode in ("prefix", "dual"):
            entry[f"{mode}_speedup"] = statistics.median(
                n["seconds"] / c["seconds"] for n, c in zip(rounds["none"], rounds[mode], strict=True)
            )
            entry[f"{mode}_step_ratio"] = (
                statistics.median(
                    c["cached_step_ms"] / n["full_step_ms"]
                    for n, c in zip(rounds["none"], rounds[mode], strict=True)
                    if c["cached_step_ms"] and n["full_step_ms"]
                )
                if any(c["cached_step_ms"] for c in rounds[mode])
                else None
            )
        report["results"].append(entry)
        if args.device == "cuda":
            entry["peak_gib"] = torch.cuda.max_memory_allocated() / 2**30
    return report


def step_costs(args) -> dict:
    """The cost of one decoding step, full canvas vs cached, measured by interleaving the three forwards (full,
    prefix from the middle block's start, dual over one block) `--repeats` x 10 times on the same canvas, each
    with the LM head on that block's rows: medians, so load from other processes hits all three alike."""
    out = {}
    for shape in args.shapes:
        model = build_cache_model(shape, args.device, getattr(torch, args.dtype))
        decoder, head = model.get_decoder(), model.get_output_embeddings()
        L, P, blk = args.prompt_length + args.gen_length, args.prompt_length, args.block_length
        x = torch.randint(2, 31000, (args.batch_size, L)).to(args.device)
        lo = P + (args.gen_length // blk // 2) * blk  # the middle block
        cols = {
            "prefix": torch.arange(lo, L, device=args.device),
            "dual": torch.arange(lo, lo + blk, device=args.device),
        }
        cache = DiffusionCache()
        times = {"full": [], "prefix": [], "dual": []}
        with torch.no_grad():
            for _ in range(10 * args.repeats):
                for mode in times:
                    if args.device == "cuda":
                        torch.cuda.synchronize()
                    t = time.perf_counter()
                    if mode == "full":
                        h = decoder(input_ids=x, cache=cache).last_hidden_state[:, lo : lo + blk]
                    else:
                        c = cols[mode]
                        h = decoder(input_ids=x[:, c], cache=cache, cache_position=c).last_hidden_state[
                            :, :blk
                        ]
                    head(h)
                    if args.device == "cuda":
                        torch.cuda.synchronize()
                    times[mode].append(time.perf_counter() - t)
        med = {m: statistics.median(v) for m, v in times.items()}
        out[shape] = {f"{m}_ms": 1e3 * v for m, v in med.items()}
        out[shape].update(prefix_ratio=med["prefix"] / med["full"], dual_ratio=med["dual"] / med["full"])
        log(
            f"{shape}: step cost full {1e3 * med['full']:.1f} ms, prefix {out[shape]['prefix_ratio']:.2f}x, dual {out[shape]['dual_ratio']:.2f}x"
        )
    return out


def markdown_step_costs(costs: dict, args) -> str:
    lines = [
        f"One decoding step (trunk + LM head on a {args.block_length}-row block), canvas {args.prompt_length} + "
        f"{args.gen_length}, interleaved medians of {10 * args.repeats} ({args.device}, {args.dtype}, "
        f"{torch.get_num_threads()} threads):",
        "",
        "| shape | full step (ms) | prefix step (ms) | dual step (ms) | prefix / full | dual / full |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for shape, c in costs.items():
        lines.append(
            f"| {shape} | {c['full_ms']:.1f} | {c['prefix_ms']:.1f} | {c['dual_ms']:.1f} | {c['prefix_ratio']:.2f} "
            f"| {c['dual_ratio']:.2f} |"
        )
    return "\n".join(lines) + "\n"


def _in_run(runs: list[dict]) -> tuple[float | None, float | None]:
    """From the cached runs alone (so that load drift between runs cancels): the median over runs of (cached
    step / refresh step), and of the speed-up (refresh step x NFE) / run time, a refresh step being a full-canvas
    step measured in the same run."""
    ratio = [
        r["cached_step_ms"] / r["full_step_ms"] for r in runs if r["cached_step_ms"] and r["full_step_ms"]
    ]
    speed = [r["full_step_ms"] * r["nfe"] / (1e3 * r["seconds"]) for r in runs if r["full_step_ms"]]
    return (statistics.median(ratio) if ratio else None, statistics.median(speed) if speed else None)


def markdown_cache(report: dict) -> str:
    meta = report["meta"]
    lines = [
        f"KV cache, side by side ({meta['device']}, {meta['dtype']}, {meta['threads']} threads, prompt "
        f"{meta['prompt_length']} + gen {meta['gen_length']} (paper canvas: prompt 128), {meta['repeats']} "
        "round(s); tok/s: best run; `x`: median over rounds of none's time / the cache's time in the same round; "
        "in-run: from the cached runs alone, their refresh steps being the full-canvas reference).",
        "",
        "| shape | case | NFE none/prefix/dual | tok/s none | tok/s prefix | tok/s dual | prefix x | dual x "
        "| cached / full step, in-run (prefix, dual) | speed-up in-run (prefix, dual) |",
        "|---|---|---|---:|---:|---:|---:|---:|---|---|",
    ]

    def fmt(v):
        return "n/a" if v is None else f"{v:.2f}"

    for e in report["results"]:
        best = {m: max(r["tokens_per_s"] for r in e["runs"][m]) for m in e["runs"]}
        nfe = "/".join(str(e["runs"][m][0]["nfe"]) for m in ("none", "prefix", "dual"))
        in_run = {m: _in_run(e["runs"][m]) for m in ("prefix", "dual")}
        lines.append(
            f"| {e['shape']} | {e['case']} | {nfe} | {best['none']:.1f} | {best['prefix']:.1f} | {best['dual']:.1f} "
            f"| {e['prefix_speedup']:.2f} | {e['dual_speedup']:.2f} "
            f"| {fmt(in_run['prefix'][0])}, {fmt(in_run['dual'][0])} | {fmt(in_run['prefix'][1])}, "
            f"{fmt(in_run['dual'][1])} |"
        )
    return "\n".join(lines) + "\n"


def write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter
    )
    p.add_argument(
        "--steps", type=int, nargs="+", default=[64, 128, 256], help="step counts (default 64 128 256)"
    )
    p.add_argument("--temperatures", type=float, nargs="+", default=[0.0, 1.0], help="default 0 1")
    p.add_argument("--repeats", type=int, default=3, help="timed runs per configuration (default 3)")
    p.add_argument("--quick", action="store_true", help="smoke run: one step count (the first), 1 repeat")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    p.add_argument("--gen-length", type=int, default=256)
    p.add_argument("--prompt-length", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=1)
    p.add_argument("--block-length", type=int, default=32, help="block of semi-AR confidence and threshold")
    p.add_argument("--limit-samples", type=int, default=16, help="limit forwards per timed run (default 16)")
    p.add_argument("--memory-steps", type=int, default=8, help="decoding steps per memory probe (0 = all)")
    p.add_argument("--no-memory", action="store_true", help="skip the peak-memory worker")
    p.add_argument("--out-dir", type=Path, default=HERE / "results")
    p.add_argument("--render", type=Path, metavar="JSON", help="re-summarize a saved decode.json (no runs)")
    p.add_argument("--memory-worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument(
        "--parallel-forced",
        action="store_true",
        help="run the parallel_forced suite (m = 1/2/3 x 1/2/3/4 tokens per step) instead; writes "
        "decode_parallel_forced.{json,md}",
    )
    p.add_argument(
        "--cache",
        action="store_true",
        help="the KV-cache suite instead: none / prefix / dual side by side (writes decode_cache[_<device>].{json,md})",
    )
    p.add_argument("--shapes", nargs="+", default=["trunk-heavy", "decode"], choices=sorted(CACHE_SHAPES))
    p.add_argument(
        "--shape", choices=sorted(CACHE_SHAPES), help="one shape (the GPU mode: llada-8b or dream-7b)"
    )
    p.add_argument(
        "--cases",
        nargs="+",
        default=["confidence", "threshold"],
        choices=["confidence", "threshold", "paper", "steps"],
        help="--cache suite: confidence at each --steps, threshold 0.9, parallel_forced on the paper's canvas "
        "(prompt 128, 3 x 330 + 32, blocks of 30, 256 steps; on the first shape)",
    )
    p.add_argument("--out-name", default="decode_cache", help="--cache suite: results file name (no suffix)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    args = p.parse_args(argv)
    if args.shape:
        args.shapes = [args.shape]
    if args.quick:
        args.steps, args.repeats = args.steps[:1], 1
    if args.gen_length % args.block_length:
        p.error("--gen-length must be divisible by --block-length")
    n_blocks = args.gen_length // args.block_length
    bad = [s for s in args.steps if s % n_blocks]
    if bad:
        p.error(f"--steps {bad} not divisible by the {n_blocks} blocks of the semi-AR configuration")
    return args


def main(argv=None) -> dict | None:
    argv = sys.argv[1:] if argv is None else list(argv)
    if "--isolation" in argv:  # the isolated-paths suites live in their own module (its docstring)
        sys.path.insert(0, str(HERE))
        from decode_isolation import main as isolation_main

        return isolation_main([a for a in argv if a != "--isolation"])
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.memory_worker:
        memory_worker(args)
        return None
    if args.cache and args.cases == ["steps"]:
        md = markdown_step_costs(step_costs(args), args)
        print(md)
        write_atomic(args.out_dir / f"{args.out_name}.md", md)
        return None
    if args.cache:
        report = json.loads(args.render.read_text()) if args.render else benchmark_cache(args)
        md = markdown_cache(report)
        print(md)
        tag = "" if args.device == "cpu" else f"_{args.device}"
        if not args.render:
            write_atomic(args.out_dir / f"{args.out_name}{tag}.json", json.dumps(report, indent=1) + "\n")
        write_atomic(args.out_dir / f"{args.out_name}{tag}.md", md)
        return report
    if args.parallel_forced:
        report = benchmark_parallel_forced(args)
        md = markdown_parallel_forced(report)
        print(md)
        write_atomic(args.out_dir / "decode_parallel_forced.json", json.dumps(report, indent=1) + "\n")
        write_atomic(args.out_dir / "decode_parallel_forced.md", md)
        return report
    if args.render:
        report = json.loads(args.render.read_text())
        tokens = report["meta"]["gen_length"] * report["meta"]["batch_size"]
        report["results"] = [summarize(entry, tokens) for entry in report["results"]]
    else:
        report = benchmark(args)
    md = markdown(report)
    print(md)
    write_atomic(args.out_dir / "decode.json", json.dumps(report, indent=1) + "\n")
    write_atomic(args.out_dir / "decode.md", md)
    log(f"wrote {args.out_dir / 'decode.json'} and {args.out_dir / 'decode.md'}")
    return report


if __name__ == "__main__":
    main()
