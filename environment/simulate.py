"""`sa-simulate`: run (or resume) one world into the Hydra run dir.

Writes `episodes.jsonl` (append-only), `memory/` (atomic world snapshot whose meta names the episode count it
reflects), `metrics.json` (with the stop reason) and PNG plots. Re-running into the same run dir resumes: stored
turns are skipped, memory is rebuilt deterministically from seed priors + stored revisions.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import sys
import time
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from agents.backends.usage import UsageMeter, UsageTotal
from agents.factory import close_all, usage_report
from conf.cli import hydra_command, save_hydra_config
from conf.errors import UserError, one_line, require, require_writable
from conf.schema import checked
from conf.schema.world import Plateau
from environment.assemble import build_world, check_world_memory, grid_from
from environment.browser import write_after_run
from environment.episodes import EpisodeStore
from environment.metrics import plot_all, summarize
from environment.progress import Progress
from environment.questions import load_questions
from environment.resume import WORLD, check_fingerprint, config_fingerprint
from environment.scheduler import run_world
from environment.stopping import Budget, Stopper
from memory.atomic import write_json

PROG = "sa-simulate"
NOISY_LOGGERS = ("httpx", "httpx2", "httpcore", "openai")
EPISODES, METRICS, MEMORY = "episodes.jsonl", "metrics.json", "memory"


def model_tag(model: Any) -> str:
    """A short, path-safe model name for the default run dir: the last path or `:` component, e.g.
    embedded:smollm2 → smollm2, meta-llama/Llama-3.1-8B-Instruct → Llama-3.1-8B-Instruct."""
    tail = re.split(r"[/\\:]", str(model or "").rstrip("/\\"))[-1]
    return re.sub(r"[^A-Za-z0-9._-]+", "-", tail)[:40].strip("-.") or "model"


OmegaConf.register_new_resolver("model_tag", model_tag, replace=True)  # conf/simulate.yaml's hydra.run.dir


def check_run_dir(run_dir: Path) -> None:
    """Before any work: the run dir is writable and its files are files (one line otherwise)."""
    for name in (EPISODES, WORLD, METRICS):
        path = run_dir / name
        require(not path.exists() or path.is_file(),
                f"{path} is not a file; move it away or choose a new hydra.run.dir")  # fmt: skip
        require(not path.exists() or os.access(path, os.R_OK | os.W_OK),
                f"{path} is not writable; make it writable or choose a new hydra.run.dir")  # fmt: skip
    memory = run_dir / MEMORY
    require(
        not memory.exists() or memory.is_dir(), f"{memory} is not a folder; move it away or choose a new hydra.run.dir"
    )
    for folder in (run_dir, memory):
        if folder.is_dir():
            require_writable(folder, str(folder), "make it writable or choose a new hydra.run.dir")


def earlier_usage(cfg: DictConfig, records: list[dict[str, Any]]) -> UsageMeter:
    """What the stored episodes of earlier processes spent, priced at each record's agent model with the price
    tables of every backend node in use (agents, society groups, observer)."""
    nodes = [cfg.backend, cfg.observer.backend] + [g.get("backend") for g in cfg.society.groups or []]
    meter = UsageMeter(model="earlier processes")
    for node in nodes:
        if node is not None and node.get("prices"):
            meter.prices.update(OmegaConf.to_container(node.prices, resolve=True))  # type: ignore[arg-type]
    for record in records:
        meter.add_usage(record["usage"], record["agent_model"])
    return meter


def make_stopper(cfg: DictConfig, n_agents: int) -> Stopper:
    """The stopping rules from `stopping.*`."""
    plateau, budget = cfg.stopping.plateau, cfg.stopping.budget
    cost = None if budget.max_cost is None else float(budget.max_cost)
    return Stopper(n_agents, cfg.world.rounds, Plateau(plateau.window, float(plateau.epsilon), plateau.score),
                   Budget(budget.max_calls, budget.max_tokens, cost))  # fmt: skip


async def simulate(cfg: DictConfig, run_dir: Path) -> dict[str, Any]:
    """Run or resume the world; return the metrics."""
    checked(cfg)  # every key's type and range (conf/schema/world.py), before any file is touched
    check_world_memory(cfg)  # before the grid's circles are allocated
    grid, _k = grid_from(cfg)
    questions = load_questions(cfg.questions.source, cfg.questions.limit)
    check_run_dir(run_dir)
    check_fingerprint(run_dir, cfg, questions)
    store = EpisodeStore(run_dir / EPISODES, int(cfg.run.fsync_every)).open()
    previous = [r for r in store.records if r["world_id"] == str(cfg.world_id)]
    require(len(previous) == len(store.records),
            f"{store.path} holds episodes of another world_id; use world_id={store.records[0]['world_id'] if store.records else ''} "
            "or a new run dir")  # fmt: skip
    write_json(run_dir / WORLD, config_fingerprint(cfg, questions))
    save_hydra_config(cfg, run_dir)  # only now: a refused resume leaves the folder's own config as it was
    usage = UsageTotal(earlier_usage(cfg, previous))  # + each backend's meter, as build_world makes them
    stopper = make_stopper(cfg, grid.cells)
    for record in sorted(previous, key=lambda r: r["round"]):
        stopper.observe(record)
    started = time.perf_counter()
    collecting = collected = 0.0
    world = progress = None
    error: BaseException | None = None
    try:
        world = await build_world(cfg, usage, previous)
        first = next((r for r in range(world.rounds) for a in range(world.n_agents)
                      if (world.world_id, r, a) not in store.keys), None)  # fmt: skip
        collecting = time.perf_counter()  # from the first call (the first round's question embeddings) ...
        if first is not None:
            await world.prefetch_round(first)  # type: ignore[misc]
        progress = Progress(grid.cells * int(cfg.world.rounds), len(store), usage, enabled=bool(cfg.run.progress),
                            log_every_s=float(cfg.run.progress_log_every_s))  # fmt: skip
        snapshot = Snapshotter(run_dir / MEMORY, world, store, float(cfg.run.snapshot_every_s))
        await run_world(world, store, stopper, usage, progress, int(cfg.run.max_inflight), on_commit=snapshot.maybe)
        collected = time.perf_counter()  # ... to the last record flushed (the final memory snapshot comes after)
    except (UserError, KeyboardInterrupt, asyncio.CancelledError):
        raise
    except Exception as failure:  # noqa: BLE001 - an endpoint or model failure after retries
        error = failure
    finally:
        backends, totals = usage_report(), usage.summary()  # one moment: the total is the sum of the rows
        store.close()
        if progress is not None:
            progress.close()
        if world is not None:
            Snapshotter(run_dir / MEMORY, world, store, 0).save()
        await close_all()
    seconds = time.perf_counter() - started
    collection = (collected or time.perf_counter()) - collecting if collecting else 0.0
    new = progress.new if progress else 0
    metrics = summarize(store.records, {
        "world_id": str(cfg.world_id),
        "stop_reason": f"error: {one_line(error)}" if error else stopper.finish_reason(),
        "rounds_completed": len(stopper.completed_rounds()),
        "society_score_per_round": {str(r): s for r, s in sorted(stopper.scores.items())},
        "wall_seconds": round(seconds, 3),
        "collection_seconds": round(collection, 3),  # first call to last record (wall_seconds adds set-up, snapshot)
        "interactions_this_run": new,
        "interactions_per_s": round(new / collection, 4) if collection else None,
        "resumed_from": len(previous),
        "partial_line_moved_to": store.moved_aside.name if store.moved_aside else None,
        **totals,
        "embedder": _embedder_stats(world.embedder, new) if world else None,
        "backends": backends,
    })  # fmt: skip
    write_json(run_dir / METRICS, metrics)
    if cfg.run.browser:
        write_after_run(run_dir)  # episodes.html; a failure only warns
    if cfg.run.plots and store.records:
        plot_all(store.records, grid.size, run_dir / "plots")
    if error is not None:
        raise UserError(f"a turn failed ({one_line(error)}); {len(store)} finished turns are saved in {store.path}, "
                        "re-run into the same hydra.run.dir to resume")  # fmt: skip
    return metrics


def _embedder_stats(cache: Any, interactions: int) -> dict[str, Any]:
    """The shared EmbeddingCache's counters for this process (`inner_calls` = batches sent to the embedder)."""
    stats = cache.stats()
    per_interaction = round(stats["inner_calls"] / interactions, 4) if interactions else None
    return {**stats, "interactions": interactions, "calls_per_interaction": per_interaction}


