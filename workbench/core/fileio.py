"""Atomic file writes, shared by every writer in the project (labels, checkpoints, results, manifests).

Write to a temp file in the target folder, fsync, then rename over the target: a crash or kill mid-write leaves the
previous file intact, never a half-written one (a same-filesystem rename is atomic). Lives on the bottom floor
(workbench.core) so that every floor above, the models and the dataset builders included, can import it.
"""

from __future__ import annotations

import hashlib
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


def sha256_file(path: Path | str) -> str:
    """The sha256 of a file's bytes, read in 1 MiB chunks (weights and censuses can be large)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def check_build_dir(out_dir: Path, marker: str) -> None:
    """A dataset build may only overwrite an empty folder or an earlier build (which holds its `marker` report)."""
    out_dir = Path(out_dir)
    if out_dir.exists():
        if not out_dir.is_dir():
            raise FileExistsError(f"{out_dir} exists and is not a folder")
        if any(out_dir.iterdir()) and not (out_dir / marker).is_file():
            raise FileExistsError(f"{out_dir} is not empty and holds no {marker}: refusing to overwrite it")


def replace_build(staging: Path, out_dir: Path, parts: tuple[str, ...]) -> None:
    """Replace an earlier build's `parts` in out_dir by the staged ones (a build is made in a staging folder, so a
    failed build leaves the previous one intact); anything else a user put into out_dir stays. The last part should
    be the build's report: it marks a complete build."""
    import shutil

    out_dir = Path(out_dir)
    out_dir.mkdir(exist_ok=True)
    for name in parts:
        old = out_dir / name
        if old.is_dir() and not old.is_symlink():
            shutil.rmtree(old)
        elif old.exists() or old.is_symlink():
            old.unlink()
    for name in parts:
        if (Path(staging) / name).exists():
            os.replace(Path(staging) / name, out_dir / name)


def csv_text(rows, columns) -> str:
    """CSV text with a header of `columns` (extra keys in a row are ignored), ready for write_atomic."""
    import csv
    import io

    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(columns), lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()
