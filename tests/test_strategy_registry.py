"""A strategy defined only in the tests (`tests/strategies_for_tests.py`), registered here, runs everywhere
with nothing in `nap_hf/` naming it: `generate` on both canvases and both models, the KV cache, the evaluation
runner. (The lm-eval model: tests/test_lm_eval.py.) And the strategies' declarations answer the questions the
package asks about them."""

from __future__ import annotations

import pytest
import torch

from nap_hf.evaluation.runner import RESULT_FIELDS, parse_strategy, read_records, run_eval
from nap_hf.evaluation.settings import plan_generate, uses_nap_canvas
from nap_hf.evaluation.tasks import Example
from nap_hf.generation.strategies import STRATEGIES

from .conftest import random_prompt
from .strategies_for_tests import LeftToRight, registered

HEADERS = [[5, 6], [7, 8], [9]]  # m = 2 path headers and the summary header, as token ids


@pytest.fixture
def left_to_right():
    with registered():
        yield LeftToRight.name


def _padded(model):
    """Two left-padded prompts of 3 and 5 tokens."""
    pad = model.config.pad_token_id
    a, b = random_prompt(model, 3, seed=1)[0], random_prompt(model, 5, seed=2)[0]
    ids = torch.stack([torch.cat([torch.full((2,), pad), a]), b])
    return ids, torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1]])


def _same(a, b):
    assert torch.equal(a.sequences, b.sequences) and torch.equal(a.trace, b.trace) and a.nfe == b.nfe


@pytest.mark.parametrize(
    "case",
    [
        dict(gen_length=12, steps=12),
        dict(gen_length=12, steps=12, block_length=4),
        dict(canvas="nap", m=2, path_length=4, summary_length=3, steps=11, header_ids=HEADERS),
    ],
    ids=["plain", "blocks", "nap"],
)
def test_it_decodes_as_ar_with_one_position_per_step(model64, left_to_right, case):
    ids, mask = _padded(model64)
    kw = dict(attention_mask=mask, return_dict_in_generate=True, **case)
    got, ref = model64.generate(ids, strategy=left_to_right, **kw), model64.generate(ids, strategy="ar", **kw)
    _same(got, ref)
    assert got.nfe == int((got.trace >= 0).sum(-1).max())  # one position per step


def test_it_runs_with_the_dual_cache_and_needs_its_blocks(llada64, left_to_right):
    ids, mask = _padded(llada64)
    kw = dict(attention_mask=mask, gen_length=12, steps=12, block_length=4, return_dict_in_generate=True)
    for cache in ("dual", "prefix"):
        got = llada64.generate(ids, strategy=left_to_right, cache_implementation=cache, **kw)
        _same(got, llada64.generate(ids, strategy="ar", cache_implementation=cache, **kw))
    with pytest.raises(ValueError, match="strategy='tests_left_to_right' has no blocks.*block_length"):
        llada64.generate(ids, strategy=left_to_right, gen_length=12, steps=12, cache_implementation="dual")


def test_its_declarations_reach_the_package(left_to_right):
    assert parse_strategy(left_to_right) == (left_to_right, None)
    assert parse_strategy(f"{left_to_right}:nap") == (left_to_right, "nap")
    assert not uses_nap_canvas(left_to_right, None) and uses_nap_canvas(left_to_right, "nap")
    # adaptive steps: plan_generate keeps steps that no block count divides (as generate accepts them)
    plan = plan_generate({"strategy": left_to_right, "gen_length": 12, "block_length": 4, "steps": 5})
    assert plan.steps == 5 and not plan.notes
    assert plan_generate({"strategy": "ar", "gen_length": 12, "block_length": 4, "steps": 5}).steps == 6


def test_it_runs_through_the_evaluation_runner(llada64, left_to_right, llada_dir, tmp_path):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(llada_dir)
    examples = [Example(f"toy-{i}", f"What is {i} + {i}?", str(2 * i)) for i in range(3)]
    names = [left_to_right, "ar", f"{left_to_right}:nap", "ar:nap"]
    # steps above the slot count: `ar` then commits one position per step, as the test strategy does
    summary = run_eval(
        llada64, tok, "gsm8k", names, [512], 2, out_dir=tmp_path, examples=examples, path_length=6,
        summary_length=4, block_length=8, batch_size=2, progress=False,
    )  # fmt: skip
    runs = summary["runs"]
    for canvas, suffix in ((None, ""), ("nap", "__m2")):
        ours = runs[f"gsm8k__{left_to_right}{'-nap' if canvas else ''}__steps512{suffix}"]
        ar = runs[f"gsm8k__ar{'-nap' if canvas else ''}__steps512{suffix}"]
        assert ours["canvas"] == ar["canvas"] == canvas and ours["nfe"] == ar["nfe"] > 0
        ours_kw = {k: v for k, v in ours["generate_kwargs"].items() if k not in ("strategy", "steps")}
        assert ours_kw == {k: v for k, v in ar["generate_kwargs"].items() if k not in ("strategy", "steps")}
        keep = [k for k in RESULT_FIELDS if k != "seconds"]
        got, ref = (read_records(tmp_path / r["records"]) for r in (ours, ar))
        assert [{k: r[k] for k in keep} for r in got] == [{k: r[k] for k in keep} for r in ref]
    assert left_to_right in STRATEGIES


