"""What every pluggable component (prior, decoder, metric) shares: validated parameters, a version, a fingerprint."""

from __future__ import annotations

import gc
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import torch
from pydantic import BaseModel, ConfigDict, Field

from ovi_bench.errors import OviBenchError
from ovi_bench.io import canonical_json, sha256_text
from ovi_bench.text import short_repr


class Params(BaseModel):
    """Base for a component's parameters: frozen, unknown fields rejected, a docstring under each field."""

    # allow_inf_nan=False: parameters go into fingerprints, canonical JSON, which has no NaN or inf.
    model_config = ConfigDict(frozen=True, extra="forbid", use_attribute_docstrings=True, allow_inf_nan=False)


OMIT_WHEN_DEFAULT = "omit_when_default"
"""Marks a parameter added after results were published with its component (see `added_field`)."""


def added_field(default: Any, **kwargs: Any) -> Any:
    """A parameter added to a component after results were published with it: while it holds `default` it is left
    out of the stored parameters (`stored_params`), and so out of every fingerprint, so that the images and scores
    of runs made before it existed keep their keys."""
    return Field(default, json_schema_extra={OMIT_WHEN_DEFAULT: True}, **kwargs)


def stored_params(params: Params) -> dict[str, Any]:
    """The parameters as a spec stores them and fingerprints hash them: every field with its value (defaults filled
    in, so that a changed default changes the fingerprint), except added fields at their default (`added_field`)."""
    values = params.model_dump(mode="json")
    for name, field in type(params).model_fields.items():
        extra = field.json_schema_extra
        if (
            isinstance(extra, dict)
            and extra.get(OMIT_WHEN_DEFAULT)
            and getattr(params, name) == field.default
        ):
            values.pop(name, None)
    return values


WEIGHTS_FILES = "*.safetensors|*.bin"
"""A weights file as `from_pretrained` saves it (safetensors or PyTorch, whole or sharded)."""


def model_files(*subfolders: str) -> tuple[str, ...]:
    """`config.json` and a weights file in each subfolder ("" for the model's root): what a transformers model or a
    diffusers component saved with `save_pretrained` always has."""
    files: list[str] = []
    for subfolder in subfolders:
        prefix = f"{subfolder}/" if subfolder else ""
        files += [f"{prefix}config.json", "|".join(prefix + name for name in WEIGHTS_FILES.split("|"))]
    return tuple(files)


@dataclass(frozen=True)
class ModelNeed:
    """A model a component loads, declared before the run so that a missing one fails in seconds, not hours."""

    ref: str
    """A Hugging Face id, a local folder, or a tiny name ("tiny", "tiny-owlv2": built in code, nothing to fetch)."""
    what: str
    """What the model is for, in words ("text encoder and tokenizer"), for messages."""
    files: tuple[str, ...] = ("config.json",)
    """Files that loading reads, relative to the model's root, as glob patterns; "a|b" accepts either. Each must be in
    the local folder, or in the Hugging Face cache's snapshot, for the model to load without the hub."""
    revision: str | None = None
    """A hub branch, tag or commit; None: "main"."""


@dataclass(frozen=True)
class FileNeed:
    """A data file or folder a component reads: a lexicon, an embedding bank, reference images, weights off the hub."""

    what: str
    """What it is, in words ("numeracy lexicon"), for messages."""
    path: str | None = None
    """A local file or folder (`~` allowed)."""
    folder: bool = False
    """`path` must be a folder (else a file)."""
    contains: str | None = None
    """A file the folder must hold (an embedding bank's `bank.json`)."""
    official: str | None = None
    """Instead of `path`: an official T2I-CompBench file, looked for where the prompt files are."""
    fix: str = ""
    """How to provide it, for the message when it is missing."""


@dataclass(frozen=True)
class RunData:
    """What a run hands the components that declare they need it (`Component.run_context`), besides their
    parameters. Passed explicitly, never through environment variables."""

    official_data: Path | None = None
    """The folder of official T2I-CompBench files the run was given (`--compbench-dir`, or `prompts.data_dir`);
    None: they are looked up as the prompt files are ($OVI_BENCH_COMPBENCH_DIR, else the verified download cache)."""


class Component:
    """A registered, parameterised piece of the pipeline.

    `version` changes whenever the component's outputs could change for the same parameters; it is part of the
    fingerprint, so bumping it invalidates exactly the cached artifacts that the component produced.
    """

    Params: ClassVar[type[Params]] = Params
    version: ClassVar[str] = "1"
    run_context: ClassVar[tuple[str, ...]] = ()
    """Fields of `RunData` the component takes from the run (the numeracy metric: "official_data", for the official
    lexicon): passed as keywords of the same names to its constructor and to its `content_identity`."""

    @property
    def trust_remote_code(self) -> bool:
        """The run spec's `trust_remote_code` (false unless the spec sets it to true): a component that loads a
        model shipping its own code passes this on, `load_pretrained(cls, ref, trust_remote_code=self.trust_remote_code)`;
        `load_pretrained` refuses True whenever the spec did not allow it."""
        from ovi_bench.models.hub import remote_code_trusted

        return remote_code_trusted()

    @classmethod
    def required_models(cls, params: Params) -> list[ModelNeed]:
        """The models an instance with these parameters loads (tiny names included: they need nothing fetched).

        Checked before anything is generated (`ovi_bench.preflight`): each must be in a local folder, in the Hugging
        Face cache, or on a reachable hub. The default declares nothing: a plugin that loads models should say so.
        """
        return []

    @classmethod
    def required_files(cls, params: Params) -> list[FileNeed]:
        """The data files and folders an instance with these parameters reads, checked like `required_models`."""
        return []

    @classmethod
    def content_identity(cls, values: dict[str, Any]) -> dict[str, Any]:
        """Digests of data that parameters only point at (an embedding bank folder, say).

        Part of the fingerprint, so that rebuilding such data in place invalidates what was made from it.
        """
        return {}

    @classmethod
    def fingerprint(
        cls, name: str, params: Params | dict[str, Any], dtype: str, run_data: RunData | None = None
    ) -> str:
        """`run_data`: what the run holds, for a component whose content identity depends on it (`run_context`)."""
        values = stored_params(params) if isinstance(params, Params) else params
        identity = cls.content_identity(values, **run_keywords(cls, run_data))
        return sha256_text(
            canonical_json(
                {"name": name, "version": cls.version, "params": values, "dtype": dtype}
                | ({"content": identity} if identity else {})
            )
        )


