"""scripts/check_vllm_resolution.py: the vLLM server environment's pins, checked by a resolver dry run."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location("check_vllm_resolution", ROOT / "scripts" / "check_vllm_resolution.py")
check = importlib.util.module_from_spec(spec)
spec.loader.exec_module(check)


def test_pins_are_read_from_the_constraints_file(tmp_path):
    assert check.pins()["vllm"] and check.pins()["transformers"]  # the real file pins both
    f = tmp_path / "c.txt"
    f.write_text("# comment\nvllm==0.33.0  # why\ntorch>=2\n\nTransformers==5.20.2\n")
    assert check.pins(f) == {"vllm": "0.33.0", "transformers": "5.20.2"}


def test_known_broken_set_is_recognised():
    assert "tokenizer creation" in check.known_broken({"vllm": "0.10.1.1", "transformers": "5.24.0"})
    assert check.known_broken({"vllm": "0.10.1.1", "transformers": "4.57.1"}) is None
    assert check.known_broken({"vllm": "0.33.0", "transformers": "5.20.2"}) is None


def test_declared_requirements_are_checked_with_their_markers():
    versions = {"vllm": "0.33.0", "transformers": "5.24.0", "torch": "2.14.0", "protobuf": "7.36.2"}
    requires = {"vllm": ["transformers<5.21.0,>=5.16.1", "torch==2.14.0", 'protobuf==7.36.1; platform_machine == "s390x"',
                         'pytest; extra == "dev"']}  # fmt: skip
    assert check.declared_violations(versions, requires, "vllm") == [
        "vllm needs transformers<5.21.0,>=5.16.1, resolved transformers 5.24.0"]


@pytest.mark.slow
def test_vllm_pins_resolve_to_themselves(tmp_path):
    """The real resolver against PyPI (about 2 minutes); skipped, with the reason, where PyPI is unreachable."""
    why = check.index_reachable("https://pypi.org/simple")
    if why:
        pytest.skip(f"PyPI not reachable from here ({why}): the resolver dry run cannot run")
    rc = check.main(["--json", str(tmp_path / "r.json")])
    result = json.loads((tmp_path / "r.json").read_text())
    assert rc == 0, result["problems"]
    assert {k: result["resolved"][k] for k in result["pins"]} == result["pins"]
