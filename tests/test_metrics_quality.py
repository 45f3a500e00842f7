"""The quality metrics: `aesthetic` (LAION v2 MLP), `vqascore` (InstructBLIP P("Yes")) and `imported-scores`.

Model metrics run on tiny random-weight models saved with `save_pretrained` and loaded through the real code; the
manual computations below load the same saved folders independently.
"""

from __future__ import annotations

import csv
import io
import json
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import safetensors.torch
import torch
import torch.nn.functional as F
from PIL import Image
from transformers import (
    CLIPImageProcessor,
    CLIPVisionModelWithProjection,
    InstructBlipForConditionalGeneration,
    InstructBlipProcessor,
    LlavaForConditionalGeneration,
    LlavaProcessor,
)

from ovi_bench.errors import ModelLoadError, OviBenchError
from ovi_bench.metrics.aesthetic import AestheticMetric, AestheticParams
from ovi_bench.metrics.base import ScoreInput
from ovi_bench.metrics.imported import ImportedScoresMetric, ImportedScoresParams
from ovi_bench.metrics.vqascore import (
    VQASCORE_INSTRUCTBLIP_ID,
    VQASCORE_LLAVA_ID,
    VQAScoreMetric,
    VQAScoreParams,
)
from ovi_bench.models.aesthetic import TINY_MLP_FILENAME, tiny_aesthetic_dir
from ovi_bench.models.instructblip import tiny_instructblip_dir
from ovi_bench.models.llava import tiny_llava_dir
from ovi_bench.registry import METRICS
from ovi_bench.store import RunStore

CPU = torch.device("cpu")
PROMPTS = ["a red cube", "two cats on the table", "a blue car", "three green trees"]

# Measured once from the tiny folders (torch.manual_seed(0) builds) and `_images()`; see the tests using them.
GOLDEN_TINY_AESTHETIC = [0.2268624, 0.2266674]
GOLDEN_TINY_VQASCORE = [0.0044280, 0.0044261]


def _images(count: int) -> list[Image.Image]:
    return [
        Image.fromarray(np.random.default_rng(index).integers(0, 256, (48, 48, 3), dtype=np.uint8))
        for index in range(count)
    ]


def _inputs(images: list[Image.Image], prompts: list[str]) -> list[ScoreInput]:
    return [ScoreInput(image, prompt, "color") for image, prompt in zip(images, prompts, strict=True)]


def test_registered() -> None:
    assert {"aesthetic", "vqascore", "imported-scores"} <= set(METRICS.names())


# -- aesthetic -----------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def aesthetic() -> AestheticMetric:
    return AestheticMetric(
        AestheticParams(weights="tiny", clip_model="tiny"), device=CPU, dtype=torch.float32
    )


def test_aesthetic_is_the_mlp_over_the_normalised_embedding(aesthetic: AestheticMetric) -> None:
    images = _images(3)
    rows = aesthetic.score(_inputs(images, PROMPTS[:3]))
    folder = tiny_aesthetic_dir()
    vision = CLIPVisionModelWithProjection.from_pretrained(folder / "clip", local_files_only=True).eval()
    processor = CLIPImageProcessor.from_pretrained(folder / "clip", local_files_only=True)
    weights = safetensors.torch.load_file(folder / TINY_MLP_FILENAME)
    with torch.no_grad():
        embeds = vision(**processor(images=images, return_tensors="pt")).image_embeds
        hidden = embeds / embeds.norm(dim=-1, keepdim=True)
        # The released MLP has no activations: five linear layers (dropouts are inactive at inference).
        for index in (0, 2, 4, 6, 7):
            hidden = F.linear(hidden, weights[f"layers.{index}.weight"], weights[f"layers.{index}.bias"])
    np.testing.assert_allclose([row.score for row in rows], hidden.squeeze(-1).numpy(), atol=1e-6)
    assert rows[0].reason == f"aesthetic {rows[0].score:.2f}"


def test_aesthetic_golden_values(aesthetic: AestheticMetric) -> None:
    rows = aesthetic.score(_inputs(_images(2), PROMPTS[:2]))
    assert [row.score for row in rows] == pytest.approx(GOLDEN_TINY_AESTHETIC, abs=1e-4)


def test_aesthetic_batch_independence(aesthetic: AestheticMetric) -> None:
    images = _images(4)
    together = aesthetic.score(_inputs(images, PROMPTS))
    alone = [
        aesthetic.score(_inputs([image], [prompt]))[0] for image, prompt in zip(images, PROMPTS, strict=True)
    ]
    np.testing.assert_allclose([r.score for r in together], [r.score for r in alone], atol=1e-6)
    assert aesthetic.score([]) == []


def _tiny_state() -> dict[str, torch.Tensor]:
    return safetensors.torch.load_file(tiny_aesthetic_dir() / TINY_MLP_FILENAME)


