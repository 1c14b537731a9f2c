"""The measuring code of `benchmarks/decode_isolation.py` on a tiny float64 model: the work it reports per step is
the work the decoder really did (full canvas vs isolated rows), its step phases are right, and the isolated run
it times decodes the masked reference's tokens."""

from __future__ import annotations

import pytest

from nap_hf.generation.strategies.parallel_forced import split_steps
from tests.conftest import random_prompt
from tests.scripts import script_module


@pytest.fixture(scope="module")
def bench():
    return script_module("benchmarks/decode_isolation.py")


def test_isolation_benchmark_counts_the_work(bench, llada64, monkeypatch):
    monkeypatch.setattr(llada64.config, "path_isolation", True, raising=False)
    m, path_length, P, steps = 3, bench.BLOCK, 8, 12
    prompt = random_prompt(llada64, P, seed=3)
    facts = bench.canvas_facts(m, path_length, P)
    R = 2 + path_length  # header + path: one isolated row
    assert facts["keys_isolated"] == P + R and facts["canvas"] == P + m * R + 1 + bench.SUMMARY
    runs = {
        mode: bench.one_run(llada64, prompt, bench.generate_kwargs(mode, m, path_length, steps), facts)
        for mode in ("full", "masked", "isolated", "isolated+dual")
    }
    for mode in ("full", "masked"):
        assert runs[mode]["trunk_tokens"] == runs[mode]["nfe"] * facts["canvas"] == steps * facts["canvas"]
    iso = runs["isolated"]
    assert iso["sequences"] == runs["masked"]["sequences"]
    assert iso["trunk_tokens_step0"] == P + m * R  # the prompt's one pass, then the first path step
    assert iso["path_step_tokens"] == m * R
    assert iso["summary_step_tokens"] == facts["summary_columns"]  # median: only the first adds the paths
    # in all: the prompt once, m rows per path step, the rows once more for the summary's keys, the summary columns
    s_path, s_sum = split_steps(steps, m * path_length, bench.SUMMARY, "after")
    assert iso["steps_run"] == s_path + s_sum == steps
    assert iso["trunk_tokens"] == P + (s_path + 1) * m * R + s_sum * facts["summary_columns"]
    assert (
        iso["summary_steps"] == s_sum
        and iso["summary_phase_tokens"] == m * R + s_sum * facts["summary_columns"]
    )
    assert (
        len(iso["step_ms"]) == len(iso["step_tokens"]) == steps
        and sum(iso["step_tokens"]) == iso["trunk_tokens"]
    )
    assert runs["isolated+dual"]["trunk_tokens"] < iso["trunk_tokens"] < runs["full"]["trunk_tokens"]
    stopped = bench.one_run(
        llada64, prompt, bench.generate_kwargs("isolated", m, path_length, steps), facts, stop_after=4
    )
    assert stopped["steps_run"] == 4 and "sequences" not in stopped and stopped["summary_step_ms"] is None
