"""The evaluated model, staged so lighteval never writes into the user's folder and samples as the protocol says.

lighteval caches generations under ``cache_dir/model_name``; with a local model path (absolute) that is the
model folder itself. The model is therefore staged as ``evals/NAME/model/``: a folder of symlinks to the
model's files (nothing is copied, nothing is written into the user's folder), evaluated under the relative
name ``model``, with the cache in ``evals/NAME/cache/<fingerprint of the model files>``.

lighteval 0.13's transformers backend passes temperature/top_p to ``generate`` but never ``do_sample``, so
sampling silently falls back to greedy unless the model's own generation_config says otherwise, and that
config may add its own top_k/repetition penalty. The staged folder gets a generation_config.json with exactly
the protocol (do_sample, temperature, top_p, top_k disabled, the model's special token ids), which is what the
vLLM backend samples with too.

One evaluation folder holds the results of one model: runs merge (compare reads them all), so another
model's results are refused unless ``--overwrite``.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from pathlib import Path

from huggingface_hub import snapshot_download
from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

from data_selection.command_line import UserError
from llamafactory_ext.evaluation.options import EvalPlan

STAGED_MODEL = "model"
STAGE_MARKER = ".staged_by_llamafactory_ext"


def resolve_model(model: str) -> Path:
    path = Path(model).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise UserError(
                f"{path} is not a model folder (no config.json); for LoRA runs export a merged model first"
            )
        return path.resolve()
    if re.fullmatch(r"[\w.-]+/[\w.-]+", model):
        try:
            return Path(snapshot_download(model))
        except (
            HfHubHTTPError,
            LocalEntryNotFoundError,
            OSError,
            ValueError,
        ) as err:  # offline, unknown, gated…
            raise UserError(
                f"model {model!r} is not a local folder and could not be fetched from the hub: {err}"
            ) from None
    raise UserError(f"model {model!r}: no such folder (and not a hub id like org/name)")


def model_fingerprint(model_dir: Path) -> str:
    """Identity of the model's files (path, sizes, mtimes): a model retrained in place gets a new cache."""
    h = hashlib.sha1(str(model_dir).encode())
    for p in sorted(model_dir.rglob("*")):
        if p.is_file():
            st = p.stat()
            h.update(f"{p.relative_to(model_dir)}:{st.st_size}:{st.st_mtime_ns}".encode())
    return h.hexdigest()[:12]


def protocol_generation_config(model_dir: Path, temperature: float, top_p: float) -> dict:
    original = {}
    if (model_dir / "generation_config.json").is_file():
        original = json.loads((model_dir / "generation_config.json").read_text(encoding="utf-8"))
    config = {k: original[k] for k in ("bos_token_id", "eos_token_id", "pad_token_id") if k in original}
    config.update(do_sample=temperature > 0, temperature=temperature, top_p=top_p, top_k=0)
    return config


def stage_model(model_dir: Path, out: Path, temperature: float, top_p: float) -> Path:
    """``out/model``: symlinks to the model's files plus the protocol's generation_config.json."""
    staged = out / STAGED_MODEL
    if model_dir == staged.resolve() or out.resolve() == model_dir or model_dir in out.resolve().parents:
        raise UserError(f"--out {out} must not be the model folder {model_dir} or inside it")
    if staged.is_symlink():
        staged.unlink()
    elif staged.exists():
        if not (staged / STAGE_MARKER).exists():
            raise UserError(f"{staged} exists and was not made by llamafactory-ext eval; move it away")
        shutil.rmtree(staged)  # symlinks only: rmtree unlinks them, never follows them
    staged.mkdir(parents=True)
    for entry in sorted(model_dir.iterdir()):
        if entry.name != "generation_config.json":
            (staged / entry.name).symlink_to(entry.resolve())
    config = protocol_generation_config(model_dir, temperature, top_p)
    (staged / "generation_config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    (staged / STAGE_MARKER).write_text(f"symlinks to {model_dir}\n", encoding="utf-8")
    return staged


def check_same_model(out: Path, plan: EvalPlan, overwrite: bool) -> None:
    """One folder = one model: results of several runs merge (compare reads them all), so never mix models."""
    produced = [out / "results", out / "details", out / "cache", out / "summary.json", out / "summary.md"]
    if overwrite:
        for p in produced:
            if p.is_dir():
                shutil.rmtree(p)
            elif p.exists():
                p.unlink()
        return
    if not any((out / "results").rglob("results_*.json")):
        return
    previous = None
    if (out / "summary.json").is_file():
        previous = json.loads((out / "summary.json").read_text(encoding="utf-8")).get("plan", {})
    if previous is None or previous.get("model_fingerprint") != plan.model_fingerprint:
        what = f"of {previous.get('model')!r}" if previous else "of an unknown model"
        raise UserError(
            f"{out} already holds results {what} (or of an earlier version of its files); results in "
            "one folder are merged, so use another --out, or --overwrite to delete them"
        )
