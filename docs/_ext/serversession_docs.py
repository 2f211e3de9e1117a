"""Parts of the documentation generated from the code at build time, so they cannot drift.

A page asks for one with a marker line, an HTML comment that GitHub's Markdown view hides::

    <!-- generated: config-keys -->
    <!-- generated: store-capabilities -->
    <!-- generated: benchmark-results testclient -->

When Sphinx reads the page, the marker and the Markdown table right below it, if any, are
replaced by the generated Markdown:

``config-keys``
    The table of :data:`flask_serversession.config.KEYS`. docs/configuration.md keeps a copy of
    it under the marker for readers of the raw file (tests/test_config.py checks that copy
    too); if the copy differs from ``KEYS`` the build warns, so ``-W`` fails it.
``store-capabilities``
    Every URL scheme of the store registry, the class it builds and its capability flags.
``benchmark-results KIND``
    The newest ``benchmarks/results/<date>-KIND.md`` (a full run, not an ``--only`` one), its
    headings moved one level down.
``cli-help``
    The ``--help`` of ``flask sessions`` and of each of its commands, as click prints it.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from sphinx.application import Sphinx
from sphinx.environment import BuildEnvironment
from sphinx.util import logging

logger = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "benchmarks" / "results"
_MARKER = re.compile(r"^<!-- generated: ([a-z-]+)(?: ([\w-]+))? -->$")


def config_table() -> list[str]:
    """The configuration reference, one row per key of ``config.KEYS``."""
    from flask_serversession.config import KEYS

    rows = ["| key | default | meaning |", "| --- | --- | --- |"]
    rows += [f"| `{key.name}` | {key.default} | {key.meaning} |" for key in KEYS]
    return rows


def capabilities_table() -> list[str]:
    """One row per store class: its URL schemes and what it can do beyond the core."""
    import importlib

    from flask_serversession.stores import _registry

    schemes: dict[str, list[str]] = {}
    for scheme, (target, _extra) in _registry.items():
        schemes.setdefault(target, []).append(f"`{scheme}://`")
    rows = [
        "| store | URL schemes | `by_user` | `scan` | expired sessions removed by |",
        "| --- | --- | --- | --- | --- |",
    ]
    for target, names in schemes.items():
        module_name, _, class_name = target.partition(":")
        store = getattr(importlib.import_module(module_name), class_name)
        caps = store.capabilities
        cleanup = (
            "the library, in batches (`SESSION_CLEANUP_INTERVAL`)"
            if caps.clear_expired
            else "the server itself (native expiry)"
        )
        rows.append(
            f"| {{class}}`~{module_name}.{class_name}` | {', '.join(names)}"
            f" | {_yes(caps.by_user)} | {_yes(caps.scan)} | {cleanup} |"
        )
    return rows


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


def latest_results(kind: str) -> Path | None:
    """The newest full run of ``kind`` (``testclient``, ``http``) in benchmarks/results."""
    runs = sorted(
        path
        for path in RESULTS.glob(f"*-{kind}.md")
        if re.fullmatch(rf"\d{{4}}-\d{{2}}-\d{{2}}-{kind}\.md", path.name)
    )
    return runs[-1] if runs else None


def benchmark_results(kind: str, env: BuildEnvironment, docname: str) -> list[str]:
    path = latest_results(kind)
    if path is None:
        logger.warning(f"no benchmarks/results/*-{kind}.md to show", location=docname)
        return []
    env.note_dependency(str(path))
    lines = path.read_text(encoding="utf-8").splitlines()
    # The file's title becomes a section of the page, its sections subsections.
    shifted = ["#" + line if line.startswith("#") else line for line in lines]
    source = f"*From `benchmarks/results/{path.name}`, the newest full run.*"
    return [shifted[0], "", source, *shifted[1:]]


def cli_help() -> list[str]:
    """``flask sessions --help`` and each command's ``--help``, under a heading each."""
    import click

    from flask_serversession.cli import sessions

    root = click.Context(click.Group("flask"), info_name="flask", terminal_width=80)
    group = click.Context(sessions, info_name="sessions", parent=root, terminal_width=80)
    lines = ["```text", sessions.get_help(group), "```"]
    for name in sessions.list_commands(group):
        command = sessions.get_command(group, name)
        assert command is not None
        context = click.Context(command, info_name=name, parent=group, terminal_width=80)
        lines += ["", f"### `flask sessions {name}`", "", "```text"]
        lines += [command.get_help(context), "```"]
    return lines


def _table_after(lines: list[str], start: int) -> int:
    """Index of the first line after the Markdown table (if any) that starts at ``start``."""
    end = start
    while end < len(lines) and lines[end].startswith("|"):
        end += 1
    return end


def _generate(app: Sphinx, docname: str, source: list[str]) -> None:
    lines = source[0].splitlines()
    if not any(_MARKER.match(line) for line in lines):
        return
    env = app.env
    out: list[str] = []
    i = 0
    while i < len(lines):
        match = _MARKER.match(lines[i])
        if match is None:
            out.append(lines[i])
            i += 1
            continue
        name, arg = match.groups()
        end = _table_after(lines, i + 1)
        written = lines[i + 1 : end]
        generated: list[str]
        if name == "config-keys":
            env.note_dependency(str(ROOT / "src" / "flask_serversession" / "config.py"))
            generated = config_table()
            if written and written != generated:
                missing = sorted(set(generated) - set(written))
                extra = sorted(set(written) - set(generated))
                logger.warning(
                    "the configuration table differs from flask_serversession.config.KEYS;"
                    f" rows missing: {missing}; rows not in KEYS: {extra}",
                    location=docname,
                )
        elif name == "store-capabilities":
            generated = capabilities_table()
        elif name == "benchmark-results" and arg:
            generated = benchmark_results(arg, env, docname)
        elif name == "cli-help":
            env.note_dependency(str(ROOT / "src" / "flask_serversession" / "cli.py"))
            generated = cli_help()
        else:
            logger.warning(f"unknown generated block {lines[i]!r}", location=docname)
            generated = []
        out += generated
        i = end
    source[0] = "\n".join(out) + "\n"


def _always_outdated(
    app: Sphinx, env: BuildEnvironment, added: set[str], changed: set[str], removed: set[str]
) -> list[str]:
    """Pages with generated blocks are read again on every build: a new benchmark run or a
    new store is a new file, which no dependency noted earlier can announce."""
    pages = []
    for docname in env.found_docs:
        path = Path(env.doc2path(docname))
        if path.suffix == ".md" and "<!-- generated: " in path.read_text(encoding="utf-8"):
            pages.append(docname)
    return pages


def setup(app: Sphinx) -> dict[str, Any]:
    app.connect("source-read", _generate)
    app.connect("env-get-outdated", _always_outdated)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
