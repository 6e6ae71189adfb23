"""One Back-Scatter interaction (SPEC §2) of a centre agent on its round's question, as an episode record.

Independent calls never wait for each other: the k peer ratings and the observer's draft score run concurrently;
then the revision, then the observer's revision score. A turn that fails or is cancelled cancels and awaits every call
it started, so none is left pending.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import asdict, is_dataclass
from typing import Any

from agents.backends.base import Usage
from agents.tasks import settle
from environment.records import SCHEMA_VERSION, valid_rating
from environment.world import World


def _jsonable(value: Any) -> Any:
    if is_dataclass(value) and not isinstance(value, type):
        return _jsonable(asdict(value))
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


def _scores(score: Any) -> dict[str, Any]:
    scores = {
        "alignment": valid_rating(getattr(score, "alignment", None)),
        "engagement": valid_rating(getattr(score, "engagement", None)),
        "reasons": _jsonable(getattr(score, "reasons", None)),
    }
    details = score.details() if hasattr(score, "details") else {}
    if details:
        scores["details"] = _jsonable(details)
    return scores


def _feedback(world: World, peer: int, rating: Any) -> dict[str, Any]:
    item = {
        "peer_id": peer,
        "peer_model": world.agent_models[peer],
        "peer_persona": getattr(world.agents[peer], "persona", None),
        "rating": valid_rating(rating.value) if rating.valid else None,
        "reason": rating.reason,
        "valid": bool(rating.valid and valid_rating(rating.value) is not None),
        "attempts": getattr(rating, "attempts", 1),
        "mode": getattr(rating, "mode", "generate"),
    }
    if getattr(rating, "detail", None):
        item["detail"] = _jsonable(rating.detail)
    if getattr(rating, "error", None):
        item["error"] = rating.error
    return item


async def back_scatter(world: World, agent: int, round_: int) -> dict[str, Any]:
    """Run the interaction and return its complete record (nothing is written here)."""
    started = time.perf_counter()
    question = world.schedule.question(round_, agent)
    vector = await world.question_vector(question.text, round_)
    hits = world.recall(agent, vector)
    actor = world.agents[agent]
    draft, usage = await actor.draft(question.text, hits)

    peers = world.raters(agent, round_)
    rating_tasks = [
        asyncio.ensure_future(world.agents[p].feedback(question.text, draft, world.recall(p, vector))) for p in peers
    ]
    observe_draft = asyncio.ensure_future(world.observer.score(question.text, draft))
    try:
        ratings = await asyncio.gather(*rating_tasks)
        feedback = [(peer, rating) for peer, (rating, _) in zip(peers, ratings, strict=True)]
        revision, revise_cost = await actor.revise(question.text, draft, feedback)
        draft_score, draft_cost = await observe_draft
        revision_score, score_cost = await world.observer.score(question.text, revision)
        usage = sum((cost for _, cost in ratings), usage) + revise_cost + draft_cost + score_cost
    finally:  # on every exit path no call of this turn is left running (a failure or cancellation elsewhere)
        await settle([*rating_tasks, observe_draft])

    row, col = world.layout.grid.coords(world.layout.positions(round_)[agent])
    return {
        "schema_version": SCHEMA_VERSION,
        "world_id": world.world_id,
        "round": round_,
        "agent_id": agent,
        "position": [row, col],
        "agent_model": world.agent_models[agent],
        "agent_persona": getattr(actor, "persona", None),
        "question_id": question.id,
        "question": question.text,
        "question_repeat": world.schedule.repeat(round_, agent),
        "draft": {"text": draft, "memory_hits": [_jsonable(h) for h in hits]},
        "feedback": [_feedback(world, peer, rating) for peer, rating in feedback],
        "revision": {"text": revision},
        "observer": {"model": world.observer_model, "draft": _scores(draft_score), "revision": _scores(revision_score)},
        "usage": {
            **(usage if isinstance(usage, Usage) else Usage()).to_dict(),
            "wall_seconds": round(time.perf_counter() - started, 4),
        },
    }
