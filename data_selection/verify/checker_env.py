"""Grading with another environment's math-verify (``data-select verify --checker_python PYTHON``).

The main environment holds math-verify 0.5.2 (lighteval 0.13 pins its LaTeX parser, latex2sympy2_extended
1.0.6); a newer math-verify lives in its own environment (``make install-verify`` builds ``.venv-verify`` from
constraints/verify.txt). With ``--checker_python`` the main process does everything it does otherwise (pool,
shards, merge) except grading: each shard is written to a JSON file and graded by ``PYTHON -m
data_selection.verify.worker IN OUT`` (the repository on ``PYTHONPATH``), which writes the shard's parquet file
atomically and prints its counters and the checker that graded (:data:`RESULT_PREFIX` line). The runner keeps
one such worker per ``--workers`` alive (``--serve``: one shard per line on its stdin), so math-verify loads once
per worker, not once per shard.

Which checker grades is part of a verify output's identity (``meta.json`` ``identity.checker``, e.g. ``math-verify
0.9.0 (latex2sympy2_extended 1.11.0)``): :func:`check_same_checker` refuses to resume a folder graded by another
one, and every worker checks it grades with the checker the run recorded before it writes a shard.
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import asdict
from pathlib import Path
from typing import Any

from data_selection.atomic import write_json_atomic
from data_selection.command_line import UserError
from data_selection.shards.layout import META, read_meta

REPO_ROOT = Path(__file__).resolve().parents[2]  # the folder holding data_selection/: the worker's PYTHONPATH
WORKER = "data_selection.verify.worker"
RESULT_PREFIX = "VERIFY_RESULT "  # the worker's last stdout line: this prefix, then JSON
PROBE_TIMEOUT_S = 300.0


def worker_env() -> dict[str, str]:
    """This process's environment with the repository first on ``PYTHONPATH``, so the worker imports our code."""
    old = os.environ.get("PYTHONPATH", "")
    return {**os.environ, "PYTHONPATH": str(REPO_ROOT) + (os.pathsep + old if old else "")}


def parse_result(stdout: str) -> dict[str, Any] | None:
    """The worker's result (its last :data:`RESULT_PREFIX` line), None when it printed none."""
    for line in reversed(stdout.splitlines()):
        if line.startswith(RESULT_PREFIX):
            return json.loads(line[len(RESULT_PREFIX):])
    return None


def _tail(text: str, n: int = 1500) -> str:
    text = text.strip()
    return ("…" + text[-n:]) if len(text) > n else text


# The probe: math-verify first (the usual gap), then our worker (pandas, numpy, pyarrow besides math-verify).
_PROBE = ("import sys\ntry:\n    import math_verify\nexcept Exception as err:\n"
          "    print(f'{type(err).__name__}: {err}', file=sys.stderr)\n    sys.exit(4)\n"
          f"from {WORKER} import main\nsys.exit(main(['--probe']))")
NO_MATH_VERIFY = 4


def probe(python: str, name: str = "--checker_python") -> dict[str, Any]:
    """What ``python`` grades with: ``{"checker": label, "version", "python", "python_version"}``. A UserError naming
    ``name`` when it does not run, lacks math-verify, or cannot import our worker."""
    try:
        done = subprocess.run([python, "-c", _PROBE], env=worker_env(), capture_output=True, text=True,
                              timeout=PROBE_TIMEOUT_S)
    except OSError as err:
        raise UserError(f"{name} {python}: cannot be started ({err})") from err
    except subprocess.TimeoutExpired as err:
        raise UserError(f"{name} {python}: importing math-verify took over {PROBE_TIMEOUT_S:.0f} s") from err
    result = parse_result(done.stdout) if done.returncode == 0 else None
    if result is not None:
        return result
    err = _tail(done.stderr or done.stdout, 600) or "no output"
    if done.returncode == NO_MATH_VERIFY:
        raise UserError(f"{name} {python}: math_verify does not import there ({err}); build the checker "
                        "environment with `make install-verify` and give .venv-verify/bin/python")
    raise UserError(f"{name} {python}: did not run {WORKER} as a Python with math-verify would (exit "
                    f"{done.returncode}; the worker needs math-verify, pandas, numpy and pyarrow: constraints/"
                    f"verify.txt): {err}")


def check_same_checker(out: Path, checker: str, where: str, overwrite: bool) -> None:
    """Refuse to resume ``out`` when another checker graded it (``where`` names this run's interpreter).

    Folders written before the checker was part of the identity: one whose ``verifier.checker`` names this
    checker gets it added to its identity (it resumes); one with no record at all was graded before records were
    kept, by the main environment's math-verify, and is taken as this checker's only when this run grades in
    process. ``--overwrite`` leaves the decision to the identity check (which then clears the folder)."""
    if overwrite or not (Path(out) / META).exists():
        return
    meta = read_meta(out)
    identity = meta.get("identity")
    if not isinstance(identity, dict) or "query_key" not in identity:
        return  # not a verify folder: the identity check says so
    old = identity.get("checker") or (meta.get("verifier") or {}).get("checker")
    in_process = where == "in process"
    if old == checker or (old is None and in_process):
        if identity.get("checker") != checker:
            if old is None:
                print(f"[verify] {out}: no checker recorded (written before verify recorded one); taking it as "
                      f"graded by this environment's {checker}", file=sys.stderr)
            meta["identity"] = {**identity, "checker": checker}
            write_json_atomic(Path(out) / META, meta)
        return
    before = old or "an unrecorded checker (a verify run from before checkers were recorded)"
    raise UserError(f"{out} was graded by {before}; this run grades with {checker} ({where}). Verdicts of two "
                    "checkers are never mixed in one folder: re-run with the checker that graded it "
                    "(--checker_python), or give another --out, or --overwrite to re-grade every shard with "
                    f"{checker}")


