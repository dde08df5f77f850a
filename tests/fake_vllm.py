"""A stand-in for ``vllm serve`` on CPU: the same command line, an OpenAI-compatible HTTP server on 127.0.0.1.

``python fake_vllm.py serve MODEL --host H --port P --served-model-name NAME [any other vllm flag VALUE]``
answers ``GET /health``, ``GET /v1/models`` and ``POST /v1/chat/completions`` / ``/v1/completions``; every
answer's text is ``$FAKE_VLLM_ANSWER`` (default ``The answer is \\boxed{42}.``), ``n`` choices per request.
Each request body is appended to ``$FAKE_VLLM_REQUESTS`` (JSONL) and the process id is written to
``$FAKE_VLLM_PID`` when set. ``$FAKE_VLLM_MODE``: ``exit`` (print an error and exit 1 before serving),
``hang`` (never become healthy), ``slow`` (healthy after 3 s). Used by tests/llamafactory_ext/test_vllm_server.py
and ``bench/gpu_check.py --dry-run``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ANSWER = os.environ.get("FAKE_VLLM_ANSWER", "The answer is \\boxed{42}.")
MODE = os.environ.get("FAKE_VLLM_MODE", "")
_lock = threading.Lock()


def parse(argv: list[str]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="vllm")
    ap.add_argument("command", choices=["serve"])
    ap.add_argument("model")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8000)
    ap.add_argument("--served-model-name", default=None)
    args, _other_vllm_flags = ap.parse_known_args(argv)
    return args


class Handler(BaseHTTPRequestHandler):
    served_name = "model"
    ready_at = 0.0

    def log_message(self, fmt, *args):  # to the server log (stderr), like vLLM's access log
        sys.stderr.write("fake-vllm: " + fmt % args + "\n")

    def _json(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        if time.monotonic() < self.ready_at or MODE == "hang":
            return self._json(503, {"error": "loading"})
        if self.path == "/health":
            return self._json(200, {})
        if self.path == "/v1/models":
            return self._json(200, {"object": "list", "data": [{"id": self.served_name, "object": "model"}]})
        return self._json(404, {"error": self.path})

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
        log = os.environ.get("FAKE_VLLM_REQUESTS")
        if log:
            with _lock, open(log, "a", encoding="utf-8") as f:
                f.write(json.dumps({"path": self.path, **body}) + "\n")
        if body.get("model") != self.served_name:
            return self._json(404, {"error": {"message": f"model {body.get('model')!r} not served"}})
        n = int(body.get("n") or 1)
        chat = self.path.endswith("/chat/completions")
        choices = [
            {"index": i, "finish_reason": "stop", "logprobs": None,
             **({"message": {"role": "assistant", "content": ANSWER}} if chat else {"text": ANSWER})}
            for i in range(n)
        ]  # fmt: skip
        self._json(200, {"id": "cmpl-fake", "object": "chat.completion" if chat else "text_completion",
                         "created": int(time.time()), "model": self.served_name, "choices": choices,
                         "usage": {"prompt_tokens": 10, "completion_tokens": 8 * n, "total_tokens": 10 + 8 * n}})


def main(argv: list[str] | None = None) -> None:
    args = parse(sys.argv[1:] if argv is None else argv)
    if os.environ.get("FAKE_VLLM_PID"):
        with open(os.environ["FAKE_VLLM_PID"], "w") as f:
            f.write(str(os.getpid()))
    print(f"fake-vllm: serving {args.model} as {args.served_model_name} on {args.host}:{args.port}", flush=True)
    if MODE == "exit":
        print("fake-vllm: ValueError: this stand-in was told to fail at start-up", file=sys.stderr, flush=True)
        sys.exit(1)
    Handler.served_name = args.served_model_name or args.model
    Handler.ready_at = time.monotonic() + (3.0 if MODE == "slow" else 0.0)
    ThreadingHTTPServer((args.host, args.port), Handler).serve_forever()


if __name__ == "__main__":
    main()
