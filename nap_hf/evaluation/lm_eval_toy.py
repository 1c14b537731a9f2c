"""A local lm-evaluation-harness task of held-out toy arithmetic problems (`nap_hf.data.toy_arithmetic`), to run
nap-tiny through lm-eval exactly as `benchmarks/toy_replication.py` runs it through `evaluate_toy`.

```bash
python -m nap_hf.evaluation.lm_eval_toy toy_task --n 200     # writes toy_task/{nap_tiny_toy.yaml, ...}
nap-hf-eval-harness --model nap_hf --model_args pretrained=models/nap-tiny \\
    --include_path toy_task --tasks nap_tiny_toy --apply_chat_template --device cpu
```

The task is `generate_until` on the question alone (with `--apply_chat_template`, the same prompt as
`toy_prompts`), scored by :func:`process_results`: the answer of the summary slot against the gold, with
`toy_record`, the toy evaluation's own check; the metric `acc` is `ToyResult.accuracy` for the same problems.
This module does not import lm-eval (nor register the model), so the task loads under any lm-eval command.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from nap_hf.data.format import parse_instance
from nap_hf.data.toy_arithmetic import ToyArithmetic, ToyProblem
from nap_hf.evaluation.toy import toy_record
from nap_hf.io import write_text_atomic

__all__ = ["TOY_TASK", "write_toy_task", "process_results"]

TOY_TASK = "nap_tiny_toy"

_YAML = """\
task: {task}
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
test_split: test
output_type: generate_until
doc_to_text: "{{{{question}}}}"
doc_to_target: "{{{{answer}}}}"
generation_kwargs:
  until: ["<|endoftext|>"]
process_results: !function utils.process_results
metric_list:
  - metric: acc
    aggregation: mean
    higher_is_better: true
metadata:
  version: 1.0
"""

_UTILS = '''"""Scoring of the nap-tiny toy task (written by nap_hf.evaluation.lm_eval_toy)."""

from nap_hf.evaluation.lm_eval_toy import process_results  # noqa: F401
'''


def _doc(problem: ToyProblem, digits: int) -> dict[str, Any]:
    return {
        "id": problem.id,
        "question": problem.question,
        "answer": str(problem.answer),
        "start": problem.start,
        "events": list(problem.events),
        "digits": digits,
    }


def write_toy_task(
    out_dir: str | Path, n: int = 200, *, seed: int = 0, digits: int = 1, task: str = TOY_TASK
) -> Path:
    """Write the task (``<task>.yaml``, ``utils.py``, ``<task>.jsonl`` with held-out problems 0..n-1 of
    ``ToyArithmetic(seed=seed, digits=digits)``, the problems ``toy_replication.py --n n`` evaluates) to
    ``out_dir``; pass that folder to lm-eval's ``--include_path``. Returns ``out_dir``."""
    if n < 1:
        raise ValueError(f"`n` must be >= 1 (held-out problems), got {n}.")
    out = Path(out_dir)
    toy = ToyArithmetic(seed=seed, digits=digits)
    rows = [_doc(toy.problem(i, "test"), digits) for i in range(n)]
    data = out / f"{task}.jsonl"
    write_text_atomic(data, "".join(json.dumps(r) + "\n" for r in rows))
    write_text_atomic(out / f"{task}.yaml", _YAML.format(task=task, data=json.dumps(str(data.resolve()))))
    write_text_atomic(out / "utils.py", _UTILS)
    return out


def process_results(doc: dict[str, Any], results: list[str]) -> dict[str, float]:
    """lm-eval's per-document score: ``acc`` = the summary's answer equals the gold (``toy_record``)."""
    problem = ToyProblem(doc["id"], doc["question"], int(doc["start"]), tuple(int(e) for e in doc["events"]))
    parsed = parse_instance(results[0])
    record = toy_record(problem, parsed.answer, parsed.paths, int(doc.get("digits", 1)))
    return {"acc": float(record["correct"])}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Write the local lm-eval task of held-out toy problems.")
    parser.add_argument("out_dir", help="folder for the task files (lm-eval's --include_path)")
    parser.add_argument("--n", type=int, default=200, help="held-out problems (the first n)")
    parser.add_argument("--seed", type=int, default=0, help="the toy task's seed (as in training)")
    parser.add_argument("--digits", type=int, choices=[1, 2], default=1, help="the number width")
    args = parser.parse_args(argv)
    out = write_toy_task(args.out_dir, args.n, seed=args.seed, digits=args.digits)
    print(f"wrote task {TOY_TASK!r} ({args.n} problems) to {out}")


if __name__ == "__main__":
    main()
