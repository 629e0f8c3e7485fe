"""The real launcher, timed as a user meets it: from starting `workbench` to its window painted on the screen, and
the memory of the idle window with a folder of images open (no model loaded). Targets: median < 1 s, < 300 MB.

    QT_QPA_PLATFORM=offscreen .venv/bin/python bench/gui_startup_bench.py [--repeat 5] [--images 300]
    xvfb-run -a .venv/bin/python bench/gui_startup_bench.py          # a real X server

Start-up: `workbench gui --exit-after-shown` (the console script the user runs) prints one line once the window has
painted, with the heavy libraries loaded by then ('-': none of torch, ultralytics, OpenCV, numpy); the time is taken
from just before the process is started to that line, after one untimed run that writes the bytecode cache (as any
installed copy has it). The process CPU time is printed too: on a machine whose cores other programs keep busy, the
wall time includes waiting for them. Memory: `workbench gui FOLDER` with N images (links to BCCD smears), left to settle (its
thumbnails made), then its resident memory (VmRSS) is read from /proc and the process is ended; torch must not be
mapped. Settings and cases go to a temporary folder, never the user's.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
LAUNCHER = Path(sys.executable).parent / "workbench"


def _env(tmp: Path) -> dict[str, str]:
    env = dict(os.environ)
    if not env.get("DISPLAY"):
        env.setdefault("QT_QPA_PLATFORM", "offscreen")
    env.update(XDG_CONFIG_HOME=str(tmp / "config"), XDG_DATA_HOME=str(tmp / "data"),
               SMEAR_CASES_DIR=str(tmp / "cases"),
               # bytecode cached as on any installed copy (a first, untimed run writes it), kept out of the repo
               PYTHONPYCACHEPREFIX=str(tmp / "pycache"))
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def time_start(tmp: Path) -> tuple[float, float, str]:
    """(wall seconds to the painted window, CPU seconds of the whole process, its line). The CPU time says how much
    work the start is when other programs share the machine's cores (wall time then includes waiting for them)."""
    start = time.perf_counter()
    proc = subprocess.Popen([str(LAUNCHER), "gui", "--exit-after-shown"], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True, cwd=tmp, env=_env(tmp))
    line = proc.stdout.readline().strip()
    elapsed = time.perf_counter() - start
    _pid, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if not line.startswith("shown: window"):
        raise SystemExit(f"the window did not start: {line!r} (exit {proc.returncode})")
    return elapsed, usage.ru_utime + usage.ru_stime, line


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def idle_memory(tmp: Path, images: int, settle_s: float = 3.0, limit_s: float = 90.0) -> tuple[float, bool]:
    """(resident MB once it has settled, torch mapped?) of the window with `images` images open."""
    from workbench.app.paths import datasets_dir   # the datasets folder every command uses ($SMEAR_DATASETS)

    jpegs = datasets_dir() / "bccd" / "BCCD" / "JPEGImages"
    source = sorted(jpegs.glob("*.jpg"))
    if not source:
        raise SystemExit(f"BCCD images not found ({jpegs})")
    folder = tmp / "smears"
    folder.mkdir()
    for n in range(images):
        os.symlink(source[n % len(source)], folder / f"smear_{n:04d}.jpg")
    proc = subprocess.Popen([str(LAUNCHER), "gui", str(folder)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, cwd=tmp, env=_env(tmp))
    try:
        start, last, stable_since = time.perf_counter(), -1.0, time.perf_counter()
        while time.perf_counter() - start < limit_s:
            time.sleep(0.5)
            rss = _rss_mb(proc.pid)
            if abs(rss - last) > 1.0:
                last, stable_since = rss, time.perf_counter()
            elif time.perf_counter() - stable_since >= settle_s:
                break
        torch = "libtorch" in Path(f"/proc/{proc.pid}/maps").read_text()
        return last, torch
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--images", type=int, default=300, help="images open for the memory check (0: skip it)")
    args = parser.parse_args()
    if not LAUNCHER.is_file():
        raise SystemExit(f"{LAUNCHER} not found: install the package (pip install -e .)")
    tmp = Path(tempfile.mkdtemp(prefix="wb_start_"))
    try:
        print(f"platform: {'X display ' + os.environ['DISPLAY'] if os.environ.get('DISPLAY') else 'offscreen'}")
        print(f"load average before: {' '.join(f'{v:.2f}' for v in os.getloadavg())} on {os.cpu_count()} cores")
        elapsed, cpu, _line = time_start(tmp)
        print(f"first run (compiles the bytecode, not counted): {elapsed:.3f} s (process CPU {cpu:.3f} s)")
        times, cpus = [], []
        for _ in range(args.repeat):
            elapsed, cpu, line = time_start(tmp)
            times.append(elapsed)
            cpus.append(cpu)
            print(f"`workbench gui` to a painted window: {elapsed:.3f} s (process CPU {cpu:.3f} s; {line})")
        median = statistics.median(times)
        print(f"median {median:.3f} s over {args.repeat} runs (target < 1 s): {'ok' if median < 1.0 else 'SLOW'}; "
              f"median CPU {statistics.median(cpus):.3f} s")
        if args.images:
            rss, torch = idle_memory(tmp, args.images)
            print(f"idle with {args.images} images open: {rss:.0f} MB resident (target < 300 MB: "
                  f"{'ok' if rss < 300 else 'TOO MUCH'}); torch loaded: {'yes' if torch else 'no'}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
