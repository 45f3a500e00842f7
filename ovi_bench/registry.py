"""One generic registry for priors, decoders and metrics.

Built-ins register with a decorator when their module is imported; third-party packages register through
`importlib.metadata` entry points in the groups `ovi_bench.priors`, `ovi_bench.decoders` and `ovi_bench.metrics`
(name = registered name, value = `module:object`). Entry points are loaded lazily, on first lookup of their name.

Third-party code runs only from those installed entry points or from the modules named explicitly with
`--plugins` (`load_plugins`); nothing else imports a module whose name comes from a user, and no spec field is
ever imported.
"""

from __future__ import annotations

import contextlib
import difflib
import importlib
import re
import sys
from collections.abc import Callable, Iterable, Iterator
from importlib.metadata import EntryPoint, entry_points
from typing import Generic, TypeVar

from ovi_bench.errors import OviBenchError, UnknownNameError
from ovi_bench.text import short_repr

T = TypeVar("T")


def did_you_mean(name: str, known: Iterable[str]) -> str:
    """' Did you mean 'x'?' for the nearest known name, or '' when nothing is close."""
    matches = difflib.get_close_matches(name, list(known), n=1, cutoff=0.5)
    return f" Did you mean '{matches[0]}'?" if matches else ""


class Registry(Generic[T]):
    """Maps names to objects (usually classes) of one kind."""

    def __init__(self, kind: str, entry_point_group: str, builtin_modules: tuple[str, ...] = ()) -> None:
        self.kind = kind
        self.entry_point_group = entry_point_group
        self._builtin_modules = builtin_modules
        self._builtins_loaded = False
        self._entries: dict[str, T] = {}
        self._entry_points: dict[str, EntryPoint] | None = None

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator: `@PRIORS.register("ovi")` above a class."""

        def decorate(obj: T) -> T:
            existing = self._entries.get(name)
            if existing is not None and existing is not obj:
                raise OviBenchError(
                    f"{self.kind} '{name}' is registered twice ({existing!r} and {obj!r}); "
                    "register it under another name."
                )
            self._entries[name] = obj
            return obj

        return decorate

    def _load_builtins(self) -> None:
        # Importing the built-in modules runs their decorators; done lazily so that `import ovi_bench` stays cheap.
        if not self._builtins_loaded:
            self._builtins_loaded = True
            for module in self._builtin_modules:
                importlib.import_module(module)

    def _discover_entry_points(self) -> dict[str, EntryPoint]:
        if self._entry_points is None:
            self._entry_points = {point.name: point for point in entry_points(group=self.entry_point_group)}
        return self._entry_points

    def names(self) -> list[str]:
        self._load_builtins()
        return sorted(set(self._entries) | set(self._discover_entry_points()))

    def get(self, name: str) -> T:
        self._load_builtins()
        if name in self._entries:
            return self._entries[name]
        point = self._discover_entry_points().get(name)
        if point is None:
            known = self.names()
            raise UnknownNameError(
                f"unknown {self.kind} {short_repr(name)}.{did_you_mean(name, known)} Known {self.kind}s: {', '.join(known)}."
            )
        try:
            obj = point.load()
        except Exception as error:
            raise OviBenchError(
                f"{self.kind} '{name}' comes from the entry point '{point.value}' of an installed package, "
                f"and importing it failed: {error!r}. Reinstall or fix that package."
            ) from error
        self._entries.setdefault(name, obj)
        return self._entries[name]

    @contextlib.contextmanager
    def registered_while(self, name: str, obj: T) -> Iterator[None]:
        """Register `obj` under `name` for the `with` block only (`evaluate` runs a Prior instance this way); a name
        that is already registered, built-in or from an entry point, is refused."""
        if name in self.names():
            raise OviBenchError(
                f"the {self.kind} name '{name}' is already registered (see `ovi-bench {self.kind}s`); "
                "give yours another name."
            )
        self._entries[name] = obj
        try:
            yield
        finally:
            self._entries.pop(name, None)

    def refresh(self) -> None:
        """Forget discovered entry points (after installing a plugin in the same process)."""
        self._entry_points = None


PRIORS: Registry = Registry(
    "prior",
    "ovi_bench.priors",
    (
        "ovi_bench.priors.text_embedding",
        "ovi_bench.priors.kandinsky",
        "ovi_bench.priors.ovi",
        "ovi_bench.priors.eclipse",
    ),
)
DECODERS: Registry = Registry("decoder", "ovi_bench.decoders", ("ovi_bench.decoders.kandinsky",))
METRICS: Registry = Registry(
    "metric",
    "ovi_bench.metrics",
    (
        "ovi_bench.metrics.clip",
        "ovi_bench.metrics.bvqa",
        "ovi_bench.metrics.spatial",
        "ovi_bench.metrics.numeracy",
        "ovi_bench.metrics.three_in_one",
        "ovi_bench.metrics.aesthetic",
        "ovi_bench.metrics.vqascore",
        "ovi_bench.metrics.imported",
        "ovi_bench.metrics.fid",
    ),
)


_MODULE_NAME = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*", re.ASCII)


def plugin_module_names(values: Iterable[str]) -> list[str]:
    """`--plugins a,b --plugins c` as ["a", "b", "c"] (order kept, repeats and empty items dropped)."""
    names = [name.strip() for value in values for name in value.split(",")]
    return list(dict.fromkeys(name for name in names if name))


def load_plugins(modules: Iterable[str]) -> list[str]:
    """Import the named plugin modules, whose decorators register their priors, decoders and metrics.

    Names must be dotted module names (`my_package.my_prior`), importable from `sys.path`; a file path is refused.
    Built-ins are registered first, so that a plugin reusing a built-in name is reported at its own import.
    Returns the names imported. Every failure is an OviBenchError naming the module and the fix.
    """
    names = plugin_module_names(modules)
    registries = (PRIORS, DECODERS, METRICS)
    for registry in registries:
        registry.names()
    for name in names:
        if not _MODULE_NAME.fullmatch(name):
            raise OviBenchError(
                f"--plugins: {short_repr(name)} is not a module name. Give the dotted name of an importable module "
                "(e.g. my_package.my_prior), not a file path: install its package, or put its folder on PYTHONPATH."
            )
        already_imported = name in sys.modules
        registered_before = sum(len(registry._entries) for registry in registries)
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as error:
            if error.name is not None and (name == error.name or name.startswith(f"{error.name}.")):
                raise OviBenchError(
                    f"--plugins: cannot import the plugin module {short_repr(name)}: no module named '{error.name}'. "
                    "Install the package that provides it, or put its folder on PYTHONPATH."
                ) from None
            raise OviBenchError(
                f"--plugins: the plugin module {short_repr(name)} needs the module '{error.name}', which is not installed. "
                "Install it (see the plugin's documentation)."
            ) from error
        except OviBenchError as error:
            raise OviBenchError(f"--plugins: the plugin module {short_repr(name)}: {error}") from error
        except Exception as error:
            raise OviBenchError(
                f"--plugins: importing the plugin module {short_repr(name)} failed with {type(error).__name__}: {error}. "
                "Fix that module (run `python -c 'import " + name + "'` to see the traceback)."
            ) from error
        registered = sum(len(registry._entries) for registry in registries) - registered_before
        if not already_imported and not registered:
            raise OviBenchError(
                f"--plugins: the module {short_repr(name)} was imported but registered no prior, decoder or metric. Decorate "
                'its classes, e.g. @PRIORS.register("my-prior") (from ovi_bench.registry import PRIORS).'
            )
    return names
