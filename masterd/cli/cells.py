"""What rpc-cli prints of a node's (or the master's) strings in a table or a text line:
every control character escaped, so that a hostile or broken node cannot move the
operator's cursor, recolour the terminal, or break a row with a newline.

Escaped, as ``repr`` writes them: the C0 controls (``\\n``, ``\\t``, ``\\x1b``, ...), DEL
and the C1 controls (``\\x9b``, a one-byte CSI), and the Unicode bidirectional
overrides and isolates (``\\u202e``), which reorder what the eye reads.  Everything else,
backslashes included, is printed as it is; ``--json`` prints the strings in JSON.
"""

from __future__ import annotations

import math

_CONTROLS = [*range(0x00, 0x20), *range(0x7F, 0xA0)]
_BIDI = [*range(0x202A, 0x202F), *range(0x2066, 0x206A), 0x200E, 0x200F, 0x061C]
_NAMED = {0x09: "\\t", 0x0A: "\\n", 0x0D: "\\r"}
_ESCAPES = {
    code: _NAMED.get(code, f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")
    for code in (*_CONTROLS, *_BIDI)
}
#: seconds past this are shown in exponent form, not as a row of digits
_LONGEST_PLAIN_S = 1e7


def cell(value: object) -> str:
    """``value`` as text with every control character escaped."""
    return str(value).translate(_ESCAPES)


def seconds_cell(value: object, places: int) -> str:
    """A node's number of seconds as ``12.3s``; a huge one as ``1e+300s``, anything that
    is not a number escaped as it came."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return cell(value)
    number = float(value) if abs(value) <= 1e308 else math.inf
    if not math.isfinite(number) or abs(number) >= _LONGEST_PLAIN_S:
        return f"{number:.3g}s"
    return f"{number:.{places}f}s"
