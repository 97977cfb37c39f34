"""Output a terminal can show: on an ASCII stdout (``LC_ALL=C``, ``PYTHONIOENCODING=ascii``) the few
non-ASCII signs unetpp prints are spelled in ASCII (``±`` as ``+/-``) instead of ending in a traceback."""

from __future__ import annotations

import codecs
import sys

SPELLED = {"±": "+/-", "×": "x", "²": "^2", "³": "^3", "≥": ">=", "≤": "<=", "→": "->", "—": "-", "–": "-", "…": "..."}
HANDLER = "unetpp-ascii"


def _spell(error: UnicodeError) -> tuple[str, int]:
    if not isinstance(error, UnicodeEncodeError):
        raise error
    text = error.object[error.start : error.end]
    return "".join(SPELLED.get(c, "?") for c in text), error.end


def plain_streams() -> None:
    """Let stdout and stderr write any text: what their encoding lacks is spelled in ASCII (or '?')."""
    try:
        codecs.lookup_error(HANDLER)
    except LookupError:
        codecs.register_error(HANDLER, _spell)
    for stream in (sys.stdout, sys.stderr):
        encoding = getattr(stream, "encoding", None) or "ascii"
        try:
            "±".encode(encoding)
        except (UnicodeEncodeError, LookupError):
            reconfigure = getattr(stream, "reconfigure", None)
            if reconfigure is not None:
                reconfigure(errors=HANDLER)
