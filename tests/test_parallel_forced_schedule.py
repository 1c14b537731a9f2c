"""The macro-parallel schedule of parallel-forced decoding as pure functions (SPEC §3)."""

from __future__ import annotations

from fractions import Fraction

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from nap_hf.generation.strategies import llada_num_transfer_tokens
from nap_hf.generation.strategies.parallel_forced import allocate_budget, split_steps


def test_split_steps_examples():
    # the paper's canvas: 3 x 330 + 32 slots
    assert split_steps(256, 990, 32, "after") == (248, 8)
    assert split_steps(1022, 990, 32, "after") == (990, 32)
    assert split_steps(2, 990, 32, "after") == (1, 1)  # max(1, ...) keeps a summary step
    assert split_steps(256, 990, 32, "concurrent") == (256, 0)


def test_allocate_budget_round_robin_and_ties():
    # equal progress: ties go to the lower j
    assert allocate_budget(1, [4, 4, 4], [0, 0, 0], 0, 4) == [1, 0, 0]
    assert allocate_budget(4, [4, 4, 4], [0, 0, 0], 0, 4) == [2, 1, 1]
    # the slot furthest behind its ideal first
    assert allocate_budget(2, [4, 4, 4], [2, 1, 2], 1, 4) == [1, 1, 0]  # then a tie: lower j
    assert allocate_budget(1, [4, 4, 4], [1, 2, 1], 1, 4) == [1, 0, 0]
    # tie on deficit: the slot with fewer masks left wins
    assert allocate_budget(1, [6, 3], [1, 0], 0, 3) == [0, 1]
    # finished slots get nothing
    assert allocate_budget(3, [2, 4], [2, 1], 1, 4) == [0, 3]


@settings(max_examples=60, deadline=None)
@given(
    m=st.integers(1, 5),
    path_length=st.integers(1, 40),
    extra=st.integers(0, 30),
    tokens_per_step=st.integers(1, 6),
)
def test_schedule_keeps_every_slot_within_one_token_of_its_ideal(m, path_length, extra, tokens_per_step):
    sizes = [path_length] * m + ([extra] if extra else [])  # the concurrent summary is a slot of another size
    total = sum(sizes)
    steps = max(1, min(total, total // tokens_per_step))
    budget = llada_num_transfer_tokens(torch.tensor([total]), steps)[0].tolist()
    committed = [0] * len(sizes)
    for t, k in enumerate(budget):
        unfinished = sum(c < n for c, n in zip(committed, sizes, strict=True))
        give = allocate_budget(k, sizes, committed, t, steps)
        assert sum(give) == k
        if k >= unfinished and extra == 0:  # budget >= m: every unfinished path advances
            assert all(g >= 1 for g, c, n in zip(give, committed, sizes, strict=True) if c < n)
        committed = [c + g for c, g in zip(committed, give, strict=True)]
        for c, n in zip(committed, sizes, strict=True):
            assert Fraction(n * (t + 1), steps) - c <= 1  # never more than one token behind
            assert c <= n
    assert committed == sizes


@pytest.mark.parametrize("steps", [1, 5, 64])
def test_split_steps_sums_to_steps(steps):
    s_p, s_s = split_steps(steps + 1, 90, 10, "after")
    assert s_p + s_s == steps + 1 and s_p >= 1 and s_s >= 1
