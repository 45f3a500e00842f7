"""The T2I-CompBench evaluator wrappers (BLIP VQA, OWLv2, Grounding DINO, DPT hybrid, Depth Anything) on tiny models
built in code, saved to the cache and loaded back through the real `from_pretrained` code."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import (
    BlipForQuestionAnswering,
    BlipProcessor,
    DepthAnythingForDepthEstimation,
    DPTForDepthEstimation,
    GroundingDinoForObjectDetection,
    Owlv2ForObjectDetection,
)
from transformers.models.blip.configuration_blip import BlipTextConfig

from ovi_bench.errors import ModelLoadError
from ovi_bench.models.clip import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD
from ovi_bench.models.evaluators import (
    TINY_BLIP_BUILDERS,
    TINY_DEPTH_BUILDERS,
    TINY_DETECTOR_BUILDERS,
    BlipVQA,
    DepthEstimator,
    Detector,
    GroundingDinoDetector,
    Owlv2Detector,
    RawDetection,
    blip_encoder_token_id,
    box_iou,
    class_wise_nms,
    make_detector,
    quantise_like_png,
    tiny_blip_vqa_dir,
    tiny_depth_anything_dir,
    tiny_dpt_hybrid_dir,
    tiny_grounding_dino_dir,
    tiny_owlv2_dir,
)
from ovi_bench.models.evaluators.blip import build_tiny_blip_vqa, tiny_bert_tokenizer
from ovi_bench.models.evaluators.depth import build_tiny_depth_anything, build_tiny_dpt_hybrid
from ovi_bench.models.evaluators.detectors import build_tiny_grounding_dino, build_tiny_owlv2
from ovi_bench.models.hub import resolve_model
from ovi_bench.paths import cache_dir

CPU = torch.device("cpu")
F32 = torch.float32

# Batching changes only float rounding (measured: at most 6e-7 for depth, 0 elsewhere).
BATCH_ATOL = 1e-5
# Golden values were generated once from the saved tiny folders on CPU, float32. 1e-4 leaves room for BLAS and
# thread-count differences and still catches any real change; boxes are pixels, hence 1e-3 px.
GOLDEN_ATOL = 1e-4
GOLDEN_BOX_ATOL = 1e-3


def _noise(height: int, width: int, seed: int) -> Image.Image:
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    return Image.fromarray(pixels)


@pytest.fixture(scope="module")
def blip() -> BlipVQA:
    return BlipVQA("tiny", device=CPU, dtype=F32)


@pytest.fixture(scope="module")
def owlv2() -> Owlv2Detector:
    return Owlv2Detector("tiny", device=CPU, dtype=F32, threshold=0.0, nms_iou=None)


@pytest.fixture(scope="module")
def grounding_dino() -> GroundingDinoDetector:
    return GroundingDinoDetector("tiny", device=CPU, dtype=F32, threshold=0.0, nms_iou=None)


@pytest.fixture(scope="module")
def dpt() -> DepthEstimator:
    return DepthEstimator("tiny", device=CPU, dtype=F32)


@pytest.fixture(scope="module")
def depth_anything() -> DepthEstimator:
    return DepthEstimator("tiny-depth-anything", device=CPU, dtype=F32)


# --- tiny folders --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("build", "folder", "model_class"),
    [
        (build_tiny_blip_vqa, tiny_blip_vqa_dir, BlipForQuestionAnswering),
        (build_tiny_owlv2, tiny_owlv2_dir, Owlv2ForObjectDetection),
        (build_tiny_grounding_dino, tiny_grounding_dino_dir, GroundingDinoForObjectDetection),
        (build_tiny_dpt_hybrid, tiny_dpt_hybrid_dir, DPTForDepthEstimation),
        (build_tiny_depth_anything, tiny_depth_anything_dir, DepthAnythingForDepthEstimation),
    ],
)
def test_tiny_folders_are_deterministic_and_load_back(build, folder, model_class, tmp_path: Path) -> None:
    cached = folder()
    assert cached.parent == cache_dir() / "tiny" and cached.name.endswith("-v1")
    assert (cached / "config.json").is_file() and (cached / "model.safetensors").is_file()
    build(tmp_path / "again")
    saved = model_class.from_pretrained(cached, local_files_only=True).state_dict()
    rebuilt = model_class.from_pretrained(tmp_path / "again", local_files_only=True).state_dict()
    assert saved.keys() == rebuilt.keys()
    for name, tensor in saved.items():
        assert torch.equal(tensor, rebuilt[name]), name


def test_tiny_names_resolve_to_the_cache_folders() -> None:
    assert resolve_model("tiny", TINY_BLIP_BUILDERS) == str(tiny_blip_vqa_dir())
    assert resolve_model("tiny-owlv2", TINY_DETECTOR_BUILDERS) == str(tiny_owlv2_dir())
    assert resolve_model("tiny-grounding-dino", TINY_DETECTOR_BUILDERS) == str(tiny_grounding_dino_dir())
    assert resolve_model("tiny", TINY_DEPTH_BUILDERS) == str(tiny_dpt_hybrid_dir())
    assert resolve_model("tiny-depth-anything", TINY_DEPTH_BUILDERS) == str(tiny_depth_anything_dir())


@pytest.mark.parametrize(
    "load",
    [
        lambda ref: BlipVQA(ref, device=CPU, dtype=F32),
        lambda ref: Owlv2Detector(ref, device=CPU, dtype=F32),
        lambda ref: GroundingDinoDetector(ref, device=CPU, dtype=F32),
        lambda ref: DepthEstimator(ref, device=CPU, dtype=F32),
    ],
    ids=["blip", "owlv2", "grounding-dino", "depth"],
)
def test_missing_model_offline_raises_model_load_error_with_the_fix(load) -> None:
    # conftest sets HF_HUB_OFFLINE=1 and an empty cache: the id cannot be found and must not be fetched.
    with pytest.raises(ModelLoadError, match=r"hf download ovi-bench-test/no-such-model"):
        load("ovi-bench-test/no-such-model")


def test_depth_estimator_rejects_a_model_that_is_not_a_depth_model() -> None:
    with pytest.raises(ModelLoadError, match="supports DPT"):
        DepthEstimator(str(tiny_blip_vqa_dir()), device=CPU, dtype=F32)


# --- BLIP VQA --------------------------------------------------------------------------------------------------------

GOLDEN_YES_PROBABILITIES = [[0.1763261, 0.4445277], [0.2530003]]


@pytest.fixture(scope="module")
def saved_blip() -> tuple[BlipForQuestionAnswering, BlipProcessor]:
    folder = tiny_blip_vqa_dir()
    model = BlipForQuestionAnswering.from_pretrained(folder, local_files_only=True).eval()
    return model, BlipProcessor.from_pretrained(folder, local_files_only=True)


def _manual_yes_probability(
    saved_blip: tuple[BlipForQuestionAnswering, BlipProcessor],
    image: Image.Image,
    question: str,
    first_token: str,
) -> float:
    """The official `vqa_prob` written out on the saved folder's sub-modules, one unpadded question at a time."""
    model, processor = saved_blip
    tokenizer = processor.tokenizer
    with torch.no_grad():
        pixels = processor.image_processor(
            images=[image], size={"height": 480, "width": 480}, return_tensors="pt"
        )
        image_states = model.vision_model(
            pixels["pixel_values"], interpolate_pos_encoding=True
        ).last_hidden_state
        input_ids = tokenizer([question], return_tensors="pt")["input_ids"]
        assert input_ids[0, 0] == tokenizer.cls_token_id
        input_ids[0, 0] = tokenizer.convert_tokens_to_ids(first_token)
        question_states = model.text_encoder(
            input_ids=input_ids,
            attention_mask=torch.ones_like(input_ids),
            encoder_hidden_states=image_states,
            encoder_attention_mask=torch.ones(image_states.shape[:-1], dtype=torch.long),
        ).last_hidden_state
        start = torch.tensor([[tokenizer.convert_tokens_to_ids("[DEC]")]])
        logits = model.text_decoder(input_ids=start, encoder_hidden_states=question_states).logits[0, 0]
    probabilities = torch.softmax(logits, dim=-1)
    yes = probabilities[tokenizer.convert_tokens_to_ids("yes")]
    no = probabilities[tokenizer.convert_tokens_to_ids("no")]
    return float(yes / (yes + no))


