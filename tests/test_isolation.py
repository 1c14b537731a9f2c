"""Path isolation (docs/design.md §10): the one layout function (mask + positions) shared by the trainer and the
decoder, the fast decoder (paths as rows over one exact prompt cache) against the whole canvas under the mask
(float64), the work it really does (a forward hook counts query tokens), errors, and training with isolation."""

from __future__ import annotations

import logging

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from nap_hf.data.format import build_layout
from nap_hf.generation.isolated import path_shares
from nap_hf.isolation import (
    GROUP_PAD,
    GROUP_PROMPT,
    isolated_inputs,
    layout_groups,
    layout_offsets,
    path_header_width,
)
from nap_hf.training.noise import cart_weights, isolated_cart_weights

from .conftest import TrunkCalls, padded_batch, random_prompt

# m = 3 path headers of unequal length (3, 1, 2 tokens) and a 2-token summary header
HEADERS = [[5, 6, 7], [8], [9, 10], [11, 12]]


def layout(m=3, path_length=4, summary_length=3, headers=None):
    return build_layout(
        None, m, path_length, summary_length, header_ids=headers or HEADERS[:m] + [HEADERS[-1]]
    )


# ---------------------------------------------------------------------------------------------- the layout
def test_groups_and_positions_of_a_layout():
    lay = layout()
    H = path_header_width(lay)
    assert H == 3
    groups, offsets = layout_groups(lay), layout_offsets(lay)
    # header 1 (3 ids) + slot 1 (4), header 2 (1) + slot 2, header 3 (2) + slot 3, summary header (2) + slot (3)
    assert groups == [1] * 7 + [2] * 5 + [3] * 6 + [4] * 5
    assert offsets[:7] == [0, 1, 2, 3, 4, 5, 6]
    assert offsets[7:12] == [2, 3, 4, 5, 6]  # a 1-token header ends where every slot starts (H = 3)
    assert offsets[12:18] == [1, 2, 3, 4, 5, 6]
    assert offsets[18:] == [7, 8, 9, 10, 11]  # the summary follows one path's end
    for span in lay.path_spans:  # every path slot at the same positions
        assert offsets[span.start : span.end] == list(range(H, H + lay.path_length))


def test_mask_rules_on_a_left_padded_canvas():
    lay = layout()
    P = 4
    real = torch.ones(2, P + lay.length, dtype=torch.bool)
    real[1, :2] = False  # row 1: two padding columns before a 2-token prompt
    iso = isolated_inputs(lay, real, P, dtype=torch.float64)
    g, vis = iso.groups, iso.visible
    assert g[1, :2].tolist() == [GROUP_PAD, GROUP_PAD] and g[0, :P].tolist() == [GROUP_PROMPT] * P
    assert iso.attention_mask.shape == (2, 1, P + lay.length, P + lay.length)
    assert iso.attention_mask.dtype == torch.float64
    for b in range(2):
        for q in range(real.shape[1]):
            for k in range(real.shape[1]):
                gq, gk = int(g[b, q]), int(g[b, k])
                expect = gk != GROUP_PAD and (gk == GROUP_PROMPT or gk == gq or gq == lay.m + 1)
                assert bool(vis[b, q, k]) == expect, (b, q, k)
    # positions skip left padding: row 1's prompt is at 0, 1 and its paths start 2 positions earlier than row 0's
    assert iso.position_ids[1, 2:P].tolist() == [0, 1]
    assert torch.equal(iso.position_ids[0, P:] - 2, iso.position_ids[1, P:])


