"""The pure "3-in-1" rule of T2I-CompBench's complex category (3_in_1_eval/3_in_1.py).

Each complex prompt is routed by `ovi_bench.prompts.complex_subsets` to one of three subsets, and its per-image
score averages the per-image scores of the other evaluators on the same image:
    spatial        (2D + B-VQA) × 0.5
    action         (CLIP + B-VQA) × 0.5
    spatialaction  (B-VQA + 2D + CLIP) / 3
in exactly the official order of operations. B-VQA is the complex prompt's noun-chunk product, 2D the complex-mode
UniDet score and CLIP the raw cosine with adjectives removed from the prompt.
"""

from __future__ import annotations

from ovi_bench.prompts import COMPLEX_SUBSETS


def three_in_one_score(
    subset: str, bvqa: float, spatial_2d: float | None, clip: float | None
) -> tuple[float, str]:
    """The official 3-in-1 per-image score and a reason. Scores a subset does not use may be None."""
    if subset not in COMPLEX_SUBSETS:
        raise ValueError(f"subset must be one of {', '.join(COMPLEX_SUBSETS)}, got {subset!r}")
    needed = {"spatial": ("spatial_2d",), "action": ("clip",), "spatialaction": ("spatial_2d", "clip")}[
        subset
    ]
    given = {"spatial_2d": spatial_2d, "clip": clip}
    missing = [name for name in needed if given[name] is None]
    if missing:
        raise ValueError(f"the '{subset}' subset needs the {' and '.join(missing)} score")
    if subset == "spatial":
        assert spatial_2d is not None
        score = (spatial_2d + bvqa) * 0.5
        return score, f"spatial prompt: mean(2D {spatial_2d:.3f}, B-VQA {bvqa:.3f}) = {score:.3f}"
    if subset == "action":
        assert clip is not None
        score = (clip + bvqa) * 0.5
        return score, f"action prompt: mean(CLIP {clip:.3f}, B-VQA {bvqa:.3f}) = {score:.3f}"
    assert spatial_2d is not None and clip is not None
    score = (bvqa + spatial_2d + clip) / 3
    return (
        score,
        f"spatial+action prompt: mean(B-VQA {bvqa:.3f}, 2D {spatial_2d:.3f}, CLIP {clip:.3f}) = {score:.3f}",
    )