def test_yes_probabilities_match_the_official_computation_with_enc(blip: BlipVQA, saved_blip) -> None:
    images = [_noise(48, 64, 0), _noise(64, 40, 1)]
    questions = [["a red cube?", "a green wooden bench on the left?"], ["two cats?"]]
    wrapped = blip.yes_probabilities(images, questions)
    for image, image_questions, image_scores in zip(images, questions, wrapped, strict=True):
        for question, score in zip(image_questions, image_scores, strict=True):
            assert 0.0 < score < 1.0
            assert score == pytest.approx(
                _manual_yes_probability(saved_blip, image, question, "[ENC]"), abs=1e-6
            )
            # [ENC] in place of [CLS] matters: keeping [CLS] (transformers' default) gives another answer.
            with_cls = _manual_yes_probability(saved_blip, image, question, "[CLS]")
            assert abs(score - with_cls) > 1e-3


def test_yes_probabilities_golden_values(blip: BlipVQA) -> None:
    scores = blip.yes_probabilities(
        [_noise(48, 64, 0), _noise(64, 40, 1)],
        [["a red cube?", "a green wooden bench on the left?"], ["two cats?"]],
    )
    np.testing.assert_allclose(
        np.concatenate(scores), np.concatenate(GOLDEN_YES_PROBABILITIES), atol=GOLDEN_ATOL, rtol=0
    )


