"""Make untrusted text (model output, file names, server messages) safe to print on a terminal.

A model reply is untrusted input, and a terminal obeys what it prints: OSC 52 writes the clipboard,
OSC 8 plants links, `ESC[2J` clears the screen, a bare CR or backspaces overwrite what was shown,
C1 controls (U+0080-U+009F) act as ESC sequences on some terminals, and bidi overrides reorder a
line. `plain` removes all of these, keeping newlines and tabs. `markup` also escapes rich markup,
so a reply holding "[red]" or "[link=...]" prints as those characters wherever rich markup is on.

Every renderer of the CLI and the eval passes untrusted text through one of the two. `--json`
output needs neither: `json.dumps` writes every control character as a \\u escape.
"""

from __future__ import annotations

import re

from rich.markup import escape

_ST = r"(?:\x07|\x1b\\|\x9c)"  # string terminators: BEL, ESC \, C1 ST
_CONTROLS = re.compile(
    r"\x1b\][^\x07\x1b\x9c]*" + _ST + "?"          # OSC (clipboard, links, titles); unterminated: to the end
    r"|\x1b[P^_X][^\x1b\x9c]*" + _ST + "?"         # DCS, PM, APC, SOS strings
    r"|\x1b\[[0-?]*[ -/]*[@-~]?"                   # CSI: cursor moves, erase, colours
    r"|\x1b[ -/]*[0-~]?"                           # the other ESC sequences (charset, keypad, RIS, ...)
    r"|\x9d[^\x07\x1b\x9c]*" + _ST + "?"           # C1 OSC
    r"|[\x90\x98\x9e\x9f][^\x1b\x9c]*" + _ST + "?"  # C1 DCS, SOS, PM, APC
    r"|\x9b[0-?]*[ -/]*[@-~]?"                     # C1 CSI
    r"|[\x00-\x08\x0b-\x1f\x7f-\x9f]"              # every other C0/C1 control and DEL; \t and \n stay
    r"|[\u202a-\u202e\u2066-\u2069\u200e\u200f]"  # bidi overrides and marks (reordered lines)
)


def plain(text: object) -> str:
    """`text` without terminal control sequences or control characters (newlines and tabs kept)."""
    s = text if isinstance(text, str) else str(text)
    return _CONTROLS.sub("", s.replace("\r\n", "\n"))


def markup(text: object) -> str:
    """`plain(text)` with rich markup escaped, for f-strings printed with markup on."""
    return escape(plain(text))
