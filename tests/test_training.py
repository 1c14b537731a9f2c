"""DiffusionSFTTrainer: the objective against a plain slow computation, masking rules, split invariance,
learning on a tiny model (full and LoRA), resume, and bad input."""

from __future__ import annotations

import math

import pytest
import torch
from datasets import Dataset
from transformers import AutoTokenizer

from nap_hf import DiffusionSFTConfig, DiffusionSFTTrainer, LLaDAModelLM
from nap_hf.data import render_instance
from nap_hf.training.noise import (
    SEG_HEADER,
    SEG_PROMPT,
    SEG_RESPONSE,
    SEG_SUMMARY,
    SEG_THINK,
    cart_weights,
    diffusion_loss_terms,
    position_weights,
    row_seeds,
    sample_noise,
)

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning", "ignore::UserWarning")


def _args(tmp_path, **kw):
    base = dict(
        output_dir=str(tmp_path / "out"),
        report_to="none",
        gradient_checkpointing=False,
        save_strategy="no",
        per_device_train_batch_size=4,
        learning_rate=3e-3,
        lr_scheduler_type="constant",
        logging_steps=1,
        disable_tqdm=True,
        seed=0,
    )
    base.update(kw)
    return DiffusionSFTConfig(**base)


def _data(n=16, equal=True):
    # equal-length rows (two-digit numbers), so no row gets more padding in one split than another
    rows = [{"prompt": f"{a} plus {a} is", "completion": f" {2 * a:03d}"} for a in range(10, 10 + n)]
    return Dataset.from_list(rows)


@pytest.fixture()
def tok(llada_dir):
    return AutoTokenizer.from_pretrained(llada_dir)


def _model(llada_dir, dtype=torch.float64):
    torch.manual_seed(0)
    return LLaDAModelLM.from_pretrained(llada_dir, dtype=dtype)


# ----------------------------------------------------------------------------- objective


def _slow_loss(model, ids, segments, noisy, masked, p_pos, t, weight, normalization):
    """The objective written out position by position."""
    logits = model(noisy).logits
    B, L = ids.shape
    total = 0.0
    for b in range(B):
        row = 0.0
        for i in range(L):
            if not masked[b, i]:
                continue
            nll = -torch.log_softmax(logits[b, i], -1)[ids[b, i]]
            if weight == "elbo":
                w = 1 / p_pos[b, i]
            elif weight == "one_minus_t":
                w = 1 - t[b]
            elif weight == "uniform":
                w = 1.0
            else:
                w = sum(0.5 * 0.1 * 0.9 ** (abs(i - j) - 1) for j in range(L) if j != i and not masked[b, j])
            row = row + nll * w
        if normalization == "answer_length":
            row = row / (segments[b] != SEG_PROMPT).sum()
        total = total + row
    return total


@pytest.mark.parametrize("weight", ["elbo", "one_minus_t", "cart", "uniform"])
@pytest.mark.parametrize("normalization", ["answer_length", "masked_tokens"])
def test_loss_terms_equal_a_plain_slow_computation(llada64, weight, normalization):
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(3, 200, (3, 12), generator=g)
    segments = torch.full((3, 12), SEG_RESPONSE, dtype=torch.int8)
    segments[:, :4] = SEG_PROMPT
    noised = sample_noise(ids, segments, llada64.config.mask_token_id, generator=g)
    w = position_weights(weight, noised)
    with torch.no_grad():
        logits = llada64(noised.noisy_input_ids, prediction_mask=noised.masked).logits
        got = diffusion_loss_terms(logits, ids, noised, w, segments, normalization=normalization)
        want = _slow_loss(
            llada64,
            ids,
            segments,
            noised.noisy_input_ids,
            noised.masked,
            noised.p_position,
            noised.t,
            weight,
            normalization,
        )
    torch.testing.assert_close(got.double(), torch.as_tensor(want).double(), rtol=1e-5, atol=1e-6)


def test_prompt_and_headers_are_never_masked_and_eps_floor():
    ids = torch.arange(40).repeat(64, 1) + 3
    seg = torch.full((64, 40), SEG_RESPONSE, dtype=torch.int8)
    seg[:, :10] = SEG_PROMPT
    seg[:, 20:25] = SEG_HEADER
    for structured in (False, True):
        s2 = seg.clone()
        if structured:
            s2[:, 10:20] = SEG_THINK
            s2[:, 25:] = SEG_SUMMARY
        n = sample_noise(ids, s2, 999, structured=structured, generator=torch.Generator().manual_seed(0))
        assert not n.masked[:, :10].any() and not n.masked[:, 20:25].any()
        assert (n.noisy_input_ids[n.masked] == 999).all() and torch.equal(
            n.noisy_input_ids[~n.masked], ids[~n.masked]
        )
        assert (n.p_position[s2 != SEG_PROMPT][(s2 != SEG_HEADER)[s2 != SEG_PROMPT]] >= 1e-3).all()