def test_yes_probabilities_do_not_depend_on_the_batch(blip: BlipVQA) -> None:
    images = [_noise(48, 64, 0), _noise(30, 30, 2), _noise(64, 40, 1)]
    # Questions of different lengths, so a batch pads them.
    questions = [
        ["a red cube?", "a green wooden bench on the left?"],
        [],
        ["two cats?", "a dog?", "a tall tree?"],
    ]
    together = blip.yes_probabilities(images, questions)
    assert together[1] == []
    for image, image_questions, scores in zip(images, questions, together, strict=True):
        alone = blip.yes_probabilities([image], [image_questions])[0]
        np.testing.assert_allclose(scores, alone, atol=BATCH_ATOL, rtol=0)
        one_at_a_time = [blip.yes_probabilities([image], [[question]])[0][0] for question in image_questions]
        np.testing.assert_allclose(scores, one_at_a_time, atol=BATCH_ATOL, rtol=0)


def test_blip_preprocessing_is_the_official_480_px_transform(blip: BlipVQA) -> None:
    image = _noise(37, 53, 3)
    assert (
        blip.image_size == 480 and blip.interpolate_pos_encoding
    )  # the tiny model, like the real one, is 384 px
    # Official: torchvision Resize((480, 480), BICUBIC) on the PIL image, ToTensor, Normalize(CLIP mean, CLIP std).
    resized = np.asarray(image.resize((480, 480), Image.Resampling.BICUBIC), dtype=np.float32) / 255.0
    expected = (resized - np.array(OPENAI_CLIP_MEAN, dtype=np.float32)) / np.array(
        OPENAI_CLIP_STD, dtype=np.float32
    )
    np.testing.assert_allclose(
        blip.pixel_values([image])[0].permute(1, 2, 0).numpy(), expected, atol=1e-5, rtol=0
    )


