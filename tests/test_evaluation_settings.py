"""`nap_hf.evaluation.settings`: the one mapping from evaluation settings to `generate` arguments."""

from __future__ import annotations

import pytest

from nap_hf.evaluation.settings import call_kwargs, plan_generate
from nap_hf.generation.config import DiffusionGenerationConfig


@pytest.fixture(scope="module")
def tok(llada_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(llada_dir)


def test_nap_canvas_clamps_steps_once_with_a_note(tok):
    plan = plan_generate(
        {"strategy": "parallel_forced", "m": 3, "path_length": 20, "summary_length": 12, "steps": 256},
        tokenizer=tok,
    )
    assert plan.structured and plan.slots == 72 and plan.steps == 72 and plan.steps_requested == 256
    assert len(plan.notes) == 1 and "clamped to 72" in plan.notes[0]
    assert plan.canvas_length > plan.slots and len(plan.header_ids) == 4  # 3 path headers + the summary's
    assert plan.kwargs == {
        "strategy": "parallel_forced",
        "m": 3,
        "path_length": 20,
        "summary_length": 12,
        "steps": 72,
    }
    assert plan.call_kwargs(tok, seed=5) == {**plan.kwargs, "tokenizer": tok, "seed": 5}


def test_plain_canvas_rounds_to_blocks(tok):
    plan = plan_generate({"strategy": "confidence", "gen_length": 100, "block_length": 32, "steps": 51})
    assert plan.kwargs["gen_length"] == 128 and plan.slots == plan.canvas_length == 128
    assert plan.steps == 52 and len(plan.notes) == 2  # 4 blocks: 51 -> 52, 13 steps each
    threshold = plan_generate({"strategy": "threshold", "gen_length": 64, "block_length": 32, "steps": 5})
    assert threshold.steps == 5 and not threshold.notes  # threshold spends its steps as it goes
    assert not plan.structured and plan.call_kwargs(tok) == plan.kwargs  # no tokenizer on the plain canvas


def test_defaults_fill_what_the_options_leave(tok):
    """A checkpoint's generation config decides the canvas when the options do not name one."""
    ckpt = DiffusionGenerationConfig(
        strategy="parallel_forced", m=3, path_length=20, summary_length=12, steps=72
    )
    plan = plan_generate({}, tokenizer=tok, defaults=ckpt)
    assert plan.structured and plan.kwargs == {"steps": 72} and plan.tokens_per_step == 1.0
    assert "tokenizer" in plan.call_kwargs(tok)  # known from the plan, though `kwargs` names no strategy
    assert "tokenizer" not in call_kwargs(plan.kwargs, tokenizer=tok)  # without the plan: what kwargs name
    plain = plan_generate({"strategy": "confidence", "gen_length": 64}, defaults=ckpt)
    assert not plain.structured and plain.steps == 72  # the checkpoint's steps, on the options' canvas


def test_tokens_per_step(tok):
    plan = plan_generate(
        {"strategy": "parallel_forced", "m": 2, "path_length": 30, "summary_length": 12}, tokens_per_step=4
    )
    assert plan.steps == 72 // 4 and plan.steps_requested is None
    assert plan_generate({"strategy": "ar", "gen_length": 10}, tokens_per_step=4).steps == 2


def test_bad_settings_name_the_argument():
    with pytest.raises(ValueError, match="unknown generate option.*'stepz'"):
        plan_generate({"stepz": 3})
    with pytest.raises(ValueError, match="either `steps` or `tokens_per_step`"):
        plan_generate({"steps": 3}, tokens_per_step=2)
    with pytest.raises(ValueError, match="`path_length` must be a positive integer"):
        plan_generate({"strategy": "parallel_forced", "path_length": 0})
    with pytest.raises(ValueError, match="`block_length` must be a positive integer"):
        plan_generate({"gen_length": 64, "block_length": -2})