def test_structured_masking_schedule():
    B, L = 2000, 20
    ids = torch.full((B, L), 5)
    seg = torch.full((B, L), SEG_THINK, dtype=torch.int8)
    seg[:, 10:] = SEG_SUMMARY
    n = sample_noise(ids, seg, 9, structured=True, generator=torch.Generator().manual_seed(0))
    t = n.t
    # paths with r = 0.9 t; the summary fully masked when 1 - t < 0.8
    torch.testing.assert_close(n.p_position[:, 0], (0.9 * t).clamp(min=1e-3))
    full = 1 - t < 0.8
    assert n.masked[full][:, 10:].all()
    ramp = n.p_position[~full][:, 10:]
    assert (ramp[:, 1:] >= ramp[:, :-1]).all()  # z ramps up over the summary
    torch.testing.assert_close(ramp[:, -1], (2 * 0.9 * t[~full]).clamp(min=1e-3, max=1.0))


def test_row_with_nothing_masked_gives_zero_not_nan(llada64):
    ids = torch.randint(3, 200, (2, 6))
    seg = torch.full((2, 6), SEG_PROMPT, dtype=torch.int8)  # nothing noisable
    n = sample_noise(ids, seg, llada64.config.mask_token_id)
    logits = llada64(n.noisy_input_ids, prediction_mask=n.masked).logits
    loss = diffusion_loss_terms(logits, ids, n, position_weights("elbo", n), seg)
    assert loss.item() == 0.0 and not math.isnan(loss.item())


def test_row_seeds_ignore_padding_and_depend_on_keys():
    a = torch.tensor([[5, 6, 7, 1, 1], [5, 6, 8, 1, 1]])
    b = torch.tensor([[5, 6, 7, 1, 1, 1, 1]])
    assert row_seeds(a, 1, 0, 3)[0] == row_seeds(b, 1, 0, 3)[0]
    assert row_seeds(a, 1, 0, 3)[0] != row_seeds(a, 1, 0, 4)[0] != row_seeds(a, 1, 0, 3)[1]


def test_cart_weights_match_definition():
    masked = torch.rand(3, 25, generator=torch.Generator().manual_seed(2)) < 0.5
    w = cart_weights(masked, 0.1)
    for b in range(3):
        for i in range(25):
            want = sum(0.5 * 0.1 * 0.9 ** (abs(i - j) - 1) for j in range(25) if j != i and not masked[b, j])
            assert abs(w[b, i].item() - (want if masked[b, i] else 0.0)) < 1e-6


# ----------------------------------------------------------------------------- trainer


def _train(llada_dir, tok, tmp_path, data, **kw):
    trainer = DiffusionSFTTrainer(
        _model(llada_dir), args=_args(tmp_path, **kw), train_dataset=data, processing_class=tok
    )
    trainer.train()
    return trainer


def test_loss_per_step_does_not_depend_on_the_split(llada_dir, tok, tmp_path):
    data = _data(8)
    runs = {}
    for bs, ga in [(4, 1), (2, 2), (1, 4)]:
        for norm in ("answer_length", "masked_tokens"):
            tr = _train(
                llada_dir,
                tok,
                tmp_path / f"{bs}{ga}{norm}",
                data,
                per_device_train_batch_size=bs,
                gradient_accumulation_steps=ga,
                max_steps=2,
                loss_normalization=norm,
                shuffle_dataset=False,
                dataloader_drop_last=True,
                learning_rate=1e-2,
            )
            losses = [h["loss"] for h in tr.state.log_history if "loss" in h]
            params = torch.cat([p.detach().flatten() for p in tr.model.parameters()])
            runs[(bs, ga, norm)] = (losses, params)
    for norm in ("answer_length", "masked_tokens"):
        ref_losses, ref_params = runs[(4, 1, norm)]
        for split in [(2, 2), (1, 4)]:
            losses, params = runs[(*split, norm)]
            assert losses == pytest.approx(ref_losses, rel=1e-6), (split, norm)
            torch.testing.assert_close(params, ref_params, rtol=1e-6, atol=1e-8)


