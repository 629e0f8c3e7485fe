"""Time from process start to the main window shown, with no model code loaded (target: < 2 s).

    QT_QPA_PLATFORM=offscreen .venv/bin/python bench/gui_startup_bench.py [--repeat 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

PROBE = """
import sys, time
t0 = time.perf_counter()
from PySide6.QtWidgets import QApplication
from PySide6.QtCore import QSettings
app = QApplication([])
import workbench.gui.main_window as mw
window = mw.MainWindow(store=QSettings(sys.argv[1], QSettings.Format.IniFormat))
window.show()
app.processEvents()
elapsed = time.perf_counter() - t0
heavy = [m for m in ("torch", "ultralytics", "cv2", "workbench.app.pipeline") if m in sys.modules]
print(f"{elapsed:.3f} {','.join(heavy) or '-'}")
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    env = {**os.environ, "QT_QPA_PLATFORM": os.environ.get("QT_QPA_PLATFORM", "offscreen")}
    times = []
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.repeat):
            out = subprocess.run([sys.executable, "-c", PROBE, str(Path(tmp) / "s.ini")], capture_output=True,
                                 text=True, cwd=REPO, env=env, check=True).stdout.split()
            times.append(float(out[0]))
            print(f"window shown in {out[0]} s; model modules loaded: {out[1]}")
    print(f"median {statistics.median(times):.3f} s over {args.repeat} runs (target < 2 s)")


if __name__ == "__main__":
    main()
