"""Any langchain-core `BaseChatModel` (built from config with `_target_`, e.g. `langchain_openai.ChatOpenAI`)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from agents.backends.base import ChatBackend, Completion, Message, Sampling
from agents.backends.errors import TransientError
from agents.backends.openai_compat import map_openai_error

_ROLES = {"system": "system", "user": "human", "assistant": "ai"}


class LangChainBackend(ChatBackend):
    """Calls `chat_model.ainvoke`; sampling goes in as call kwargs (`pass_sampling`), usage from `usage_metadata`.

    `max_tokens_param`: the call kwarg for the token cap. ChatOpenAI renames `max_tokens` to `max_completion_tokens`,
    which llama.cpp's server ignores; `extra_body.max_tokens` sends `max_tokens` verbatim in the request body.
    """

    def __init__(
        self,
        chat_model: Any,
        model: str = "",
        pass_sampling: bool = True,
        secret: str | None = None,
        max_tokens_param: str = "max_tokens",
    ) -> None:
        from langchain_core.language_models import BaseChatModel

        if not isinstance(chat_model, BaseChatModel):
            from conf.errors import UserError

            raise UserError(
                f"backend.chat_model built a {type(chat_model).__name__}, not a langchain BaseChatModel; "
                f"set backend.chat_model._target_ to a chat model class such as langchain_openai.ChatOpenAI"
            )
        self.chat_model = chat_model
        self.model = model or getattr(chat_model, "model_name", "") or getattr(chat_model, "model", "") or "langchain"
        self.pass_sampling = pass_sampling
        self.max_tokens_param = max_tokens_param
        self._secret = secret

    def __repr__(self) -> str:
        return f"LangChainBackend({type(self.chat_model).__name__}, model={self.model!r})"

    async def chat(self, messages: Sequence[Message], sampling: Sampling = Sampling()) -> Completion:
        import openai

        lc_messages = [(_ROLES.get(m["role"], m["role"]), m["content"]) for m in messages]
        kwargs: dict[str, Any] = {}
        if sampling.stop:
            kwargs["stop"] = list(sampling.stop)
        if self.pass_sampling:
            kwargs["temperature"] = sampling.temperature
            if self.max_tokens_param.startswith("extra_body."):  # sent verbatim in the request body
                kwargs["extra_body"] = {self.max_tokens_param.removeprefix("extra_body."): sampling.max_tokens}
            else:
                kwargs[self.max_tokens_param] = sampling.max_tokens
            if sampling.seed is not None:
                kwargs["seed"] = sampling.seed
        start = time.perf_counter()
        try:
            message = await self.chat_model.ainvoke(lc_messages, **kwargs)
        except openai.OpenAIError as error:
            raise map_openai_error(error, f"langchain {self.model}", self._secret, "backend.api_key_env") from None
        except (TimeoutError, ConnectionError) as error:
            raise TransientError(f"langchain {self.model}: {type(error).__name__}: {error}") from None
        usage = getattr(message, "usage_metadata", None) or {}
        content = message.content if isinstance(message.content, str) else str(message.content)
        return Completion(
            text=content,
            prompt_tokens=int(usage.get("input_tokens", 0) or 0),
            completion_tokens=int(usage.get("output_tokens", 0) or 0),
            model=self.model,
            seconds=time.perf_counter() - start,
        )
