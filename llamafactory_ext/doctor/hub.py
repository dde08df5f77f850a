"""Hub probe: every model and pool the config names on the Hugging Face Hub is cached, or can be downloaded
(a token for gated repositories; not offline). Reads only the local cache and token: never the network."""

from __future__ import annotations

import json
from pathlib import Path

from llamafactory_ext.doctor.target import Check, Target


def hub_repos(t: Target) -> list[tuple[str, str]]:
    """(repo id, "model" | "dataset") of everything the config reads from the hub."""
    repos = []
    if t.model and not Path(t.model).exists() and "/" in t.model:
        repos.append((t.model, "model"))
    info_path = Path(t.dataset_dir) / "dataset_info.json"
    try:
        info = json.loads(info_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        info = {}
    for name in t.datasets:
        entry = info.get(name)
        if isinstance(entry, dict):
            if entry.get("hf_hub_url"):
                repos.append((entry["hf_hub_url"], "dataset"))
        elif not Path(name).exists() and "/" in name:
            repos.append((name, "dataset"))
    return repos


def cached_repos() -> set[tuple[str, str]]:
    from huggingface_hub import scan_cache_dir

    try:
        return {(r.repo_id, r.repo_type) for r in scan_cache_dir().repos}
    except Exception:  # no cache folder yet
        return set()


def check_hub(t: Target) -> Check:
    from huggingface_hub import constants, get_token

    repos = hub_repos(t)
    if not repos:
        return Check("hub access", "skip", "nothing from the hub" if t.kind else "no recipe or study given")
    cached = cached_repos()
    missing = [f"{kind} {repo}" for repo, kind in repos if (repo, kind) not in cached]
    if not missing:
        return Check("hub access", "ok", "cached: " + ", ".join(r for r, _ in repos))
    if constants.HF_HUB_OFFLINE:
        return Check("hub access", "blocker", f"HF_HUB_OFFLINE=1 and not cached: {', '.join(missing)}",
                     "download them first (hf download REPO [--repo-type dataset]) or unset HF_HUB_OFFLINE")
    if get_token():
        return Check("hub access", "ok", f"will download {', '.join(missing)} (logged in)")
    return Check("hub access", "warn", f"will download {', '.join(missing)} without a token: a gated or "
                 "private repository fails there", "hf auth login (and accept the repository's terms on its page)")


PROBES = (check_hub,)
