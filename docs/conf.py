"""Sphinx configuration of the datalad-hpcdata documentation site.

Build with ``tools/docs.sh`` (HTML, warnings are errors, offline check of
internal links).  Pages are Markdown (MyST); the command and special
remote reference is generated from the code by ``_ext/hpcdata_docs.py``.
"""

from __future__ import annotations

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "_ext"))
sys.path.insert(0, os.path.dirname(HERE))

import datalad_hpcdata  # noqa: E402

project = "datalad-hpcdata"
author = "datalad-hpcdata developers"
copyright = "the datalad-hpcdata developers"
version = release = datalad_hpcdata.__version__

extensions = ["myst_parser", "hpcdata_docs"]
source_suffix = {".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "README.md"]
myst_heading_anchors = 3
myst_enable_extensions = ["colon_fence"]
suppress_warnings = []
nitpicky = False

html_theme = "furo"
html_title = "datalad-hpcdata %s" % release
html_static_path = []
html_show_sourcelink = True
smartquotes = False
