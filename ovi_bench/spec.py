"""Run specs: a TOML file, validated into frozen models whose fingerprint is the cache key and provenance stamp.

Every field has a docstring; `ovi-bench run` refuses a spec with a message that names the field and the fix.
Component parameters (`[[priors]] params`, `[decoder]`, `[[metrics]] params`) are validated by the component's
own `Params` model, and stored with their defaults filled in, so that a changed default changes the fingerprint.
Values that replace spec fields for one run (`--limit`, `evaluate(limit=...)`) are applied by `ovi_bench.overrides`.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    ValidationError,
    field_validator,
    model_serializer,
    model_validator,
)

from ovi_bench.components import check_device_name, stored_params
from ovi_bench.errors import OviBenchError, SpecError
from ovi_bench.io import canonical_json, sha256_text
from ovi_bench.pairing import component_space, renders, unrenderable_prior
from ovi_bench.paths import expand_user
from ovi_bench.prompts.files import CATEGORY_NAME_PATTERN, CATEGORY_NAME_RULE
from ovi_bench.registry import DECODERS, METRICS, PRIORS, Registry
from ovi_bench.spaces import L
from ovi_bench.spec_messages import (
    MAX_NESTING,
    find_unrepresentable_value,
    format_validation_error,
)
from ovi_bench.text import did_you_mean, display_text_problem, short_repr

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


MAX_SEED = 2**63 - 1
"""Largest seed: torch generators take 64-bit seeds, and pandas keeps seeds as int64 in the result files."""

MAX_IMAGES_PER_PROMPT = 100_000
"""A bound far above any protocol (the official one is 10) that keeps a typo from planning 10^30 images."""

MAX_IMAGE_SIDE = 4096
"""Largest decoder height or width, in pixels: 8 times the official 512, and far beyond what Kandinsky 2.2 was
trained for. A typo such as 100000 would otherwise reach the decoder, which asks for tens of gigabytes for the
starting noise alone (20 GB for a batch of 8 at 100000×100000 on Kandinsky 2.2) and fails with an allocator error
after the priors have run. A 4096×4096 image is 64 times the work of the official 512×512 one, and the decoder's
memory grows at least as fast: lower `decoder_batch_size` for large images."""

IMAGE_SIDE_MULTIPLE = 8
"""Decoder height and width must be multiples of this: latent decoders work on images divided by 8. A decoder may
need a larger multiple (the Kandinsky 2.2 decoder: 64) and says so when it renders."""

_FALLBACK_MARKER = "its parameter check raised"
"""Part of the message when a component's own validator raised something other than a validation error (a bug in
that component); the fuzz tests assert that no built-in component ever gets here."""


class _Frozen(BaseModel):
    # allow_inf_nan=False: NaN and inf can be neither compared nor written into the canonical JSON of a fingerprint.
    model_config = ConfigDict(frozen=True, extra="forbid", use_attribute_docstrings=True, allow_inf_nan=False)


def _validate_component(registry: Registry, name: str, params: dict[str, Any], where: str) -> dict[str, Any]:
    """Check `params` against the registered component's Params model; return them with defaults filled in."""
    component = registry.get(name)
    try:
        values = stored_params(component.Params.model_validate(params))
    except ValidationError as error:
        raise SpecError(format_validation_error(error, prefix=where, model=component.Params)) from None
    except OviBenchError:
        raise
    except Exception as error:
        # A plugin's validator that raises TypeError (say) instead of ValueError: still the spec's fault to report,
        # naming the component, rather than a traceback.
        raise SpecError(
            f"invalid run spec:\n  {where}: {_FALLBACK_MARKER} {type(error).__name__}: {short_repr(str(error))}. "
            f"Check these parameters against `ovi-bench {registry.kind}s` and the component's documentation."
        ) from error
    # A Params model may hold free-form values (dict[str, Any]) that its config does not check for NaN or inf.
    problem = find_unrepresentable_value(values, where)
    if problem is not None:
        raise SpecError(f"invalid run spec:\n  {problem}")
    return values


