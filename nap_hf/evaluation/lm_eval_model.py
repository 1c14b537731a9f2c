"""lm-evaluation-harness model ``nap_hf``: any LLaDA / Dream checkpoint with any decoding strategy of
``nap_hf`` (``generate_until``), and a Monte-Carlo estimate of the masked-diffusion likelihood bound
(``loglikelihood``, as LLaDA's own harness does) so multiple-choice tasks run too.

lm-eval is an optional dependency (``pip install nap-hf[harness]``). lm-eval 0.4 has no plugin mechanism for
third-party models (its registry knows only its own), so plain ``lm_eval --model nap_hf`` cannot find this
class. Run lm-eval's own command line through this module instead, which registers ``nap_hf`` first: the
console script ``nap-hf-eval-harness`` or ``python -m nap_hf.evaluation.lm_eval_model`` take exactly
``lm_eval``'s arguments (see ``docs/lm_eval_harness.md``)::

    nap-hf-eval-harness --model nap_hf --model_args pretrained=GSAI-ML/LLaDA-8B-Instruct \\
        --tasks gsm8k --apply_chat_template --batch_size 8

    accelerate launch --num_processes 8 -m nap_hf.evaluation.lm_eval_model --model nap_hf ...  # 8 GPUs
    torchrun --nproc_per_node 2 -m nap_hf.evaluation.lm_eval_model --model nap_hf --device cpu ...  # CPU

From Python: ``import nap_hf.evaluation.lm_eval_model`` (registers ``nap_hf``), then
``lm_eval.simple_evaluate(model="nap_hf", model_args=...)``, or pass an ``NapHFLM`` instance.

Decoding settings, later ones winning (the rule of :meth:`NapHFLM.generate_options`):

1. the checkpoint's ``generation_config.json`` (so a NAP checkpoint decodes parallel-forced with no
   arguments at all);
2. ``--model_args`` (``strategy``, ``steps``, ``gen_length``, ``block_length``, ``temperature``, ``canvas``,
   ``m``, ``path_length``, ``summary_length``, ``threshold``, ``alg``, ``cfg_scale``, ``logits_eos_inf``...:
   every ``generate`` option);
3. the request's ``gen_kwargs`` (the task's ``generation_kwargs`` updated by lm-eval's ``--gen_kwargs``):
   any ``generate`` option, plus lm-eval's ``until`` (stop strings), ``do_sample`` (False: greedy,
   ``temperature=0``) and ``max_gen_toks`` (not used: a diffusion canvas has a fixed size, ``gen_length``
   on the plain canvas, ``m x path_length + summary_length`` on the NAP one).

The canvas rules of :func:`~nap_hf.evaluation.settings.plan_generate` apply once per distinct setting
(``steps`` above the NAP slot count is clamped, with one warning, not one per batch). The text is cut at the
first ``until`` string, except on the NAP canvas, whose fixed structure would be cut at its first blank line,
so the whole structured text is returned.

Other model arguments: ``pretrained``, ``dtype`` (``auto``: float32 on CPU, the checkpoint's dtype or
bfloat16 on an accelerator), ``device``, ``batch_size``, ``trust_remote_code`` (False), ``revision``,
``max_length``, and for the likelihood ``mc_num`` (128 samples), ``mc_batch_size`` (32), ``sampler``
(``"tokens"``, LLaDA's; or ``"time"``), ``check_greedy`` (False), ``seed`` (0).

Devices and processes: under a launcher (``torchrun``, ``accelerate launch``: ``WORLD_SIZE`` > 1) the rank,
the world size and each process's device come from accelerate, whatever ``--device`` says (on CUDA each
process takes its local GPU; ``--device cpu`` runs every process on the CPU with gloo), and lm-eval splits
the requests between the ranks and merges the results. lm-eval's CLI passes ``device="cuda:0"`` when
``--device`` is not given: on a machine without CUDA that one string falls back to the CPU with a warning;
any other device string this machine cannot serve is an error.

Randomness: the likelihood's mask draws are seeded by the request's content (the context's tokens and
``seed``), not by its position, and every continuation of one context gets the SAME draws (common random
numbers), so the noise largely cancels between the choices of a multiple-choice question, and a rank split or
a reordering gives the same numbers. A sampled ``generate_until`` batch is seeded by its prompts' tokens.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F

from nap_hf.alignment import align_predictions, model_shifts_logits
from nap_hf.evaluation.settings import GeneratePlan, plan_generate
from nap_hf.generation.config import DIFFUSION_FIELDS

__all__ = ["mc_loglikelihood", "NapHFLM", "LM_EVAL_AVAILABLE", "main", "register", "resolve_device"]

# lm-eval's CLI shows the records of its own loggers only (the `lm_eval` logger has the handler and the level
# of --verbosity), so this model logs under it.
logger = logging.getLogger("lm_eval.nap_hf")


# ------------------------------------------------------------------------------------- the MC estimator


def _mask_draws(
    batch: int, target_len: int, sampler: str, generator: torch.Generator | None, device: Any
) -> tuple[torch.Tensor, torch.Tensor]:
    """(is_mask (batch, target_len) bool, weight (batch,)) for one Monte-Carlo batch.

    ``tokens`` (LLaDA's harness): the number of masked tokens l is stratified over the batch, l_b =
    ((k + b * target_len / batch) rounded - 1) mod target_len + 1 with k uniform in 1..target_len, the
    positions uniform among the target; weight target_len / l_b (an unbiased estimate of LLaDA's Eq. 6 bound).
    ``time``: t stratified in (0, 1] (t_b = (u + b) / batch), each target token masked w.p. t_b, weight
    1 / t_b (the continuous-time ELBO).

    The uniforms are drawn position-major, (target_len, batch), so two targets of different lengths drawn
    from equally seeded generators share the numbers of their common positions (common random numbers)."""
    cpu = torch.device("cpu")
    u = float(torch.rand((), generator=generator, device=cpu))
    per_position = torch.rand(target_len, batch, generator=generator, device=cpu, dtype=torch.float64).T
    if sampler == "tokens":
        k = min(int(u * target_len), target_len - 1) + 1
        x = torch.round(torch.linspace(float(k), k + (batch - 1) * (target_len / batch), batch)).long()
        x = (x - 1) % target_len + 1
        is_mask = torch.argsort(per_position, dim=1) < x[:, None]
        weight = target_len / x.double()
    elif sampler == "time":
        t = ((u + torch.arange(batch, dtype=torch.float64)) / batch).clamp(min=1e-3)
        is_mask = per_position < t[:, None]
        weight = 1.0 / t
    else:
        raise ValueError(f"sampler must be 'tokens' or 'time', got {sampler!r}.")
    return is_mask.to(device), weight.to(device)


def _batch_generator(seed: int, index: int) -> torch.Generator:
    """The generator of Monte-Carlo batch ``index`` for ``seed``: one per batch, so batch j's draws do not
    depend on how many numbers the earlier batches used (their target length)."""
    return torch.Generator().manual_seed((int(seed) + index * 0x9E3779B97F4A7C15) % 2**63)


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
    seed: int | None = None,
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
        seed: instead of ``generator``: every batch draws from its own generator seeded from ``seed``, so
            targets of one prefix scored with the same seed share their mask draws (common random numbers).
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
    if seed is not None and generator is not None:
        raise ValueError("pass either `generator` or `seed`, not both.")
    if shift is None:
        shift = model_shifts_logits(model)
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    P, T = len(prefix), len(target)
    seq = torch.tensor(prefix + target, dtype=torch.long, device=device)
    n_batches = math.ceil(mc_num / batch_size)
    total = 0.0
    for j in range(n_batches):
        g = _batch_generator(seed, j) if seed is not None else generator
        is_mask, weight = _mask_draws(batch_size, T, sampler, g, device)
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


def content_seed(seed: int, *token_lists: Sequence[int]) -> int:
    """A 63-bit seed from ``seed`` and token ids (the request's content, not its position)."""
    h = hashlib.blake2b(str(int(seed)).encode(), digest_size=8)
    for ids in token_lists:
        h.update(b"|" + ",".join(str(int(i)) for i in ids).encode())
    return int.from_bytes(h.digest(), "big") >> 1


# ------------------------------------------------------------------------------------- devices, dtypes

_CLI_DEFAULT_DEVICE = "cuda:0"  # what lm-eval's CLI passes when --device is not given


def resolve_device(device: str | torch.device | None) -> torch.device:
    """The device to run on for a requested ``device``: None / ``"auto"`` = CUDA when available, else the
    CPU; lm-eval's CLI default ``"cuda:0"`` on a machine without CUDA = the CPU (with a warning); any other
    device this machine cannot serve raises a ``ValueError`` that names the fix."""
    if device is None or str(device).strip().lower() in ("", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    text = str(device).strip()
    try:
        dev = torch.device(text)
    except (RuntimeError, ValueError) as e:
        raise ValueError(f"device={text!r} is not a device; use 'cpu', 'cuda', 'cuda:N' or 'mps'.") from e
    if dev.type == "cpu":
        return torch.device("cpu")
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            if text == _CLI_DEFAULT_DEVICE:
                logger.warning(
                    "nap_hf: no CUDA device on this machine, running on the CPU (lm-eval's CLI asks for "
                    "'cuda:0' when --device is not given; pass --device cpu to silence this)."
                )
                return torch.device("cpu")
            raise ValueError(f"device={text!r}: this machine has no CUDA device; use --device cpu.")
        n = torch.cuda.device_count()
        if dev.index is not None and dev.index >= n:
            raise ValueError(f"device={text!r}: this machine has {n} CUDA device(s), cuda:0..cuda:{n - 1}.")
        return dev
    if dev.type == "mps":
        available = torch.backends.mps.is_available()
    else:
        backend = getattr(torch, dev.type, None)
        available = bool(backend is not None and getattr(backend, "is_available", lambda: False)())
    if not available:
        raise ValueError(f"device={text!r}: no {dev.type} device on this machine; use --device cpu.")
    return dev


def _process_group(device: torch.device) -> tuple[torch.device, int, int]:
    """(device, rank, world size): one process, or the launcher's (``WORLD_SIZE`` > 1) through accelerate."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return device, 0, 1
    from accelerate import PartialState

    state = PartialState(cpu=device.type == "cpu")
    own = torch.device("cpu") if device.type == "cpu" else torch.device(state.device)
    if own != device and device.type != "cpu":
        logger.info("nap_hf: rank %d runs on %s (its local device)", state.process_index, own)
    return own, state.process_index, state.num_processes


def _resolve_dtype(dtype: Any, device: torch.device, config: Any) -> torch.dtype | None:
    """``auto``: float32 on the CPU; elsewhere the checkpoint's dtype, else bfloat16 (None: keep a model
    object's own dtype, when ``config`` is None)."""
    if dtype is None or dtype == "auto":
        if device.type == "cpu":
            return torch.float32
        if config is None:
            return None
        found = getattr(config, "dtype", None) or getattr(config, "torch_dtype", None)
        found = getattr(torch, found, None) if isinstance(found, str) else found
        return found if isinstance(found, torch.dtype) else torch.bfloat16
    value = dtype if isinstance(dtype, torch.dtype) else getattr(torch, str(dtype), None)
    if not isinstance(value, torch.dtype):
        raise ValueError(
            f"dtype={dtype!r} is not a torch dtype; use auto, float32, bfloat16, float16 or float64."
        )
    return value


def _as_bool(v: Any) -> bool:
    if isinstance(v, str):
        return v.strip().lower() in ("1", "true", "yes", "y")
    return bool(v)


# ------------------------------------------------------------------------------------- the lm-eval model

try:  # optional dependency
    from lm_eval.api.model import LM as _LM

    LM_EVAL_AVAILABLE = True
except ImportError:  # pragma: no cover - exercised where lm-eval is missing
    _LM = object
    LM_EVAL_AVAILABLE = False

_INSTALL = "lm-evaluation-harness is not installed: pip install nap-hf[harness] (or pip install lm-eval)"

# `generate` options a user may set (model_args, gen_kwargs); the rest are the loop's plumbing.
_PLUMBING = {
    "mask_token_id",
    "shift_logits",
    "output_history",
    "return_dict_in_generate",
    "num_return_sequences",
}
GENERATE_OPTIONS: tuple[str, ...] = tuple(
    # distribute_paths: lm-eval's processes hold different requests (plan_generate refuses it)
    k
    for k in DIFFUSION_FIELDS
    if k not in _PLUMBING | {"seed", "header_ids", "distribute_paths"}
)
# lm-eval's own generation keywords, handled here (see the module doc)
_LM_EVAL_GEN_KEYS = ("until", "do_sample", "max_gen_toks")


def _gen_options(given: dict[str, Any], origin: str) -> dict[str, Any]:
    """The ``generate`` options in ``given`` (model_args or gen_kwargs), checked; ``block_length`` 0 = None."""
    unknown = sorted(k for k in given if k not in GENERATE_OPTIONS)
    if unknown:
        raise ValueError(
            f"nap_hf: unknown {origin} {unknown}; generate options: {list(GENERATE_OPTIONS)}"
            + (f", and lm-eval's {list(_LM_EVAL_GEN_KEYS)}." if origin == "gen_kwargs" else ".")
        )
    out = dict(given)
    if out.get("block_length") in (0, "0", "none", "None"):
        out["block_length"] = None
    return out


class NapHFLM(_LM):
    """lm-eval ``LM`` over a ``nap_hf`` model: ``generate_until`` with any strategy, ``loglikelihood`` by
    :func:`mc_loglikelihood` (common random numbers per context), ``loglikelihood_rolling`` by the same bound
    over rolling windows. Settings and devices: see the module doc."""

    def __init__(
        self,
        pretrained: str | Any = None,
        tokenizer: Any = None,
        dtype: str = "auto",
        device: str | None = None,
        batch_size: int | str = 1,
        trust_remote_code: bool = False,
        revision: str | None = None,
        mc_num: int = 128,
        mc_batch_size: int = 32,
        sampler: str = "tokens",
        check_greedy: bool = False,
        max_length: int | None = None,
        seed: int = 0,
        **generate_options: Any,
    ) -> None:
        if not LM_EVAL_AVAILABLE:
            raise ImportError(_INSTALL)
        super().__init__()
        import nap_hf  # noqa: F401  (registers the Auto classes)

        generate_options.pop("max_batch_size", None)
        self.options = _gen_options(generate_options, "model argument(s)")
        self._device, self._rank, self._world_size = _process_group(resolve_device(device))
        self._load(pretrained, tokenizer, dtype, _as_bool(trust_remote_code), revision)
        self.batch_size = int(batch_size) if str(batch_size).isdigit() else 1
        self.mc_num, self.mc_batch_size, self.sampler = int(mc_num), int(mc_batch_size), sampler
        self.check_greedy = _as_bool(check_greedy)
        self.seed = int(seed)
        cfg = self.model.config
        self.max_length = int(
            max_length
            or getattr(cfg, "max_position_embeddings", None)
            or getattr(cfg, "max_sequence_length", None)
            or 4096
        )
        self.mask_token_id = cfg.mask_token_id
        pad = self.tokenizer.pad_token_id
        self.pad_id = pad if pad is not None else self.tokenizer.eos_token_id
        from nap_hf.generation.config import DiffusionGenerationConfig

        self._defaults = DiffusionGenerationConfig.from_generation_config(
            getattr(self.model, "generation_config", None), cfg
        )
        self._plans: dict[str, GeneratePlan] = {}
        self._once: set[str] = set()
        plan, _ = self._plan(
            {}
        )  # checks the model arguments now, and logs what a request without gen_kwargs gets
        logger.info(
            "nap_hf: %s on %s (rank %d of %d), %s; generate keywords without gen_kwargs: %s",
            self._name,
            self._device,
            self._rank,
            self._world_size,
            self.model.dtype,
            plan.kwargs,
        )

    def _load(self, pretrained: Any, tokenizer: Any, dtype: Any, trust: bool, revision: str | None) -> None:
        if isinstance(pretrained, str):
            from transformers import AutoConfig, AutoModel, AutoTokenizer

            config = AutoConfig.from_pretrained(pretrained, revision=revision, trust_remote_code=trust)
            torch_dtype = _resolve_dtype(dtype, self._device, config)
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
            torch_dtype = _resolve_dtype(None if dtype == "auto" else dtype, self._device, None)
            if torch_dtype is not None and torch_dtype != self.model.dtype:
                self.model = self.model.to(torch_dtype)
        else:
            raise ValueError("`pretrained` (a path / Hub id, or a model object) is required.")
        self.model = self.model.to(self._device).eval()

    # ---------------------------------------------------------------- settings
    def generate_options(self, gen_kwargs: dict[str, Any] | None) -> tuple[dict[str, Any], list[str]]:
        """(the ``generate`` options of a request, its stop strings): the model arguments updated by the
        request's ``gen_kwargs``; the checkpoint's generation config fills the rest (inside
        :func:`~nap_hf.evaluation.settings.plan_generate` and ``generate``)."""
        kw = dict(gen_kwargs or {})
        until = kw.pop("until", None) or []
        until = [until] if isinstance(until, str) else list(until)
        max_gen_toks = kw.pop("max_gen_toks", None)
        if max_gen_toks is not None:
            self._log_once(
                "max_gen_toks",
                "nap_hf: the task's max_gen_toks=%s is not used: a diffusion canvas has a fixed size (set "
                "gen_length on the plain canvas, m / path_length / summary_length on the NAP one).",
                max_gen_toks,
            )
        do_sample = kw.pop("do_sample", None)
        options = {**self.options, **_gen_options(kw, "gen_kwargs")}
        if do_sample is not None and not _as_bool(do_sample):
            options["temperature"] = 0.0
        return options, until

    def _plan(self, gen_kwargs: dict[str, Any] | None) -> tuple[GeneratePlan, list[str]]:
        """(the cached plan of a request's settings, its stop strings); the plan's notes are logged once,
        when it is made."""
        options, until = self.generate_options(gen_kwargs)
        key = json.dumps(options, sort_keys=True, default=str)
        if key not in self._plans:
            plan = plan_generate(options, tokenizer=self.tokenizer, defaults=self._defaults)
            for note in plan.notes:
                logger.warning("nap_hf: %s", note)
            if plan.canvas_length is not None and plan.canvas_length >= self.max_length:
                raise ValueError(
                    f"nap_hf: the canvas ({plan.canvas_length} generated positions) leaves no room for a prompt "
                    f"within the model's maximum length ({self.max_length}); lower gen_length (plain canvas) "
                    "or m / path_length / summary_length (NAP canvas)."
                )
            self._plans[key] = plan
        return self._plans[key], until

    def _log_once(self, key: str, msg: str, *args: Any, level: int = logging.INFO) -> None:
        if key not in self._once:
            self._once.add(key)
            logger.log(level, msg, *args)

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

    def all_gather(self, tensor: torch.Tensor) -> torch.Tensor:
        if self.world_size == 1:
            return tensor
        import torch.distributed as dist

        tensor = tensor.to(self._device).reshape(-1)  # lm-eval gathers 0-d counts
        out = [torch.zeros_like(tensor) for _ in range(self.world_size)]
        dist.all_gather(out, tensor)
        return torch.cat(out)

    def gather_object(self, obj: Any, dst: int = 0) -> list[Any] | None:
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

    def _generation_prompt(self) -> str | None:
        """What the chat template appends for the assistant's turn (None: no template, or none found)."""
        if not getattr(self.tokenizer, "chat_template", None):
            return None
        probe = [{"role": "user", "content": "x"}]
        try:
            with_prompt = self.apply_chat_template(probe, add_generation_prompt=True)
            without = self.apply_chat_template(probe, add_generation_prompt=False)
        except Exception:  # a template that cannot render a bare user turn: no check
            return None
        if not with_prompt.startswith(without):
            return None
        return with_prompt[len(without) :].strip() or None

    def _begin(self, kind: str, requests: Sequence[Any], contexts: Sequence[str]) -> None:
        """Per request type: log this rank's share, and warn once when a chat model gets prompts that do
        not use its chat template."""
        logger.info("nap_hf rank %d of %d: %d %s requests", self.rank, self.world_size, len(requests), kind)
        docs = [(getattr(r, "task_name", None), getattr(r, "doc_id", None)) for r in requests]
        logger.debug("nap_hf rank %d %s docs: %s", self.rank, kind, json.dumps(docs))
        marker = self._generation_prompt()
        if contexts and marker and not any(marker in c for c in contexts[:32]):
            self._log_once(
                "chat",
                "nap_hf: %s has a chat template, but the prompts do not use it (no %r in them); a chat model "
                "trained on chat-formatted prompts scores far lower without it: add --apply_chat_template.",
                self._name,
                marker,
                level=logging.WARNING,
            )

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

        reqs = [r.args for r in requests]
        self._begin("generate_until", requests, [ctx for ctx, _ in reqs])
        groups: dict[str, list[int]] = {}  # requests with the same gen_kwargs share a plan
        for i, (_, gen_kwargs) in enumerate(reqs):
            groups.setdefault(json.dumps(gen_kwargs or {}, sort_keys=True, default=str), []).append(i)
        out: list[str] = [""] * len(reqs)
        bar = tqdm(total=len(reqs), disable=disable_tqdm or self.rank != 0, desc="nap_hf generate_until")
        for idx in groups.values():
            plan, until = self._plan(reqs[idx[0]][1])
            for start in range(0, len(idx), self.batch_size):
                batch = idx[start : start + self.batch_size]
                texts = self._generate([reqs[i][0] for i in batch], plan)
                for i, text in zip(batch, texts, strict=True):
                    if not plan.structured:
                        text = _cut(text, until)
                    out[i] = text
                    self.cache_hook.add_partial("generate_until", reqs[i], text)
                bar.update(len(batch))
        bar.close()
        return out

    def _generate(self, contexts: Sequence[str], plan: GeneratePlan) -> list[str]:
        """Decode one batch of prompts (left-padded; prompts longer than the room the canvas leaves are cut
        from the left, with one warning)."""
        from nap_hf.evaluation.runner import left_pad

        room = self.max_length - (plan.canvas_length or 0)
        rows = [self._encode(c) for c in contexts]
        if any(len(r) > room for r in rows):
            self._log_once(
                "truncate",
                "nap_hf: prompts longer than %d tokens (the model's %d minus the %d-position canvas) are cut "
                "from the left.",
                room,
                self.max_length,
                plan.canvas_length,
                level=logging.WARNING,
            )
            rows = [r[-room:] for r in rows]
        ids, mask = left_pad(rows, self.pad_id, self._device)
        kw = plan.call_kwargs(self.tokenizer, seed=content_seed(self.seed, *rows))
        seqs = self.model.generate(ids, attention_mask=mask, **kw)
        P = ids.shape[1]
        return [
            self.tokenizer.decode(seqs[i, P:].tolist(), skip_special_tokens=True) for i in range(len(rows))
        ]

    def _score(self, ctx: list[int], cont: list[int], seed: int) -> tuple[float, bool]:
        if len(ctx) + len(cont) > self.max_length:
            ctx = ctx[-(self.max_length - len(cont)) :] if len(cont) < self.max_length else ctx[-1:]
            cont = cont[: self.max_length - len(ctx)]
        ll = mc_loglikelihood(
            self.model,
            ctx,
            cont,
            mask_token_id=self.mask_token_id,
            mc_num=self.mc_num,
            batch_size=min(self.mc_batch_size, self.mc_num),
            sampler=self.sampler,
            cfg_scale=float(self.options.get("cfg_scale", self._defaults.cfg_scale) or 0.0),
            seed=seed,
        )
        greedy = False
        if self.check_greedy:
            x = torch.tensor([ctx], device=self._device)
            # lm-eval's is_greedy: one token per step in the library's default (low-confidence) order
            seq = self.model.generate(
                x, strategy="confidence", steps=len(cont), gen_length=len(cont), temperature=0.0
            )
            greedy = seq[0, len(ctx) :].tolist() == cont
        return ll, greedy

    def loglikelihood(self, requests, disable_tqdm: bool = False) -> list[tuple[float, bool]]:
        from tqdm.auto import tqdm

        self._begin("loglikelihood", requests, [r.args[0] for r in requests])
        out = []
        for req in tqdm(requests, disable=disable_tqdm or self.rank != 0, desc="nap_hf loglikelihood"):
            context, continuation = req.args
            ctx, cont = self._encode_pair(context, continuation)
            # the seed comes from the context alone: every continuation of it gets the same mask draws
            res = self._score(ctx, cont, content_seed(self.seed, ctx)) if cont else (0.0, True)
            out.append(res)
            self.cache_hook.add_partial("loglikelihood", req.args, res)
        return out

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = False) -> list[float]:
        from lm_eval.utils import get_rolling_token_windows, make_disjoint_window

        self._begin("loglikelihood_rolling", requests, [])
        out = []
        start = self.tokenizer.bos_token_id if self.tokenizer.bos_token_id is not None else self.pad_id
        for req in requests:
            (text,) = req.args[:1]
            tokens = [int(i) for i in self.tokenizer(text, add_special_tokens=False)["input_ids"]]
            windows = map(
                make_disjoint_window,
                get_rolling_token_windows(
                    tokens, prefix_token=start, max_seq_len=self.max_length, context_len=1
                ),
            )
            total = sum(
                self._score(ctx, cont, content_seed(self.seed, ctx, cont))[0] for ctx, cont in windows
            )
            out.append(total)
            self.cache_hook.add_partial("loglikelihood_rolling", (text,), total)
        return out


def _cut(text: str, until: Sequence[str]) -> str:
    """``text`` up to its first stop string (the earliest of them)."""
    ends = [text.index(stop) for stop in until if stop and stop in text]
    return text[: min(ends)] if ends else text


def register() -> None:
    """Register :class:`NapHFLM` as lm-eval's model ``nap_hf`` (done on import; a second import of this
    module, e.g. as ``__main__`` and by name, keeps the first registration)."""
    if not LM_EVAL_AVAILABLE:
        raise ImportError(_INSTALL)
    import lm_eval.models  # noqa: F401  (lm-eval's own models: it imports them only into an empty registry)
    from lm_eval.api.registry import model_registry, register_model

    if "nap_hf" not in model_registry:
        register_model("nap_hf")(NapHFLM)


if LM_EVAL_AVAILABLE:
    register()


def main(argv: list[str] | None = None) -> None:
    """lm-eval's command line with ``nap_hf`` registered (the ``nap-hf-eval-harness`` console script)."""
    if not LM_EVAL_AVAILABLE:
        raise SystemExit(_INSTALL)
    import sys

    from lm_eval.__main__ import cli_evaluate

    if argv is not None:
        sys.argv = [sys.argv[0], *argv]
    cli_evaluate()


if __name__ == "__main__":
    main()
