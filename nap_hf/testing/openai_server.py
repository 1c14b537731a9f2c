"""A small OpenAI-compatible chat-completions server for tests and development: it serves a local teacher (or
any Python callable) on 127.0.0.1 and can inject faults (HTTP 500 / 429, hangs, malformed or truncated
answers, slow answers) on a deterministic schedule, to exercise :class:`~nap_hf.data.teachers.
OpenAICompatibleTeacher`'s retries. For real data generation use vLLM, TGI or SGLang; this server runs one
model call at a time.

Serve a local model for development::

    python -m nap_hf.testing.openai_server MODEL_DIR --port 8000
    # then: OpenAICompatibleTeacher("MODEL_NAME", "http://127.0.0.1:8000/v1")

In tests::

    plan = FaultPlan(schedule={0: "http_500", 1: "timeout"}, rates={"http_429": 0.2}, seed=0)
    with OpenAICompatibleServer(lambda messages, seed, max_tokens, temperature: "hi", faults=plan) as server:
        teacher = OpenAICompatibleTeacher("tiny", server.base_url, timeout=0.5, backoff=0.01)
        ...
        server.max_in_flight, server.faults_injected
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from ..data.teachers import Completion, Messages, Teacher, TransformersTeacher

__all__ = ["FAULT_KINDS", "FaultPlan", "OpenAICompatibleServer", "main"]

logger = logging.getLogger(__name__)

FAULT_KINDS: tuple[str, ...] = (
    "http_500",  # 500 with an OpenAI-style error body
    "http_429",  # 429 with a Retry-After header (FaultPlan.retry_after seconds)
    "http_400",  # 400 Bad Request (a client error: must NOT be retried)
    "timeout",  # hold the connection FaultPlan.hang seconds, then close it without answering
    "malformed_json",  # 200 with a body that is not JSON
    "no_choices",  # 200 with valid JSON but an empty `choices` list
    "truncated",  # 200 whose body stops halfway through its Content-Length
    "slow",  # a correct answer after FaultPlan.slow seconds
)
"""The faults a :class:`FaultPlan` can inject; every kind but ``slow`` replaces the answer."""

Backend = Callable[[Messages, int, int, float], "str | Completion"]


@dataclass(frozen=True)
class FaultPlan:
    """Which fault (if any) the server injects into its ``n``-th chat-completions request (0-based, in arrival
    order). A request in ``schedule`` gets that fault; every other request draws one from ``rates`` with a
    random stream seeded by ``(seed, n)``, so the plan is reproducible. Faults never change the text of a
    successful answer, which depends only on the messages and the seed.

    Args:
        schedule: request number → fault kind (one of :data:`FAULT_KINDS`).
        rates: fault kind → probability per request (sum at most 1).
        seed: seed of the per-request draws.
        retry_after: seconds sent in the Retry-After header of ``http_429``.
        hang: seconds a ``timeout`` fault holds the connection (longer than the client's timeout).
        slow: seconds a ``slow`` answer waits before answering.
    """

    schedule: Mapping[int, str] = field(default_factory=dict)
    rates: Mapping[str, float] = field(default_factory=dict)
    seed: int = 0
    retry_after: float = 0.05
    hang: float = 2.0
    slow: float = 0.2

    def __post_init__(self) -> None:
        for where, kinds in (("schedule", self.schedule.values()), ("rates", self.rates.keys())):
            bad = sorted(set(kinds) - set(FAULT_KINDS))
            if bad:
                raise ValueError(
                    f"FaultPlan {where} has unknown fault kinds {bad}; choose from {list(FAULT_KINDS)}"
                )
        if any(p < 0 for p in self.rates.values()) or sum(self.rates.values()) > 1 + 1e-9:
            raise ValueError(f"FaultPlan rates must be >= 0 and sum to at most 1, got {dict(self.rates)}")
        if min(self.retry_after, self.hang, self.slow) < 0:
            raise ValueError("FaultPlan retry_after, hang and slow are durations in seconds and must be >= 0")

    def fault_for(self, n: int) -> str | None:
        """The fault of request ``n``, or None for a normal answer."""
        if n in self.schedule:
            return self.schedule[n]
        if not self.rates:
            return None
        u = random.Random(f"{self.seed}:{n}").random()
        for kind in FAULT_KINDS:  # fixed order: the draw maps to the same kind on every run
            u -= self.rates.get(kind, 0.0)
            if u < 0:
                return kind
        return None


class _BadRequest(Exception):
    def __init__(self, status: int, message: str, kind: str = "invalid_request_error"):
        super().__init__(message)
        self.status, self.kind = status, kind


def _as_backend(backend: TransformersTeacher | Teacher | Backend) -> Callable[..., Completion]:
    """Normalise the backend to ``(messages, seed, max_tokens, temperature, top_p) -> Completion``;
    ``max_tokens`` None means the backend's own default."""
    if isinstance(backend, TransformersTeacher):

        def run(messages, seed, max_tokens, temperature, top_p):
            return backend.sample(
                [messages], [seed], temperature=temperature, max_new_tokens=max_tokens, top_p=top_p
            )[0]

        return run
    if isinstance(backend, Teacher):  # its own sampling settings; the request's are ignored
        return lambda messages, seed, max_tokens, temperature, top_p: backend.generate([messages], [seed])[0]
    if callable(backend):

        def call(messages, seed, max_tokens, temperature, top_p):
            out = backend(messages, seed, 512 if max_tokens is None else max_tokens, temperature)
            if isinstance(out, Completion):
                return out
            if not isinstance(out, str):
                raise TypeError(f"the server backend must return str or Completion, got {type(out).__name__}")
            return Completion(text=out, finish_reason="stop")

        return call
    raise TypeError(
        "backend must be a TransformersTeacher, a Teacher, or a callable (messages, seed, max_tokens, "
        f"temperature) -> str; got {type(backend).__name__}"
    )


class OpenAICompatibleServer:
    """``POST /v1/chat/completions`` and ``GET /v1/models`` on ``host:port`` (port 0 = a free port), served by
    a ``ThreadingHTTPServer`` in a background thread. Backend calls run one at a time (under a lock); fault
    injection, slow answers and hangs happen outside the lock, so they overlap.

    Args:
        backend: a :class:`TransformersTeacher` (the request's temperature, top_p and max_tokens apply), any
            other :class:`Teacher` (its own settings apply), or a callable
            ``(messages, seed, max_tokens, temperature) -> str | Completion``.
        host, port: where to listen.
        faults: a :class:`FaultPlan`; None injects nothing.
        model_name: the served model name; requests naming another model get a 404, as from vLLM.
        api_key: if set, requests must carry ``Authorization: Bearer <api_key>``, else 401. The 401 message
            quotes the presented key, as some servers do, so that tests can check the client redacts it.

    Counters (thread-safe reads): ``requests_received`` (chat requests), ``requests_served`` (correct
    answers), ``faults_injected`` (a Counter by kind), ``in_flight`` and ``max_in_flight``.
    """

    def __init__(
        self,
        backend: TransformersTeacher | Teacher | Backend,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        faults: FaultPlan | None = None,
        model_name: str = "tiny",
        api_key: str | None = None,
    ):
        self._backend = _as_backend(backend)
        self.model_name = model_name
        self.faults = faults or FaultPlan()
        self._api_key = api_key
        self._host, self._port = host, port
        self._lock = threading.Lock()  # counters
        self._model_lock = threading.Lock()  # one backend call at a time
        self._stopping = threading.Event()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.requests_received = 0
        self.requests_served = 0
        self.faults_injected: Counter[str] = Counter()
        self.in_flight = 0
        self.max_in_flight = 0

    # -- lifecycle

    def start(self) -> OpenAICompatibleServer:
        """Bind and serve in a daemon thread; returns self."""
        if self._httpd is not None:
            return self
        self._stopping.clear()
        self._httpd = ThreadingHTTPServer((self._host, self._port), self._handler_class())
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, args=(0.05,), name="openai-server", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving; hanging fault handlers are woken up and return."""
        if self._httpd is None:
            return
        self._stopping.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join()
        self._httpd = self._thread = None

    def serve_forever(self) -> None:
        """Serve in the calling thread until interrupted (the CLI)."""
        self.start()
        try:
            while self._thread is not None and self._thread.is_alive():
                self._thread.join(0.5)
        except KeyboardInterrupt:
            pass
        finally:
            self.stop()

    def __enter__(self) -> OpenAICompatibleServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._httpd is None:
            raise RuntimeError("the server is not running: call start() or use it as a context manager")
        return self._httpd.server_address[1]

    @property
    def base_url(self) -> str:
        """The API root for clients, e.g. ``http://127.0.0.1:41234/v1``."""
        return f"http://{self._host}:{self.port}/v1"

    # -- request handling

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        return type("Handler", (_Handler,), {"owner": self})


class _Handler(BaseHTTPRequestHandler):
    """The HTTP side of :class:`OpenAICompatibleServer`; ``owner`` (set per server by
    :meth:`OpenAICompatibleServer._handler_class`) holds the backend, the fault plan and the counters."""

    owner: OpenAICompatibleServer
    server_version = "nap-hf-openai-server/0.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002  (stdlib signature)
        logger.debug("%s - " + format, self.address_string(), *args)

    def do_GET(self) -> None:  # noqa: N802  (stdlib name)
        path = self.path.split("?")[0].rstrip("/")
        if path in ("/v1/models", "/models"):
            model = {"id": self.owner.model_name, "object": "model", "created": 0, "owned_by": "nap_hf"}
            self._json(200, {"object": "list", "data": [model]})
        elif path in ("/health", "/v1/health"):
            self._json(200, {"status": "ok"})
        else:
            self._error(404, f"no route GET {self.path}", "not_found_error")

    def do_POST(self) -> None:  # noqa: N802
        path = self.path.split("?")[0].rstrip("/")
        if path not in ("/v1/chat/completions", "/chat/completions"):
            self._error(404, f"no route POST {self.path}; use /v1/chat/completions", "not_found_error")
            return
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        with self.owner._lock:
            n = self.owner.requests_received
            self.owner.requests_received += 1
            self.owner.in_flight += 1
            self.owner.max_in_flight = max(self.owner.max_in_flight, self.owner.in_flight)
        try:
            self._chat(n, raw)
        finally:
            with self.owner._lock:
                self.owner.in_flight -= 1

    def _chat(self, n: int, raw: bytes) -> None:
        if self.owner._api_key is not None:
            auth = self.headers.get("Authorization", "")
            if auth != f"Bearer {self.owner._api_key}":
                given = auth.removeprefix("Bearer ")
                self._error(401, f"Incorrect API key provided: {given}", "authentication_error")
                return
        fault = self.owner.faults.fault_for(n)
        if fault is not None:
            with self.owner._lock:
                self.owner.faults_injected[fault] += 1
            if self._inject(fault):
                return
        try:
            messages, seed, max_tokens, temperature, top_p = self._parse(raw)
        except _BadRequest as exc:
            self._error(exc.status, str(exc), exc.kind)
            return
        try:
            with self.owner._model_lock:
                done = self.owner._backend(messages, seed, max_tokens, temperature, top_p)
        except Exception as exc:  # noqa: BLE001  (report backend failures as a 500, keep serving)
            logger.exception("backend failed on request %d", n)
            self._error(500, f"backend error: {type(exc).__name__}: {exc}", "server_error")
            return
        self._json(200, _chat_completion(self.owner.model_name, done))
        with self.owner._lock:
            self.owner.requests_served += 1

    def _inject(self, fault: str) -> bool:
        """Apply `fault`; True when it replaced the answer."""
        plan = self.owner.faults
        if fault == "slow":
            self.owner._stopping.wait(plan.slow)
            return False
        if fault == "http_500":
            self._error(500, "injected fault: internal server error", "server_error")
        elif fault == "http_429":
            self._error(
                429,
                "injected fault: rate limit",
                "rate_limit_error",
                {"Retry-After": f"{plan.retry_after:g}"},
            )
        elif fault == "http_400":
            self._error(400, "injected fault: bad request")
        elif fault == "timeout":
            self.owner._stopping.wait(plan.hang)
            self.close_connection = True
        elif fault == "malformed_json":
            self._send(
                200,
                b'{"id": "chatcmpl-x", "choices": [{"message": {"content": "unterminated',
                "application/json",
            )
        elif fault == "no_choices":
            self._json(200, {"id": "chatcmpl-x", "object": "chat.completion", "choices": []})
        elif fault == "truncated":
            body = json.dumps(_chat_completion(self.owner.model_name, Completion("x" * 64, "stop"))).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.close_connection = True
        return True

    def _parse(self, raw: bytes) -> tuple[Messages, int, int | None, float, float]:
        try:
            req = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise _BadRequest(400, "the request body is not valid JSON") from None
        if not isinstance(req, dict):
            raise _BadRequest(400, "the request body must be a JSON object")
        if req.get("model") != self.owner.model_name:
            raise _BadRequest(
                404,
                f"The model `{req.get('model')}` does not exist; this server serves `{self.owner.model_name}`",
                "not_found_error",
            )
        messages = req.get("messages")
        if not (
            isinstance(messages, list)
            and messages
            and all(isinstance(m, dict) and isinstance(m.get("content"), str) for m in messages)
        ):
            raise _BadRequest(400, "`messages` must be a non-empty list of {role, content} objects")
        if req.get("n", 1) != 1:
            raise _BadRequest(400, "only n=1 is supported")
        if req.get("stream"):
            raise _BadRequest(400, "streaming is not supported")
        seed = req.get("seed")
        seed = random.randrange(2**31) if seed is None else seed
        max_tokens = req.get("max_completion_tokens", req.get("max_tokens"))
        temperature, top_p = req.get("temperature", 1.0), req.get("top_p", 1.0)
        if not isinstance(seed, int) or (max_tokens is not None and not isinstance(max_tokens, int)):
            raise _BadRequest(400, "`seed` and `max_tokens` must be integers")
        if max_tokens is not None and max_tokens < 1:
            raise _BadRequest(400, "`max_tokens` must be >= 1")
        if not isinstance(temperature, (int, float)) or not isinstance(top_p, (int, float)):
            raise _BadRequest(400, "`temperature` and `top_p` must be numbers")
        if temperature < 0 or not 0 < top_p <= 1:
            raise _BadRequest(400, "`temperature` must be >= 0 and `top_p` in (0, 1]")
        return messages, seed, max_tokens, float(temperature), float(top_p)

    def _error(self, status: int, message: str, kind: str = "invalid_request_error", headers=None) -> None:
        body = {"error": {"message": message, "type": kind, "code": status}}
        self._json(status, body, headers)

    def _json(self, status: int, data: Any, headers: Mapping[str, str] | None = None) -> None:
        self._send(status, json.dumps(data).encode(), "application/json", headers)

    def _send(self, status: int, body: bytes, ctype: str, headers: Mapping[str, str] | None = None) -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout): nothing to do
            self.close_connection = True


