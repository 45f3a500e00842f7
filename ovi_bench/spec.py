"""Run specs: a TOML file, validated into frozen models whose fingerprint is the cache key and provenance stamp.

Every field has a docstring; `ovi-bench run` refuses a spec with a message that names the field and the fix.
Component parameters (`[[priors]] params`, `[decoder]`, `[[metrics]] params`) are validated by the component's
own `Params` model, and stored with their defaults filled in, so that a changed default changes the fingerprint.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ovi_bench.errors import OviBenchError, SpecError
from ovi_bench.io import canonical_json, sha256_text
from ovi_bench.registry import DECODERS, METRICS, PRIORS, Registry, did_you_mean

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", use_attribute_docstrings=True)


def _validate_component(registry: Registry, name: str, params: dict[str, Any], where: str) -> dict[str, Any]:
    """Check `params` against the registered component's Params model; return them with defaults filled in."""
    component = registry.get(name)
    try:
        return component.Params.model_validate(params).model_dump(mode="json")
    except ValidationError as error:
        raise SpecError(_format_validation_error(error, prefix=where, model=component.Params)) from None


class PriorSpec(_Frozen):
    name: str
    """Registered prior name (see `ovi-bench priors`)."""
    label: str | None = None
    """Name shown in leaderboards; defaults to `name`. Lets one run compare two settings of the same prior."""
    params: dict[str, Any] = Field(default_factory=dict)
    """The prior's parameters; validated by the prior's own Params model."""

    @model_validator(mode="after")
    def _check_params(self) -> PriorSpec:
        object.__setattr__(
            self, "params", _validate_component(PRIORS, self.name, self.params, f"priors[{self.name}].params")
        )
        return self

    @property
    def display_name(self) -> str:
        return self.label or self.name


class DecoderSpec(_Frozen):
    name: str = "kandinsky-2.2-decoder"
    """Registered decoder name (see `ovi-bench decoders`)."""
    params: dict[str, Any] = Field(default_factory=dict)
    """The decoder's parameters (for Kandinsky 2.2: `model`, an id, a local folder or "tiny")."""
    steps: int = Field(50, ge=1)
    """Denoising steps of the decoder."""
    guidance: float = Field(4.0, ge=0.0)
    """Classifier-free guidance scale of the decoder (guidance <= 1 disables guidance)."""
    height: int = Field(512, ge=8)
    """Image height in pixels."""
    width: int = Field(512, ge=8)
    """Image width in pixels."""

    @model_validator(mode="after")
    def _check_params(self) -> DecoderSpec:
        object.__setattr__(
            self, "params", _validate_component(DECODERS, self.name, self.params, "decoder.params")
        )
        return self


class PromptSpec(_Frozen):
    source: str = "t2i-compbench"
    """"t2i-compbench" (official files, downloaded pinned or read from `data_dir`), "builtin" (a few offline
    prompts per category), or a path to a .txt/.csv prompt file."""
    categories: list[str] | None = None
    """Categories to run; all eight T2I-CompBench++ categories when omitted."""
    split: Literal["val", "train"] = "val"
    """The official evaluation split is "val" (300 prompts per category)."""
    limit: int | None = Field(None, ge=1)
    """Keep only the first N prompts of each category (a clearly labelled cheaper protocol)."""
    data_dir: str | None = None
    """Folder holding the official prompt files; overrides the download cache and $OVI_BENCH_COMPBENCH_DIR."""


class MetricSpec(_Frozen):
    name: str
    """Registered metric name (see `ovi-bench metrics`)."""
    params: dict[str, Any] = Field(default_factory=dict)
    """The metric's parameters; validated by the metric's own Params model."""
    categories: list[str] | None = None
    """Restrict the metric to these categories (default: every category the metric applies to)."""

    @model_validator(mode="after")
    def _check_params(self) -> MetricSpec:
        object.__setattr__(
            self,
            "params",
            _validate_component(METRICS, self.name, self.params, f"metrics[{self.name}].params"),
        )
        return self


