"""Turn a model reference (hub id, local folder or "tiny") into something `from_pretrained` loads, loudly.

A reference is one of:
* a key of `tiny_builders` ("tiny"): a small random-weight model built in code and saved to the cache on first use;
* an existing local folder, loaded with `local_files_only=True`;
* anything else: a Hugging Face hub id, downloaded (or read from the hub cache when HF_HUB_OFFLINE=1).

Remote code (Python files shipped inside a model repository) is off: `load_pretrained` refuses
`trust_remote_code=True` unless the run spec's top-level `trust_remote_code = true` is in force
(`remote_code_policy`), and tells transformers' Auto classes `trust_remote_code=False` explicitly, so that they
never stop to ask on a terminal either.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator, Mapping
from contextvars import ContextVar
from pathlib import Path
from typing import Any, TypeVar

from huggingface_hub import constants, hf_hub_download
from huggingface_hub.errors import EntryNotFoundError
from safetensors import SafetensorError

from ovi_bench.errors import ModelLoadError
from ovi_bench.paths import cache_dir, expand_user

T = TypeVar("T")

# What from_pretrained raises for a missing, partial or corrupt model: OSError covers EnvironmentError, missing files
# and huggingface_hub's HTTP, offline and not-found errors; ValueError covers invalid hub ids, broken JSON configs and
# pipelines that lack a component; EntryNotFoundError and SafetensorError are not OSErrors.
LOAD_ERRORS: tuple[type[BaseException], ...] = (OSError, ValueError, EntryNotFoundError, SafetensorError)

_TRUTHY = {"1", "on", "yes", "true"}


# ovi-bench's own offline switch, on while a run found the hub unreachable (`preflight.hub_offline_mode`): a
# ContextVar, like the remote-code policy below, rather than a write to the user's environment.
_offline: ContextVar[bool] = ContextVar("ovi_bench_hub_offline", default=False)


@contextlib.contextmanager
def offline_switch(offline: bool) -> Iterator[None]:
    """Within the block, `hub_offline()` is true if `offline` is (or HF_HUB_OFFLINE says so)."""
    token = _offline.set(offline)
    try:
        yield
    finally:
        _offline.reset(token)


def hub_offline() -> bool:
    """ovi-bench's offline switch, or HF_HUB_OFFLINE read now: huggingface_hub reads the variable only once, at
    import, so a later setting would be ignored."""
    return _offline.get() or os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in _TRUTHY


def looks_like_path(ref: str) -> bool:
    """A reference that can only mean a local folder: hub ids are exactly 'name' or 'owner/name'."""
    return ref.startswith(("/", ".", "~")) or "\\" in ref or ref.count("/") > 1


def resolve_model(ref: str, tiny_builders: Mapping[str, Callable[[], Path]]) -> str:
    """A tiny key gives its (built on first use) folder, an existing folder its absolute path, anything else itself."""
    if ref in tiny_builders:
        return str(tiny_builders[ref]())
    folder = expand_user(ref)
    if folder.is_dir():
        return str(folder.resolve())
    return ref


def explain_load_failure(ref: str, what: str, error: BaseException) -> ModelLoadError:
    """A ModelLoadError that names what failed and how to fix it."""
    tiny_root = (cache_dir() / "tiny").resolve()
    folder = expand_user(ref).resolve()
    if tiny_root in folder.parents:
        # A tiny model ovi-bench built itself (a disk error, or an interrupted copy of the cache): no download helps.
        built = tiny_root / folder.relative_to(tiny_root).parts[0]
        return ModelLoadError(
            f"cannot load {what} from the tiny-model cache folder {built}: {error}. ovi-bench built that folder "
            f"and it is now incomplete or corrupt: delete it (rm -r '{built}') and it is rebuilt on the next run."
        )
    if expand_user(ref).is_dir():
        return ModelLoadError(
            f"cannot load {what} from the local folder '{ref}': {error}. The folder is incomplete or corrupt: "
            "download the model again (`hf download <id> --local-dir <folder>`) or point the spec at another folder."
        )
    if looks_like_path(ref):
        return ModelLoadError(
            f"cannot load {what}: the local folder '{ref}' does not exist. Fix the path in the spec, or give a "
            "Hugging Face id instead."
        )
    return ModelLoadError(
        f"cannot load {what} from the Hugging Face model '{ref}': {error}. Fixes: on a machine with internet run "
        f"`hf download {ref}` (then set HF_HUB_OFFLINE=1 here to use that populated cache, or copy the cache over), "
        f"or download it to a folder (`hf download {ref} --local-dir <folder>`) and point the spec at that folder."
    )


# A ContextVar rather than a global: two runs in one process cannot see each other's setting, and a thread that
# was not started inside the policy sees the default (refused): the failure mode is a clear error, never trust.
_remote_code_trusted: ContextVar[bool] = ContextVar("ovi_bench_remote_code_trusted", default=False)


@contextlib.contextmanager
def remote_code_policy(trusted: bool) -> Iterator[None]:
    """Within the block, `load_pretrained(..., trust_remote_code=True)` is allowed iff `trusted` (the run spec's
    `trust_remote_code`). The runner of a spec wraps its models' loading in this."""
    token = _remote_code_trusted.set(trusted is True)
    try:
        yield
    finally:
        _remote_code_trusted.reset(token)


