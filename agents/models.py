"""Chat-model selection: the scripted offline model by default, any LangChain provider by setting."""

from __future__ import annotations

from collections.abc import Callable

from langchain_core.language_models import BaseChatModel

from agents.scripted import ScriptedChatModel
from agents.spec import AgentSpec
from countersign.settings import Settings


def model_factory(settings: Settings) -> Callable[[AgentSpec], BaseChatModel]:
    """A function giving each agent its model, per ``COUNTERSIGN_MODEL``.

    ``scripted`` (the default) is the deterministic playbook model, not a language model. Anything else is a
    LangChain provider string such as ``openai:gpt-4.1-mini`` or ``anthropic:claude-sonnet-4-5``; with
    ``COUNTERSIGN_MODEL_BASE_URL`` set, an OpenAI-compatible server at that URL.
    """
    if settings.model == "scripted":
        return lambda spec: ScriptedChatModel(playbook=spec.playbook)

    def real(spec: AgentSpec) -> BaseChatModel:
        from langchain.chat_models import init_chat_model

        kwargs: dict[str, object] = {"timeout": settings.model_timeout_seconds, "max_retries": 0}
        if settings.model_base_url:
            kwargs["base_url"] = settings.model_base_url
        if settings.model_api_key:
            kwargs["api_key"] = settings.model_api_key
        model = (
            settings.model
            if ":" in settings.model or not settings.model_base_url
            else f"openai:{settings.model}"
        )
        chat: BaseChatModel = init_chat_model(model, **kwargs)  # type: ignore[call-overload]
        return chat

    return real
