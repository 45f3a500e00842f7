"""`evaluate(...)`: a whole run from Python (a notebook, a training script), returning the leaderboard as a DataFrame.

It is `ovi-bench run` without the command line: the same spec validation, the same overrides (`limit`, `priors`,
`categories`, `device`, `dtype`, `batch_size` as keywords), the same run folder and caches, the same result files.

A prior can be given as a Prior instance built in the session (`priors=[("my-prior", prior)]`) without registering
it anywhere: its name is registered only while `evaluate` runs. Its identity, which keys its cached embeddings in the
run folder and is stamped into the results, is its name, its class (module and qualified name), its `version`, its
`params`, its `content_identity` and the run's dtype: what the fingerprint of a registered prior holds, plus the
class. State that none of these capture (weights trained or edited in the session) is not seen: change `version`
(`prior.version = "2"`) or write into a fresh `output_dir` when it changes, or the embeddings cached for the old
state are reused.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

import torch

from ovi_bench.components import DTYPES, Params
from ovi_bench.errors import OviBenchError
from ovi_bench.io import canonical_json, sha256_text
from ovi_bench.overrides import SpecOverrides, select_priors, with_field_values
from ovi_bench.progress import library_progress_bars_off
from ovi_bench.registry import PRIORS
from ovi_bench.spec import PriorSpec, RunSpec, load_spec, parse_spec
from ovi_bench.text import short_repr

if TYPE_CHECKING:
    import pandas as pd

    from ovi_bench.priors.base import Prior

PriorEntry = Union[str, PriorSpec, Mapping[str, Any], "Prior", tuple[str, "Prior"]]
"""One item of `evaluate(priors=[...])`: a prior of the spec by label or registered name (or, for a dict spec
without [[priors]], a registered name with its default parameters); a PriorSpec or a [[priors]] table as a dict;
a Prior instance with a `name` attribute; or a `(name, Prior instance)` pair."""


@dataclass(frozen=True)
class Evaluation:
    """What `evaluate` returns: the tables of the run's result files, and where they are."""

    leaderboard: pd.DataFrame
    """One row per prior × category × metric (`leaderboard.csv`): mean, 95% interval, std, counts, `official`,
    `higher_is_better`."""
    scores: pd.DataFrame
    """One row per image and metric (`scores.csv`): prior, category, prompt, seed, score, reason, image path."""
    output_dir: Path
    """The run folder: images, caches, `leaderboard.md`, `results.json`; `ovi-bench report` reads it."""
    spec: RunSpec
    """The spec that ran, overrides and priors applied."""

    @property
    def fingerprint(self) -> str:
        """The spec's fingerprint, as stamped into every result file."""
        return self.spec.fingerprint()

    @property
    def summary(self) -> pd.DataFrame:
        """The paper's view: the official metric's mean per prior (rows) and category (columns), in the benchmark's
        category order; empty when no category's official metric ran. Intervals are in `leaderboard`."""
        from ovi_bench.results.summary import official_summary

        table = official_summary(self.leaderboard)
        if table.empty:
            return table
        means = [column for column in table.columns if column.endswith(".mean")]
        # A run with several decoders has a row per prior × decoder.
        summary = table.set_index([key for key in ("prior", "decoder") if key in table.columns])[means]
        summary.columns = [column.removesuffix(".mean") for column in means]
        return summary


