"""nap-tiny: train the embedded default models (NAP and Long-CoT) on the toy arithmetic task, on a CPU.

Every step is resumable: run the same command again after an interruption and it continues where it stopped.

```bash
# 1. data (NAP and Long-CoT variants of the SAME traces, 200 held-out test problems), the toy tokenizer and
#    the untrained ~2M-parameter LLaDA-architecture model both runs start from
python recipes/nap_tiny.py prepare --out_dir outputs/nap-tiny

# 2. train (hours on 2 CPU cores; checkpoints every `save_steps`, resumes from the last one; accuracy on 50
#    held-out problems every `eval_every` steps goes to <output_dir>/learning_curve.jsonl)
#    The shipped models had four phases, each continuing the last one's final weights:
#    tiny_{nap,longcot}_cpu.yaml, then tiny_{nap,longcot}_cpu_phase2.yaml, ..._phase3.yaml, ..._phase4.yaml
python recipes/nap_tiny.py train --config recipes/configs/tiny_nap_cpu.yaml
python recipes/nap_tiny.py train --config recipes/configs/tiny_longcot_cpu.yaml

# 3. copy the final weights into the repository with the parallel-forced generation defaults and a card
python recipes/nap_tiny.py export --run outputs/nap-tiny/nap-run4 --to models/nap-tiny --kind nap \
    --config recipes/configs/tiny_nap_cpu_phase4.yaml --results benchmarks/results/toy_replication
python recipes/nap_tiny.py export --run outputs/nap-tiny/longcot-run4 --to models/nap-tiny-longcot --kind longcot \
    --config recipes/configs/tiny_longcot_cpu_phase4.yaml --results benchmarks/results/toy_replication
```
`train` takes every flag of `recipes/sft.py` (the YAML holds them) plus `--eval_every` and `--eval_problems`.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import sys
import time
from pathlib import Path

from transformers import TrainerCallback

REPO = Path(__file__).resolve().parent.parent
MODEL_SHAPE = dict(d_model=192, n_layers=5, n_heads=6, mlp_hidden_size=448, max_sequence_length=256)
"""nap-tiny's shape: about 2.2M parameters."""


def _sft_module():
    spec = importlib.util.spec_from_file_location("nap_sft_recipe", REPO / "recipes" / "sft.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def prepare(
    out_dir: str, n_train: int, n_test: int, seed: int, question_numbers: str = "decimal", digits: int = 1
) -> None:
    """Write the toy data, the tokenizer and the untrained model (skips what is already there)."""
    from nap_hf.data.toy_arithmetic import ToyArithmetic, build_toy_tokenizer, write_toy_data
    from nap_hf.testing import LLADA_SPECIALS, write_tiny_llada

    out = Path(out_dir)
    if not (out / "stats.json").exists():
        stats = write_toy_data(
            out, n_train=n_train, n_test=n_test, seed=seed, question_numbers=question_numbers, digits=digits
        )
        print(json.dumps(stats, indent=2))
    init = out / "init"
    if not (init / "model.safetensors").exists():
        task = ToyArithmetic(seed=seed, question_numbers=question_numbers, digits=digits)
        corpus = []
        for inst in task.instances(3000, "train"):
            rows = inst.rows()
            corpus += [inst.problem.question, rows["nap"]["completion"], rows["longcot"]["completion"]]
        tok = build_toy_tokenizer(corpus, specials=LLADA_SPECIALS)
        write_tiny_llada(init, tokenizer=tok, seed=seed, **MODEL_SHAPE)
    print(f"prepared {out} (data, tokenizer, untrained model in {init})")


def held_out_problems(data_dir: Path, n: int) -> list:
    """The first `n` held-out problems that `prepare` wrote to `data_dir/test.jsonl` (same task settings as the
    training data)."""
    from nap_hf.data.toy_arithmetic import ToyProblem

    rows = [json.loads(line) for line in (data_dir / "test.jsonl").read_text().splitlines()[:n]]
    return [
        ToyProblem(id=r["id"], question=r["question"], start=r["start"], events=tuple(r["events"]))
        for r in rows
    ]


