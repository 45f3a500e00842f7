"""Prompt files pinned to one upstream commit and checked by sha256: where they come from and how they are verified.

A source's files come from a local folder (the run's `prompts.data_dir`, else the source's environment variable) or
from the download cache, downloaded once from the pinned commit. Every file is verified against its pinned sha256
whatever its origin, so that scores are only ever computed on the exact prompts the source published; a modified
file is refused with its name, both digests and the fix.
"""

from __future__ import annotations

import os
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from ovi_bench.errors import DataError, SpecError
from ovi_bench.io import atomic_write_bytes, sha256_bytes, sha256_file
from ovi_bench.paths import cache_dir, expand_user
from ovi_bench.text import did_you_mean

OFFLINE_ENVS: tuple[str, ...] = ("OVI_BENCH_OFFLINE", "HF_HUB_OFFLINE")
DOWNLOAD_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class PinnedFiles:
    """The files of one prompt source at one commit of a GitHub repository."""

    title: str
    """How messages name the source ("T2I-CompBench", "PartiPrompts")."""
    repo: str
    """GitHub owner/name."""
    commit: str
    folder: str
    """The files' folder inside the repository ("" for its root)."""
    sha256: Mapping[str, str]
    """File name -> sha256 of the pinned file: the only files the source knows."""
    dir_env: str
    """The environment variable that names a local folder holding the files."""
    cache_name: str
    """The download cache's folder for the source (the files go to <cache>/<cache_name>/<commit>/)."""
    how_to_provide: str
    """The sentence(s) that end every 'cannot get the file' message: how to give ovi-bench the files."""

    def url(self, name: str) -> str:
        path = f"{self.folder}/{name}" if self.folder else name
        return f"https://raw.githubusercontent.com/{self.repo}/{self.commit}/{path}"

    def cache_dir(self) -> Path:
        return cache_dir() / self.cache_name / self.commit

    def file(self, name: str, data_dir: str | Path | None = None) -> Path:
        """Path of a verified file: from `data_dir`, else the folder in `dir_env`, else the download cache
        (downloading it on first use)."""
        if name not in self.sha256:
            raise SpecError(
                f"'{name}' is not an official {self.title} file that ovi-bench knows."
                f"{did_you_mean(name, self.sha256)} Known files: {', '.join(sorted(self.sha256))}."
            )
        if data_dir is not None:
            return self._local_file(expand_user(data_dir), name, "the prompts data_dir")
        if os.environ.get(self.dir_env):
            return self._local_file(expand_user(os.environ[self.dir_env]), name, f"${self.dir_env}")
        return self._cached_file(name)

    def _local_file(self, folder: Path, name: str, origin: str) -> Path:
        path = folder / name
        if not path.is_file():
            raise DataError(
                f"{name} is missing from {folder} (given by {origin}). Put the official file there "
                f"(upstream: {self.url(name)}), or point {origin} at a folder that has it."
            )
        self.verify(path, name)
        return path

    def _cached_file(self, name: str) -> Path:
        path = self.cache_dir() / name
        if path.is_file():
            if sha256_file(path) == self.sha256[name]:
                return path
            # Downloads are verified before caching, so a bad cached copy was damaged later: fetch it once more.
            path.unlink()
            if offline_setting():
                raise DataError(
                    f"the cached copy of {name} at {path} was corrupt (its sha256 differs from the official file) "
                    f"and has been deleted; offline mode ({offline_setting()}) forbids downloading it again. "
                    f"{self.how_to_provide}"
                )
        atomic_write_bytes(path, self._download(name))
        return path

    def _download(self, name: str) -> bytes:
        """The file's bytes from GitHub, refused unless they hash to the pinned value."""
        if offline_setting():
            raise DataError(
                f"{name} is not in the download cache ({self.cache_dir()}) and offline mode "
                f"({offline_setting()}) forbids downloading it. {self.how_to_provide}"
            )
        url = self.url(name)
        try:
            with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as response:
                data = response.read()
        except (urllib.error.URLError, OSError) as error:
            raise DataError(
                f"could not download {name} from {url}: {error}. {self.how_to_provide}"
            ) from error
        actual = sha256_bytes(data)
        if actual != self.sha256[name]:
            raise DataError(
                f"the download of {name} from {url} has sha256 {actual}, expected {self.sha256[name]}; it was not "
                f"cached. A proxy may have altered it. {self.how_to_provide}"
            )
        return data

    def verify(self, path: Path, name: str) -> None:
        """Refuse `path` unless it is the pinned `name`, byte for byte."""
        actual = sha256_file(path)
        expected = self.sha256[name]
        if actual != expected:
            raise DataError(
                f"{path} is not the official {name}: its sha256 is {actual}, expected {expected}. "
                f"Delete or replace it with an unmodified copy from {self.repo} at commit {self.commit} "
                f"({self.url(name)})."
            )


def offline_setting() -> str:
    """What forbids downloading the official files, or '' when nothing does: 'NAME=value' of the first of
    `OFFLINE_ENVS` set to a true value, or huggingface_hub's offline switch, which a run the preflight took offline
    turns on (`ovi_bench.availability.hub_offline_mode`) without touching the environment."""
    for name in OFFLINE_ENVS:
        value = os.environ.get(name, "")
        if value.strip().lower() in {"1", "true", "yes", "on"}:
            return f"{name}={value}"
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return "HF_HUB_OFFLINE (offline mode)"
    return ""
