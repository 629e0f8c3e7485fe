"""Point label files: ALL-IDB's `.xyc` (`x y` per line, tab, space or comma separated), read by the ALL-IDB1
builders, the pipeline evaluation (`--points`) and the annotation importer."""

from __future__ import annotations

import math
from pathlib import Path

from workbench.core.errors import LabelFileError


def _shown(line: str, limit: int = 60) -> str:
    """`line` as quoted in an error message: repr'd, at most `limit` characters of it."""
    return repr(line if len(line) <= limit else line[:limit] + "…")


def read_xyc(path: Path | str) -> list[tuple[float, float]]:
    """The points of an ALL-IDB `.xyc` file: `x y` per line (tab, space or comma separated), finite numbers.
    LabelFileError names the file (and the line) that is not UTF-8 or not `x y`; OSError if it cannot be read."""
    path = Path(path)
    data = path.read_bytes()  # OSError (missing, unreadable) as before
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise LabelFileError(f"{path}: not a UTF-8 text file (byte {exc.start}); expected 'x y' per line") from None
    out = []
    for number, line in enumerate(text.splitlines(), 1):
        parts = line.replace(",", " ").split()  # xyc uses a tab, other_points a space
        if not parts:
            continue
        try:
            if len(parts) != 2:
                raise ValueError
            x, y = float(parts[0]), float(parts[1])
            if not (math.isfinite(x) and math.isfinite(y)):
                raise ValueError
        except ValueError:
            raise LabelFileError(f"{path}:{number}: expected 'x y' (finite numbers), got {_shown(line)}") from None
        out.append((x, y))
    return out
