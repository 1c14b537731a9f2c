"""KV caching in the decoding loop (docs/caching.md), in float64.

Where a cache is exact: on a 1-layer model the cached keys and values of unchanged positions are those of
their token embeddings, so every cached step (prefix and dual) must equal `cache_implementation=None` to
1e-12; a cache refreshed every step must equal no cache on a deep model; batch vs one prompt at a time
matches with a cache; partial forwards really run (a counter on the trunk); bad input names the fix."""

from __future__ import annotations

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from transformers import LogitsProcessor, LogitsProcessorList

from nap_hf import DreamModel, LLaDAModelLM
from nap_hf.generation.cache import DiffusionCache
from nap_hf.generation.strategies import llada_num_transfer_tokens, split_steps
from nap_hf.testing import write_tiny_dream, write_tiny_llada

from .conftest import TrunkCalls, padded_batch, random_prompt

HEADERS = [[5, 6], [7, 8], [9]]  # m = 2 path headers and the summary header, as token ids


@pytest.fixture(scope="module")
def one_layer(tmp_path_factory):
    root = tmp_path_factory.mktemp("one-layer")
    llada = LLaDAModelLM.from_pretrained(write_tiny_llada(root / "llada", n_layers=1), dtype=torch.float64)
    dream = DreamModel.from_pretrained(
        write_tiny_dream(root / "dream", num_hidden_layers=1), dtype=torch.float64
    )
    return {"llada": llada.eval(), "dream": dream.eval()}


class Record(LogitsProcessor):
    """Keeps every step's candidate logits (the rows the step asked for)."""

    def __init__(self):
        self.steps = []

    def __call__(self, input_ids, scores):
        self.steps.append(scores.clone())
        return scores


def run(model, ids, mask=None, **kwargs):
    rec, calls = Record(), TrunkCalls(model)
    try:
        out = model.generate(
            ids,
            attention_mask=mask,
            logits_processor=LogitsProcessorList([rec]),
            return_dict_in_generate=True,
            **kwargs,
        )
    finally:
        calls.close()
    return out, rec.steps, calls.lengths


def assert_same_run(a, b, tol=1e-12):
    (out_a, logits_a, _), (out_b, logits_b, _) = a, b
    assert torch.equal(out_a.sequences, out_b.sequences) and torch.equal(out_a.trace, out_b.trace)
    assert out_a.nfe == out_b.nfe and len(logits_a) == len(logits_b)
    for la, lb in zip(logits_a, logits_b, strict=True):
        torch.testing.assert_close(la, lb, rtol=0, atol=tol)


BLOCKWISE = [
    dict(strategy="confidence", steps=8, gen_length=16, block_length=4),
    dict(strategy="confidence", steps=8, gen_length=16, block_length=4, score="margin"),
    dict(strategy="confidence", steps=8, gen_length=16, block_length=8, score="entropy"),
    dict(strategy="ar", steps=8, gen_length=16, block_length=4),
    dict(strategy="random", steps=8, gen_length=16, block_length=4, seed=3),
    dict(strategy="threshold", steps=8, gen_length=16, block_length=4, threshold=0.05),
    dict(strategy="factor", steps=8, gen_length=16, block_length=4, factor=2.0),
    dict(strategy="confidence", steps=8, gen_length=16, block_length=4, temperature=1.0, seed=5),
    dict(strategy="confidence", steps=4, gen_length=8, block_length=4, cfg_scale=1.5),
]


@pytest.mark.parametrize("mode", ["prefix", "dual"])
@pytest.mark.parametrize("arch", ["llada", "dream"])
@pytest.mark.parametrize("case", BLOCKWISE, ids=lambda c: "-".join(f"{v}" for v in c.values()))
def test_one_layer_cached_steps_equal_no_cache(one_layer, arch, mode, case):
    model = one_layer[arch]
    _, ids, mask = padded_batch(model)
    ref = run(model, ids, mask, **case)
    got = run(model, ids, mask, cache_implementation=mode, **case)
    assert_same_run(got, ref)
    L = ref[0].sequences.shape[1]
    assert all(n == L for n in ref[2])
    partial = [n for n in got[2] if n < L]
    assert partial and len(got[2]) == got[0].nfe // (2 if case.get("cfg_scale") else 1)
    n_blocks = case["gen_length"] // case["block_length"]
    assert len(got[2]) - len(partial) == n_blocks  # one refresh per block, each the block's first step
    if mode == "dual":
        assert max(partial) <= case["block_length"] + (1 if arch == "dream" else 0)


