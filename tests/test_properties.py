"""Property tests of the decoding invariants on tiny random models (bounded hypothesis examples), for every
registered strategy (and one written in the tests), on the canvases each declares, with and without a KV
cache: the prompt is untouched, every generated slot is committed exactly once, no mask is
left, each step respects its budget, no forward pass commits nothing, and NFE matches the trace; with
`early_stop`, everything after the first EOS is EOS filler committed with its trigger's step."""

from __future__ import annotations

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nap_hf.generation.config import DiffusionGenerationConfig
from nap_hf.generation.scores import SCORES
from nap_hf.generation.strategies import DREAM_ALGS, STRATEGIES, llada_num_transfer_tokens

from .conftest import random_prompt
from .strategies_for_tests import TEST_STRATEGIES, LeftToRight, registered

SETTINGS = settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
# every registered strategy, and the one written in the tests; a few examples each keep the suite ~ 20 s
NAMES = sorted({*STRATEGIES, *(cls.name for cls in TEST_STRATEGIES)})
PER_STRATEGY = settings(SETTINGS, max_examples=15)


@st.composite
def decode_case(draw, name: str):
    """Settings for strategy `name`, drawn from what its class declares (canvas, blocks); the options of
    every other strategy are drawn too, as a config always carries them."""
    cls = STRATEGIES[name]
    nap = cls.canvas == "nap" or (cls.canvas == "any" and draw(st.booleans()))
    case = dict(
        strategy=name,
        temperature=draw(st.sampled_from([0.0, 1.0])),
        seed=draw(st.integers(0, 2**16)),
        score=draw(st.sampled_from(sorted(SCORES))),
        alg=draw(st.sampled_from(sorted(DREAM_ALGS))),
        threshold=draw(st.sampled_from([0.01, 0.5, 0.9, 1.0])),
        factor=draw(st.sampled_from([0.5, 1.0, 2.0])),
    )
    if nap:
        m, path_length = draw(st.integers(1, 3)), draw(st.integers(1, 6))
        case.update(canvas="nap", m=m, path_length=path_length, summary_length=draw(st.integers(1, 4)))
        case.update(summary=draw(st.sampled_from(["after", "concurrent"])))
        case.update(header_ids=[[5, 6 + j] for j in range(m)] + [[9]])
        slots = m * path_length + case["summary_length"]
        case["steps"] = draw(st.integers(2, slots + 3))
        if cls.takes_block_length("nap"):
            divisors = [b for b in range(1, path_length + 1) if path_length % b == 0]
            case["block_length"] = draw(st.sampled_from([None, *divisors]))
    else:
        n_blocks = draw(st.integers(1, 3)) if cls.uses_blocks else 1
        block = draw(st.integers(1, 6))
        case.update(gen_length=n_blocks * block, steps=n_blocks * draw(st.integers(1, 8)))
        case["block_length"] = block if cls.uses_blocks else None
    cache = draw(st.sampled_from([None, "prefix", "dual"]))
    if cache is not None and _takes_cache(case, cache):  # every strategy with blocks runs with a cache too
        case["cache_implementation"] = cache
    lengths = draw(st.lists(st.integers(1, 6), min_size=1, max_size=3))
    return case, lengths


def _takes_cache(case: dict, cache: str) -> bool:
    """Whether the strategy, under these settings, declares the active window a cache needs."""
    config = DiffusionGenerationConfig(**case, cache_implementation=cache)
    try:
        STRATEGIES[case["strategy"]](config).check_cache()
    except ValueError:
        return False
    return True


def _batch(model, lengths, seed):
    pad = model.config.pad_token_id
    P = max(lengths)
    rows, masks = [], []
    for i, n in enumerate(lengths):
        p = random_prompt(model, n, seed=seed + i)[0]
        rows.append(torch.cat([torch.full((P - n,), pad), p]))
        masks.append(torch.cat([torch.zeros(P - n), torch.ones(n)]).long())
    return torch.stack(rows), torch.stack(masks)


@pytest.fixture(autouse=True)
def _test_strategies():
    with registered():
        yield


@pytest.mark.parametrize("name", NAMES)
def test_decoding_invariants(model64, name):
    @PER_STRATEGY
    @given(data=decode_case(name))
    def check(data):
        _check_invariants(model64, *data)

    check()


