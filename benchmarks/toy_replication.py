"""The paper's claims at toy scale: nap-tiny (NAP data, parallel-forced decoding) vs nap-tiny-longcot (the SAME
traces as one chain) on held-out toy arithmetic problems, at 1 / 2 / 4 tokens per step.

Tables (analogues of the paper's Tables 1, 3, 4 and 5):
- Long-CoT model: AO (confidence), AR order, random order;
- NAP model: AO (confidence on the free canvas) and parallel-forced (m = 3);
- NAP model, parallel-forced at m = 1 / 2 / 3 with the same total budget (3 x 20 path slots + 12 summary slots);
and the decoding-dynamics figure of both models side by side (Figure 1). Each configuration's result is a JSON
file under `--out`; a re-run skips those already there (resumable per configuration).

```bash
python benchmarks/toy_replication.py                  # 200 held-out problems, k = 1 2 4 (tens of minutes)
python benchmarks/toy_replication.py --n 50 --ks 1    # the quick check used during training
python benchmarks/toy_replication.py --ks 1 --temperature 0.5   # sampled tokens instead of argmax (files *-T0.5-*)
```
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from nap_hf.io import write_text_atomic  # noqa: E402


def configurations(ks: list[int], temperature: float = 0.0) -> list[tuple[str, dict]]:
    """(model kind, ToyDecoding kwargs) for every row of the tables."""
    out = []
    for k in ks:
        for strategy in ("confidence", "ar", "random"):
            out.append(("longcot", dict(strategy=strategy, layout="longcot", tokens_per_step=k)))
        out.append(("nap", dict(strategy="confidence", layout="nap", tokens_per_step=k)))
        for m in (3, 2, 1):
            out.append(("nap", dict(strategy="parallel_forced", layout="nap", m=m, tokens_per_step=k)))
    return [(kind, {**kw, "temperature": temperature}) for kind, kw in out]


def _temperature_tag(temperature: float) -> str:
    """The file-name tag of a sampled run (`-T0.5`); argmax runs have none."""
    return f"-T{temperature:g}" if temperature else ""


def _key(kind: str, kw: dict) -> str:
    tag = _temperature_tag(kw.get("temperature", 0.0))
    return f"{kind}-{kw['strategy']}-m{kw.get('m', 3)}{tag}-k{kw['tokens_per_step']}"


_ROWS = [
    ("Long-CoT", "AO (confidence)", "longcot-confidence-m3"),
    ("Long-CoT", "AR order", "longcot-ar-m3"),
    ("Long-CoT", "random order", "longcot-random-m3"),
    ("NAP", "AO (confidence)", "nap-confidence-m3"),
    ("NAP", "parallel-forced m=3", "nap-parallel_forced-m3"),
    ("NAP", "parallel-forced m=2", "nap-parallel_forced-m2"),
    ("NAP", "parallel-forced m=1", "nap-parallel_forced-m1"),
]


def _table(results: dict[str, dict], ks: list[int], ceiling: float | None, temperature: float = 0.0) -> str:
    tag = _temperature_tag(temperature)

    def cell(key: str) -> str:
        r = results.get(key)
        return f"{100 * r['accuracy']:.1f} / {r['global_arness']:.2f}" if r else "n/a"

    def detail(key: str) -> str:
        r = results.get(key)
        if not r or "equation_accuracy" not in r:
            return "n/a"
        vote = r.get("vote_accuracy")
        return f"{100 * r['equation_accuracy']:.1f}" + (f" / {100 * vote:.1f}" if vote is not None else "")

    def errors(key: str) -> str:
        r = results.get(key)
        if not r or "misread_share" not in r:
            return "n/a"
        same = r.get("identical_paths")
        return f"{100 * r['path_accuracy']:.1f} / {100 * r['misread_share']:.0f}" + (
            f" / {100 * same:.0f}" if same is not None else ""
        )

    header = [
        "| model | decoding | " + " | ".join(f"k={k}" for k in ks) + " |",
        "|---|---|" + "---|" * len(ks),
    ]
    sampled = f"; tokens sampled at temperature {temperature:g}" if temperature else ""
    lines = [
        f"Accuracy (%) / Global-ARness@1 on held-out toy problems; steps = slots / k{sampled}.",
        "",
        *header,
    ]
    for model, label, stem in _ROWS:
        lines.append(f"| {model} | {label} | " + " | ".join(cell(f"{stem}{tag}-k{k}") for k in ks) + " |")
    lines += [
        "",
        "Equations with right arithmetic (%) / accuracy of a majority vote over the decoded paths' results (%, "
        "NAP layout only), same runs.",
        "",
        *header,
    ]
    for model, label, stem in _ROWS:
        lines.append(f"| {model} | {label} | " + " | ".join(detail(f"{stem}{tag}-k{k}") for k in ks) + " |")
    lines += [
        "",
        "Where the answers go wrong: decoded paths whose result is right (%) / wrong paths whose every equation is "
        "right, i.e. that used the wrong numbers or signs of the question (%) / problems whose decoded paths are "
        "all the same text (%, NAP layout only), same runs.",
        "",
        *header,
    ]
    for model, label, stem in _ROWS:
        lines.append(f"| {model} | {label} | " + " | ".join(errors(f"{stem}{tag}-k{k}") for k in ks) + " |")
    if ceiling is not None:
        lines += ["", f"Majority-vote ceiling of the test data's own paths: {100 * ceiling:.1f}%."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nap", default=str(REPO / "models" / "nap-tiny"))
    parser.add_argument("--longcot", default=str(REPO / "models" / "nap-tiny-longcot"))
    parser.add_argument("--n", type=int, default=200, help="held-out problems")
    parser.add_argument("--ks", type=int, nargs="+", default=[1, 2, 4], help="tokens per step")
    parser.add_argument("--seed", type=int, default=0, help="the toy task's seed (as in training)")
    parser.add_argument("--digits", type=int, choices=[1, 2], default=1, help="the toy task's number width")
    parser.add_argument("--batch_size", type=int, default=100)
    parser.add_argument(
        "--temperature", type=float, default=0.0, help="0 = argmax tokens (the tables); > 0 = sampled, seeded"
    )
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "toy_replication"))
    args = parser.parse_args(argv)
    if args.temperature < 0:
        parser.error(f"--temperature must be >= 0 (0 = argmax), got {args.temperature}")
    if args.threads:
        torch.set_num_threads(args.threads)

    from transformers import AutoModel, AutoTokenizer

    import nap_hf  # noqa: F401
    from nap_hf.data.toy_arithmetic import ToyArithmetic, data_stats
    from nap_hf.evaluation.toy import ToyDecoding, evaluate_toy

    task = ToyArithmetic(seed=args.seed, digits=args.digits)
    problems = [task.problem(i, "test") for i in range(args.n)]
    ceiling = data_stats(task.instances(args.n, "test"))["majority_vote_ceiling"]
    models = {}
    for kind, path in (("nap", args.nap), ("longcot", args.longcot)):
        if Path(path).is_dir():
            models[kind] = (AutoModel.from_pretrained(path).eval(), AutoTokenizer.from_pretrained(path))
        else:
            print(f"(no {kind} model at {path}: its rows are skipped)")
    out = Path(args.out)
    results: dict[str, dict] = {}
    for kind, kw in configurations(args.ks, args.temperature):
        key = _key(kind, kw)
        file = out / f"{key}-n{args.n}.json"
        if file.exists():
            results[key] = json.loads(file.read_text())
            continue
        if kind not in models:
            continue
        model, tok = models[kind]
        t0 = time.perf_counter()
        res = evaluate_toy(
            model, tok, problems, ToyDecoding(**kw, digits=args.digits), batch_size=args.batch_size
        )
        row = {**dataclasses.asdict(res), "seconds": round(time.perf_counter() - t0, 1)}
        write_text_atomic(file, json.dumps(row) + "\n")
        results[key] = row
        print(
            f"{res.decoding:32s} acc {100 * res.accuracy:5.1f}%  equations {100 * res.equation_accuracy:5.1f}%  "
            f"Global-ARness@1 {res.global_arness:.3f}  "
            f"NFE {res.nfe:.0f}  ({row['seconds']} s)",
            flush=True,
        )
    table = _table(results, args.ks, ceiling, args.temperature)
    write_text_atomic(out / f"table-n{args.n}{_temperature_tag(args.temperature)}.md", table)
    print("\n" + table)

    if (
        len(models) == 2 and not args.temperature
    ):  # Figure 1 at toy scale: both models at 1 token/step, argmax
        from nap_hf.evaluation.toy import toy_prompts
        from nap_hf.plotting import plot_decoding_dynamics

        runs, regions, titles = [], [], []
        for kind, kw, title in (
            ("longcot", dict(strategy="confidence", layout="longcot"), "Long-CoT model, AO"),
            ("nap", dict(strategy="confidence", layout="nap"), "NAP model, AO"),
            ("nap", dict(strategy="parallel_forced", layout="nap"), "NAP model, parallel-forced"),
        ):
            model, tok = models[kind]
            inputs = toy_prompts(tok, problems[:1])
            o = model.generate(
                **inputs,
                return_dict_in_generate=True,
                **ToyDecoding(**kw, digits=args.digits).generate_kwargs(tok),
            )
            runs.append(o.trace)
            regions.append(o.regions if o.paths is not None else None)
            titles.append(title)
        plot_decoding_dynamics(runs, regions=regions, titles=titles, path=out / "decoding_dynamics.png")
        print(f"figure: {out / 'decoding_dynamics.png'}")


if __name__ == "__main__":
    main()
