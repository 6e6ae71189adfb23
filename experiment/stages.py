"""Stages of an experiment as console-script runs, each cached by its configuration.

A stage is one `sa-*` command with Hydra overrides, run into a folder named by a hash of everything that defines it
(its command, overrides and the keys of the stages it reads). A stage that finished wrote `stage.json` there; a
re-run or a sweep with the same settings reuses it, a stage that was interrupted is run again with the same command
(sa-simulate and sa-train resume themselves).
"""

from __future__ import annotations

import hashlib
import json
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from conf.errors import UserError

MARKER = "stage.json"
BIN = Path(sys.executable).parent


@dataclass
class Stage:
    """One cached console-script run, into `parent / (prefix + key)`."""

    name: str
    command: str
    overrides: list[str]
    parent: Path
    inputs: list[str] = field(default_factory=list)
    prefix: str = ""

    @property
    def key(self) -> str:
        """12 hex digits of sha256 over the command, its overrides and the keys of its inputs (order kept)."""
        text = json.dumps({"command": self.command, "overrides": list(self.overrides), "inputs": list(self.inputs)})
        return hashlib.sha256(text.encode()).hexdigest()[:12]

    @property
    def folder(self) -> Path:
        return self.parent / f"{self.prefix}{self.key}"

    def _marker(self) -> dict[str, Any]:
        """The stage's marker record; {} when there is no readable one."""
        try:
            return json.loads((self.folder / MARKER).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}

    def recorded_seconds(self) -> float | None:
        """The seconds the stage took when it ran (from its marker), None when it has not finished."""
        return self._marker().get("seconds")

    def argv(self) -> list[str]:
        return [self.command, *self.overrides, f"hydra.run.dir={self.folder}"]

    def run(self, log: Path) -> float:
        """Run unless done; returns the seconds spent (0 when cached). A failure is a one-line UserError."""
        if self._marker().get("key") == self.key:  # finished with these settings
            print(f"sa-experiment: {self.name}: cached ({self.folder})", flush=True)
            return 0.0
        self.folder.mkdir(parents=True, exist_ok=True)
        print(f"sa-experiment: {self.name}: {shlex.join(self.argv())}", flush=True)
        started = time.perf_counter()
        with log.open("a", encoding="utf-8") as handle:
            handle.write(f"\n=== {self.name}: {shlex.join(self.argv())}\n")
            handle.flush()
            done = subprocess.run([str(BIN / self.command), *self.argv()[1:]], stdout=handle, stderr=subprocess.PIPE,
                                  text=True)  # fmt: skip
            handle.write(done.stderr)
        if done.returncode == 130:
            raise KeyboardInterrupt
        if done.returncode != 0:
            last = (done.stderr.strip().splitlines() or ["(no message)"])[-1]
            raise UserError(f"stage {self.name} failed (exit {done.returncode}): {last}; see {log}")
        seconds = time.perf_counter() - started
        record = {"key": self.key, "name": self.name, "argv": self.argv(), "inputs": self.inputs,
                  "seconds": round(seconds, 1)}  # fmt: skip
        (self.folder / MARKER).write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
        return seconds
