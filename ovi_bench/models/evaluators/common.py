"""Small helpers shared by the evaluator wrappers (BLIP VQA, detectors, depth)."""

from __future__ import annotations

from collections.abc import Sequence

from PIL import Image


def rgb_images(images: Sequence[Image.Image]) -> list[Image.Image]:
    """The images in RGB, as the official evaluators read them (`Image.open(path).convert('RGB')`)."""
    for image in images:
        if not isinstance(image, Image.Image):
            raise TypeError(f"expected PIL images, got {type(image).__name__}")
    return [image if image.mode == "RGB" else image.convert("RGB") for image in images]


def indices_by_size(images: Sequence[Image.Image]) -> list[list[int]]:
    """Indices of the images grouped by (width, height), groups in order of first appearance.

    Models whose processors pad a batch to its largest image (Grounding DINO) or that keep each image's aspect ratio
    (Depth Anything) see different pixels for an image depending on its batch mates. Running each group of
    same-size images as one batch keeps every result independent of the other images in the call.
    """
    groups: dict[tuple[int, int], list[int]] = {}
    for index, image in enumerate(images):
        groups.setdefault(image.size, []).append(index)
    return list(groups.values())


def check_one_entry_per_image(images: Sequence[object], per_image: Sequence[object], what: str) -> None:
    if len(images) != len(per_image):
        raise ValueError(
            f"got {len(images)} images but {len(per_image)} lists of {what}: give one list per image"
        )