OFFICIAL_METRICS: dict[str, str] = {
    "color": "b-vqa",
    "shape": "b-vqa",
    "texture": "b-vqa",
    "spatial": "spatial-2d",
    "3d_spatial": "spatial-3d",
    "numeracy": "numeracy",
    "non_spatial": "clip",
    "complex": "3-in-1",
}
"""Each T2I-CompBench++ category's official metric (3-in-1 combines b-vqa, spatial-2d and clip)."""


def official_metric_specs() -> list[MetricSpec]:
    """The default [[metrics]]: every category's official metric with its default (real-weight) parameters."""
    return [
        MetricSpec(name=name) for name in ("b-vqa", "spatial-2d", "spatial-3d", "numeracy", "clip", "3-in-1")
    ]


class DiagnosticsSpec(_Frozen):
    model: str = "kandinsky-community/kandinsky-2-2-prior"
    """Kandinsky 2.2 prior (id, folder or "tiny") whose text encoder gives the text embeddings; a bank must have been
    built with its image encoder."""
    bank: str | None = None
    """Embedding bank folder (`ovi-bench bank build`), or "tiny"; adds the Mahalanobis and nearest-neighbour columns."""


class AuditSpec(_Frozen):
    shuffle: bool = True
    """Prompt-shuffle control: also score every image against another prompt of its category."""
    canaries: bool = True
    """Score blank, noise and single-colour images against every prompt of the category."""
    seed: int = 0
    """Seed of the shuffle, the noise canary and the bootstrap."""
    bootstrap: int = Field(1000, ge=100)
    """Bootstrap resamples (over prompts) for the shuffle gap's 95% interval."""


class RunSpec(_Frozen):
    """A benchmark run: which priors, rendered how, on which prompts, scored by which metrics."""

    name: str = "run"
    """A label for the run, shown in reports."""
    output_dir: str = "runs/run"
    """Where images, scores and leaderboards go (relative to the working directory). Not part of the fingerprint;
    `ovi-bench run --out DIR` overrides it."""
    device: str = "auto"
    """"auto" (CUDA when available, else CPU), "cpu", "cuda", "cuda:1", ..."""
    dtype: Literal["float32", "float16", "bfloat16"] = "float32"
    """Model dtype. float16/bfloat16 are for GPUs; float32 on CPU."""
    images_per_prompt: int = Field(10, ge=1)
    """Images generated for each prompt; image k uses seed `first_seed + k` (official: 10 images, seeds 42..51)."""
    first_seed: int = Field(42, ge=0)
    """Seed of the first image of every prompt."""
    prior_batch_size: int = Field(16, ge=1)
    """Prompts embedded per prior call."""
    decoder_batch_size: int = Field(8, ge=1)
    """Images rendered per decoder call."""
    metric_batch_size: int = Field(16, ge=1)
    """Images scored per metric call."""
    priors: list[PriorSpec] = Field(min_length=1)
    """The priors to compare, each an [[priors]] table."""
    decoder: DecoderSpec = Field(default_factory=DecoderSpec)
    """How embeddings become images."""
    prompts: PromptSpec = Field(default_factory=PromptSpec)
    """Which prompts."""
    metrics: list[MetricSpec] = Field(default_factory=official_metric_specs)
    """Metrics, each a [[metrics]] table; each applies to its own categories. Default: every category's official
    metric (`OFFICIAL_METRICS`)."""
    audits: AuditSpec | None = None
    """Metric audits ([audits] table): prompt-shuffle control and canaries; off when omitted."""
    diagnostics: DiagnosticsSpec | None = None
    """Embedding diagnostics for every prior ([diagnostics] table); off when omitted."""

    @field_validator("device")
    @classmethod
    def _check_device(cls, value: str) -> str:
        import torch

        if value == "auto":
            return value
        try:
            torch.device(value)
        except RuntimeError:
            raise ValueError(f"'{value}' is not a device; use 'auto', 'cpu', 'cuda' or 'cuda:N'") from None
        return value

    @model_validator(mode="after")
    def _check_unique_names(self) -> RunSpec:
        labels = [prior.display_name for prior in self.priors]
        repeated = sorted({label for label in labels if labels.count(label) > 1})
        if repeated:
            raise ValueError(
                f"priors: the name {repeated[0]!r} is used by more than one [[priors]] table; "
                "give each a distinct `label`"
            )
        metric_names = [metric.name for metric in self.metrics]
        if len(set(metric_names)) != len(metric_names):
            raise ValueError("metrics: a metric is listed twice; list each metric once")
        for metric in self.metrics:
            needed = [
                name for name in getattr(METRICS.get(metric.name), "inputs", ()) if name not in metric_names
            ]
            if needed:
                raise ValueError(
                    f"metrics: '{metric.name}' is computed from {', '.join(needed)}; add "
                    + " and ".join(f'[[metrics]] name = "{name}"' for name in needed)
                )
        return self

    @property
    def seeds(self) -> list[int]:
        return [self.first_seed + k for k in range(self.images_per_prompt)]

    def fingerprint(self) -> str:
        """sha256 of the canonical form of everything that defines the results (not where they are written)."""
        return sha256_text(canonical_json(self.model_dump(mode="json", exclude={"output_dir", "name"})))


