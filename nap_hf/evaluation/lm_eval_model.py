"""lm-evaluation-harness model ``nap_hf``: any LLaDA / Dream checkpoint with any decoding strategy of
``nap_hf`` (``generate_until``), and a Monte-Carlo estimate of the masked-diffusion likelihood bound
(``loglikelihood``, as LLaDA's own harness does) so multiple-choice tasks run too.

lm-eval is an optional dependency (``pip install lm-eval``; heavy: scipy, scikit-learn, sacrebleu...). Its
CLI does not know third-party models, so run it through this module, which registers the model first::

    python -m nap_hf.evaluation.lm_eval_model --model nap_hf \\
        --model_args pretrained=GSAI-ML/LLaDA-8B-Instruct,strategy=confidence,steps=256,gen_length=256,block_length=32 \\
        --tasks gsm8k --batch_size 8

    python -m nap_hf.evaluation.lm_eval_model --model nap_hf \\
        --model_args pretrained=Dream-org/Dream-v0-Base-7B,mc_num=128 --tasks arc_easy,hellaswag

    accelerate launch --num_processes 8 -m nap_hf.evaluation.lm_eval_model --model nap_hf ...  # data parallel

or from Python: ``import nap_hf.evaluation.lm_eval_model`` (registers ``nap_hf``) and
``lm_eval.simple_evaluate(model="nap_hf", model_args=...)``, or pass an ``NapHFLM`` instance.

Model arguments (``--model_args k=v,...``): ``pretrained``, ``dtype`` (bfloat16), ``device``, ``batch_size``,
``trust_remote_code`` (False), every ``generate`` option (``strategy``, ``steps``, ``gen_length``,
``block_length``, ``temperature``, ``canvas``, ``m``, ``path_length``, ``summary_length``, ``threshold``,
``alg``, ``cfg_scale``, ``logits_eos_inf``...), and for the likelihood ``mc_num`` (128 samples),
``mc_batch_size`` (32), ``sampler`` (``"tokens"``, LLaDA's; or ``"time"``), ``check_greedy`` (False), ``seed``.

Notes (decided here): the generated length is the ``gen_length`` model argument (a diffusion canvas has a
fixed size; the task's ``max_gen_toks`` is ignored); the text is cut at the first ``until`` string, except on
the NAP canvas (``canvas=nap`` / ``strategy=parallel_forced``), whose fixed structure would be cut at its
first blank line, so the whole structured text is returned.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F

from nap_hf.alignment import align_predictions, model_shifts_logits

__all__ = ["mc_loglikelihood", "NapHFLM", "LM_EVAL_AVAILABLE", "main"]


# ------------------------------------------------------------------------------------- the MC estimator


def _mask_draws(
    batch: int, target_len: int, sampler: str, generator: torch.Generator | None, device: Any
) -> tuple[torch.Tensor, torch.Tensor]:
    """(is_mask (batch, target_len) bool, weight (batch,)) for one Monte-Carlo batch.

    ``tokens`` (LLaDA's harness): the number of masked tokens l is stratified over the batch, l_b =
    ((k + b * target_len / batch) rounded - 1) mod target_len + 1 with k uniform in 1..target_len, the
    positions uniform among the target; weight target_len / l_b (an unbiased estimate of LLaDA's Eq. 6 bound).
    ``time``: t stratified in (0, 1] (t_b = (u + b) / batch), each target token masked w.p. t_b, weight
    1 / t_b (the continuous-time ELBO)."""
    cpu = torch.device("cpu")
    if sampler == "tokens":
        k = int(torch.randint(1, target_len + 1, (), generator=generator, device=cpu))
        x = torch.round(torch.linspace(float(k), k + (batch - 1) * (target_len / batch), batch)).long()
        x = (x - 1) % target_len + 1
        order = torch.argsort(torch.rand(batch, target_len, generator=generator, device=cpu), dim=1)
        is_mask = order < x[:, None]
        weight = target_len / x.double()
    elif sampler == "time":
        u = float(torch.rand((), generator=generator, device=cpu))
        t = ((u + torch.arange(batch, dtype=torch.float64)) / batch).clamp(min=1e-3)
        is_mask = (
            torch.rand(batch, target_len, generator=generator, device=cpu, dtype=torch.float64) < t[:, None]
        )
        weight = 1.0 / t
    else:
        raise ValueError(f"sampler must be 'tokens' or 'time', got {sampler!r}.")
    return is_mask.to(device), weight.to(device)


@torch.no_grad()
def mc_loglikelihood(
    model: Any,
    prefix: Sequence[int],
    target: Sequence[int],
    *,
    mask_token_id: int | None = None,
    mc_num: int = 128,
    batch_size: int = 32,
    sampler: str = "tokens",
    shift: bool | None = None,
    cfg_scale: float = 0.0,
    generator: torch.Generator | None = None,
) -> float:
    """Monte-Carlo estimate of the masked-diffusion lower bound on ``log p(target | prefix)``.

    Each sample masks part of ``target`` (the prefix is never masked), runs the model once, and scores the
    masked tokens: ``-weight * sum(cross-entropy over masked positions)``; the estimate is the mean over
    ``mc_num`` samples (``batch_size`` per forward pass; ``mc_num`` is rounded up to a multiple of it). See
    :func:`_mask_draws` for the two samplers. A lower bound in expectation (ELBO): compare candidates of the
    same task with it, as LLaDA's and Dream's harnesses do.

    Args:
        model: a masked-diffusion model (LLaDA / Dream): logits per position, Dream's shifted ones aligned.
        prefix / target: token ids (the context and the continuation); ``target`` must not be empty.
        mask_token_id: default ``model.config.mask_token_id``.
        shift: whether the raw logits are shifted (Dream); default: the model's own.
        cfg_scale: LLaDA's classifier-free guidance (unconditional = prefix masked), 0 = off.
        generator: a CPU ``torch.Generator`` for the draws (reproducible estimates).
    """
    prefix, target = [int(i) for i in prefix], [int(i) for i in target]
    if not target:
        raise ValueError("`target` is empty: nothing to score.")
    if mask_token_id is None:
        mask_token_id = getattr(getattr(model, "config", None), "mask_token_id", None)
    if mask_token_id is None:
        raise ValueError("no mask token id: pass `mask_token_id=` or set `model.config.mask_token_id`.")
    if mc_num < 1 or batch_size < 1:
        raise ValueError(f"mc_num and batch_size must be >= 1, got {mc_num}, {batch_size}.")
    if shift is None:
        shift = model_shifts_logits(model)
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    P, T = len(prefix), len(target)
    seq = torch.tensor(prefix + target, dtype=torch.long, device=device)
    n_batches = math.ceil(mc_num / batch_size)
    total = 0.0
    for _ in range(n_batches):
        is_mask, weight = _mask_draws(batch_size, T, sampler, generator, device)
        x = seq.repeat(batch_size, 1)
        rows = torch.zeros_like(x, dtype=torch.bool)
        rows[:, P:] = is_mask
        x = x.masked_fill(rows, mask_token_id)
        logits = _row_logits(model, x, rows, shift)
        if cfg_scale > 0:
            un_x = x.clone()
            un_x[:, :P] = mask_token_id
            uncond = _row_logits(model, un_x, rows, shift)
            logits = uncond + (cfg_scale + 1) * (logits - uncond)
        nll = F.cross_entropy(logits.double(), seq.repeat(batch_size, 1)[rows], reduction="none")
        per_row = torch.zeros(batch_size, dtype=torch.float64, device=device)
        per_row.index_add_(0, rows.nonzero()[:, 0], nll)
        total += float((per_row * weight).sum())
    return -total / (n_batches * batch_size)


def _row_logits(model: Any, x: torch.Tensor, rows: torch.Tensor, shift: bool) -> torch.Tensor:
    """Aligned logits (N, V) of the positions in ``rows``: through the decoding loop's own helper (LM head
    on those rows only) when the model has it, else a full forward."""
    if hasattr(model, "_diffusion_logits"):
        position_ids = torch.arange(x.shape[1], device=x.device).expand_as(x)
        return model._diffusion_logits(x, None, position_ids, rows, shift)
    return align_predictions(model(input_ids=x).logits, shift)[rows]


# ------------------------------------------------------------------------------------- the lm-eval model

try:  # optional dependency
    from lm_eval.api.model import LM as _LM
    from lm_eval.api.registry import register_model as _register_model

    LM_EVAL_AVAILABLE = True
except ImportError:  # pragma: no cover - exercised where lm-eval is missing
    _LM = object
    _register_model = None
    LM_EVAL_AVAILABLE = False

_INSTALL = "lm-evaluation-harness is not installed: pip install lm-eval"

_GENERATE_KEYS = (
    "strategy",
    "steps",
    "gen_length",
    "block_length",
    "temperature",
    "score",
    "threshold",
    "cfg_scale",
    "logits_eos_inf",
    "alg",
    "alg_temp",
    "eps",
    "top_k",
    "top_p",
    "canvas",
    "m",
    "path_length",
    "summary_length",
    "summary",
)


def _as_bool(v: Any) -> bool:
    if isinstance(v, str):
        return v.strip().lower() in ("1", "true", "yes", "y")
    return bool(v)


class NapHFLM(_LM):
    """lm-eval ``LM`` over a ``nap_hf`` model: ``generate_until`` with any strategy, ``loglikelihood`` by
    :func:`mc_loglikelihood`, ``loglikelihood_rolling`` by the same bound over rolling windows."""

    def __init__(
        self,
        pretrained: str | Any = None,
        tokenizer: Any = None,
        dtype: str = "bfloat16",
        device: str | None = None,
        batch_size: int | str = 1,
        trust_remote_code: bool = False,
        revision: str | None = None,
        strategy: str = "confidence",
        steps: int = 256,
        gen_length: int = 256,
        block_length: int | None = None,
        mc_num: int = 128,
        mc_batch_size: int = 32,
        sampler: str = "tokens",
        check_greedy: bool = False,
        max_length: int | None = None,
        seed: int = 0,
        **kwargs: Any,
    ) -> None:
        if not LM_EVAL_AVAILABLE:
            raise ImportError(_INSTALL)
        super().__init__()
        import nap_hf  # noqa: F401  (registers the Auto classes)

        kwargs.pop("max_batch_size", None)
        unknown = sorted(k for k in kwargs if k not in _GENERATE_KEYS)
        if unknown:
            raise ValueError(
                f"nap_hf: unknown model argument(s) {unknown}; generate options: {_GENERATE_KEYS}."
            )
        state = None
        if device is None:
            from accelerate import PartialState

            state = PartialState(cpu=not torch.cuda.is_available())
            device = str(state.device)
            self._rank, self._world_size = state.process_index, state.num_processes
        self._device = torch.device(device)
        if isinstance(pretrained, str):
            from transformers import AutoModel, AutoTokenizer

            torch_dtype = "auto" if dtype == "auto" else getattr(torch, str(dtype))
            trust = _as_bool(trust_remote_code)
            self.model = AutoModel.from_pretrained(
                pretrained, dtype=torch_dtype, revision=revision, trust_remote_code=trust
            )
            self.tokenizer = tokenizer or AutoTokenizer.from_pretrained(
                pretrained, revision=revision, trust_remote_code=trust
            )
            self._name = pretrained
        elif pretrained is not None:
            if tokenizer is None:
                raise ValueError("pass `tokenizer=` with a model object.")
            self.model, self.tokenizer, self._name = pretrained, tokenizer, type(pretrained).__name__
        else:
            raise ValueError("`pretrained` (a path / Hub id, or a model object) is required.")
        self.model = self.model.to(self._device).eval()
        self.batch_size = int(batch_size) if str(batch_size).isdigit() else 1
        block = None if block_length in (None, 0, "0", "None", "none") else int(block_length)
        self.gen_kwargs: dict[str, Any] = {
            "strategy": strategy,
            "steps": int(steps),
            "gen_length": int(gen_length),
            "block_length": block,
            **kwargs,
        }
        self.structured = strategy == "parallel_forced" or kwargs.get("canvas") == "nap"
        self.mc_num, self.mc_batch_size, self.sampler = int(mc_num), int(mc_batch_size), sampler
        self.check_greedy = _as_bool(check_greedy)
        self.seed = int(seed)
        self.max_length = (
            int(max_length)
            if max_length
            else int(
                getattr(self.model.config, "max_position_embeddings", None)
                or getattr(self.model.config, "max_sequence_length", 4096)
            )
        )
        self.mask_token_id = self.model.config.mask_token_id
        pad = self.tokenizer.pad_token_id
        self.pad_id = pad if pad is not None else self.tokenizer.eos_token_id

    # ---------------------------------------------------------------- lm-eval plumbing
    @property
    def tokenizer_name(self) -> str:
        return str(getattr(self.tokenizer, "name_or_path", self._name)).replace("/", "__")

    def apply_chat_template(
        self, chat_history: list[dict[str, str]], add_generation_prompt: bool = True
    ) -> str:
        return self.tokenizer.apply_chat_template(
            chat_history, tokenize=False, add_generation_prompt=add_generation_prompt
        )

    def chat_template(self, chat_template: bool | str = False) -> str | None:
        return getattr(self.tokenizer, "chat_template", None) if chat_template else None

    def all_gather(self, tensor):
        if self.world_size == 1:
            return tensor
        import torch.distributed as dist

        out = [torch.zeros_like(tensor) for _ in range(self.world_size)]
        dist.all_gather(out, tensor.to(self._device))
        return torch.cat(out)

    def gather_object(self, obj, dst=0):
        if self.world_size == 1:
            return [obj]
        import torch.distributed as dist

        out = [None] * self.world_size if self.rank == dst else None
        dist.gather_object(obj, out, dst=dst)
        return out

    def barrier(self) -> None:
        if self.world_size > 1:
            import torch.distributed as dist

            dist.barrier()

    # ---------------------------------------------------------------- tokenization
    def _encode(self, text: str) -> list[int]:
        bos = getattr(self.tokenizer, "bos_token", None)
        add = not (bos and text.startswith(bos))
        return [int(i) for i in self.tokenizer(text, add_special_tokens=add)["input_ids"]]

    def _encode_pair(self, context: str, continuation: str) -> tuple[list[int], list[int]]:
        if not context:
            cont = [int(i) for i in self.tokenizer(continuation, add_special_tokens=False)["input_ids"]]
            start = self.tokenizer.bos_token_id if self.tokenizer.bos_token_id is not None else self.pad_id
            return [start], cont
        n = len(context) - len(context.rstrip())
        if n:
            context, continuation = context[:-n], context[-n:] + continuation
        whole = self._encode(context + continuation)
        ctx = self._encode(context)
        return ctx, whole[len(ctx) :]

    # ---------------------------------------------------------------- requests
    def generate_until(self, requests, disable_tqdm: bool = False) -> list[str]:
        from tqdm.auto import tqdm

        out: list[str] = []
        reqs = [r.args for r in requests]
        bar = tqdm(total=len(reqs), disable=disable_tqdm or self.rank != 0, desc="nap_hf generate_until")
        for start in range(0, len(reqs), self.batch_size):
            chunk = reqs[start : start + self.batch_size]
            rows = [self._encode(ctx) for ctx, _ in chunk]
            width = max(len(r) for r in rows)
            ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
            mask = torch.zeros_like(ids)
            for i, r in enumerate(rows):
                ids[i, width - len(r) :] = torch.tensor(r)
                mask[i, width - len(r) :] = 1
            kw = dict(self.gen_kwargs, seed=self.seed + start)
            if self.structured:
                kw["tokenizer"] = self.tokenizer
            seqs = self.model.generate(ids.to(self._device), attention_mask=mask.to(self._device), **kw)
            for i, (_, gen_kwargs) in enumerate(chunk):
                text = self.tokenizer.decode(seqs[i, width:].tolist(), skip_special_tokens=True)
                until = (gen_kwargs or {}).get("until") or []
                if isinstance(until, str):
                    until = [until]
                if not self.structured:
                    for stop in until:
                        if stop and stop in text:
                            text = text[: text.index(stop)]
                out.append(text)
                self.cache_hook.add_partial("generate_until", chunk[i], text)
            bar.update(len(chunk))
        bar.close()
        return out

    def _score(self, ctx: list[int], cont: list[int], index: int) -> tuple[float, bool]:
        if len(ctx) + len(cont) > self.max_length:
            ctx = ctx[-(self.max_length - len(cont)) :] if len(cont) < self.max_length else ctx[-1:]
            cont = cont[: self.max_length - len(ctx)]
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + index)
        ll = mc_loglikelihood(
            self.model,
            ctx,
            cont,
            mask_token_id=self.mask_token_id,
            mc_num=self.mc_num,
            batch_size=min(self.mc_batch_size, self.mc_num),
            sampler=self.sampler,
            cfg_scale=float(self.gen_kwargs.get("cfg_scale", 0.0) or 0.0),
            generator=g,
        )
        greedy = False
        if self.check_greedy:
            x = torch.tensor([ctx], device=self._device)
            seq = self.model.generate(
                x, strategy="confidence", steps=len(cont), gen_length=len(cont), temperature=0.0
            )
            greedy = seq[0, len(ctx) :].tolist() == cont
        return ll, greedy

    def loglikelihood(self, requests, disable_tqdm: bool = False) -> list[tuple[float, bool]]:
        from tqdm.auto import tqdm

        out = []
        for n, req in enumerate(
            tqdm(requests, disable=disable_tqdm or self.rank != 0, desc="nap_hf loglikelihood")
        ):
            context, continuation = req.args
            ctx, cont = self._encode_pair(context, continuation)
            res = self._score(ctx, cont, n) if cont else (0.0, True)
            out.append(res)
            self.cache_hook.add_partial("loglikelihood", req.args, res)
        return out

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = False) -> list[float]:
        from lm_eval.utils import get_rolling_token_windows, make_disjoint_window

        out = []
        start = self.tokenizer.bos_token_id if self.tokenizer.bos_token_id is not None else self.pad_id
        for n, req in enumerate(requests):
            (text,) = req.args[:1]
            tokens = [int(i) for i in self.tokenizer(text, add_special_tokens=False)["input_ids"]]
            windows = map(
                make_disjoint_window,
                get_rolling_token_windows(
                    tokens, prefix_token=start, max_seq_len=self.max_length, context_len=1
                ),
            )
            total = sum(self._score(ctx, cont, n * 7919 + k)[0] for k, (ctx, cont) in enumerate(windows))
            out.append(total)
            self.cache_hook.add_partial("loglikelihood_rolling", (text,), total)
        return out


if LM_EVAL_AVAILABLE:
    NapHFLM = _register_model("nap_hf")(NapHFLM)


def main(argv: list[str] | None = None) -> None:
    """lm-eval's command line with ``nap_hf`` registered (``--model nap_hf``)."""
    if not LM_EVAL_AVAILABLE:
        raise SystemExit(_INSTALL)
    import sys

    from lm_eval.__main__ import cli_evaluate

    if argv is not None:
        sys.argv = [sys.argv[0], *argv]
    cli_evaluate()


if __name__ == "__main__":
    main()
