"""``data-select push NAME --repo user/name``: publish a selected subset as a Hugging Face dataset repo.

Hub layout (one commit): ``data/train.jsonl`` (the subset file, byte for byte), ``manifest.json`` and
``README.md`` (the dataset card, whose ``configs`` point ``datasets.load_dataset(repo)`` at the data file).
Before anything is sent, the subset file's sha256 is compared with its manifest (an edited file is refused).
LLaMA-Factory can then train on it with ``"NAME": {"hf_hub_url": "user/name", "columns": {...}}``.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from huggingface_hub import CommitOperationAdd, HfApi

from data_selection.command_line import UserError
from data_selection.options.push import PushOptions
from data_selection.subset import render_card, subset_paths
from data_selection.transforms.output import render_card as render_pruned_card


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def prepare_upload(dataset_dir: str | Path, name: str, license: str = "") -> list[tuple[str, Path | bytes]]:
    """(path in repo, local file or bytes) for every file of the push, after checking them."""
    paths = subset_paths(dataset_dir, name)
    if not paths["manifest"].exists():
        raise UserError(f"{paths['manifest']} not found: make the subset first with `data-select select --name {name}`")
    manifest = json.loads(paths["manifest"].read_text(encoding="utf-8"))
    data = Path(dataset_dir) / manifest["file_name"]
    if not data.exists():
        raise UserError(f"{data} not found (named by {paths['manifest']})")
    if manifest.get("sha256") and _sha256(data) != manifest["sha256"]:
        raise UserError(f"{data} does not match its manifest's sha256 (edited after selection?); re-run select")
    if license or not paths["card"].exists():
        if manifest.get("transform") == "pir-prune":  # a subset edited by prune-steps has its own card
            card = render_pruned_card(manifest, license=license).encode("utf-8")
        else:
            card = render_card(manifest, license=license).encode("utf-8")
    else:
        card = paths["card"].read_bytes()
    return [("data/train.jsonl", data), ("manifest.json", paths["manifest"]), ("README.md", card)]


def upload_files(repo: str, files: list[tuple[str, Path | bytes]], private: bool, token: str | None,
                 message: str) -> str:
    """Create the dataset repo (if needed) and upload everything in one commit. Needs the network."""
    if os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes"):
        raise UserError("push needs the Hugging Face Hub but HF_HUB_OFFLINE is set; unset it (and log in with "
                        "`hf auth login` or set HF_TOKEN)")
    api = HfApi(token=token or None)
    api.create_repo(repo, repo_type="dataset", private=private, exist_ok=True)
    ops = [CommitOperationAdd(path_in_repo=dst, path_or_fileobj=src if isinstance(src, bytes) else str(src))
           for dst, src in files]
    info = api.create_commit(repo, operations=ops, commit_message=message, repo_type="dataset")
    return getattr(info, "commit_url", "") or f"https://huggingface.co/datasets/{repo}"


def run_push(opts: PushOptions) -> dict[str, Any]:
    opts.validate()
    name = opts.names[0]
    files = prepare_upload(Path(opts.dataset_info).parent, name, opts.license)
    url = upload_files(opts.repo, files, opts.private, opts.token, opts.message or f"Upload {name}")
    manifest = json.loads(Path(files[1][1]).read_text(encoding="utf-8"))
    entry = {"hf_hub_url": opts.repo, "formatting": manifest["formatting"], "columns": manifest["columns"]}
    return {"url": url, "files": [dst for dst, _ in files], "entry": entry}
