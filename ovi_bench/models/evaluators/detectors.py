"""Open-vocabulary detectors standing in for T2I-CompBench's UniDet (2D spatial, 3D spatial, numeracy).

The official evaluators use UniDet (a detectron2 Cascade R-CNN over a fixed 722-label vocabulary), which has no
transformers port. OWLv2 and Grounding DINO, queried with the prompt's nouns, are substitutes, not reproductions:
their scores are not UniDet probabilities, so thresholds need recalibrating and absolute 2D/3D/numeracy numbers
differ from the published ones (see shared/reference/t2i-compbench-scoring.md §2.2–2.4 and §7).

What is kept from the official pipeline: a strict `score > threshold` filter and class-wise NMS (UniDet applies
both: 0.1 and IoU 0.5), detections sorted by descending score, boxes in pixels of the image given. The scoring rules
(which detection counts, the geometry, de-duplication for counting) live elsewhere.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol, runtime_checkable

import torch
from PIL import Image
from transformers import (
    BertConfig,
    GroundingDinoConfig,
    GroundingDinoForObjectDetection,
    GroundingDinoImageProcessorPil,
    GroundingDinoProcessor,
    Owlv2Config,
    Owlv2ForObjectDetection,
    Owlv2ImageProcessorPil,
    Owlv2Processor,
    SwinConfig,
)

from ovi_bench.errors import ModelLoadError
from ovi_bench.io import publish_directory
from ovi_bench.models.clip import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD, tiny_tokenizer
from ovi_bench.models.dinov2 import IMAGENET_MEAN, IMAGENET_STD
from ovi_bench.models.evaluators.blip import tiny_bert_tokenizer
from ovi_bench.models.evaluators.common import check_one_entry_per_image, indices_by_size, rgb_images
from ovi_bench.models.hub import load_pretrained, resolve_model
from ovi_bench.paths import cache_dir

OWLV2_ID = "google/owlv2-base-patch16-ensemble"
GROUNDING_DINO_ID = "IDEA-Research/grounding-dino-tiny"

UNIDET_NMS_IOU = 0.5
"""UniDet's class-wise NMS IoU, the default for both detectors."""

DEFAULT_THRESHOLDS = {"owlv2": 0.1, "grounding-dino": 0.25}
"""Score thresholds (kept: score > threshold): the defaults of transformers' post-processing for each model. They
are not calibrated against UniDet (whose effective threshold is 0.1): recalibrate before comparing numbers."""


@dataclass(frozen=True)
class RawDetection:
    """One detection: `label` is one of the image's queries, `box` is (x1, y1, x2, y2) in pixels of the image given."""

    label: str
    score: float
    box: tuple[float, float, float, float]


@runtime_checkable
class Detector(Protocol):
    def detect(
        self, images: Sequence[Image.Image], queries: Sequence[Sequence[str]]
    ) -> list[list[RawDetection]]:
        """Per image, the detections of its queries, sorted by descending score."""
        ...


def box_iou(boxes: torch.Tensor, others: torch.Tensor) -> torch.Tensor:
    """(N, M) intersection over union of (x1, y1, x2, y2) boxes, continuous coordinates (no +1 pixel)."""
    top_left = torch.maximum(boxes[:, None, :2], others[None, :, :2])
    bottom_right = torch.minimum(boxes[:, None, 2:], others[None, :, 2:])
    intersection = (bottom_right - top_left).clamp(min=0).prod(dim=-1)
    area = (boxes[:, 2:] - boxes[:, :2]).clamp(min=0).prod(dim=-1)
    other_area = (others[:, 2:] - others[:, :2]).clamp(min=0).prod(dim=-1)
    union = area[:, None] + other_area[None, :] - intersection
    return torch.where(union > 0, intersection / union, torch.zeros_like(union))


