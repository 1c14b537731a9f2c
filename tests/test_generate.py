"""The decoding loop against plain, slow, obviously-correct loops written here from the published
algorithms (LLaDA's `generate`, Dream's `diffusion_generate`), in float64 so near-ties cannot flip;
batch vs single; options; and clear errors."""

from __future__ import annotations

import pytest
import torch
from transformers import LogitsProcessorList, SuppressTokensLogitsProcessor

from nap_hf.metrics import global_arness

from .conftest import random_prompt

# ----------------------------------------------------------------------------- reference loops


def reference_llada(model, prompt, *, steps, gen_length, block_length, cfg_scale=0.0):
    """LLaDA's published sampler at temperature 0 with `remasking="low_confidence"`: every step a full
    forward, softmax over the whole vocabulary, confidence = p(argmax), the top-k masked positions up to the
    end of the current block get committed; k from `n // steps` (+1 in the first `n % steps` steps)."""
    mask_id = model.config.mask_token_id
    P = prompt.shape[1]
    x = torch.full((1, P + gen_length), mask_id, dtype=torch.long)
    x[:, :P] = prompt
    prompt_index = x != mask_id
    n_blocks = gen_length // block_length
    per_block = steps // n_blocks
    for b in range(n_blocks):
        end = P + (b + 1) * block_length
        n = int((x[0, P + b * block_length : end] == mask_id).sum())
        budget = [n // per_block + (1 if i < n % per_block else 0) for i in range(per_block)]
        for i in range(per_block):
            with torch.no_grad():
                if cfg_scale > 0:
                    un = x.clone()
                    un[prompt_index] = mask_id
                    logits, un_logits = model(torch.cat([x, un])).logits.chunk(2)
                    logits = un_logits + (cfg_scale + 1) * (logits - un_logits)
                else:
                    logits = model(x).logits
            logits[..., mask_id] = float("-inf")  # decided here: the mask token is never a candidate
            p = torch.softmax(logits[0], -1)
            x0 = logits[0].argmax(-1)
            conf = p[torch.arange(x.shape[1]), x0]
            conf[x[0] != mask_id] = float("-inf")
            conf[end:] = float("-inf")
            for j in sorted(range(x.shape[1]), key=lambda j: -conf[j].item())[: budget[i]]:
                x[0, j] = x0[j]
    return x


def reference_dream(model, prompt, *, steps, gen_length, alg, generator=None, eps=1e-3):
    """Dream's published `diffusion_generate` at temperature 0 for one prompt: shifted logits; `origin`
    commits each masked position with probability 1 - s/t; the others commit the int(n (1 - s/t)) best
    (`maskgit_plus`: max prob, `topk_margin`: p1 - p2, `entropy`: sum p log p), all at the last step."""
    mask_id = model.config.mask_token_id
    x = torch.cat([prompt, torch.full((1, gen_length), mask_id, dtype=torch.long)], 1)
    ts = torch.linspace(1, eps, steps + 1)
    for i in range(steps):
        masked = x[0] == mask_id
        with torch.no_grad():
            logits = model(x).logits
        logits = torch.cat([logits[:, :1], logits[:, :-1]], 1)[0]
        logits[:, mask_id] = float("-inf")  # decided here: the mask token is never a candidate
        t, s = ts[i], ts[i + 1]
        if alg == "origin":
            p_transfer = 1 - s / t if i < steps - 1 else 1
            draws = torch.rand(int(masked.sum()), generator=generator) < p_transfer
            for draw, pos in zip(draws.tolist(), masked.nonzero()[:, 0].tolist(), strict=True):
                if draw:
                    x[0, pos] = logits[pos].argmax()
            continue
        probs = torch.softmax(logits[masked], -1)
        top = probs.sort(-1, descending=True).values
        score = {
            "maskgit_plus": top[:, 0],
            "topk_margin": top[:, 0] - top[:, 1],
            "entropy": (probs * torch.log(probs + 1e-10)).sum(-1),  # Dream adds 1e-10
        }[alg]
        n = masked.sum() / 1
        k = int(n * (1 - s / t)) if i < steps - 1 else int(n)
        positions = masked.nonzero()[:, 0].tolist()
        ranked = sorted(range(len(positions)), key=lambda r: -score[r].item())[:k]
        for r in ranked:
            x[0, positions[r]] = logits[positions[r]].argmax()
    return x


# ----------------------------------------------------------------------------- parity


@pytest.mark.parametrize(
    "steps,gen_length,block_length",
    [(8, 16, 4), (16, 16, 16), (6, 12, 4), (4, 12, 12), (12, 8, 8)],
)
def test_confidence_blocks_match_llada_reference(llada64, steps, gen_length, block_length):
    prompt = random_prompt(llada64, 6, seed=steps + gen_length)
    got = llada64.generate(
        prompt, strategy="confidence", steps=steps, gen_length=gen_length, block_length=block_length
    )
    want = reference_llada(llada64, prompt, steps=steps, gen_length=gen_length, block_length=block_length)
    assert torch.equal(got, want)


def test_cfg_matches_llada_reference(llada64):
    prompt = random_prompt(llada64, 5, seed=11)
    out = llada64.generate(
        prompt,
        strategy="confidence",
        steps=8,
        gen_length=8,
        block_length=4,
        cfg_scale=1.5,
        return_dict_in_generate=True,
    )
    want = reference_llada(llada64, prompt, steps=8, gen_length=8, block_length=4, cfg_scale=1.5)
    assert torch.equal(out.sequences, want)
    assert out.nfe == 16  # a guided step is two forward passes


@pytest.mark.parametrize("alg", ["maskgit_plus", "topk_margin", "entropy"])
@pytest.mark.parametrize("steps,gen_length", [(8, 16), (16, 16), (5, 12)])
def test_dream_algs_match_dream_reference(dream64, alg, steps, gen_length):
    prompt = random_prompt(dream64, 6, seed=steps)
    got = dream64.generate(prompt, strategy="dream", alg=alg, steps=steps, gen_length=gen_length)
    assert torch.equal(got, reference_dream(dream64, prompt, steps=steps, gen_length=gen_length, alg=alg))


def test_dream_origin_matches_reference_with_seeded_generator(dream64):
    prompt = random_prompt(dream64, 6, seed=3)
    got = dream64.generate(
        prompt,
        strategy="dream",
        alg="origin",
        steps=10,
        gen_length=16,
        generator=torch.Generator().manual_seed(7),
    )
    want = reference_dream(
        dream64, prompt, steps=10, gen_length=16, alg="origin", generator=torch.Generator().manual_seed(7)
    )
    assert torch.equal(got, want)


def test_dream_diffusion_generate_takes_dreams_arguments(dream64):
    prompt = random_prompt(dream64, 5, seed=4)
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    out = dream64.diffusion_generate(
        prompt, max_new_tokens=8, steps=8, output_history=True, return_dict_in_generate=True, generator=g1
    )
    want = reference_dream(dream64, prompt, steps=8, gen_length=8, alg="origin", generator=g2)
    assert torch.equal(out.sequences, want) and len(out.history) == out.nfe


# ----------------------------------------------------------------------------- batches


BATCH_CASES = [
    dict(strategy="confidence", steps=8, gen_length=16, block_length=4),
    dict(strategy="confidence", steps=16, gen_length=16, score="margin"),
    dict(strategy="confidence", steps=8, gen_length=8, score="entropy"),
    dict(strategy="ar", steps=8, gen_length=16),
    dict(strategy="threshold", steps=8, gen_length=16, block_length=8, threshold=0.05),
    dict(strategy="dream", alg="entropy", steps=8, gen_length=16),
    dict(strategy="dream", alg="maskgit_plus", steps=6, gen_length=12),
]


@pytest.mark.parametrize("case", BATCH_CASES, ids=lambda c: "-".join(str(v) for v in c.values()))
def test_left_padded_batch_equals_one_prompt_at_a_time(model64, case):
    if case["strategy"] == "dream" and not model64.shift_logits:
        pytest.skip("Dream's schedule is exercised on the Dream model")
    pad = model64.config.pad_token_id
    prompts = [random_prompt(model64, n, seed=n) for n in (3, 7, 5)]
    P = max(p.shape[1] for p in prompts)
    ids = torch.stack([torch.cat([torch.full((P - p.shape[1],), pad), p[0]]) for p in prompts])
    mask = torch.stack(
        [torch.cat([torch.zeros(P - p.shape[1]), torch.ones(p.shape[1])]).long() for p in prompts]
    )
    batch = model64.generate(ids, attention_mask=mask, return_dict_in_generate=True, **case)
    for row, prompt in enumerate(prompts):
        single = model64.generate(prompt, return_dict_in_generate=True, **case)
        assert torch.equal(batch.sequences[row, P:], single.sequences[0, prompt.shape[1] :])
        assert torch.equal(batch.trace[row, P:], single.trace[0, prompt.shape[1] :])
    assert (batch.trace[:, :P] == -1).all()


# ----------------------------------------------------------------------------- behaviour


def test_ar_order_is_left_to_right_and_runs_the_head_on_committed_rows_only(llada64):
    prompt = random_prompt(llada64, 4)
    seen = []
    head = llada64.get_output_embeddings()
    handle = head.register_forward_hook(lambda mod, inp, out: seen.append(inp[0].shape[0]))
    try:
        out = llada64.generate(prompt, strategy="ar", steps=6, gen_length=12, return_dict_in_generate=True)
    finally:
        handle.remove()
    assert out.trace[0, 4:].tolist() == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5]
    assert global_arness(out.trace).mean == 1.0
    assert seen == [2] * 6  # the LM head saw only the 2 rows committed at each step


