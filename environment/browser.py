"""`sa-browse`: one self-contained HTML page per world (`episodes.html` next to `episodes.jsonl`) to look at a society.

The page needs no server and no network: the records are embedded as JSON in a `<script type="application/json">`
tag (every `<`, `>` and `&` escaped as `\\u003c`..., so model text cannot close the tag) and the page's own vanilla JS
renders every piece of model text with `textContent`. It shows the grid of one round at a time (cells coloured by the
observer's alignment score, draft or revision), an agent's turns on click, and three lists — lowest-rated drafts,
largest improvement, unreadable ratings — whose orderings are computed here (so they are testable) and filtered by
model in the page. Only one round's cells and the first rows of a list are built, so a 10x10x50 world opens quickly.

    sa-browse RUN_DIR [RUN_DIR ...]          # a run dir, or any folder above run dirs (a multirun): one page per world
    sa-browse RUN_DIR --screenshot out.png   # also a PNG of the page in headless Chromium (dev extra)
"""

from __future__ import annotations

import argparse
import html
import json
import logging
import os
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from conf.errors import UserError, one_line, require
from environment.episodes import read_json_object, read_or_fail
from environment.records import valid_rating
from environment.signal import observer_score, unreadable_count
from memory.atomic import atomic_write_bytes

PROG = "sa-browse"
PAGE, INDEX = "episodes.html", "index.html"
EPISODES, WORLD, METRICS = "episodes.jsonl", "world.json", "metrics.json"
TEMPLATE = Path(__file__).with_name("browser_page.html")
METRIC_KEYS = ("stop_reason", "rounds_completed", "records", "invalid_peer_ratings", "invalid_observer_scores",
               "wall_seconds", "calls", "tokens", "cost")  # fmt: skip
log = logging.getLogger(__name__)
_ESCAPES = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}


def score(record: dict[str, Any], stage: str) -> float | None:
    """The observer's alignment score of the draft or the revision (None when unreadable)."""
    return valid_rating(observer_score(record, stage, "alignment"))


def _turn(records: Sequence[dict[str, Any]], i: int) -> tuple[int, int]:
    return int(records[i]["round"]), int(records[i]["agent_id"])


def lowest_drafts(records: Sequence[dict[str, Any]]) -> list[int]:
    """Indices of turns with a readable draft score, lowest observer draft alignment first."""
    scored = [i for i, r in enumerate(records) if score(r, "draft") is not None]
    return sorted(scored, key=lambda i: (score(records[i], "draft"), _turn(records, i)))


def largest_improvements(records: Sequence[dict[str, Any]]) -> list[int]:
    """Indices of turns with both scores readable, largest (revision − draft) alignment first."""
    both = [i for i, r in enumerate(records) if score(r, "draft") is not None and score(r, "revision") is not None]
    return sorted(both, key=lambda i: (score(records[i], "draft") - score(records[i], "revision"), _turn(records, i)))


def unreadable_turns(records: Sequence[dict[str, Any]]) -> list[int]:
    """Indices of turns with at least one unreadable rating or score, most unreadable first."""
    bad = [i for i, r in enumerate(records) if unreadable_count(r)]
    return sorted(bad, key=lambda i: (-unreadable_count(records[i]), _turn(records, i)))


def grid_size(records: Sequence[dict[str, Any]], world: dict[str, Any] | None) -> int:
    """The grid side from world.json, else from the largest position (or agent count) in the records."""
    size = ((world or {}).get("world") or {}).get("size")
    if isinstance(size, int) and size > 0:
        return size
    cells = [int(v) for r in records for v in (r.get("position") or [])[:2] if isinstance(v, int)]
    agents = len({int(r["agent_id"]) for r in records})
    return max([c + 1 for c in cells] + [int(agents**0.5 + 0.999), 1])


def page_data(records: list[dict[str, Any]], world: dict[str, Any] | None = None,
              metrics: dict[str, Any] | None = None, title: str = "") -> dict[str, Any]:  # fmt: skip
    """Everything the page shows: the records as stored plus the grid size, models and the three list orderings."""
    metrics = metrics or {}
    return {
        "title": title,
        "size": grid_size(records, world),
        "worlds": sorted({str(r["world_id"]) for r in records}),
        "models": sorted({str(r["agent_model"]) for r in records}),
        "metrics": {key: metrics[key] for key in METRIC_KEYS if key in metrics},
        "lists": {
            "lowest": lowest_drafts(records),
            "improved": largest_improvements(records),
            "unreadable": unreadable_turns(records),
        },  # fmt: skip
        "records": records,
    }


def embed_json(data: Any) -> str:
    """JSON safe inside a `<script>` element: no `<`, `>` or `&` (nor U+2028/9) appears literally."""
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return re.sub("[<>&\u2028\u2029]", lambda m: _ESCAPES[m.group(0)], text)


def render(data: dict[str, Any]) -> str:
    """The page: the template with the title and the embedded data filled in, in one pass."""
    template = TEMPLATE.read_text(encoding="utf-8")
    values = {"TITLE": html.escape(data["title"] or "episodes"), "DATA": embed_json(data)}
    return re.sub(r"@@(TITLE|DATA)@@", lambda m: values[m.group(1)], template)


