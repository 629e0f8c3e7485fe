"""Atomic file writes, shared by every writer in the project (labels, checkpoints, results, manifests).

Write to a temp file in the target folder, fsync, then rename over the target: a crash or kill mid-write leaves the
previous file intact, never a half-written one (a same-filesystem rename is atomic). Lives in `detection` because
`detection` and `classification` must not depend on the app; `classification` and `workbench` import it from here.
"""

from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Iterator


@contextmanager
def atomic_open(path: Path | str, mode: str = "wb") -> Iterator[IO]:
    """`with atomic_open(p) as f: f.write(...)` replaces `p` only if the block completes."""
    if mode not in ("wb", "w"):
        raise ValueError(f"atomic_open supports 'w' and 'wb', not {mode!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp_name, 0o644)  # mkstemp creates 0600; outputs are ordinary, shareable files
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


def write_atomic(path: Path | str, data: str | bytes) -> None:
    with atomic_open(path, "wb" if isinstance(data, bytes) else "w") as handle:
        handle.write(data)