def test_confidence_head_rows_are_the_masked_rows_of_the_block(llada64):
    seen = []
    handle = llada64.get_output_embeddings().register_forward_hook(lambda m, i, o: seen.append(i[0].shape[0]))
    try:
        llada64.generate(
            random_prompt(llada64, 4), strategy="confidence", steps=8, gen_length=16, block_length=8
        )
    finally:
        handle.remove()
    assert seen == [8, 6, 4, 2, 8, 6, 4, 2]


def test_threshold_commits_top1_plus_confident_and_adapts_nfe(llada64):
    prompt = random_prompt(llada64, 4)
    strict = llada64.generate(
        prompt, strategy="threshold", gen_length=8, threshold=1.0, return_dict_in_generate=True
    )
    assert strict.nfe == 8  # nothing reaches p = 1: one token per pass
    loose = llada64.generate(
        prompt, strategy="threshold", gen_length=8, threshold=1e-9, return_dict_in_generate=True
    )
    assert loose.nfe == 1  # everything passes: the whole block in one pass
    blocks = llada64.generate(
        prompt,
        strategy="threshold",
        gen_length=8,
        block_length=4,
        threshold=1e-9,
        return_dict_in_generate=True,
    )
    assert blocks.nfe == 2 and blocks.trace[0, 4:].tolist() == [0] * 4 + [1] * 4


