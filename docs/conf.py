"""Sphinx configuration of mmsaol's documentation site.

Build it with ``pip install -e ".[docs]" && sphinx-build -W -b html docs
docs/_build/html`` (``-W``: every warning is an error, as in
``tests/test_docs.py``).
"""
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, '_ext'))
sys.path.insert(0, os.path.dirname(HERE))

from mmsaol.version import __version__  # noqa: E402

project = 'mmsaol'
author = 'mmsaol contributors'
copyright = '2026, mmsaol contributors'
release = __version__
version = __version__

extensions = [
    'myst_parser',
    'sphinx.ext.autodoc',
    'sphinx.ext.napoleon',
    'mmsaol_docs',  # generated pages: troubleshooting, study tables, tools
]
source_suffix = {'.md': 'markdown', '.rst': 'restructuredtext'}
exclude_patterns = ['_build']
html_theme = 'furo'
# Quotes stay as typed: option values such as 'last' are code, not prose.
smartquotes = False
html_title = f'mmsaol {release}'

# MyST: headings get anchors down to level 3, so pages link to sections as
# [text](page.md#anchor); a link to a missing page or anchor is a warning,
# and with -W an error.
myst_heading_anchors = 3
myst_enable_extensions = ['colon_fence', 'deflist']

# The API reference: Google-style ``Args:`` as mmpretrain writes them.
napoleon_google_docstring = True
napoleon_numpy_docstring = False
# 'Attributes:' as fields: autodoc documents NamedTuple fields itself.
napoleon_use_ivar = True
autodoc_member_order = 'bysource'
autodoc_typehints = 'none'
autodoc_default_options = {'show-inheritance': False}

# Every cross-reference must resolve: to a documented object, or (see
# _ext/mmsaol_docs.py) to a name Python finds where the docstring stands. A
# reference to a name that does not exist (misspelt, or moved without its
# references) is a warning, and with -W an error. Only napoleon's
# "(int, optional)" is exempt: 'optional' is a word, not a name.
nitpicky = True
nitpick_ignore = [('py:class', 'optional')]
