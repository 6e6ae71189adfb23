"""The social agent of Back-Scatter: drafts with its memory, rates peers' answers, revises after feedback."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from agents import prompts
from agents.backends.base import ChatBackend, Sampling, Usage
from agents.ratings import Rating, ask_rating


class SocialAgent:
    """One agent on the grid. Memories are `MemoryHit`s retrieved by the caller (the environment owns memory)."""

    def __init__(
        self,
        agent_id: Any,
        backend: ChatBackend,
        sampling: Sampling = Sampling(),
        rating_sampling: Sampling | None = None,
        max_reasks: int = 2,
    ) -> None:
        self.agent_id = agent_id
        self.backend = backend
        self.sampling = sampling
        self.rating_sampling = rating_sampling or sampling
        self.max_reasks = max_reasks

    @property
    def model(self) -> str:
        return self.backend.model

    def __repr__(self) -> str:
        return f"SocialAgent({self.agent_id!r}, model={self.model!r})"

    async def draft(self, question: str, memories: Sequence[Any] = ()) -> tuple[str, Usage]:
        """Answer `question`, seeing the retrieved memories of similar questions."""
        completion = await self.backend.chat(prompts.draft_messages(question, memories), self.sampling)
        return completion.text.strip(), Usage.of(completion)

    async def feedback(self, question: str, answer: str, memories: Sequence[Any] = ()) -> tuple[Rating, Usage]:
        """Rate a peer's answer 1..7 with a reason, with this agent's own memories as context."""
        return await ask_rating(
            self.backend, prompts.feedback_messages(question, answer, memories), self.rating_sampling, self.max_reasks
        )

    async def revise(self, question: str, draft: str, feedback: Sequence[tuple[Any, Rating]]) -> tuple[str, Usage]:
        """Revise the draft once, given the peers' (peer_id, Rating) feedback."""
        completion = await self.backend.chat(prompts.revise_messages(question, draft, feedback), self.sampling)
        return completion.text.strip(), Usage.of(completion)
