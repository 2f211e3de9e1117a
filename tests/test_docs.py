"""The documentation builds without a warning, and every code sample in it runs.

Each page's Python samples run in order, in one fresh module namespace per page (as a reader
pasting them one after another would), in a temporary working directory, so that relative
SQLite paths and instance folders land there. A ``{literalinclude}`` of a ``.py`` file counts as
a sample of its page and runs too. A sample that cannot run here must start with
``# doc-test: skip (reason)``; the counts of samples run and skipped are printed.

The store example of writing-a-store.md, saved as one file, must also pass the whole
conformance suite under pytest, as its readers are told it will.
"""

from __future__ import annotations

import importlib.util
import inspect
import os
import re
import subprocess
import sys
import textwrap
import types
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from servers import IN_CI

import flask_serversession.stores
from flask_serversession.testing import StoreConformance
from flask_serversession.testing.app import TRANSPORTS

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
PAGES = sorted(
    path.relative_to(DOCS).as_posix()
    for path in DOCS.rglob("*")
    if path.suffix in (".md", ".rst") and "_build" not in path.parts
)
SKIP = re.compile(r"#\s*doc-test:\s*skip\b(.*)")
PYTHON = {"python", "py", "python3"}
#: Samples run and skipped, per page, for the summary printed at the end.
COUNTS: dict[str, tuple[int, int]] = {}


def _require_docs_tools() -> None:
    """Skip without the docs extra (fail under CI, which must build the docs)."""
    missing = [
        name
        for name in ("sphinx", "myst_parser", "pallets_sphinx_themes", "markdown_it")
        if importlib.util.find_spec(name) is None
    ]
    if missing:
        message = f"not installed: {', '.join(missing)}; pip install --group docs"
        if IN_CI:
            pytest.fail(f"CI must build the docs: {message}")
        pytest.skip(message)


@dataclass
class Sample:
    #: 1-based line in the page of the sample's first line of code.
    line: int
    code: str
    #: The reason given in a ``# doc-test: skip`` marker, or None to run it.
    skip: str | None
    #: The file the code comes from: the page, or a file it includes.
    filename: str


def samples(page: Path) -> list[Sample]:
    """The Python samples of a page, in order."""
    inside = page.is_relative_to(DOCS)
    name = page.relative_to(DOCS).as_posix() if inside else page.name
    text = page.read_text(encoding="utf-8")
    if page.suffix == ".rst":
        if re.search(r"^\s*\.\. (code-block|code|sourcecode|literalinclude)::", text, re.M):
            raise AssertionError(f"{name}: code in reStructuredText pages is not run; use .md")
        return []
    from markdown_it import MarkdownIt

    found = []
    for token in MarkdownIt("commonmark").parse(text):
        if token.type != "fence" or token.map is None:
            continue
        info = token.info.strip()
        words = info.split()
        language = words[0] if words else ""
        code: str | None = None
        line = token.map[0] + 2
        filename = f"docs/{name}" if inside else str(page.resolve())
        argument = words[1] if len(words) > 1 else ""
        if language in PYTHON or (language in ("{code-block}", "{code}") and argument in PYTHON):
            code = token.content
        elif language == "{literalinclude}" and argument.endswith(".py"):
            included = (page.parent / argument).resolve()
            code, line = included.read_text(encoding="utf-8"), 1
            filename = included.relative_to(ROOT).as_posix()
        elif language == "{eval-rst}" and re.search(r"\.\. (code-block|code)::", token.content):
            raise AssertionError(f"{name}:{line}: code inside eval-rst is not run; use a fence")
        if code is None:
            continue
        first = code.lstrip().splitlines()[0] if code.strip() else ""
        marker = SKIP.match(first)
        skip = (marker.group(1).strip(" ()") or "no reason given") if marker else None
        found.append(Sample(line, code, skip, filename))
    return found


def run_page(page: Path, module_name: str) -> tuple[int, int]:
    """Run a page's samples in one new module; return ``(run, skipped)``.

    A failing sample raises, naming the file and line (tracebacks show the page's own line
    numbers).
    """
    module = types.ModuleType(module_name)
    sys.modules[module_name] = module  # so that f"{__name__}:Class" targets can be imported
    run = skipped = 0
    try:
        for sample in samples(page):
            if sample.skip is not None:
                skipped += 1
                continue
            # Blank lines in front, so that line numbers in tracebacks are the file's.
            source = "\n" * (sample.line - 1) + sample.code
            try:
                exec(compile(source, ROOT / sample.filename, "exec"), module.__dict__)
            except Exception as exc:
                raise AssertionError(
                    f"the sample at {sample.filename}:{sample.line} failed: {exc!r}"
                ) from exc
            run += 1
    finally:
        del sys.modules[module_name]
    return run, skipped