ComponentT = TypeVar("ComponentT")


def build_component(
    cls: type[ComponentT],
    params: Params | dict[str, Any],
    *,
    device: torch.device,
    dtype: torch.dtype,
    run_data: RunData | None = None,
) -> ComponentT:
    """An instance of a registered component: its parameters validated against its `Params` model (a spec holds
    plain dicts), then its constructor called as the plugin contract says, `cls(params, device=, dtype=)`, plus the
    keywords of its `run_context` from `run_data`."""
    validated = cls.Params.model_validate(params)  # type: ignore[attr-defined]
    return cls(validated, device=device, dtype=dtype, **run_keywords(cls, run_data))  # type: ignore[call-arg]


def run_keywords(cls: Any, run_data: RunData | None) -> dict[str, Any]:
    """The keywords a component's `run_context` asks for, from what the run holds (None: `RunData`'s defaults).
    Nothing for a registered stand-in that is no `Component` (`evaluate`'s prior instances)."""
    run_data = run_data or RunData()
    return {name: getattr(run_data, name) for name in getattr(cls, "run_context", ())}


DTYPES: dict[str, torch.dtype] = {
    "float32": torch.float32,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
}


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    """The torch dtype of a spec's `dtype` on `device`; half precision is refused on the CPU."""
    dtype = DTYPES[name]
    if device.type == "cpu" and dtype != torch.float32:
        raise OviBenchError(
            f'dtype {name} on the CPU is very slow and poorly supported; set dtype = "float32" '
            'or run on a GPU (device = "cuda").'
        )
    return dtype


def free_memory() -> None:
    """Return a released model's memory now, before the next model is loaded (callers `del` their reference)."""
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def nonfinite_rows(tensor: torch.Tensor) -> list[int]:
    """Indices of the rows of a [B, D] tensor that hold a NaN or an infinity."""
    return (~tensor.isfinite().all(dim=-1)).nonzero().flatten().tolist()


DEVICE_TYPES = ("cpu", "cuda", "mps")
"""The torch device types ovi-bench runs on: CPUs, CUDA GPUs (NVIDIA, or AMD through a ROCm build of PyTorch),
and Apple silicon (mps). A device string is refused at once when it names another type."""


def check_device_name(value: str) -> str:
    """`value` if it names a device ovi-bench can run on ("auto", "cpu", "cuda", "cuda:N", "mps"), else a ValueError
    that says why. Whether this machine has that device is checked when the device is used
    (`components.resolve_device`), so a spec written for a GPU still validates on a laptop."""
    choices = "use 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'"
    if value == "auto":
        return value
    try:
        device = torch.device(value)
    except (RuntimeError, ValueError, TypeError):
        raise ValueError(f"{short_repr(value)} is not a device; {choices}") from None
    if device.type == "meta":
        raise ValueError(
            f"torch's meta device holds tensors with shapes but no values, so nothing can be generated or scored "
            f"on it; {choices}"
        )
    if device.type not in DEVICE_TYPES:
        raise ValueError(
            f"ovi-bench does not run on {device.type!r} devices, only on {', '.join(DEVICE_TYPES)}; {choices}"
        )
    return value


def resolve_device(name: str) -> torch.device:
    """'auto' picks CUDA when available; anything else must name a device ovi-bench runs on
    (`check_device_name`) that this machine has."""

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(check_device_name(name))
    except ValueError as error:
        raise OviBenchError(f"device {short_repr(name)}: {error}.") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise OviBenchError(
            f"device '{name}' was asked for, but this machine has no usable CUDA device (or torch is a CPU build). "
            'Set device = "cpu" (or "auto") in the run spec, or install a CUDA build of PyTorch.'
        )
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise OviBenchError(
            f"device '{name}' was asked for, but this machine has {torch.cuda.device_count()} CUDA device(s), "
            f'numbered from 0 (CUDA_VISIBLE_DEVICES may hide some). Choose one of them, or "cuda" for the first.'
        )
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise OviBenchError(
            f"device '{name}' was asked for, but this machine has no usable Apple-silicon GPU "
            "(torch.backends.mps.is_available() is false: mps needs a Mac with Apple silicon, macOS 12.3 or later "
            'and a PyTorch build with MPS). Set device = "cpu" (or "auto") in the run spec.'
        )
    return device