def test_questions_start_with_enc_and_are_truncated_like_the_official_code(blip: BlipVQA) -> None:
    input_ids, attention_mask = blip.question_tokens(["a red cube?", " ".join(["red"] * 60) + "?"])
    assert input_ids.shape == (2, 35)
    assert (input_ids[:, 0] == blip.encoder_token_id).all()
    assert attention_mask[0].sum() == 6  # [ENC] a red cube ? [SEP]
    assert attention_mask[1].sum() == 35


def test_enc_id_follows_blips_numbering_when_the_tokenizer_lacks_it() -> None:
    # Like the hub tokenizer: plain BERT vocabulary, [DEC] and [ENC] only in the model's embedding table.
    tokenizer = tiny_bert_tokenizer(with_blip_tokens=False)
    size = len(tokenizer)
    config = BlipTextConfig(vocab_size=size + 2, bos_token_id=size)
    assert blip_encoder_token_id(tokenizer, config) == size + 1
    with pytest.raises(ValueError, match="cannot place"):
        blip_encoder_token_id(tokenizer, BlipTextConfig(vocab_size=size + 1, bos_token_id=size))
    with_tokens = tiny_bert_tokenizer()
    assert blip_encoder_token_id(with_tokens, config) == with_tokens.convert_tokens_to_ids("[ENC]")


def test_blip_rejects_mismatched_inputs(blip: BlipVQA) -> None:
    with pytest.raises(ValueError, match="one list per image"):
        blip.yes_probabilities([_noise(8, 8, 0)], [["a cat?"], ["a dog?"]])
    with pytest.raises(ValueError, match="non-empty"):
        blip.yes_probabilities([_noise(8, 8, 0)], [[" "]])
    assert blip.yes_probabilities([_noise(8, 8, 0)], [[]]) == [[]]


# --- detectors -------------------------------------------------------------------------------------------------------


def _detection(label: str, score: float, box: tuple[float, float, float, float]) -> RawDetection:
    return RawDetection(label=label, score=score, box=box)


def test_box_iou_exact_values() -> None:
    boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 0.0, 0.0]])
    others = torch.tensor([[5.0, 0.0, 15.0, 10.0], [0.0, 0.0, 10.0, 10.0], [20.0, 20.0, 30.0, 30.0]])
    expected = torch.tensor([[50 / 150, 1.0, 0.0], [0.0, 0.0, 0.0]])
    torch.testing.assert_close(box_iou(boxes, others), expected)


def test_class_wise_nms_suppresses_overlaps_within_a_label_only() -> None:
    cat_best = _detection("cat", 0.9, (0.0, 0.0, 10.0, 10.0))
    cat_overlapping = _detection("cat", 0.8, (1.0, 1.0, 11.0, 11.0))  # IoU 81/119 = 0.68 with cat_best
    cat_elsewhere = _detection("cat", 0.7, (20.0, 20.0, 30.0, 30.0))
    dog_same_place = _detection("dog", 0.85, (0.0, 0.0, 10.0, 10.0))
    detections = [cat_overlapping, cat_elsewhere, dog_same_place, cat_best]
    assert class_wise_nms(detections, 0.5) == [cat_best, dog_same_place, cat_elsewhere]
    # The rule is IoU > threshold: at 0.7 the two cats overlap too little to suppress.
    assert class_wise_nms(detections, 0.7) == [cat_best, dog_same_place, cat_overlapping, cat_elsewhere]
    assert class_wise_nms([], 0.5) == []


def _all_detectors(owlv2: Owlv2Detector, grounding_dino: GroundingDinoDetector) -> list[Detector]:
    return [owlv2, grounding_dino]


DETECTION_IMAGES = [(40, 80, 10), (64, 64, 11), (40, 80, 12)]  # (height, width, seed): two of one size
DETECTION_QUERIES = [["a cat", "a dog"], ["a red bench", "a tree", "a bird"], ["a cat"]]


def _detection_images() -> list[Image.Image]:
    return [_noise(height, width, seed) for height, width, seed in DETECTION_IMAGES]


