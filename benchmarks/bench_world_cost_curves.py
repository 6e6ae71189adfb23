"""Cost curves of one world against its size: 5x5 to 30x30 agents, side by side in one run, on the loopback stub.

For each size, `sa-simulate` (a real subprocess, every role and the embedder on the stub, a fixed latency per request)
runs `--rounds` rounds. The child's resource usage comes from os.wait4 (CPU, ru_maxrss) and from sampling /proc every
0.1 s, which splits the run into set-up (imports, world build, seeding memory), collection (metrics.json's first call to
the last record) and end (snapshot, metrics, plots, episode browser):
- interactions/s: metrics.json `interactions_per_s` (over the collection);
- client CPU ms per call: the child's user + system CPU over metrics.json `calls`, in all and over the collection;
  with the cores the client, the stub and the whole machine kept busy during the collection;
- peak RSS (ru_maxrss), the memory index (the FAISS index files in run_dir/memory, and the whole folder) and episode
  bytes per interaction (episodes.jsonl size / records).
Prints a table, then one JSON object (also written to --out/cost_curves.json, with the plot cost_curves.png) whose
`findings` say where a curve stops being linear in the number of agents and what the figures point to.
The stub runs in its own process on the same cores, and other work on the machine shows in `machine_busy_share`:
absolute times are upper bounds. Linux only (/proc).

    python -m benchmarks.bench_world_cost_curves                          # 5x5, 10x10, 20x20, 30x30; 2 rounds
    python -m benchmarks.bench_world_cost_curves --sizes 3,5 --rounds 1 --latency 0.01
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from loopback.servers import RunningServer, start_openai_stub

MB = 1024 * 1024
DRIFT = 1.25  # a per-unit figure this many times its value at the smallest size is no longer linear


def sizes_arg(text: str) -> list[int]:
    try:
        sizes = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--sizes {text!r}: give grid sides separated by commas, e.g. 5,10,20"
        ) from None
    if not sizes or min(sizes) < 2:
        raise argparse.ArgumentTypeError(f"--sizes {text!r}: every side must be at least 2")
    return sorted(set(sizes))


class Monitor(threading.Thread):
    """Samples, every `every_s`, the child's and the stub's CPU seconds, the machine's busy CPU seconds and the size
    of episodes.jsonl (Linux /proc), so a run splits into set-up, collection (first call to last record) and end."""

    def __init__(self, child: int, stub: int, episodes: Path, every_s: float = 0.1) -> None:
        super().__init__(daemon=True)
        self.child, self.stub, self.episodes, self.every_s = child, stub, episodes, every_s
        self.samples: list[tuple[float, float, float, float, int]] = []  # (t, child cpu, stub cpu, machine busy, size)
        self.started, self.done = time.perf_counter(), threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            try:
                child = process_cpu_s(self.child)
            except OSError:  # the child has exited
                return
            size = self.episodes.stat().st_size if self.episodes.exists() else 0
            self.samples.append(
                (time.perf_counter() - self.started, child, process_cpu_s(self.stub), busy_cpu_s(), size)
            )
            self.done.wait(self.every_s)

    def at(self, t: float) -> tuple[float, float, float]:
        """(child, stub, machine) CPU seconds at time t: the last sample not after t."""
        before = [s for s in self.samples if s[0] <= t] or self.samples[:1]
        return before[-1][1:4]

    def collection_window(self, collection_s: float) -> tuple[float, float]:
        """(first call, last record) in this monitor's time: the first sample with the final file size, minus the
        child's own collection seconds."""
        final = self.samples[-1][4]
        last = next(s[0] for s in self.samples if s[4] == final)
        return max(last - collection_s, 0.0), last


TICKS = os.sysconf("SC_CLK_TCK")


def process_cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime


def busy_cpu_s() -> float:
    """CPU seconds the whole machine spent on anything but idle and iowait, all cores together."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    return (sum(values) - values[3] - values[4]) / TICKS


def run_world(server: RunningServer, size: int, rounds: int, concurrency: int, run_dir: Path) -> dict[str, Any]:
    """One sa-simulate child: its metrics.json, its own rusage (CPU s, peak RSS) and the monitor's samples."""
    url = server.base_url
    command = [
        str(Path(sys.executable).with_name("sa-simulate")), "backend=openai", f"backend.base_url={url}",
        "backend.model=stub", f"backend.limits.concurrency={concurrency}", "backend.limits.timeout_s=300",
        "embedder=openai", f"embedder.base_url={url}", "embedder.model=stub-embed", "embedder.dim=384",
        f"world.size={size}", f"world.rounds={rounds}", "run.progress=false", f"hydra.run.dir={run_dir}",
    ]  # fmt: skip
    run_dir.mkdir(parents=True)
    log_path = run_dir.parent / f"{run_dir.name}.log"
    with log_path.open("w") as log:
        child = subprocess.Popen(command, cwd=run_dir.parent, stdout=log, stderr=subprocess.STDOUT)
        monitor = Monitor(child.pid, server.process.pid, run_dir / "episodes.jsonl")
        monitor.start()
        _, status, usage = os.wait4(child.pid, 0)
        wall = time.perf_counter() - monitor.started
        monitor.done.set()
        monitor.join()
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode != 0:
        sys.exit(f"sa-simulate {size}x{size} failed ({child.returncode}): {log_path.read_text()[-3000:]}")
    metrics = json.loads((run_dir / "metrics.json").read_text())
    return {"metrics": metrics, "cpu_s": usage.ru_utime + usage.ru_stime, "peak_rss_mb": usage.ru_maxrss / 1024,
            "wall_s": wall, "monitor": monitor}  # fmt: skip


def folder_bytes(folder: Path, pattern: str = "*") -> int:
    return sum(p.stat().st_size for p in folder.rglob(pattern) if p.is_file())


def measure(server: RunningServer, size: int, rounds: int, concurrency: int, work: Path) -> dict[str, Any]:
    """A size's row: throughput, CPU split into set-up / collection / end, memory and disk figures."""
    run_dir = work / f"{size}x{size}"
    run = run_world(server, size, rounds, concurrency, run_dir)
    m, monitor = run["metrics"], run["monitor"]
    agents, records, calls = size * size, int(m["records"]), int(m["calls"])
    first, last = monitor.collection_window(m["collection_seconds"])
    (c0, s0, b0), (c1, s1, b1) = monitor.at(first), monitor.at(last)
    seconds, cores = max(last - first, 1e-9), os.cpu_count() or 1
    return {
        "size": f"{size}x{size}", "agents": agents, "rounds": rounds, "interactions": records, "calls": calls,
        "interactions_per_s": m["interactions_per_s"], "collection_s": m["collection_seconds"],
        "wall_s": round(run["wall_s"], 2), "cpu_s": round(run["cpu_s"], 2),
        "cpu_ms_per_call": round(1000 * run["cpu_s"] / calls, 3),
        "cpu_ms_per_call_collection": round(1000 * (c1 - c0) / calls, 3),
        "setup_cpu_s": round(c0, 2), "end_cpu_s": round(run["cpu_s"] - c1, 2),
        "setup_s": round(first, 2), "end_s": round(run["wall_s"] - last, 2),
        "client_cores_busy": round((c1 - c0) / seconds, 2), "stub_cores_busy": round((s1 - s0) / seconds, 2),
        "machine_busy_share": round(min((b1 - b0) / seconds / cores, 1.0), 2),
        "peak_rss_mb": round(run["peak_rss_mb"], 1),
        "memory_index_mb": round(folder_bytes(run_dir / "memory", "index.faiss") / MB, 3),
        "memory_dir_mb": round(folder_bytes(run_dir / "memory") / MB, 3),
        "episode_bytes_per_interaction": round((run_dir / "episodes.jsonl").stat().st_size / records),
    }  # fmt: skip


def first_drift(rows: list[dict[str, Any]], key: str, per: str | None = None, falling: bool = False) -> str | None:
    """The first size whose per-unit `key` is DRIFT times (or 1/DRIFT of, when `falling`) the smallest size's."""

    def unit(row: dict[str, Any]) -> float | None:
        value = row.get(key)
        return None if value is None else value / (row[per] if per else 1)

    base = unit(rows[0])
    for row in rows[1:]:
        value = unit(row)
        if base and value is not None and (value < base / DRIFT if falling else value > base * DRIFT):
            return row["size"]
    return None


def findings(rows: list[dict[str, Any]], latency: float, concurrency: int) -> list[str]:
    """Where each curve leaves linear scaling in the number of agents, with the figures that say why."""
    return [throughput_finding(rows, latency, concurrency), cpu_finding(rows), fixed_finding(rows),
            rss_finding(rows), memory_finding(rows), disk_finding(rows)]  # fmt: skip