def test_bad_input(llada_dir, tok, tmp_path):
    with pytest.raises(ValueError, match="no usable columns.*Accepted formats"):
        DiffusionSFTTrainer(
            _model(llada_dir),
            args=_args(tmp_path),
            processing_class=tok,
            train_dataset=Dataset.from_list([{"question": "a", "answer": "b"}]),
        )
    model = _model(llada_dir)
    model.config.mask_token_id = None
    tok2 = AutoTokenizer.from_pretrained(llada_dir)
    tok2.mask_token = None
    with pytest.raises(ValueError, match="no mask token"):
        DiffusionSFTTrainer(model, args=_args(tmp_path), processing_class=tok2, train_dataset=_data(4))
    long = Dataset.from_list(
        [
            {"prompt": "a b c", "completion": " word" * 50},
            {"prompt": "x " * 60, "completion": "y"},
            {"prompt": "ok", "completion": " fine"},
        ]
    )
    tr = DiffusionSFTTrainer(
        _model(llada_dir), args=_args(tmp_path, max_length=20), processing_class=tok, train_dataset=long
    )
    assert tr.dataset_stats["train"] == {"truncated": 1, "longer_than_max_length": 1, "kept": 1}
    assert max(len(r) for r in tr.train_dataset["input_ids"]) <= 20


