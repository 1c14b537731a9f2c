"""Teachers for the NAP data builder (docs/design.md §6): a model that answers a chat prompt with one sampled
reasoning trace per (prompt, seed). Two backends behind one interface: a local 🤗 transformers causal LM
(:class:`TransformersTeacher`) and any OpenAI-compatible chat-completions server such as vLLM or TGI
(:class:`OpenAICompatibleTeacher`).

Example::

    from nap_hf.data.teachers import OpenAICompatibleTeacher

    with OpenAICompatibleTeacher("Qwen/Qwen2.5-7B-Instruct", "http://localhost:8000/v1") as teacher:
        prompt = [{"role": "user", "content": "What is 17 * 23?"}]
        paths = teacher.generate([prompt] * 3, seeds=[0, 1, 2])  # 3 independent traces at temperature 1.0
        print([c.text for c in paths])
"""

from __future__ import annotations

import http.client
import json
import logging
import os
import random
import threading
import time
import urllib.error
import urllib.request
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any

import torch

__all__ = [
    "Completion",
    "Teacher",
    "TransformersTeacher",
    "OpenAICompatibleTeacher",
    "TeacherRequestError",
]

logger = logging.getLogger(__name__)

Messages = list[dict[str, str]]


@dataclass(frozen=True)
class Completion:
    """One teacher answer.

    Args:
        text: the generated text (the assistant message content, special tokens removed).
        finish_reason: why generation ended, as in the OpenAI API: ``"stop"`` (end of turn / EOS) or
            ``"length"`` (hit ``max_new_tokens``); ``None`` when the backend does not say.
        num_tokens: number of generated tokens (the stop token included), ``None`` when unknown.
    """

    text: str
    finish_reason: str | None = None
    num_tokens: int | None = None


class TeacherRequestError(RuntimeError):
    """A request to an OpenAI-compatible server failed for good (a non-retryable status, or retries ran out).

    Attributes:
        status: the last HTTP status, ``None`` when the last failure was not an HTTP answer (timeout, ...).
    """

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status


class Teacher(ABC):
    """A sampler of reasoning traces: one :class:`Completion` per (chat messages, seed).

    Subclasses set :attr:`temperature` (the paper samples at 1.0) and :attr:`max_new_tokens` and implement
    :meth:`generate`. A teacher is a context manager: ``with Teacher(...) as t:`` calls :meth:`close`.
    """

    temperature: float
    max_new_tokens: int

    @abstractmethod
    def generate(self, messages: Sequence[Messages], seeds: Sequence[int]) -> list[Completion]:
        """One completion per ``(messages[i], seeds[i])``, in the same order. Deterministic given the seed
        where the backend allows it."""

    def describe(self) -> dict[str, Any]:
        """What produced the data (for dataset cards and provenance): model, backend, sampling settings.
        Never contains credentials."""
        return {
            "backend": type(self).__name__,
            "temperature": self.temperature,
            "max_new_tokens": self.max_new_tokens,
        }

    def close(self) -> None:  # noqa: B027  (optional hook, no-op by default)
        """Release resources (models, thread pools). The default does nothing."""

    def __enter__(self) -> Teacher:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={v!r}" for k, v in self.describe().items() if k != "backend")
        return f"{type(self).__name__}({fields})"


# ------------------------------------------------------------------------------------------ shared checks


def _check_sampling(temperature: float, top_p: float, max_new_tokens: int) -> None:
    if not temperature >= 0:
        raise ValueError(f"temperature must be >= 0 (0 = greedy; the paper uses 1.0), got {temperature!r}")
    if not 0 < top_p <= 1:
        raise ValueError(f"top_p must be in (0, 1] (1.0 = no nucleus filtering), got {top_p!r}")
    if not (isinstance(max_new_tokens, int) and max_new_tokens >= 1):
        raise ValueError(f"max_new_tokens must be a positive int, got {max_new_tokens!r}")


