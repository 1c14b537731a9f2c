"""Property tests of the decoding invariants on tiny random models (bounded hypothesis examples), with and
without a KV cache: the prompt is untouched, every generated slot is committed exactly once, no mask is
left, each step respects its budget, no forward pass commits nothing, and NFE matches the trace; with
`early_stop`, everything after the first EOS is EOS filler committed with its trigger's step."""

from __future__ import annotations

import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nap_hf.generation.strategies import llada_num_transfer_tokens

from .conftest import random_prompt

SETTINGS = settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@st.composite
def decode_case(draw):
    strategy = draw(st.sampled_from(["ar", "confidence", "random", "threshold", "dream"]))
    n_blocks = 1 if strategy == "dream" else draw(st.integers(1, 3))
    block = draw(st.integers(1, 6))
    gen_length = n_blocks * block
    steps = n_blocks * draw(st.integers(1, 8))
    case = dict(
        strategy=strategy,
        gen_length=gen_length,
        steps=steps,
        block_length=None if strategy == "dream" else block,
        temperature=draw(st.sampled_from([0.0, 1.0])),
        seed=draw(st.integers(0, 2**16)),
    )
    if strategy == "confidence":
        case["score"] = draw(st.sampled_from(["confidence", "margin", "entropy"]))
    if strategy == "dream":
        case["alg"] = draw(st.sampled_from(["origin", "maskgit_plus", "topk_margin", "entropy"]))
    if strategy == "threshold":
        case["threshold"] = draw(st.sampled_from([0.01, 0.5, 0.9, 1.0]))
    if strategy != "dream":  # every block-wise strategy runs with and without a KV cache
        case["cache_implementation"] = draw(st.sampled_from([None, "prefix", "dual"]))
    lengths = draw(st.lists(st.integers(1, 6), min_size=1, max_size=3))
    return case, lengths


def _batch(model, lengths, seed):
    pad = model.config.pad_token_id
    P = max(lengths)
    rows, masks = [], []
    for i, n in enumerate(lengths):
        p = random_prompt(model, n, seed=seed + i)[0]
        rows.append(torch.cat([torch.full((P - n,), pad), p]))
        masks.append(torch.cat([torch.zeros(P - n), torch.ones(n)]).long())
    return torch.stack(rows), torch.stack(masks)


@SETTINGS
@given(data=decode_case())
def test_decoding_invariants(model64, data):
    case, lengths = data
    ids, mask = _batch(model64, lengths, case["seed"])
    B, P = ids.shape
    G = case["gen_length"]
    commits = []
    out = model64.generate(
        ids,
        attention_mask=mask,
        return_dict_in_generate=True,
        step_callback=lambda s: commits.append(s.committed.clone()),
        **case,
    )
    seq, trace = out.sequences, out.trace
    # the prompt (and its padding) is untouched and never in the trace
    assert torch.equal(seq[:, :P], ids) and (trace[:, :P] == -1).all()
    # every generated slot committed exactly once, and no mask is left
    counts = torch.stack(commits).sum(0)
    assert (counts[:, P:] == 1).all() and (counts[:, :P] == 0).all()
    assert not (seq == model64.config.mask_token_id).any()
    assert (trace[:, P:] >= 0).all()
    # one trace step per forward pass; no forward pass commits nothing
    assert out.nfe == len(commits) == int(trace.max()) + 1
    assert all(bool(c.any()) for c in commits)
    for s, c in enumerate(commits):
        assert torch.equal(c, trace == s)
    # the budget of every step
    if case["strategy"] in ("ar", "confidence", "random"):
        block = case["block_length"]
        per_block = case["steps"] // (G // block)
        for b in range(G // block):
            budget = llada_num_transfer_tokens(torch.full((B,), block), per_block)  # (B, per_block)
            expected = [k for k in budget[0].tolist() if k > 0]
            in_block = torch.stack(commits)[:, :, P + b * block : P + (b + 1) * block].sum(-1)  # (steps, B)
            got = in_block[in_block.sum(-1) > 0]
            assert got.tolist() == [[k] * B for k in expected]
    if case["strategy"] == "ar":  # leftmost first: the commit order is the position order
        assert (trace[:, P + 1 :] >= trace[:, P:-1]).all()
    if case["strategy"] == "threshold":  # blocks are decoded in order, each step inside one block
        block = case["block_length"]
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