class ToyEvalCallback(TrainerCallback):
    """Every `every` steps (and at the end), decode the held-out `problems` and append accuracy and
    Global-ARness@1 to `path` (`<output_dir>/learning_curve.jsonl`); a step already there is not redone."""

    def __init__(self, tokenizer, problems, decoding, every, path):
        self.tokenizer, self.problems, self.decoding = tokenizer, problems, decoding
        self.every, self.path = every, Path(path)

    def _run(self, state, model):
        import torch

        from nap_hf.evaluation.toy import evaluate_toy

        done = set()
        if self.path.exists():
            done = {json.loads(line)["step"] for line in self.path.read_text().splitlines() if line.strip()}
        if state.global_step in done:
            return
        was_training = model.training
        model.eval()
        t0 = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=False):
            res = evaluate_toy(model, self.tokenizer, self.problems, self.decoding)
        model.train(was_training)
        row = {
            "step": state.global_step,
            "decoding": res.decoding,
            "n": res.n,
            "accuracy": res.accuracy,
            "equation_accuracy": res.equation_accuracy,
            "vote_accuracy": res.vote_accuracy,
            "path_accuracy": res.path_accuracy,
            "misread_share": res.misread_share,
            "identical_paths": res.identical_paths,
            "global_arness@1": res.global_arness,
            "seconds": round(time.perf_counter() - t0, 1),
        }
        print(json.dumps(row), flush=True)
        with open(self.path, "a") as f:
            f.write(json.dumps(row) + "\n")

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if args.process_index == 0 and self.every and state.global_step % self.every == 0:
            self._run(state, model)

    def on_train_end(self, args, state, control, model=None, **kwargs):
        if args.process_index == 0:
            self._run(state, model)


def train(argv: list[str]) -> None:
    from transformers.trainer_utils import get_last_checkpoint

    extra = argparse.ArgumentParser(add_help=False)
    extra.add_argument("--eval_every", type=int, default=500)
    extra.add_argument("--eval_problems", type=int, default=50)
    extra.add_argument("--eval_strategy_name", default=None, help="decoding checked during training")
    known, rest = extra.parse_known_args(argv)
    sft = _sft_module()
    script_args, training_args, model_args = sft.make_parser().parse_args_and_config(rest)

    import torch

    from nap_hf.evaluation.toy import ToyDecoding

    if training_args.use_cpu and os.environ.get("NAP_TINY_THREADS"):
        torch.set_num_threads(int(os.environ["NAP_TINY_THREADS"]))
    out = Path(training_args.output_dir)
    if training_args.resume_from_checkpoint is None and out.is_dir():
        last = get_last_checkpoint(str(out))
        if last is not None:
            print(f"resuming from {last}")
            training_args.resume_from_checkpoint = last
    layout = "longcot" if "longcot" in str(script_args.dataset_name) else "nap"
    strategy = known.eval_strategy_name or ("parallel_forced" if layout == "nap" else "confidence")
    data_dir = Path(str(script_args.dataset_name)).parent
    problems = held_out_problems(data_dir, known.eval_problems)
    # the number width `prepare` used sets the path slot of the check; data written before `digits` existed
    # was the two-digit task
    digits = json.loads((data_dir / "stats.json").read_text()).get("digits", 2)
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_args.model_name_or_path)
    callback = ToyEvalCallback(
        tokenizer,
        problems,
        ToyDecoding(
            strategy=strategy,
            layout=layout,
            digits=digits,
            path_isolation=bool(getattr(training_args, "path_isolation", False)),
        ),
        known.eval_every,
        out / "learning_curve.jsonl",
    )
    out.mkdir(parents=True, exist_ok=True)
    sft.main(script_args, training_args, model_args, callbacks=[callback])


def training_phases(config: str | Path) -> list[tuple[Path, dict]]:
    """The chain of training configs that ends in `config`, first phase first: a phase whose
    `model_name_or_path` is another config's `output_dir` (in the same folder) continues that one."""
    import yaml

    config = Path(config)
    by_output = {}
    for other in sorted(config.parent.glob("*.yaml")):
        cfg = yaml.safe_load(other.read_text()) or {}
        if isinstance(cfg, dict) and cfg.get("output_dir"):
            by_output.setdefault(str(cfg["output_dir"]).rstrip("/"), (other, cfg))
    chain = [(config, yaml.safe_load(config.read_text()))]
    while True:
        parent = by_output.get(str(chain[0][1].get("model_name_or_path", "")).rstrip("/"))
        if parent is None or any(parent[0] == c for c, _ in chain):
            return chain
        chain.insert(0, parent)


def joined_learning_curve(run: str | Path, config: str | Path | None = None) -> list[dict]:
    """The learning curve of `run`, preceded by those of the earlier phases of `config`'s chain (each read from
    its `output_dir`), with `step` counted from the start of phase 1 (`phase` and `phase_step` keep the origin).
    A phase whose curve is missing still adds its `max_steps` to the count."""
    phases = training_phases(config) if config else [(None, {})]
    rows, offset = [], 0
    for i, (_, cfg) in enumerate(phases, 1):
        folder = run if i == len(phases) else cfg.get("output_dir")
        curve = Path(folder) / "learning_curve.jsonl" if folder else None  # no output_dir: no curve to read
        if curve is not None and curve.is_file():
            for line in curve.read_text().splitlines():
                if line.strip():
                    r = json.loads(line)
                    rows.append({**r, "step": offset + r["step"], "phase": i, "phase_step": r["step"]})
        offset += int(cfg.get("max_steps", 0))
    return rows


