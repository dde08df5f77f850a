"""The README is a landing page and every link in it and in docs/ leads somewhere.

Every relative link and `#anchor` in README.md and docs/*.md must resolve: the file exists and the anchor is the
GitHub slug of a heading in it. The README stays at most 300 lines and lists every command and every recipe.
"""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path

import pytest

from data_selection.cli import COMMANDS as DATA_SELECT_COMMANDS
from llamafactory_ext.cli import COMMANDS as EXT_COMMANDS

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
DOCS = sorted((REPO / "docs").glob("*.md"))
PAGES = [README, *DOCS]

FENCE = re.compile(r"^\s*(```|~~~)")
INLINE_CODE = re.compile(r"(`+)(?:(?!\1).)+?\1")
LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+.*)?$")
HEADING = re.compile(r"^\s{0,3}(#{1,6})\s+(.*?)\s*#*\s*$")
HTML_ANCHOR = re.compile(r"<a\s+(?:name|id)=\"([^\"]+)\"")
REPO_PATH = re.compile(
    r"(?<![\w/.-])((?:data_selection|llamafactory_ext|tests|bench|scripts|yaml_recipes|studies|ds_configs|constraints"
    r"|docs)/[\w./-]*\.(?:py|yaml|json|sh|txt|md))"
)
PLACEHOLDER = re.compile(r"\b[A-Z]{3,}\b")  # studies/NAME.yaml, scores/POOL: stand for a file the user names


def github_slug(heading: str) -> str:
    """GitHub's heading anchor: the rendered text, lower-cased, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"`([^`]*)`", r"\1", heading)
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", text)
    text = re.sub(r"<[^>]+>", "", text)
    text = text.replace("**", "").replace("__", "")
    kept = [ch for ch in text.strip().lower()
            if ch in " -" or unicodedata.category(ch)[0] in "LNM" or unicodedata.category(ch) == "Pc"]
    return "".join(kept).replace(" ", "-")


def prose_lines(path: Path):
    """(line number, text) of the lines outside fenced code blocks."""
    fenced = False
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if FENCE.match(line):
            fenced = not fenced
            continue
        if not fenced:
            yield number, line


def anchors(path: Path) -> set[str]:
    """Every anchor GitHub gives the page: heading slugs (repeats get -1, -2, ...) and explicit <a name/id>."""
    seen: dict[str, int] = {}
    found: set[str] = set()
    for _, line in prose_lines(path):
        found.update(HTML_ANCHOR.findall(line))
        match = HEADING.match(line)
        if not match:
            continue
        slug = github_slug(match.group(2))
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        found.add(slug if count == 0 else f"{slug}-{count}")
    return found


def links(path: Path):
    """(line number, target) of every inline, image and reference link outside code."""
    for number, line in prose_lines(path):
        text = INLINE_CODE.sub("", line)
        for target in LINK.findall(text):
            yield number, target
        ref = REFERENCE.match(text)
        if ref:
            yield number, ref.group(1)


def broken_links(path: Path, root: Path = REPO) -> list[str]:
    problems = []
    for number, target in links(path):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I):  # http:, https:, mailto: ... not checked offline
            continue
        file_part, _, anchor = target.partition("#")
        dest = path if not file_part else (path.parent / file_part).resolve()
        where = f"{path.relative_to(root)}:{number}: {target}"
        if not dest.exists():
            problems.append(f"{where}: no file {file_part}")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            problems.append(f"{where}: no heading with the anchor #{anchor} in {dest.relative_to(root)}")
    return problems


def missing_paths(path: Path, root: Path = REPO) -> list[str]:
    """Files of the repository a page names in its text (code included) that do not exist."""
    named = {m for m in REPO_PATH.findall(path.read_text(encoding="utf-8")) if not PLACEHOLDER.search(m)}
    return sorted(m for m in named if not (root / m).exists())


@pytest.mark.parametrize(
    ("heading", "slug"),
    [
        ("The selection page (`report.html`)", "the-selection-page-reporthtml"),
        ("§2 Loss band, \"zone of proximal development\" (`--strategy zpd`)",
         "2-loss-band-zone-of-proximal-development---strategy-zpd"),
        ("`make study-temp` (demo_temp.yaml), 2026-12-02", "make-study-temp-demo_tempyaml-2026-12-02"),
        ("GPUs: install, driver, kernels, preflight, vLLM", "gpus-install-driver-kernels-preflight-vllm"),
        ("Measured numbers, in brief", "measured-numbers-in-brief"),
    ],
)
def test_slugs_follow_githubs_rules(heading, slug):
    assert github_slug(heading) == slug


def test_repeated_headings_get_numbered_anchors(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("# A\n## Notes\n```\n# not a heading\n```\n## Notes\n", encoding="utf-8")
    assert anchors(page) == {"a", "notes", "notes-1"}


def test_the_checker_finds_a_missing_file_and_a_missing_anchor(tmp_path):
    (tmp_path / "other.md").write_text("# Other\n## Real section\n", encoding="utf-8")
    page = tmp_path / "page.md"
    page.write_text(
        "# Page\n[ok](other.md#real-section) [self](#page) `[code](nowhere.md)` [web](https://example.com)\n"
        "[gone](missing.md) [bad anchor](other.md#imaginary)\n```\n[fenced](nowhere.md)\n```\n",
        encoding="utf-8",
    )
    problems = broken_links(page, root=tmp_path)
    assert len(problems) == 2, problems
    assert "no file missing.md" in problems[0] and "#imaginary" in problems[1]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_every_relative_link_and_anchor_resolves(page):
    assert not broken_links(page)


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_every_repository_file_a_page_names_exists(page):
    """A renamed module, test or script must take its docs along (`bench/x.py`, `tests/.../test_y.py`)."""
    assert missing_paths(page) == []


def test_the_path_check_skips_placeholders_and_finds_a_renamed_file(tmp_path):
    (tmp_path / "bench").mkdir()
    (tmp_path / "bench" / "real.py").write_text("", encoding="utf-8")
    page = tmp_path / "page.md"
    page.write_text("`python bench/real.py` and `bench/gone.py`; `studies/NAME.yaml`, `outputs/x.json`\n",
                    encoding="utf-8")
    assert missing_paths(page, root=tmp_path) == ["bench/gone.py"]


def test_the_docs_pages_are_linked_from_the_readme():
    linked = {(README.parent / target.partition("#")[0]).resolve() for _, target in links(README)}
    assert [p.name for p in DOCS if p.resolve() not in linked] == []


def test_the_readme_is_a_landing_page_of_at_most_300_lines():
    assert len(README.read_text(encoding="utf-8").splitlines()) <= 300


def test_the_readme_lists_every_command_and_every_recipe():
    text = README.read_text(encoding="utf-8")
    commands = [f"data-select {name}" for name in DATA_SELECT_COMMANDS if name not in EXT_COMMANDS]
    commands += [f"llamafactory-ext {name}" for name in EXT_COMMANDS]
    assert [c for c in commands if f"| `{c}` |" not in text] == []
    recipes = sorted(p.name for p in (REPO / "yaml_recipes").glob("*.yaml"))
    assert [r for r in recipes if f"[`{r}`](yaml_recipes/{r})" not in text] == []
    studies = sorted(p.name for p in (REPO / "studies").glob("*.yaml"))
    assert [s for s in studies if f"(studies/{s})" not in text] == []
