"""The tiny bank of each embedding space (procedurally drawn images through the space's tiny towers, for tests and
the offline smoke run), and bank references: "tiny" or the path of a bank folder (`resolve_bank`, `bank_needs`)."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from ovi_bench.bank.build import build_bank
from ovi_bench.bank.folder import rebuild_hint
from ovi_bench.components import FileNeed
from ovi_bench.io import publish_directory
from ovi_bench.paths import cache_dir, expand_user
from ovi_bench.spaces import DEFAULT_SPACE, get_space

TINY_BANK_IMAGES = 256
TINY_BANK_IMAGE_SIZE = 48
TINY_BANK_SEED = 0


def draw_tiny_bank_images(
    folder: Path, count: int = TINY_BANK_IMAGES, size: int = TINY_BANK_IMAGE_SIZE, seed: int = TINY_BANK_SEED
) -> None:
    """Write `count` deterministic size×size PNGs: a random background and one to four coloured rectangles/ellipses."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for index in range(count):
        image = Image.new("RGB", (size, size), tuple(int(value) for value in rng.integers(0, 256, 3)))
        draw = ImageDraw.Draw(image)
        for _ in range(int(rng.integers(1, 5))):
            left, top = (int(value) for value in rng.integers(0, size - 6, 2))
            width, height = (int(value) for value in rng.integers(6, size // 2 + 1, 2))
            box = (left, top, min(left + width, size - 1), min(top + height, size - 1))
            colour = tuple(int(value) for value in rng.integers(0, 256, 3))
            if rng.random() < 0.5:
                draw.rectangle(box, fill=colour)
            else:
                draw.ellipse(box, fill=colour)
        image.save(folder / f"{index:05d}.png")


def _build_tiny_bank(folder: Path, space: str = DEFAULT_SPACE) -> None:
    with tempfile.TemporaryDirectory(prefix="ovi-bench-tiny-bank-images-") as images:
        draw_tiny_bank_images(Path(images))
        build_bank(
            Path(images),
            "tiny",
            folder,
            batch_size=64,
            device="cpu",
            dtype="float32",
            progress=False,
            description=(
                f"tiny: {TINY_BANK_IMAGES} procedurally drawn {TINY_BANK_IMAGE_SIZE}×{TINY_BANK_IMAGE_SIZE} images "
                f"(seed {TINY_BANK_SEED})"
            ),
            space=space,
        )


def tiny_bank_dir(space: str = DEFAULT_SPACE) -> Path:
    """The tiny bank of a space (256 drawn images through its "tiny" towers), built on first use into
    `cache_dir()/tiny/bank-v1` (bigG, the bank that existed before spaces) or `bank-<space>-v1`."""
    if space == DEFAULT_SPACE:
        return publish_directory(_build_tiny_bank, cache_dir() / "tiny" / "bank-v1")
    get_space(space)
    return publish_directory(
        lambda folder: _build_tiny_bank(folder, space), cache_dir() / "tiny" / f"bank-{space}-v1"
    )


def bank_needs(ref: str | None, what: str) -> list[FileNeed]:
    """The bank folder a component reads, for `Component.required_files`; none for "tiny" (built on first use)."""
    if ref is None or str(ref) == "tiny":
        return []
    return [
        FileNeed(what, str(ref), folder=True, contains="bank.json", fix=f"build it with {rebuild_hint(ref)}")
    ]


def resolve_bank(ref: str | Path, space: str = DEFAULT_SPACE) -> Path:
    """ "tiny" gives the tiny bank's folder of `space` (built on first use); anything else is a bank folder path."""
    if str(ref) == "tiny":
        return tiny_bank_dir(space)
    return expand_user(ref)
