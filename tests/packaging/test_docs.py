"""The README and docs/*.md describe this repository and nothing else: every code path, test and module they
name exists, every link resolves to a file inside the repository, and no sentence tells how the code was made.

A renamed module fails here until the docs follow it."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = sorted([ROOT / "README.md", *(ROOT / "docs").glob("*.md")])

# A repository path as the docs write it: `ul_engine/core/io.py`, `tests/x/test_y.py::test_z`,
# `ul_engine/model.py::LatentBase`, `app/widgets/`.
CODE_PATH = re.compile(r"(?<![\w./<-])((?:ul_engine|app|tests|tools)/[\w./*-]*)(?:::(\w+))?")
# A dotted module as in `python -m tools.train_shapes_classifier` or `ul_engine.store.decimate.MinMaxPyramid`.
DOTTED = re.compile(r"(?<![\w./-])((?:ul_engine|app|tools)(?:\.[A-Za-z_]\w*)+)")
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)[^)]*\)")
URL = re.compile(r"\b(?:https?|ftp)://\S+")
# How the project was made is not a fact about the product: these phrasings are refused.
DEVELOPMENT_STORY = re.compile(
    r"\b(?:this session|later sessions?|other sessions|helpers?|the lead|issue\s*#?\s*\d+|the issue(?:'s)?|"
    r"outside check|in this plan|gpu_session|other engineers?'?s?|shared/reference)\b",
    re.IGNORECASE,
)

def _docs_text() -> list[tuple[Path, int, str]]:
    return [(doc, n, line) for doc in DOCS for n, line in enumerate(doc.read_text().splitlines(), 1)]


def _where(doc: Path, n: int) -> str:
    return f"{doc.relative_to(ROOT)}:{n}"


def _module_file(parts: list[str]) -> tuple[Path, int] | None:
    """The longest prefix of a dotted name that is a module or package: (its file, how many parts it used)."""
    for used in range(len(parts), 1, -1):
        base = ROOT.joinpath(*parts[:used])
        for candidate in (base.with_suffix(".py"), base / "__init__.py"):
            if candidate.is_file():
                return candidate, used
    return None


def test_the_docs_are_found() -> None:
    names = {doc.name for doc in DOCS}
    assert {"README.md", "architecture.md", "method.md", "benchmarks.md", "benchmarks-log.md"} <= names


def path_problems(doc: Path, n: int, line: str) -> list[str]:
    """Code paths on one line that do not exist, or that do not define the function, class or test after `::`."""
    problems = []
    for match in CODE_PATH.finditer(line):
        path, name = match.group(1).rstrip(".,:;"), match.group(2)
        found = sorted(ROOT.glob(path)) if "*" in path else [ROOT / path] if (ROOT / path).exists() else []
        if not found:
            problems.append(f"{_where(doc, n)}: {path}")
        elif name and not re.search(rf"^\s*(?:async def|def|class) {name}\b", found[0].read_text(), re.MULTILINE):
            problems.append(f"{_where(doc, n)}: {path} defines no {name}")
    return problems


def dotted_problems(doc: Path, n: int, line: str) -> list[str]:
    """Dotted module names on one line that are no module (or whose next part the module does not define)."""
    problems = []
    for match in DOTTED.finditer(line):
        parts = match.group(1).rstrip(".").split(".")
        found = _module_file(parts)
        if found is None:
            problems.append(f"{_where(doc, n)}: {match.group(1)}")
            continue
        path, used = found
        attributes = parts[used:]
        if attributes and not re.search(rf"\b{attributes[0]}\b", path.read_text()):
            problems.append(f"{_where(doc, n)}: {path.relative_to(ROOT)} defines no {attributes[0]}")
    return problems


def link_problems(doc: Path, n: int, line: str) -> list[str]:
    """URLs, and links that leave the repository or name no file."""
    problems = [f"{_where(doc, n)}: {url}" for url in URL.findall(line)]
    for target in LINK.findall(line):
        if target.startswith("#"):
            continue
        resolved = (doc.parent / target.split("#")[0]).resolve()
        if target.startswith("/") or ":" in target or not resolved.is_relative_to(ROOT):
            problems.append(f"{_where(doc, n)}: {target} (outside the repository)")
        elif not resolved.exists():
            problems.append(f"{_where(doc, n)}: {target} (no such file)")
    return problems


def story_problems(doc: Path, n: int, line: str) -> list[str]:
    """Phrases on one line that tell how the project was made rather than what it does."""
    return [f"{_where(doc, n)}: {m.group(0)!r}" for m in DEVELOPMENT_STORY.finditer(line)]


def _all(check: Callable[[Path, int, str], list[str]]) -> str:
    return "\n".join(problem for doc, n, line in _docs_text() for problem in check(doc, n, line))


def test_every_code_path_and_test_named_in_the_docs_exists() -> None:
    assert not (problems := _all(path_problems)), problems


def test_every_module_named_with_dots_exists() -> None:
    assert not (problems := _all(dotted_problems)), problems


def test_no_doc_links_outside_the_repository() -> None:
    assert not (problems := _all(link_problems)), problems


def test_no_sentence_tells_how_the_project_was_developed() -> None:
    assert not (problems := _all(story_problems)), problems


@pytest.mark.parametrize(
    ("check", "line"),
    [
        (path_problems, "see `ul_engine/no_such_module.py`"),
        (path_problems, "pinned by `tests/diffusion/test_diffusion.py::test_no_such_test`"),
        (dotted_problems, "`python -m tools.no_such_tool`"),
        (dotted_problems, "`ul_engine.diffusion.weighting.no_such_weight`"),
        (link_problems, "[the paper](https://example.org/paper)"),
        (link_problems, "[notes](../../elsewhere/notes.md)"),
        (link_problems, "[gone](no-such-page.md)"),
        (story_problems, "a check that this session added"),
    ],
)
def test_each_check_reports_a_bad_line(check: Callable[[Path, int, str], list[str]], line: str) -> None:
    """The checks the docs pass, given one bad line as if it were in docs/, report it."""
    assert check(ROOT / "docs" / "x.md", 1, line)


def test_good_lines_pass() -> None:
    doc = ROOT / "docs" / "x.md"
    good = (
        "`ul_engine/model.py` and `tests/diffusion/test_diffusion.py::test_latent_noise_constants`, "
        "`python -m tools.train_shapes_classifier`, `ul_engine.diffusion.weighting.sigmoid_weight`, "
        "[the method](method.md#2-schedules), ![a picture](images/shapes32-gpu-sweep.png); the session worker"
    )
    problems = [
        p for check in (path_problems, dotted_problems, link_problems, story_problems) for p in check(doc, 1, good)
    ]
    assert not problems, problems


# ---- architecture.md's layout is the tree as it is ---------------------------------------------------------

ARCHITECTURE = ROOT / "docs" / "architecture.md"
# The session protocol's op names as the docs write them: `image.reconstruct`, `latents.frames`, ...
OP_NAME = re.compile(r"`((?:image|video|latents|frames|session)\.[a-z_]+)`")
NUMBER_WORDS = {"one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6}


def _layout_block() -> str:
    """The code block under architecture.md's `## Layout`."""
    text = ARCHITECTURE.read_text()
    section = text[text.index("## Layout") :]
    return section.split("```")[1]


