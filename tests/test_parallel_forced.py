"""Parallel-forced decoding (NAP-D) through `generate`: the structured canvas, the invariants of the
macro-parallel schedule (hypothesis, bounded), batches, parsing of paths / summary / answer, errors."""

from __future__ import annotations

from fractions import Fraction

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from transformers import AutoTokenizer
from transformers.modeling_outputs import MaskedLMOutput

from nap_hf import enable_diffusion_generate
from nap_hf.data import build_layout, render_slot_aligned
from nap_hf.generation.scores import SCORES
from nap_hf.generation.strategies import llada_num_transfer_tokens, split_steps
from nap_hf.metrics import global_arness

from .conftest import random_prompt

SETTINGS = settings(
    max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@pytest.fixture(scope="session")
def tokenizers(llada_dir, dream_dir):
    return {
        "llada": AutoTokenizer.from_pretrained(llada_dir),
        "dream": AutoTokenizer.from_pretrained(dream_dir),
    }


def _tok(model, tokenizers):
    return tokenizers["dream" if model.shift_logits else "llada"]


def _masks(out, kind):
    mask = torch.zeros_like(out.trace, dtype=torch.bool)
    for r in out.regions[0]:
        if r.kind == kind:
            mask[:, r.slice] = True
    return mask


@st.composite
def pf_case(draw):
    m = draw(st.integers(1, 4))
    path_length = draw(st.integers(1, 12))
    summary_length = draw(st.integers(1, 6))
    slots = m * path_length + summary_length
    block = draw(st.sampled_from([None] + [b for b in range(1, path_length + 1) if path_length % b == 0]))
    return dict(
        m=m,
        path_length=path_length,
        summary_length=summary_length,
        steps=draw(st.integers(2, slots + 5)),
        summary=draw(st.sampled_from(["after", "concurrent"])),
        block_length=block,
        score=draw(st.sampled_from(sorted(SCORES))),  # every registered score
        temperature=draw(st.sampled_from([0.0, 1.0])),
        seed=draw(st.integers(0, 1000)),
    )


@SETTINGS
@given(case=pf_case(), batch=st.integers(1, 2))
def test_parallel_forced_invariants(model64, tokenizers, case, batch):
    tok = _tok(model64, tokenizers)
    ids = random_prompt(model64, 4, seed=case["seed"], batch=batch)
    commits = []
    out = model64.generate(
        ids,
        strategy="parallel_forced",
        tokenizer=tok,
        return_dict_in_generate=True,
        step_callback=lambda s: commits.append(s.committed.clone()),
        **case,
    )
    P = ids.shape[1]
    m, n_path, n_sum = case["m"], case["m"] * case["path_length"], case["summary_length"]
    slots = n_path + n_sum
    header = _masks(out, "header")
    path, summ = _masks(out, "path"), _masks(out, "summary")
    layout = build_layout(tok, m, case["path_length"], n_sum)
    # headers identical before and after, never in the trace; the prompt untouched
    assert torch.equal(
        out.sequences[:, P:][:, header[0, P:]],
        torch.tensor(layout.template(0))[header[0, P:]].expand(batch, -1),
    )
    assert (out.trace[header] == -1).all() and torch.equal(out.sequences[:, :P], ids)
    # every slot position committed exactly once; no mask left
    counts = torch.stack(commits).sum(0)
    assert (counts[path | summ] == 1).all() and (counts[~(path | summ)] == 0).all()
    assert not (out.sequences == model64.config.mask_token_id).any()
    # NFE == min(steps, slots); no forward pass commits nothing
    assert out.nfe == min(case["steps"], slots) == len(commits)
    assert all(bool(c.any()) for c in commits)
    steps = min(case["steps"], slots)
    s_path, _ = split_steps(steps, n_path, n_sum, case["summary"])
    if case["summary"] == "after":  # no summary commit before every path slot is full
        last_path_step = int(out.trace[path].max())
        assert int(out.trace[summ].min()) > last_path_step
        assert last_path_step == s_path - 1
        budget = llada_num_transfer_tokens(torch.tensor([n_path]), s_path)[0].tolist()
        paths = [r for r in out.regions[0] if r.kind == "path"]
        done = [0] * m
        for t in range(s_path):
            per_slot = [int(commits[t][0, r.slice].sum()) for r in paths]
            unfinished = [d < case["path_length"] for d in done]
            if budget[t] >= m:  # every unfinished path slot advances
                assert all(c >= 1 for c, u in zip(per_slot, unfinished, strict=True) if u)
            done = [d + c for d, c in zip(done, per_slot, strict=True)]
            for d in done:  # no slot lags its ideal progress by more than one token
                assert Fraction(case["path_length"] * (t + 1), s_path) - d <= 1


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    m=st.integers(2, 4),
    path_length=st.integers(20, 40),
    tokens_per_step=st.integers(1, 5),
    block=st.sampled_from([None, 5]),
    seed=st.integers(0, 100),
)
def test_parallel_forced_global_arness_is_structurally_low(
    model64, tokenizers, m, path_length, tokens_per_step, block, seed
):
    """Only the path holding the leftmost mask can score, and the paths advance together, so
    Global-ARness@1 over the path slots is at most 1/m (+ end effects), whatever the model."""
    path_length -= path_length % 5
    slots = m * path_length + 4
    out = model64.generate(
        random_prompt(model64, 4, seed=seed),
        strategy="parallel_forced",
        tokenizer=_tok(model64, tokenizers),
        m=m,
        path_length=path_length,
        summary_length=4,
        steps=max(2, slots // tokens_per_step),
        block_length=block,
        temperature=1.0,
        seed=seed,
        return_dict_in_generate=True,
    )
    assert global_arness(out.trace, positions=_masks(out, "path")).mean <= 1 / m + 0.05


def test_parallel_forced_batch_equals_one_prompt_at_a_time(model64, tokenizers):
    tok = _tok(model64, tokenizers)
    pad = model64.config.pad_token_id
    prompts = [random_prompt(model64, n, seed=n) for n in (3, 6)]
    ids = torch.stack([torch.cat([torch.full((6 - p.shape[1],), pad), p[0]]) for p in prompts])
    mask = (ids != pad).long()
    kw = dict(
        strategy="parallel_forced",
        tokenizer=tok,
        m=3,
        path_length=6,
        summary_length=4,
        steps=11,
        return_dict_in_generate=True,
    )
    batch = model64.generate(ids, attention_mask=mask, **kw)
    for row, prompt in enumerate(prompts):
        single = model64.generate(prompt, **kw)
        assert torch.equal(batch.sequences[row, 6:], single.sequences[0, prompt.shape[1] :])
        assert torch.equal(batch.trace[row, 6:], single.trace[0, prompt.shape[1] :])


class Oracle(torch.nn.Module):
    """A stand-in model whose logits put all mass on a fixed target canvas (LLaDA-style, unshifted)."""

    def __init__(self, target: torch.LongTensor, vocab: int, config):
        super().__init__()
        self.target, self.vocab, self.config = target, vocab, config

    def forward(self, input_ids, attention_mask=None, **kwargs):
        logits = torch.full((*input_ids.shape, self.vocab), -10.0, dtype=torch.float64)
        logits.scatter_(-1, self.target.expand(input_ids.shape[0], -1)[..., None], 10.0)
        return MaskedLMOutput(logits=logits)


def test_paths_summary_and_answer_are_parsed_from_their_slots(llada64, tokenizers):
    tok = tokenizers["llada"]
    eos = llada64.config.eos_token_id
    paths = ["3 + 4 = 7", "4 + 3 = 7", "7 - 0 = 7 \\boxed{9}"]  # a boxed answer in a path must not count
    layout = build_layout(tok, 3, 24, 40)
    body = render_slot_aligned(tok, paths, "So \\boxed{7}.", layout, filler_id=eos)
    assert body is not None
    prompt = random_prompt(llada64, 5)
    target = torch.cat([prompt[0], torch.tensor(body)])[None]
    oracle = enable_diffusion_generate(
        Oracle(target, llada64.config.vocab_size, llada64.config), mask_token_id=llada64.config.mask_token_id
    )
    out = oracle.generate(
        prompt,
        strategy="parallel_forced",
        tokenizer=tok,
        m=3,
        path_length=24,
        summary_length=40,
        steps=30,
        return_dict_in_generate=True,
    )
    assert torch.equal(out.sequences, target)
    assert out.paths == [paths] and out.summary == ["So \\boxed{7}."] and out.answer == ["7"]
    assert [r.label for r in out.regions[0] if r.kind != "prompt"] == [
        "<think 1>",
        "think 1",
        "<think 2>",
        "think 2",
        "<think 3>",
        "think 3",
        "<summary>",
        "summary",
    ]


@pytest.mark.parametrize("strategy", ["confidence", "random", "ar", "threshold"])
def test_other_strategies_run_on_the_structured_canvas(llada64, tokenizers, strategy):
    tok = tokenizers["llada"]
    out = llada64.generate(
        random_prompt(llada64, 4),
        strategy=strategy,
        canvas="nap",
        tokenizer=tok,
        m=2,
        path_length=5,
        summary_length=3,
        steps=13,
        seed=0,
        return_dict_in_generate=True,
    )
    header, slots = _masks(out, "header"), _masks(out, "path") | _masks(out, "summary")
    assert (out.trace[header] == -1).all() and (out.trace[slots] >= 0).all()
    if strategy == "threshold":  # each slot is a block, decoded in canvas order
        spans = [r for r in out.regions[0] if r.kind in ("path", "summary")]
        firsts = [int(out.trace[0, r.slice].min()) for r in spans]
        lasts = [int(out.trace[0, r.slice].max()) for r in spans]
        assert all(lasts[i] < firsts[i + 1] for i in range(len(spans) - 1))
    else:
        assert out.nfe == 13


def test_steps_above_the_slot_count_are_clamped_with_a_warning(llada64, tokenizers, caplog):
    out = llada64.generate(
        random_prompt(llada64, 4),
        strategy="parallel_forced",
        tokenizer=tokenizers["llada"],
        m=3,
        path_length=4,
        summary_length=2,
        steps=100,
        return_dict_in_generate=True,
    )
    assert out.nfe == 14
    assert "clamped to 14" in caplog.text


def test_header_ids_from_the_generation_config_replace_the_tokenizer(llada64, tokenizers):
    tok = tokenizers["llada"]
    layout = build_layout(tok, 2, 4, 3)
    kw = dict(strategy="parallel_forced", m=2, path_length=4, summary_length=3, steps=8)
    prompt = random_prompt(llada64, 4)
    a = llada64.generate(prompt, tokenizer=tok, **kw)
    b = llada64.generate(prompt, header_ids=layout.header_ids, **kw)
    assert torch.equal(a, b)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(m=0), "m must be an integer >= 1"),
        (dict(path_length=0), "path_length must be an integer >= 1"),
        (dict(summary_length=0), "summary_length must be an integer >= 1"),
        (dict(steps=0), "steps must be a positive integer"),
        (dict(block_length=3), "block_length \\(3\\) must divide path_length \\(8\\)"),
        (dict(path_length=400), "exceeds the model's maximum length"),
        (dict(tokenizer=None), "pass `tokenizer=`"),
        (dict(summary="later"), "summary='later' is unknown"),
        (dict(steps=1), "steps must be >= 2 with summary='after'"),
    ],
)
def test_parallel_forced_bad_input(llada64, tokenizers, kwargs, match):
    kw = dict(
        strategy="parallel_forced",
        tokenizer=tokenizers["llada"],
        m=3,
        path_length=8,
        summary_length=4,
        steps=8,
    )
    kw.update(kwargs)
    with pytest.raises(ValueError, match=match):
        llada64.generate(random_prompt(llada64, 4), **kw)