@pytest.mark.parametrize("mode", ["prefix", "dual"])
@pytest.mark.parametrize("arch", ["llada", "dream"])
@pytest.mark.parametrize("summary", ["after", "concurrent"])
def test_one_layer_parallel_forced_with_cache_equals_no_cache(one_layer, arch, mode, summary):
    model = one_layer[arch]
    _, ids, mask = padded_batch(model)
    case = dict(
        strategy="parallel_forced",
        m=2,
        path_length=8,
        summary_length=4,
        block_length=4,
        steps=10,
        header_ids=HEADERS,
        summary=summary,
    )
    ref = run(model, ids, mask, **case)
    got = run(model, ids, mask, cache_implementation=mode, **case)
    assert_same_run(got, ref)
    L = ref[0].sequences.shape[1]
    assert any(n < L for n in got[2])


def test_refresh_every_step_equals_no_cache_on_a_deep_model(model64):
    _, ids, mask = padded_batch(model64)
    for case in (BLOCKWISE[0], BLOCKWISE[5]):
        ref = run(model64, ids, mask, **case)
        for mode in ("prefix", "dual"):
            got = run(model64, ids, mask, cache_implementation=mode, cache_refresh=1, **case)
            assert_same_run(got, ref, tol=0)
            assert all(n == ref[0].sequences.shape[1] for n in got[2])


@pytest.mark.parametrize("mode", ["prefix", "dual"])
def test_batch_equals_one_prompt_at_a_time_with_a_cache(model64, mode):
    prompts, ids, mask = padded_batch(model64, (3, 7, 5))
    P = ids.shape[1]
    cases = [BLOCKWISE[0], BLOCKWISE[3]]
    cases.append(
        dict(
            strategy="parallel_forced",
            m=2,
            path_length=8,
            summary_length=4,
            block_length=4,
            steps=10,
            header_ids=HEADERS,
        )
    )
    for case in cases:
        batch = model64.generate(
            ids, attention_mask=mask, cache_implementation=mode, return_dict_in_generate=True, **case
        )
        for row, prompt in enumerate(prompts):
            single = model64.generate(prompt, cache_implementation=mode, return_dict_in_generate=True, **case)
            n = prompt.shape[1]
            assert torch.equal(batch.sequences[row, P:], single.sequences[0, n:])
            assert torch.equal(batch.trace[row, P:], single.trace[0, n:])


def test_cache_with_num_return_sequences_and_refresh_policies(llada64):
    prompt = random_prompt(llada64, 5)
    case = dict(strategy="confidence", steps=8, gen_length=16, block_length=4, temperature=1.0, seed=1)
    out = llada64.generate(
        prompt, num_return_sequences=3, cache_implementation="dual", return_dict_in_generate=True, **case
    )
    assert out.sequences.shape == (3, 21) and not (out.sequences == llada64.config.mask_token_id).any()
    pf = dict(strategy="parallel_forced", m=2, path_length=8, summary_length=4, block_length=4, steps=10)
    for refresh in ("any", "all", 3):
        out = llada64.generate(
            prompt,
            header_ids=HEADERS,
            cache_implementation="dual",
            cache_refresh=refresh,
            return_dict_in_generate=True,
            **pf,
        )
        assert out.nfe == 10 and not (out.sequences == llada64.config.mask_token_id).any()


def test_models_take_a_cache_and_a_partial_forward(model64):
    """The trunk API itself: a full forward fills the cache; a partial forward over some columns at their true
    positions gives the full forward's outputs there when nothing changed (here: exactly the same canvas)."""
    _, ids, mask = padded_batch(model64)
    decoder = model64.get_decoder()
    cache = DiffusionCache()
    full = decoder(input_ids=ids, attention_mask=mask, cache=cache).last_hidden_state
    cols = torch.tensor([1, 4, 5])
    part = decoder(input_ids=ids[:, cols], attention_mask=mask, past_key_values=cache, cache_position=cols)
    torch.testing.assert_close(part.last_hidden_state, full[:, cols], rtol=0, atol=1e-12)
    assert (cache.full_forwards, cache.partial_forwards) == (1, 1)
    with pytest.raises(ValueError, match="DiffusionCache"):
        decoder(input_ids=ids, attention_mask=mask, cache=object())
    with pytest.raises(ValueError, match="needs a cache"):
        decoder(input_ids=ids[:, cols], attention_mask=mask, cache_position=cols)


