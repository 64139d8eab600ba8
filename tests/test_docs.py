"""The project's face: a short README whose links into docs/ resolve, every docs/ page reachable
from docs/README.md, and release files that agree with the package (licence, version, citation)."""
import re
from pathlib import Path

import yaml

import resnet_backbone

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"
README_MAX_LINES = 200
# A markdown link's target: [text](target) or [text](target#anchor).
LINK = re.compile(r"\]\(([^)\s#]+)(?:#[^)\s]*)?\)")
ANCHORED = re.compile(r"\]\(([^)\s#]*)#([^)\s]+)\)")


def anchors(page):
    """GitHub's anchors of a page's headings: lower case, punctuation dropped, spaces to '-'."""
    headings = re.findall(r"^#+ (.+)$", page.read_text(encoding="utf-8"), re.M)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in headings}


def local_links(page):
    """The relative link targets of a markdown page (no web addresses, no bare anchors)."""
    targets = LINK.findall(page.read_text(encoding="utf-8"))
    return [t for t in targets if not re.match(r"[a-z]+:", t)]


def test_readme_stays_short():
    lines = (REPO / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= README_MAX_LINES, (
        f"README.md has {len(lines)} lines; keep it at most {README_MAX_LINES} and move the "
        "rest into docs/")


def test_every_link_of_the_readme_and_the_docs_resolves():
    pages = [REPO / "README.md", *sorted(DOCS.glob("*.md"))]
    broken = [f"{page.relative_to(REPO)} -> {target}" for page in pages
              for target in local_links(page) if not (page.parent / target).exists()]
    assert not broken, "links to missing files:\n" + "\n".join(broken)
    wrong = [f"{page.relative_to(REPO)} -> {target}#{anchor}" for page in pages
             for target, anchor in ANCHORED.findall(page.read_text(encoding="utf-8"))
             if target.endswith(".md") or not target
             if anchor not in anchors(page.parent / target if target else page)]
    assert not wrong, "links to missing headings:\n" + "\n".join(wrong)
    readme_docs = [t for t in local_links(REPO / "README.md") if t.startswith("docs/")]
    assert readme_docs, "the README links no docs/ page"


def test_every_docs_page_is_in_the_index():
    indexed = {(DOCS / t).resolve() for t in local_links(DOCS / "README.md")}
    missing = [p.name for p in DOCS.glob("*.md") if p.name != "README.md"
               and p.resolve() not in indexed]
    assert not missing, f"docs/README.md does not list {missing}"


def test_release_files_agree_with_the_package():
    assert "Apache License" in (REPO / "LICENSE").read_text()
    changelog = (REPO / "CHANGELOG.md").read_text()
    assert re.search(r"^## (\S+)", changelog, re.M).group(1) == resnet_backbone.__version__
    citation = yaml.safe_load((REPO / "CITATION.cff").read_text())
    assert citation["preferred-citation"]["title"] == "Deep Residual Learning for Image Recognition"
    assert "version" not in citation  # the version is stated once, in resnet_backbone/version.py
    assert "@inproceedings{he2016deep" in (REPO / "README.md").read_text()