def test_conversational_data_uses_the_chat_template(llada_dir, tok, tmp_path):
    data = Dataset.from_list(
        [{"messages": [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4"}]}]
    )
    tr = DiffusionSFTTrainer(
        _model(llada_dir), args=_args(tmp_path), processing_class=tok, train_dataset=data
    )
    row = tr.train_dataset[0]
    prompt = tok.apply_chat_template(
        [{"role": "user", "content": "2+2?"}], add_generation_prompt=True, tokenize=False
    )
    n = row["segments"].count(SEG_PROMPT)
    assert tok.decode(row["input_ids"][:n]) == prompt
    assert row["input_ids"][n:] == tok("4", add_special_tokens=False)["input_ids"] + [tok.eos_token_id]


def test_slot_aligned_nap_instances_match_the_canvas(llada_dir, tok, tmp_path):
    paths = ["1 + 1 = 2", "2 - 0 = 2", "1 * 2 = 2"]
    data = Dataset.from_list(
        [
            {"prompt": "q", "completion": render_instance(paths, "\\boxed{2}")},
            {
                "prompt": "q",
                "completion": render_instance(["a" * 200, "b", "c"], "\\boxed{2}"),
            },  # does not fit
            {"prompt": "q", "completion": "plain text, not a NAP instance"},
        ]
    )
    tr = DiffusionSFTTrainer(
        _model(llada_dir),
        args=_args(
            tmp_path, slot_aligned=True, nap_m=3, path_length=16, summary_length=12, structured_masking=True
        ),
        processing_class=tok,
        train_dataset=data,
    )
    assert tr.dataset_stats["train"] == {"kept": 1, "paths_do_not_fit_slots": 1, "not_nap_instance": 1}
    model = tr.model
    prompt = torch.tensor([tok("q")["input_ids"]])
    canvas = model.generate(
        prompt,
        strategy="parallel_forced",
        tokenizer=tok,
        m=3,
        path_length=16,
        summary_length=12,
        steps=4,
        return_dict_in_generate=True,
    )
    row = tr.train_dataset[0]
    # headers at the same positions with the same ids; slot positions where the canvas has slots
    header = torch.tensor(row["segments"]) == SEG_HEADER
    assert len(row["input_ids"]) == canvas.sequences.shape[1]
    assert torch.equal(torch.tensor(row["input_ids"])[header], canvas.sequences[0][header])
    assert (canvas.trace[0][header] == -1).all()


def test_loss_falls_and_greedy_decoding_reproduces_the_data(llada_dir, tok, tmp_path):
    data = _data(6)
    tr = _train(
        llada_dir,
        tok,
        tmp_path,
        data,
        max_steps=300,
        learning_rate=3e-3,
        logging_steps=25,
        per_device_train_batch_size=6,
    )
    losses = [h["loss"] for h in tr.state.log_history if "loss" in h]
    assert losses[-1] < 0.25 * losses[0]
    model = tr.model.eval()
    hits = 0
    for ex in data:
        ids = torch.tensor([tok(ex["prompt"])["input_ids"]])
        target = tok(ex["completion"], add_special_tokens=False)["input_ids"]
        out = model.generate(ids, strategy="confidence", steps=len(target) + 1, gen_length=len(target) + 1)
        hits += out[0, ids.shape[1] : ids.shape[1] + len(target)].tolist() == target
    assert hits >= 5


def test_lora_learns_and_generates_on_peft_and_merged_models(llada_dir, tok, tmp_path):
    from peft import LoraConfig, PeftModel

    data = _data(6)
    # a tiny RANDOM model's frozen head cannot express confident predictions, so the head is trained on purpose
    cfg = LoraConfig(r=16, lora_alpha=32, modules_to_save=["transformer.ff_out"])
    tr = DiffusionSFTTrainer(
        _model(llada_dir, torch.float32),
        args=_args(
            tmp_path, max_steps=300, learning_rate=5e-3, logging_steps=10, per_device_train_batch_size=6
        ),
        train_dataset=data,
        processing_class=tok,
        peft_config=cfg,
    )
    assert isinstance(tr.model, PeftModel)
    adapted = {n.split(".lora_A")[0] for n, _ in tr.model.named_parameters() if "lora_A" in n}
    assert adapted and not any(
        n.endswith("transformer.ff_out") for n in adapted
    )  # the default misses the head
    tr.train()
    losses = [h["loss"] for h in tr.state.log_history if "loss" in h]
    assert sum(losses[-5:]) / 5 < 0.5 * losses[0]  # a real signal, not a flat line
    ids = torch.tensor([tok(data[0]["prompt"])["input_ids"]])
    out = tr.model.generate(ids, strategy="confidence", steps=4, gen_length=4)
    merged = tr.model.merge_and_unload()
    assert isinstance(merged, LLaDAModelLM)
    assert torch.equal(out, merged.generate(ids, strategy="confidence", steps=4, gen_length=4))
    # the saved adapter loads onto the base model
    tr.model.save_pretrained(tmp_path / "adapter")


def test_lora_targets_never_hit_llada_head_by_accident(llada_dir, tok, tmp_path):
    from peft import LoraConfig

    with pytest.raises(ValueError, match="suffix"):
        DiffusionSFTTrainer(
            _model(llada_dir),
            args=_args(tmp_path),
            train_dataset=_data(4),
            processing_class=tok,
            peft_config=LoraConfig(target_modules=["q_proj", "ff_out"]),
        )


def test_resume_from_checkpoint_continues_where_it_stopped(llada_dir, tok, tmp_path):
    data = _data(12)
    kw = dict(
        max_steps=6,
        per_device_train_batch_size=2,
        learning_rate=1e-2,
        lr_scheduler_type="cosine",
        warmup_steps=2,
        save_strategy="steps",
        save_steps=3,
    )
    full = _train(llada_dir, tok, tmp_path / "full", data, **kw)
    ref = torch.cat([p.detach().flatten() for p in full.model.parameters()])
    ref_losses = [h["loss"] for h in full.state.log_history if "loss" in h]
    # the same run again, then a fresh trainer resumes from its step-3 checkpoint
    first = DiffusionSFTTrainer(
        _model(llada_dir), args=_args(tmp_path / "run", **kw), train_dataset=data, processing_class=tok
    )
    first.train()
    resumed = DiffusionSFTTrainer(
        _model(llada_dir), args=_args(tmp_path / "run", **kw), train_dataset=data, processing_class=tok
    )
    resumed.train(resume_from_checkpoint=str(tmp_path / "run" / "out" / "checkpoint-3"))
    got = torch.cat([p.detach().flatten() for p in resumed.model.parameters()])
    torch.testing.assert_close(got, ref, rtol=1e-7, atol=1e-9)
    assert resumed.state.global_step == 6
    got_losses = [h["loss"] for h in resumed.state.log_history if "loss" in h]
    assert got_losses[-3:] == pytest.approx(ref_losses[-3:], rel=1e-7)


def test_eval_loss_is_the_seeded_nll_bound_and_repeatable(llada_dir, tok, tmp_path):
    data = _data(8)
    tr = DiffusionSFTTrainer(
        _model(llada_dir),
        args=_args(tmp_path, max_steps=2, eval_mc_samples=3, gradient_checkpointing=True),
        train_dataset=data,
        eval_dataset=_data(4),
        processing_class=tok,
    )
    first = tr.evaluate()
    second = tr.evaluate()
    assert first["eval_loss"] == second["eval_loss"] and math.isfinite(first["eval_loss"])
    tr.train()  # with gradient checkpointing
    assert tr.evaluate()["eval_loss"] != first["eval_loss"]


def test_training_args_pickle_never_holds_the_hub_token(tmp_path):
    import pickle

    args = _args(tmp_path, hub_token="hf_SECRETTOKEN123")
    blob = pickle.dumps(args)
    assert b"hf_SECRETTOKEN123" not in blob and pickle.loads(blob).hub_token is None
    assert args.hub_token == "hf_SECRETTOKEN123"  # the live object keeps it
