"""Reading released weight files safely: a `.safetensors` file, or a `.pt`/`.pth` state_dict of plain tensors.

Checkpoints published outside the Hugging Face format (the LAION aesthetic MLP, ImageReward) are pickles. They are
loaded with `torch.load(weights_only=True)`, which rebuilds tensors and plain containers only and refuses any other
pickled object, so that reading a downloaded file can never run code.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import safetensors.torch
import torch
from safetensors import SafetensorError

from ovi_bench.errors import ModelLoadError


def read_tensor_file(path: Path, *, what: str, expected: str) -> dict[str, torch.Tensor]:
    """The tensors of `path`, a `.safetensors` file or a `.pth`/`.pt` state_dict read with `weights_only=True`.

    `what` names the file in messages ("aesthetic predictor weights"); `expected` says which files are accepted,
    for the message that refuses a pickle holding more than tensors."""
    suffix = path.suffix.lower()
    if suffix == ".safetensors":
        try:
            return safetensors.torch.load_file(path, device="cpu")
        except (SafetensorError, OSError, ValueError) as error:
            raise ModelLoadError(f"cannot read the safetensors file '{path}': {error}.") from error
    if suffix in {".pth", ".pt"}:
        try:
            # weights_only: the file may only hold tensors and plain containers, never arbitrary pickled objects.
            state = torch.load(path, map_location="cpu", weights_only=True)
        except (pickle.UnpicklingError, RuntimeError, OSError, EOFError, ValueError, AttributeError) as error:
            raise ModelLoadError(
                f"refusing to load '{path}': it cannot be loaded safely with torch.load(weights_only=True) ({error}). "
                f"{expected}; convert other files to .safetensors."
            ) from error
        if not isinstance(state, dict) or not all(
            isinstance(value, torch.Tensor) for value in state.values()
        ):
            raise ModelLoadError(
                f"'{path}' does not hold a state_dict of tensors (found {type(state).__name__}). {expected}."
            )
        return state
    raise ModelLoadError(f"{what} '{path}' must be a .safetensors, .pth or .pt file (got '{path.suffix}').")