def test_aesthetic_reads_a_plain_pth_state_dict(aesthetic: AestheticMetric, tmp_path: Path) -> None:
    path = tmp_path / "mlp.pth"
    torch.save(OrderedDict(_tiny_state()), path)  # the released file is an OrderedDict of tensors
    from_pth = AestheticMetric(
        AestheticParams(weights=str(path), clip_model="tiny"), device=CPU, dtype=torch.float32
    )
    image = _images(1)
    assert (
        from_pth.score(_inputs(image, PROMPTS[:1]))[0].score
        == aesthetic.score(_inputs(image, PROMPTS[:1]))[0].score
    )


class PickledPayload:
    """Not a tensor: torch.load(weights_only=True) must refuse to rebuild it."""


def test_aesthetic_refuses_a_pth_with_pickled_objects(tmp_path: Path) -> None:
    path = tmp_path / "evil.pth"
    torch.save({**_tiny_state(), "payload": PickledPayload()}, path)
    with pytest.raises(ModelLoadError, match="weights_only=True"):
        AestheticMetric(
            AestheticParams(weights=str(path), clip_model="tiny"), device=CPU, dtype=torch.float32
        )


def test_aesthetic_refuses_wrong_shapes_and_missing_files(tmp_path: Path) -> None:
    state = _tiny_state()
    state["layers.0.weight"] = torch.zeros(1024, 768)  # the real width, with the tiny CLIP (width 16)
    path = tmp_path / "wrong.safetensors"
    safetensors.torch.save_file(state, path)
    with pytest.raises(ModelLoadError, match=r"wrong shapes \['layers.0.weight"):
        AestheticMetric(
            AestheticParams(weights=str(path), clip_model="tiny"), device=CPU, dtype=torch.float32
        )
    with pytest.raises(ModelLoadError, match=r"not found.*sac\+logos\+ava1-l14-linearMSE\.pth"):
        AestheticMetric(
            AestheticParams(weights=str(tmp_path / "absent.pth"), clip_model="tiny"),
            device=CPU,
            dtype=torch.float32,
        )


# -- vqascore ------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def vqascore() -> VQAScoreMetric:
    return VQAScoreMetric(VQAScoreParams(model="tiny"), device=CPU, dtype=torch.float32)


def test_vqascore_is_the_first_step_yes_probability(vqascore: VQAScoreMetric) -> None:
    images = _images(3)
    rows = vqascore.score(_inputs(images, PROMPTS[:3]))
    folder = tiny_instructblip_dir()
    model = InstructBlipForConditionalGeneration.from_pretrained(folder, local_files_only=True).eval()
    processor = InstructBlipProcessor.from_pretrained(folder, local_files_only=True)
    yes = processor.tokenizer.convert_tokens_to_ids("▁Yes")
    expected = []
    for image, prompt in zip(images, PROMPTS[:3], strict=True):
        question = f'Does this figure show "{prompt}"? Please answer yes or no.'
        inputs = processor(images=[image], text=[question], return_tensors="pt")
        assert inputs["input_ids"][0, :4].tolist() == [model.config.image_token_index] * 4  # the placeholders
        with torch.no_grad():
            logits = model(**inputs, decoder_input_ids=torch.zeros((1, 1), dtype=torch.long)).logits
        expected.append(logits[0, 0].softmax(-1)[yes].item())
    np.testing.assert_allclose([row.score for row in rows], expected, rtol=1e-5)
    assert all(0 < row.score < 1 for row in rows)
    assert rows[0].reason == f"P(yes) {rows[0].score:.2f}"


def test_vqascore_golden_values_and_inputs_matter(vqascore: VQAScoreMetric) -> None:
    images = _images(2)
    rows = vqascore.score(_inputs(images, [PROMPTS[0], PROMPTS[0]]))
    assert [row.score for row in rows] == pytest.approx(GOLDEN_TINY_VQASCORE, rel=1e-4)
    other_prompt = vqascore.score(_inputs(images[:1], [PROMPTS[1]]))[0].score
    assert rows[0].score != rows[1].score and rows[0].score != other_prompt


def test_vqascore_batch_independence(vqascore: VQAScoreMetric) -> None:
    images = _images(4)
    together = vqascore.score(_inputs(images, PROMPTS))
    alone = [
        vqascore.score(_inputs([image], [prompt]))[0] for image, prompt in zip(images, PROMPTS, strict=True)
    ]
    # Padding to the longest question changes float rounding only.
    np.testing.assert_allclose([r.score for r in together], [r.score for r in alone], rtol=1e-5)


def test_vqascore_template_is_validated_and_recorded() -> None:
    with pytest.raises(ValueError, match="exactly one"):
        VQAScoreParams(question_template="Is this an image?")
    default = VQAScoreMetric.fingerprint("vqascore", VQAScoreParams(model="tiny"), "float32")
    custom = VQAScoreMetric.fingerprint(
        "vqascore", VQAScoreParams(model="tiny", question_template='Is "{}" shown?'), "float32"
    )
    assert default != custom


