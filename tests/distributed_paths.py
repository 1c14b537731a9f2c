"""Decode with `distribute_paths=True` under torchrun (gloo, CPU) and write every rank's result as JSON:
`python -m torch.distributed.run --nproc_per_node N tests/distributed_paths.py MODEL_DIR OUT_DIR [--paths M]`.
Without torchrun it decodes in one process (distribute_paths=False): the reference the test compares with."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import torch

import nap_hf  # noqa: F401  (registers the Auto classes)
from nap_hf import LLaDAModelLM


def decode(model, m: int, **kwargs):
    """A padded batch of 2 random prompts, parallel-forced with isolated paths, float64, sampled tokens (so the
    per-row draws must line up exactly across processes too)."""
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(3, 200, (2, 6), generator=g)
    mask = torch.ones_like(ids)
    ids[0, :2], mask[0, :2] = model.config.eos_token_id, 0
    headers = [[5 + j] * (1 + j % 2) for j in range(m)] + [[11, 12]]
    out = model.generate(
        ids,
        attention_mask=mask,
        strategy="parallel_forced",
        m=m,
        path_length=6,
        summary_length=4,
        header_ids=headers,
        steps=3 * m + 2,
        temperature=0.7,
        seed=5,
        path_isolation=True,
        return_dict_in_generate=True,
        **kwargs,
    )
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("model")
    parser.add_argument("out")
    parser.add_argument("--paths", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    model = LLaDAModelLM.from_pretrained(args.model, dtype=torch.float64).eval()
    model.config.path_isolation = True  # no warning: the test is about the mechanics
    distributed = "RANK" in os.environ
    rank = 0
    counters = {}
    if distributed:
        torch.distributed.init_process_group("gloo")
        rank = torch.distributed.get_rank()
    captured = {}
    original = nap_hf.generation.isolated.IsolatedPathsForward.__call__

    def spy(self, x, rows, window=None):  # keep the forward object to read its counters
        captured["forward"] = self
        return original(self, x, rows, window)

    nap_hf.generation.isolated.IsolatedPathsForward.__call__ = spy
    out = decode(model, args.paths, distribute_paths=distributed)
    fwd = captured["forward"]
    counters = {
        "prompt_tokens": fwd.prompt_tokens,
        "path_tokens": fwd.path_tokens,
        "summary_tokens": fwd.summary_tokens,
        "path_passes": fwd.path_passes,
        "local_paths": fwd.local,
    }
    Path(args.out).mkdir(parents=True, exist_ok=True)
    result = {
        "sequences": out.sequences.tolist(),
        "trace": out.trace.tolist(),
        "nfe": out.nfe,
        "counters": counters,
    }
    (Path(args.out) / f"rank{rank}.json").write_text(json.dumps(result))
    if distributed:
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main()