def test_random_order_is_seeded_and_sampling_is_reproducible(llada64):
    prompt = random_prompt(llada64, 4)
    kw = dict(strategy="random", steps=8, gen_length=16, temperature=1.0, return_dict_in_generate=True)
    a = llada64.generate(prompt, seed=1, **kw)
    b = llada64.generate(prompt, generator=torch.Generator().manual_seed(1), **kw)
    c = llada64.generate(prompt, seed=2, **kw)
    assert torch.equal(a.sequences, b.sequences) and torch.equal(a.trace, b.trace)
    assert not torch.equal(a.trace, c.trace)


def test_temperature_sampling_follows_softmax(llada64):
    """With one masked slot and one step, the candidate is a draw from softmax(logits / T)."""
    prompt = random_prompt(llada64, 3)
    T = 2.0
    with torch.no_grad():
        x = torch.cat([prompt, torch.tensor([[llada64.config.mask_token_id]])], 1)
        logits = llada64(x).logits[0, -1]
        logits[llada64.config.mask_token_id] = float("-inf")
        probs = torch.softmax(logits / T, -1)
    out = llada64.generate(
        prompt.repeat(2000, 1), strategy="confidence", steps=1, gen_length=1, temperature=T, seed=0
    )
    freq = torch.bincount(out[:, -1], minlength=probs.numel()).double() / 2000
    top = probs.topk(5).indices
    assert torch.allclose(freq[top], probs[top], atol=0.04)


def test_logits_processor_and_eos_suppression(llada64):
    prompt = random_prompt(llada64, 4)
    banned = llada64.generate(prompt, steps=8, gen_length=8)[0, 4:].tolist()
    proc = LogitsProcessorList([SuppressTokensLogitsProcessor(banned)])
    out = llada64.generate(prompt, steps=8, gen_length=8, logits_processor=proc)
    assert not set(out[0, 4:].tolist()) & set(banned)
    eos = llada64.config.eos_token_id
    no_eos = llada64.generate(prompt, steps=8, gen_length=8, logits_eos_inf=True)
    assert (no_eos[0, 4:] != eos).all()


