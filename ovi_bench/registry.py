"""One generic registry for priors, decoders, metrics and prompt sources, whose entries resolve lazily, per name.

Listing the names imports nothing; looking one up imports only the module that defines it. Names come from:

* built-ins: "module:Class" strings in the tables below, imported on the first lookup of their name;
* installed packages: `importlib.metadata` entry points in the groups `ovi_bench.priors`, `ovi_bench.decoders`,
  `ovi_bench.metrics` and `ovi_bench.prompts` (name = registered name, value = `module:Class`), loaded on the first
  lookup of their name as well;
* plugin modules named with `--plugins` (`load_plugins`), whose decorator (`@PRIORS.register("my-prior")`) registers
  their classes when they are imported.

Each registry knows the base class its entries must derive from (a prior is a `Prior`, a prompt source a
`PromptSource`, ...), as a "module:Class" string too, and checks every class when it is registered or first resolved.

Third-party code runs only from those installed entry points or from the modules named explicitly with
`--plugins`; nothing else imports a module whose name comes from a user, and no spec field is ever imported.
"""

from __future__ import annotations

import contextlib
import importlib
import re
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping
from importlib.metadata import EntryPoint, entry_points
from typing import Any, Generic, TypeVar

from ovi_bench.errors import OviBenchError, UnknownNameError
from ovi_bench.text import did_you_mean, short_repr

T = TypeVar("T")


def _import_object(reference: str) -> Any:
    """The object a built-in "module:Class" reference names. Only the constant tables of this module are passed here:
    never a name that comes from a user or a spec."""
    module_name, _, attribute = reference.partition(":")
    obj = importlib.import_module(module_name)
    for part in attribute.split("."):
        obj = getattr(obj, part)
    return obj


def _reference_of(obj: object) -> str:
    """ "module:Class" of a class (or a short repr of anything else), as the tables write them."""
    if isinstance(obj, type):
        return f"{obj.__module__}:{obj.__qualname__}"
    return short_repr(obj)


class Registry(Generic[T]):
    """Maps names to classes of one kind: built-in "module:Class" references, entry points and registered classes."""

    def __init__(
        self,
        kind: str,
        entry_point_group: str,
        base: str | None = None,
        builtins: Mapping[str, str] | None = None,
    ) -> None:
        self.kind = kind
        self.entry_point_group = entry_point_group
        self._base = base
        """"module:Class" of the class every entry must derive from (None: anything may be registered)."""
        self._builtins = dict(builtins or {})
        """Built-in name -> "module:Class", imported on the first lookup of that name."""
        self._entries: dict[str, T] = {}
        """Registered classes, and the built-ins and entry points resolved so far."""
        self._entry_points: dict[str, EntryPoint] | None = None

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator: `@PRIORS.register("my-prior")` above a class (of a plugin module; built-ins are in the tables)."""

        def decorate(obj: T) -> T:
            existing = self._entries.get(name)
            builtin = self._builtins.get(name)
            # A built-in name is taken, except by the very class its "module:Class" reference names.
            same_builtin = builtin is not None and builtin == _reference_of(obj)
            if (existing is not None and existing is not obj) or (builtin is not None and not same_builtin):
                raise OviBenchError(
                    f"{self.kind} '{name}' is registered twice ({existing if existing is not None else builtin!r} "
                    f"and {obj!r}); register it under another name."
                )
            self._check_base(name, obj)
            self._entries[name] = obj
            return obj

        return decorate

    def _check_base(self, name: str, obj: object, origin: str = "") -> None:
        """Refuse a class that does not derive from the registry's base class, naming both (and where it came from)."""
        if self._base is None:
            return
        base = _import_object(self._base)
        if isinstance(obj, type) and issubclass(obj, base):
            return
        what = (
            f"the class {obj.__module__}.{obj.__qualname__}"
            if isinstance(obj, type)
            else f"{obj!r} (not a class)"
        )
        raise OviBenchError(
            f"{origin}{what} cannot be registered as the {self.kind} '{name}': a {self.kind} must be a subclass of "
            f"{base.__module__}.{base.__qualname__}."
        )

    def _discover_entry_points(self) -> dict[str, EntryPoint]:
        # Reads the installed packages' metadata only: no plugin module is imported to list the names.
        if self._entry_points is None:
            self._entry_points = {point.name: point for point in entry_points(group=self.entry_point_group)}
        return self._entry_points

    def names(self) -> list[str]:
        """Every registered name, sorted; imports no component module."""
        return sorted(set(self._builtins) | set(self._entries) | set(self._discover_entry_points()))

    def get(self, name: str) -> T:
        """The class registered as `name`, importing its module on first use; UnknownNameError with the nearest name
        when there is none."""
        if name in self._entries:
            return self._entries[name]
        if name in self._builtins:
            obj = _import_object(self._builtins[name])
            self._check_base(name, obj, f"the built-in entry '{self._builtins[name]}': ")
        else:
            obj = self._load_entry_point(name)
        self._entries.setdefault(name, obj)
        return self._entries[name]

    def _load_entry_point(self, name: str) -> T:
        point = self._discover_entry_points().get(name)
        if point is None:
            known = self.names()
            raise UnknownNameError(
                f"unknown {self.kind} {short_repr(name)}.{did_you_mean(name, known)} Known {self.kind}s: {', '.join(known)}."
            )
        origin = f"the entry point '{point.value}' of an installed package"
        try:
            obj = point.load()
        except Exception as error:
            raise OviBenchError(
                f"{self.kind} '{name}' comes from {origin}, and importing it failed: {error!r}. Reinstall or fix that "
                "package."
            ) from error
        self._check_base(name, obj, f"{origin}: ")
        return obj

    @contextlib.contextmanager
    def registered_while(self, name: str, obj: T) -> Iterator[None]:
        """Register `obj` under `name` for the `with` block only (`evaluate` runs a Prior instance this way); a name
        that is already registered, built-in or from an entry point, is refused. `obj` is not checked against the base
        class: `evaluate` registers a stand-in that builds to the instance, not a subclass of Prior."""
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