def _format_validation_error(
    error: ValidationError, prefix: str = "", model: type[BaseModel] | None = None
) -> str:
    lines = []
    for problem in error.errors():
        location = ".".join(str(part) for part in (prefix, *problem["loc"]) if part != "")
        message = problem["msg"].removeprefix("Value error, ")
        if problem["type"] == "extra_forbidden" and model is not None:
            unknown = str(problem["loc"][-1])
            fields = list(_fields_at(model, problem["loc"][:-1]))
            hint = did_you_mean(unknown, fields)
            message = f"unknown field.{hint} Valid fields here: {', '.join(fields)}."
        elif problem["type"] == "missing":
            message = "this field is required."
        elif "input" in problem and problem["loc"] and problem["type"] not in ("model_type",):
            message = f"{message} (got {problem['input']!r})"
        lines.append(f"  {location or '(top level)'}: {message}")
    return "invalid run spec:\n" + "\n".join(lines)


def _fields_at(model: type[BaseModel], location: tuple[Any, ...]) -> list[str]:
    """Field names of the (nested) model found at `location`, for "did you mean" hints."""
    current: Any = model
    for part in location:
        if isinstance(part, int):
            continue
        field = current.model_fields.get(str(part)) if isinstance(current, type) else None
        if field is None:
            return []
        annotation = field.annotation
        args = getattr(annotation, "__args__", ())
        candidates = [annotation, *args]
        current = next((c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)), None)
        if current is None:
            return []
    return list(current.model_fields)


def parse_spec(data: dict[str, Any]) -> RunSpec:
    try:
        return RunSpec.model_validate(data)
    except ValidationError as error:
        raise SpecError(_format_validation_error(error, model=RunSpec)) from None
    except OviBenchError:
        raise


def load_spec(path: str | Path) -> RunSpec:
    """Read and validate a TOML run spec; every problem comes back as a SpecError naming the file and field."""
    path = Path(path)
    if not path.is_file():
        raise SpecError(
            f"run spec {path} does not exist. Pass the path of a TOML file, e.g. configs/smoke.toml."
        )
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise SpecError(f"{path} is not UTF-8 text; save it as UTF-8.") from None
    except tomllib.TOMLDecodeError as error:
        raise SpecError(f"{path} is not valid TOML: {error}. Fix the syntax at that line.") from None
    try:
        return parse_spec(data)
    except OviBenchError as error:
        raise type(error)(f"{path}: {error}") from None
