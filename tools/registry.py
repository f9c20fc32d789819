"""The business-tool contract: name, docstring, argument model, scope, kind and a context from the run."""

from __future__ import annotations

import copy
import importlib
import inspect
import pkgutil
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from functools import cache
from importlib.metadata import entry_points
from types import ModuleType
from typing import Any, Literal, TypeVar, get_type_hints

from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession

from approvals.policy import FactSignature, ToolSignature, fact_key
from tools.business import BusinessBase, BusinessStore

ToolKind = Literal["read", "write"]
R = TypeVar("R", bound=BusinessBase)


@dataclass(frozen=True)
class ToolContext:
    """What a tool learns from the run, never from the model: who, for whom, and the idempotency key."""

    tenant_id: str
    caller: str
    run_id: str
    agent: str
    idempotency_key: str
    store: BusinessStore

    async def once(
        self, tool: str, args: BaseModel, act: Callable[[AsyncSession], Awaitable[dict[str, Any]]]
    ) -> dict[str, Any]:
        """Run a write tool's business change at most once for this call's idempotency key."""
        return await self.store.once(
            key=self.idempotency_key,
            tenant_id=self.tenant_id,
            run_id=self.run_id,
            tool=tool,
            arguments=args.model_dump(mode="json"),
            act=act,
        )

    async def get(
        self, session: AsyncSession, model: type[R], record_id: str, *, for_update: bool = False
    ) -> R | None:
        """The tenant's record of that id, or None: another tenant's record of the same id is not found."""
        return await session.get(
            model, {"tenant_id": self.tenant_id, "id": record_id}, with_for_update=for_update
        )


ToolFunc = Callable[[Any, ToolContext], Awaitable[Any]]


@cache
def _schema(tool: BusinessTool) -> dict[str, Any]:
    return {
        "type": "function",
        "function": {
            "name": tool.name,
            "description": tool.description,
            "parameters": tool.args_model.model_json_schema(),
        },
    }


@dataclass(frozen=True)
class BusinessTool:
    """A tool the model may be offered; ``description`` is its docstring, which is what the model reads."""

    name: str
    description: str
    args_model: type[BaseModel]
    scope: str
    kind: ToolKind
    func: ToolFunc
    # Result keys whose values are text a customer or a third party wrote (see agents/provenance.py).
    untrusted: tuple[str, ...] = ()

    def schema(self) -> dict[str, Any]:
        """The OpenAI-style function schema offered to chat models (built once: it is offered every turn)."""
        return copy.deepcopy(_schema(self))

    async def run(self, args: dict[str, Any], ctx: ToolContext) -> dict[str, Any]:
        """Validate the arguments against the tool's model and run it; the result is JSON-ready."""
        parsed = self.args_model.model_validate(args)
        result = await self.func(parsed, ctx)
        if isinstance(result, BaseModel):
            dumped: dict[str, Any] = result.model_dump(mode="json")
            return dumped
        return dict(result)


REGISTRY: dict[str, BusinessTool] = {}
FACTS: dict[str, PolicyFact] = {}


@dataclass(frozen=True)
class FactContext:
    """What a fact learns from the run: whose data it may read, and where."""

    tenant_id: str
    store: BusinessStore

    async def get(self, model: type[R], record_id: str) -> R | None:
        """The tenant's record of that id, or None (read in a read-only session of its own: on SQLite it takes
        no write lock)."""
        async with self.store.read_sessions() as session, session.begin():
            return await session.get(model, {"tenant_id": self.tenant_id, "id": record_id})


FactFunc = Callable[..., Awaitable[Any]]
_JSON_TYPES: dict[Any, str] = {str: "string", int: "integer", float: "number", bool: "boolean"}


@dataclass(frozen=True)
class PolicyFact:
    """A named, typed, read-only look-up into the tenant's data that policy conditions call as
    ``fact.<name>(...)``; ``description`` is its docstring."""

    name: str
    description: str
    params: tuple[tuple[str, str], ...]
    returns: str
    func: FactFunc

    def signature(self) -> FactSignature:
        """What the policy checks conditions against: the parameters' and the value's JSON types."""
        return FactSignature(
            params=tuple(kind for _, kind in self.params), returns=self.returns, description=self.description
        )

    async def lookup(self, ctx: FactContext, args: list[Any]) -> Any:
        """The fact's value for these arguments, checked against its parameter types."""
        if len(args) != len(self.params):
            raise TypeError(f"fact {self.name} takes {len(self.params)} argument(s), not {len(args)}")
        for (param, kind), value in zip(self.params, args, strict=True):
            if kind == "string" and not isinstance(value, str):
                raise TypeError(f"fact {self.name}: {param} must be a string, not {type(value).__name__}")
        return await self.func(ctx, *args)


def _json_of(hint: Any) -> str:
    kinds = [k for k in getattr(hint, "__args__", (hint,)) if k is not type(None)]
    return _JSON_TYPES.get(kinds[0], "any") if len(kinds) == 1 else "any"