@pytest.mark.parametrize("which", ["owlv2", "grounding-dino"])
def test_detections_are_queries_sorted_inside_the_image(which: str, owlv2, grounding_dino) -> None:
    detector = owlv2 if which == "owlv2" else grounding_dino
    assert isinstance(detector, Detector)
    images = _detection_images()
    results = detector.detect(images, DETECTION_QUERIES)
    for image, queries, detections in zip(images, DETECTION_QUERIES, results, strict=True):
        assert detections, "threshold 0 keeps every box"
        assert all(detection.label in queries for detection in detections)
        scores = [detection.score for detection in detections]
        assert scores == sorted(scores, reverse=True) and all(0.0 < score < 1.0 for score in scores)
        for x1, y1, x2, y2 in (detection.box for detection in detections):
            assert 0.0 <= x1 <= x2 <= image.width and 0.0 <= y1 <= y2 <= image.height


@pytest.mark.parametrize("which", ["owlv2", "grounding-dino"])
def test_detections_do_not_depend_on_the_batch(which: str, owlv2, grounding_dino) -> None:
    detector = owlv2 if which == "owlv2" else grounding_dino
    images = _detection_images()
    together = detector.detect(images, DETECTION_QUERIES)
    for image, queries, detections in zip(images, DETECTION_QUERIES, together, strict=True):
        alone = detector.detect([image], [queries])[0]
        assert [detection.label for detection in detections] == [detection.label for detection in alone]
        np.testing.assert_allclose(
            [detection.score for detection in detections], [d.score for d in alone], atol=BATCH_ATOL, rtol=0
        )
        np.testing.assert_allclose(
            [detection.box for detection in detections], [d.box for d in alone], atol=GOLDEN_BOX_ATOL, rtol=0
        )


@pytest.mark.parametrize("which", ["owlv2", "grounding-dino"])
def test_threshold_keeps_exactly_the_scores_above_it(which: str) -> None:
    make = Owlv2Detector if which == "owlv2" else GroundingDinoDetector
    images = _detection_images()
    everything = make("tiny", device=CPU, dtype=F32, threshold=0.0, nms_iou=None).detect(
        images, DETECTION_QUERIES
    )
    threshold = float(np.median([detection.score for detection in everything[0]]))
    kept = make("tiny", device=CPU, dtype=F32, threshold=threshold, nms_iou=None).detect(
        images, DETECTION_QUERIES
    )
    for before, after in zip(everything, kept, strict=True):
        assert after == [detection for detection in before if detection.score > threshold]
    assert 0 < len(kept[0]) < len(everything[0])


def test_owlv2_boxes_of_a_non_square_image_map_back_to_it(owlv2: Owlv2Detector) -> None:
    # OWLv2 pads at the bottom with zeros (black) to a square: the padded square image gives the same model input,
    # and its boxes, clipped to the original image, must be the non-square image's boxes.
    image = _noise(40, 80, 13)
    square = Image.new("RGB", (80, 80), (0, 0, 0))
    square.paste(image, (0, 0))
    queries = [["a cat", "a dog"]]
    from_image = owlv2.detect([image], queries)[0]
    from_square = owlv2.detect([square], queries)[0]
    assert [d.label for d in from_image] == [d.label for d in from_square]
    np.testing.assert_allclose(
        [d.score for d in from_image], [d.score for d in from_square], atol=1e-6, rtol=0
    )
    clipped = [(x1, min(y1, 40.0), x2, min(y2, 40.0)) for x1, y1, x2, y2 in (d.box for d in from_square)]
    np.testing.assert_allclose([d.box for d in from_image], clipped, atol=GOLDEN_BOX_ATOL, rtol=0)
    assert any(d.box[3] > 40.0 for d in from_square), "some square boxes reach into the padding"
    assert max(d.box[2] for d in from_image) > 60.0, "boxes span the whole width, not a squeezed square"


