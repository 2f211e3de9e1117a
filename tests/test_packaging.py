"""The built wheel says what a package index shows and a user installs (issue 14, item 2)."""

from __future__ import annotations

import os
import re
import tarfile
import zipfile
from email.message import Message
from email.parser import Parser
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _build(kind: str, out: Path) -> Path:
    """A wheel or sdist, built by the build backend pyproject.toml names, in-process (no
    network)."""
    from flit_core import buildapi  # type: ignore[import-untyped]

    here = os.getcwd()
    os.chdir(ROOT)
    try:
        name = getattr(buildapi, f"build_{kind}")(str(out))
    finally:
        os.chdir(here)
    return out / str(name)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> zipfile.ZipFile:
    return zipfile.ZipFile(_build("wheel", tmp_path_factory.mktemp("wheel")))


def _metadata(wheel: zipfile.ZipFile) -> tuple[Message, dict[str, list[str]]]:
    (path,) = [name for name in wheel.namelist() if name.endswith(".dist-info/METADATA")]
    message = Parser().parsestr(wheel.read(path).decode("utf-8"))
    fields: dict[str, list[str]] = {}
    for key, value in message.items():
        fields.setdefault(key, []).append(value)
    return message, fields


def test_wheel_carries_its_license(wheel: zipfile.ZipFile) -> None:
    _, fields = _metadata(wheel)
    (version,) = fields["Metadata-Version"]
    assert tuple(map(int, version.split("."))) >= (2, 4)  # License-Expression came in 2.4
    assert fields["License-Expression"] == ["BSD-3-Clause"]
    assert fields["License-File"] == ["LICENSE"]
    licenses = [name for name in wheel.namelist() if name.endswith(".dist-info/licenses/LICENSE")]
    assert len(licenses) == 1
    assert wheel.read(licenses[0]).decode().startswith("BSD 3-Clause License")


def test_wheel_metadata_describes_the_package(wheel: zipfile.ZipFile) -> None:
    message, fields = _metadata(wheel)
    classifiers = set(fields["Classifier"])
    assert {
        "Framework :: Flask",
        "Typing :: Typed",
        "Programming Language :: Python :: 3.10",
        "Programming Language :: Python :: 3.13",
        "Operating System :: OS Independent",
    } <= classifiers
    assert not any(c.startswith("License ::") for c in classifiers)  # the expression says it
    assert fields["Requires-Python"] == [">=3.10"]
    assert fields["Author"] == ["Flask-ServerSession contributors"]
    assert fields["Maintainer"] == ["Flask-ServerSession contributors"]
    readme = message.get_payload()
    assert isinstance(readme, str) and readme.lstrip().startswith("# Flask-ServerSession")
    assert "flask_serversession/py.typed" in wheel.namelist()


def test_published_extras_are_the_store_drivers_only(wheel: zipfile.ZipFile) -> None:
    """Users see one extra per store driver (and migrate); the repository's test, lint, bench
    and docs tools, with their exact pins, are dependency groups, never published."""
    _, fields = _metadata(wheel)
    assert sorted(fields["Provides-Extra"]) == ["memcached", "migrate", "redis", "sql"]
    requires = fields["Requires-Dist"]
    assert "flask>=3.0" in requires
    assert not [r for r in requires if "==" in r.partition(";")[0]], requires  # no exact pins
    for extra in ("redis", "sql", "memcached", "migrate"):
        assert any(f'extra == "{extra}"' in r for r in requires), extra


def test_readme_has_no_link_a_package_index_would_break() -> None:
    """A package index shows the README without the repository around it: a relative link or
    image there is dead (issue 14, item 3). Paths are named as code instead, and the source
    distribution carries them."""
    readme = (ROOT / "README.md").read_text()
    targets = re.findall(r"!?\[[^\]]*\]\(([^)\s]+)", readme) + re.findall(
        r"""<(?:img|a)\b[^>]*?(?:src|href)=["']([^"']+)""", readme
    )
    relative = [t for t in targets if not re.match(r"(https?://|mailto:|#)", t)]
    assert not relative, relative
    assert readme.index("pip install flask-serversession") < readme.index("```")


@pytest.fixture(scope="module")
def sdist(tmp_path_factory: pytest.TempPathFactory) -> tarfile.TarFile:
    return tarfile.open(_build("sdist", tmp_path_factory.mktemp("sdist")))


def test_sdist_carries_what_the_readme_names(sdist: tarfile.TarFile) -> None:
    names = {name.split("/", 1)[1] for name in sdist.getnames() if "/" in name}
    readme = (ROOT / "README.md").read_text()
    named = set(re.findall(r"`((?:docs|examples|benchmarks)/[\w./-]*\w)/?`", readme))
    assert named, "the README names no docs or examples path"
    for path in sorted(named - {"docs/_build/html"}):  # what `make docs` writes
        assert path in names or any(n.startswith(path + "/") for n in names), path
    assert {"Makefile", "README.md", "LICENSE", "docs/configuration.md"} <= names
    assert not [n for n in names if "__pycache__" in n or n.startswith("docs/_build/")]