def test_training_row_and_decoding_canvas_get_the_same_mask_and_positions():
    """A slot-aligned training row (prompt of its own length, then the layout, then trailing response padding)
    and the decoding canvas (left-padded prompt, then the layout) get identical masks and positions on the
    columns they share: both come from `isolated_inputs`."""
    from nap_hf.training.noise import SEG_HEADER, SEG_PROMPT, SEG_RESPONSE, SEG_SUMMARY, SEG_THINK

    lay = layout()
    prompt = 5
    segs = [SEG_PROMPT] * prompt
    for span in lay.spans:
        segs += [{"header": SEG_HEADER, "path": SEG_THINK, "summary": SEG_SUMMARY}[span.kind]] * len(span)
    segs += [SEG_RESPONSE] * 2  # the collator's EOS padding after a longer row
    segments = torch.tensor([segs])

    class Stub:
        isolation_layout = lay

    from nap_hf.training.trainer import DiffusionSFTTrainer

    train = DiffusionSFTTrainer.isolated_inputs(Stub(), {"segments": segments}, torch.float64)
    pad = 3  # decoding: the same prompt left-padded by 3 columns
    real = torch.ones(1, pad + prompt + lay.length, dtype=torch.bool)
    real[0, :pad] = False
    decode = isolated_inputs(lay, real, pad + prompt, dtype=torch.float64)
    n = prompt + lay.length
    assert torch.equal(train.position_ids[:, :n], decode.position_ids[:, pad:])
    assert torch.equal(train.attention_mask[..., :n, :n], decode.attention_mask[..., pad:, pad:])
    # trailing padding belongs to the summary: it sees everything and continues the summary's positions
    assert train.groups[0, -2:].tolist() == [lay.m + 1] * 2
    last = int(train.position_ids[0, n - 1])
    assert train.position_ids[0, -2:].tolist() == [last + 1, last + 2]


def test_isolated_cart_weights_reduce_to_cart_under_full_attention():
    g = torch.Generator().manual_seed(0)
    masked = torch.rand(3, 40, generator=g) < 0.5
    visible = torch.ones(3, 40, 40, dtype=torch.bool)
    positions = torch.arange(40)[None].expand(3, -1)
    torch.testing.assert_close(isolated_cart_weights(masked, visible, positions), cart_weights(masked))
    # an isolated path does not count the neighbours it cannot see
    lay = layout()
    iso = isolated_inputs(lay, torch.ones(1, 4 + lay.length, dtype=torch.bool), 4)
    slot2 = 4 + lay.path_spans[1].start
    only = torch.ones(1, 4 + lay.length, dtype=torch.bool)
    only[0, slot2] = False  # everything masked except one token of path 2
    w = isolated_cart_weights(only, iso.visible, iso.position_ids)
    assert float(w[0, 4 + lay.path_spans[0].start]) == 0.0  # path 1 cannot see path 2
    assert float(w[0, 4 + lay.summary_span.start]) > 0.0  # the summary can


def test_path_shares_split_contiguously():
    assert path_shares(3, 2) == [[0, 1], [2]]
    assert path_shares(8, 3) == [[0, 1, 2], [3, 4, 5], [6, 7]]
    assert path_shares(2, 1) == [[0, 1]]


# ---------------------------------------------------------------------------------------------- decoding
def padded(model, lengths=(3, 6)):
    """A left-padded batch of random prompts: (ids, attention mask)."""
    return padded_batch(model, lengths)[1:]


PF = dict(strategy="parallel_forced", m=3, path_length=6, summary_length=4, header_ids=HEADERS)


def decode(model, ids, mask, **kwargs):
    return model.generate(ids, attention_mask=mask, return_dict_in_generate=True, **{**PF, **kwargs})


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(steps=11),
        dict(steps=22, block_length=3),
        dict(steps=11, temperature=0.8, seed=3),
        dict(
            strategy="confidence", canvas="nap", steps=11
        ),  # the summary is asked for while paths still change
    ],
    ids=["pf", "pf-blocks", "pf-sampled", "confidence-nap"],
)
def test_isolated_rows_equal_the_whole_canvas_under_the_mask(model64, kwargs):
    ids, mask = padded(model64)
    fast = decode(model64, ids, mask, path_isolation=True, **kwargs)
    slow = decode(model64, ids, mask, path_isolation="masked", **kwargs)
    assert torch.equal(fast.sequences, slow.sequences)
    assert torch.equal(fast.trace, slow.trace)
    assert fast.nfe == slow.nfe
    assert torch.equal(fast.position_ids, slow.position_ids)
    # and isolation changes the result (it is not full attention under another name)
    full = decode(model64, ids, mask, **kwargs)
    assert not torch.equal(full.sequences, fast.sequences)


