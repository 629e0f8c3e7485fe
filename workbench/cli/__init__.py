"""The command line: one module per command group (analyze, dataset, train, eval, gui options) and `main`, which
parses and dispatches. Qt-free; the `workbench` program itself is workbench.launch."""

from workbench.cli.args import EXIT_ERROR, EXIT_OK, EXIT_PARTIAL
from workbench.cli.main import build_parser, main

__all__ = ["EXIT_ERROR", "EXIT_OK", "EXIT_PARTIAL", "build_parser", "main"]