class PriorSpec(_Frozen):
    name: str
    """Registered prior name (see `ovi-bench priors`)."""
    label: str | None = None
    """Name shown in leaderboards; defaults to `name`. Lets one run compare two settings of the same prior."""
    params: dict[str, Any] = Field(default_factory=dict)
    """The prior's parameters; validated by the prior's own Params model."""

    @field_validator("label")
    @classmethod
    def _check_label(cls, value: str | None) -> str | None:
        return None if value is None else _check_display_text(value)

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
    label: str | None = None
    """Name shown in the `decoder` column; defaults to `name`. Lets one run render with two settings of the same
    decoder ([[decoders]]). Left out of the fingerprint when not given."""
    params: dict[str, Any] = Field(default_factory=dict)
    """The decoder's parameters (for Kandinsky 2.2: `model`, an id, a local folder or "tiny")."""
    steps: int = Field(50, ge=1)
    """Denoising steps of the decoder."""
    guidance: float = Field(4.0, ge=0.0)
    """Classifier-free guidance scale of the decoder (guidance <= 1 disables guidance)."""
    height: int = 512
    """Image height in pixels: a multiple of 8 from 8 to 4096 (`MAX_IMAGE_SIDE`)."""
    width: int = 512
    """Image width in pixels: a multiple of 8 from 8 to 4096 (`MAX_IMAGE_SIDE`)."""

    @field_validator("height", "width")
    @classmethod
    def _check_image_side(cls, value: int) -> int:
        if not IMAGE_SIDE_MULTIPLE <= value <= MAX_IMAGE_SIDE:
            raise ValueError(
                f"give a size from {IMAGE_SIDE_MULTIPLE} to {MAX_IMAGE_SIDE} pixels (the official protocol uses "
                "512): the decoder's memory grows with the image's area, and beyond this bound it exceeds any GPU's"
            )
        if value % IMAGE_SIDE_MULTIPLE:
            nearest = max(IMAGE_SIDE_MULTIPLE, round(value / IMAGE_SIDE_MULTIPLE) * IMAGE_SIDE_MULTIPLE)
            raise ValueError(
                f"give a multiple of {IMAGE_SIDE_MULTIPLE}, e.g. {nearest}: latent decoders work on images divided "
                f"by {IMAGE_SIDE_MULTIPLE}"
            )
        return value

    @field_validator("label")
    @classmethod
    def _check_label(cls, value: str | None) -> str | None:
        return None if value is None else _check_display_text(value)

    @model_validator(mode="after")
    def _check_params(self) -> DecoderSpec:
        object.__setattr__(
            self, "params", _validate_component(DECODERS, self.name, self.params, "decoder.params")
        )
        return self

    @model_serializer(mode="wrap")
    def _serialize(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # Added after results were published: a decoder without a label keeps the fingerprint it always had.
        data = handler(self)
        if self.label is None:
            data.pop("label", None)
        return data

    @property
    def display_name(self) -> str:
        return self.label or self.name


def _check_category_name(category: str) -> str:
    if not CATEGORY_NAME_PATTERN.fullmatch(category):
        raise ValueError(f"category {short_repr(category)} {CATEGORY_NAME_RULE}")
    return category


CategoryName = Annotated[str, AfterValidator(_check_category_name)]
"""A category as a spec names it: checked here, before any file is read, by the rule custom prompt files follow."""


class PromptSpec(_Frozen):
    source: str = "t2i-compbench"
    """"t2i-compbench" (official files, downloaded pinned or read from `data_dir`), "builtin" (a few offline
    prompts per category), another registered prompt source (a plugin's), or a path to a .txt/.csv prompt file."""
    categories: list[CategoryName] | None = None
    """Categories to run; all eight T2I-CompBench++ categories when omitted."""
    split: Literal["val", "train"] = "val"
    """The official evaluation split is "val" (300 prompts per category)."""
    limit: int | None = Field(None, ge=1)
    """Keep only the first N prompts of each category (a clearly labelled cheaper protocol)."""
    data_dir: str | None = None
    """Folder holding the official prompt files; overrides the download cache and $OVI_BENCH_COMPBENCH_DIR."""

    @field_validator("source", "data_dir")
    @classmethod
    def _check_not_empty(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError("an empty path is not allowed; give a file or folder, or leave the field out")
        return value


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


class PromptLengthSpec(_Frozen):
    tokenizer: str = L.towers
    """The CLIP tokenizer that counts each prompt's tokens: a Hugging Face id, a local folder, or "tiny". The text
    towers of every built-in space share one BPE vocabulary, so the counts (and the 77-token truncation) are those
    of every prior's text encoder."""


Question = Literal["overall", "text", "realism"]
"""The questions a rating study can ask (their wording is `ovi_bench.rate.judgements.QUESTIONS`)."""


class RatingSimulationSpec(_Frozen):
    """Simulated raters who vote through the rating app's HTTP API after the run (the smoke run's rating session),
    so that `ovi-bench human` has judgements offline. Every vote they cast is marked `source = "simulated"`."""

    raters: int = Field(3, ge=1, le=100)
    """Number of simulated raters (named simulated-1, simulated-2, ...)."""
    judgements_per_rater: int = Field(30, ge=1, le=100_000)
    """Trials each simulated rater answers (attention checks included)."""
    utility: str = "clip"
    """The per-image metric of the run whose score is the simulated raters' utility: a rater prefers the image with
    the higher standardised score, with logistic noise (a Bradley–Terry rater)."""
    noise: float = Field(0.5, gt=0)
    """Scale of the logistic noise, in standard deviations of the utility: small values give near-deterministic
    raters, large ones near-random raters."""
    tie_margin: float = Field(0.05, ge=0)
    """A rater answers "tie" when the noisy utilities differ by less than this (in standard deviations)."""
    seed: int = Field(0, ge=0)
    """Seed of the simulated votes."""


class RatingSpec(_Frozen):
    """A pairwise human-rating study of the run's images ([rating] table): read by `ovi-bench rate` and
    `ovi-bench human`. A study of the images, not of how they were made: never part of the fingerprint."""

    question: Question = "overall"
    """What raters are asked: "overall" (which image do you prefer), "text" (which matches the text better) or
    "realism" (which looks more realistic). `ovi-bench rate --question` overrides it."""
    attention_every: int = Field(10, ge=0, le=1000)
    """One attention check (a repeated pair with its sides swapped, or a canary pair with a broken image) every this
    many trials; 0 for none."""
    active: bool = False
    """Prefer pairs of priors whose current Bradley–Terry strengths are closest (the most uncertain comparisons)
    over plain balanced sampling."""
    seed: int = Field(0, ge=0)
    """Seed of the pair sampling, of the side randomisation and of `ovi-bench human`'s bootstrap."""
    bootstrap: int = Field(1000, ge=100)
    """Bootstrap resamples (over prompts) for every interval `ovi-bench human` gives."""
    simulation: RatingSimulationSpec | None = None
    """Simulated raters voting after the run ([rating.simulation] table); none when omitted."""


class RunSpec(_Frozen):
    """A benchmark run: which priors, rendered how, on which prompts, scored by which metrics."""

    name: str = "run"
    """A label for the run, shown in reports."""
    output_dir: str = "runs/run"
    """Where images, scores and leaderboards go (relative to the working directory; a leading `~` is expanded). Not
    part of the fingerprint; `ovi-bench run --out DIR` overrides it."""
    device: str = "auto"
    """"auto" (CUDA when available, else CPU), "cpu", "cuda", "cuda:1", ..., or "mps" (Apple silicon)."""
    dtype: Literal["float32", "float16", "bfloat16"] = "float32"
    """Model dtype. float16/bfloat16 are for GPUs; float32 on CPU."""
    images_per_prompt: int = Field(10, ge=1, le=MAX_IMAGES_PER_PROMPT)
    """Images generated for each prompt; image k uses seed `first_seed + k` (official: 10 images, seeds 42..51)."""
    first_seed: int = Field(42, ge=0, le=MAX_SEED)
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
    """How embeddings become images: the run's one decoder ([decoder] table). With [[decoders]], the first of them."""
    decoders: list[DecoderSpec] | None = Field(None, min_length=1)
    """Several decoders in one run, each a [[decoders]] table (instead of [decoder]): every prior's embeddings are
    made once and rendered by every decoder of the prior's embedding space. Use `decoder_specs` to read either form.
    One entry is the same run as a [decoder] table (same fingerprint, same images)."""
    prompts: PromptSpec = Field(default_factory=PromptSpec)
    """Which prompts."""
    metrics: list[MetricSpec] = Field(default_factory=official_metric_specs)
    """Metrics, each a [[metrics]] table; each applies to its own categories. Default: every category's official
    metric (`OFFICIAL_METRICS`)."""
    audits: AuditSpec | None = None
    """Metric audits ([audits] table): prompt-shuffle control and canaries; off when omitted."""
    diagnostics: DiagnosticsSpec | None = None
    """Embedding diagnostics for every prior ([diagnostics] table); off when omitted."""
    prompt_length: PromptLengthSpec | None = None
    """The prompt-length view ([prompt_length] table): every per-image metric by the prompt's CLIP token count, and
    the share of prompts cut at 77 tokens; off when omitted. A view of the scores that changes none of them, so never
    part of the fingerprint."""
    rating: RatingSpec | None = None
    """The pairwise human-rating study of the run's images ([rating] table): the question asked, attention checks,
    sampling, simulated raters. Changes no image or score, so never part of the fingerprint; off when omitted."""
    trust_remote_code: bool = Field(False, strict=True)
    """Allow models whose repository ships its own Python code (`from_pretrained(..., trust_remote_code=True)`) to be
    loaded by plugin components that ask for it. Off by default; built-in components never need it and never ask.
    Only a real TOML boolean counts (not "yes" or 1). Part of the fingerprint when true."""

    @field_validator("output_dir")
    @classmethod
    def _check_output_dir(cls, value: str) -> str:
        if not value.strip():
            raise ValueError(
                "an empty output_dir would write the run into the working directory itself; give a folder, "
                'e.g. "runs/my-run"'
            )
        return str(expand_user(value)) if value.startswith("~") else value

    @field_validator("name")
    @classmethod
    def _check_name(cls, value: str) -> str:
        return _check_display_text(value)

    @field_validator("device")
    @classmethod
    def _check_device(cls, value: str) -> str:
        return check_device_name(value)

    @model_validator(mode="after")
    def _check_unique_names(self) -> RunSpec:
        _check_distinct_names("priors", [prior.display_name for prior in self.priors])
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

    @model_validator(mode="after")
    def _check_decoders(self) -> RunSpec:
        if self.decoders is None:
            return self
        if "decoder" in self.model_fields_set:
            raise ValueError(
                "decoders: give either one [decoder] table or a list of [[decoders]] tables, not both; move the "
                "[decoder] table into the list as one more [[decoders]] entry"
            )
        _check_distinct_names("decoders", [decoder.display_name for decoder in self.decoders])
        # `decoder` is always the first decoder, for code that needs one (audit canary size); one entry is
        # exactly a [decoder] table, so that it keeps that run's fingerprint and image keys.
        object.__setattr__(self, "decoder", self.decoders[0])
        if len(self.decoders) == 1:
            object.__setattr__(self, "decoders", None)
        return self

    @model_validator(mode="after")
    def _check_spaces(self) -> RunSpec:
        # Before anything loads: a prior's embeddings are only meaningful to decoders of its own space. A prior is
        # rendered by every decoder of its space; one that no decoder of the run can read is refused.
        decoders = [
            (decoder.display_name, component_space(DECODERS, decoder.name, decoder.params))
            for decoder in self.decoder_specs
        ]
        for index, prior in enumerate(self.priors):
            problem = unrenderable_prior(
                prior.display_name, component_space(PRIORS, prior.name, prior.params), decoders
            )
            if problem:
                raise ValueError(f"priors[{index}]: {problem}")
        return self

    @model_serializer(mode="wrap")
    def _serialize(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # One of the two forms, as given: a [decoder] run dumps (and fingerprints) exactly as before [[decoders]]
        # existed, and a dumped spec parses back.
        data = handler(self)
        data.pop("decoder" if self.decoders is not None else "decoders", None)
        for added_later in ("prompt_length", "rating"):  # specs without these tables dump as they always did
            if getattr(self, added_later) is None:
                data.pop(added_later, None)
        return data

    @model_validator(mode="after")
    def _check_simulated_utility(self) -> RunSpec:
        simulation = self.rating.simulation if self.rating is not None else None
        metrics = [metric.name for metric in self.metrics]
        if simulation is not None and simulation.utility not in metrics:
            raise ValueError(
                f"rating.simulation.utility: {simulation.utility!r} is not one of the run's [[metrics]] "
                f"({', '.join(metrics)}).{did_you_mean(simulation.utility, metrics)} The simulated raters prefer "
                "the image with the higher score of a per-image metric of the run."
            )
        return self

    @model_validator(mode="after")
    def _check_last_seed(self) -> RunSpec:
        last_seed = self.first_seed + self.images_per_prompt - 1
        if last_seed > MAX_SEED:
            raise ValueError(
                f"first_seed: the last image's seed, first_seed + images_per_prompt - 1 = {last_seed}, exceeds "
                f"{MAX_SEED} (2**63 - 1); choose a smaller first_seed"
            )
        return self

    @property
    def decoder_specs(self) -> list[DecoderSpec]:
        """The run's decoders, whichever form the spec used ([decoder] or [[decoders]])."""
        return list(self.decoders) if self.decoders is not None else [self.decoder]

    def decoders_for(self, prior: PriorSpec) -> list[DecoderSpec]:
        """The decoders that render the prior's embeddings: those of its space (all, for an undeclared space)."""
        prior_space = component_space(PRIORS, prior.name, prior.params)
        return [
            decoder
            for decoder in self.decoder_specs
            if renders(component_space(DECODERS, decoder.name, decoder.params), prior_space)
        ]

    @property
    def seeds(self) -> list[int]:
        return [self.first_seed + k for k in range(self.images_per_prompt)]

    def fingerprint(self) -> str:
        """sha256 of the canonical form of everything that defines the results (not where they are written).

        `trust_remote_code` enters only when true, so that the specs written before the field existed keep their
        fingerprints.
        """
        excluded = {"output_dir", "name", "prompt_length", "rating"}
        excluded |= set() if self.trust_remote_code else {"trust_remote_code"}
        return sha256_text(canonical_json(self.model_dump(mode="json", exclude=excluded)))


def _check_distinct_names(field: str, names: list[str]) -> None:
    """Refuse two [[priors]] (or [[decoders]]) tables shown under one name: their rows would be one."""
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise ValueError(
            f"{field}: the name {short_repr(repeated[0])} is used by more than one [[{field}]] table; "
            "give each a distinct `label`"
        )


def _check_display_text(value: str) -> str:
    """Names shown in tables, logs and reports: one line of printable text, of bounded length (the rule prompt
    files follow too)."""
    problem = display_text_problem(value)
    if problem is not None:
        raise ValueError(f"the name {problem}")
    return value


def parse_spec(data: dict[str, Any]) -> RunSpec:
    """Validate a spec given as plain data (what TOML parses to); any problem is a SpecError naming the field."""
    problem = find_unrepresentable_value(data)
    if problem is not None:
        raise SpecError(f"invalid run spec:\n  {problem}")
    try:
        return RunSpec.model_validate(data)
    except ValidationError as error:
        raise SpecError(format_validation_error(error, model=RunSpec)) from None
    except OviBenchError:
        raise
    except RecursionError:  # pragma: no cover - MAX_NESTING keeps validation far from the stack limit
        raise SpecError(f"invalid run spec: nested too deeply; keep it under {MAX_NESTING} levels.") from None


def _read_spec_text(path: Path) -> str:
    """The spec file's text: UTF-8, with a leading byte-order mark (Windows editors write one) dropped."""
    try:
        raw = path.read_bytes()
    except OSError as error:
        raise SpecError(
            f"cannot read the run spec {path}: {error.strerror or error}. Check the path and its permissions."
        ) from None
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise SpecError(f"{path} is UTF-16 (or UTF-32) text; save it as UTF-8.")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise SpecError(
            f"{path} is not UTF-8 text (byte {error.start} is {raw[error.start : error.start + 1]!r}); "
            "save it as UTF-8."
        ) from None


def load_spec(path: str | Path) -> RunSpec:
    """Read and validate a TOML run spec; every problem comes back as a SpecError naming the file and field."""
    path = Path(path)
    if not path.is_file():
        raise SpecError(
            f"run spec {path} does not exist. Pass the path of a TOML file, e.g. configs/smoke.toml."
        )
    text = _read_spec_text(path)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise SpecError(f"{path} is not valid TOML: {error}. Fix the syntax at that line.") from None
    except RecursionError:
        raise SpecError(
            f"{path} is nested too deeply to read; a run spec needs a handful of levels of tables and arrays."
        ) from None
    try:
        return parse_spec(data)
    except OviBenchError as error:
        raise _with_file(error, path) from None


def _with_file(error: OviBenchError, path: Path) -> OviBenchError:
    """The same kind of error with the spec file named first (a caller may catch UnknownNameError, say)."""
    try:
        return type(error)(f"{path}: {error}")
    except TypeError:  # an error class whose constructor takes other arguments
        return SpecError(f"{path}: {error}")
