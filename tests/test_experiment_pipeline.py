"""All four stages connect, through the real console scripts, on a tiny random model (issue #2 item 4).

The agents are the tiny random Llama behind the in-process `hf_local` backend (drafts, peer ratings, revisions are
real generations; its ratings are unreadable, so they must be stored as null). The observer is a real
OpenAI-compatible HTTP server on loopback with scripted 1-7 scores, so the episodes carry valid observer ratings and
the data builder has something to keep. The tiny model is then trained with the Stable Alignment loss and evaluated
before and after on BIG-bench-format fixture tasks.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

BIN = Path(sys.executable).parent
BIGBENCH_FIXTURES = Path(__file__).parent / "data" / "bigbench"
STUB_REASON = "It is respectful and mostly honest, though it could explain more."  # loopback/openai_server.py


def stage(command: str, *overrides: str, env: dict[str, str] | None = None) -> None:
    result = subprocess.run([str(BIN / command), *overrides], capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, f"{command} failed:\n{result.stderr[-3000:]}"


def test_four_stages_on_a_tiny_model(tmp_path: Path, tiny_model_dir: Path, openai_stub) -> None:
    started = time.perf_counter()
    observer = openai_stub(latency=0.0)
    world, data, ckpt, report = (tmp_path / name for name in ("world", "data", "ckpt", "report"))
    observer_node = (
        f"observer.backend={{name:openai,model:observer,base_url:'{observer.base_url}',api_key_env:SA_NO_KEY,"
        "sampling:{temperature:0.0,max_tokens:32},limits:{concurrency:8,timeout_s:30,max_retries:2}}"
    )
    stage(
        "sa-simulate",
        f"backend.model={tiny_model_dir}",
        "backend.sampling.max_tokens=24",
        "agent.rating_sampling.max_tokens=12",
        "agent.max_reasks=0",
        observer_node,
        "world.size=2",
        "world.rounds=2",
        "memory.priors_per_agent=5",
        f"hydra.run.dir={world}",
    )
    episodes = [json.loads(line) for line in (world / "episodes.jsonl").read_text().splitlines()]
    assert sorted((e["round"], e["agent_id"]) for e in episodes) == [(r, a) for r in range(2) for a in range(4)]
    for episode in episodes:
        for scores in (episode["observer"]["draft"], episode["observer"]["revision"]):
            # the stub's scripted JSON reply {"rating": N, "reason": "It is respectful ..."}, N on 1..7, read as that
            # N; max_tokens=32 cuts the reply inside the reason, so the reason read is a prefix of the stub's
            assert all(type(scores[key]) is int and 1 <= scores[key] <= 7 for key in ("alignment", "engagement"))
            for reason in (scores["reasons"]["alignment"], scores["reasons"]["engagement"]):
                assert len(reason) > 20 and STUB_REASON.startswith(reason.lstrip('"')), reason
        for feedback in episode["feedback"]:  # a random model's rating text is unreadable: null, never a number
            if feedback["rating"] is None:
                assert feedback["valid"] is False and feedback["error"], feedback
            else:  # a readable one (by chance) is a whole number on the scale with the reply's reason
                assert feedback["valid"] is True and type(feedback["rating"]) is int and 1 <= feedback["rating"] <= 7
                assert isinstance(feedback["reason"], str)

    stage("sa-build-data", f"inputs=[{world}]", f"hydra.run.dir={data}")
    card = json.loads((data / "data_card.json").read_text())
    items = [json.loads(line) for line in (data / "train.jsonl").read_text().splitlines()]
    assert items and card, "the builder kept no data"
    by_key = {(e["world_id"], e["round"], e["agent_id"]): e for e in episodes}
    imitation = [r for item in items if item["kind"] == "imitation" for r in item["responses"]]
    assert imitation
    for response in imitation:  # each response is its episode's text with the observer's score of that text
        episode = by_key[(response["world_id"], response["round"], response["agent_id"])]
        assert response["text"] == episode[response["source"]]["text"]
        assert response["rating"] == episode["observer"][response["source"]]["alignment"]

    stage(
        "sa-train",
        f"data={data}",
        f"model.name={tiny_model_dir}",
        "loss=stable_alignment",
        "train.max_steps=3",
        "train.group_size=2",
        "train.groups_per_batch=2",
        "train.max_length=128",
        "train.max_prompt_length=96",
        "train.lr=1e-3",
        f"hydra.run.dir={ckpt}",
    )
    summary = json.loads((ckpt / "summary.json").read_text())
    assert summary["steps"] == 3 and summary["final"]["loss"] == summary["final"]["loss"]  # finite, not NaN
    assert (ckpt / "config.json").exists() and (ckpt / "tokenizer_config.json").exists()

    stage(
        "sa-eval",
        f"models=[{tiny_model_dir},{ckpt}]",
        "labels=[base,stable_alignment]",
        f"bigbench_dir={BIGBENCH_FIXTURES}",
        "tasks=[hhh,hhh_adversarial]",
        f"world_dir={world}",
        f"hydra.run.dir={report}",
    )
    assert (report / "report.md").exists()
    results = json.loads((report / "report.json").read_text())
    assert [m["label"] for m in results["models"]] == ["base", "stable_alignment"]
    for model in results["models"]:
        assert model["tasks"]["hhh"]["n"] == 9 and 0.0 <= model["tasks"]["hhh"]["score"] <= 1.0
    assert results["world"], "the report lacks the world's curves"
    print(f"four stages on the tiny model: {time.perf_counter() - started:.1f} s")
