"""Errors the memory layer raises for bad files: one line naming the file, what is wrong and how to fix it.

They are `ValueError`s (memory depends on nothing of ours); commands turn them into `conf.errors.UserError`.
"""

from __future__ import annotations

from pathlib import Path


class MemoryFileError(ValueError):
    """A memory file (snapshot, prior set) is missing, truncated or inconsistent. The message is one line."""

    fix = ""

    def __init__(self, path: str | Path, problem: str) -> None:
        self.path = str(path)
        self.problem = " ".join(str(problem).split())
        super().__init__(f"{self.path}: {self.problem}" + (f"; {self.fix}" if self.fix else ""))


class SnapshotError(MemoryFileError):
    """A saved store or world snapshot cannot be loaded; nothing is overwritten."""

    fix = "restore the snapshot folder from a copy, or remove it (sa-simulate rebuilds memory from episodes.jsonl)"


class PriorFileError(MemoryFileError):
    """A prior-memory file (shipped set or a user's HH-RLHF-style JSONL) is malformed."""

    fix = "fix the file or set memory.priors_path to another JSONL file (null: the shipped set)"