def load_run(run_dir: Path) -> tuple[list[dict[str, Any]], dict[str, Any] | None, dict[str, Any] | None]:
    """The records, world.json and metrics.json of a run dir (one-line UserError for a missing or bad file)."""
    path = run_dir / EPISODES
    if not path.is_file():
        raise UserError(f"{run_dir}: no {EPISODES} here; give a run dir of sa-simulate (or a folder above run dirs)")
    try:
        records = [record for _, record in read_or_fail(path, "repair or remove that line")]
    except OSError as error:
        raise UserError(f"{path}: unreadable ({error.strerror}); check its permissions") from None
    return records, read_json_object(run_dir / WORLD), read_json_object(run_dir / METRICS)


def write_page(run_dir: str | os.PathLike[str]) -> Path:
    """Write `episodes.html` for one run dir (atomically: a reader never sees half a page); return its path."""
    run_dir = Path(run_dir)
    records, world, metrics = load_run(run_dir)
    title = ", ".join(sorted({str(r["world_id"]) for r in records})) or run_dir.name
    path = run_dir / PAGE
    try:
        atomic_write_bytes(path, render(page_data(records, world, metrics, title)).encode("utf-8"))
    except OSError as error:
        raise UserError(f"{path}: cannot write ({error.strerror}); make {run_dir} writable") from None
    return path


def write_after_run(run_dir: Path) -> None:
    """sa-simulate's last step (when `run.browser`): the run dir's page; a failure is one warning line, the run is
    kept."""
    try:
        path = write_page(run_dir)
    except Exception as error:  # noqa: BLE001 - a page must never cost the run its exit status
        log.warning("%s not written (%s); the run is saved, retry with `%s %s`", PAGE, one_line(error), PROG, run_dir)
    else:
        log.info("episode browser: %s", path)


def find_run_dirs(root: str | os.PathLike[str]) -> list[Path]:
    """The run dirs of `root`: itself when it holds episodes.jsonl (or is that file), else every run dir beneath it."""
    path = Path(root)
    if path.is_file() and path.name == EPISODES:
        path = path.parent
    require(path.is_dir(), f"{path}: no such folder; give a run dir of sa-simulate or a folder above run dirs")
    beneath = [path] if (path / EPISODES).exists() else sorted(p.parent for p in path.rglob(EPISODES))
    require(bool(beneath), f"{path}: no {EPISODES} here or beneath; give a run dir of sa-simulate")
    return beneath


def write_index(root: Path, pages: list[Path]) -> Path:
    """`index.html` in `root` linking every page beneath it (relative links, so the folder can be moved)."""
    items = "\n".join(
        f'<li><a href="{html.escape(p.relative_to(root).as_posix(), quote=True)}">'
        f"{html.escape(p.parent.relative_to(root).as_posix())}</a></li>"
        for p in pages
    )
    body = (f"<!doctype html><meta charset=utf-8><title>worlds</title><h1>{len(pages)} worlds</h1>"
            f"<ul>\n{items}\n</ul>\n")  # fmt: skip
    path = root / INDEX
    atomic_write_bytes(path, body.encode("utf-8"))
    return path


def screenshot(page: Path, out: Path) -> Path:
    """A PNG of `page` in headless Chromium with the lowest-rated draft's turn open."""
    from environment.headless import chromium_page

    with chromium_page(viewport={"width": 1280, "height": 800}) as tab:
        tab.goto(page.resolve().as_uri())
        tab.wait_for_selector("body[data-ready='1']")
        first = tab.locator("#list-rows .row").first
        if first.count():
            first.click()
        out.parent.mkdir(parents=True, exist_ok=True)
        tab.screenshot(path=str(out))
    return out


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.splitlines()[0])
    parser.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="a run dir, or a folder above run dirs")
    parser.add_argument("--no-index", action="store_true", help="no index.html for a folder holding many worlds")
    parser.add_argument("--screenshot", type=Path, metavar="PNG", help="also save a PNG of the (single) page")
    return parser.parse_args(argv)


def browse(args: argparse.Namespace) -> list[Path]:
    """Write every page (and the index of each folder holding several); print one line per file written."""
    written: list[Path] = []
    for root in args.run_dirs:
        pages = [write_page(run) for run in find_run_dirs(root)]
        written += pages
        if len(pages) > 1 and not args.no_index:
            written.append(write_index(Path(root), pages))
    if args.screenshot:
        pages = [p for p in written if p.name == PAGE]
        require(len(pages) == 1, f"--screenshot takes one world, got {len(pages)}; give a single run dir")
        written.append(screenshot(pages[0], args.screenshot))
    return written


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of `sa-browse`: one-line errors, exit 2."""
    args = parse_args(argv)
    try:
        for path in browse(args):
            print(path)
    except UserError as error:
        print(f"{PROG}: error: {error}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted; pages already written are complete, re-run to write the rest", file=sys.stderr)
        sys.exit(130)
