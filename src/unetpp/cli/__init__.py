"""The `unetpp` command line (``unetpp.cli:main``): one module per group of subcommands."""

from .main import build_parser, main

__all__ = ["build_parser", "main"]
