"""`vqascore`: VQAScore (Lin et al. 2024), the probability that a vision-language model answers "Yes" to
`Does this figure show "{prompt}"? Please answer yes or no.`

The score of an image is the softmax probability of the "Yes" token at the first decoder step of an
encoder-decoder VLM, given the image and the question. This is how t2v-metrics (linzhiqiu/t2v_metrics) defines
VQAScore for its CLIP-FlanT5 and InstructBLIP-FlanT5 models: the same question template and P("Yes"), without
renormalising against "No".

Model families (`model_family`):
* "instructblip" (default): InstructBLIP with a FlanT5 language model (`InstructBlipForConditionalGeneration`,
  default `Salesforce/instructblip-flan-t5-xl`; `Salesforce/instructblip-flan-t5-xxl` also works). P("Yes") at the
  first decoder step.
* "llava": LLaVA-1.5 (`LlavaForConditionalGeneration` + its `LlavaProcessor`, default `llava-hf/llava-1.5-7b-hf`),
  decoder-only. The question is put in LLaVA-1.5's conversation format, written literally as
  `USER: <image>\n{question} ASSISTANT:`, the LLaVA-1.5 prompt of llava-hf's model cards and (as far as known here,
  not checked offline) what the hub processor's chat template renders for one user turn with one image and
  `add_generation_prompt=True`. The literal string is used rather than `apply_chat_template`, because the tiny
  processor has no chat template and both must get the same prompt. P("Yes") is the softmax of the next-token logits
  at the last prompt position, at the id of the first token the tokenizer writes for " Yes" after "ASSISTANT:"
  (Llama's SentencePiece BPE: "▁Yes", with the word-start marker, a different id from a bare "Yes").
  Prompts are left-padded, with position ids counted from each row's first real token, so a batch scores as its rows
  alone.
t2v-metrics' best model, CLIP-FlanT5-XXL (`zhiqiulin/clip-flant5-xxl`), has no `transformers` class: for those exact
numbers run t2v-metrics in its own environment and import its scores with the `imported-scores` metric.

Tiny: `model = "tiny"` is a random-weight InstructBLIP-FlanT5 (`ovi_bench.models.instructblip`), or with
`model_family = "llava"` a random-weight LLaVA (`ovi_bench.models.llava`), built in code and loaded like the real ones.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
from pydantic import Field, field_validator, model_validator

from ovi_bench.components import ModelNeed, Params, model_files
from ovi_bench.errors import ModelLoadError
from ovi_bench.metrics.base import Metric, ScoreInput, ScoreRow
from ovi_bench.models.instructblip import load_instructblip
from ovi_bench.models.llava import load_llava
from ovi_bench.text import short_repr

VQASCORE_INSTRUCTBLIP_ID = "Salesforce/instructblip-flan-t5-xl"
VQASCORE_LLAVA_ID = "llava-hf/llava-1.5-7b-hf"
VQASCORE_DEFAULT_MODELS = {"instructblip": VQASCORE_INSTRUCTBLIP_ID, "llava": VQASCORE_LLAVA_ID}
LLAVA_PROMPT_FORMAT = "USER: <image>\n{} ASSISTANT:"
"""LLaVA-1.5's conversation format for one question about one image (`{}` is the question)."""
LLAVA_ANSWER_PREFIX = "ASSISTANT:"
VQASCORE_QUESTION_TEMPLATE = 'Does this figure show "{}"? Please answer yes or no.'
"""t2v-metrics' default question template (`{}` is replaced by the prompt)."""
VQASCORE_ANSWER = "Yes"


class VQAScoreParams(Params):
    model: str = VQASCORE_INSTRUCTBLIP_ID
    """The VLM: a Hugging Face id, a local folder or "tiny". Left out, the family's default:
    Salesforce/instructblip-flan-t5-xl (about 16 GB in float32; use dtype bfloat16 on a GPU) for "instructblip",
    llava-hf/llava-1.5-7b-hf (about 28 GB in float32) for "llava"."""
    model_family: Literal["instructblip", "llava"] = "instructblip"
    """How the model is loaded and asked: "instructblip" (InstructBlipForConditionalGeneration with a FlanT5
    language model) or "llava" (LLaVA-1.5, LlavaForConditionalGeneration). Qwen2-VL is not supported yet."""
    question_template: str = Field(VQASCORE_QUESTION_TEMPLATE)
    """The question; `{}` is replaced by the prompt. The default is t2v-metrics' VQAScore template."""

    @model_validator(mode="before")
    @classmethod
    def _family_default_model(cls, data: object) -> object:
        # A spec that names the family but not the model gets the family's default (the stored value, so the
        # fingerprint names the model actually used); instructblip's default is the field's, so its fingerprints
        # are unchanged.
        if isinstance(data, dict) and data.get("model") is None:
            family = data.get("model_family", "instructblip")
            # A non-string family (a list, say) is left for the field's own check to refuse by name.
            if isinstance(family, str) and family in VQASCORE_DEFAULT_MODELS:
                data = {**data, "model": VQASCORE_DEFAULT_MODELS[family]}
        return data

    @field_validator("question_template")
    @classmethod
    def _has_one_placeholder(cls, value: str) -> str:
        if value.count("{}") != 1:
            raise ValueError(
                f"question_template must contain exactly one '{{}}' for the prompt, got {short_repr(value)}"
            )
        return value


