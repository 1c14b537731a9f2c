"""Tiny random LLaDA and Dream checkpoints written in the EXACT hub format (the published `config.json`
fields, safetensors key names, tokenizer files with the mask token and chat template), built offline in
about a second. Used by the tests, the benchmarks and the untrained demo; they exercise the same loading
code as GSAI-ML/LLaDA-8B-* and Dream-org/Dream-v0-*-7B.

Test doubles live beside them: :mod:`nap_hf.testing.openai_server` is an OpenAI-compatible server with fault
injection for the teacher tests (real teachers are served by vLLM, SGLang or TGI)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from ..io import write_text_atomic

__all__ = [
    "LLADA_HUB_CONFIG",
    "DREAM_HUB_CONFIG",
    "tiny_corpus",
    "build_byte_bpe",
    "write_tiny_llada",
    "write_tiny_dream",
]

# The published config.json files, field for field (sizes are overridden for tiny models).
LLADA_HUB_CONFIG: dict = {
    "activation_type": "silu",
    "alibi": False,
    "alibi_bias_max": 8.0,
    "architectures": ["LLaDAModelLM"],
    "attention_dropout": 0.0,
    "attention_layer_norm": False,
    "attention_layer_norm_with_affine": True,
    "auto_map": {
        "AutoConfig": "configuration_llada.LLaDAConfig",
        "AutoModelForCausalLM": "modeling_llada.LLaDAModelLM",
        "AutoModel": "modeling_llada.LLaDAModelLM",
    },
    "bias_for_layer_norm": False,
    "block_group_size": 1,
    "block_type": "llama",
    "d_model": 4096,
    "embedding_dropout": 0.0,
    "embedding_size": 126464,
    "eos_token_id": 126081,
    "flash_attention": False,
    "include_bias": False,
    "include_qkv_bias": False,
    "init_cutoff_factor": None,
    "init_device": "meta",
    "init_fn": "mitchell",
    "init_std": 0.02,
    "input_emb_norm": False,
    "layer_norm_type": "rms",
    "layer_norm_with_affine": True,
    "mask_token_id": 126336,
    "max_sequence_length": 4096,
    "mlp_hidden_size": 12288,
    "mlp_ratio": 4,
    "model_type": "llada",
    "multi_query_attention": None,
    "n_heads": 32,
    "n_kv_heads": 32,
    "n_layers": 32,
    "pad_token_id": 126081,
    "precision": "amp_bf16",
    "residual_dropout": 0.0,
    "rms_norm_eps": 1e-05,
    "rope": True,
    "rope_full_precision": True,
    "rope_theta": 500000.0,
    "scale_logits": False,
    "transformers_version": "4.46.3",
    "use_cache": False,
    "vocab_size": 126464,
    "weight_tying": False,
}

DREAM_HUB_CONFIG: dict = {
    "architectures": ["DreamModel"],
    "attention_dropout": 0.0,
    "auto_map": {"AutoConfig": "configuration_dream.DreamConfig", "AutoModel": "modeling_dream.DreamModel"},
    "bos_token_id": 151643,
    "eos_token_id": 151643,
    "hidden_act": "silu",
    "hidden_size": 3584,
    "initializer_range": 0.02,
    "intermediate_size": 18944,
    "mask_token_id": 151666,
    "max_position_embeddings": 131072,
    "max_window_layers": 28,
    "model_type": "Dream",
    "num_attention_heads": 28,
    "num_hidden_layers": 28,
    "num_key_value_heads": 4,
    "pad_token_id": 151643,
    "rms_norm_eps": 1e-06,
    "rope_scaling": None,
    "rope_theta": 1000000.0,
    "sliding_window": None,
    "tie_word_embeddings": False,
    "torch_dtype": "bfloat16",
    "transformers_version": "4.46.2",
    "use_cache": False,
    "use_sliding_window": False,
    "vocab_size": 152064,
}

LLADA_SPECIALS = [
    "<|startoftext|>",
    "<|endoftext|>",
    "<|mdm_mask|>",
    "<|start_header_id|>",
    "<|end_header_id|>",
    "<|eot_id|>",
]
LLADA_CHAT_TEMPLATE = (
    "{% set loop_messages = messages %}{% for message in loop_messages %}"
    "{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n' + message['content'] | trim"
    " + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
)
DREAM_SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|beginoftext|>", "<|mask|>"]
DREAM_CHAT_TEMPLATE = (
    "{% if messages[0]['role'] != 'system' %}<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def tiny_corpus(n: int = 400, seed: int = 0) -> list[str]:
    """Deterministic English-and-arithmetic sentences for training a tiny BPE."""
    import random

    rng = random.Random(seed)
    names = ["Ann", "Ben", "Cleo", "Dan", "Eve", "Finn", "Gus", "Hana"]
    things = ["apples", "books", "coins", "pens", "cards", "shells", "stamps"]
    out = []
    for _ in range(n):
        a, b = rng.randint(1, 99), rng.randint(1, 99)
        who, what = rng.choice(names), rng.choice(things)
        out.append(
            f"{who} has {a} {what} and buys {b} more. How many {what} does {who} have? "
            f"{a} + {b} = {a + b}. The final answer is \\boxed{{{a + b}}}.\n<think 1>\n</think 1>\n<summary>\n</summary>"
        )
    return out


def build_byte_bpe(vocab_size: int = 512, specials: list[str] | None = None):
    """A byte-level BPE `tokenizers.Tokenizer` trained on :func:`tiny_corpus`, special tokens appended last."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False
    )
    tok.train_from_iterator(tiny_corpus(), trainer=trainer)
    if specials:
        tok.add_special_tokens(specials)
    return tok


