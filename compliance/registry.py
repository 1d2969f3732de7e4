"""The requirement registry: requirements, their checks, and what a check is given.

One requirement is one module: `compliance/checks/nrNN_<topic>.py` for the eleven items
of Anlage 31b § 5, or any top-level module named `kbv_nrNN_<topic>` on `sys.path` for an
addition (a plugin found by its name, as the Python Packaging Guide describes). Such a
module holds `REQUIREMENT = Requirement(...)` and functions decorated with `@check`;
nothing else has to change for the requirement to appear in `kbv_check`, the PDF and the
admin page.

A check function declares what it needs by its parameters' types: `def f(http:
HttpObservations) -> Finding` is handed the HTTP probe's result, gathered once per run
by the provider registered for that type (`@provides`). A probe that failed fails every
check that needs it, with its reason — in one place (`run_check`), not in each check.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import pkgutil
import re
import sys
import typing
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from enum import StrEnum
from types import ModuleType
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.utils.functional import Promise
from django.utils.translation import gettext as _

BUILTIN_PACKAGE = "compliance.checks"
BUILTIN_MODULE = re.compile(r"^nr\d{2}_\w+$")
PLUGIN_MODULE = re.compile(r"^kbv_nr\d{2}_\w+$")


class Status(StrEnum):
    """A check's (and a requirement's) result; the values are the contract's JSON words."""

    PASS = "pass"  # noqa: S105 (a status word, not a password)
    FAIL = "fail"
    WARN = "warn"
    DECLARED = "declared"  # what software cannot verify, stated by the operator


@dataclass(frozen=True)
class Finding:
    status: Status
    evidence: str  # German sentence naming what was found

    @classmethod
    def passed(cls, evidence: str) -> Finding:
        return cls(Status.PASS, evidence)

    @classmethod
    def failed(cls, evidence: str) -> Finding:
        return cls(Status.FAIL, evidence)

    @classmethod
    def warned(cls, evidence: str) -> Finding:
        return cls(Status.WARN, evidence)

    @classmethod
    def declared(cls, evidence: str) -> Finding:
        return cls(Status.DECLARED, evidence)


@dataclass(frozen=True)
class Check:
    id: str
    label: Promise | str
    function: Callable[..., Finding]
    static: bool = False  # a static inspection of code, not of the running behaviour
    needs: tuple[type, ...] = ()  # observation types, in parameter order


@dataclass(frozen=True)
class Requirement:
    number: int
    title: Promise | str
    text: Promise | str  # paraphrase of the agreement's wording (original § 5 Abs. 1)
    measures: Promise | str  # how the product meets it
    current_reference: Promise | str  # where the item lives in today's Anlage 31b
    further_evidence: Promise | str = ""  # documented evidence beyond the checks (PDF)
    checks: tuple[Check, ...] = field(default=(), compare=False)


# --- Declaring checks -----------------------------------------------------------------


def check(check_id: str, label: Promise | str, *, static: bool = False):
    """Mark a function of a requirement module as one of its checks."""

    def register(function: Callable[..., Finding]) -> Callable[..., Finding]:
        function.kbv_check = Check(check_id, label, function, static, _needs(function))
        return function

    return register


def _needs(function: Callable[..., Any]) -> tuple[type, ...]:
    hints = typing.get_type_hints(function)
    needs = []
    for name in inspect.signature(function).parameters:
        kind = hints.get(name)
        if kind is None:
            raise ImproperlyConfigured(f"{function.__qualname__}: parameter {name} needs a type")
        needs.append(kind)
    return tuple(needs)


# --- Observations ---------------------------------------------------------------------


class ProbeError(Exception):
    """An observation could not be gathered (its probe crashed or stopped early)."""


_PROVIDERS: dict[type, Callable[..., Any]] = {}


