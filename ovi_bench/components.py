"""What every pluggable component (prior, decoder, metric) shares: validated parameters, a version, a fingerprint."""

from __future__ import annotations

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
        from ovi_bench.backbones.hub import remote_code_trusted

        return remote_code_trusted()

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
