"""Embedder calls per Back-Scatter interaction in a real world run (`sa-simulate`), against the reference's count.

Chat goes to the loopback OpenAI-compatible stub (`loopback/openai_server.py`, scripted replies, no model),
memory uses the real local encoder (all-MiniLM-L6-v2) through the shared embedding cache. The counts come from the
run's `metrics.json` (`embedder`: batches sent to the encoder, texts embedded) and its memory snapshot (how many
distinct prior questions were embedded at seeding, so interaction-time work can be shown on its own).

The reference embeds the question once for the draft, once per rating peer and once more when it writes the
revision into memory, one API call each: 1 + k + 1 = 6 calls per interaction with k = 4 peers.

    python benchmarks/bench_memory_embed_calls.py                  # 3x3 world, 2 rounds, shipped questions
    python benchmarks/bench_memory_embed_calls.py --size 4 --rounds 3
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from loopback.servers import start_openai_stub
from memory.snapshot import load_all


def seeded_questions(run_dir: Path) -> int:
    """Distinct questions that entered memory as priors (embedded in the one seeding batch)."""
    stores, _meta = load_all(run_dir / "memory")
    questions = set()
    for store in stores.values():
        for record in store.records():
            first = record.history[0] if record.history else record.to_dict()
            if first["source"] == "prior":
                questions.add(record.question)
    return len(questions)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=3, help="grid side (reference default 3)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--k", type=int, default=4, help="rating peers per interaction (reference 4)")
    parser.add_argument("--max-ratio", type=float, default=1.0, help="exit 1 if calls per interaction exceed this")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-embed-") as tmp:
        server = start_openai_stub(Path(tmp) / "stub", log=False)
        run_dir = Path(tmp) / "run"
        command = [
            str(Path(sys.executable).with_name("sa-simulate")), "backend=openai", f"backend.base_url={server.base_url}",
            "backend.model=stub-model", "embedder=hf_local", f"world.size={args.size}", f"world.rounds={args.rounds}",
            f"world.k={args.k}", "run.plots=false", "run.progress=false", f"hydra.run.dir={run_dir}",
        ]  # fmt: skip
        try:
            done = subprocess.run(command, cwd=tmp, capture_output=True, text=True, timeout=900)
            stub_paths = server.stats()["by_path"]
        finally:
            server.stop()
        if done.returncode != 0:
            sys.exit(f"sa-simulate failed: {done.stderr.strip()[-2000:]}")
        metrics = json.loads((run_dir / "metrics.json").read_text(encoding="utf-8"))
        seeded = seeded_questions(run_dir)

    interactions = int(metrics["records"])
    stats = metrics["embedder"]
    calls = int(stats["inner_calls"])
    texts = int(stats.get("embedded", stats.get("texts_embedded", 0)))  # key names of EmbeddingCache.stats()
    seeding_calls = 1 if seeded else 0
    reference = 1 + args.k + 1
    per_interaction = calls / interactions
    report = {
        "benchmark": "memory_embed_calls",
        "world": f"{args.size}x{args.size}, {args.rounds} rounds, k={args.k}",
        "interactions": interactions,
        "embedder": "hf_local (all-MiniLM-L6-v2) behind the shared EmbeddingCache",
        "stub_embedding_requests": sum(n for path, n in stub_paths.items() if "embeddings" in path),
        "encoder_calls_total": calls,
        "encoder_calls_seeding": seeding_calls,
        "encoder_calls_during_interactions": calls - seeding_calls,
        "texts_requested": int(stats.get("requested", stats.get("texts_requested", 0))),
        "texts_embedded_total": texts,
        "texts_embedded_seeding": seeded,
        "texts_embedded_during_interactions": texts - seeded,
        "calls_per_interaction": round(per_interaction, 4),
        "calls_per_interaction_excluding_seeding": round((calls - seeding_calls) / interactions, 4),
        "texts_per_interaction_excluding_seeding": round((texts - seeded) / interactions, 4),
        "reference_calls_per_interaction": reference,
        "reduction_vs_reference": round(reference / per_interaction, 1) if per_interaction else None,
    }
    print(json.dumps(report, indent=1))
    if per_interaction > args.max_ratio:
        sys.exit(f"{per_interaction:.3f} embedder calls per interaction exceed {args.max_ratio}")


if __name__ == "__main__":
    main()
