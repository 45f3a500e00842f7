"""Spec overrides: the command-line flags (`--limit`, `--priors`, ...) and `evaluate(...)` keywords that replace
spec fields for one run.

An override is applied as a change to the spec's data followed by the same validation a spec file gets, so it enters
the fingerprint exactly as the field it replaces and a bad value gets the error that field would get.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ovi_bench.errors import SpecError
from ovi_bench.spec import PriorSpec, RunSpec, parse_spec
from ovi_bench.text import did_you_mean, short_repr


def select_priors(spec: RunSpec, wanted: Sequence[str]) -> list[PriorSpec]:
    """The spec's [[priors]] tables named in `wanted` (by label or by registered name), in the spec's order.

    A label selects its one table; a registered name selects every table of that prior (two settings of `ovi`, say).
    A name the spec does not hold is an error listing the spec's priors, with the nearest match.
    """
    known = list(dict.fromkeys([prior.display_name for prior in spec.priors] + [p.name for p in spec.priors]))
    unknown = [name for name in wanted if name not in known]
    if unknown:
        raise SpecError(
            f"priors: the spec has no prior {short_repr(unknown[0])}.{did_you_mean(unknown[0], known)} "
            f"Its priors: {', '.join(prior.display_name for prior in spec.priors)}."
        )
    chosen = set(wanted)
    return [prior for prior in spec.priors if prior.display_name in chosen or prior.name in chosen]


@dataclass(frozen=True)
class SpecOverrides:
    """Values that replace spec fields for one run, as `ovi-bench run --limit 2 ...` and `evaluate(limit=2)` give them.

    An override enters the fingerprint exactly as the field it replaces: `--limit 2` and a spec with
    `[prompts] limit = 2` have the same fingerprint. None leaves the spec's value.
    """

    limit: int | None = None
    """`prompts.limit`: the first N prompts of each category."""
    priors: Sequence[str] | None = None
    """Keep only these [[priors]] tables of the spec, by label or registered name (`select_priors`)."""
    categories: Sequence[str] | None = None
    """`prompts.categories`."""
    device: str | None = None
    """`device`."""
    dtype: str | None = None
    """`dtype`."""
    batch_size: int | None = None
    """`prior_batch_size`, `decoder_batch_size` and `metric_batch_size` alike (throughput only)."""

    def field_values(self, spec: RunSpec) -> dict[str, Any]:
        """The spec fields these overrides set, by dotted path, as the spec would hold them."""
        values: dict[str, Any] = {}
        if self.limit is not None:
            values["prompts.limit"] = self.limit
        if self.categories is not None:
            values["prompts.categories"] = list(self.categories)
        if self.priors is not None:
            values["priors"] = [
                prior.model_dump(mode="json") for prior in select_priors(spec, list(self.priors))
            ]
        if self.device is not None:
            values["device"] = self.device
        if self.dtype is not None:
            values["dtype"] = self.dtype
        if self.batch_size is not None:
            for field_name in ("prior_batch_size", "decoder_batch_size", "metric_batch_size"):
                values[field_name] = self.batch_size
        return values

    def apply(self, spec: RunSpec) -> RunSpec:
        """The spec with these overrides, validated again as a whole: a bad value gets the error a spec file with
        that value would get (`prompts.limit: Input should be greater than or equal to 1`)."""
        values = self.field_values(spec)
        if not values:
            return spec
        return with_field_values(spec, values)

    def describe(self, spec: RunSpec) -> list[str]:
        """One line per overridden field, `path = new value (spec: old value)`, for the run's log."""
        current = spec.model_dump(mode="json")
        lines = []
        for path, value in self.field_values(spec).items():
            old = _value_at(current, path)
            if path == "priors":
                value, old = _prior_names(value), _prior_names(old)
            lines.append(f"{path} = {_shown(value)} (spec: {_shown(old)})")
        return lines


def apply_overrides(spec: RunSpec, **overrides: Any) -> RunSpec:
    """`SpecOverrides(**overrides).apply(spec)`: e.g. `apply_overrides(spec, limit=2, device="cpu")`."""
    return SpecOverrides(**overrides).apply(spec)


def with_field_values(spec: RunSpec, values: dict[str, Any]) -> RunSpec:
    """The spec with the fields at these dotted paths replaced, through the same validation as a spec file."""
    data = spec.model_dump(mode="json")
    for path, value in values.items():
        *parents, last = path.split(".")
        target = data
        for part in parents:
            if target.get(part) is None:  # an optional table the spec left out
                target[part] = {}
            target = target[part]
        target[last] = value
    try:
        return parse_spec(data)
    except SpecError as error:
        shown = ", ".join(
            f"{path} = {_shown(_prior_names(value) if path == 'priors' else value)}"
            for path, value in values.items()
        )
        raise SpecError(f"{error}\n  (with the overrides {shown})") from None


def _value_at(data: dict[str, Any], path: str) -> Any:
    value: Any = data
    for part in path.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def _prior_names(priors: Any) -> list[str]:
    return [entry.get("label") or entry.get("name") for entry in priors or []]


def _shown(value: Any) -> str:
    if value is None:
        return "unset"
    if isinstance(value, list):
        return ",".join(str(item) for item in value)
    return short_repr(value)