def first_token_yes_probability(first_step_logits: torch.Tensor, yes_token_id: int) -> torch.Tensor:
    """P("Yes") from the [B, vocab] logits of the first decoder step: a softmax over the whole vocabulary."""
    return first_step_logits.to(torch.float32).softmax(dim=-1)[:, yes_token_id]


class VQAScoreMetric(Metric):
    """VQAScore: P("Yes") of a VLM asked whether the image shows the prompt (t2v-metrics' template)."""

    Params = VQAScoreParams
    version = "1"
    categories = None
    higher_is_better = True
    params: VQAScoreParams

    @classmethod
    def required_models(cls, params: VQAScoreParams) -> list[ModelNeed]:
        return [ModelNeed(params.model, f"{params.model_family} vision-language model", model_files(""))]

    def __init__(self, params: VQAScoreParams, *, device: torch.device, dtype: torch.dtype) -> None:
        super().__init__(params, device=device, dtype=dtype)
        if params.model_family == "llava":
            self.model, self.processor = load_llava(params.model, device, dtype)
            self.yes_token_id = self._answer_token_id(LLAVA_ANSWER_PREFIX, VQASCORE_ANSWER)
        else:
            self.model, self.processor = load_instructblip(params.model, device, dtype)
            self.yes_token_id = self._single_token_id(VQASCORE_ANSWER)

    def _answer_token_id(self, prefix: str, answer: str) -> int:
        """The first token the model would emit for `answer` right after `prefix`, with the space between them.

        A SentencePiece/Metaspace tokenizer (Llama's) writes the word after "ASSISTANT:" as "▁Yes" (the word-start
        marker stands for the space), a different id from the bare "Yes" that follows no space. Tokenizing the
        prefix with and without " Yes" and taking the first new token gives that id for any such tokenizer.
        """
        tokenizer = self.processor.tokenizer
        without = tokenizer(prefix, add_special_tokens=False)["input_ids"]
        with_answer = tokenizer(f"{prefix} {answer}", add_special_tokens=False)["input_ids"]
        if with_answer[: len(without)] != without or len(with_answer) != len(without) + 1:
            raise ModelLoadError(
                f"the tokenizer of '{self.params.model}' does not write {answer!r} after {prefix!r} as one new token "
                f"({without} -> {with_answer}); VQAScore needs it to be one token (Llama: '▁Yes')."
            )
        return with_answer[-1]

    def _single_token_id(self, answer: str) -> int:
        ids = self.processor.tokenizer(answer, add_special_tokens=False)["input_ids"]
        if len(ids) != 1:
            raise ModelLoadError(
                f"the tokenizer of '{self.params.model}' splits the answer {answer!r} into {len(ids)} tokens "
                f"{ids}; VQAScore needs it to be one token (FlanT5: '▁Yes')."
            )
        return ids[0]

    def question(self, prompt: str) -> str:
        return self.params.question_template.replace("{}", prompt)

    def llava_prompt(self, prompt: str) -> str:
        return LLAVA_PROMPT_FORMAT.replace("{}", self.question(prompt))

    @torch.inference_mode()
    def yes_probabilities(self, images: Sequence, prompts: Sequence[str]) -> torch.Tensor:
        """P("Yes") per (image, prompt) pair, float32 on the CPU."""
        if self.params.model_family == "llava":
            return self.llava_yes_probabilities(images, prompts)
        inputs = self.processor(
            images=[image.convert("RGB") for image in images],
            text=[self.question(prompt) for prompt in prompts],
            return_tensors="pt",
            padding=True,
        )
        start = self.model.config.text_config.decoder_start_token_id
        decoder_input_ids = torch.full((len(prompts), 1), start, dtype=torch.long, device=self.device)
        output = self.model(
            pixel_values=inputs["pixel_values"].to(self.device, self.dtype),
            qformer_input_ids=inputs["qformer_input_ids"].to(self.device),
            qformer_attention_mask=inputs["qformer_attention_mask"].to(self.device),
            input_ids=inputs["input_ids"].to(self.device),
            attention_mask=inputs["attention_mask"].to(self.device),
            decoder_input_ids=decoder_input_ids,
        )
        return first_token_yes_probability(output.logits[:, 0, :], self.yes_token_id).cpu()

    @torch.inference_mode()
    def llava_yes_probabilities(self, images: Sequence, prompts: Sequence[str]) -> torch.Tensor:
        """LLaVA-1.5: softmax of the next-token logits at the last prompt position (rows are left-padded)."""
        inputs = self.processor(
            images=[image.convert("RGB") for image in images],
            text=[self.llava_prompt(prompt) for prompt in prompts],
            return_tensors="pt",
            padding=True,
        )
        attention_mask = inputs["attention_mask"].to(self.device)
        # Positions counted from each row's first real token, as `generate` does, so padding changes nothing.
        position_ids = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)
        output = self.model(
            pixel_values=inputs["pixel_values"].to(self.device, self.dtype),
            input_ids=inputs["input_ids"].to(self.device),
            attention_mask=attention_mask,
            position_ids=position_ids,
            logits_to_keep=1,
        )
        return first_token_yes_probability(output.logits[:, -1, :], self.yes_token_id).cpu()

    def score(self, batch: Sequence[ScoreInput]) -> list[ScoreRow]:
        if not batch:
            return []
        probabilities = self.yes_probabilities(
            [item.image for item in batch], [item.prompt for item in batch]
        )
        return [ScoreRow(score=value, reason=f"P(yes) {value:.2f}") for value in probabilities.tolist()]