def _chat_completion(model_name: str, done: Completion) -> dict[str, Any]:
    """An OpenAI ``chat.completion`` object holding one choice."""
    tokens = done.num_tokens or 0
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model_name,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": done.text},
                "finish_reason": done.finish_reason or "stop",
            }
        ],
        "usage": {"prompt_tokens": 0, "completion_tokens": tokens, "total_tokens": tokens},
    }


def main(argv: list[str] | None = None) -> None:
    """``python -m nap_hf.testing.openai_server MODEL_DIR [--port 8000]``: serve a local causal LM."""
    parser = argparse.ArgumentParser(
        prog="python -m nap_hf.testing.openai_server",
        description="Serve a local causal LM (a transformers checkpoint or GGUF file) behind an OpenAI-compatible "
        "chat-completions API, one request at a time. For development and demos; use vLLM/TGI at scale.",
    )
    parser.add_argument("model", metavar="MODEL_DIR", help="a local checkpoint directory (or hub id)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000, help="0 picks a free port (default 8000)")
    parser.add_argument(
        "--model-name", default=None, help="served model name (default: MODEL_DIR's base name)"
    )
    parser.add_argument("--gguf-file", default=None, help="a GGUF file inside MODEL_DIR")
    parser.add_argument("--dtype", default=None, help="e.g. float32, bfloat16 (default: auto)")
    parser.add_argument("--device", default=None, help="e.g. cpu, cuda (default: cuda if available)")
    parser.add_argument("--max-new-tokens", type=int, default=512, help="default when a request sets none")
    parser.add_argument(
        "--stop-token",
        action="append",
        default=None,
        help="a token that ends an answer (repeatable), e.g. '<|im_end|>' for GGUF chat models; "
        "default: the model's EOS",
    )
    parser.add_argument("--api-key", default=None, help="require this bearer token from clients")
    parser.add_argument("--trust-remote-code", action="store_true", help="allow the checkpoint's own code")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    from transformers import AutoTokenizer

    load = {"trust_remote_code": args.trust_remote_code}
    if args.gguf_file:
        load["gguf_file"] = args.gguf_file
    tokenizer = AutoTokenizer.from_pretrained(args.model, **load)
    eos = None
    if args.stop_token:
        eos = [tokenizer.convert_tokens_to_ids(t) for t in args.stop_token]
        unknown = [
            t for t, i in zip(args.stop_token, eos, strict=True) if i is None or i == tokenizer.unk_token_id
        ]
        if unknown:
            parser.error(f"--stop-token {unknown} not in the tokenizer's vocabulary")
    teacher = TransformersTeacher(
        args.model,
        tokenizer,
        max_new_tokens=args.max_new_tokens,
        batch_size=1,
        device=args.device,
        dtype=args.dtype,
        gguf_file=args.gguf_file,
        trust_remote_code=args.trust_remote_code,
        eos_token_id=eos,
    )
    name = args.model_name or Path(str(args.model).rstrip("/")).name
    server = OpenAICompatibleServer(
        teacher, host=args.host, port=args.port, model_name=name, api_key=args.api_key
    )
    server.start()
    print(f"serving {name!r} at {server.base_url} (Ctrl-C to stop)", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
