"""Training-step cost of `DiffusionSFTTrainer` against a bare forward + backward, on a tiny LLaDA-architecture
model on CPU (figures, not a test).

Model: `LLaDAModelLM` d_model 256, 8 heads, 4 layers, MLP 768, vocabulary 32000, random weights, float32.
Batch: `--batch-size` rows of `--seq-len` tokens (a quarter prompt), identical for both sides.

* trainer step: `trainer.training_step(model, batch, num_items)` after the trainer's own noising
  (`_get_num_items_in_batch`: per-row keyed noise), i.e. noise + forward with the LM head on the masked rows
  only + masked-diffusion loss + backward — everything of a step but the optimizer update;
* bare step: `model(noisy).logits` (full vocabulary at every position) + cross-entropy on the masked positions +
  backward, on the same noisy batch — what a plain masked-LM step costs;
* overhead = trainer / bare (target <= 1.15), measured in alternating pairs in one process (median over
  `--repeats` pairs), tokens/s for both, and the peak resident memory of the process (VmHWM, MiB).

    .venv/bin/python benchmarks/train.py                 # batch 8 x 512 tokens, 10 pairs
    .venv/bin/python benchmarks/train.py --batch-size 4 --seq-len 1024 --repeats 5
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

import nap_hf  # noqa: F401
from nap_hf import DiffusionSFTConfig, DiffusionSFTTrainer, LLaDAConfig, LLaDAModelLM


def peak_rss_mib() -> float | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--seq-len", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out-dir", default="benchmarks/results")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    from datasets import Dataset
    from tokenizers import Tokenizer, models
    from transformers import PreTrainedTokenizerFast

    torch.manual_seed(0)
    config = LLaDAConfig(
        d_model=256,
        n_heads=8,
        n_layers=4,
        mlp_hidden_size=768,
        vocab_size=32000,
        embedding_size=32000,
        mask_token_id=31999,
        eos_token_id=1,
        pad_token_id=1,
    )
    model = LLaDAModelLM(config)
    vocab = {f"t{i}": i for i in range(32000)}
    tok = PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer(models.WordLevel(vocab, unk_token="t0")),
        eos_token="t1",
        pad_token="t1",
        mask_token="t31999",
    )
    P = args.seq_len // 4
    g = torch.Generator().manual_seed(0)
    rows = []
    for _ in range(args.batch_size):
        ids = torch.randint(2, 31000, (args.seq_len - 1,), generator=g).tolist()
        rows.append(
            {
                "prompt": " ".join(f"t{i}" for i in ids[:P]),
                "completion": " " + " ".join(f"t{i}" for i in ids[P:]),
            }
        )
    with tempfile.TemporaryDirectory() as out:
        targs = DiffusionSFTConfig(
            output_dir=out,
            report_to="none",
            gradient_checkpointing=False,
            per_device_train_batch_size=args.batch_size,
            disable_tqdm=True,
            max_length=None,
        )
        trainer = DiffusionSFTTrainer(
            model, args=targs, train_dataset=Dataset.from_list(rows), processing_class=tok
        )
        batch = trainer.data_collator([trainer.train_dataset[i] for i in range(args.batch_size)])
        model.train()

        def trainer_step() -> float:
            t0 = time.perf_counter()
            samples = [dict(batch)]
            n = trainer._get_num_items_in_batch(samples, torch.device("cpu"))
            trainer.training_step(model, samples[0], n)
            dt = time.perf_counter() - t0
            model.zero_grad(set_to_none=True)
            return dt

        noised = trainer._noise(batch, 0)

        def bare_step() -> float:
            t0 = time.perf_counter()
            logits = model(input_ids=noised.noisy_input_ids).logits
            loss = F.cross_entropy(logits[noised.masked], batch["input_ids"][noised.masked])
            loss.backward()
            dt = time.perf_counter() - t0
            model.zero_grad(set_to_none=True)
            return dt

        trainer_step(), bare_step()  # warm-up
        pairs = []
        for i in range(args.repeats):
            a, b = (
                (trainer_step(), bare_step())
                if i % 2 == 0
                else tuple(reversed((bare_step(), trainer_step())))
            )
            pairs.append((a, b))
            print(f"pair {i}: trainer {a * 1e3:.1f} ms  bare {b * 1e3:.1f} ms", file=sys.stderr)
    tokens = args.batch_size * args.seq_len
    t_tr = statistics.median(p[0] for p in pairs)
    t_bare = statistics.median(p[1] for p in pairs)
    ratio = statistics.median(p[0] / p[1] for p in pairs)
    result = {
        "batch_size": args.batch_size,
        "seq_len": args.seq_len,
        "repeats": args.repeats,
        "threads": torch.get_num_threads(),
        "trainer_ms": t_tr * 1e3,
        "bare_ms": t_bare * 1e3,
        "trainer_tokens_per_s": tokens / t_tr,
        "bare_tokens_per_s": tokens / t_bare,
        "overhead": ratio,
        "target_met": ratio <= 1.15,
        "peak_rss_mib": peak_rss_mib(),
        "torch": torch.__version__,
    }
    table = (
        "| batch x len | trainer ms | bare ms | trainer tok/s | bare tok/s | overhead | target <= 1.15 | peak MiB |\n"
        "|---|---|---|---|---|---|---|---|\n"
        f"| {args.batch_size} x {args.seq_len} | {t_tr * 1e3:.1f} | {t_bare * 1e3:.1f} | {tokens / t_tr:.0f} | "
        f"{tokens / t_bare:.0f} | {ratio:.3f} | {'yes' if ratio <= 1.15 else 'NO'} | {result['peak_rss_mib'] or 'n/a'} |"
    )
    print(table)
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, text in (("train.json", json.dumps(result, indent=2)), ("train.md", table + "\n")):
        fd, tmp = tempfile.mkstemp(dir=out_dir, prefix=f".{name}.")
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, out_dir / name)


if __name__ == "__main__":
    main()
