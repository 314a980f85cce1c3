"""Sphinx extension: two fixes to what autodoc shows for udl_jax's API page (book/api.md).

1. Flax NNX classes with their real constructor signatures. NNX modules are built by a
   metaclass whose ``__call__(*args, **kwargs)`` autodoc would report as the signature of every
   model class (``MLP(*args, **kwargs)``, "Return type: Any"). Sphinx skips metaclass
   ``__call__`` methods listed in ``_METACLASS_CALL_BLACKLIST`` (it ships with
   ``enum.EnumMeta.__call__`` for the same reason); adding NNX's makes autodoc fall through to
   the class's own ``__init__``, e.g. ``MLP(widths, *, activation='relu', ...)``.
2. NamedTuple fields documented once. A NamedTuple's fields carry the generated docstring
   "Alias for field number N", so autodoc documents each field a second time next to the
   entries napoleon makes from the class's ``Attributes:`` section (a "duplicate object
   description" warning). Fields whose only docstring is the generated one are skipped.
"""

from __future__ import annotations

import re

_GENERATED_FIELD_DOC = re.compile(r"Alias for field number \d+")


def _skip_generated_namedtuple_fields(app, what, name, obj, skip, options):
    doc = getattr(obj, "__doc__", None)
    if isinstance(doc, str) and _GENERATED_FIELD_DOC.fullmatch(doc):
        return True
    return None  # let autodoc decide


def setup(app):
    from flax import nnx
    from sphinx.ext import autodoc

    for cls in (nnx.Module, nnx.Variable):
        call = type(cls).__call__
        name = f"{call.__module__}.{call.__qualname__}"
        if name not in autodoc._METACLASS_CALL_BLACKLIST:
            autodoc._METACLASS_CALL_BLACKLIST.append(name)
    app.connect("autodoc-skip-member", _skip_generated_namedtuple_fields)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