def _write_json(path: Path, data: dict) -> None:
    write_text_atomic(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def _round_up(n: int, multiple: int = 64) -> int:
    return (n + multiple - 1) // multiple * multiple


def _save_weights(model: torch.nn.Module, path: Path, dtype: torch.dtype) -> None:
    state = {k: v.detach().to(dtype).contiguous() for k, v in model.state_dict().items()}
    tmp = path.with_name(f".{path.name}.tmp")
    save_file(state, str(tmp), metadata={"format": "pt"})
    os.replace(tmp, path)


def _write_model_and_tokenizer_config(
    path: Path,
    model_cls,
    config_cls,
    cfg: dict,
    *,
    seed: int,
    dtype: torch.dtype,
    ids: dict[str, int],
    special_map: dict[str, str],
    bos: str,
    tokenizer_fields: dict,
) -> None:
    """The files both tiny checkpoints share: seeded random weights under the published key names, the hub's
    `config.json` as given, `generation_config.json`, `tokenizer_config.json` (added tokens + `tokenizer_fields`)
    and `special_tokens_map.json`."""
    torch.manual_seed(seed)
    model = model_cls(config_cls(**{k: v for k, v in cfg.items() if k != "model_type"}))
    _save_weights(model, path / "model.safetensors", dtype)
    _write_json(path / "config.json", cfg)
    eos = ids["<|endoftext|>"]
    _write_json(
        path / "generation_config.json",
        {
            "bos_token_id": ids[bos],
            "eos_token_id": eos,
            "pad_token_id": eos,
            "transformers_version": cfg["transformers_version"],
        },
    )
    added = {
        str(i): {
            "content": t,
            "special": True,
            "lstrip": False,
            "rstrip": False,
            "normalized": False,
            "single_word": False,
        }
        for t, i in ids.items()
    }
    _write_json(
        path / "tokenizer_config.json",
        {
            **tokenizer_fields,
            "clean_up_tokenization_spaces": False,
            "added_tokens_decoder": added,
            **special_map,
        },
    )
    _write_json(path / "special_tokens_map.json", special_map)


# One keyword per size, as every public signature here (alike in shape to the teachers' __init__).
def write_tiny_llada(
    path: str | os.PathLike,
    *,
    d_model: int = 64,
    n_layers: int = 2,
    n_heads: int = 4,
    mlp_hidden_size: int = 128,
    bpe_vocab: int = 512,
    max_sequence_length: int = 1024,
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
    tokenizer: Any | None = None,
) -> Path:
    """Write a seeded, UNTRAINED tiny LLaDA checkpoint in the hub's format to `path` and return it:
    `config.json` (the published fields, tiny sizes), `model.safetensors` (the published key names),
    `tokenizer.json` / `tokenizer_config.json` (PreTrainedTokenizerFast with `<|mdm_mask|>` and LLaDA's chat
    template) and `generation_config.json`. The embedding has more rows than the tokenizer, as published.
    `tokenizer` (a `tokenizers.Tokenizer` holding :data:`LLADA_SPECIALS`) replaces the default tiny BPE."""
    from ..models.llada import LLaDAConfig, LLaDAModelLM

    # Alike in shape to write_tiny_dream, on purpose: each maps the tiny sizes onto its own published config
    # fields, special tokens and tokenizer files; the steps they share are _write_model_and_tokenizer_config.
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    tok = tokenizer if tokenizer is not None else build_byte_bpe(bpe_vocab, LLADA_SPECIALS)
    ids = {t: tok.token_to_id(t) for t in LLADA_SPECIALS}
    if any(i is None for i in ids.values()):
        raise ValueError(f"`tokenizer` must hold LLaDA's special tokens {LLADA_SPECIALS}.")
    rows = _round_up(tok.get_vocab_size())
    cfg = dict(LLADA_HUB_CONFIG)
    # keyword arguments one per line (alike in shape to other keyword calls, e.g. format.build_layout's)
    cfg.update(
        d_model=d_model,
        n_layers=n_layers,
        n_heads=n_heads,
        n_kv_heads=n_heads,
        mlp_hidden_size=mlp_hidden_size,
        vocab_size=rows,
        embedding_size=rows,
        max_sequence_length=max_sequence_length,
        mask_token_id=ids["<|mdm_mask|>"],
        eos_token_id=ids["<|endoftext|>"],
        pad_token_id=ids["<|endoftext|>"],
    )
    write_text_atomic(path / "tokenizer.json", tok.to_str())
    _write_model_and_tokenizer_config(
        path,
        LLaDAModelLM,
        LLaDAConfig,
        cfg,
        seed=seed,
        dtype=dtype,
        ids=ids,
        bos="<|startoftext|>",
        special_map={
            "bos_token": "<|startoftext|>",
            "eos_token": "<|endoftext|>",
            "pad_token": "<|endoftext|>",
            "mask_token": "<|mdm_mask|>",
        },
        tokenizer_fields={
            "tokenizer_class": "PreTrainedTokenizerFast",
            "model_max_length": max_sequence_length,
            "chat_template": LLADA_CHAT_TEMPLATE,
        },
    )
    return path


def write_tiny_dream(
    path: str | os.PathLike,
    *,
    hidden_size: int = 64,
    num_hidden_layers: int = 2,
    num_attention_heads: int = 4,
    num_key_value_heads: int = 2,
    intermediate_size: int = 128,
    bpe_vocab: int = 512,
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
) -> Path:
    """Write a seeded, UNTRAINED tiny Dream checkpoint in the hub's format: `config.json` (published fields,
    tiny sizes), `model.safetensors` (Qwen2 key names, q/k/v biases), and the tokenizer as published: Qwen2
    byte-level BPE files `vocab.json` + `merges.txt` and a `tokenizer_config.json` naming the remote-code
    class `DreamTokenizer` in `auto_map`, with `<|mask|>` and Dream's chat template."""
    from ..models.dream import DreamConfig, DreamModel

    # Alike in shape to write_tiny_llada, on purpose: each maps the tiny sizes onto its own published config
    # fields, special tokens and tokenizer files; the steps they share are _write_model_and_tokenizer_config.
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    tok = build_byte_bpe(bpe_vocab, DREAM_SPECIALS)
    ids = {t: tok.token_to_id(t) for t in DREAM_SPECIALS}
    rows = _round_up(tok.get_vocab_size())
    cfg = dict(DREAM_HUB_CONFIG)
    cfg.update(
        hidden_size=hidden_size,
        num_hidden_layers=num_hidden_layers,
        max_window_layers=num_hidden_layers,
        num_attention_heads=num_attention_heads,
        num_key_value_heads=num_key_value_heads,
        intermediate_size=intermediate_size,
        vocab_size=rows,
        mask_token_id=ids["<|mask|>"],
        bos_token_id=ids["<|endoftext|>"],
        eos_token_id=ids["<|endoftext|>"],
        pad_token_id=ids["<|endoftext|>"],
        max_position_embeddings=2048,
    )
    # Qwen2-format BPE files: vocab.json (BPE vocabulary without the added tokens) and merges.txt
    tok.model.save(str(path))
    _write_model_and_tokenizer_config(
        path,
        DreamModel,
        DreamConfig,
        cfg,
        seed=seed,
        dtype=dtype,
        ids=ids,
        bos="<|endoftext|>",
        special_map={
            "bos_token": "<|beginoftext|>",
            "eos_token": "<|endoftext|>",
            "pad_token": "<|endoftext|>",
            "mask_token": "<|mask|>",
        },
        tokenizer_fields={
            "tokenizer_class": "DreamTokenizer",
            "auto_map": {"AutoTokenizer": ["tokenization_dream.DreamTokenizer", None]},
            "model_max_length": 131072,
            "split_special_tokens": False,
            "errors": "replace",
            "chat_template": DREAM_CHAT_TEMPLATE,
            "additional_special_tokens": ["<|im_start|>", "<|im_end|>"],
        },
    )
    return path


# ------------------------------------------------------------------------------------------------ CLI


def _tiny_nap_rows(n: int, seed: int = 0) -> list[dict]:
    """`n` conversational prompt/completion rows whose completion is a NAP instance (3 short arithmetic paths
    and a summary with the boxed answer), short enough for the slots of `recipes/configs/tiny_cpu.yaml`
    (path_length 24, summary_length 24 with the tiny tokenizer)."""
    import random

    from ..data import render_instance

    rng = random.Random(seed)
    names = ["Ann", "Ben", "Cleo", "Dan", "Eve", "Finn", "Gus", "Hana"]
    things = ["apples", "books", "coins", "pens", "cards", "shells", "stamps"]
    rows = []
    for _ in range(n):
        a, b = rng.randint(2, 49), rng.randint(2, 49)
        who, what = rng.choice(names), rng.choice(things)
        paths = [f"{a} + {b} = {a + b}", f"{b} + {a} = {a + b}", f"{a} + {b - 1} + 1 = {a + b}"]
        question = f"{who} has {a} {what} and buys {b} more. How many {what} does {who} have?"
        rows.append(
            {
                "prompt": [{"role": "user", "content": question}],
                "completion": [
                    {
                        "role": "assistant",
                        "content": render_instance(paths, f"The final answer is \\boxed{{{a + b}}}."),
                    }
                ],
            }
        )
    return rows


def main(argv: list[str] | None = None) -> None:
    """`python -m nap_hf.testing {tiny-llada,tiny-dream} OUT_DIR` writes a tiny random checkpoint;
    `python -m nap_hf.testing tiny-nap-data OUT.jsonl [--n N]` writes tiny NAP training data (JSON lines)."""
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m nap_hf.testing",
        description="Tiny offline artefacts for smoke runs: random LLaDA/Dream checkpoints in the hub format and "
        "a small NAP dataset.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for name, what in (("tiny-llada", "LLaDA"), ("tiny-dream", "Dream")):
        p = sub.add_parser(name, help=f"write a tiny random {what} checkpoint (model + tokenizer) to OUT_DIR")
        p.add_argument("out", metavar="OUT_DIR")
        p.add_argument("--seed", type=int, default=0)
    p = sub.add_parser(
        "tiny-nap-data", help="write tiny NAP prompt/completion rows as JSON lines to OUT.jsonl"
    )
    p.add_argument("out", metavar="OUT.jsonl")
    p.add_argument("--n", type=int, default=64, help="number of rows (default 64)")
    p.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    if args.command == "tiny-nap-data":
        if args.n < 1:
            parser.error("--n must be >= 1")
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        rows = _tiny_nap_rows(args.n, args.seed)
        write_text_atomic(out, "".join(json.dumps(r) + "\n" for r in rows))
        print(f"wrote {len(rows)} NAP rows to {out}")
    else:
        write = write_tiny_llada if args.command == "tiny-llada" else write_tiny_dream
        print(f"wrote a tiny random checkpoint to {write(args.out, seed=args.seed)}")