def test_owlv2_padding_queries_never_become_labels(owlv2: Owlv2Detector) -> None:
    # One image with one query beside one with three: the processor pads the first with " " queries.
    images = [_noise(64, 64, 14), _noise(64, 64, 15)]
    results = owlv2.detect(images, [["a cat"], ["a red bench", "a tree", "a bird"]])
    assert {detection.label for detection in results[0]} == {"a cat"}


def test_grounding_dino_rejects_queries_with_dots(grounding_dino: GroundingDinoDetector) -> None:
    with pytest.raises(ValueError, match="cannot contain"):
        grounding_dino.detect([_noise(32, 32, 0)], [["a cat. a dog"]])


def test_detectors_skip_images_without_queries(owlv2, grounding_dino) -> None:
    for detector in _all_detectors(owlv2, grounding_dino):
        assert detector.detect([_noise(32, 32, 0)], [[]]) == [[]]
        with pytest.raises(ValueError, match="one list per image"):
            detector.detect([_noise(32, 32, 0)], [])


def test_make_detector_builds_each_kind_with_its_defaults() -> None:
    owlv2 = make_detector("owlv2", "tiny", device=CPU, dtype=F32)
    assert isinstance(owlv2, Owlv2Detector) and owlv2.threshold == 0.1 and owlv2.nms_iou == 0.5
    grounding_dino = make_detector(
        "grounding-dino", "tiny", device=CPU, dtype=F32, threshold=0.3, nms_iou=None
    )
    assert isinstance(grounding_dino, GroundingDinoDetector)
    assert grounding_dino.threshold == 0.3 and grounding_dino.nms_iou is None
    with pytest.raises(ValueError, match="unknown detector kind"):
        make_detector("unidet", "tiny", device=CPU, dtype=F32)  # type: ignore[arg-type]


GOLDEN_FIRST_DETECTIONS = {
    "owlv2": [
        ("a cat", 0.868934, (64.0755, 26.5064, 74.1530, 36.7058)),
        ("a dog", 0.847025, (53.3976, 4.7242, 64.1181, 15.1817)),
        ("a cat", 0.789833, (5.0760, 14.5081, 14.6880, 25.2760)),
    ],
    "grounding-dino": [
        ("a cat", 0.959871, (43.0, 10.6667, 47.0, 12.6667)),
        ("a dog", 0.895619, (43.0, 14.0, 47.0, 16.0)),
        ("a cat", 0.893964, (72.6667, 14.6667, 80.0, 18.6667)),
    ],
}


@pytest.mark.parametrize("which", ["owlv2", "grounding-dino"])
def test_first_detections_golden_values(which: str) -> None:
    # The default NMS (IoU 0.5) on, threshold 0 so that the tiny model's scores all count.
    detector = make_detector(which, "tiny", device=CPU, dtype=F32, threshold=0.0)  # type: ignore[arg-type]
    detections = detector.detect(_detection_images(), DETECTION_QUERIES)[0][:3]
    golden = GOLDEN_FIRST_DETECTIONS[which]
    assert [detection.label for detection in detections] == [label for label, _, _ in golden]
    np.testing.assert_allclose(
        [d.score for d in detections], [s for _, s, _ in golden], atol=GOLDEN_ATOL, rtol=0
    )
    np.testing.assert_allclose(
        [d.box for d in detections], [b for _, _, b in golden], atol=GOLDEN_BOX_ATOL, rtol=0
    )


# --- depth -----------------------------------------------------------------------------------------------------------

DEPTH_IMAGES = [(40, 80, 20), (56, 48, 21), (40, 80, 22)]  # (height, width, seed)


def _depth_images() -> list[Image.Image]:
    return [_noise(height, width, seed) for height, width, seed in DEPTH_IMAGES]


