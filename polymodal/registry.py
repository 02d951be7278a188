"""One registry for every swappable component (encoders, fusion methods, heads).

A component is registered once, on its class, and its ``__init__`` signature *is* its schema:
configs are ``{type: name, **kwargs}`` and kwargs are checked against that signature, so there is
no second description of any component to keep in sync.
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from polymodal.utils.errors import PolymodalError

T = TypeVar("T")

_REGISTRY: dict[str, dict[str, type]] = {}


class RegistryError(PolymodalError, ValueError):
    """A config names an unknown component or passes kwargs it does not accept."""


def register(kind: str, name: str) -> Callable[[type[T]], type[T]]:
    """Class decorator: ``@register("fusion", "tensor")``."""

    def wrap(cls: type[T]) -> type[T]:
        table = _REGISTRY.setdefault(kind, {})
        if name in table and table[name] is not cls:
            raise RegistryError(f"{kind} {name!r} is registered twice ({table[name]} and {cls})")
        table[name] = cls
        cls.registry_name = name  # type: ignore[attr-defined]
        return cls

    return wrap


def kinds() -> list[str]:
    return sorted(_REGISTRY)


def names(kind: str) -> list[str]:
    return sorted(_REGISTRY.get(kind, {}))


def get(kind: str, name: str) -> type:
    table = _REGISTRY.get(kind, {})
    if name not in table:
        valid = ", ".join(sorted(table)) or "(none registered)"
        raise RegistryError(f"unknown {kind} type {name!r}; valid choices: {valid}")
    return table[name]


def parameters(cls: type, injected: Iterable[str] = ()) -> dict[str, inspect.Parameter]:
    """The user-settable ``__init__`` parameters of a component (``injected`` ones are filled by
    the builder from fitted data, e.g. ``vocab_size``)."""
    skip = set(injected) | {"self"}
    sig = inspect.signature(cls.__init__)  # type: ignore[misc]
    return {
        n: p
        for n, p in sig.parameters.items()
        if n not in skip and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    }


def defaults(cls: type, injected: Iterable[str] = ()) -> dict[str, Any]:
    """Every user-settable parameter with its default (``None`` marks a required one)."""
    out: dict[str, Any] = {}
    for n, p in parameters(cls, injected).items():
        out[n] = None if p.default is inspect.Parameter.empty else p.default
    return out


def check_kwargs(
    kind: str, name: str, kwargs: dict[str, Any], injected: Iterable[str] = (), where: str = ""
) -> type:
    """Validate ``kwargs`` against the registered class's signature; return the class."""
    cls = get(kind, name)
    params = parameters(cls, injected)
    prefix = f"{where}: " if where else ""
    for key in kwargs:
        if key not in params:
            valid = ", ".join(sorted(params)) or "(none)"
            raise RegistryError(
                f"{prefix}{kind} {name!r} got unexpected option {key!r}; valid options: {valid}"
            )
    return cls


def build(kind: str, config: dict[str, Any], where: str = "", **injected: Any) -> Any:
    """Instantiate ``config = {type, **kwargs}``; ``injected`` kwargs are offered to the class and
    passed only when its ``__init__`` accepts them."""
    config = dict(config)
    if "type" not in config:
        raise RegistryError(
            f"{where or kind}: missing 'type'; valid choices: {', '.join(names(kind))}"
        )
    name = config.pop("type")
    cls = check_kwargs(kind, name, config, injected=injected, where=where)
    accepted = inspect.signature(cls.__init__).parameters  # type: ignore[misc]
    extra = {k: v for k, v in injected.items() if k in accepted}
    obj = cls(**extra, **config)
    with contextlib.suppress(AttributeError, TypeError):  # what built it: for cache keys, repr
        obj.build_config = {"type": name, **extra, **config}
    return obj