PRIORS: Registry = Registry(
    "prior",
    "ovi_bench.priors",
    base="ovi_bench.priors.base:Prior",
    builtins={
        "text-embedding": "ovi_bench.priors.text_embedding:TextEmbeddingPrior",
        "kandinsky-2.2": "ovi_bench.priors.kandinsky:KandinskyPrior",
        "ovi": "ovi_bench.priors.ovi:OVIPrior",
        "ovi-mahalanobis": "ovi_bench.priors.ovi:OVIMahalanobisPrior",
        "ovi-nn": "ovi_bench.priors.ovi:OVINearestNeighbourPrior",
        "eclipse": "ovi_bench.priors.eclipse:EclipsePrior",
        "karlo": "ovi_bench.priors.karlo:KarloPrior",
    },
)
DECODERS: Registry = Registry(
    "decoder",
    "ovi_bench.decoders",
    base="ovi_bench.decoders.base:Decoder",
    builtins={
        "kandinsky-2.2-decoder": "ovi_bench.decoders.kandinsky:KandinskyDecoder",
        "stable-unclip": "ovi_bench.decoders.stable_unclip:StableUnclipDecoder",
        "karlo-decoder": "ovi_bench.decoders.karlo:KarloDecoder",
        "sdxl-ip-adapter": "ovi_bench.decoders.ip_adapter:SdxlIpAdapterDecoder",
        "sd15-ip-adapter": "ovi_bench.decoders.ip_adapter:Sd15IpAdapterDecoder",
    },
)
METRICS: Registry = Registry(
    "metric",
    "ovi_bench.metrics",
    base="ovi_bench.metrics.base:Metric",
    builtins={
        "clip": "ovi_bench.metrics.clip:CLIPMetric",
        "b-vqa": "ovi_bench.metrics.bvqa:BVQAMetric",
        "spatial-2d": "ovi_bench.metrics.spatial:Spatial2DMetric",
        "spatial-3d": "ovi_bench.metrics.spatial:Spatial3DMetric",
        "numeracy": "ovi_bench.metrics.numeracy:NumeracyMetric",
        "3-in-1": "ovi_bench.metrics.three_in_one:ThreeInOneMetric",
        "aesthetic": "ovi_bench.metrics.aesthetic:AestheticMetric",
        "vqascore": "ovi_bench.metrics.vqascore:VQAScoreMetric",
        "pickscore": "ovi_bench.metrics.pickscore:PickScoreMetric",
        "hpsv2": "ovi_bench.metrics.hpsv2:HPSv2Metric",
        "imported-scores": "ovi_bench.metrics.imported:ImportedScoresMetric",
        "imagereward": "ovi_bench.metrics.imagereward:ImageRewardMetric",
        "fid": "ovi_bench.metrics.fid:FIDMetric",
        "kid": "ovi_bench.metrics.fid:KIDMetric",
        "cmmd": "ovi_bench.metrics.fid:CMMDMetric",
    },
)
PROMPTS: Registry = Registry(
    "prompt source",
    "ovi_bench.prompts",
    base="ovi_bench.prompts.base:PromptSource",
    builtins={
        "t2i-compbench": "ovi_bench.prompts.compbench:CompBenchPrompts",
        "builtin": "ovi_bench.prompts.builtin:BuiltinPrompts",
        "partiprompts": "ovi_bench.prompts.parti:PartiPrompts",
        "drawbench": "ovi_bench.prompts.drawbench:DrawBenchPrompts",
    },
)
REGISTRIES: tuple[Registry, ...] = (PRIORS, DECODERS, METRICS, PROMPTS)


_MODULE_NAME = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*", re.ASCII)


def plugin_module_names(values: Iterable[str]) -> list[str]:
    """`--plugins a,b --plugins c` as ["a", "b", "c"] (order kept, repeats and empty items dropped)."""
    names = [name.strip() for value in values for name in value.split(",")]
    return list(dict.fromkeys(name for name in names if name))


def load_plugins(modules: Iterable[str]) -> list[str]:
    """Import the named plugin modules, whose decorators register their priors, decoders, metrics and prompt sources.

    Names must be dotted module names (`my_package.my_prior`), importable from `sys.path`; a file path is refused.
    A plugin reusing a built-in name is reported at its own import (the built-in names are known without importing).
    Returns the names imported. Every failure is an OviBenchError naming the module and the fix.
    """
    names = plugin_module_names(modules)
    for name in names:
        if not _MODULE_NAME.fullmatch(name):
            raise OviBenchError(
                f"--plugins: {short_repr(name)} is not a module name. Give the dotted name of an importable module "
                "(e.g. my_package.my_prior), not a file path: install its package, or put its folder on PYTHONPATH."
            )
        already_imported = name in sys.modules
        registered_before = sum(len(registry._entries) for registry in REGISTRIES)
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
        registered = sum(len(registry._entries) for registry in REGISTRIES) - registered_before
        if not already_imported and not registered:
            raise OviBenchError(
                f"--plugins: the module {short_repr(name)} was imported but registered no prior, decoder, metric or prompt source. "
                'Decorate its classes, e.g. @PRIORS.register("my-prior") (from ovi_bench.registry import PRIORS).'
            )
    return names