@pytest.fixture
def sandbox(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working directory of its own, and a store registry restored afterwards."""
    _require_docs_tools()
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(
        flask_serversession.stores, "_registry", dict(flask_serversession.stores._registry)
    )
    return tmp_path


@pytest.fixture(scope="module", autouse=True)
def summary(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    if not COUNTS:
        return
    run = sum(n for n, _ in COUNTS.values())
    skipped = sum(n for _, n in COUNTS.values())
    pages = ", ".join(f"{page} {n}" for page, (n, _) in sorted(COUNTS.items()) if n)
    line = f"docs samples: {run} run, {skipped} skipped, in {len(COUNTS)} pages ({pages})"
    plugins = request.config.pluginmanager
    reporter = plugins.get_plugin("terminalreporter")
    capture = plugins.get_plugin("capturemanager")
    if reporter is not None and capture is not None:
        with capture.global_and_fixture_disabled():  # shown even though output is captured
            reporter.write_line(line)


def test_docs_build_without_warnings(tmp_path: Path) -> None:
    _require_docs_tools()
    command = [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html"]
    command += [str(DOCS), str(tmp_path / "html"), "-d", str(tmp_path / "doctrees")]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    html = (tmp_path / "html" / "configuration.html").read_text(encoding="utf-8")
    assert "SESSION_IDLE_TIMEOUT" in html


@pytest.mark.parametrize("page", PAGES)
def test_samples_run(page: str, sandbox: Path) -> None:
    run, skipped = run_page(DOCS / page, "docs_" + re.sub(r"\W", "_", page.removesuffix(".md")))
    COUNTS[page] = (run, skipped)


def test_store_example_passes_the_conformance_suite(sandbox: Path) -> None:
    """writing-a-store.md's code, saved as one test file, passes every conformance test."""
    code = [sample.code for sample in samples(DOCS / "writing-a-store.md")]
    (sandbox / "test_dict_store.py").write_text("\n\n".join(code), encoding="utf-8")
    command = [sys.executable, "-m", "pytest", "-q", "-W", "error", "-p", "no:cacheprovider"]
    env = {key: value for key, value in os.environ.items() if not key.startswith("PYTEST_")}
    result = subprocess.run(
        [*command, "test_dict_store.py"], capture_output=True, text=True, timeout=300, env=env
    )
    assert result.returncode == 0, result.stdout + result.stderr
    expected = sum(
        _cases(getattr(StoreConformance, name))
        for name in dir(StoreConformance)
        if name.startswith("test_")
    )
    assert f"{expected} passed" in result.stdout, result.stdout


def _cases(test: Any) -> int:
    """How many tests pytest makes of ``test``: one per combination of its parameters, and
    of the transports for one that drives the app (the ``transport`` fixture's params)."""
    cases = 1
    for mark in getattr(test, "pytestmark", []):
        if mark.name == "parametrize":
            cases *= len(mark.args[1])
    if {"transport", "app", "client"} & set(inspect.signature(test).parameters):
        cases *= len(TRANSPORTS)
    return cases


def test_a_broken_sample_fails(sandbox: Path) -> None:
    page = sandbox / "broken.md"
    page.write_text(
        textwrap.dedent(
            """\
            # A page

            ```python
            total = 1
            ```

            ```python
            # doc-test: skip (needs a server)
            connect_to_the_server()
            ```

            ```python
            assert total == 2, "the sample is wrong"
            ```
            """
        ),
        encoding="utf-8",
    )
    assert [(s.line, s.skip) for s in samples(page)] == [
        (4, None),
        (8, "needs a server"),
        (13, None),
    ]
    with pytest.raises(AssertionError, match=r"broken\.md:13 failed") as info:
        run_page(page, "docs_broken_sample")
    assert "the sample is wrong" in str(info.value.__cause__)


CITED_TEST = re.compile(r"`(tests/[\w/]+\.py)::([\w:]+)`")


def test_every_test_the_docs_cite_exists() -> None:
    """Pages that cite tests as evidence (security.md's tables, for one) name tests that
    pytest collects: a renamed or deleted test must not leave a claim without its proof."""
    cited = {
        (path, name)
        for page in PAGES
        for path, name in CITED_TEST.findall((DOCS / page).read_text(encoding="utf-8"))
    }
    assert len(cited) > 20, "the citation pattern no longer matches the docs"
    files = sorted({path for path, _ in cited})
    missing_files = [path for path in files if not (ROOT / path).is_file()]
    assert not missing_files, f"the docs cite test files that do not exist: {missing_files}"
    collected = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", *files],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert collected.returncode == 0, collected.stdout[-3000:] + collected.stderr[-3000:]
    ids = {line.split("[", 1)[0] for line in collected.stdout.splitlines() if "::" in line}
    missing = sorted(f"{path}::{name}" for path, name in cited if f"{path}::{name}" not in ids)
    assert not missing, f"the docs cite tests that pytest does not collect: {missing}"