def _card(model, kind: str, run: Path, config: str | None, results: str | None) -> str:
    """The model card: provenance (this recipe, the toy task, the training config) and the evaluation table
    (the learning curve's last check, plus the toy replication's rows for this model when given)."""
    from nap_hf.hub import decoding_settings, render_model_card

    phases = training_phases(config) if config else []
    cfg = phases[-1][1] if phases else {}
    steps = sum(int(c.get("max_steps", 0)) for _, c in phases)
    # settings shared by every phase; the per-phase schedule (steps, lr, warm-up, seed) is listed under Provenance
    shared = ("per_device_train_batch_size", "weight_decay", "adam_beta2", "bf16", "max_length")
    hyper = {k: cfg[k] for k in shared if k in cfg} | ({"max_steps (all phases)": steps} if phases else {})
    objective = {
        k: cfg[k]
        for k in (
            "loss_weight",
            "loss_normalization",
            "slot_aligned",
            "nap_m",
            "path_length",
            "summary_length",
            "path_isolation",
        )
        if k in cfg
    }

    def row(benchmark: str, r: dict) -> dict:
        equations = r.get("equation_accuracy")
        return {
            "benchmark": benchmark,
            "setting": r["decoding"],
            "accuracy": f"{100 * r['accuracy']:.1f}",
            "equations right": "-" if equations is None else f"{100 * equations:.1f}",
            "Global-ARness@1": f"{r.get('global_arness', r.get('global_arness@1')):.3f}",
        }

    evals: list[dict] = []
    curve = joined_learning_curve(run, config)
    if curve:
        last = curve[-1]
        evals.append(row(f"toy arithmetic, {last['n']} held-out problems (step {last['step']})", last))
    if results and Path(results).is_dir():
        # the toy replication's files of this model (nap-tiny-isolated: its headline m = 3 rows at each k)
        pattern = {"nap-isolated": "iso-parallel_forced-m3-k*-n*.json"}.get(kind, f"{kind}-*-n*.json")
        for f in sorted(Path(results).glob(pattern)):
            r = json.loads(f.read_text())
            evals.append(row(f"toy arithmetic, {r['n']} held-out problems", r))
    name = {"nap": "nap-tiny", "longcot": "nap-tiny-longcot", "nap-isolated": "nap-tiny-isolated"}[kind]
    card = render_model_card(
        model_name=name,
        repo_id=f"models/{name}",
        model_type="llada",
        decoding=decoding_settings(model),
        objective=objective,
        hyperparameters=hyper,
        eval_results=evals or None,
        tags=["toy", "nap-tiny"],
        license="apache-2.0",
    )
    data = "Long-CoT variant" if kind == "longcot" else "NAP variant (m = 3 paths + summary, slot-aligned)"
    if kind == "nap-isolated":
        return card + _isolated_provenance(phases, steps, cfg)
    commands = (
        "; then ".join(f"`python recipes/nap_tiny.py train --config {c}`" for c, _ in phases) or "`train`"
    )
    schedule = "".join(
        f"\n- phase {i}: {c.get('max_steps')} steps, lr {c.get('learning_rate')} {c.get('lr_scheduler_type')}, "
        f"{c.get('warmup_steps', 0)} warm-up steps, seed {c.get('seed')}"
        for i, (_, c) in enumerate(phases, 1)
    )
    card = card.replace(
        "A fine-tuned version of a local base checkpoint, trained", "A model trained from scratch"
    )
    card = card.replace("Base model: a local base checkpoint", "Base model: none (random initialisation)")
    return card + (
        "\n## Provenance\n\nTrained from scratch on a 2-core CPU by this repository's recipe "
        f"({commands}; {steps} steps in all, each phase continuing the previous one's final weights), from the untrained ~2.2M-parameter "
        "LLaDA-architecture model and byte-level BPE written by `python recipes/nap_tiny.py prepare`, on the "
        f"{data} of the toy arithmetic task (`nap_hf.data.toy_arithmetic`, seed 0, 200,000 instances). The task, "
        "its numbers (single digits: operands in [1, 9], every value in [0, 9]) and the evaluation are described in the "
        "repository README (nap-tiny section). It is a toy: it only knows this task.\n"
        + (
            f"\nTraining phases (batch {cfg.get('per_device_train_batch_size')}):{schedule}\n"
            if phases
            else ""
        )
    )


