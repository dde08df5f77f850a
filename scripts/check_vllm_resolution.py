"""Resolver dry run of the vLLM server environment: do ``constraints/vllm.txt``'s pins resolve, to themselves?

``make install-vllm`` installs ``vllm`` with ``-c constraints/vllm.txt`` into ``.venv-vllm``. This runs exactly
that resolution with ``pip install --dry-run --ignore-installed --report`` (nothing is installed or
downloaded beyond metadata), from PyPI with this machine's pip configuration ignored, and checks:

* the resolution succeeds, and every pinned package resolves to its pin;
* the resolved transformers / torch satisfy what the resolved vllm itself declares;
* the set is not a known-broken one (vLLM < 0.11 with transformers >= 5: tokenizer creation fails on
  ``all_special_tokens_extended``). ``--documented`` also resolves the install the README used to give
  (``lighteval[vllm]==0.13.0``) and shows that it lands on such a set.

Exit status: 0 ok, 1 a check failed, 2 the package index cannot be reached (nothing was checked).
Usage: python scripts/check_vllm_resolution.py [--python-version 3.12] [--documented] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONSTRAINTS = ROOT / "constraints" / "vllm.txt"
KEY_PACKAGES = ("vllm", "torch", "transformers", "tokenizers", "lighteval", "datasets")
DOCUMENTED = ["lighteval[vllm]==0.13.0", "xxhash<4", "math-verify"]  # the old README's .venv-vllm install


def pins(path: Path = CONSTRAINTS) -> dict[str, str]:
    """``name==version`` lines of a constraints file (comments and other specifiers ignored)."""
    out = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if "==" in line:
            name, version = line.split("==", 1)
            out[name.strip().lower()] = version.strip()
    return out


def index_reachable(index_url: str, timeout: float = 10.0) -> str | None:
    """None when ``index_url`` answers, else why not."""
    try:
        with urllib.request.urlopen(f"{index_url.rstrip('/')}/pip/", timeout=timeout) as r:  # noqa: S310
            return None if r.status == 200 else f"HTTP {r.status}"
    except OSError as e:
        return f"{type(e).__name__}: {e}"


def dry_run(requirements: list[str], index_url: str, python_version: str | None = None,
            timeout: float = 600.0) -> dict:
    """``pip install --dry-run --ignore-installed --report``: {"rc", "versions", "requires", "error"}."""
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        cmd = [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet",
               "--report", str(report), "--index-url", index_url, *requirements]  # fmt: skip
        if python_version:  # resolve for another interpreter (e.g. the GPU image's 3.12): wheels only
            cmd += ["--python-version", python_version, "--only-binary=:all:", "--implementation", "cp",
                    "--platform", "manylinux_2_28_x86_64", "--platform", "manylinux_2_17_x86_64"]  # fmt: skip
        # this machine's pip.conf / PIP_* (local mirrors, caps on torch) must not change the answer
        env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
        env["PIP_CONFIG_FILE"] = os.devnull
        if os.environ.get("PIP_CERT"):
            env["PIP_CERT"] = os.environ["PIP_CERT"]
        p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
        if p.returncode != 0 or not report.is_file():
            return {"rc": p.returncode, "versions": {}, "requires": {}, "error": (p.stderr or p.stdout)[-3000:]}
        items = json.loads(report.read_text())["install"]
    versions = {i["metadata"]["name"].lower(): i["metadata"]["version"] for i in items}
    requires = {i["metadata"]["name"].lower(): i["metadata"].get("requires_dist", []) for i in items}
    return {"rc": 0, "versions": versions, "requires": requires, "error": None}


def declared_violations(versions: dict[str, str], requires: dict[str, list[str]], package: str,
                        python_version: str | None = None) -> list[str]:
    """Requirements of ``package`` that apply here (markers evaluated, no extras) and are not satisfied."""
    from packaging.markers import default_environment
    from packaging.requirements import Requirement

    environment = default_environment() | {"extra": ""}
    if python_version:
        environment |= {"python_version": python_version, "python_full_version": f"{python_version}.0"}
    bad = []
    for spec in requires.get(package, []):
        req = Requirement(spec)
        if req.marker is not None and not req.marker.evaluate(environment):
            continue
        have = versions.get(req.name.lower())
        if have is not None and req.specifier and not req.specifier.contains(have, prereleases=True):
            bad.append(f"{package} needs {req}, resolved {req.name} {have}")
    return bad


def known_broken(versions: dict[str, str]) -> str | None:
    from packaging.version import Version

    vllm, tf = versions.get("vllm"), versions.get("transformers")
    if vllm and tf and Version(vllm) < Version("0.11") and Version(tf) >= Version("5"):
        return (f"vllm {vllm} with transformers {tf}: vLLM releases before 0.11 fail at tokenizer creation with "
                "transformers 5 (all_special_tokens_extended)")
    return None


def check(python_version: str | None, index_url: str, documented: bool) -> dict:
    expected = pins()
    res = dry_run([f"-c{CONSTRAINTS}", "vllm"], index_url, python_version)
    problems = [] if res["rc"] == 0 else [f"resolution failed (rc {res['rc']}): {res['error']}"]
    if res["rc"] == 0:
        for name, version in expected.items():
            if res["versions"].get(name) != version:
                problems.append(f"{name}: pinned {version}, resolved {res['versions'].get(name)}")
        problems += declared_violations(res["versions"], res["requires"], "vllm", python_version)
        broken = known_broken(res["versions"])
        problems += [broken] if broken else []
    out = {"python_version": python_version or f"{sys.version_info.major}.{sys.version_info.minor}",
           "constraints": str(CONSTRAINTS.relative_to(ROOT)), "pins": expected,
           "resolved": {k: res["versions"].get(k) for k in KEY_PACKAGES if k in res["versions"]},
           "n_packages": len(res["versions"]), "problems": problems, "ok": not problems}  # fmt: skip
    if documented:
        doc = dry_run(DOCUMENTED, index_url, python_version)
        out["documented"] = {"requirements": DOCUMENTED, "rc": doc["rc"],
                             "resolved": {k: doc["versions"].get(k) for k in KEY_PACKAGES if k in doc["versions"]},
                             "known_broken": known_broken(doc["versions"])}  # fmt: skip
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--python-version", help="resolve for this Python (e.g. 3.12; wheels only); default: this one")
    ap.add_argument("--index-url", default="https://pypi.org/simple")
    ap.add_argument("--documented", action="store_true", help="also resolve the old lighteval[vllm] install")
    ap.add_argument("--json", help="also write the result here")
    args = ap.parse_args(argv)
    why = index_reachable(args.index_url)
    if why:
        print(f"check_vllm_resolution: {args.index_url} is not reachable ({why}); nothing checked", file=sys.stderr)
        return 2
    result = check(args.python_version, args.index_url, args.documented)
    print(f"vLLM server environment ({result['constraints']}, Python {result['python_version']}): "
          f"{result['n_packages']} packages; " + ", ".join(f"{k} {v}" for k, v in result["resolved"].items()))
    for p in result["problems"]:
        print(f"  PROBLEM: {p}")
    if "documented" in result:
        d = result["documented"]
        print(f"old README install ({' '.join(d['requirements'])}): rc {d['rc']}; "
              + ", ".join(f"{k} {v}" for k, v in d["resolved"].items())
              + (f"  -> BROKEN: {d['known_broken']}" if d["known_broken"] else ""))
    print("ok" if result["ok"] else "FAILED")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