def _check_invariants(model, case, lengths):
    ids, mask = _batch(model, lengths, case["seed"])
    B, P = ids.shape
    commits = []
    out = model.generate(
        ids,
        attention_mask=mask,
        return_dict_in_generate=True,
        step_callback=lambda s: commits.append(s.committed.clone()),
        **case,
    )
    seq, trace = out.sequences, out.trace
    headers = torch.zeros_like(trace, dtype=torch.bool)  # clamped text of the structured canvas
    for r in out.regions[0]:
        if r.kind == "header":
            headers[:, r.slice] = True
    slots = ~headers
    slots[:, :P] = False
    # the prompt (and its padding) and the headers are untouched and never in the trace
    assert torch.equal(seq[:, :P], ids) and (trace[~slots] == -1).all()
    # every generated slot committed exactly once, and no mask is left
    counts = torch.stack(commits).sum(0)
    assert (counts[slots] == 1).all() and (counts[~slots] == 0).all()
    assert not (seq == model.config.mask_token_id).any()
    assert (trace[slots] >= 0).all()
    # one trace step per forward pass; no forward pass commits nothing
    assert out.nfe == len(commits) == int(trace.max()) + 1
    assert all(bool(c.any()) for c in commits)
    for s, c in enumerate(commits):
        assert torch.equal(c, trace == s)
    if case.get("canvas") is None:
        _check_plain_rules(case, commits, trace, B, P)


def _check_plain_rules(case, commits, trace, B, P):
    """The budgets and orders of the built-in strategies on the plain canvas."""
    G, block = case["gen_length"], case["block_length"]
    if case["strategy"] in ("ar", "confidence", "random"):
        per_block = case["steps"] // (G // block)
        for b in range(G // block):
            budget = llada_num_transfer_tokens(torch.full((B,), block), per_block)  # (B, per_block)
            expected = [k for k in budget[0].tolist() if k > 0]
            in_block = torch.stack(commits)[:, :, P + b * block : P + (b + 1) * block].sum(-1)  # (steps, B)
            got = in_block[in_block.sum(-1) > 0]
            assert got.tolist() == [[k] * B for k in expected]
    if case["strategy"] in ("ar", LeftToRight.name):  # leftmost first: the commit order is the position order
        assert (trace[:, P + 1 :] >= trace[:, P:-1]).all()
    if case["strategy"] in ("threshold", "factor"):  # blocks are decoded in order, each step inside one block
        blocks_of_step = [set((c[:, P:].nonzero()[:, 1] // block).tolist()) for c in commits]
        assert all(len(b) == 1 for b in blocks_of_step)
        assert [min(b) for b in blocks_of_step] == sorted(min(b) for b in blocks_of_step)


@settings(max_examples=40, deadline=None)
@given(n=st.integers(0, 500), steps=st.integers(1, 64))
def test_llada_budget_splits_exactly(n, steps):
    budget = llada_num_transfer_tokens(torch.tensor([n]), steps)[0]
    assert int(budget.sum()) == n
    assert int(budget.max() - budget.min()) <= 1
    assert budget.tolist() == sorted(budget.tolist(), reverse=True)


@SETTINGS
@given(
    strategy=st.sampled_from(["confidence", "ar", "threshold"]),
    cache=st.sampled_from([None, "dual"]),
    seed=st.integers(0, 2**16),
)
def test_early_stop_fills_after_the_first_eos(llada64, strategy, cache, seed):
    eos = llada64.config.eos_token_id

    class FavourEos:  # makes EOS likely, so that the early exit fires
        def __call__(self, input_ids, scores):
            scores[:, eos] += 3.0
            return scores

    ids = random_prompt(llada64, 4, seed=seed)
    case = dict(
        strategy=strategy, steps=8, gen_length=16, block_length=4, cache_implementation=cache, seed=seed
    )
    commits = []
    out = llada64.generate(
        ids,
        early_stop=True,
        logits_processor=[FavourEos()],
        return_dict_in_generate=True,
        step_callback=lambda s: commits.append(s.committed.clone()),
        **case,
    )
    gen, trace = out.sequences[0, 4:], out.trace[0, 4:]
    counts = torch.stack(commits).sum(0)[0, 4:]
    assert (counts == 1).all() and out.nfe == len(commits) == int(trace.max()) + 1
    hits = (gen == eos).nonzero()[:, 0]
    if len(hits):  # after the first EOS to be committed, everything later in the canvas is EOS
        first = int(hits[trace[hits].argmin()])
        assert (gen[first:] == eos).all()
    full = llada64.generate(ids, logits_processor=[FavourEos()], return_dict_in_generate=True, **case)
    assert out.nfe <= full.nfe