def _check_batch(messages: Sequence[Messages], seeds: Sequence[int]) -> None:
    if len(messages) != len(seeds):
        raise ValueError(
            f"generate() needs one seed per prompt: got {len(messages)} messages and {len(seeds)} seeds"
        )
    for i, m in enumerate(messages):
        if isinstance(m, str) or not isinstance(m, Sequence) or not all(isinstance(d, Mapping) for d in m):
            raise TypeError(
                f"messages[{i}] must be a chat, a list of {{'role': ..., 'content': ...}} dicts, got "
                f"{type(m).__name__}; wrap a plain question as [{{'role': 'user', 'content': question}}]"
            )


def _with_system(messages: Messages, system_prompt: str | None) -> Messages:
    """Prepend ``system_prompt`` unless it is None or the chat already starts with a system message."""
    messages = [dict(m) for m in messages]
    if system_prompt is not None and not (messages and messages[0].get("role") == "system"):
        messages.insert(0, {"role": "system", "content": system_prompt})
    return messages


# --------------------------------------------------------------------------------------- transformers


class TransformersTeacher(Teacher):
    """A local causal LM sampled with its chat template (``add_generation_prompt=True``).

    Sampling is done by a small loop of our own (KV cache, left padding, explicit position ids) instead of
    ``model.generate``, so that each row has its OWN random stream: row ``i`` is sampled by inverse-CDF with
    uniforms drawn from a CPU ``torch.Generator`` seeded with ``seeds[i]``, one draw per generated token.
    The text of item ``i`` therefore depends only on its prompt and its seed, not on which other items share
    its batch, nor on the batch size or order (the uniforms are the same on every device; the logits differ
    by float rounding between CPU and GPU).
    Caveat: logits of a padded batch differ from a lone row's by float rounding; a draw landing within that
    rounding of a CDF boundary (probability ~1e-6 per token in float32) can flip. Use ``batch_size=1`` for a
    bit-exact guarantee, and float32 rather than bf16 for a near-exact one.

    Args:
        model: a local path or hub id (loaded with ``AutoModelForCausalLM`` / ``AutoTokenizer``), or an
            already loaded ``PreTrainedModel`` (then ``tokenizer`` is required).
        tokenizer: a tokenizer with a chat template, or its path / hub id; default: loaded from ``model``.
        temperature: sampling temperature; 0 means greedy. The paper samples teachers at 1.0.
        max_new_tokens: generation budget per answer.
        batch_size: prompts per forward pass (prompts are grouped by length to limit padding).
        top_p: nucleus sampling threshold; 1.0 disables it.
        system_prompt: a system message prepended to chats that do not start with one.
        device: where to load the model (default: CUDA if available, else CPU); ignored for a loaded model.
        dtype: dtype for loading, e.g. ``"bfloat16"`` or ``torch.float32`` (default ``"auto"``).
        gguf_file: a GGUF file name inside ``model`` (e.g. SmolLM2's GGUF); passed to ``from_pretrained``.
        trust_remote_code: passed to ``from_pretrained``; False unless YOU opt in.
        eos_token_id: id(s) that end an answer; default: the model's generation config EOS plus the
            tokenizer's EOS (set this for GGUF chat models whose end-of-turn token is not their EOS).
        model_kwargs: extra keyword arguments for ``AutoModelForCausalLM.from_pretrained``.
    """

    def __init__(
        self,
        model: str | os.PathLike | torch.nn.Module,
        tokenizer: Any = None,
        *,
        temperature: float = 1.0,
        max_new_tokens: int = 512,
        batch_size: int = 8,
        top_p: float = 1.0,
        system_prompt: str | None = None,
        device: str | torch.device | None = None,
        dtype: str | torch.dtype | None = None,
        gguf_file: str | None = None,
        trust_remote_code: bool = False,
        eos_token_id: int | Sequence[int] | None = None,
        model_kwargs: Mapping[str, Any] | None = None,
    ):
        _check_sampling(temperature, top_p, max_new_tokens)
        if not (isinstance(batch_size, int) and batch_size >= 1):
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.temperature = float(temperature)
        self.top_p = float(top_p)
        self.max_new_tokens = max_new_tokens
        self.batch_size = batch_size
        self.system_prompt = system_prompt
        self.gguf_file = gguf_file
        self._owns_model = not isinstance(model, torch.nn.Module)
        load_kwargs: dict[str, Any] = {"trust_remote_code": trust_remote_code}
        if gguf_file is not None:
            load_kwargs["gguf_file"] = gguf_file
        if self._owns_model:
            self.model_name = str(model)
            if device is None:
                device = "cuda" if torch.cuda.is_available() else "cpu"
            self.model = AutoModelForCausalLM.from_pretrained(
                model, dtype=dtype if dtype is not None else "auto", **load_kwargs, **dict(model_kwargs or {})
            ).to(device)
        else:
            if tokenizer is None:
                raise ValueError(
                    "tokenizer is required when model is an already loaded module: pass "
                    "TransformersTeacher(model, tokenizer) or give the model's path instead"
                )
            self.model = model
            self.model_name = (
                getattr(getattr(model, "config", None), "_name_or_path", "") or type(model).__name__
            )
        self.model.eval()
        self._dtype = str(self.model.dtype).removeprefix("torch.")
        if tokenizer is None or isinstance(tokenizer, (str, os.PathLike)):
            source, kwargs = (model, load_kwargs) if tokenizer is None else (tokenizer, {})
            tokenizer = AutoTokenizer.from_pretrained(source, **kwargs)
        if not getattr(tokenizer, "chat_template", None):
            raise ValueError(
                f"the tokenizer of {self.model_name!r} has no chat template; pass a chat model's tokenizer or "
                "set tokenizer.chat_template before building the teacher"
            )
        self.tokenizer = tokenizer
        self.eos_token_ids = self._stop_ids(eos_token_id)

    # -- public API

    def generate(self, messages: Sequence[Messages], seeds: Sequence[int]) -> list[Completion]:
        """Sample one completion per ``(messages[i], seeds[i])``; see the class docstring for determinism."""
        return self.sample(messages, seeds)

    # Alike in shape to OpenAICompatibleTeacher.describe: each backend reports its own settings.
    def describe(self) -> dict[str, Any]:
        return {
            "backend": "transformers",
            "model": self.model_name,
            "gguf_file": self.gguf_file,
            "temperature": self.temperature,
            "top_p": self.top_p,
            "max_new_tokens": self.max_new_tokens,
            "batch_size": self.batch_size,
            "system_prompt": self.system_prompt,
            "dtype": self._dtype,
            "sampler": "per-row inverse CDF, CPU torch.Generator seeded per item",
        }

    def close(self) -> None:
        """Drop the model if this teacher loaded it (and free cached CUDA memory)."""
        if self._owns_model and getattr(self, "model", None) is not None:
            self.model = None
            if torch.cuda.is_available():
                torch.cuda.empty_cache()

    @torch.no_grad()
    def sample(
        self,
        messages: Sequence[Messages],
        seeds: Sequence[int],
        *,
        temperature: float | None = None,
        max_new_tokens: int | None = None,
        top_p: float | None = None,
    ) -> list[Completion]:
        """:meth:`generate` with per-call overrides of the sampling settings (used by the dev server)."""
        _check_batch(messages, seeds)
        if self.model is None:
            raise RuntimeError("this TransformersTeacher was closed; build a new one")
        temperature = self.temperature if temperature is None else float(temperature)
        top_p = self.top_p if top_p is None else float(top_p)
        max_new_tokens = self.max_new_tokens if max_new_tokens is None else int(max_new_tokens)
        _check_sampling(temperature, top_p, max_new_tokens)
        prompts = [self._encode(m) for m in messages]
        order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))  # similar lengths share a batch
        out: list[Completion | None] = [None] * len(prompts)
        for start in range(0, len(order), self.batch_size):
            rows = order[start : start + self.batch_size]
            done = self._sample_batch(
                [prompts[i] for i in rows], [int(seeds[i]) for i in rows], temperature, top_p, max_new_tokens
            )
            for i, c in zip(rows, done, strict=True):
                out[i] = c
        return out  # type: ignore[return-value]

    # -- internals

    def _stop_ids(self, eos_token_id: int | Sequence[int] | None) -> list[int]:
        if eos_token_id is not None:
            ids = [eos_token_id] if isinstance(eos_token_id, int) else list(eos_token_id)
        else:
            gen = getattr(self.model, "generation_config", None)
            cfg_eos = getattr(gen, "eos_token_id", None)
            ids = [cfg_eos] if isinstance(cfg_eos, int) else list(cfg_eos or [])
            if self.tokenizer.eos_token_id is not None:
                ids.append(self.tokenizer.eos_token_id)
        ids = sorted({int(i) for i in ids})
        if not ids:
            raise ValueError(
                f"no end-of-answer token known for {self.model_name!r}: pass eos_token_id=... (e.g. the id of "
                "the chat template's end-of-turn token)"
            )
        return ids

    def _encode(self, messages: Messages) -> list[int]:
        text = self.tokenizer.apply_chat_template(
            _with_system(messages, self.system_prompt), tokenize=False, add_generation_prompt=True
        )
        # The template already holds BOS and friends: do not add special tokens a second time.
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def _sample_batch(
        self,
        prompts: list[list[int]],
        seeds: list[int],
        temperature: float,
        top_p: float,
        max_new_tokens: int,
    ) -> list[Completion]:
        model = self.model
        device = model.device
        B, L = len(prompts), max(len(p) for p in prompts)
        pad = (
            self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.eos_token_ids[0]
        )
        input_ids = torch.full((B, L), pad, dtype=torch.long)  # (B, L), left padded
        mask = torch.zeros((B, L), dtype=torch.long)
        for b, p in enumerate(prompts):
            input_ids[b, L - len(p) :] = torch.tensor(p, dtype=torch.long)
            mask[b, L - len(p) :] = 1
        input_ids, mask = input_ids.to(device), mask.to(device)
        position_ids = (mask.cumsum(-1) - 1).clamp(min=0)  # each row counts from its first real token
        generators = [torch.Generator().manual_seed(s) for s in seeds]
        stop = torch.tensor(self.eos_token_ids, device=device)

        tokens = torch.empty((B, 0), dtype=torch.long, device=device)
        finished = torch.zeros(B, dtype=torch.bool, device=device)
        lengths = torch.full((B,), max_new_tokens, dtype=torch.long, device=device)
        past, step_ids, step_pos = None, input_ids, position_ids
        for t in range(max_new_tokens):
            out = model(
                input_ids=step_ids,
                attention_mask=mask,
                position_ids=step_pos,
                cache=past,  # transformers >= 5.24 names it `cache` (`past_key_values` goes in 5.40)
                use_cache=True,
            )
            past = out.cache
            logits = out.logits[:, -1, :].double()  # (B, V)
            uniforms = torch.stack([torch.rand((), generator=g, dtype=torch.float64) for g in generators])
            next_ids = _draw(logits, uniforms.to(device), temperature, top_p)  # (B,)
            next_ids = torch.where(finished, torch.full_like(next_ids, pad), next_ids)
            tokens = torch.cat([tokens, next_ids[:, None]], dim=1)
            hit = ~finished & torch.isin(next_ids, stop)
            lengths = torch.where(hit, torch.full_like(lengths, t + 1), lengths)
            finished |= hit
            if bool(finished.all()):
                break
            step_ids, step_pos = next_ids[:, None], step_pos[:, -1:] + 1
            mask = torch.cat([mask, torch.ones((B, 1), dtype=mask.dtype, device=device)], dim=1)

        results = []
        for b in range(B):
            n = int(lengths[b])
            ids = tokens[b, :n].tolist()
            stopped = bool(finished[b])
            text = self.tokenizer.decode(ids[:-1] if stopped else ids, skip_special_tokens=True)
            results.append(Completion(text=text, finish_reason="stop" if stopped else "length", num_tokens=n))
        return results