def non_maximum_suppression(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """Indices of the boxes greedy NMS keeps, by descending score: a box is dropped when its IoU with a kept,
    higher-scoring box exceeds `iou_threshold` (torchvision's `nms` rule; torchvision is not a dependency)."""
    order = torch.argsort(scores, descending=True, stable=True)
    overlaps = box_iou(boxes[order], boxes[order]) > iou_threshold
    suppressed = torch.zeros(len(order), dtype=torch.bool)
    kept: list[int] = []
    for position in range(len(order)):
        if suppressed[position]:
            continue
        kept.append(position)
        suppressed |= overlaps[position]
    return order[kept]


def class_wise_nms(detections: Sequence[RawDetection], iou_threshold: float) -> list[RawDetection]:
    """NMS within each label (boxes of different labels never suppress each other), sorted by descending score."""
    by_label: dict[str, list[RawDetection]] = {}
    for detection in detections:
        by_label.setdefault(detection.label, []).append(detection)
    kept: list[RawDetection] = []
    for group in by_label.values():
        boxes = torch.tensor([detection.box for detection in group], dtype=torch.float64)
        scores = torch.tensor([detection.score for detection in group], dtype=torch.float64)
        kept += [group[index] for index in non_maximum_suppression(boxes, scores, iou_threshold).tolist()]
    return sorted(kept, key=lambda detection: -detection.score)


def _check_queries(queries: Sequence[Sequence[str]]) -> None:
    for image_queries in queries:
        if isinstance(image_queries, str):
            raise TypeError(
                f"queries must be one list of strings per image, got the string {image_queries!r}"
            )
        for query in image_queries:
            if not isinstance(query, str) or not query.strip():
                raise ValueError(f"detector queries must be non-empty strings, got {query!r}")


def _clip_box(box: Sequence[float], width: int, height: int) -> tuple[float, float, float, float]:
    x1, y1, x2, y2 = (float(value) for value in box)
    return (
        min(max(x1, 0.0), float(width)),
        min(max(y1, 0.0), float(height)),
        min(max(x2, 0.0), float(width)),
        min(max(y2, 0.0), float(height)),
    )


def _finish(detections: list[RawDetection], nms_iou: float | None) -> list[RawDetection]:
    if nms_iou is not None:
        return class_wise_nms(detections, nms_iou)
    return sorted(detections, key=lambda detection: -detection.score)


class _LoadedDetector:
    """What both detectors share: checked options, and a model plus processor loaded once from a reference."""

    def __init__(
        self,
        model: str,
        tiny_builders: dict[str, Callable[[], Path]],
        model_class: type,
        processor_class: type,
        *,
        device: torch.device,
        dtype: torch.dtype,
        threshold: float,
        nms_iou: float | None,
    ) -> None:
        if not 0.0 <= threshold < 1.0:
            raise ValueError(f"threshold must be in [0, 1), got {threshold}")
        if nms_iou is not None and not 0.0 < nms_iou <= 1.0:
            raise ValueError(f"nms_iou must be in (0, 1] or None, got {nms_iou}")
        self.device = device
        self.dtype = dtype
        self.threshold = threshold
        self.nms_iou = nms_iou
        source = resolve_model(model, tiny_builders)
        self.model = load_pretrained(model_class, source, dtype=dtype).to(device).eval()
        self.processor = load_pretrained(processor_class, source)

    @staticmethod
    def _asked(
        images: Sequence[Image.Image], queries: Sequence[Sequence[str]]
    ) -> tuple[list[list[RawDetection]], list[int], list[Image.Image]]:
        """Checked inputs: an empty detection list per image, and the indices and RGB images of those with queries
        (an image without queries is never run through the model)."""
        check_one_entry_per_image(images, queries, "queries")
        _check_queries(queries)
        asked = [index for index, image_queries in enumerate(queries) if image_queries]
        return [[] for _ in images], asked, rgb_images([images[index] for index in asked])


class Owlv2Detector(_LoadedDetector):
    """OWLv2, one query per noun. Detections with score > `threshold`, then class-wise NMS at `nms_iou`.

    OWLv2's processor pads each image at the bottom and right to a square before resizing, so the model's boxes are
    relative to that square; `post_process_grounded_object_detection` with the original (height, width) scales them
    by max(height, width), which maps them back to the original image. Boxes reaching into the padding are clipped
    to the image.
    """

    def __init__(
        self,
        model: str = OWLV2_ID,
        *,
        device: torch.device,
        dtype: torch.dtype,
        threshold: float = DEFAULT_THRESHOLDS["owlv2"],
        nms_iou: float | None = UNIDET_NMS_IOU,
    ) -> None:
        if importlib.util.find_spec("scipy") is None:
            raise ModelLoadError("OWLv2's image processor needs scipy (scipy.ndimage): `pip install scipy`.")
        super().__init__(
            model,
            {"tiny": tiny_owlv2_dir, "tiny-owlv2": tiny_owlv2_dir},
            Owlv2ForObjectDetection,
            Owlv2Processor,
            device=device,
            dtype=dtype,
            threshold=threshold,
            nms_iou=nms_iou,
        )

    @torch.inference_mode()
    def detect(
        self, images: Sequence[Image.Image], queries: Sequence[Sequence[str]]
    ) -> list[list[RawDetection]]:
        detections, asked, asked_images = self._asked(images, queries)
        if not asked:
            return detections
        asked_queries = [list(queries[index]) for index in asked]
        # Queries longer than the text model's window (16 tokens for the real model) are truncated, as OWL-ViT does.
        inputs = self.processor(text=asked_queries, images=asked_images, return_tensors="pt", truncation=True)
        # The processor pads every image's query list to the longest one with " ", a real query that can win. The
        # model ignores a query whose first token id is 0 (its `query_mask`), so the padding queries get that.
        input_ids = inputs["input_ids"].clone()
        per_image = input_ids.view(len(asked), -1, input_ids.shape[-1])
        for row, image_queries in enumerate(asked_queries):
            per_image[row, len(image_queries) :, 0] = 0
        outputs = self.model(
            input_ids=input_ids.to(self.device),
            attention_mask=inputs["attention_mask"].to(self.device),
            pixel_values=inputs["pixel_values"].to(self.device, self.dtype),
        )
        results = self.processor.post_process_grounded_object_detection(
            outputs,
            threshold=self.threshold,
            target_sizes=[(image.height, image.width) for image in asked_images],
            text_labels=asked_queries,
        )
        for index, image, result in zip(asked, asked_images, results, strict=True):
            found = [
                RawDetection(label=label, score=float(score), box=_clip_box(box, image.width, image.height))
                for label, score, box in zip(
                    result["text_labels"],
                    result["scores"].tolist(),
                    result["boxes"].float().tolist(),
                    strict=True,
                )
            ]
            detections[index] = _finish(found, self.nms_iou)
        return detections


def _merged_text_and_spans(image_queries: Sequence[str]) -> tuple[str, list[tuple[int, int]]]:
    """Grounding DINO's text "q1. q2. q3." (the processor's own merging rule) and each query's character span."""
    parts: list[str] = []
    spans: list[tuple[int, int]] = []
    position = 0
    for query in image_queries:
        part = query.strip().lower()
        if "." in part:
            raise ValueError(f"Grounding DINO queries cannot contain '.', which separates them: {query!r}")
        spans.append((position, position + len(part)))
        parts.append(part)
        position += len(part) + 2  # ". "
    return ". ".join(parts) + ".", spans


class GroundingDinoDetector(_LoadedDetector):
    """Grounding DINO, all of an image's queries in one text. Score > `threshold`, then class-wise NMS at `nms_iou`.

    Scores and boxes come from the processor's `post_process_grounded_object_detection` (the score is the highest
    token probability of the box over the whole text, as in Grounding DINO's own demo). Its text labels are the
    tokens above a threshold and need not spell a query, so each kept box is instead labelled with the query whose
    tokens reach the highest probability. Images are run in batches of equal size: the processor pads a batch to its
    largest image, which would make an image's result depend on its batch mates.
    """

    def __init__(
        self,
        model: str = GROUNDING_DINO_ID,
        *,
        device: torch.device,
        dtype: torch.dtype,
        threshold: float = DEFAULT_THRESHOLDS["grounding-dino"],
        nms_iou: float | None = UNIDET_NMS_IOU,
    ) -> None:
        super().__init__(
            model,
            {"tiny": tiny_grounding_dino_dir, "tiny-grounding-dino": tiny_grounding_dino_dir},
            GroundingDinoForObjectDetection,
            GroundingDinoProcessor,
            device=device,
            dtype=dtype,
            threshold=threshold,
            nms_iou=nms_iou,
        )

    @torch.inference_mode()
    def detect(
        self, images: Sequence[Image.Image], queries: Sequence[Sequence[str]]
    ) -> list[list[RawDetection]]:
        detections, asked, asked_images = self._asked(images, queries)
        for group in indices_by_size(asked_images):
            indices = [asked[position] for position in group]
            group_images = [asked_images[position] for position in group]
            group_queries = [list(queries[index]) for index in indices]
            for index, found in zip(
                indices, self._detect_same_size(group_images, group_queries), strict=True
            ):
                detections[index] = _finish(found, self.nms_iou)
        return detections

    def _detect_same_size(
        self, images: list[Image.Image], queries: list[list[str]]
    ) -> list[list[RawDetection]]:
        texts_and_spans = [_merged_text_and_spans(image_queries) for image_queries in queries]
        texts = [text for text, _ in texts_and_spans]
        inputs = self.processor(images=images, text=texts, padding="longest", return_tensors="pt")
        max_text_len = self.model.config.max_text_len
        if inputs["input_ids"].shape[1] > max_text_len:
            raise ValueError(
                f"the queries take {inputs['input_ids'].shape[1]} tokens, more than Grounding DINO's "
                f"{max_text_len}: ask for fewer or shorter queries per image."
            )
        offsets = self.processor.tokenizer(
            texts, padding="longest", return_offsets_mapping=True, return_tensors="pt"
        )
        if not torch.equal(offsets["input_ids"], inputs["input_ids"]):
            raise RuntimeError(
                "Grounding DINO's processor tokenized the queries differently from its tokenizer."
            )
        outputs = self.model(
            pixel_values=inputs["pixel_values"].to(self.device, self.dtype),
            pixel_mask=inputs["pixel_mask"].to(self.device),
            input_ids=inputs["input_ids"].to(self.device),
            attention_mask=inputs["attention_mask"].to(self.device),
            token_type_ids=inputs["token_type_ids"].to(self.device),
        )
        results = self.processor.post_process_grounded_object_detection(
            outputs,
            input_ids=inputs["input_ids"],
            threshold=self.threshold,
            target_sizes=[(image.height, image.width) for image in images],
        )
        # The rows the processor kept, by its own rule (same dtype, same comparison), to label them.
        token_probabilities = torch.sigmoid(outputs.logits)
        kept_rows = token_probabilities.max(dim=-1).values > self.threshold

        detections: list[list[RawDetection]] = []
        for row, (image, image_queries, result) in enumerate(zip(images, queries, results, strict=True)):
            spans = texts_and_spans[row][1]
            token_offsets = offsets["offset_mapping"][row]
            probabilities = token_probabilities[row][kept_rows[row]].float().cpu()
            if len(probabilities) != len(result["scores"]):
                raise RuntimeError("could not match Grounding DINO's post-processed boxes with its logits.")
            query_probabilities = torch.stack(
                [self._span_probability(probabilities, token_offsets, span) for span in spans], dim=-1
            )
            labels = query_probabilities.argmax(dim=-1).tolist()
            detections.append(
                [
                    RawDetection(
                        label=image_queries[label],
                        score=float(score),
                        box=_clip_box(box, image.width, image.height),
                    )
                    for label, score, box in zip(
                        labels, result["scores"].tolist(), result["boxes"].float().tolist(), strict=True
                    )
                ]
            )
        return detections

    @staticmethod
    def _span_probability(
        probabilities: torch.Tensor, token_offsets: torch.Tensor, span: tuple[int, int]
    ) -> torch.Tensor:
        """Per kept box, the highest probability among the tokens of one query (its character span)."""
        start, end = span
        in_span = (
            (token_offsets[:, 1] > token_offsets[:, 0])
            & (token_offsets[:, 0] >= start)
            & (token_offsets[:, 1] <= end)
        )
        positions = in_span.nonzero(as_tuple=True)[0]
        if len(positions) == 0:
            raise ValueError("a Grounding DINO query has no tokens after tokenization.")
        return probabilities[:, positions].max(dim=-1).values


def make_detector(
    kind: Literal["owlv2", "grounding-dino"],
    model: str | None = None,
    *,
    device: torch.device,
    dtype: torch.dtype,
    threshold: float | None = None,
    nms_iou: float | None = UNIDET_NMS_IOU,
) -> Detector:
    """A detector of `kind`. `model` defaults to the kind's hub id ("tiny" gives its tiny model), `threshold` to the
    kind's entry in DEFAULT_THRESHOLDS."""
    if kind not in DEFAULT_THRESHOLDS:
        raise ValueError(f"unknown detector kind {kind!r}: use one of {sorted(DEFAULT_THRESHOLDS)}")
    threshold = DEFAULT_THRESHOLDS[kind] if threshold is None else threshold
    if kind == "owlv2":
        return Owlv2Detector(
            model or OWLV2_ID, device=device, dtype=dtype, threshold=threshold, nms_iou=nms_iou
        )
    return GroundingDinoDetector(
        model or GROUNDING_DINO_ID, device=device, dtype=dtype, threshold=threshold, nms_iou=nms_iou
    )


# ---------------------------------------------------------------------------------------------------------------------
# Tiny random-weight detectors (OWLv2, Grounding DINO), built in code, saved with `save_pretrained` into `cache_dir()/tiny/<name>-v1/` and
# loaded back through the same `from_pretrained` code as the real checkpoints. Every builder seeds torch with 0, so
# the saved weights (and the tests' golden values) are the same on every machine; bump a folder's version whenever
# its builder's output changes. The configs follow shared/reference/metrics-stack.md §4.


TINY_OWLV2_IMAGE_SIZE = 64
TINY_OWLV2_TEXT_LENGTH = 32


def build_tiny_owlv2(folder: Path) -> None:
    """Save a tiny Owlv2ForObjectDetection (64 px, 8 px patches: 64 boxes) and its Owlv2Processor."""
    tokenizer = tiny_tokenizer()
    # The real OWLv2 pads every query to 16 tokens; the tiny tokenizer spends one token per character, so it gets 32.
    tokenizer.model_max_length = TINY_OWLV2_TEXT_LENGTH
    config = Owlv2Config(
        text_config={
            "hidden_size": 32,
            "intermediate_size": 37,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "vocab_size": 1000,
            "max_position_embeddings": TINY_OWLV2_TEXT_LENGTH,
            "bos_token_id": tokenizer.bos_token_id,
            "eos_token_id": tokenizer.eos_token_id,
            "pad_token_id": tokenizer.pad_token_id,
        },
        vision_config={
            "hidden_size": 32,
            "intermediate_size": 37,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "image_size": TINY_OWLV2_IMAGE_SIZE,
            "patch_size": 8,
        },
        projection_dim=32,  # must equal the vision width, else the class head fails with an einsum shape error
        # OWLv2 initialises its class and box heads with std = initializer_factor (1.0): the tiny model's scores
        # then saturate at 1 and its boxes collapse. At 0.1 scores spread over 0.26-0.96 and boxes are patch-sized.
        initializer_factor=0.1,
    )
    torch.manual_seed(0)
    model = Owlv2ForObjectDetection(config).eval()
    model.save_pretrained(folder, safe_serialization=True)
    image_processor = Owlv2ImageProcessorPil(
        size={"height": TINY_OWLV2_IMAGE_SIZE, "width": TINY_OWLV2_IMAGE_SIZE},
        image_mean=OPENAI_CLIP_MEAN,
        image_std=OPENAI_CLIP_STD,
    )
    Owlv2Processor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(folder)


TINY_GROUNDING_DINO_TEXT_LENGTH = 32


def build_tiny_grounding_dino(folder: Path) -> None:
    """Save a tiny GroundingDinoForObjectDetection (Swin backbone, no timm) and its GroundingDinoProcessor."""
    tokenizer = tiny_bert_tokenizer(with_blip_tokens=False)
    config = GroundingDinoConfig(
        backbone_config=SwinConfig(
            embed_dim=8,
            depths=[1, 1, 1, 1],
            num_heads=[1, 1, 1, 1],
            window_size=7,
            image_size=98,
            out_indices=[2, 3, 4],
        ),
        text_config=BertConfig(
            vocab_size=len(tokenizer),
            hidden_size=8,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=16,
            max_position_embeddings=64,
        ),
        use_timm_backbone=False,
        d_model=32,
        encoder_layers=1,
        decoder_layers=2,  # one would break the tying of the per-layer box heads (bbox_embed.0 to bbox_embed.N)
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=32,
        decoder_ffn_dim=32,
        num_queries=20,
        num_feature_levels=4,
        encoder_n_points=2,
        decoder_n_points=2,
        max_text_len=TINY_GROUNDING_DINO_TEXT_LENGTH,
    )
    torch.manual_seed(0)
    model = GroundingDinoForObjectDetection(config).eval()
    # Class logits are plain dot products of layer-normed 32-d vectors (std about 5.7), so the tiny model's scores
    # saturate at 1. Shrinking the decoder's output LayerNorm by 5 brings them to 0.4-0.98.
    with torch.no_grad():
        model.model.decoder.layer_norm.weight.mul_(0.2)
    model.save_pretrained(folder, safe_serialization=True)
    # The real processor resizes the short side to 800 (long side at most 1333). 128/192 keeps the tiny model cheap
    # while its coarsest (extra, stride-64) feature level keeps more than one pixel, which its GroupNorm needs.
    image_processor = GroundingDinoImageProcessorPil(
        size={"shortest_edge": 128, "longest_edge": 192}, image_mean=IMAGENET_MEAN, image_std=IMAGENET_STD
    )
    GroundingDinoProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(folder)


def tiny_owlv2_dir() -> Path:
    return publish_directory(build_tiny_owlv2, cache_dir() / "tiny" / "owlv2-v1")


def tiny_grounding_dino_dir() -> Path:
    return publish_directory(build_tiny_grounding_dino, cache_dir() / "tiny" / "grounding-dino-v1")


TINY_DETECTOR_BUILDERS = {"tiny-owlv2": tiny_owlv2_dir, "tiny-grounding-dino": tiny_grounding_dino_dir}
"""Tiny detector references; each detector also accepts plain "tiny" for its own family."""
