"""The NAP paper's reported numbers (docs/design.md §8, Tables 1-5), as data, so evaluation tables can print
ours next to theirs.

Keys (decided here):

* ``family``: ``"llada"`` (LLaDA-8B-Instruct) or ``"dream"`` (Dream-v0-Instruct-7B).
* ``training``: ``"base"`` (the released instruct model), ``"longcot"`` (Long-CoT SFT on the same traces),
  ``"nap"`` (NAP SFT).
* ``benchmark``: ``"gsm8k"``, ``"math500"``, ``"gpqa"`` (the answer kinds of
  :func:`nap_hf.evaluation.canonical_task`; the paper does not say which GPQA split it used).
* ``steps``: the total decoding budget (forward passes) for the whole 1024-token canvas.
* accuracies in percent, ARness as Global-ARness@1 in [0, 1].

Use :func:`paper_value` for a lookup that returns None where the paper reports nothing.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "FAMILIES",
    "FAMILY_NAMES",
    "TRAININGS",
    "TRAINING_NAMES",
    "PAPER_STEPS",
    "PAPER_TOKENS_PER_STEP",
    "PAPER_CANVAS",
    "TABLE1",
    "TABLE2",
    "TABLE3",
    "TABLE4",
    "TABLE5",
    "paper_value",
]

FAMILIES: tuple[str, ...] = ("llada", "dream")
FAMILY_NAMES: dict[str, str] = {"llada": "LLaDA-8B", "dream": "Dream-7B"}
TRAININGS: tuple[str, ...] = ("base", "longcot", "nap")
TRAINING_NAMES: dict[str, str] = {"base": "Base", "longcot": "Long-CoT", "nap": "NAP"}

PAPER_STEPS: tuple[int, ...] = (256, 336, 512, 1024)
"""The step budgets of Table 3."""

PAPER_TOKENS_PER_STEP: dict[int, int] = {256: 4, 336: 3, 512: 2, 1024: 1}
"""Table 3's Tok/Step column (rounded: the canvas is 3 x 330 + 32 = 1022 slots)."""

PAPER_CANVAS: dict[str, int] = {"m": 3, "path_length": 330, "summary_length": 32, "path_budget": 990}
"""The parallel-forced canvas of the paper (§6): 3 paths of 330 positions and a 32-position summary; Table 5
keeps m x path_length = 990."""

TABLE1: dict[str, dict[str, dict[str, tuple[float, float]]]] = {
    # family -> variant ("base" = plain AO, "fast_dllm" = Fast-dLLM) -> order -> (Global-ARness@1, accuracy)
    "llada": {
        "base": {"ar": (1.00, 71.9), "ao": (0.73, 51.9)},
        "fast_dllm": {"ar": (1.00, 71.9), "ao": (0.87, 51.6)},
    },
    "dream": {
        "base": {"ar": (1.00, 78.2), "ao": (0.92, 78.2)},
        "fast_dllm": {"ar": (1.00, 78.3), "ao": (0.94, 78.1)},
    },
}
"""Table 1 (GSM8K): ARness and accuracy under AR order and arbitrary order (AO, confidence)."""

TABLE2: dict[str, dict[str, float]] = {
    "llada": {"base": 0.73, "longcot": 0.81},
    "dream": {"base": 0.92, "longcot": 0.93},
}
"""Table 2 (and Figure 4): Global-ARness@1 under AO decoding, base model -> Long-CoT SFT."""

# The paper's figures as data: one block per benchmark, the same shape by construction.
TABLE3: dict[str, dict[str, dict[str, dict[int, float]]]] = {
    "gsm8k": {
        "llada": {
            "base": {256: 46.4, 336: 54.4, 512: 62.0, 1024: 66.5},
            "longcot": {256: 54.1, 336: 60.9, 512: 82.0, 1024: 83.5},
            "nap": {256: 56.1, 336: 63.3, 512: 82.6, 1024: 84.1},
        },
        "dream": {
            "base": {256: 35.0, 336: 49.4, 512: 58.5, 1024: 68.9},
            "longcot": {256: 46.5, 336: 56.9, 512: 66.8, 1024: 78.0},
            "nap": {256: 60.9, 336: 70.9, 512: 79.2, 1024: 83.6},
        },
    },
    # same shape as the gsm8k block above: the paper's numbers, not logic
    "math500": {
        "llada": {
            "base": {256: 17.8, 336: 20.6, 512: 28.0, 1024: 30.4},
            "longcot": {256: 21.4, 336: 26.6, 512: 41.2, 1024: 45.0},
            "nap": {256: 26.6, 336: 35.4, 512: 43.0, 1024: 47.0},
        },
        "dream": {
            "base": {256: 8.8, 336: 11.4, 512: 20.8, 1024: 35.0},
            "longcot": {256: 16.2, 336: 25.6, 512: 40.0, 1024: 47.4},
            "nap": {256: 23.8, 336: 31.4, 512: 43.0, 1024: 49.6},
        },
    },
    "gpqa": {
        "llada": {
            "base": {336: 12.5, 512: 18.8, 1024: 20.8},
            "longcot": {336: 15.4, 512: 21.2, 1024: 23.0},
            "nap": {336: 19.0, 512: 25.9, 1024: 28.6},
        },
        "dream": {
            "base": {336: 5.8, 512: 14.7, 1024: 26.1},
            "longcot": {336: 7.3, 512: 19.4, 1024: 28.6},
            "nap": {336: 10.5, 512: 22.5, 1024: 29.5},
        },
    },
}
"""Table 3: accuracy per benchmark, model (family x training) and step budget. Base and Long-CoT models use
standard decoding (AO), NAP models parallel-forced decoding."""

TABLE4: dict[str, dict[str, dict[int, float]]] = {
    # (Dream-7B, GSM8K) training -> decoding -> steps -> accuracy
    "base": {"ao": {256: 35.0, 512: 58.5, 1024: 68.9}, "parallel_forced": {256: 31.0, 512: 52.6, 1024: 60.2}},
    "nap": {"ao": {256: 57.4, 512: 78.9, 1024: 85.1}, "parallel_forced": {256: 60.9, 512: 79.2, 1024: 83.6}},
}
"""Table 4 (Dream-7B, GSM8K): training data x decoding rule at 256 / 512 / 1024 steps."""

TABLE5: dict[str, dict[int, float]] = {
    "dream": {1: 75.4, 2: 78.9, 3: 83.6},
    "llada": {1: 79.4, 2: 82.6, 3: 84.1},
}
"""Table 5 (GSM8K, NAP models, parallel-forced): accuracy with m = 1 / 2 / 3 paths, total path budget fixed
(path_length = 990 / m); the m = 3 cells equal Table 3 at 1024 steps."""

_TABLES: dict[str, Any] = {
    "table1": TABLE1,
    "table2": TABLE2,
    "table3": TABLE3,
    "table4": TABLE4,
    "table5": TABLE5,
}


def paper_value(table: str, *keys: Any) -> Any:
    """The paper's number at ``keys`` of ``table`` (``"table1"`` ... ``"table5"``), or None where the paper
    reports none.

    Example: ``paper_value("table3", "gsm8k", "dream", "nap", 256)`` -> ``60.9``;
    ``paper_value("table1", "llada", "base", "ao")`` -> ``(0.73, 51.9)``.
    """
    if table not in _TABLES:
        raise ValueError(f"Unknown table {table!r}: expected one of {sorted(_TABLES)}.")
    node: Any = _TABLES[table]
    for key in keys:
        if not isinstance(node, dict) or key not in node:
            return None
        node = node[key]
    return node