def test_the_registry_is_restored():
    assert LeftToRight.name not in STRATEGIES


# ------------------------------------------------------------------------ declarations and validation


def test_the_built_in_strategies_declare_their_canvas_blocks_and_randomness():
    from types import SimpleNamespace

    from nap_hf.generation.config import DIFFUSION_FIELDS

    def config(**kw):
        return SimpleNamespace(**{**DIFFUSION_FIELDS, **kw})

    canvas = {name: cls.canvas for name, cls in STRATEGIES.items()}
    assert canvas["parallel_forced"] == "nap" and canvas["dream"] == "plain" and canvas["confidence"] == "any"
    assert [n for n, c in sorted(STRATEGIES.items()) if not c.takes_block_length(None)] == ["dream"]
    assert [n for n, c in sorted(STRATEGIES.items()) if c.takes_block_length("nap")] == ["parallel_forced"]
    assert [n for n, c in sorted(STRATEGIES.items()) if not c.fixed_steps] == ["factor", "threshold"]
    stochastic = {n for n, c in STRATEGIES.items() if c.is_stochastic(config(strategy=n))}
    assert stochastic == {"random"}
    assert all(c.is_stochastic(config(temperature=0.5)) for c in STRATEGIES.values())
    dream = STRATEGIES["dream"]
    assert dream.is_stochastic(config(alg="origin")) and dream.is_stochastic(config(alg_temp=0.3))


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(steps=0), "steps must be a positive integer"),
        (dict(block_length=0), "block_length must be a positive integer or None"),
        (dict(canvas="grid"), "canvas='grid' is unknown"),
        (dict(strategy="nope"), "strategy='nope' is unknown"),
        (dict(strategy="threshold", threshold=1.5), "threshold must be in \\(0, 1\\]"),
        (dict(strategy="factor", factor=0), "factor must be a number > 0"),
        (dict(strategy="dream", alg="greedy"), "alg='greedy' is unknown"),
        (dict(strategy="dream", canvas="nap"), "runs on the plain canvas only"),
        (dict(strategy="confidence", canvas="nap", block_length=4), "decodes the slots as one region"),
        (dict(strategy="parallel_forced", steps=1), "steps must be >= 2 with summary='after'"),
        (dict(score="best"), "score='best' is unknown"),
    ],
)
def test_validate_checks_the_fields_then_the_strategy(kwargs, match, tmp_path):
    from nap_hf.generation.config import DiffusionGenerationConfig

    config = DiffusionGenerationConfig(**kwargs)  # building a config checks nothing of ours (as transformers)
    with pytest.raises(ValueError, match=match):
        config.validate()
    with pytest.raises(ValueError, match=match):
        config.save_pretrained(tmp_path)  # a bad config is not saved


def test_a_strategy_checks_only_its_own_settings():
    from nap_hf.generation.config import DiffusionGenerationConfig

    DiffusionGenerationConfig(strategy="confidence", threshold=1.5, alg="greedy").validate()
    with pytest.raises(ValueError, match="threshold must be"):
        STRATEGIES["threshold"](DiffusionGenerationConfig(threshold=1.5))


def test_the_score_registry():
    from nap_hf.generation.mixin import candidates_and_scores
    from nap_hf.generation.scores import SCORES, register_score

    assert set(SCORES) >= {"confidence", "margin", "entropy", "dream_entropy"}
    logits = torch.tensor([[2.0, 1.0, 0.0], [0.0, 0.0, 3.0]], dtype=torch.float64)
    p = logits.softmax(-1)
    _, got = candidates_and_scores(logits, temperature=0.0, score_kind="dream_entropy")
    assert torch.allclose(got, (p * torch.log(p + 1e-10)).sum(-1))

    @register_score("tests_second_best")
    def second_best(logits, lse, x0):
        return (logits.topk(2, dim=-1).values[:, 1:] - lse).exp().squeeze(-1)

    try:
        _, got = candidates_and_scores(logits, temperature=0.0, score_kind="tests_second_best")
        assert torch.allclose(got, p.sort(-1, descending=True).values[:, 1])
    finally:
        SCORES.pop("tests_second_best")
    with pytest.raises(ValueError, match="score='tests_second_best' is unknown"):
        candidates_and_scores(logits, temperature=0.0, score_kind="tests_second_best")
