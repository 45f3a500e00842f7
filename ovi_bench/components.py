"""What every pluggable component (prior, decoder, metric) shares: validated parameters, a version, a fingerprint."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from pydantic import BaseModel, ConfigDict

from ovi_bench.errors import OviBenchError
from ovi_bench.io import canonical_json, sha256_text
from ovi_bench.text import short_repr


class Params(BaseModel):
    """Base for a component's parameters: frozen, unknown fields rejected, a docstring under each field."""

    # allow_inf_nan=False: parameters go into fingerprints, canonical JSON, which has no NaN or inf.
    model_config = ConfigDict(frozen=True, extra="forbid", use_attribute_docstrings=True, allow_inf_nan=False)


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


class Component:
    """A registered, parameterised piece of the pipeline.

    `version` changes whenever the component's outputs could change for the same parameters; it is part of the
    fingerprint, so bumping it invalidates exactly the cached artifacts that the component produced.
    """

    Params: ClassVar[type[Params]] = Params
    version: ClassVar[str] = "1"

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
    def fingerprint(cls, name: str, params: Params | dict[str, Any], dtype: str) -> str:
        values = params.model_dump(mode="json") if isinstance(params, BaseModel) else params
        identity = cls.content_identity(values)
        return sha256_text(
            canonical_json(
                {"name": name, "version": cls.version, "params": values, "dtype": dtype}
                | ({"content": identity} if identity else {})
            )
        )


DTYPES: dict[str, torch.dtype] = {
    "float32": torch.float32,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
}


def nonfinite_rows(tensor: torch.Tensor) -> list[int]:
    """Indices of the rows of a [B, D] tensor that hold a NaN or an infinity."""
    return (~tensor.isfinite().all(dim=-1)).nonzero().flatten().tolist()


def resolve_device(name: str) -> torch.device:
    """'auto' picks CUDA when available; anything else must name a device ovi-bench runs on
    (`spec.check_device_name`) that this machine has."""
    from ovi_bench.spec import check_device_name

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
