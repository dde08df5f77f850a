"""``vllm serve`` on localhost for ``llamafactory-ext eval --backend vllm``: find it, start it, wait, stop it.

Why a server: lighteval 0.13's in-process vLLM backend pins ``vllm>=0.10,<0.10.2``, whose tokenizer code fails
with the transformers 5 that the rest of the stack needs, and no single environment satisfies both. A current
vLLM in its own virtual environment (``make install-vllm`` -> ``.venv-vllm``, pins in ``constraints/vllm.txt``)
serves the staged model over the OpenAI API on 127.0.0.1, and lighteval's litellm backend (in the main
environment) sends it the prompts: the two version sets never meet.

The server's output goes to ``vllm_server.log`` in the evaluation folder; it is started in its own process
group and stopped (SIGTERM, then SIGKILL after a grace period) whatever happens to the evaluation.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from data_selection.command_line import UserError
from llamafactory_ext.evaluation.options import EvalOptions, EvalPlan

LOCALHOST = "127.0.0.1"
INSTALL_HINT = "install it with `make install-vllm` (a separate .venv-vllm), or pass --vllm_bin / set $VLLM_BIN"


def find_vllm(explicit: str | None) -> str:
    """The ``vllm`` executable: --vllm_bin, $VLLM_BIN, .venv-vllm/bin/vllm, then ``vllm`` on PATH."""
    for candidate in (explicit, os.environ.get("VLLM_BIN"), ".venv-vllm/bin/vllm", shutil.which("vllm")):
        if candidate and Path(candidate).is_file():
            return str(Path(candidate).absolute())
    if explicit:
        raise UserError(f"--vllm_bin {explicit}: no such file")
    raise UserError(f"--backend vllm needs a vLLM server executable and none was found: {INSTALL_HINT}")


def free_port(host: str = LOCALHOST) -> int:
    """A port nothing listens on now (the OS picks it); the server binds it a moment later."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def serve_command(vllm_bin: str, model_dir: str, served_name: str, port: int, *, dtype: str,
                  max_model_length: int, gpu_memory_utilization: float, tensor_parallel_size: int,
                  data_parallel_size: int, seed: int) -> list[str]:
    """``vllm serve`` for the staged model on 127.0.0.1:``port`` under the name lighteval will ask for."""
    return [vllm_bin, "serve", model_dir, "--host", LOCALHOST, "--port", str(port),
            "--served-model-name", served_name, "--dtype", dtype, "--max-model-len", str(max_model_length),
            "--gpu-memory-utilization", f"{gpu_memory_utilization:g}",
            "--tensor-parallel-size", str(tensor_parallel_size), "--data-parallel-size", str(data_parallel_size),
            "--seed", str(seed)]  # fmt: skip


def plan_server(plan: EvalPlan, opts: EvalOptions, out: Path, gpu_memory_utilization: float,
                served_name: str = "model") -> None:
    """--backend vllm: the endpoint lighteval will query and, unless --server_url, the ``vllm serve`` command
    for the model staged in ``out/served_name``."""
    if opts.server_url:
        plan.base_url = opts.server_url.rstrip("/")
        return
    port = opts.port or free_port()
    plan.base_url = f"http://{LOCALHOST}:{port}/v1"
    plan.server_command = serve_command(
        find_vllm(opts.vllm_bin), str((out / served_name).resolve()), served_name, port, dtype=plan.dtype,
        max_model_length=plan.max_model_length, gpu_memory_utilization=gpu_memory_utilization,
        tensor_parallel_size=opts.tensor_parallel_size, data_parallel_size=opts.data_parallel_size,
        seed=opts.seed)


def _get(url: str, timeout: float = 5.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:  # noqa: S310 (our own localhost URL)
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, b""
    except (urllib.error.URLError, OSError, TimeoutError):
        return 0, b""


def log_tail(path: Path, lines: int = 25) -> str:
    if not path.is_file():
        return ""
    text = path.read_text(encoding="utf-8", errors="replace").replace("\r", "\n")
    return "\n".join([line for line in text.splitlines() if line.strip()][-lines:])


def wait_until_ready(base_url: str, served_name: str, proc: subprocess.Popen | None, log_path: Path | None,
                     timeout: float, poll: float = 1.0) -> float:
    """Poll ``/health`` then ``/v1/models`` until the server lists ``served_name``; the seconds it took.

    Fails fast, with the log's tail, when the server process exits first; fails after ``timeout`` seconds.
    """
    root = base_url.removesuffix("/v1")
    start = time.monotonic()
    last_note = start
    while True:
        if proc is not None and proc.poll() is not None:
            raise UserError(f"the vLLM server exited with status {proc.returncode} before it was ready; "
                            f"full log: {log_path}\n{log_tail(log_path) if log_path else ''}")
        status, _ = _get(f"{root}/health")
        if status == 200:
            status, body = _get(f"{base_url}/models")
            if status == 200:
                names = [m.get("id") for m in json.loads(body or b"{}").get("data", [])]
                if served_name not in names:
                    raise UserError(f"the server at {base_url} serves {names}, not {served_name!r}")
                return time.monotonic() - start
        elapsed = time.monotonic() - start
        if elapsed > timeout:
            where = f"; full log: {log_path}\n{log_tail(log_path)}" if log_path else ""
            raise UserError(f"no ready OpenAI-compatible server at {base_url} after {timeout:.0f} s "
                            f"(--server_timeout){where}")
        if time.monotonic() - last_note > 30:
            print(f"[eval] waiting for the vLLM server at {base_url} ({elapsed:.0f} s)", file=sys.stderr, flush=True)
            last_note = time.monotonic()
        time.sleep(poll)


def stop(proc: subprocess.Popen, grace: float = 30.0) -> None:
    """SIGTERM to the server's process group (vLLM starts workers), SIGKILL after ``grace`` seconds."""
    if proc.poll() is not None:
        return
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 10.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


@contextmanager
def running_server(command: list[str], base_url: str, served_name: str, log_path: Path, timeout: float,
                   cwd: Path | None = None) -> Iterator[float]:
    """Start ``command``, wait until it serves ``served_name`` at ``base_url`` (yields the seconds that took),
    and stop it on exit, whether the body succeeded or not."""
    print(f"[eval] starting the vLLM server (log: {log_path}): {' '.join(command)}", file=sys.stderr, flush=True)
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=cwd, start_new_session=True)
    try:
        seconds = wait_until_ready(base_url, served_name, proc, log_path, timeout)
        print(f"[eval] vLLM server ready at {base_url} after {seconds:.0f} s", file=sys.stderr, flush=True)
        yield seconds
    finally:
        stop(proc)