def write_payload(directory: Path, k: int, batch: dict[str, Any], settings: Any, checker: str) -> Path:
    """Shard ``k``'s input file for the worker (removed once the worker is done)."""
    fd, name = tempfile.mkstemp(dir=directory, prefix=f".shard-{k:06d}-", suffix=".in.json")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump({"shard": k, "checker": checker, "settings": asdict(settings), "batch": batch}, f)
    return Path(name)


class WorkerDied(Exception):
    pass


class ServingWorker:
    """One ``PYTHON -m data_selection.verify.worker --serve`` process: shards in on stdin, results out on stdout,
    its stderr in a temporary file (read back when it fails)."""

    def __init__(self, python: str):
        self.stderr = tempfile.TemporaryFile(mode="w+", encoding="utf-8")
        self.proc = subprocess.Popen([python, "-m", WORKER, "--serve"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self.stderr, text=True, env=worker_env(), bufsize=1)

    def grade(self, in_path: Path, out_path: Path) -> dict[str, Any]:
        """The worker's result line for one shard; WorkerDied (with its exit status and stderr) when it ends."""
        try:
            self.proc.stdin.write(json.dumps({"in": str(in_path), "out": str(out_path)}) + "\n")
            self.proc.stdin.flush()
            for line in self.proc.stdout:
                if line.startswith(RESULT_PREFIX):
                    return json.loads(line[len(RESULT_PREFIX):])
        except (BrokenPipeError, OSError):
            pass
        code = self.proc.wait()
        self.stderr.seek(0)
        raise WorkerDied(f"exit {code}): {_tail(self.stderr.read()) or 'no output'}")

    def close(self) -> None:
        try:
            self.proc.stdin.close()
            self.proc.wait(timeout=60)
        except (OSError, subprocess.TimeoutExpired):
            self.proc.kill()
            self.proc.wait()
        self.stderr.close()


class WorkerPool:
    """``workers`` serving processes, started when first needed; one that dies is replaced for the next shard."""

    def __init__(self, python: str, workers: int):
        self.python = python
        self.free: queue.Queue[ServingWorker | None] = queue.Queue()
        for _ in range(workers):
            self.free.put(None)
        self.started: list[ServingWorker] = []

    def run_shard(self, k: int, in_path: Path, out_path: Path, checker: str) -> dict[str, Any]:
        """Grade shard ``k``; its counters. A UserError naming the shard when it fails."""
        worker = self.free.get()
        try:
            if worker is None:
                worker = ServingWorker(self.python)
                self.started.append(worker)
            result = worker.grade(in_path, out_path)
        except WorkerDied as err:
            worker = None
            raise UserError(f"--checker_python {self.python}: the worker grading shard {k} ({out_path.name}) died "
                            f"({err}. The finished shards are kept: re-run the same command to continue") from err
        finally:
            in_path.unlink(missing_ok=True)
            self.free.put(worker)
        if "error" in result:
            out_path.unlink(missing_ok=True)
            raise UserError(f"--checker_python {self.python}: grading shard {k} ({out_path.name}) failed: "
                            f"{result['error']}. The finished shards are kept: re-run the same command to continue")
        if result.get("checker") != checker:
            out_path.unlink(missing_ok=True)
            raise UserError(f"--checker_python {self.python}: shard {k} was graded by {result.get('checker')}, not "
                            f"by {checker} as this run records (did the environment change?); shard removed")
        return result

    def close(self) -> None:
        for worker in self.started:
            worker.close()


def run_in_subprocesses(python: str, pending: Iterable[int], workers: int, batch_of: Callable[[int], dict],
                        path_of: Callable[[int], str], settings: Any, checker: str
                        ) -> Iterator[tuple[int, dict[str, Any]]]:
    """Grade the pending shards in ``workers`` serving worker processes; yield (shard, counters) as each ends.

    At most two shards per worker are waiting (their input files written), so memory and disk stay bounded. On a
    failure the shards not started are dropped, those running finish (their files are kept) and the error is
    raised."""
    todo = iter(pending)
    pool = WorkerPool(python, workers)
    try:
        with ThreadPoolExecutor(max_workers=workers) as ex:
            futures: dict[Future, tuple[int, Path]] = {}

            def submit_next() -> None:
                k = next(todo, None)
                if k is not None:
                    out_path = Path(path_of(k))
                    in_path = write_payload(out_path.parent, k, batch_of(k), settings, checker)
                    futures[ex.submit(pool.run_shard, k, in_path, out_path, checker)] = (k, in_path)

            try:
                for _ in range(2 * workers):
                    submit_next()
                while futures:
                    finished, _ = wait(futures, return_when=FIRST_COMPLETED)
                    for fut in finished:
                        k, _ = futures.pop(fut)
                        yield k, fut.result()
                        submit_next()
            finally:
                for fut, (_, in_path) in futures.items():
                    if fut.cancel():
                        in_path.unlink(missing_ok=True)
    finally:
        pool.close()