class NoCacheLLaDA(LLaDAModelLM):
    _supports_diffusion_cache = False


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(cache_implementation="static", block_length=4), "cache_implementation='static' is unknown"),
        (dict(cache_implementation="dual"), "pass block_length="),
        (dict(cache_implementation="dual", strategy="dream"), "strategy='dream' has no blocks"),
        (
            dict(
                cache_implementation="prefix",
                strategy="parallel_forced",
                m=2,
                path_length=8,
                summary_length=4,
                header_ids=HEADERS,
            ),
            "block_length= \\(it must divide path_length",
        ),
        (
            dict(
                cache_implementation="dual",
                canvas="nap",
                m=2,
                path_length=8,
                summary_length=4,
                header_ids=HEADERS,
            ),
            "each slot is a block",
        ),
        (
            dict(cache_implementation="dual", block_length=4, cache_refresh="sometimes"),
            "cache_refresh='sometimes'",
        ),
    ],
)
def test_bad_cache_input_names_the_fix(llada64, kwargs, match):
    with pytest.raises(ValueError, match=match):
        llada64.generate(random_prompt(llada64, 4), steps=4, gen_length=8, **kwargs)


def test_a_model_without_cache_support_is_named(llada_dir):
    model = NoCacheLLaDA.from_pretrained(llada_dir, dtype=torch.float64).eval()
    with pytest.raises(ValueError, match="NoCacheLLaDA does not support cache_implementation='dual'"):
        model.generate(
            random_prompt(model, 4), steps=4, gen_length=8, block_length=4, cache_implementation="dual"
        )


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    m=st.integers(1, 3),
    blocks=st.integers(1, 3),
    block=st.integers(1, 4),
    summary_length=st.integers(1, 4),
    steps=st.integers(2, 30),
    mode=st.sampled_from(["prefix", "dual"]),
    refresh=st.sampled_from(["any", "all", 2]),
    summary=st.sampled_from(["after", "concurrent"]),
)
def test_parallel_forced_invariants_with_a_cache(
    llada64, m, blocks, block, summary_length, steps, mode, refresh, summary
):
    """Every slot is committed once, headers stay untouched, and every step commits its budget exactly."""
    path_length = blocks * block
    headers = [[5 + j] for j in range(m)] + [[9]]
    ids = random_prompt(llada64, 4)
    commits = []
    out = llada64.generate(
        ids,
        strategy="parallel_forced",
        m=m,
        path_length=path_length,
        summary_length=summary_length,
        block_length=block,
        steps=steps,
        summary=summary,
        header_ids=headers,
        cache_implementation=mode,
        cache_refresh=refresh,
        return_dict_in_generate=True,
        step_callback=lambda s: commits.append(s.committed.clone()),
    )
    slots = torch.zeros_like(out.trace, dtype=torch.bool)
    for r in out.regions[0]:
        if r.kind in ("path", "summary"):
            slots[:, r.slice] = True
        if r.kind == "header":
            assert out.sequences[0, r.slice].tolist() == headers[r.index - 1 if r.index else -1]
    counts = torch.stack(commits).sum(0)
    assert (counts[slots] == 1).all() and (counts[~slots] == 0).all()
    assert out.nfe == len(commits) == min(steps, int(slots.sum()))
    n_path, n_sum = m * path_length, summary_length
    s_path, s_sum = split_steps(out.nfe, n_path, n_sum, summary)
    budget = llada_num_transfer_tokens(
        torch.tensor([n_path + (n_sum if summary == "concurrent" else 0)]), s_path
    )[0]
    if s_sum:
        budget = torch.cat([budget, llada_num_transfer_tokens(torch.tensor([n_sum]), s_sum)[0]])
    assert [int(c.sum()) for c in commits] == budget.tolist()


