"""Sphinx configuration for the Flask-ServerSession documentation.

Build: ``.venv/bin/sphinx-build -W --keep-going -b html docs docs/_build/html``.
Nothing here reaches the network: no intersphinx, no remote images.
"""

from __future__ import annotations

import sys
from pathlib import Path

from pallets_sphinx_themes import get_version

# The local extension that generates tables from the code (docs/_ext/serversession_docs.py).
sys.path.insert(0, str(Path(__file__).parent / "_ext"))

# -- Project ------------------------------------------------------------------------------------

project = "Flask-ServerSession"
copyright = "2026, the Flask-ServerSession authors"
author = "the Flask-ServerSession authors"
release, version = get_version("Flask-ServerSession")

# -- General ------------------------------------------------------------------------------------

extensions = [
    "sphinx.ext.autodoc",
    "myst_parser",
    "pallets_sphinx_themes",
    "serversession_docs",
]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
exclude_patterns = ["_build"]
default_role = "code"

# Markdown: ::: fences for directives, definition lists, and #anchors for headings up to ###.
myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 3

autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_preserve_defaults = True

# -- HTML ---------------------------------------------------------------------------------------

html_theme = "flask"
html_theme_options = {"index_sidebar_logo": False}
html_sidebars = {
    "**": ["localtoc.html", "relations.html", "searchbox.html"],
}
html_static_path = ["_static"]
html_title = f"Flask-ServerSession Documentation ({version})"
html_show_sourcelink = False
# The Pallets theme's banner asks PyPI which version is newest, from the reader's browser.
version_banner = False