def _draw(logits: torch.Tensor, uniforms: torch.Tensor, temperature: float, top_p: float) -> torch.Tensor:
    """Inverse-CDF sampling: row b takes the token where its cumulative probability first exceeds
    ``uniforms[b]``. logits (B, V) float64, uniforms (B,) in [0, 1) → ids (B,)."""
    if temperature == 0:
        return logits.argmax(-1)
    probs = torch.softmax(logits / temperature, dim=-1)  # (B, V)
    if top_p < 1.0:
        sorted_p, sorted_ids = probs.sort(dim=-1, descending=True)
        before = sorted_p.cumsum(-1) - sorted_p  # mass strictly before each token
        sorted_p = sorted_p.masked_fill(before >= top_p, 0.0)  # keep the smallest set reaching top_p
        cdf = sorted_p.cumsum(-1)
        idx = torch.searchsorted(cdf, (uniforms * cdf[:, -1])[:, None], right=True).clamp(
            max=cdf.shape[-1] - 1
        )
        return sorted_ids.gather(-1, idx).squeeze(-1)
    cdf = probs.cumsum(-1)
    idx = torch.searchsorted(cdf, (uniforms * cdf[:, -1])[:, None], right=True).clamp(max=cdf.shape[-1] - 1)
    return idx.squeeze(-1)