def _modules_the_layout_must_name() -> list[Path]:
    """Every engine module (migrations aside), the app's top-level modules and its pages, models and workers."""
    engine = [p for p in (ROOT / "ul_engine").rglob("*.py") if "migrations" not in p.parts]
    app = [p for folder in ("", "pages", "models", "workers") for p in (ROOT / "app" / folder).glob("*.py")]
    return sorted(p for p in engine + app if p.stem not in ("__init__", "__main__"))


def test_the_layout_names_every_package_and_module() -> None:
    block = _layout_block()
    packages = sorted(p.parent for top in ("ul_engine", "app") for p in (ROOT / top).rglob("__init__.py"))
    missing = [p for p in packages if not re.search(rf"(?<![\w-]){p.name}/", block)]
    missing += [p for p in _modules_the_layout_must_name() if not re.search(rf"\b{p.stem}\b", block)]
    assert not missing, f"docs/architecture.md's layout does not name: {[str(p.relative_to(ROOT)) for p in missing]}"


def test_the_layout_counts_the_engines_top_level_modules() -> None:
    said = re.search(r"`ul_engine/` holds (\w+) top-level modules", ARCHITECTURE.read_text())
    assert said, "docs/architecture.md says how many top-level modules ul_engine/ holds"
    modules = sorted(p.name for p in (ROOT / "ul_engine").glob("*.py"))
    assert NUMBER_WORDS.get(said.group(1), said.group(1)) == len(modules), modules
    assert all(f"`{name}`" in said.string[said.end() : said.end() + 200] for name in modules), modules


def test_the_docs_name_exactly_the_session_ops_the_protocol_defines() -> None:
    from ul_engine.core.protocol import REQUESTS

    named = {(doc, n, op) for doc, n, line in _docs_text() for op in OP_NAME.findall(line)}
    unknown = [f"{_where(doc, n)}: {op}" for doc, n, op in sorted(named) if op not in REQUESTS]
    assert not unknown, f"ops the protocol does not define: {unknown}"
    table = ARCHITECTURE.read_text()
    assert not (missing := [op for op in REQUESTS if f"| `{op}` | `{REQUESTS[op].__name__}` |" not in table]), missing
