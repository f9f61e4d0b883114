"""``llava-gemma``: the commands a user runs, and the ones the workflow's rules run."""

from llava_gemma.cli.main import build_parser, main

__all__ = ["build_parser", "main"]
