"""Every benchmark runs the way the README and `make bench` run it (`python -m benchmarks.<name>` from the root), on a
toy size, and prints JSON whose figures are checked: the counts it promises, the invariants it measures (same answers,
same top-k, every turn once), ratios that are positive and finite. No absolute time is asserted."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = sorted(p.stem for p in (ROOT / "benchmarks").glob("bench_*.py") if p.stem != "bench_train_common")
TINY = "{tiny}"  # replaced by the tiny random Llama's folder

TOY_ARGS = {
    "bench_agents_hf_local": ["--model", TINY, "--requests", "3", "--max-tokens", "4"],
    "bench_agents_ratings": ["--ratings", "24", "--inflight", "8", "--latency", "0.02", "--rounds", "1"],
    "bench_agents_throughput": ["--calls", "40", "--latency", "0.01", "--inflight", "8"],
    "bench_memory_embed_calls": ["--size", "3", "--rounds", "1", "--k", "2"],
    "bench_memory_search": ["--n", "2000", "--queries", "20", "--ref-queries", "2", "--min-ratio", "1"],
    "bench_train_batching": ["--model", TINY, "--groups", "2", "--k", "2", "--repeats", "1"],
    "bench_train_losses": ["--model", TINY, "--groups", "1", "--k", "2", "--repeats", "1"],
    "bench_train_vs_trl": ["--model", TINY, "--pairs", "1", "--steps", "2"],
    "bench_world_browser": ["--size", "3", "--rounds", "2", "--repeats", "1"],
    "bench_world_scale": ["--size", "2", "--rounds", "1"],
    "bench_world_throughput": ["--size", "2", "--latency", "0.01", "--concurrency", "8"],
}


def run_benchmark(name: str, tiny: Path) -> dict:
    args = [str(tiny) if a == TINY else a for a in TOY_ARGS[name]]
    done = subprocess.run([sys.executable, "-m", f"benchmarks.{name}", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    out = done.stdout
    return json.loads(out[out.index("{\n") if "{\n" in out else out.index("{") :])


def positive(value: float) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


def test_every_benchmark_has_a_toy_run():
    assert set(SCRIPTS) == set(TOY_ARGS), "give every benchmarks/bench_*.py a toy size in TOY_ARGS"


def test_agents_ratings_toy(tiny_model_dir):
    """logprob vs generate rating throughput against the loopback stub: both modes rate every answer, no failures."""
    result = run_benchmark("bench_agents_ratings", tiny_model_dir)
    assert result["benchmark"] == "agents_ratings" and result["failures"] == 0
    for mode in ("generate", "logprob"):
        figures = result[mode]
        assert figures["ratings"] == 24 and figures["valid_share"] == 1.0 and figures["calls_per_rating"] == 1.0
        assert positive(figures["ratings_per_s"]) and positive(figures["client_cpu_ms_per_rating"])
        assert 1 <= figures["mean_rating"] <= 7
    assert positive(result["ratio_ratings_per_s"]) and positive(result["ratio_client_cpu_per_rating"])


def test_agents_hf_local_toy(tiny_model_dir):
    """Micro-batched greedy generation gives the same texts as one request at a time, in one generate call."""
    result = run_benchmark("bench_agents_hf_local", tiny_model_dir)
    assert result["same_texts"] == result["requests"] == 3
    assert result["batched"]["generate_calls"] == 1 and result["one_at_a_time"]["generate_calls"] == 3
    assert result["batched"]["tokens"] == result["one_at_a_time"]["tokens"] > 0 and positive(result["ratio"])


def test_agents_throughput_toy(tiny_model_dir):
    result = run_benchmark("bench_agents_throughput", tiny_model_dir)
    assert result["calls"] == 40 and result["failures"] == 0 and result["retries"] == 0
    assert result["bound_calls_per_s"] == pytest.approx(8 / 0.01)
    assert 0 < result["ratio"] <= 1.05  # nothing beats in-flight / latency
    assert positive(result["client_cpu_ms_per_call"]) and result["server_latency_median_s"] >= 0.01


def test_memory_embed_calls_toy(tiny_model_dir):
    """Every interaction's text is embedded once through the shared cache; fewer encoder calls than the reference."""
    result = run_benchmark("bench_memory_embed_calls", tiny_model_dir)
    assert result["interactions"] == 9 and result["texts_per_interaction_excluding_seeding"] == 1.0
    assert result["texts_embedded_total"] == result["texts_requested"]
    assert result["calls_per_interaction"] < result["reference_calls_per_interaction"] == 4
    assert result["reduction_vs_reference"] == pytest.approx(4 / result["calls_per_interaction"], rel=0.01)