def _isolated_provenance(phases: list, steps: int, cfg: dict) -> str:
    """The provenance of nap-tiny-isolated: fine-tuned from the shipped nap-tiny with isolated paths."""
    commands = "; then ".join(f"`python recipes/nap_tiny.py train --config {c}`" for c, _ in phases)
    return (
        "\n## Provenance\n\nFine-tuned on a 2-core CPU by this repository's recipe "
        f"({commands}; {steps} steps, lr {cfg.get('learning_rate')} {cfg.get('lr_scheduler_type')}, "
        f"{cfg.get('warmup_steps', 0)} warm-up steps, seed {cfg.get('seed')}, batch "
        f"{cfg.get('per_device_train_batch_size')}) from `models/nap-tiny` (trained with full attention), on the "
        "same NAP data of the toy arithmetic task (`nap_hf.data.toy_arithmetic`, seed 0, 200,000 instances), with "
        "`path_isolation: true`: each path attends to the question and itself only, the summary to everything, and "
        "every path slot starts at the same position (docs/isolation.md). Decode it with "
        "`generate(path_isolation=True)`, which its generation config sets. It is a toy: it only knows this task.\n"
    )


def export(run: str, to: str, kind: str, config: str | None = None, results: str | None = None) -> None:
    """Copy the trained model of `run` to `to` with generation defaults for `kind` (parallel_forced for NAP)
    and a model card."""
    import yaml
    from transformers import AutoModel, AutoTokenizer

    import nap_hf  # noqa: F401
    from nap_hf.data.toy_arithmetic import TOY_PATH_LENGTH, TOY_SUMMARY_LENGTH
    from nap_hf.generation import DiffusionGenerationConfig

    model = AutoModel.from_pretrained(run)
    tok = AutoTokenizer.from_pretrained(run)
    if kind in ("nap", "nap-isolated"):
        # the slots the model was trained on (the training YAML when given; else the default task's)
        cfg = yaml.safe_load(Path(config).read_text()) if config else {}
        path_length = cfg.get("path_length", TOY_PATH_LENGTH)
        summary_length = cfg.get("summary_length", TOY_SUMMARY_LENGTH)
        gen = DiffusionGenerationConfig(
            strategy="parallel_forced",
            m=3,
            path_length=path_length,
            summary_length=summary_length,
            steps=3 * path_length + summary_length,
            path_isolation=kind == "nap-isolated",
            mask_token_id=model.config.mask_token_id,
            eos_token_id=tok.eos_token_id,
            pad_token_id=tok.pad_token_id,
        )
    else:
        from nap_hf.evaluation.toy import LONGCOT_GEN_LENGTH

        gen = DiffusionGenerationConfig(
            strategy="confidence",
            gen_length=LONGCOT_GEN_LENGTH,
            steps=LONGCOT_GEN_LENGTH,
            mask_token_id=model.config.mask_token_id,
            eos_token_id=tok.eos_token_id,
            pad_token_id=tok.pad_token_id,
        )
    model.generation_config = gen
    tmp = Path(to).with_name(Path(to).name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    from nap_hf.io import write_text_atomic

    curve = joined_learning_curve(run, config)
    if curve:
        write_text_atomic(tmp / "learning_curve.jsonl", "".join(json.dumps(r) + "\n" for r in curve))

    write_text_atomic(tmp / "README.md", _card(model, kind, Path(run), config, results))
    if Path(to).exists():
        shutil.rmtree(to)
    os.replace(tmp, to)
    print(f"exported {run} -> {to}")


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in {"prepare", "train", "export"}:
        sys.exit("usage: nap_tiny.py {prepare,train,export} ...  (see the docstring at the top of this file)")
    cmd, rest = argv[0], argv[1:]
    if cmd == "train":
        return train(rest)
    parser = argparse.ArgumentParser(prog=f"nap_tiny.py {cmd}")
    if cmd == "prepare":
        parser.add_argument("--out_dir", default="outputs/nap-tiny")
        parser.add_argument("--n_train", type=int, default=200_000)
        parser.add_argument("--n_test", type=int, default=200)
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument("--question_numbers", choices=["decimal", "lsd"], default="decimal")
        parser.add_argument(
            "--digits",
            type=int,
            choices=[1, 2],
            default=1,
            help="1: single-digit task (default); 2: LSD-first.",
        )
        a = parser.parse_args(rest)
        prepare(a.out_dir, a.n_train, a.n_test, a.seed, a.question_numbers, a.digits)
    else:
        parser.add_argument("--run", required=True)
        parser.add_argument("--to", required=True)
        parser.add_argument("--kind", choices=["nap", "longcot", "nap-isolated"], required=True)
        parser.add_argument("--config", default=None, help="the training YAML (for the card)")
        parser.add_argument(
            "--results", default=None, help="benchmarks/results/toy_replication (for the card)"
        )
        a = parser.parse_args(rest)
        export(a.run, a.to, a.kind, a.config, a.results)


if __name__ == "__main__":
    main()