def remote_code_trusted() -> bool:
    """Whether the run in progress allows remote code (its spec says `trust_remote_code = true`)."""
    return _remote_code_trusted.get()


def _asks_about_remote_code(cls: type) -> bool:
    """transformers' Auto classes decide from a repository's config whether to run its code, and with
    trust_remote_code=None they prompt on a terminal; concrete classes (CLIPModel, ...) never run remote code."""
    return cls.__module__.startswith("transformers.") and cls.__name__.startswith("Auto")


def load_pretrained(cls: type[T], ref: str, **kwargs: Any) -> T:
    """`cls.from_pretrained(ref, **kwargs)` with failures turned into a ModelLoadError naming the fixes.

    `ref` must already be resolved (see `resolve_model`). `trust_remote_code=True` is refused with a
    ModelLoadError unless the run's spec allows remote code (`remote_code_policy`).
    """
    if kwargs.get("trust_remote_code"):
        if not remote_code_trusted():
            raise ModelLoadError(
                f"loading {cls.__name__} from '{ref}' asks for remote code (trust_remote_code=True): Python files "
                "from the model repository would run on this machine, which ovi-bench refuses by default. If you "
                "have read that code and trust it, set `trust_remote_code = true` at the top of the run spec."
            )
        kwargs["trust_remote_code"] = True
    elif _asks_about_remote_code(cls):
        kwargs["trust_remote_code"] = False
    what = cls.__name__ + (f" ({kwargs['subfolder']})" if kwargs.get("subfolder") else "")
    if expand_user(ref).is_dir():
        kwargs["local_files_only"] = True
    elif looks_like_path(ref):
        raise explain_load_failure(ref, what, FileNotFoundError(ref))
    elif hub_offline():
        kwargs["local_files_only"] = True
    try:
        return cls.from_pretrained(ref, **kwargs)  # type: ignore[attr-defined]
    except LOAD_ERRORS as error:
        raise explain_load_failure(ref, what, error) from error


def model_file(ref: str, subfolder: str, filename: str) -> Path:
    """The local path of one file of a model (a folder, or a hub id: only that small file is downloaded)."""
    folder = expand_user(ref)
    what = f"{subfolder}/{filename}"
    if folder.is_dir():
        path = folder / subfolder / filename
        if not path.is_file():
            raise explain_load_failure(ref, what, FileNotFoundError(path))
        return path
    if looks_like_path(ref):
        raise explain_load_failure(ref, what, FileNotFoundError(ref))
    try:
        return Path(hf_hub_download(ref, filename, subfolder=subfolder, local_files_only=hub_offline()))
    except LOAD_ERRORS as error:
        raise explain_load_failure(ref, what, error) from error


def is_tiny_name(ref: str) -> bool:
    """A tiny name ("tiny", "tiny-owlv2", ...): a random-weight model built in code, never fetched."""
    return ref == "tiny" or (ref.startswith("tiny-") and "/" not in ref)


def model_revision(ref: str) -> dict[str, str]:
    """Which model a reference named when the run was made, for provenance; never downloads anything.

    A hub id gives the commit its cached copy was taken from (the hub cache's `refs/main`), a local folder its
    absolute path, a tiny name the ovi-bench version whose code built it.
    """
    from ovi_bench.version import __version__

    if is_tiny_name(ref):
        return {"kind": "tiny", "built_by": f"ovi-bench {__version__}"}
    folder = expand_user(ref)
    if folder.exists() or looks_like_path(ref):
        return {"kind": "local", "path": str(folder.resolve())}
    cached = Path(constants.HF_HUB_CACHE) / f"models--{ref.replace('/', '--')}" / "refs" / "main"
    try:
        return {"kind": "hub", "id": ref, "revision": cached.read_text().strip()}
    except OSError:
        return {"kind": "hub", "id": ref, "revision": "not in the local hub cache"}


MODEL_PARAMETERS = ("model", "checkpoint", "text_encoder", "weights", "adapter", "processor", "tokenizer")
"""Component parameter names that name a model, its processor or its tokenizer (besides every `*_model`)."""


def is_model_parameter(name: str) -> bool:
    """Parameters that name a model (hub id, folder or tiny name) by the convention every component follows: their
    revisions are recorded in results.json."""
    return name in MODEL_PARAMETERS or name.endswith("_model")
