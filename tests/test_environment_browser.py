"""The episode browser (`environment.browser`, `sa-browse`, sa-simulate's `run.browser`): the embedded data, the list
orderings, the command's errors, and the page itself in headless Chromium (playwright driving Debian's chromium).

A missing playwright or Chromium fails these tests in one line naming `make setup-dev`; nothing is skipped.
"""

from __future__ import annotations

import copy
import json
import math
import random
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from benchmarks.bench_world_browser import synthetic_record, synthetic_world
from conf.errors import UserError
from environment.browser import (
    PAGE,
    embed_json,
    grid_size,
    largest_improvements,
    lowest_drafts,
    page_data,
    render,
    unreadable_turns,
    write_page,
)
from environment.headless import BrowserMissing, chromium
from environment.records import read_episodes
from loopback.servers import RunningServer
from tests.test_environment_cli import sa_simulate, stub_overrides
from tests.test_environment_episodes import make_record

SA_BROWSE = str(Path(sys.executable).with_name("sa-browse"))
HOSTILE = '</script><script>window.pwned = 1</script><!-- <img src=x onerror="window.pwned = 2"> & \u2028 "quoted"'
DATA_TAG = re.compile(r'<script type="application/json" id="data">(.*?)</script>', re.S)


def scored(round_: int, agent: int, draft: float | None, revision: float | None, peers: list[Any] = (5,)) -> dict:
    """A record with the given observer alignment scores and peer ratings (None: unreadable)."""
    record = make_record(round_, agent, rating=5)
    record["observer"] = {"draft": {"alignment": draft, "engagement": 4}, "revision": {"alignment": revision}}
    record["feedback"] = [{"peer_id": i, "peer_model": "m", "rating": r, "reason": "r", "valid": r is not None}
                          for i, r in enumerate(peers)]  # fmt: skip
    return record


def test_lists_are_ordered_as_promised() -> None:
    records = [
        scored(0, 0, 4.0, 6.0),  # +2.0
        scored(0, 1, 2.0, 2.5, peers=[None, 3]),  # lowest draft, +0.5, one unreadable peer
        scored(0, 2, None, 5.0),  # unreadable draft score: in no score list, in the unreadable list
        scored(1, 0, 2.0, 7.0),  # tied lowest with (0, 1): the earlier round first; +5.0
        scored(1, 1, 6.5, 1.0, peers=[None, None]),  # -5.5; two unreadable peers
    ]
    records[1]["feedback"][1]["valid"] = False  # a number marked invalid counts as unreadable, as in signal.py
    assert lowest_drafts(records) == [1, 3, 0, 4]
    assert largest_improvements(records) == [3, 0, 1, 4]
    assert unreadable_turns(records) == [1, 4, 2]  # (0,1) and (1,1) both 2 unreadable: earlier round first
    data = page_data(records, {"world": {"size": 3}}, {"stop_reason": "rounds", "backends": ["dropped"]}, "t")
    assert data["lists"] == {"lowest": [1, 3, 0, 4], "improved": [3, 0, 1, 4], "unreadable": [1, 4, 2]}
    assert data["size"] == 3 and data["metrics"] == {"stop_reason": "rounds"} and data["models"] == ["m"]


def test_grid_size_comes_from_world_json_else_the_positions() -> None:
    records = [make_record(0, a) for a in range(3)]  # positions (0, 0..2)
    assert grid_size(records, {"world": {"size": 5}}) == 5
    assert grid_size(records, None) == 3 and grid_size(records, {"world": {}}) == 3


def test_embedded_json_round_trips_and_model_text_cannot_leave_the_script_tag(tmp_path: Path) -> None:
    record = synthetic_record(random.Random(0), "w", 0, 0, 3, ["m"])
    record["draft"]["text"] = record["revision"]["text"] = record["feedback"][0]["reason"] = HOSTILE
    data = page_data([record], None, None, "w </title><script>window.pwned = 3</script>")
    page = render(data)
    assert "<script>window.pwned" not in page and "<!--" not in embed_json(data)
    (embedded,) = DATA_TAG.findall(page)  # exactly one data element, closed by its own tag
    assert json.loads(embedded) == data
    assert page.count("</script>") == 2  # the data tag's and the code's, no more
    assert "&lt;/title&gt;" in page