# -- imported-scores -----------------------------------------------------------------------------------------------


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture
def run(tmp_path: Path) -> tuple[Path, list[Image.Image], list[str]]:
    """A run folder with three images (two priors share prompt p0, seed 0) in its store and manifest."""
    images = _images(3)
    keys = ["ab" + "1" * 62, "cd" + "2" * 62, "ef" + "3" * 62]
    metadata = [
        {"prior": "ovi", "prompt_id": "p0", "category": "color", "prompt": PROMPTS[0], "seed": 0},
        {"prior": "kandinsky", "prompt_id": "p0", "category": "color", "prompt": PROMPTS[0], "seed": 0},
        {"prior": "ovi", "prompt_id": "p1", "category": "color", "prompt": PROMPTS[1], "seed": 3},
    ]
    RunStore(tmp_path).put_images(
        [(key, _png(image), meta) for key, image, meta in zip(keys, images, metadata, strict=True)]
    )
    return tmp_path, images, keys


def _imported(path: Path, **params: object) -> ImportedScoresMetric:
    return ImportedScoresMetric(
        ImportedScoresParams(path=str(path), label="vqascore clip-flant5-xxl (t2v-metrics)", **params),
        device=CPU,
        dtype=torch.float32,
    )


def _write_csv(path: Path, rows: list[dict[str, object]]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def test_imported_by_image_path_and_file_name(run: tuple[Path, list[Image.Image], list[str]]) -> None:
    root, images, keys = run
    _write_csv(
        root / "t2v.csv",
        [
            {"image": f"images/{keys[0][:2]}/{keys[0]}.png", "score": 0.9},
            {"image": f"{keys[1]}.png", "score": 0.5},  # a bare file name, looked up in the store
            {"image": str(root / "images" / keys[2][:2] / f"{keys[2]}.png"), "score": 0.25},
        ],
    )
    rows = _imported(root / "t2v.csv").score(_inputs(images, [PROMPTS[0], PROMPTS[0], PROMPTS[1]]))
    assert [row.score for row in rows] == [0.9, 0.5, 0.25]
    assert rows[0].reason == "vqascore clip-flant5-xxl (t2v-metrics): 0.9000"


def test_imported_by_prompt_id_and_seed(
    run: tuple[Path, list[Image.Image], list[str]], tmp_path: Path
) -> None:
    root, images, _ = run
    rows = [
        {"prompt_id": "p0", "seed": 0, "prior": "ovi", "score": 0.1},
        {"prompt_id": "p0", "seed": 0, "prior": "kandinsky", "score": 0.2},
        {"prompt_id": "p1", "seed": 3, "score": 0.3},  # only one prior has it: no prior column needed
    ]
    (root / "scores.json").write_text(json.dumps(rows))
    scored = _imported(root / "scores.json", key="prompt_id_seed", score_column="score").score(
        _inputs(images, [PROMPTS[0], PROMPTS[0], PROMPTS[1]])
    )
    assert [row.score for row in scored] == [0.1, 0.2, 0.3]
    # Without the prior, (p0, 0) names two images.
    (root / "ambiguous.json").write_text(json.dumps([{"prompt_id": "p0", "seed": 0, "score": 0.1}]))
    with pytest.raises(OviBenchError, match=r"matches 2 images.*Add a `prior` column"):
        _imported(root / "ambiguous.json", key="prompt_id_seed")


def test_imported_by_prompt(run: tuple[Path, list[Image.Image], list[str]]) -> None:
    root, images, _ = run
    lines = [{"prompt": PROMPTS[0], "vqa": 0.7}, {"prompt": PROMPTS[1], "vqa": 0.4}]
    (root / "by-prompt.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    metric = _imported(root / "by-prompt.jsonl", key="prompt", score_column="vqa")
    assert [row.score for row in metric.score(_inputs(images[:2], PROMPTS[:2]))] == [0.7, 0.4]
    lines.append({"prompt": PROMPTS[0], "vqa": 0.1})
    (root / "by-prompt.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    with pytest.raises(OviBenchError, match="two different scores"):
        _imported(root / "by-prompt.jsonl", key="prompt", score_column="vqa")


def test_imported_missing_image_is_a_clear_error(run: tuple[Path, list[Image.Image], list[str]]) -> None:
    root, images, keys = run
    _write_csv(root / "partial.csv", [{"image": f"images/{keys[0][:2]}/{keys[0]}.png", "score": 0.9}])
    metric = _imported(root / "partial.csv")
    with pytest.raises(
        OviBenchError, match=r"1 image\(s\) have no score in the imported file '.*partial.csv'.*"
    ):
        metric.score(_inputs(images[:3], [PROMPTS[0], PROMPTS[0], PROMPTS[1]])[1:2])
    _write_csv(root / "dangling.csv", [{"image": "images/zz/nothing.png", "score": 0.9}])
    with pytest.raises(OviBenchError, match=r"do not exist, first: .*nothing\.png"):
        _imported(root / "dangling.csv")
    with pytest.raises(OviBenchError, match="no 'nope' value"):
        _imported(root / "partial.csv", score_column="nope")


def test_imported_fingerprint_follows_the_file(tmp_path: Path) -> None:
    path = tmp_path / "scores.csv"
    params = ImportedScoresParams(path=str(path), label="x", key="prompt")
    _write_csv(path, [{"prompt": "a", "score": 0.5}])
    before = ImportedScoresMetric.fingerprint("imported-scores", params, "float32")
    assert ImportedScoresMetric.fingerprint("imported-scores", params, "float32") == before
    _write_csv(path, [{"prompt": "a", "score": 0.6}])
    assert ImportedScoresMetric.fingerprint("imported-scores", params, "float32") != before


# -- vqascore, LLaVA-1.5 family ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def vqascore_llava() -> VQAScoreMetric:
    return VQAScoreMetric(VQAScoreParams(model="tiny", model_family="llava"), device=CPU, dtype=torch.float32)


def test_vqascore_llava_is_the_next_token_yes_probability(vqascore_llava: VQAScoreMetric) -> None:
    images = _images(3)
    rows = vqascore_llava.score(_inputs(images, PROMPTS[:3]))
    folder = tiny_llava_dir()
    model = LlavaForConditionalGeneration.from_pretrained(folder, local_files_only=True).eval()
    processor = LlavaProcessor.from_pretrained(folder, local_files_only=True)
    # After "ASSISTANT:" the Llama-style tokenizer writes " Yes" as the word-start token "▁Yes".
    yes = processor.tokenizer.convert_tokens_to_ids("▁Yes")
    assert vqascore_llava.yes_token_id == yes != processor.tokenizer.unk_token_id
    expected = []
    for image, prompt in zip(images, PROMPTS[:3], strict=True):
        text = f'USER: <image>\nDoes this figure show "{prompt}"? Please answer yes or no. ASSISTANT:'
        inputs = processor(images=[image], text=[text], return_tensors="pt")
        ids = inputs["input_ids"][0].tolist()
        assert ids[0] == processor.tokenizer.bos_token_id
        assert ids.count(model.config.image_token_index) == 16  # (32 / 8) ** 2 patches, CLS dropped
        with torch.no_grad():
            logits = model(**inputs).logits
        expected.append(logits[0, -1].softmax(-1)[yes].item())
    np.testing.assert_allclose([row.score for row in rows], expected, rtol=1e-5)
    assert all(0 < row.score < 1 for row in rows)
    assert rows[0].reason == f"P(yes) {rows[0].score:.2f}"


def test_vqascore_llava_inputs_matter(vqascore_llava: VQAScoreMetric) -> None:
    images = _images(2)
    rows = vqascore_llava.score(_inputs(images, [PROMPTS[0], PROMPTS[0]]))
    other_prompt = vqascore_llava.score(_inputs(images[:1], [PROMPTS[1]]))[0].score
    assert rows[0].score != rows[1].score and rows[0].score != other_prompt


def test_vqascore_llava_batch_independence(vqascore_llava: VQAScoreMetric) -> None:
    images = _images(4)
    together = vqascore_llava.score(_inputs(images, PROMPTS))
    alone = [
        vqascore_llava.score(_inputs([image], [prompt]))[0]
        for image, prompt in zip(images, PROMPTS, strict=True)
    ]
    # Left padding with positions counted from each row's first token changes float rounding only.
    np.testing.assert_allclose([r.score for r in together], [r.score for r in alone], rtol=1e-5)


def test_vqascore_family_defaults_and_fingerprint() -> None:
    assert VQAScoreParams().model == VQASCORE_INSTRUCTBLIP_ID
    assert VQAScoreParams(model_family="llava").model == VQASCORE_LLAVA_ID
    assert VQAScoreParams(model_family="llava", model="tiny").model == "tiny"
    with pytest.raises(ValueError):
        VQAScoreParams(model_family="qwen2-vl")
    instructblip = VQAScoreMetric.fingerprint("vqascore", VQAScoreParams(model="tiny"), "float32")
    explicit = VQAScoreMetric.fingerprint(
        "vqascore", VQAScoreParams(model="tiny", model_family="instructblip"), "float32"
    )
    llava = VQAScoreMetric.fingerprint(
        "vqascore", VQAScoreParams(model="tiny", model_family="llava"), "float32"
    )
    assert instructblip == explicit != llava