def throughput_finding(rows: list[dict[str, Any]], latency: float, concurrency: int) -> str:
    lo, hi = rows[0], rows[-1]
    knee = first_drift(rows, "interactions_per_s", per="agents", falling=True)
    if not knee:
        return (f"interactions/s grows with the agents up to {hi['size']} ({lo['interactions_per_s']} → "
                f"{hi['interactions_per_s']} /s): rounds stay latency-bound.")  # fmt: skip
    row = next(r for r in rows if r["size"] == knee)
    busy = row["machine_busy_share"]
    why = (f"the machine's cores were {busy:.0%} busy (client {row['client_cores_busy']} core, stub "
           f"{row['stub_cores_busy']}, the rest other processes): CPU bounds it, not the {latency} s latency or the "
           f"cap of {concurrency} calls in flight" if busy > 0.85 else
           f"with cores to spare ({busy:.0%} busy), the {latency} s latency per call or the cap of {concurrency} "
           "calls in flight bound it")  # fmt: skip
    return (f"interactions/s stops growing with the agents at {knee}: {lo['interactions_per_s']} /s for {lo['agents']} "
            f"agents, {row['interactions_per_s']} /s for {row['agents']}"
            + (f", {hi['interactions_per_s']} /s for {hi['agents']}" if row is not hi else "")
            + f"; {why}.")  # fmt: skip


def cpu_finding(rows: list[dict[str, Any]]) -> str:
    lo, hi = rows[0], rows[-1]
    drift = first_drift(rows, "cpu_ms_per_call_collection")
    return (f"client CPU per call during the collection {lo['cpu_ms_per_call_collection']} ms at {lo['size']} → "
            f"{hi['cpu_ms_per_call_collection']} ms at {hi['size']}: "
            + (f"grows from {drift} on (per-call work rises with the world)" if drift else
               "flat, so a turn's calls cost the same CPU in any world size (memory search, scheduler and per-agent "
               "state add nothing per call)") + ".")  # fmt: skip


def fixed_finding(rows: list[dict[str, Any]]) -> str:
    """Set-up + end CPU: beyond the smallest size's (its imports), per added agent, from one size to the next."""
    lo, hi = rows[0], rows[-1]

    def fixed(row: dict[str, Any]) -> float:
        return row["setup_cpu_s"] + row["end_cpu_s"]

    steps = [1000 * (fixed(b) - fixed(a)) / (b["agents"] - a["agents"]) for a, b in zip(rows, rows[1:], strict=False)]
    text = (f"set-up + end CPU {lo['setup_cpu_s']} + {lo['end_cpu_s']} s at {lo['size']} → {hi['setup_cpu_s']} + "
            f"{hi['end_cpu_s']} s at {hi['size']} ({fixed(lo) / lo['cpu_s']:.0%} → {fixed(hi) / hi['cpu_s']:.0%} of "
            "the run's CPU)")  # fmt: skip
    if len(steps) < 2:
        return text + "."
    growing = steps[-1] > DRIFT * max(steps[0], 1e-9)
    return (
        text
        + f"; {', '.join(f'{s:.0f}' for s in steps)} ms per added agent from one size to the next: "
        + ("superlinear, a part of set-up or end grows faster than the agents" if growing else "linear")
        + "."
    )


def rss_finding(rows: list[dict[str, Any]]) -> str:
    lo, hi = rows[0], rows[-1]
    steps = [1024 * (b["peak_rss_mb"] - a["peak_rss_mb"]) / (b["agents"] - a["agents"])
             for a, b in zip(rows, rows[1:], strict=False)]  # fmt: skip
    text = f"peak RSS {lo['peak_rss_mb']} MB at {lo['size']} → {hi['peak_rss_mb']} MB at {hi['size']}"
    if not steps:
        return text + "."
    return (text + f": {', '.join(f'{s:.0f}' for s in steps)} KB per added agent from one size to the next, on a "
            f"fixed ~{lo['peak_rss_mb'] - steps[0] * lo['agents'] / 1024:.0f} MB (the imports)"
            + ("; superlinear" if steps[-1] > DRIFT * max(steps[0], 1e-9) else "; linear") + ".")  # fmt: skip


def memory_finding(rows: list[dict[str, Any]]) -> str:
    lo, hi = rows[0], rows[-1]
    index = first_drift(rows, "memory_index_mb", per="agents")
    return (f"memory index {1e6 * lo['memory_index_mb'] / lo['agents']:.0f} → "
            f"{1e6 * hi['memory_index_mb'] / hi['agents']:.0f} bytes per agent: "
            + (f"grows from {index}" if index else "linear (one flat index per agent, its seeded priors and its own "
               "revisions, so a search costs the same in any world size)") + ".")  # fmt: skip


def disk_finding(rows: list[dict[str, Any]]) -> str:
    lo, hi = rows[0], rows[-1]
    episode = first_drift(rows, "episode_bytes_per_interaction")
    return (
        f"episode bytes per interaction {lo['episode_bytes_per_interaction']} → "
        f"{hi['episode_bytes_per_interaction']}: " + (f"grows from {episode}" if episode else "flat") + "."
    )