@pytest.mark.parametrize("mode", ["dual", "prefix"])
def test_a_cache_in_the_path_rows_refreshed_every_step_equals_none(model64, mode):
    """Fast-dLLM's cache inside the path rows: refreshed every step it is exactly no cache; under the default
    refresh it recomputes only the active blocks' columns between refreshes, and still decodes every slot."""
    ids, mask = padded(model64)
    plain = decode(model64, ids, mask, path_isolation=True, steps=22, block_length=3)
    every = decode(
        model64,
        ids,
        mask,
        path_isolation=True,
        steps=22,
        block_length=3,
        cache_implementation=mode,
        cache_refresh=1,
    )
    assert torch.equal(plain.sequences, every.sequences) and torch.equal(plain.trace, every.trace)
    counter = TrunkCalls(model64)
    try:
        cached = decode(
            model64, ids, mask, path_isolation=True, steps=22, block_length=3, cache_implementation=mode
        )
    finally:
        counter.close()
    assert not bool((cached.sequences == model64.config.mask_token_id).any())
    B, P = ids.shape
    path_calls = [c for c in counter.calls[1:] if c[2] is not None and c[2] >= P and c[0] == B * 3]
    R = 3 + 6  # the longest header (3 tokens) + path_length
    assert any(q < R for _, q, _ in path_calls)  # partial passes over the active blocks only
    assert all(q <= R for _, q, _ in path_calls)


def test_an_isolated_path_does_not_depend_on_the_others(model64):
    """Under the mask, path 1's outputs do not change when path 2's tokens do; the summary's do."""
    lay = layout()
    ids, mask = padded(model64, lengths=(5,))
    P = ids.shape[1]
    g = torch.Generator().manual_seed(1)
    body = torch.randint(3, 40, (1, lay.length), generator=g)
    x = torch.cat([ids, body], 1)
    real = torch.ones_like(x, dtype=torch.bool)
    iso = isolated_inputs(lay, real, P, dtype=torch.float64)
    y = x.clone()
    s2 = lay.path_spans[1]
    y[0, P + s2.start : P + s2.end] = torch.randint(3, 40, (len(s2),), generator=g)
    dec = model64.get_decoder()
    a = dec(input_ids=x, attention_mask=iso.attention_mask, position_ids=iso.position_ids).last_hidden_state
    b = dec(input_ids=y, attention_mask=iso.attention_mask, position_ids=iso.position_ids).last_hidden_state
    s1 = lay.spans[0].start, lay.path_spans[0].end
    torch.testing.assert_close(a[0, P + s1[0] : P + s1[1]], b[0, P + s1[0] : P + s1[1]], rtol=0, atol=1e-12)
    torch.testing.assert_close(a[0, :P], b[0, :P], rtol=0, atol=1e-12)
    summ = lay.summary_span
    assert (a[0, P + summ.start : P + summ.end] - b[0, P + summ.start : P + summ.end]).abs().max() > 1e-6


@pytest.mark.parametrize("lengths", [(3, 6), (6,)])
def test_forward_hook_sees_only_path_rows_after_the_prompt_pass(model64, lengths):
    """The work really shrank: one prompt pass of B x P tokens; every path step at most B x m x (H + path_length)
    query tokens, none of them prompt tokens; summary steps over the summary columns only."""
    ids, mask = padded(model64, lengths)
    B, P = ids.shape
    lay = layout(path_length=PF["path_length"], summary_length=PF["summary_length"])
    H = path_header_width(lay)
    counter = TrunkCalls(model64)
    try:
        out = decode(model64, ids, mask, path_isolation=True, steps=11)
    finally:
        counter.close()
    first, rest = counter.calls[0], counter.calls[1:]
    assert first == (B, P, None)  # the prompt alone, once
    summary_cols = lay.length - lay.header_spans[-1].start
    path_calls = [c for c in rest if c[2] == P and c[0] == B * lay.m]
    summary_calls = [c for c in rest if c[2] == P + lay.header_spans[-1].start]
    assert len(path_calls) + len(summary_calls) == len(rest)  # nothing else ran
    for batch, q, start in path_calls:
        assert batch * q <= B * lay.m * (H + lay.path_length) and start >= P  # no prompt token again
    for batch, q, _ in summary_calls:
        assert (batch, q) == (B, summary_cols)
    # one path pass per path step, one extra path pass for the finished paths' keys, one pass per summary step
    path_steps = int(out.trace[:, P + lay.path_spans[0].start : P + lay.header_spans[-1].start].max()) + 1
    assert len(path_calls) == path_steps + 1
    assert len(summary_calls) == out.nfe - path_steps


