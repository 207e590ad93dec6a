"""README.md and docs/*.md: the README stays a start (short), and every link, `make` target,
repository path and `python -m interpflow.X` that the README or a docs page quotes exists."""

import re
from itertools import product
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
PAGES = [README, *sorted((ROOT / "docs").glob("*.md"))]
MAX_README_LINES = 260

#: A quoted path is checked when it starts with one of these (folders of the repository).
REPO_PREFIXES = (
    "config/",
    "resources/",
    "src/",
    "scripts/",
    "workflow/",
    "benchmarks/",
    "docs/",
    "tests/",
    "profiles/",
)
#: Folders the pages name that a run writes, not the repository (each is git-ignored or made
#: by the code the page describes): quoted, they need not exist in a fresh checkout.
WRITTEN_BY_RUNS = {
    "benchmarks/results": "benchmark files and benchmarks' JSON (interpflow.ledger, benchmarks/_bench.py)",
}


def page_id(path: Path) -> str:
    return str(path.relative_to(ROOT))


def strip_fences(text: str) -> str:
    """The text without fenced code blocks (a link inside one is not a link)."""
    return re.sub(r"^```.*?^```", "", text, flags=re.DOTALL | re.MULTILINE)


def code_spans(text: str) -> list[str]:
    """Every inline code span and every line of every fenced block."""
    spans = []
    for block in re.findall(r"^```[^\n]*\n(.*?)^```", text, flags=re.DOTALL | re.MULTILINE):
        spans.extend(block.splitlines())
    prose = strip_fences(text)
    # inline spans may wrap over a line end
    spans.extend(m.replace("\n", " ") for m in re.findall(r"`([^`]+)`", prose))
    return spans


def expand_braces(path: str) -> list[str]:
    """`a/{b,c}.txt` -> a/b.txt, a/c.txt (shell brace expansion, any number of groups)."""
    parts = re.split(r"\{([^{}]*)\}", path)
    choices = [[p] if i % 2 == 0 else p.split(",") for i, p in enumerate(parts)]
    return ["".join(c).replace(" ", "") for c in product(*choices)]


def quoted_paths(text: str) -> set[str]:
    """Repository paths in code spans: tokens starting with a REPO_PREFIXES folder."""
    found = set()
    prefix = "|".join(re.escape(p) for p in REPO_PREFIXES)
    for span in code_spans(text):
        for m in re.finditer(rf"(?<![\w./<>-])((?:{prefix})[^\s`'\"()\[\];|]*)", span):
            path = m.group(1).split("::")[0].split("#")[0].rstrip(".,:")
            if any(c in path for c in "<>*$"):  # a placeholder or a glob, not one path
                continue
            found.update(expand_braces(path))
    return found


def makefile_targets() -> set[str]:
    text = (ROOT / "Makefile").read_text()
    return {m for m in re.findall(r"^([A-Za-z][\w-]*):(?!=)", text, flags=re.MULTILINE)}


def interpflow_modules() -> set[str]:
    src = ROOT / "src" / "interpflow"
    mods = {p.stem for p in src.glob("*.py") if p.stem != "__init__"}
    mods |= {p.name for p in src.iterdir() if (p / "__init__.py").is_file()}
    mods |= {
        f"{p.parent.name}.{p.stem}"
        for p in src.glob("*/*.py")
        if p.stem != "__init__" and (p.parent / "__init__.py").is_file()
    }
    return mods


def test_there_are_docs_pages():
    names = {p.name for p in PAGES}
    for page in [
        "deception.md",
        "tribunal.md",
        "inoculation.md",
        "steering.md",
        "atlas.md",
        "configuration.md",
        "cluster.md",
        "costs.md",
        "benchmarks.md",
    ]:
        assert page in names


def test_readme_is_short():
    n = len(README.read_text().splitlines())
    assert n <= MAX_README_LINES, (
        f"README.md has {n} lines (at most {MAX_README_LINES}): move detail to docs/"
    )


def test_readme_keeps_the_reference_run_markers():
    """interpflow.findings --readme writes between them (update_readme)."""
    from interpflow.findings import README_END, README_START

    text = README.read_text()
    assert text.count(README_START) == 1 and text.count(README_END) == 1
    assert text.index(README_START) < text.index(README_END)


@pytest.mark.parametrize("page", PAGES, ids=page_id)
def test_relative_links_resolve(page):
    text = strip_fences(page.read_text())
    missing = []
    for target in re.findall(r"\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)", text):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target) or target.startswith("#"):
            continue  # a URL or an anchor on the same page
        path = target.split("#")[0]
        if not (page.parent / path).exists():
            missing.append(target)
    assert not missing, f"{page_id(page)}: links to files that do not exist: {missing}"


@pytest.mark.parametrize("page", PAGES, ids=page_id)
def test_quoted_make_targets_exist(page):
    targets = makefile_targets()
    quoted = set()
    for span in code_spans(page.read_text()):
        quoted.update(re.findall(r"(?:^|[\s`(])make\s+(?:[A-Z_]+=\S+\s+)*([a-z][\w-]*)", span))
    unknown = sorted(quoted - targets)
    assert not unknown, f"{page_id(page)}: `make` targets not in the Makefile: {unknown}"


