"""`generate(streamer=...)`: transformers' `BaseStreamer` protocol (`put`, `end`) with DiffusionGemma's drafts
(`put_draft`): the prompt first, then every generated token exactly once in canvas order as soon as it and
everything before it are final, a draft of the rest after each step, `end` last."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoTokenizer, TextStreamer
from transformers.generation.streamers import BaseStreamer

from .conftest import random_prompt

HEADERS = [[5, 6], [7, 8], [9]]  # m = 2 path headers and the summary header, as token ids


class Recorder(BaseStreamer):
    """Keeps every call: ("put", ids), ("draft", ids), ("end", None)."""

    def __init__(self, drafts: bool = True):
        self.calls: list[tuple[str, torch.Tensor | None]] = []
        if drafts:
            self.put_draft = lambda value: self.calls.append(("draft", value.clone()))

    def put(self, value):
        self.calls.append(("put", value.clone()))

    def end(self):
        self.calls.append(("end", None))


@pytest.mark.parametrize(
    "case",
    [
        dict(strategy="confidence", gen_length=12, steps=6, block_length=4),
        dict(strategy="ar", gen_length=8, steps=8),
        dict(strategy="dream", gen_length=8, steps=4, alg="entropy"),
        dict(strategy="parallel_forced", m=2, path_length=4, summary_length=3, steps=6, header_ids=HEADERS),
    ],
    ids=["confidence", "ar", "dream", "parallel_forced"],
)
def test_streamer_gets_the_prompt_the_final_tokens_in_order_and_drafts(model64, case):
    ids = random_prompt(model64, 4, batch=2, seed=3)
    rec = Recorder()
    out = model64.generate(ids, streamer=rec, return_dict_in_generate=True, **case)
    kinds = [k for k, _ in rec.calls]
    assert kinds[0] == "put" and torch.equal(rec.calls[0][1], ids)  # the prompt first, as transformers does
    assert kinds[-1] == "end" and kinds.count("end") == 1 and kinds.count("draft") == out.nfe
    P, mask = ids.shape[1], model64.config.mask_token_id
    put = [v for k, v in rec.calls[1:] if k == "put"]
    assert torch.equal(torch.cat(put, 1), out.sequences[:, P:])  # each generated token once, in order
    done, step = P, 0
    for kind, value in rec.calls[1:-1]:
        if kind == "put":
            assert not (value == mask).any()  # only final tokens are put
            done += value.shape[1]
            continue
        # a draft: the columns not put yet, with every token committed by this step in place
        assert value.shape == (ids.shape[0], out.sequences.shape[1] - done)
        committed = (out.trace[:, done:] >= 0) & (out.trace[:, done:] <= step)
        assert torch.equal(value[committed], out.sequences[:, done:][committed])
        # final columns are put at once: the first column not put is still open in some row
        if value.shape[1]:
            assert bool((out.trace[:, done] > step).any())
        step += 1


def test_streamer_without_drafts_and_with_a_step_callback(llada64):
    ids = random_prompt(llada64, 4)
    rec, steps = Recorder(drafts=False), []
    out = llada64.generate(ids, streamer=rec, step_callback=lambda s: steps.append(s.step), strategy="ar",
                           gen_length=6, steps=6)  # fmt: skip
    assert steps == list(range(6))
    assert [k for k, _ in rec.calls] == ["put"] * 7 + ["end"]  # ar: one final token per step
    assert torch.equal(torch.cat([v for _, v in rec.calls[1:-1]], 1), out[:, 4:])


def test_text_streamer_prints_the_generated_text(llada64, llada_dir, capsys):
    tok = AutoTokenizer.from_pretrained(llada_dir)
    ids = random_prompt(llada64, 4)
    out = llada64.generate(ids, streamer=TextStreamer(tok, skip_prompt=True), gen_length=8, steps=4)
    assert capsys.readouterr().out == tok.decode(out[0, 4:]) + "\n"


def test_text_diffusion_streamer_prints_drafts(llada64, llada_dir, capsys):
    from transformers import TextDiffusionStreamer

    tok = AutoTokenizer.from_pretrained(llada_dir)
    out = llada64.generate(
        random_prompt(llada64, 4),
        streamer=TextDiffusionStreamer(tok, skip_prompt=True),
        gen_length=8,
        steps=4,
    )
    printed = capsys.readouterr().out
    assert printed.count("\0337") == 4 and printed.endswith("\n")  # one draft per step
    assert tok.decode(out[0, 4:])[-3:] in printed


def test_a_streamer_without_put_is_refused(llada64):
    with pytest.raises(ValueError, match="BaseStreamer protocol"):
        llada64.generate(random_prompt(llada64, 4), streamer=object(), gen_length=4, steps=4)