def test_isolation_errors_name_the_fix(llada64):
    ids = random_prompt(llada64, 4)
    with pytest.raises(ValueError, match="summary='after'"):
        decode(llada64, ids, None, path_isolation=True, summary="concurrent", steps=11)
    with pytest.raises(ValueError, match="structured canvas"):
        llada64.generate(ids, strategy="confidence", steps=4, gen_length=8, path_isolation=True)
    with pytest.raises(ValueError, match="cfg_scale"):
        decode(llada64, ids, None, path_isolation=True, cfg_scale=1.0, steps=11)
    with pytest.raises(ValueError, match="cache_implementation=None"):
        decode(
            llada64, ids, None, path_isolation="masked", cache_implementation="dual", block_length=3, steps=22
        )
    with pytest.raises(ValueError, match="block_length"):
        decode(llada64, ids, None, path_isolation=True, cache_implementation="dual", steps=22)
    with pytest.raises(ValueError, match="path_isolation=.*unknown"):
        decode(llada64, ids, None, path_isolation="rows", steps=11)
    with pytest.raises(ValueError, match="torch.distributed"):
        decode(llada64, ids, None, path_isolation=True, distribute_paths=True, steps=11)
    with pytest.raises(ValueError, match="needs path_isolation=True"):
        decode(llada64, ids, None, distribute_paths=True, steps=11)
    infill = ids.clone()
    infill[0, 1] = llada64.config.mask_token_id
    with pytest.raises(ValueError, match="mask tokens"):
        decode(llada64, infill, None, path_isolation=True, steps=11)


def test_a_model_trained_without_isolation_gets_a_warning(llada64, caplog):
    from transformers.utils import logging as hf_logging

    from nap_hf.generation import isolated

    isolated.logger.warning_once.cache_clear()  # an lru_cache: an earlier test may have warned already
    hf_logging.enable_propagation()
    try:
        ids = random_prompt(llada64, 4)
        with caplog.at_level(logging.WARNING):
            decode(llada64, ids, None, path_isolation=True, steps=11)
        assert "96% to 0%" in caplog.text and "path_isolation=True" in caplog.text
        caplog.clear()
        llada64.config.path_isolation = True
        try:
            with caplog.at_level(logging.WARNING):
                decode(llada64, ids, None, path_isolation=True, steps=11)
            assert "96% to 0%" not in caplog.text
        finally:
            del llada64.config.path_isolation
    finally:
        hf_logging.disable_propagation()