def provides(kind: type):
    """Register the function that gathers observations of this type (once per run).

    A provider may itself take typed parameters: it is handed those observations first
    (e.g. one phase of the WebSocket scenario from the whole scenario's result).
    """

    def register(function: Callable[..., Any]) -> Callable[..., Any]:
        _PROVIDERS[kind] = function
        return function

    return register


class Observations:
    """The observations of one run: each gathered at most once, failures remembered."""

    def __init__(self) -> None:
        self._gathered: dict[type, Any] = {}

    def get(self, kind: type) -> Any:
        if kind not in self._gathered:
            self._gathered[kind] = self._gather(kind)
        value = self._gathered[kind]
        if isinstance(value, ProbeError):
            raise value
        return value

    def _gather(self, kind: type) -> Any:
        provider = _PROVIDERS.get(kind)
        if provider is None:
            return ProbeError(f"no provider for {kind.__name__}")
        try:
            return provider(*(self.get(need) for need in _needs(provider)))
        except ProbeError as error:
            return error
        except Exception as exc:  # a crashed probe fails its checks, not the run
            return ProbeError(f"{type(exc).__name__}: {str(exc)[:160]}")


def run_check(item: Check, observations: Observations) -> Finding:
    """The check's finding; a probe that did not complete or a crash is a failure."""
    try:
        arguments = [observations.get(kind) for kind in item.needs]
    except ProbeError as error:
        return Finding.failed(_("The probe did not complete: %(error)s") % {"error": error})
    try:
        return item.function(*arguments)
    except Exception as exc:  # a check that cannot run proves nothing
        return Finding.failed(
            _("The check could not be carried out: %(error)s")
            % {"error": f"{type(exc).__name__}: {str(exc)[:160]}"}
        )


# --- Discovery ------------------------------------------------------------------------


def requirement_module_names() -> list[str]:
    """The built-in requirement modules, then the plugins found on sys.path."""
    return list(_module_names(tuple(sys.path)))


@functools.lru_cache(maxsize=8)
def _module_names(search_path: tuple[str, ...]) -> tuple[str, ...]:
    # Listing every sys.path entry takes tens of milliseconds: once per search path
    # (a plugin is installed before the server starts; a test that adds one changes it).
    package = importlib.import_module(BUILTIN_PACKAGE)
    builtin = [
        f"{BUILTIN_PACKAGE}.{info.name}"
        for info in pkgutil.iter_modules(package.__path__)
        if BUILTIN_MODULE.match(info.name)
    ]
    plugins = {
        info.name for info in pkgutil.iter_modules(search_path) if PLUGIN_MODULE.match(info.name)
    }
    return (*sorted(builtin), *sorted(plugins))


def requirement_of(module: ModuleType) -> Requirement:
    """The module's requirement with its checks, in the order they are written."""
    requirement = getattr(module, "REQUIREMENT", None)
    if not isinstance(requirement, Requirement):
        raise ImproperlyConfigured(f"{module.__name__} defines no REQUIREMENT")
    found = [value.kbv_check for value in vars(module).values() if hasattr(value, "kbv_check")]
    return replace(requirement, checks=tuple(found))


def requirements() -> tuple[Requirement, ...]:
    """Every requirement, ordered by number; numbers and check ids must be unique."""
    found = [requirement_of(importlib.import_module(n)) for n in requirement_module_names()]
    found.sort(key=lambda requirement: requirement.number)
    _unique("requirement number", [r.number for r in found])
    _unique("check id", [c.id for r in found for c in r.checks])
    return tuple(found)


def _unique(what: str, values: Iterable[Any]) -> None:
    seen: set[Any] = set()
    for value in values:
        if value in seen:
            raise ImproperlyConfigured(f"duplicate {what}: {value}")
        seen.add(value)


def all_checks() -> list[Check]:
    return [item for requirement in requirements() for item in requirement.checks]


def find_check(check_id: str) -> Check:
    for item in all_checks():
        if item.id == check_id:
            return item
    raise KeyError(check_id)