def evaluate(
    spec: RunSpec | str | os.PathLike[str] | Mapping[str, Any],
    priors: Sequence[PriorEntry] | None = None,
    *,
    limit: int | None = None,
    categories: Sequence[str] | None = None,
    device: str | None = None,
    dtype: str | None = None,
    batch_size: int | None = None,
    output_dir: str | os.PathLike[str] | None = None,
    data_dir: str | os.PathLike[str] | None = None,
    progress: bool = True,
) -> Evaluation | None:
    """Run `spec` (a RunSpec, the path of a TOML spec, or the spec as a dict) and return its leaderboard.

    `priors` lists exactly the priors to run, in this order (default: the spec's): names select the spec's
    [[priors]] tables; Prior instances and tables are added (see `PriorEntry`). The keywords `limit`, `categories`,
    `device`, `dtype` and `batch_size` override spec fields as `ovi-bench run --limit ...` does, entering the
    fingerprint like the fields they replace; `output_dir` replaces the spec's run folder (not in the fingerprint),
    `data_dir` names the official prompt files' folder. Everything already in the run folder is reused.

    Returns None only in the non-main processes of a multi-process launch (the main process writes the results).
    Mistakes raise OviBenchError subclasses (a SpecError naming the field for a bad value).
    """
    from ovi_bench.provenance import write_results
    from ovi_bench.runner import Runner

    overrides = SpecOverrides(
        limit=limit,
        categories=None if categories is None else list(categories),
        device=device,
        dtype=dtype,
        batch_size=batch_size,
    )
    entries = None if priors is None else list(priors)
    if isinstance(entries, list) and not entries:
        raise OviBenchError("evaluate: `priors` is empty; name at least one prior, or leave it out.")
    with contextlib.ExitStack() as registrations:
        if not progress:
            registrations.enter_context(library_progress_bars_off())
        instances = _named_instances(entries or [])
        for name, instance in instances.items():
            registrations.enter_context(PRIORS.registered_while(name, _InstancePrior(instance)))
        run_spec = overrides.apply(_resolve_spec(spec, entries, instances))
        for name, instance in instances.items():
            _check_instance_dtype(name, instance, run_spec.dtype)
        runner = Runner(
            run_spec,
            None if output_dir is None else Path(output_dir),
            data_dir=data_dir,
            show_progress=progress,
        )
        # Held until the result files are written too: a second run into the folder is refused meanwhile.
        registrations.enter_context(runner.folder_lock())
        result = runner.run()
        if result is None:
            return None
        board = write_results(result)
    import pandas as pd

    return Evaluation(
        leaderboard=board,
        scores=pd.DataFrame(result.score_rows),
        output_dir=Path(result.output_dir),
        spec=run_spec,
    )


class _InstancePrior:
    """Stands in the prior registry for one Prior instance: validates its params, builds to the instance itself,
    and fingerprints it by its class as well as its name, version and params (module docstring)."""

    def __init__(self, prior: Prior) -> None:
        self.prior = prior
        self.prior_class = type(prior)
        self.Params: type[Params] = getattr(self.prior_class, "Params", Params)
        self.__doc__ = self.prior_class.__doc__

    def __call__(self, params: Params, *, device: torch.device, dtype: torch.dtype) -> Prior:
        return self.prior

    def fingerprint(self, name: str, params: Params | dict[str, Any], dtype: str) -> str:
        values = params.model_dump(mode="json") if isinstance(params, Params) else params
        content_identity = getattr(self.prior_class, "content_identity", None)
        identity = content_identity(values) if callable(content_identity) else {}
        return sha256_text(
            canonical_json(
                {
                    "name": name,
                    "class": f"{self.prior_class.__module__}.{self.prior_class.__qualname__}",
                    "version": str(getattr(self.prior, "version", "1")),
                    "params": values,
                    "dtype": dtype,
                }
                | ({"content": identity} if identity else {})
            )
        )


def _is_instance(entry: object) -> bool:
    return not isinstance(entry, (str, PriorSpec, Mapping, tuple)) and callable(getattr(entry, "embed", None))