def policy_fact(func: FactFunc) -> PolicyFact:
    """Register an async ``(ctx, *args)`` function as a policy fact; its docstring is required (it is what
    ``countersign policy facts`` shows policy authors)."""
    doc = inspect.getdoc(func)
    if not doc:
        raise TypeError(f"fact {func.__name__} needs a docstring: it is what policy authors read")
    hints = get_type_hints(func)
    names = list(inspect.signature(func).parameters)[1:]
    fact = PolicyFact(
        func.__name__,
        doc,
        tuple((n, _json_of(hints.get(n))) for n in names),
        _json_of(hints.get("return")),
        func,
    )
    if fact.name in FACTS:
        raise ValueError(f"fact {fact.name} registered twice")
    FACTS[fact.name] = fact
    return fact


def business_tool(
    *, scope: str, kind: ToolKind, untrusted: tuple[str, ...] = ()
) -> Callable[[ToolFunc], BusinessTool]:
    """Register an async ``(args, ctx)`` function as a business tool; its docstring is required.
    ``untrusted`` names the result keys (at any depth) holding text a customer or a third party wrote."""

    def register(func: ToolFunc) -> BusinessTool:
        doc = inspect.getdoc(func)
        if not doc:
            raise TypeError(f"tool {func.__name__} needs a docstring: it is what the model reads")
        hints = get_type_hints(func)
        args_model = next(iter(v for k, v in hints.items() if k not in ("ctx", "return")))
        if not (isinstance(args_model, type) and issubclass(args_model, BaseModel)):
            raise TypeError(f"tool {func.__name__}: first parameter must be a pydantic model")
        tool = BusinessTool(func.__name__, doc, args_model, scope, kind, func, untrusted)
        if tool.name in REGISTRY:
            raise ValueError(f"tool {tool.name} registered twice")
        REGISTRY[tool.name] = tool
        return tool

    return register


def _json_type(prop: dict[str, Any]) -> str:
    if isinstance(prop.get("type"), str):
        return str(prop["type"])
    kinds = [p.get("type") for p in prop.get("anyOf", []) if p.get("type") not in (None, "null")]
    if len(kinds) == 1 and isinstance(kinds[0], str):
        return kinds[0]
    if "enum" in prop and all(isinstance(v, str) for v in prop["enum"]):
        return "string"
    return "any"


def signatures() -> dict[str, ToolSignature]:
    """What the policy checks its rules against: every registered tool's kind and argument types."""
    out: dict[str, ToolSignature] = {}
    for name, tool in load_all().items():
        schema = _schema(tool)["function"]["parameters"]
        defs = schema.get("$defs", {})
        args = {}
        for arg, prop in schema.get("properties", {}).items():
            if "$ref" in prop:
                prop = defs.get(prop["$ref"].rsplit("/", 1)[-1], {})
            args[arg] = _json_type(prop)
        out[name] = ToolSignature(kind=tool.kind, args=args)
    return out


def fact_signatures() -> dict[str, FactSignature]:
    """What the policy checks ``fact.<name>(...)`` calls against: every registered fact's types."""
    load_all()
    return {name: fact.signature() for name, fact in FACTS.items()}


def get_fact(name: str) -> PolicyFact | None:
    """The registered fact of that name, loading every tool package first."""
    load_all()
    return FACTS.get(name)


def fact_lookup(
    store: BusinessStore, tenant_id: str, cache: MutableMapping[str, Any] | None = None
) -> Callable[[str, list[Any]], Awaitable[Any]]:
    """The ``lookup`` that :func:`approvals.policy.evaluate_with_facts` calls: registered facts over the
    tenant's records, each value remembered in ``cache`` (the run's, so one run sees one answer)."""

    async def lookup(name: str, args: list[Any]) -> Any:
        key = fact_key(name, args)
        if cache is not None and key in cache:
            return cache[key]
        fact = get_fact(name)
        if fact is None:
            raise LookupError(f"no fact named {name}")
        value = await fact.lookup(FactContext(tenant_id, store), args)
        if cache is not None:
            cache[key] = value
        return value

    return lookup


def get_tool(name: str) -> BusinessTool | None:
    """The registered tool of that name, loading every tool module first."""
    load_all()
    return REGISTRY.get(name)


def tool_packages() -> list[ModuleType]:
    """Every tool package: the subpackages of ``tools`` and the ``countersign.tools`` entry points of
    installed distributions. Importing one runs its ``@business_tool`` and ``@policy_fact`` registrations;
    adding a tool is adding its folder."""
    import tools

    modules = [
        importlib.import_module(f"tools.{m.name}")
        for m in sorted(pkgutil.iter_modules(tools.__path__), key=lambda m: m.name)
        if m.ispkg
    ]
    modules += [importlib.import_module(point.value) for point in entry_points(group="countersign.tools")]
    return modules


@cache
def load_all() -> dict[str, BusinessTool]:
    """Discover every tool package so their registrations run; returns the registry."""
    tool_packages()
    return REGISTRY