def test_write_page_is_the_run_dirs_records(tmp_path: Path) -> None:
    records = synthetic_world(tmp_path / "run", 3, 2, ["a", "b"])
    path = write_page(tmp_path / "run")
    assert path == tmp_path / "run" / PAGE and oct(path.stat().st_mode & 0o777) == "0o644"
    data = json.loads(DATA_TAG.search(path.read_text(encoding="utf-8")).group(1))
    assert data["records"] == records and data["models"] == ["a", "b"] and data["size"] == 3
    assert not list((tmp_path / "run").glob(".episodes.html.*"))  # no temporary file left behind


def browse(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([SA_BROWSE, *args], cwd=cwd, capture_output=True, text=True, timeout=60)


def test_sa_browse_a_multirun_folder_writes_a_page_per_world_and_an_index(tmp_path: Path) -> None:
    for seed in (0, 1):
        synthetic_world(tmp_path / "multirun" / f"{seed}-w" / "nested", 2, 1, ["m"], seed=seed)
    done = browse("multirun", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    pages = sorted((tmp_path / "multirun").rglob(PAGE))
    assert [p.parent.parent.name for p in pages] == ["0-w", "1-w"]
    index = (tmp_path / "multirun" / "index.html").read_text()
    assert 'href="0-w/nested/episodes.html"' in index and 'href="1-w/nested/episodes.html"' in index
    assert done.stdout.splitlines() == [str(Path("multirun") / p.relative_to(tmp_path / "multirun"))
                                        for p in pages] + [str(Path("multirun") / "index.html")]  # fmt: skip


@pytest.mark.parametrize("case", ["no folder", "no episodes", "corrupt line", "bad world.json", "unwritable"])
def test_sa_browse_bad_input_is_one_line_exit_2(tmp_path: Path, case: str) -> None:
    run = tmp_path / "run"
    if case != "no folder":
        run.mkdir()
    if case in ("corrupt line", "bad world.json", "unwritable"):
        synthetic_world(run, 2, 1, ["m"])
    if case == "corrupt line":
        with (run / "episodes.jsonl").open("a") as handle:
            handle.write('{"round": "x"}\n')
    if case == "bad world.json":
        (run / "world.json").write_text("{")
    if case == "unwritable":
        (run / PAGE).mkdir()  # a folder where the page belongs
    expected = {"no folder": "no such folder", "no episodes": "no episodes.jsonl here or beneath",
                "corrupt line": "episodes.jsonl:5: not a valid episode record", "bad world.json": "world.json: unreadable",
                "unwritable": "cannot write"}[case]  # fmt: skip
    done = browse(str(run), cwd=tmp_path)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1, done.stderr
    assert lines[0].startswith("sa-browse: error: ") and expected in lines[0], lines[0]


# ---- the page in headless Chromium ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    try:
        with chromium() as running:
            yield running
    except BrowserMissing as error:
        pytest.fail(str(error), pytrace=False)


class Tab:
    """A page opened from file:// with every console error and uncaught exception collected."""

    def __init__(self, browser: Any, page: Path, fragment: str = "") -> None:
        self.errors: list[str] = []
        self.page = browser.new_page(viewport={"width": 1440, "height": 900})
        self.page.on("console", lambda m: m.type == "error" and self.errors.append(m.text))
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.goto(page.resolve().as_uri() + fragment)
        self.page.wait_for_selector("body[data-ready='1']", timeout=60_000)

    def texts(self, selector: str) -> list[str]:
        return self.page.locator(selector).all_text_contents()

    def count(self, selector: str) -> int:
        return self.page.locator(selector).count()


def mixed_world(run: Path) -> list[dict[str, Any]]:
    """A 3x3, 2-round mixed society (two models) with hostile model text and unreadable ratings."""
    records = synthetic_world(run, 3, 2, ["model-a", "model-b"], seed=3)
    target = records[9 + 4]  # round 1, agent 4
    target["draft"]["text"] = HOSTILE
    target["draft"]["memory_hits"] = [{"question": "q?", "answer": HOSTILE, "similarity": 0.61, "round": -1,
                                       "source": "prior", "rating": None}]  # fmt: skip
    target["feedback"][0].update(rating=None, valid=False, reason=HOSTILE)
    target["observer"]["revision"]["alignment"] = None
    with (run / "episodes.jsonl").open("w", encoding="utf-8") as handle:
        handle.writelines(json.dumps(r) + "\n" for r in records)
    return records


def test_page_shows_the_grid_the_lists_and_an_agents_turns(tmp_path: Path, browser: Any) -> None:
    records = mixed_world(tmp_path / "run")
    data = page_data(records, {"world": {"size": 3}})
    tab = Tab(browser, write_page(tmp_path / "run"))
    page = tab.page
    assert tab.count("#grid .cell") == 9 and tab.texts("#grid .cell b") == [str(a) for a in range(9)]
    assert tab.texts("#round-label") == ["round 0 (1 of 2)"] and "18 turns" in tab.texts("#summary")[0]
    first = [str(records[i]["round"]) + "/" + str(records[i]["agent_id"]) for i in data["lists"]["lowest"]]
    shown = page.eval_on_selector_all(
        "#list-rows .row", "rows => rows.map(r => r.dataset.round + '/' + r.dataset.agent)"
    )
    assert shown == first  # the Python ordering, all 18 rows (fewer than a page of rows)
    page.locator("#round").fill("1")  # round 1; the draft colours, then the revision colours of agent 4's cell
    assert tab.texts("#grid .cell[data-agent='4'] span") == [f"{records[13]['observer']['draft']['alignment']:.2f}"]
    page.check("input[value=revision]")
    assert tab.texts("#grid .cell[data-agent='4'] span") == ["?"]  # an unreadable score is no number
    page.click("#grid .cell[data-agent='4']")
    assert tab.count("#turns details.turn") == 2 and tab.count("#turns details[open]") == 1
    opened = page.locator("#turns details[open]")
    assert opened.get_attribute("data-round") == "1"
    assert opened.locator(".question").text_content() == records[13]["question"]
    assert opened.locator(".draft").text_content() == HOSTILE  # shown as text, not run
    assert opened.locator(".revision").text_content() == records[13]["revision"]["text"]
    assert opened.locator("ul.hits li").all_text_contents() == [f"similarity 0.610 · priorQ: q?A: {HOSTILE}"]
    ratings = opened.locator("tr.peer td.rating").all_text_contents()
    assert ratings[0] == "unreadable" and all(re.fullmatch(r"\d\.\d\d", r) for r in ratings[1:])
    assert opened.locator("tr.observer-revision").text_content().count("unreadable") == 1
    assert page.evaluate("window.pwned") is None and page.url.endswith("#round=1&agent=4")
    page.click("[data-list=unreadable]")  # the unreadable list, then only model-b's turns
    assert tab.texts("#list-rows .row .where")[0].startswith("round 1 · agent 4")
    page.select_option("#model", "model-b")
    b_turns = [i for i in data["lists"]["unreadable"] if records[i]["agent_model"] == "model-b"]
    assert tab.count("#list-rows .row") == len(b_turns) and tab.count("#grid .cell.dim") == 5  # agents 0, 2, 4, 6, 8
    page.screenshot(path=str(tmp_path / "episode-browser.png"))  # an artifact to look at (pytest's tmp dir)
    assert tab.errors == []


def test_a_link_with_a_fragment_opens_that_turn(tmp_path: Path, browser: Any) -> None:
    records = mixed_world(tmp_path / "run")
    tab = Tab(browser, write_page(tmp_path / "run"), "#round=1&agent=7")
    assert tab.texts("#round-label") == ["round 1 (2 of 2)"] and tab.texts("#agent-title") == ["Agent 7"]
    assert tab.page.locator("#turns details[open] .question").text_content() == records[9 + 7]["question"]
    assert tab.errors == []


def test_two_worlds_in_one_file_get_a_world_selector(tmp_path: Path, browser: Any) -> None:
    first = synthetic_world(tmp_path / "a", 2, 1, ["m"], seed=0)
    second = synthetic_world(tmp_path / "b", 3, 2, ["m"], seed=1)
    with (tmp_path / "a" / "episodes.jsonl").open("a", encoding="utf-8") as handle:
        handle.writelines(json.dumps(r) + "\n" for r in second)
    (tmp_path / "a" / "world.json").unlink()  # the grid side then comes from the positions: 3
    tab = Tab(browser, write_page(tmp_path / "a"))
    assert tab.texts("#world option") == ["synthetic-seed0", "synthetic-seed1"] and tab.count("#grid .cell") == 9
    assert tab.count("#grid .cell:not(.empty)") == len(first) and tab.count("#list-rows .row") == len(first)
    tab.page.select_option("#world", "synthetic-seed1")
    assert tab.count("#grid .cell:not(.empty)") == 9 and tab.count("#list-rows .row") == len(second)
    assert tab.texts("#round-label") == ["round 0 (1 of 2)"] and tab.errors == []


def test_a_5000_turn_world_builds_one_round_and_one_page_of_rows(tmp_path: Path, browser: Any) -> None:
    """10x10 × 50 rounds: the DOM holds 100 cells and 50 rows, not 5,000 turns; the load clock is sane."""
    synthetic_world(tmp_path / "small", 10, 1, ["m"])
    small = Tab(browser, write_page(tmp_path / "small"))
    synthetic_world(tmp_path / "big", 10, 50, ["a", "b"])
    big = Tab(browser, write_page(tmp_path / "big"))
    nodes = "document.getElementsByTagName('*').length"
    assert big.count("#grid .cell") == 100 and big.count("#list-rows .row") == 50
    assert big.page.evaluate(nodes) <= small.page.evaluate(nodes) + 60  # about the DOM of a 100-turn world
    first_ms = big.page.evaluate("window.firstGridMs")
    assert math.isfinite(first_ms) and first_ms > 0
    big.page.click("#list-more")
    assert big.count("#list-rows .row") == 100
    big.page.click("#grid .cell[data-agent='42']")
    assert big.count("#turns details.turn") == 50 and big.count("#turns .body") == 1  # one turn's body built
    assert small.errors == [] and big.errors == []


# ---- sa-simulate writes the page -------------------------------------------------------------------------------


@pytest.mark.slow
def test_sa_simulate_writes_the_page_and_a_page_failure_only_warns(
    tmp_path: Path,
    openai_stub: Any,
    browser: Any,
) -> None:
    stub: RunningServer = openai_stub(latency=0.01)
    out = tmp_path / "run"
    args = [*stub_overrides(stub), "world.size=2", "world.rounds=2", f"hydra.run.dir={out}"]
    done = sa_simulate(*args, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    records = list(read_episodes(out / "episodes.jsonl"))
    data = json.loads(DATA_TAG.search((out / PAGE).read_text(encoding="utf-8")).group(1))
    assert data["records"] == records and len(records) == 8
    assert data["metrics"]["stop_reason"].startswith("rounds")
    tab = Tab(browser, out / PAGE)
    assert tab.count("#grid .cell") == 4 and tab.count("#list-rows .row") == len(data["lists"]["lowest"])
    tab.page.click("#grid .cell[data-agent='3']")
    assert tab.page.locator("#turns details[open] .draft").text_content() == records[3]["draft"]["text"]
    assert tab.errors == []
    (out / PAGE).unlink()
    (out / PAGE).mkdir()  # the page cannot be written: the resume still succeeds, with one warning line
    metrics = copy.deepcopy(json.loads((out / "metrics.json").read_text()))
    again = sa_simulate(*args, cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-2000:]
    warnings = [line for line in again.stdout.splitlines() if "episodes.html not written" in line]
    assert len(warnings) == 1 and "sa-browse" in warnings[0], again.stdout[-2000:]
    assert json.loads((out / "metrics.json").read_text())["records"] == metrics["records"]
    (out / PAGE).rmdir()
    off = sa_simulate(*args, "run.browser=false", cwd=tmp_path)
    assert off.returncode == 0 and not (out / PAGE).exists(), off.stderr[-2000:]


def test_missing_chromium_is_one_line_naming_make_setup_dev(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SA_CHROMIUM", str(tmp_path / "nope"))
    monkeypatch.setattr("os.access", lambda *_: False)
    with pytest.raises(UserError, match=r"no Chromium found .*make setup-dev"), chromium():
        pass