def test_infilling_masks_inside_the_prompt(llada64):
    mask_id = llada64.config.mask_token_id
    prompt = random_prompt(llada64, 8)
    prompt[0, 2] = prompt[0, 5] = mask_id
    out = llada64.generate(prompt, steps=4, gen_length=4, return_dict_in_generate=True)
    assert not (out.sequences == mask_id).any()
    assert (out.trace[0, [2, 5]] >= 0).all() and (out.trace[0, [0, 1, 3, 4, 6, 7]] == -1).all()
    assert torch.equal(out.sequences[0, [0, 1, 3, 4, 6, 7]], prompt[0, [0, 1, 3, 4, 6, 7]])


def test_callback_history_and_num_return_sequences(llada64):
    prompt = random_prompt(llada64, 4, batch=2)
    steps = []
    out = llada64.generate(
        prompt,
        steps=4,
        gen_length=8,
        num_return_sequences=3,
        temperature=1.0,
        seed=0,
        output_history=True,
        return_dict_in_generate=True,
        step_callback=lambda s: steps.append((s.step, int(s.committed.sum()))),
    )
    assert out.sequences.shape == (6, 12)
    assert torch.equal(out.sequences[:3, :4], prompt[0].expand(3, -1))
    assert steps == [(0, 12), (1, 12), (2, 12), (3, 12)]
    assert len(out.history) == 4 and torch.equal(out.history[-1], out.sequences)


def test_generation_config_defaults_are_saved_with_the_checkpoint(llada_dir, tmp_path):
    from nap_hf import LLaDAModelLM

    model = LLaDAModelLM.from_pretrained(llada_dir)
    model.generation_config.strategy = "ar"
    model.generation_config.steps = 4
    model.generation_config.gen_length = 4
    model.save_pretrained(tmp_path)
    again = LLaDAModelLM.from_pretrained(tmp_path)
    assert (again.generation_config.strategy, again.generation_config.steps) == ("ar", 4)
    out = again.generate(random_prompt(again, 3), return_dict_in_generate=True)
    assert out.sequences.shape[1] == 7 and out.trace[0, 3:].tolist() == [0, 1, 2, 3]


# ----------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(strategy="nope"), "strategy='nope' is unknown; valid strategies: \\['ar'"),
        (dict(steps=0), "steps must be a positive integer"),
        (
            dict(gen_length=10, block_length=4),
            "gen_length \\(10\\) must be divisible by block_length \\(4\\)",
        ),
        (
            dict(steps=3, gen_length=8, block_length=4),
            "steps \\(3\\) must be divisible by the number of blocks",
        ),
        (dict(mask_token_id=None), "no mask token id"),
        (dict(pad_token_id=-5, mask_token_id=-5), "pad_token_id .* equals mask_token_id"),
        (dict(temperature=-1.0), "temperature must be >= 0"),
        (dict(score="best"), "score='best' is unknown"),
        (dict(strategy="dream", block_length=4, gen_length=8), "block_length is not part of Dream"),
        (dict(gen_length=8, max_new_tokens=9), "either `gen_length` or `max_new_tokens`"),
        (dict(bogus=1), "unknown argument\\(s\\) \\['bogus'\\]"),
        (dict(gen_length=5000), "exceeds the model's maximum length"),
    ],
)
def test_bad_input_names_the_argument(llada64, kwargs, match):
    prompt = random_prompt(llada64, 4)
    if kwargs.get("mask_token_id", 0) is None:
        saved = (llada64.config.mask_token_id, llada64.generation_config.mask_token_id)
        llada64.config.mask_token_id = llada64.generation_config.mask_token_id = None
        try:
            with pytest.raises(ValueError, match=match):
                llada64.generate(prompt, steps=4, gen_length=4)
        finally:
            llada64.config.mask_token_id, llada64.generation_config.mask_token_id = saved
        return
    kwargs = {"steps": 4, "gen_length": 8, **kwargs}
    with pytest.raises(ValueError, match=match):
        llada64.generate(prompt, **kwargs)


def test_right_padding_is_refused(llada64):
    ids = random_prompt(llada64, 4, batch=2)
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 1, 1]])
    with pytest.raises(ValueError, match="LEFT padding"):
        llada64.generate(ids, attention_mask=mask, steps=4, gen_length=4)