TABLE = (("size", "size", "{}"), ("agents", "agents", "{}"), ("interactions", "turns", "{}"),
         ("calls", "calls", "{}"), ("interactions_per_s", "turns/s", "{:.1f}"), ("cpu_ms_per_call", "cpu ms/call", "{:.2f}"),
         ("cpu_ms_per_call_collection", "in collection", "{:.2f}"), ("setup_cpu_s", "set-up cpu s", "{:.1f}"),
         ("end_cpu_s", "end cpu s", "{:.1f}"), ("client_cores_busy", "client cores", "{:.2f}"),
         ("stub_cores_busy", "stub cores", "{:.2f}"), ("machine_busy_share", "machine busy", "{:.2f}"),
         ("peak_rss_mb", "peak RSS MB", "{:.0f}"), ("memory_index_mb", "index MB", "{:.2f}"),
         ("episode_bytes_per_interaction", "B/turn", "{}"))  # fmt: skip


def table(rows: list[dict[str, Any]]) -> str:
    cells = [[head for _, head, _ in TABLE]]
    cells += [["-" if r[key] is None else form.format(r[key]) for key, _, form in TABLE] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(TABLE))]
    return "\n".join("  ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)) for row in cells)


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    agents = [r["agents"] for r in rows]
    panels = (("interactions_per_s", "interactions / s"), ("cpu_ms_per_call", "client CPU ms / call (all)"),
              ("cpu_ms_per_call_collection", "client CPU ms / call (collection)"), ("peak_rss_mb", "peak RSS (MB)"),
              ("memory_index_mb", "FAISS index files (MB)"), ("episode_bytes_per_interaction", "episode bytes / turn"))  # fmt: skip
    fig, axes = plt.subplots(2, 3, figsize=(13, 7))
    for ax, (key, title) in zip(axes.flat, panels, strict=True):
        points = [(a, r[key]) for a, r in zip(agents, rows, strict=True) if r[key] is not None]
        if points:
            ax.plot(*zip(*points, strict=True), "o-")
            first = points[0]
            if key in ("interactions_per_s", "memory_index_mb"):  # proportional to agents if linear
                ax.plot([p[0] for p in points], [first[1] * p[0] / first[0] for p in points], "--", color="grey",
                        label="linear from the smallest")  # fmt: skip
                ax.legend(fontsize=8)
        ax.set_title(title, fontsize=10)
        ax.set_xscale("log")  # sizes 5..30 are 25..900 agents: a log axis keeps every label readable
        ax.minorticks_off()
        ax.set_xlabel("agents (size², log scale)")
        ax.set_xticks(agents, [r["size"] for r in rows], fontsize=8)
    fig.suptitle(f"sa-simulate cost against world size ({rows[0]['rounds']} rounds, loopback stub)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=sizes_arg, default=[5, 10, 20, 30], help="grid sides, e.g. 5,10,20,30")
    parser.add_argument("--rounds", type=int, default=2, help="rounds per world")
    parser.add_argument("--latency", type=float, default=0.05, help="seconds per stub request")
    parser.add_argument("--concurrency", type=int, default=1024, help="backend.limits.concurrency")
    parser.add_argument("--out", type=Path, default=None, help="folder for the JSON, the plot and the run dirs")
    args = parser.parse_args()
    if args.rounds < 1 or args.latency < 0 or args.concurrency < 1:
        parser.error("--rounds and --concurrency must be at least 1 and --latency at least 0")
    work = args.out or Path(tempfile.mkdtemp(prefix="bench-world-cost-curves-"))
    runs = work / f"runs-{time.strftime('%Y%m%d-%H%M%S')}"
    server = start_openai_stub(work / "stub", latency=args.latency, log=False)
    try:
        rows = [measure(server, size, args.rounds, args.concurrency, runs) for size in args.sizes]
    finally:
        server.stop()
    result = {"benchmark": "world_cost_curves", "rounds": args.rounds, "stub_latency_s": args.latency,
              "concurrency": args.concurrency, "cores": os.cpu_count(), "rows": rows,
              "findings": findings(rows, args.latency, args.concurrency), "json": str(work / "cost_curves.json"),
              "plot": str(work / "cost_curves.png"), "run_dirs": str(runs)}  # fmt: skip
    plot(rows, work / "cost_curves.png")
    (work / "cost_curves.json").write_text(json.dumps(result, indent=1) + "\n")
    print(table(rows))
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
