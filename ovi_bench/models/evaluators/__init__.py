"""The model side of the T2I-CompBench++ evaluators, as plain wrappers (the scoring rules live elsewhere).

* `BlipVQA` (evaluators/blip.py): B-VQA yes-probabilities, official `vqa_prob` (attribute binding, 3-in-1).
* `Detector`, `Owlv2Detector`, `GroundingDinoDetector`, `make_detector` (evaluators/detectors.py): open-vocabulary
  substitutes for UniDet (2D / 3D spatial, numeracy).
* `DepthEstimator` (evaluators/depth.py): DPT-hybrid MiDaS relative depth, the official 3D-spatial depth model.
* Tiny random-weight variants of all of them, each built beside its wrapper, for tests and dry runs.

Every wrapper takes `(model, *, device, dtype, ...)`, where `model` is a hub id, a local folder or a tiny name; loads
once; runs batched under `torch.inference_mode()`; returns plain Python / numpy values; never trusts remote code.
"""

from __future__ import annotations

from ovi_bench.models.evaluators.blip import (
    BLIP_VQA_ID,
    OFFICIAL_BLIP_IMAGE_SIZE,
    OFFICIAL_QUESTION_MAX_TOKENS,
    TINY_BLIP_BUILDERS,
    BlipVQA,
    blip_encoder_token_id,
    tiny_blip_vqa_dir,
)
from ovi_bench.models.evaluators.depth import (
    DEPTH_ANYTHING_V2_SMALL_ID,
    DPT_HYBRID_MIDAS_ID,
    OFFICIAL_DEPTH_INPUT_SIZE,
    TINY_DEPTH_BUILDERS,
    DepthEstimator,
    quantise_like_png,
    tiny_depth_anything_dir,
    tiny_dpt_hybrid_dir,
)
from ovi_bench.models.evaluators.detectors import (
    DEFAULT_THRESHOLDS,
    GROUNDING_DINO_ID,
    OWLV2_ID,
    TINY_DETECTOR_BUILDERS,
    UNIDET_NMS_IOU,
    Detector,
    GroundingDinoDetector,
    Owlv2Detector,
    RawDetection,
    box_iou,
    class_wise_nms,
    make_detector,
    non_maximum_suppression,
    tiny_grounding_dino_dir,
    tiny_owlv2_dir,
)

__all__ = [
    "BLIP_VQA_ID",
    "DEFAULT_THRESHOLDS",
    "DEPTH_ANYTHING_V2_SMALL_ID",
    "DPT_HYBRID_MIDAS_ID",
    "GROUNDING_DINO_ID",
    "OFFICIAL_BLIP_IMAGE_SIZE",
    "OFFICIAL_DEPTH_INPUT_SIZE",
    "OFFICIAL_QUESTION_MAX_TOKENS",
    "OWLV2_ID",
    "TINY_BLIP_BUILDERS",
    "TINY_DEPTH_BUILDERS",
    "TINY_DETECTOR_BUILDERS",
    "UNIDET_NMS_IOU",
    "BlipVQA",
    "DepthEstimator",
    "Detector",
    "GroundingDinoDetector",
    "Owlv2Detector",
    "RawDetection",
    "blip_encoder_token_id",
    "box_iou",
    "class_wise_nms",
    "make_detector",
    "non_maximum_suppression",
    "quantise_like_png",
    "tiny_blip_vqa_dir",
    "tiny_depth_anything_dir",
    "tiny_dpt_hybrid_dir",
    "tiny_grounding_dino_dir",
    "tiny_owlv2_dir",
]
