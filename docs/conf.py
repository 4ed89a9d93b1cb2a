"""Sphinx configuration of pyce's documentation site.

Build (from the checkout, with pyce installed or built in place):
    sphinx-build -W -b html docs docs/_build/html
    sphinx-build -W -b doctest docs docs/_build/doctest   # runs every example
"""

import pyce

project = "pyce"
author = "pyce developers"
copyright = "2026, pyce developers"
release = pyce.__version__
version = release

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.doctest",
    "sphinx.ext.mathjax",
    "numpydoc",
    "myst_parser",  # docs/adding-a-kernel.md is Markdown
]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
exclude_patterns = ["_build"]
myst_heading_anchors = 3

# The API reference is generated from the docstrings; every public function's
# docstring must have its numpydoc sections (a missing one is a warning, and
# the build runs with -W).
autodoc_default_options = {"member-order": "bysource"}
numpydoc_show_class_members = False
numpydoc_xref_param_type = False
numpydoc_validation_checks = {
    "GL08",  # the object has a docstring
    "SS01",  # a summary line
    "PR01",
    "PR02",
    "PR07",  # every parameter documented, none unknown, each described
    "RT01",  # a Returns section (functions that return something)
    "EX01",  # an Examples section
}

# Examples in the pages and in the docstrings run under `-b doctest`.
doctest_global_setup = """
import numpy as np
import pyce
"""

html_theme = "alabaster"
html_title = f"pyce {release}"
html_theme_options = {
    "description": "Fast, exact cross-entropy for Python on the CPU",
    "fixed_sidebar": True,
}