class Snapshotter:
    """Atomic world memory snapshots (with the episode count they reflect), at most every `every_s` seconds."""

    def __init__(self, folder: Path, world: Any, store: EpisodeStore, every_s: float) -> None:
        self.folder, self.world, self.store, self.every_s = folder, world, store, every_s
        self.last = time.monotonic()

    def maybe(self, _record: dict[str, Any]) -> None:
        if self.every_s > 0 and time.monotonic() - self.last >= self.every_s:
            self.save()

    def save(self) -> None:
        from memory.snapshot import save_all

        self.store.sync()
        meta = {"world_id": self.world.world_id, "episodes": len(self.store)}
        save_all(self.folder, self.world.memories, meta, cache=self.world.embedder)
        self.last = time.monotonic()


@hydra_command("simulate", prog=PROG)
def main(cfg: DictConfig) -> None:
    """Entry point of `sa-simulate`."""
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    for name in NOISY_LOGGERS:  # one INFO line per HTTP request would bury the progress lines
        logging.getLogger(name).setLevel(logging.WARNING)
    metrics = asyncio.run(simulate(cfg, run_dir))
    for warning in ("signal_warning", "echo_warning"):
        if metrics.get(warning):
            print(metrics[warning], file=sys.stderr)
    summary = {k: metrics[k] for k in ("world_id", "records", "stop_reason", "wall_seconds", "interactions_per_s")}
    print(json.dumps(summary))
