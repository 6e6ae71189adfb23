"""BIG-bench tasks for evaluation only: fetch the few task JSONs we need from PyPI once, then load them offline.

The files carry BIG-bench's canary string: they are evaluation data and must never be used for training.
"""

from __future__ import annotations

import itertools
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from conf.errors import UserError, require

T = TypeVar("T")
BIGBENCH_SPEC = "bigbench==1.0.0"
HHH_CATEGORIES = ("harmless", "helpful", "honest", "other")
# task file inside `bigbench/benchmark_tasks/` → file name in our cache folder
TASK_FILES: dict[str, str] = {
    **{f"hhh_alignment/{c}/task.json": f"hhh_{c}.json" for c in HHH_CATEGORIES},
    "truthful_qa/task_mc.json": "truthful_qa_mc.json",
    "truthful_qa/questions.json": "truthful_qa_questions.json",
    "moral_permissibility/task.json": "moral_permissibility.json",
}


@dataclass(frozen=True)
class MCItem:
    """One multiple-choice item: a prompt, its choices and BIG-bench target scores (1 = correct, 0 = wrong)."""

    task: str
    index: int
    input: str
    choices: tuple[str, ...]
    scores: tuple[float, ...]
    meta: dict[str, Any] = field(default_factory=dict, compare=False)


def default_cache() -> Path:
    """`<cache_dir()>/bigbench`: where the extracted task JSONs live."""
    from conf.paths import cache_dir

    return cache_dir() / "bigbench"


def missing_files(folder: Path) -> list[str]:
    return [name for name in TASK_FILES.values() if not (folder / name).is_file()]


