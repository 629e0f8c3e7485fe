"""Where does `workbench analyze` spend its time, and how much faster is it on the exported models?

This script is now `workbench bench` (workbench/cli/bench.py, workbench/app/bench.py): the real pipeline
(`SmearAnalyzer.iter_analyze`, as `analyze` and the GUI run it) per stage (load, scale, detect, classify, total) and
per backend, in one run on the same images, with the speed-up against PyTorch. Arguments are passed through:

    .venv/bin/python bench/analyze_bench.py                                  # sample + one ALL-IDB1 smear
    .venv/bin/python bench/analyze_bench.py IMG... FOLDER --backends torch,auto,onnxruntime --repeat 5
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from workbench.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(["bench", *sys.argv[1:]]))
