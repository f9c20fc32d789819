"""The offline model: a deterministic *scripted* chat model, not a language model.

It decides its next message from the conversation so far through a playbook (a pure function of the
messages), so an activity retry or a workflow replay gets exactly the same message. It exists so the product
runs and is tested with no model key; configure a real provider with ``COUNTERSIGN_MODEL``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.runnables import Runnable
from langchain_core.tools import BaseTool

Playbook = Callable[[Sequence[BaseMessage]], AIMessage]


def _approx_tokens(text: str) -> int:
    # Deterministic stand-in for a tokenizer: about four characters per token.
    return max(1, len(text) // 4)


class ScriptedChatModel(BaseChatModel):
    """A scripted (not AI) chat model: returns what its playbook writes for the conversation so far."""

    playbook: Playbook
    model_name: str = "scripted"

    @property
    def _llm_type(self) -> str:
        return "scripted"

    def bind_tools(
        self,
        tools: Sequence[dict[str, Any] | type | Callable[..., Any] | BaseTool],
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, AIMessage]:
        """Accept the offered tools; the playbook already knows which tools it calls."""
        return self

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        reply = self.playbook(messages)
        prompt = "".join(str(m.content) for m in messages)
        answer = str(reply.content) + json.dumps(reply.tool_calls, sort_keys=True, default=str)
        usage = {"input_tokens": _approx_tokens(prompt), "output_tokens": _approx_tokens(answer)}
        usage["total_tokens"] = usage["input_tokens"] + usage["output_tokens"]
        message = AIMessage(
            content=reply.content,
            tool_calls=reply.tool_calls,
            usage_metadata=usage,  # type: ignore[arg-type,unused-ignore]
            response_metadata={"model_name": self.model_name, "model_provider": "scripted"},
        )
        return ChatResult(generations=[ChatGeneration(message=message)])