def fetch_bigbench(target: Path | None = None, *, timeout: float = 900.0) -> Path:
    """Ensure the needed task JSONs are in `target`; download the `bigbench` sdist with pip once if they are not.

    `pip download --no-deps bigbench==1.0.0` fails at metadata time (the package declares direct URL dependencies),
    but with `--no-clean` the unpacked sdist stays in pip's temp folder, from which we copy only the task JSONs.
    The temp folder (~1.8 GB) is always removed.
    """
    target = Path(target) if target is not None else default_cache()
    if not missing_files(target):
        return target
    target.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="sa-bigbench-"))
    try:
        env = {**os.environ, "TMPDIR": str(tmp), "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
        command = [sys.executable, "-m", "pip", "download", "-q", "--no-clean", "--no-deps", BIGBENCH_SPEC]
        try:
            proc = subprocess.run(
                [*command, "-d", str(tmp / "dl")], env=env, capture_output=True, text=True, timeout=timeout
            )
        except (OSError, subprocess.TimeoutExpired) as error:
            raise UserError(f"could not download {BIGBENCH_SPEC} from PyPI ({error}); {_HOW_TO_FIX}") from None
        roots = sorted(tmp.glob("pip-*/*/bigbench/benchmark_tasks")) + sorted(tmp.glob("**/bigbench/benchmark_tasks"))
        if not roots:
            reason = ((proc.stderr or proc.stdout).strip().splitlines() or ["no output"])[-1]
            raise UserError(f"could not download {BIGBENCH_SPEC} from PyPI ({reason}); {_HOW_TO_FIX}")
        for member, name in TASK_FILES.items():
            source = roots[0] / member
            require(source.is_file(), f"{BIGBENCH_SPEC} has no {member}; {_HOW_TO_FIX}")
            partial = target / (name + ".part")
            shutil.copyfile(source, partial)
            partial.replace(target / name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


_HOW_TO_FIX = (
    "connect to PyPI once, or set `bigbench_dir=FOLDER` to a folder holding the BIG-bench task JSONs "
    f"({', '.join(TASK_FILES.values())}) or a BIG-bench checkout's benchmark_tasks/"
)


def task_file(folder: Path, member: str) -> Path:
    """Find one task JSON in `folder`: our flat cache names, BIG-bench's own layout, or a checkout's root."""
    name = TASK_FILES[member]
    for candidate in (folder / name, folder / member, folder / "bigbench" / "benchmark_tasks" / member):
        if candidate.is_file():
            return candidate
    raise UserError(f"{folder} has no {name} (nor {member}); set `bigbench_dir` to a folder that holds the task JSONs")


def bigbench_folder(configured: str | None, download: bool = True) -> Path:
    """The folder with the task JSONs: the configured one, else the cache (downloaded on first use)."""
    if configured:
        folder = Path(configured).expanduser()
        require(folder.is_dir(), f"bigbench_dir {configured} is not a folder; point it at the BIG-bench task JSONs")
        return folder
    folder = default_cache()
    if missing_files(folder):
        require(download, f"BIG-bench tasks are not in {folder}; run once with `download=true` while online")
        fetch_bigbench(folder)
    return folder


def load_json_task(path: Path) -> dict[str, Any]:
    """Read a BIG-bench JSON task and check its shape; a corrupt file is a one-line UserError naming it."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise UserError(f"{path}: not a readable BIG-bench task JSON ({error}); delete it to re-download") from None
    examples = data.get("examples") if isinstance(data, dict) else None
    if not isinstance(examples, list) or not examples:
        raise UserError(f"{path}: not a BIG-bench task JSON (no `examples` list); delete it to re-download")
    for number, example in enumerate(examples):
        fields = example if isinstance(example, dict) else {}
        scores = fields.get("target_scores")
        values = list(scores.values()) if isinstance(scores, dict) else []
        numeric = all(isinstance(v, int | float) and not isinstance(v, bool) for v in values)
        if not isinstance(fields.get("input"), str) or len(values) < 2 or not numeric:
            raise UserError(
                f"{path}: example {number} is not {{'input': str, 'target_scores': {{choice: 0|1, ...}}}} "
                "with at least two choices; delete it to re-download"
            )
    return data


def read_jsonl(path: Path, what: str, fix: str, empty: str, row: Callable[[int, Any], T]) -> list[T]:
    """`row(line number, parsed line)` for each non-blank line of one of our JSONL inputs (`row` refuses a line with
    ValueError); an unreadable or empty file is a one-line UserError `{what} {path}: <why>; {fix}` or
    `{what} {path} is empty; {empty}`."""
    try:
        lines = enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        rows = [row(number, json.loads(line)) for number, line in lines if line.strip()]
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, ValueError, AttributeError) as error:
        raise UserError(f"{what} {path}: {error}; {fix}") from None
    require(bool(rows), f"{what} {path} is empty; {empty}")
    return rows


def mc_items(path: Path, task: str) -> list[MCItem]:
    """Items of a BIG-bench multiple-choice JSON task (`input` + `target_scores`), in file order."""
    data = load_json_task(path)
    return [
        MCItem(task, i, ex["input"], tuple(ex["target_scores"]), tuple(float(v) for v in ex["target_scores"].values()))
        for i, ex in enumerate(data["examples"])
    ]


def hhh_items(folder: Path) -> list[MCItem]:
    """BIG-bench HHH alignment: 221 two-choice items in four categories (task name = category)."""
    return [item for c in HHH_CATEGORIES for item in mc_items(task_file(folder, f"hhh_alignment/{c}/task.json"), c)]


_TURN = re.compile(r"\n\s*\n(Human|Assistant):[ \t]*")


def dialogue_turns(text: str) -> list[tuple[str, str]]:
    """Split a BIG-bench HHH input into chat turns: the text opens with the human's turn, and later turns are marked
    `\n\nAssistant:` / `\n\nHuman:` (BIG-bench's own transcript format). Returns (role, content) pairs."""
    parts = _TURN.split(text)  # [first turn, speaker, turn, speaker, turn, ...]
    speakers = ["Human", *parts[1::2]]
    turns = [
        ("assistant" if s == "Assistant" else "user", t.strip()) for s, t in zip(speakers, parts[::2], strict=True)
    ]
    # two turns of the same speaker in a row: keep them as one message
    return [(role, "\n\n".join(t for _, t in group)) for role, group in itertools.groupby(turns, key=lambda t: t[0])]


def truthful_qa_mc2_items(path: Path) -> list[MCItem]:
    """TruthfulQA from BIG-bench's `questions.json`: all true answers (score 1) and false answers (score 0)."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        items = []
        for i, q in enumerate(data["examples"]):
            true, false = list(q["True answers"]), list(q["False answers"])
            choices = tuple(dict.fromkeys(true + false))
            scores = tuple(1.0 if c in true else 0.0 for c in choices)
            if not true or not false:
                raise ValueError(f"question {i} lacks true or false answers")
            items.append(MCItem("truthful_qa_mc2", i, q["Question"], choices, scores, {"best": q["Best answer"]}))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, ValueError) as error:
        raise UserError(
            f"{path}: not BIG-bench's TruthfulQA questions.json ({error}); delete it to re-download"
        ) from None
    return items


def subsample(items: list[MCItem], limit: int | None, seed: int = 0) -> list[MCItem]:
    """A seeded random subset of `limit` items, kept in file order (all items when limit is None)."""
    if limit is None or limit >= len(items):
        return items
    require(limit >= 1, f"limit {limit} must be a positive number of items or null for all")
    keep = sorted(random.Random(seed).sample(range(len(items)), limit))
    return [items[i] for i in keep]
