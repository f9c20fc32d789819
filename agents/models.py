"""Chat-model selection: the scripted offline model by default, any LangChain provider by setting."""

from __future__ import annotations

from collections.abc import Callable

from langchain_core.language_models import BaseChatModel

from agents.scripted import ScriptedChatModel
from agents.spec import AgentSpec
from countersign.settings import Settings

ModelFor = Callable[[AgentSpec], BaseChatModel]


def model_string(settings: Settings, agent: str) -> str:
    """The model an agent uses: its entry in ``COUNTERSIGN_AGENT_MODELS``, else ``COUNTERSIGN_MODEL``."""
    return settings.agent_models.get(agent, settings.model)


def build_model(label: str, settings: Settings, spec: AgentSpec) -> BaseChatModel:
    """A chat model for a provider string.

    ``scripted`` is the deterministic playbook model, not a language model. Anything else is a LangChain
    provider string such as ``openai:gpt-4.1-mini``, ``anthropic:claude-sonnet-4-5`` or ``ollama:llama3.1``;
    with ``COUNTERSIGN_MODEL_BASE_URL`` set, a bare model name means an OpenAI-compatible server at that URL.
    The client never retries by itself: retries are Temporal activity retries, bounded and visible in history.
    """
    if label == "scripted":
        return ScriptedChatModel(playbook=spec.playbook)
    from langchain.chat_models import init_chat_model

    kwargs: dict[str, object] = {"timeout": settings.model_timeout_seconds, "max_retries": 0}
    if settings.model_base_url:
        kwargs["base_url"] = settings.model_base_url
    if settings.model_api_key:
        kwargs["api_key"] = settings.model_api_key
    model = label if ":" in label or not settings.model_base_url else f"openai:{label}"
    chat: BaseChatModel = init_chat_model(model, **kwargs)  # type: ignore[call-overload]
    return chat


def model_factory(settings: Settings) -> ModelFor:
    """Each agent's primary model."""
    return lambda spec: build_model(model_string(settings, spec.name), settings, spec)


def fallback_factory(settings: Settings) -> ModelFor | None:
    """The fallback model (``COUNTERSIGN_MODEL_FALLBACK``), tried when the primary call fails, if set."""
    if not settings.model_fallback:
        return None
    return lambda spec: build_model(settings.model_fallback, settings, spec)


def warm(settings: Settings, specs: list[AgentSpec]) -> None:
    """Build every configured model once, so the provider's SDK is imported at start-up (on a thread the
    caller chooses) rather than in the first model step, where its import would hold the worker's loop."""
    for spec in specs:
        for label in {model_string(settings, spec.name), settings.model_fallback} - {"", "scripted"}:
            build_model(label, settings, spec)