@pytest.mark.parametrize("page", PAGES, ids=page_id)
def test_quoted_repository_paths_exist(page):
    missing = []
    for path in sorted(quoted_paths(page.read_text())):
        if path.rstrip("/") in WRITTEN_BY_RUNS:
            continue
        if not (ROOT / path).exists():
            missing.append(path)
    assert not missing, f"{page_id(page)}: quoted paths that do not exist: {missing}"


@pytest.mark.parametrize("page", PAGES, ids=page_id)
def test_quoted_interpflow_modules_exist(page):
    mods = interpflow_modules()
    text = page.read_text().replace("\n", " ")
    quoted = set(re.findall(r"python\s+-m\s+interpflow\.([\w.]+)", text))
    unknown = sorted(q.rstrip(".") for q in quoted if q.rstrip(".") not in mods)
    assert not unknown, f"{page_id(page)}: `python -m interpflow.X` with no module X: {unknown}"


def test_the_checks_see_what_they_check():
    """The extractors find the README's commands (a broken regex would pass every page)."""
    text = README.read_text()
    make = set()
    for span in code_spans(text):
        make.update(re.findall(r"(?:^|[\s`(])make\s+(?:[A-Z_]+=\S+\s+)*([a-z][\w-]*)", span))
    assert {
        "install",
        "run",
        "run-stub",
        "rehearse",
        "test",
        "test-fast",
        "estimate",
        "demo",
    } <= make
    assert "config/studies/deception_smollm2.yaml" in quoted_paths(text)
    assert expand_braces("a/{b,c}.txt") == ["a/b.txt", "a/c.txt"]
    assert "findings" in set(
        re.findall(r"python\s+-m\s+interpflow\.([\w.]+)", text.replace("\n", " "))
    )
    assert {"findings", "hubdata", "deception.prompts"} <= interpflow_modules()


#: The study pages whose "Deviations" list the `# deviation: <name>` markers must match.
STUDY_PAGES = {
    s: ROOT / "docs" / f"{s}.md" for s in ("deception", "tribunal", "inoculation", "steering")
}
#: Where markers are looked for: the code, the rules and schemas, the presets, the study files.
MARKER_GLOBS = (
    "src/interpflow/**/*.py",
    "workflow/**/*.smk",
    "workflow/Snakefile",
    "workflow/**/*.yaml",
    "config/**/*.yaml",
    "resources/**/*.yaml",
)
MARKER_RE = re.compile(r"#\s*deviation:\s*(.+?)\s*$")


def deviations_list(text: str) -> list[str]:
    """The entry names (`- **<name>**: ...`) of a page's deviations list: the first bullet
    list after the first line beginning "Deviations", up to the blank line that ends it."""
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith("Deviations")), None)
    if start is None:
        return []
    names = []
    for line in lines[start:]:
        if not line.strip() and names:
            break
        if m := re.match(r"^- \*\*(.+?)\*\*", line):
            names.append(m.group(1))
    return names


def marker_name(text: str) -> str:
    """A marker's name: its text without a trailing parenthesis (a note for the reader)."""
    return re.sub(r"\s*\([^()]*\)$", "", text).strip()


def deviation_markers() -> dict[str, list[str]]:
    """``{name: [file:line, ...]}`` of every `# deviation: <name>` marker."""
    found: dict[str, list[str]] = {}
    for pattern in MARKER_GLOBS:
        for path in sorted(ROOT.glob(pattern)):
            for n, line in enumerate(path.read_text().splitlines(), start=1):
                if m := MARKER_RE.search(line):
                    where = f"{path.relative_to(ROOT)}:{n}"
                    found.setdefault(marker_name(m.group(1)), []).append(where)
    return found


def test_deviation_markers_and_the_study_pages_lists_agree():
    """Every `# deviation: <name>` marker in the code / rules / config is an entry of a study
    page's deviations list (its own study's, for a file of that study), and every entry has
    at least one marker: the list and the code stay in step."""
    lists = {s: deviations_list(p.read_text()) for s, p in STUDY_PAGES.items()}
    for study, names in lists.items():
        assert names, f"docs/{study}.md has no deviations list"
        assert len(set(names)) == len(names), f"docs/{study}.md lists a deviation twice"
    markers = deviation_markers()
    listed = {name: s for s, names in lists.items() for name in names}
    unlisted = {n: w for n, w in markers.items() if n not in listed}
    assert not unlisted, f"markers not in any docs/<study>.md deviations list: {unlisted}"
    for name, where in markers.items():
        for w in where:
            study = next((s for s in STUDY_PAGES if f"/{s}" in "/" + w.replace("_", "/")), None)
            assert study in (None, listed[name]), (
                f"{w}: {name!r} is listed in docs/{listed[name]}.md"
            )
    unmarked = sorted(f"docs/{s}.md: {n}" for n, s in listed.items() if n not in markers)
    assert not unmarked, f"deviations with no `# deviation: <name>` marker: {unmarked}"


def test_the_deviation_parsers_read_a_constructed_page():
    page = "- **z**: before\n\nDeviations (marked):\n\n- **a b**: x\n  more\n- **c**: y\n\n- **d**: after\n"
    assert deviations_list(page) == ["a b", "c"]  # the list ends at its first blank line
    assert deviations_list("No list here.\n- **a**: x\n") == []
    assert marker_name("cut traces regenerated (shards, not a pickle)") == "cut traces regenerated"
    assert MARKER_RE.search("    # deviation: a b").group(1) == "a b"