@settings(max_examples=12, deadline=None)
@given(
    lengths=st.lists(st.integers(1, 6), min_size=1, max_size=3),
    m=st.integers(1, 4),
    path_length=st.integers(2, 6),
    steps_per_token=st.sampled_from([1, 2]),
)
def test_isolated_decoding_invariants(llada64, lengths, m, path_length, steps_per_token):
    """Headers and prompt untouched, every slot committed exactly once, the path budget per step respected, and
    the result equal to the masked reference, for any prompt lengths, m and slot size."""
    ids, mask = padded(llada64, tuple(lengths))
    headers = [[5 + j] * (1 + j % 2) for j in range(m)] + [[11, 12]]
    slots = m * path_length + 3
    kwargs = dict(
        strategy="parallel_forced",
        m=m,
        path_length=path_length,
        summary_length=3,
        header_ids=headers,
        steps=max(2, slots // steps_per_token),
    )
    fast = llada64.generate(
        ids, attention_mask=mask, return_dict_in_generate=True, path_isolation=True, **kwargs
    )
    slow = llada64.generate(
        ids, attention_mask=mask, return_dict_in_generate=True, path_isolation="masked", **kwargs
    )
    assert torch.equal(fast.sequences, slow.sequences) and torch.equal(fast.trace, slow.trace)
    P = ids.shape[1]
    assert torch.equal(fast.sequences[:, :P], ids)
    lay = build_layout(None, m, path_length, 3, header_ids=headers)
    template = torch.tensor(lay.template(llada64.config.mask_token_id))
    slot = torch.tensor(lay.slot_mask())
    assert torch.equal(fast.sequences[:, P:][:, ~slot], template[~slot].expand(len(lengths), -1))
    assert bool((fast.trace[:, P:][:, slot] >= 0).all()) and bool((fast.trace[:, P:][:, ~slot] == -1).all())
    assert not bool((fast.sequences == llada64.config.mask_token_id).any())


# ---------------------------------------------------------------------------------------------- training
def _nap_rows(n=8):
    from nap_hf.data.format import render_instance

    rows = []
    for a in range(n):
        paths = [f"{a} + 1 = {a + 1}", f"1 + {a} = {a + 1}", f"{a + 1} - 0 = {a + 1}"]
        rows.append({"prompt": f"{a} plus 1 is", "completion": render_instance(paths, f"\\boxed{{{a + 1}}}")})
    return rows


@pytest.mark.parametrize("arch", ["llada", "dream"])
def test_isolated_training_loss_is_the_decoder_layout(arch, llada_dir, dream_dir, tmp_path):
    """The trainer's loss under `path_isolation=True` is the masked-diffusion loss of the model run with the mask
    and positions the DECODER builds for the same canvas (`isolated_canvas_inputs`), and differs from full
    attention."""
    from datasets import Dataset
    from transformers import AutoTokenizer

    from nap_hf import DiffusionSFTConfig, DiffusionSFTTrainer, DreamModel, LLaDAModelLM
    from nap_hf.alignment import align_predictions
    from nap_hf.generation.canvas import Canvas
    from nap_hf.generation.isolated import isolated_canvas_inputs

    path = llada_dir if arch == "llada" else dream_dir
    cls = LLaDAModelLM if arch == "llada" else DreamModel
    tok = AutoTokenizer.from_pretrained(path)
    shape = dict(slot_aligned=True, nap_m=3, path_length=16, summary_length=12)

    def trainer(isolation):
        args = DiffusionSFTConfig(
            output_dir=str(tmp_path / f"out-{isolation}"),
            report_to="none",
            save_strategy="no",
            per_device_train_batch_size=4,
            disable_tqdm=True,
            path_isolation=isolation,
            use_cpu=True,
            bf16=False,
            **shape,
        )
        model = cls.from_pretrained(path, dtype=torch.float64)
        return DiffusionSFTTrainer(
            model, args=args, train_dataset=Dataset.from_list(_nap_rows(4)), processing_class=tok
        )

    tr = trainer(True)
    batch = tr.data_collator([tr.train_dataset[i] for i in range(4)])
    noised = tr._noise(batch, 0)
    loss = tr.compute_loss(tr.model, dict(batch, _noised=noised))
    # the decoder's layout for each row (prompts of different lengths: one row at a time, no padding)
    total = 0.0
    lay = tr.isolation_layout
    for b in range(4):
        n_prompt = int((batch["segments"][b] == 0).sum())
        n = n_prompt + lay.length
        ids = batch["input_ids"][b : b + 1, :n]
        canvas = Canvas(ids, torch.zeros_like(ids, dtype=torch.bool), n_prompt, [], lay)
        iso = isolated_canvas_inputs(canvas, None, torch.float64)
        noisy = noised.noisy_input_ids[b : b + 1]
        # trailing EOS padding (after the summary) continues the summary: extend with the trainer's own row
        full = tr.isolated_inputs({"segments": batch["segments"][b : b + 1]}, torch.float64)
        assert torch.equal(full.position_ids[:, :n], iso.position_ids)
        assert torch.equal(full.attention_mask[..., :n, :n], iso.attention_mask)
        logits = tr.model(noisy, attention_mask=full.attention_mask, position_ids=full.position_ids).logits
        logits = align_predictions(logits, tr.shift_logits)[0]
        m = noised.masked[b]
        nll = torch.nn.functional.cross_entropy(logits[m], batch["input_ids"][b][m], reduction="none")
        w = 1.0 / noised.p_position[b][m].clamp(min=1e-3)
        total = total + (nll * w).sum() / (batch["segments"][b] != 0).sum()
    torch.testing.assert_close(loss.double(), (total / 4).double(), rtol=1e-6, atol=1e-7)  # float32 weights
    full_attention = trainer(False)
    assert (
        abs(
            float(full_attention.compute_loss(full_attention.model, dict(batch, _noised=noised)).detach())
            - float(loss)
        )
        > 1e-6
    )


def test_isolated_training_saves_the_flag_and_decodes_without_a_warning(llada_dir, tmp_path, caplog):
    from datasets import Dataset
    from transformers import AutoTokenizer
    from transformers.utils import logging as hf_logging

    from nap_hf import DiffusionSFTConfig, DiffusionSFTTrainer, LLaDAModelLM

    with pytest.raises(ValueError, match="slot_aligned=True"):
        DiffusionSFTConfig(output_dir=str(tmp_path / "x"), path_isolation=True, report_to="none")
    tok = AutoTokenizer.from_pretrained(llada_dir)
    args = DiffusionSFTConfig(
        output_dir=str(tmp_path / "out"),
        report_to="none",
        save_strategy="no",
        per_device_train_batch_size=4,
        max_steps=3,
        disable_tqdm=True,
        path_isolation=True,
        slot_aligned=True,
        nap_m=3,
        path_length=16,
        summary_length=12,
        use_cpu=True,
    )
    tr = DiffusionSFTTrainer(
        LLaDAModelLM.from_pretrained(llada_dir),
        args=args,
        train_dataset=Dataset.from_list(_nap_rows()),
        processing_class=tok,
    )
    tr.train()
    tr.save_model()
    loaded = LLaDAModelLM.from_pretrained(tmp_path / "out")
    assert loaded.config.path_isolation is True
    hf_logging.enable_propagation()
    try:
        with caplog.at_level(logging.WARNING):
            out = loaded.generate(
                torch.tensor([tok("3 plus 1 is")["input_ids"]]),
                tokenizer=tok,
                strategy="parallel_forced",
                m=3,
                path_length=16,
                summary_length=12,
                steps=30,
                path_isolation=True,
                return_dict_in_generate=True,
            )
        assert "was not trained with path isolation" not in caplog.text
    finally:
        hf_logging.disable_propagation()
    assert len(out.paths[0]) == 3


# ---------------------------------------------------------------------------------------------- distributed paths
@pytest.mark.parametrize("nproc,m", [(2, 3), (3, 4)])
def test_distributed_paths_equal_one_process(llada_dir, tmp_path, nproc, m):
    """torchrun with 2 and 3 CPU processes (gloo): every rank returns exactly the single-process result (tokens,
    trace, NFE), and each rank ran the trunk on its own share of the paths only during the path phase."""
    import json
    import os
    import sys

    from .scripts import ROOT, run_script

    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    script = str(ROOT / "tests" / "distributed_paths.py")
    run_script(
        [sys.executable, script, str(llada_dir), str(tmp_path / "single"), "--paths", str(m)],
        env,
        timeout=120,
    )
    launcher = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc)]
    launcher += ["--master_port", str(29540 + nproc)]
    run_script(
        [*launcher, script, str(llada_dir), str(tmp_path / "multi"), "--paths", str(m)], env, timeout=240
    )
    single = json.loads((tmp_path / "single" / "rank0.json").read_text())
    shares = path_shares(m, nproc)
    R = 2 + 6  # the longest header (2 tokens) + path_length
    B = 2
    path_steps = None
    for rank in range(nproc):
        got = json.loads((tmp_path / "multi" / f"rank{rank}.json").read_text())
        assert got["sequences"] == single["sequences"] and got["trace"] == single["trace"]
        assert got["nfe"] == single["nfe"]
        c = got["counters"]
        assert c["local_paths"] == shares[rank]
        # path steps over this rank's paths only, then ONE pass over all m paths for the summary's keys
        steps = (c["path_tokens"] - B * m * R) // (B * len(shares[rank]) * R)
        assert c["path_tokens"] == steps * B * len(shares[rank]) * R + B * m * R
        assert path_steps in (None, steps)
        path_steps = steps
    assert (
        single["counters"]["path_passes"] == path_steps + 1
    )  # one process: the same steps, then the same pass