def test_memory_search_toy(tiny_model_dir):
    result = run_benchmark("bench_memory_search", tiny_model_dir)
    assert result["memories"] == 2000 and result["store_queries_timed"] == 20
    assert result["same_topk_as_reference"] is True and result["store_recall_at_k_vs_exact_numpy"] == 1.0
    assert positive(result["speedup"])


def test_train_batching_toy(tiny_model_dir):
    """Sharing the prompt across a group forwards fewer tokens than one row per response."""
    result = run_benchmark("bench_train_batching", tiny_model_dir)
    assert result["groups"] == 2 and result["k"] == 2
    assert 0 < result["tokens_forwarded_shared_prompt"] < result["tokens"]
    for side in result["samples_per_s"].values():
        assert positive(side["wall"]) and positive(side["cpu"])
    assert positive(result["ratio_sa_train_over_reference_style"]["cpu"])


def test_train_losses_toy(tiny_model_dir):
    result = run_benchmark("bench_train_losses", tiny_model_dir)
    assert result["batch"]["rows"] == 2 and result["batch"]["trained_tokens"] < result["batch"]["tokens"]
    assert set(result["median_step_s"]) == {"stable_alignment", "sft_hf", "sft_same_path"}
    assert positive(result["ratio_stable_alignment_over_sft_hf"]["cpu"])


def test_train_vs_trl_toy(tiny_model_dir):
    result = run_benchmark("bench_train_vs_trl", tiny_model_dir)
    assert result["pairs_per_step"] == 1 and result["timed_steps_per_side"] == 1
    assert {"sa_train_stable_alignment", "trl_dpo", "sa_train_dpo"} <= set(result["median_step_s"])
    assert all(positive(v) for v in result["ratio_over_trl_dpo"].values() if not isinstance(v, dict))


def test_world_scale_toy(tiny_model_dir):
    result = run_benchmark("bench_world_scale", tiny_model_dir)
    assert result["records"] == result["expected"] == 4 and result["exact_turn_set_no_duplicates"] is True
    assert result["invalid_peer_ratings"] == 0 and positive(result["interactions_per_s"])


def test_world_throughput_toy(tiny_model_dir):
    """Ours and the reference-style loop collect the same interactions; ours with fewer requests."""
    result = run_benchmark("bench_world_throughput", tiny_model_dir)
    ours, reference = result["ours"], result["reference_style"]
    assert ours["interactions"] == reference["interactions"] == 4
    assert ours["requests"] < reference["requests"] and positive(result["ratio_interactions_per_s"])


TOY_ARGS["bench_world_endpoint_pool"] = ["--size", "2", "--rounds", "2", "--latency", "0.02"]


def test_world_endpoint_pool_toy():
    """Two healthy endpoints vs three with one killed mid-run: both runs hold every turn once; the pool reports each
    endpoint, and the killed one's calls are counted."""
    result = run_benchmark("bench_world_endpoint_pool", ROOT)
    two, killed = result["two"], result["three_one_killed"]
    assert two["interactions"] == killed["interactions"] == 8 and two["every_turn_once"] and killed["every_turn_once"]
    assert len(two["endpoints"]) == 2 and len(killed["endpoints"]) == 3 and killed["failures"] == 0
    assert sum(e["ok"] for e in killed["endpoints"]) == killed["calls"] - killed["retries"]
    assert positive(result["ratio"]) and isinstance(result["within_10_percent"], bool)


def test_world_browser_toy(tiny_model_dir):
    result = run_benchmark("bench_world_browser", tiny_model_dir)
    assert result["turns"] == 18 and result["grid_cells"] == 9 and result["list_rows"] == 18
    assert positive(result["file_bytes"]) and positive(result["first_grid_ms_median"])


TOY_ARGS["bench_world_cost_curves"] = ["--sizes", "2,3", "--rounds", "1", "--latency", "0.01"]


def test_world_cost_curves_toy():
    """Two sizes side by side: a row each with every turn counted and positive costs, findings, the JSON and the plot."""
    result = run_benchmark("bench_world_cost_curves", ROOT)
    rows = result["rows"]
    assert [(r["size"], r["agents"], r["interactions"]) for r in rows] == [("2x2", 4, 4), ("3x3", 9, 9)]
    for row in rows:
        assert row["calls"] > row["interactions"] and row["setup_cpu_s"] > 0 and 0 <= row["machine_busy_share"] <= 1
        figures = ("interactions_per_s", "cpu_ms_per_call", "peak_rss_mb", "memory_index_mb")
        assert all(positive(row[key]) for key in (*figures, "episode_bytes_per_interaction")), row
    assert len(result["findings"]) == 6 and all(isinstance(line, str) for line in result["findings"])
    assert json.loads(Path(result["json"]).read_text())["rows"] == rows
    assert Path(result["plot"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
