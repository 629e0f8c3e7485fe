"""Reading YAML that comes from outside (settings files, names files, data yamls) without letting it blow up.

PyYAML's safe loader still expands aliases: a "billion laughs" file of a few hundred bytes becomes gigabytes and
minutes of work. Nothing a user writes for this program needs anchors or aliases, so a document that uses one is
refused, and so is a file over MAX_BYTES.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

MAX_BYTES = 1 << 20   # 1 MiB: settings and names files are a few hundred bytes


class _NoAliasLoader(yaml.SafeLoader):
    def compose_node(self, parent, index):   # noqa: ANN001 - PyYAML's hook
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.YAMLError(f"anchors / aliases are not accepted (line {event.start_mark.line + 1})")
        return super().compose_node(parent, index)


def load_yaml_text(text: str) -> Any:
    """Parse `text` (safe types only, no aliases); raises yaml.YAMLError."""
    return yaml.load(text, Loader=_NoAliasLoader)   # noqa: S506 - a SafeLoader subclass


def load_yaml_file(path: Path | str) -> Any:
    """Parse a YAML file from outside; raises OSError, UnicodeDecodeError or yaml.YAMLError (a file over MAX_BYTES
    is a YAMLError too)."""
    path = Path(path)
    if path.stat().st_size > MAX_BYTES:
        raise yaml.YAMLError(f"file of {path.stat().st_size} bytes is over the {MAX_BYTES} byte limit")
    return load_yaml_text(path.read_text(encoding="utf-8"))


def short_error(exc: BaseException, limit: int = 160) -> str:
    """The first line of an error message, cut to `limit` characters: a parser's message can quote the input."""
    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    return first if len(first) <= limit else first[: limit - 3] + "..."