# ------------------------------------------------------------------------------------ OpenAI-compatible


class _Retryable(Exception):
    """A failure worth another try; ``retry_after`` is the server's Retry-After in seconds, if any."""

    def __init__(self, message: str, status: int | None = None, retry_after: float | None = None):
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after


def _parse_retry_after(value: str | None) -> float | None:
    """Retry-After as seconds: either a number of seconds or an HTTP date."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError, IndexError):
        return None


class OpenAICompatibleTeacher(Teacher):
    """A teacher behind any OpenAI-compatible chat-completions endpoint (vLLM, TGI, SGLang, OpenAI, ...).

    Each item is one ``POST {base_url}/chat/completions`` with ``{model, messages, temperature, top_p,
    max_tokens, seed, n: 1}``; vLLM and SGLang honour ``seed`` per request, so answers are reproducible there.
    Requests run on a thread pool of at most ``max_concurrency``; each has a ``timeout``. A request is
    retried, with exponential backoff (``backoff * 2**attempt`` capped at ``max_backoff``, times a jitter in
    [0.5, 1] drawn deterministically from the seed and attempt), on HTTP 429 and 5xx, timeouts, connection
    errors, truncated bodies and malformed answers (bad JSON, no choices); a Retry-After header is honoured
    (up to ``max_backoff``). Other 4xx statuses fail at once. After ``max_retries`` retries a
    :class:`TeacherRequestError` names the URL, the model and the last failure.

    The API key is sent in the ``Authorization`` header only: it is never logged, never put in an exception,
    :meth:`describe` or ``repr``, and is masked out of server messages quoted in errors.

    Args:
        model: the served model name (``"model"`` in the request body).
        base_url: the API root, e.g. ``http://localhost:8000/v1``.
        api_key: bearer token; default: the ``OPENAI_API_KEY`` environment variable, if set.
        temperature, top_p, max_new_tokens: sampling settings (``max_new_tokens`` is sent as ``max_tokens``).
        max_concurrency: requests in flight at most.
        timeout: seconds per request (connect and each read).
        max_retries: retries per request after the first attempt.
        backoff, max_backoff: base and cap of the exponential backoff, in seconds.
        system_prompt: a system message prepended to chats that do not start with one.
        extra_body: extra fields merged into every request body (e.g. ``{"top_k": 50}`` for vLLM).
    """

    # One keyword per setting, as every public signature here (alike in shape to write_tiny_llada's).
    def __init__(
        self,
        model: str,
        base_url: str,
        *,
        api_key: str | None = None,
        temperature: float = 1.0,
        max_new_tokens: int = 512,
        top_p: float = 1.0,
        max_concurrency: int = 16,
        timeout: float = 120.0,
        max_retries: int = 6,
        backoff: float = 1.0,
        max_backoff: float = 60.0,
        system_prompt: str | None = None,
        extra_body: Mapping[str, Any] | None = None,
    ):
        _check_sampling(temperature, top_p, max_new_tokens)
        if not isinstance(base_url, str) or not base_url.startswith(("http://", "https://")):
            raise ValueError(
                f"base_url must be an http(s) URL such as 'http://localhost:8000/v1', got {base_url!r}"
            )
        if not (isinstance(max_concurrency, int) and max_concurrency >= 1):
            raise ValueError(f"max_concurrency must be a positive int, got {max_concurrency!r}")
        if not (isinstance(max_retries, int) and max_retries >= 0):
            raise ValueError(f"max_retries must be an int >= 0, got {max_retries!r}")
        if not timeout > 0:
            raise ValueError(f"timeout must be > 0 seconds, got {timeout!r}")
        if not (backoff >= 0 and max_backoff >= 0):
            raise ValueError(
                f"backoff and max_backoff must be >= 0 seconds, got {backoff!r} and {max_backoff!r}"
            )
        reserved = {"model", "messages", "seed", "n"} & set(extra_body or {})
        if reserved:
            raise ValueError(f"extra_body must not set {sorted(reserved)}: the teacher sets them per request")
        self.model = model
        root = base_url.rstrip("/").removesuffix("/chat/completions")
        self.base_url = root
        self.url = root + "/chat/completions"
        self.temperature = float(temperature)
        self.top_p = float(top_p)
        self.max_new_tokens = max_new_tokens
        self.max_concurrency = max_concurrency
        self.timeout = float(timeout)
        self.max_retries = max_retries
        self.backoff = float(backoff)
        self.max_backoff = float(max_backoff)
        self.system_prompt = system_prompt
        self.extra_body = dict(extra_body or {})
        self.__api_key = api_key if api_key is not None else os.environ.get("OPENAI_API_KEY") or None

    # -- public API

    def generate(self, messages: Sequence[Messages], seeds: Sequence[int]) -> list[Completion]:
        """One request per ``(messages[i], seeds[i])``, at most ``max_concurrency`` in flight; results in
        input order. The first request that fails for good raises, and the requests not yet started are
        cancelled."""
        _check_batch(messages, seeds)
        if not messages:
            return []
        abort = threading.Event()  # set on the first final failure: running requests stop retrying
        with ThreadPoolExecutor(max_workers=min(self.max_concurrency, len(messages))) as pool:
            futures = [
                pool.submit(self._complete, m, int(s), abort) for m, s in zip(messages, seeds, strict=True)
            ]
            try:
                return [f.result() for f in futures]
            except BaseException:
                abort.set()
                for f in futures:
                    f.cancel()
                raise

    # Alike in shape to TransformersTeacher.describe: each backend reports its own settings.
    def describe(self) -> dict[str, Any]:
        return {
            "backend": "openai-compatible",
            "model": self.model,
            "base_url": self.base_url,
            "temperature": self.temperature,
            "top_p": self.top_p,
            "max_new_tokens": self.max_new_tokens,
            "system_prompt": self.system_prompt,
            "extra_body": dict(self.extra_body),
            "max_concurrency": self.max_concurrency,
            "timeout": self.timeout,
            "max_retries": self.max_retries,
            "authenticated": self.__api_key is not None,
        }

    # -- internals

    def _redact(self, text: str) -> str:
        return text.replace(self.__api_key, "***") if self.__api_key else text

    def _request(self, body: bytes) -> urllib.request.Request:
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self.__api_key:
            headers["Authorization"] = f"Bearer {self.__api_key}"
        return urllib.request.Request(self.url, data=body, headers=headers, method="POST")

    def _complete(self, messages: Messages, seed: int, abort: threading.Event) -> Completion:
        body = json.dumps(
            {
                **self.extra_body,
                "model": self.model,
                "messages": _with_system(messages, self.system_prompt),
                "temperature": self.temperature,
                "top_p": self.top_p,
                "max_tokens": self.max_new_tokens,
                "seed": seed,
                "n": 1,
            }
        ).encode()
        jitter = random.Random(seed)
        last: _Retryable | None = None
        for attempt in range(self.max_retries + 1):
            if abort.is_set():
                raise TeacherRequestError(
                    f"request to {self.url} abandoned: another request of the batch failed"
                )
            try:
                return self._attempt(body)
            except _Retryable as exc:
                last = exc
            if attempt == self.max_retries:
                break
            delay = min(self.max_backoff, self.backoff * 2**attempt) * jitter.uniform(0.5, 1.0)
            if last.retry_after is not None:
                delay = min(self.max_backoff, max(delay, last.retry_after))
            logger.warning(
                "request to %s (model %r, seed %d) failed: %s; retry %d/%d in %.2fs",
                self.url,
                self.model,
                seed,
                last,
                attempt + 1,
                self.max_retries,
                delay,
            )
            abort.wait(delay)
        assert last is not None
        raise TeacherRequestError(
            f"request to {self.url} (model {self.model!r}, seed {seed}) failed after {self.max_retries + 1} "
            f"attempts; last failure: {last}. Check that the server is up and not overloaded, or raise "
            "max_retries / timeout",
            status=last.status,
        )

    def _attempt(self, body: bytes) -> Completion:
        """One HTTP round trip: a Completion, or _Retryable, or TeacherRequestError for a final 4xx."""
        try:
            with urllib.request.urlopen(self._request(body), timeout=self.timeout) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as exc:
            try:
                detail = exc.read().decode("utf-8", "replace")
            except Exception:  # noqa: BLE001  (the body is only for the message)
                detail = ""
            detail = self._redact(_server_message(detail))[:500]
            if exc.code == 429 or exc.code >= 500:
                retry_after = _parse_retry_after(exc.headers.get("Retry-After") if exc.headers else None)
                raise _Retryable(f"HTTP {exc.code}: {detail}", exc.code, retry_after) from None
            raise TeacherRequestError(
                f"{self.url} (model {self.model!r}) answered HTTP {exc.code}: {detail or exc.reason}. This is "
                "not retried: check the model name, the request settings (max_new_tokens vs the context "
                "length, extra_body) and the API key",
                status=exc.code,
            ) from None
        except TimeoutError as exc:
            raise _Retryable(f"timed out after {self.timeout}s ({exc})") from None
        except urllib.error.URLError as exc:
            kind = "timed out" if isinstance(exc.reason, TimeoutError) else "connection error"
            raise _Retryable(f"{kind}: {self._redact(str(exc.reason))}") from None
        except (ConnectionError, http.client.HTTPException, OSError) as exc:
            raise _Retryable(f"connection error: {type(exc).__name__}: {self._redact(str(exc))}") from None
        return self._parse(raw)

    def _parse(self, raw: bytes) -> Completion:
        try:
            data = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise _Retryable(
                f"malformed JSON in the answer: {self._redact(raw[:200].decode('utf-8', 'replace'))!r}"
            ) from None
        try:
            choice = data["choices"][0]
            content = choice["message"]["content"]
        except (KeyError, IndexError, TypeError):
            raise _Retryable(
                f"answer without choices[0].message.content: {self._redact(str(data)[:200])!r}"
            ) from None
        if not isinstance(content, str):
            raise _Retryable(f"answer content is {type(content).__name__}, not text")
        usage = data.get("usage") if isinstance(data, dict) else None
        num_tokens = usage.get("completion_tokens") if isinstance(usage, dict) else None
        return Completion(
            text=content,
            finish_reason=choice.get("finish_reason"),
            num_tokens=int(num_tokens) if isinstance(num_tokens, int) else None,
        )


def _server_message(body: str) -> str:
    """The human part of an error body: ``error.message`` of an OpenAI-style error, else the body itself."""
    try:
        data = json.loads(body)
    except (json.JSONDecodeError, ValueError):
        return body.strip()
    if isinstance(data, dict):
        err = data.get("error", data)
        if isinstance(err, dict) and isinstance(err.get("message"), str):
            return err["message"]
        if isinstance(err, str):
            return err
        if isinstance(data.get("message"), str):
            return data["message"]
    return body.strip()
