"""Refusing a detector checkpoint that would run code when loaded.

An ultralytics `.pt` is a pickle of the whole model, and ultralytics loads it with `torch.load(weights_only=False)`:
a pickle can name any callable (`os.system`, `builtins.exec`, ...) and have it called while loading. Before
ultralytics sees a file, every global the pickle refers to is listed without executing anything (torch's
`get_unsafe_globals_in_checkpoint`, which reads the pickle's opcodes) and checked against the model classes a
detector is made of: torch.nn layers and ultralytics' network modules. Anything else refuses the file, unless the
user says they trust it (`--trust-weights`).
"""

from __future__ import annotations

import logging
from pathlib import Path

from workbench.core.errors import DetectorLoadError

log = logging.getLogger(__name__)

# module prefixes whose classes a YOLO detection checkpoint is built from; torch's own weights-only allowlist
# (tensors, OrderedDict, ...) is not listed by get_unsafe_globals_in_checkpoint in the first place
ALLOWED_PREFIXES = ("torch.nn.modules.", "ultralytics.nn.modules.", "ultralytics.nn.tasks.")
ALLOWED_NAMES = frozenset({"ultralytics.utils.IterableSimpleNamespace", "types.SimpleNamespace",
                           "torch.nn.parameter.Parameter", "builtins.set", "builtins.frozenset", "builtins.slice",
                           "torch.Size"})


def foreign_globals(path: Path) -> list[str]:
    """The globals of the checkpoint's pickle that are neither torch-safe nor model classes (sorted)."""
    from torch.serialization import get_unsafe_globals_in_checkpoint

    try:
        names = get_unsafe_globals_in_checkpoint(str(path))
    except Exception as exc:  # noqa: BLE001 - not a zip / not a pickle: ultralytics' loader names the problem
        raise DetectorLoadError(f"detector weights {path} are not a readable checkpoint "
                                f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})") from None
    return sorted(n for n in names if not n.startswith(ALLOWED_PREFIXES) and n not in ALLOWED_NAMES)


def check_detector_file(path: Path, trust: bool = False) -> None:
    """Raise DetectorLoadError when loading `path` would call code outside the model classes (see module doc)."""
    if trust:
        log.warning("loading %s without checking what its pickle calls (--trust-weights)", path)
        return
    foreign = foreign_globals(path)
    if foreign:
        shown = ", ".join(foreign[:3]) + (f" and {len(foreign) - 3} more" if len(foreign) > 3 else "")
        raise DetectorLoadError(f"detector weights {path} would run code outside the model classes when loaded "
                                f"({shown}): refused; if you made this file yourself, pass --trust-weights")
