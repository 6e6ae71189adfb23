"""The social agent of Back-Scatter: drafts with its memory, rates peers' answers, revises after feedback."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from agents import prompts
from agents.backends.base import ChatBackend, Sampling, Usage
from agents.raters import Rater, RaterSettings, RatingRequest
from agents.ratings import Rating


class SocialAgent:
    """One agent on the grid. Memories are `MemoryHit`s retrieved by the caller (the environment owns memory).

    `persona`: a name from `prompts.PERSONAS` (or a literal system prompt) used when drafting and revising; ratings
    use the neutral prompts so that they measure the answer, not the rater's persona. `rater`: how it rates peers
    (default: generated ratings, re-asked twice at most, with `rating_sampling`, else `sampling`).
    """

    def __init__(
        self,
        agent_id: Any,
        backend: ChatBackend,
        sampling: Sampling = Sampling(),
        rating_sampling: Sampling | None = None,
        persona: str | None = None,
        rater: Rater | None = None,
    ) -> None:
        self.agent_id = agent_id
        self.backend = backend
        self.sampling = sampling
        self.persona = persona or prompts.DEFAULT_PERSONA
        self.system = prompts.persona_prompt(self.persona)
        self.rater = rater or Rater(backend, RaterSettings(), rating_sampling or sampling)

    @property
    def model(self) -> str:
        return self.backend.model

    def __repr__(self) -> str:
        return (
            f"SocialAgent({self.agent_id!r}, model={self.model!r}, persona={self.persona!r}, rater={self.rater.mode})"
        )

    async def draft(self, question: str, memories: Sequence[Any] = ()) -> tuple[str, Usage]:
        """Answer `question`, seeing the retrieved memories of similar questions."""
        completion = await self.backend.chat(prompts.draft_messages(question, memories, self.system), self.sampling)
        return completion.text.strip(), Usage.of(completion)

    async def feedback(self, question: str, answer: str, memories: Sequence[Any] = ()) -> tuple[Rating, Usage]:
        """Rate a peer's answer 1..7 with a reason, with this agent's own memories as context."""
        return await self.rater.rate(RatingRequest(question, answer, "alignment", memories))

    async def revise(self, question: str, draft: str, feedback: Sequence[tuple[Any, Rating]]) -> tuple[str, Usage]:
        """Revise the draft once, given the peers' (peer_id, Rating) feedback."""
        messages = prompts.revise_messages(question, draft, feedback, self.system)
        completion = await self.backend.chat(messages, self.sampling)
        return completion.text.strip(), Usage.of(completion)
