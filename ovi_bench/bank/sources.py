"""Image sources for a bank build: image files (a folder, searched recursively, or a list) and a Hugging Face data
set's image column, each in a fixed order with a fingerprint that changes whenever the images do."""

from __future__ import annotations

import contextlib
import io
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from PIL import Image

from ovi_bench.errors import DataError, OviBenchError
from ovi_bench.io import canonical_json, sha256_text
from ovi_bench.paths import expand_user

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
"""Files (case-insensitive suffix) that a folder source encodes; anything else in the folder is ignored."""


class ImageSource(Protocol):
    """Images to encode, in a fixed order: a folder, a list of files, or a Hugging Face data set."""

    def names(self) -> list[str]:
        """One name per image, in order (recorded per embedding in images.json)."""
        ...

    def fingerprint(self) -> str:
        """Changes whenever the images (or their order) do: a build resumes only into a folder with the same one."""
        ...

    def describe(self) -> str:
        """A short description for BankInfo.sources."""
        ...

    def open(self, index: int) -> Image.Image:
        """The image, decoded (raises on an unreadable one)."""
        ...


class ImageFiles:
    """Image files: every image under a folder (recursively, sorted by relative path), or an explicit list."""

    def __init__(self, paths: Sequence[Path], names: Sequence[str], description: str) -> None:
        self.paths = list(paths)
        self._names = list(names)
        self._description = description

    @classmethod
    def from_folder(cls, folder: str | Path) -> ImageFiles:
        folder = expand_user(folder)
        if not folder.is_dir():
            what = "is a file, not a folder" if folder.exists() else "does not exist"
            raise DataError(
                f"the images folder {folder} {what}: give a folder of {'/'.join(IMAGE_SUFFIXES)} images "
                "(searched recursively)."
            )
        found = sorted(
            (path.relative_to(folder).as_posix(), path)
            for path in folder.rglob("*")
            if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file()
        )
        if not found:
            raise DataError(
                f"no images ({', '.join(IMAGE_SUFFIXES)}) found under {folder}: give the folder that holds them."
            )
        names, paths = zip(*found, strict=True)
        return cls(paths, names, f"folder {folder.resolve()}: {len(paths)} image files")

    @classmethod
    def from_paths(cls, paths: Sequence[str | Path]) -> ImageFiles:
        if not paths:
            raise DataError("no images were given: pass a folder or a non-empty list of image files.")
        resolved = [expand_user(path).resolve() for path in paths]
        return cls(resolved, [str(path) for path in resolved], f"{len(resolved)} image files")

    def names(self) -> list[str]:
        return self._names

    def fingerprint(self) -> str:
        def size(path: Path) -> int:
            # A missing file is not an error here: it is skipped as unreadable when its turn comes.
            with contextlib.suppress(OSError):
                return path.stat().st_size
            return -1

        return sha256_text(
            canonical_json([[name, size(path)] for name, path in zip(self._names, self.paths, strict=True)])
        )

    def describe(self) -> str:
        return self._description

    def open(self, index: int) -> Image.Image:
        with Image.open(self.paths[index]) as image:
            return image.convert("RGB")


@dataclass(frozen=True)
class HFDatasetImages:
    """The images of one column of a Hugging Face data set (hub name, or a folder saved with `save_to_disk`).

    Needs the optional `datasets` package. Rows keep the data set's order; undecodable images are skipped.
    """

    name: str
    """Hub data set name, or a folder written by `Dataset.save_to_disk` / `DatasetDict.save_to_disk`."""
    split: str = "train"
    """The split to encode (ignored for a folder holding a single saved Dataset)."""
    image_column: str = "image"
    """The column of `datasets.Image` type."""
    _state: dict[str, Any] = field(default_factory=dict, init=False, repr=False, compare=False)

    def _dataset(self) -> Any:
        if "dataset" in self._state:
            return self._state["dataset"]
        try:
            import datasets
        except ImportError as error:
            raise OviBenchError(
                "a Hugging Face data set source needs the optional package datasets: `pip install datasets`."
            ) from error
        folder = expand_user(self.name)
        try:
            if folder.is_dir():
                loaded = datasets.load_from_disk(str(folder))
                if isinstance(loaded, datasets.DatasetDict):
                    if self.split not in loaded:
                        raise DataError(
                            f"the data set {folder} has splits {sorted(loaded)}, not '{self.split}': use --split."
                        )
                    loaded = loaded[self.split]
            else:
                loaded = datasets.load_dataset(self.name, split=self.split)
        except (OSError, ValueError, KeyError) as error:
            raise DataError(
                f"cannot load the data set '{self.name}' (split '{self.split}'): {error}"
            ) from error
        if self.image_column not in loaded.column_names:
            raise DataError(
                f"the data set '{self.name}' has no column '{self.image_column}' (columns: {loaded.column_names}): "
                "use --image-column."
            )
        if not isinstance(loaded.features[self.image_column], datasets.Image):
            raise DataError(
                f"the column '{self.image_column}' of '{self.name}' holds {loaded.features[self.image_column]}, not "
                "images: use --image-column to name the image column."
            )
        # Undecoded: each image is decoded here, one at a time, so that one broken image is skipped, not fatal.
        dataset = loaded.select_columns([self.image_column]).cast_column(
            self.image_column, datasets.Image(decode=False)
        )
        self._state["dataset"] = dataset
        return dataset

    def names(self) -> list[str]:
        return [f"{self.name}[{self.split}]#{index}" for index in range(len(self._dataset()))]

    def fingerprint(self) -> str:
        dataset = self._dataset()
        files = []
        for cache_file in dataset.cache_files:
            path = Path(cache_file["filename"])
            files.append([path.name, path.stat().st_size if path.exists() else -1])
        return sha256_text(
            canonical_json(
                {
                    "name": self.name,
                    "split": self.split,
                    "column": self.image_column,
                    "rows": len(dataset),
                    "files": files,
                }
            )
        )

    def describe(self) -> str:
        return f"Hugging Face data set {self.name}, split {self.split}, column {self.image_column}"

    def open(self, index: int) -> Image.Image:
        value = self._dataset()[index][self.image_column]
        if value is None:
            raise ValueError("no image in this row")
        source = io.BytesIO(value["bytes"]) if value.get("bytes") else value["path"]
        with Image.open(source) as image:
            return image.convert("RGB")


def as_image_source(images: str | Path | Sequence[str | Path] | ImageSource) -> ImageSource:
    if isinstance(images, (str, Path)):
        return ImageFiles.from_folder(images)
    if isinstance(images, Sequence):
        return ImageFiles.from_paths(images)
    return images