@pytest.mark.parametrize("which", ["dpt", "depth-anything"])
def test_depth_maps_have_the_original_size_and_lie_in_0_1(which: str, dpt, depth_anything) -> None:
    estimator = dpt if which == "dpt" else depth_anything
    images = _depth_images()
    maps = estimator.depth(images)
    for image, depth_map in zip(images, maps, strict=True):
        assert depth_map.dtype == np.float32 and depth_map.shape == (image.height, image.width)
        assert depth_map.min() >= 0.0 and depth_map.max() <= 1.0
        assert depth_map.max() - depth_map.min() > 0.3, "min–max normalised, not a flat map"


@pytest.mark.parametrize("which", ["dpt", "depth-anything"])
def test_depth_does_not_depend_on_the_batch(which: str, dpt, depth_anything) -> None:
    estimator = dpt if which == "dpt" else depth_anything
    images = _depth_images()
    together = estimator.depth(images)
    for image, depth_map in zip(images, together, strict=True):
        np.testing.assert_allclose(depth_map, estimator.depth([image])[0], atol=BATCH_ATOL, rtol=0)


def test_depth_8_bit_option_reproduces_the_png_round_trip(dpt: DepthEstimator) -> None:
    images = _depth_images()
    quantised = DepthEstimator("tiny", device=CPU, dtype=F32, quantise_8bit=True).depth(images)
    for exact, rounded in zip(dpt.depth(images), quantised, strict=True):
        levels = rounded * 255
        np.testing.assert_allclose(levels, np.round(levels), atol=1e-4, rtol=0)
        np.testing.assert_array_equal(rounded, quantise_like_png(exact))
        # PIL's float-to-8-bit conversion truncates.
        np.testing.assert_allclose(rounded, np.floor(exact * 255 + 1e-4) / 255, atol=1 / 255 + 1e-6, rtol=0)
        assert np.all(rounded <= exact + 1e-6)


def test_dpt_preprocessing_is_the_official_480_px_transform(dpt: DepthEstimator) -> None:
    assert dpt.input_size == 480
    image = _noise(37, 53, 23)
    # Official: torchvision Resize([480, 480]) (bilinear) on the PIL image, ToTensor, Normalize(0.5, 0.5).
    resized = np.asarray(image.resize((480, 480), Image.Resampling.BILINEAR), dtype=np.float32) / 255.0
    expected = (resized - 0.5) / 0.5
    np.testing.assert_allclose(
        dpt.pixel_values([image])[0].permute(1, 2, 0).numpy(), expected, atol=1e-5, rtol=0
    )


def test_depth_input_size_must_fit_the_patches() -> None:
    with pytest.raises(ValueError, match="multiple of the patch size"):
        DepthEstimator("tiny", device=CPU, dtype=F32, input_size=100)
    assert DepthEstimator("tiny-depth-anything", device=CPU, dtype=F32).input_size is None


# (row, column) -> value in the first depth image (40×80), and the map's mean; pixels chosen where the tiny models'
# ReLU output is not zero, plus one where it is.
GOLDEN_DEPTH = {
    "dpt": ({(0, 64): 0.4516771, (20, 0): 0.6401160, (30, 24): 0.5818775, (39, 79): 0.0}, 0.0462777),
    "depth-anything": (
        {(25, 56): 0.7562380, (20, 72): 0.4958114, (0, 56): 0.1148137, (39, 0): 0.0},
        0.1001948,
    ),
}


@pytest.mark.parametrize("which", ["dpt", "depth-anything"])
def test_depth_golden_values(which: str, dpt, depth_anything) -> None:
    estimator = dpt if which == "dpt" else depth_anything
    depth_map = estimator.depth(_depth_images()[:1])[0]
    pixels, mean = GOLDEN_DEPTH[which]
    values = [depth_map[row, column] for row, column in pixels]
    np.testing.assert_allclose(values, list(pixels.values()), atol=GOLDEN_ATOL, rtol=0)
    assert float(depth_map.mean()) == pytest.approx(mean, abs=GOLDEN_ATOL)