def test_cache_fields_are_saved_with_the_generation_config(tmp_path):
    from nap_hf import DiffusionGenerationConfig

    cfg = DiffusionGenerationConfig(
        cache_implementation="dual", cache_refresh="all", early_stop=True, factor=2.0
    )
    cfg.save_pretrained(tmp_path)  # transformers' own validate() does not know "dual"; ours lets it through
    back = DiffusionGenerationConfig.from_pretrained(tmp_path)
    assert (back.cache_implementation, back.cache_refresh, back.early_stop, back.factor) == (
        "dual",
        "all",
        True,
        2.0,
    )


def test_factor_rule_commits_the_longest_run_that_clears_its_bar(llada64):
    from nap_hf.generation.strategies import FactorStrategy, StepPlan

    class Cfg:
        factor = 1.0

    rows = torch.ones(2, 5, dtype=torch.bool)
    scores = torch.tensor([[0.99, 0.7, 0.68, 0.2, 0.1], [0.4, 0.3, 0.2, 0.1, 0.05]], dtype=torch.float64)
    commit = FactorStrategy(Cfg()).select(None, StepPlan(rows=rows), scores)
    # row 0: 0.99 >= 1 - 1/2, 0.7 >= 1 - 1/3, 0.68 < 1 - 1/4 -> two; row 1: none clears, the top-1 anyway
    assert commit.tolist() == [[True, True, False, False, False], [True, False, False, False, False]]


@pytest.mark.parametrize("mode", ["prefix", "dual"])
def test_one_layer_early_stop_with_a_cache_equals_no_cache(one_layer, mode):
    """Filler written outside the recomputed columns makes the next step refresh, so a 1-layer model stays exact."""
    model = one_layer["llada"]
    eos = model.config.eos_token_id

    class FavourEos(LogitsProcessor):
        def __call__(self, input_ids, scores):
            scores[:, eos] += 4.0
            return scores

    _, ids, mask = padded_batch(model)
    case = dict(strategy="confidence", steps=8, gen_length=16, block_length=4, early_stop=True)
    outs = [
        model.generate(
            ids,
            attention_mask=mask,
            logits_processor=LogitsProcessorList([FavourEos()]),
            cache_implementation=cache,
            return_dict_in_generate=True,
            **case,
        )
        for cache in (None, mode)
    ]
    assert (outs[0].sequences[:, ids.shape[1] :] == eos).any()  # the early exit fired
    assert torch.equal(outs[0].sequences, outs[1].sequences) and torch.equal(outs[0].trace, outs[1].trace)
    assert outs[0].nfe == outs[1].nfe < 8


def test_a_strategy_defined_here_gets_the_cache_by_declaring_its_window(one_layer):
    """A strategy outside nap_hf/: commit the rightmost masked position of its current block each step. It
    only declares `StepPlan.window`; the loop's cache does the rest (exact on a 1-layer model)."""
    from nap_hf.generation.strategies import (
        STRATEGIES,
        BlockScheduledStrategy,
        StepPlan,
        register_strategy,
        topk_mask,
    )

    class RightmostFirst(BlockScheduledStrategy):
        name = "test_rightmost_first"
        score_kind = None

        def plan_step(self, state, eligible, k):
            right = torch.arange(eligible.shape[1], dtype=torch.float64).expand_as(eligible)
            commit = topk_mask(right.masked_fill(~eligible, float("-inf")), k)
            return StepPlan(rows=commit, commit=commit)

    register_strategy(RightmostFirst)
    try:
        model = one_layer["dream"]
        _, ids, mask = padded_batch(model)
        case = dict(strategy="test_rightmost_first", steps=8, gen_length=16, block_length=4)
        ref, got = run(model, ids, mask, **case), run(model, ids, mask, cache_implementation="dual", **case)
        assert_same_run(got, ref)
        assert any(n < ref[0].sequences.shape[1] for n in got[2])
        trace = got[0].trace[:, ids.shape[1] :].reshape(2, 4, 4)
        assert (trace[..., 1:] <= trace[..., :-1]).all()  # right to left inside each block
    finally:
        STRATEGIES.pop("test_rightmost_first")
