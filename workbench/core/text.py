"""Text from outside (file names, settings, label files) made safe to print on one terminal line: control
characters (an ANSI escape sequence, a carriage return that would overwrite the line) and bytes that are not UTF-8
are shown escaped, never interpreted."""

from __future__ import annotations

import re

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\n]")


def printable(text: object) -> str:
    """`text` as one printable line: control characters as \\xNN (newline as \\n), non-UTF-8 bytes as \\xNN."""
    value = str(text).encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    return _CONTROL.sub(lambda m: "\\n" if m.group() == "\n" else f"\\x{ord(m.group()):02x}", value)