def _named_instances(entries: Sequence[Any]) -> dict[str, Prior]:
    """The Prior instances among the entries, by the name each is run under."""
    instances: dict[str, Prior] = {}
    for entry in entries:
        if isinstance(entry, type):
            raise OviBenchError(
                f"evaluate: {entry.__name__} is a class; pass an instance, e.g. "
                f'("my-prior", {entry.__name__}({entry.__name__}.Params(), device=torch.device("cpu"), '
                "dtype=torch.float32)), or register the class and pass its name."
            )
        if isinstance(entry, tuple):
            if len(entry) != 2 or not isinstance(entry[0], str) or not _is_instance(entry[1]):
                raise OviBenchError(
                    f"evaluate: the prior entry {short_repr(entry)} is not a (name, Prior instance) pair."
                )
            name, instance = entry
        elif _is_instance(entry):
            name = getattr(entry, "name", None)
            if not isinstance(name, str) or not name:
                raise OviBenchError(
                    f"evaluate: the {type(entry).__name__} instance has no name; pass it as "
                    f'("my-prior", prior), or give it a `name` attribute. The name labels its rows and keys its cache.'
                )
            instance = entry
        else:
            continue
        if name in instances and instances[name] is not instance:
            raise OviBenchError(
                f"evaluate: two different prior instances are named '{name}'; name each apart."
            )
        instances[name] = instance
    return instances


def _instance_params(name: str, instance: Prior) -> dict[str, Any]:
    params = getattr(instance, "params", None)
    if params is None:
        return {}
    if not isinstance(params, Params):
        raise OviBenchError(
            f"evaluate: the prior '{name}' holds `params` of type {type(params).__name__}; a prior's params are a "
            "pydantic model (a subclass of ovi_bench.components.Params), which its fingerprint is made from."
        )
    return params.model_dump(mode="json")


def _check_instance_dtype(name: str, instance: Prior, spec_dtype: str) -> None:
    """The fingerprint stamps the spec's dtype: an instance built in another dtype would make it lie."""
    dtype = getattr(instance, "dtype", None)
    if isinstance(dtype, torch.dtype) and dtype != DTYPES[spec_dtype]:
        raise OviBenchError(
            f"evaluate: the prior '{name}' was built with dtype {str(dtype).removeprefix('torch.')}, but the run's "
            f"dtype is {spec_dtype}; pass dtype='{str(dtype).removeprefix('torch.')}' or build the prior with "
            f"dtype=torch.{spec_dtype}."
        )


def _tables(entry: Any, spec: RunSpec | None, instances: Mapping[str, Prior]) -> list[dict[str, Any]]:
    """The [[priors]] tables one entry stands for; `spec` None: a dict spec without priors of its own."""
    if isinstance(entry, str):
        if spec is None:
            return [{"name": entry}]
        return [prior.model_dump(mode="json") for prior in select_priors(spec, [entry])]
    if isinstance(entry, PriorSpec):
        return [entry.model_dump(mode="json")]
    if isinstance(entry, Mapping):
        return [dict(entry)]
    for name, instance in instances.items():
        if instance is entry or (isinstance(entry, tuple) and entry[1] is instance and entry[0] == name):
            return [{"name": name, "params": _instance_params(name, instance)}]
    raise OviBenchError(
        f"evaluate: cannot use {short_repr(entry)} as a prior; give a name, a [[priors]] table, a Prior instance "
        "or a (name, Prior instance) pair."
    )


def _resolve_spec(
    source: RunSpec | str | os.PathLike[str] | Mapping[str, Any],
    entries: Sequence[Any] | None,
    instances: Mapping[str, Prior],
) -> RunSpec:
    """The spec to run, before the field overrides: loaded, with `priors` in place of the spec's own."""
    if isinstance(source, RunSpec):
        spec = source
    elif isinstance(source, (str, os.PathLike)):
        spec = load_spec(source)
    elif isinstance(source, Mapping):
        data = dict(source)
        if entries is not None and not data.get("priors"):
            data["priors"] = _unique(
                [table for entry in entries for table in _tables(entry, None, instances)]
            )
            return parse_spec(data)
        spec = parse_spec(data)
    else:
        raise OviBenchError(
            f"evaluate: the spec is a {type(source).__name__}; give a RunSpec, the path of a TOML spec, or a dict."
        )
    if entries is None:
        return spec
    tables = _unique([table for entry in entries for table in _tables(entry, spec, instances)])
    return with_field_values(spec, {"priors": tables})


def _unique(tables: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Tables named twice (by label and by name, say) run once."""
    seen: set[str] = set()
    unique = []
    for table in tables:
        key = canonical_json(table)
        if key not in seen:
            seen.add(key)
            unique.append(table)
    return unique
