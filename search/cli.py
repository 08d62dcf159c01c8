"""Shared pieces of the search package's command-line tools."""

from __future__ import annotations

import argparse

__all__ = ["RaisingParser", "UsageError"]


class UsageError(Exception):
    """Bad command-line arguments; `main` prints it as one ``error:`` line, exit 2."""


class RaisingParser(argparse.ArgumentParser):
    """argparse that raises `UsageError` instead of printing usage and exiting, so a
    `main(argv)` can report one line and return 2 (and tests can call it directly)."""

    def error(self, message):
        raise UsageError(message)
