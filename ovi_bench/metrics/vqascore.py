"""`vqascore`: VQAScore (Lin et al. 2024), the probability that a vision-language model answers "Yes" to
`Does this figure show "{prompt}"? Please answer yes or no.`

The score of an image is the softmax probability of the "Yes" token at the first decoder step of an
encoder-decoder VLM, given the image and the question. This is how t2v-metrics (linzhiqiu/t2v_metrics) defines
VQAScore for its CLIP-FlanT5 and InstructBLIP-FlanT5 models: the same question template and P("Yes"), without
renormalising against "No".

Model families: only InstructBLIP with a FlanT5 language model (`InstructBlipForConditionalGeneration`, default
`Salesforce/instructblip-flan-t5-xl`; `Salesforce/instructblip-flan-t5-xxl` also works) for now. t2v-metrics' best
model, CLIP-FlanT5-XXL (`zhiqiulin/clip-flant5-xxl`), has no `transformers` class: for those exact numbers run
t2v-metrics in its own environment and import its scores with the `imported-scores` metric. Decoder-only families
(LLaVA-1.5, Qwen2-VL: P("Yes") at the first generated position) can be added later as further `model_family` values.

Tiny: `model = "tiny"` builds a random-weight InstructBLIP-FlanT5 (T5 d_model 32, Q-Former 32, 4 query tokens) in
code, saves it with `save_pretrained` into `cache_dir()/tiny/instructblip-v1/` and loads it back like the real one.
In transformers 5 the processor prepends `num_query_tokens` copies of the `<image>` token to the language model's
input ids and the model writes the Q-Former outputs at the positions of `config.image_token_index`: both must be set,
in the tiny model as in the hub's (updated) checkpoints.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import torch
from pydantic import Field, field_validator
from tokenizers import AddedToken
from transformers import (
    BlipImageProcessorPil,
    InstructBlipConfig,
    InstructBlipForConditionalGeneration,
    InstructBlipProcessor,
    T5Tokenizer,
)

from ovi_bench.backbones.evaluator_tiny import tiny_bert_tokenizer
from ovi_bench.backbones.hub import load_pretrained, resolve_model
from ovi_bench.backbones.tiny import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD
from ovi_bench.components import Params
from ovi_bench.errors import ModelLoadError
from ovi_bench.io import publish_directory
from ovi_bench.metrics.base import Metric, ScoreInput, ScoreRow
from ovi_bench.paths import cache_dir
from ovi_bench.registry import METRICS

VQASCORE_INSTRUCTBLIP_ID = "Salesforce/instructblip-flan-t5-xl"
VQASCORE_QUESTION_TEMPLATE = 'Does this figure show "{}"? Please answer yes or no.'
"""t2v-metrics' default question template (`{}` is replaced by the prompt)."""
VQASCORE_ANSWER = "Yes"

TINY_INSTRUCTBLIP_IMAGE_SIZE = 32
TINY_INSTRUCTBLIP_QUERY_TOKENS = 4
IMAGE_TOKEN = "<image>"
TINY_INSTRUCTBLIP_INITIALIZER_RANGE = 0.2
"""Ten times the default, for the vision tower, Q-Former and language projection: with the default, the image
changes the tiny P("Yes") only in the 7th decimal, so tests could not see that the image reaches the answer."""

# Whole words of the question template and of CompBench-like prompts, so that tiny questions tokenize into words.
_TINY_T5_WORDS = """
Does does this figure show Please please answer yes or no Yes No a an the of on in and with
red blue green yellow black white cube sphere cat cats dog dogs table car tree two three
"""
_TINY_T5_CHARACTERS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789?.,!'\"-()"


def tiny_t5_tokenizer() -> T5Tokenizer:
    """A Unigram (SentencePiece-style) T5 tokenizer over a few whole words and single characters, built in code.

    <pad> = 0 (also T5's decoder start), </s> = 1, <unk> = 2 as in FlanT5; the `<image>` token closes the vocabulary.
    """
    special = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)]
    words = [("▁" + word, -1.0) for word in dict.fromkeys(_TINY_T5_WORDS.split())]
    characters = [("▁", -2.0)] + [(character, -5.0) for character in _TINY_T5_CHARACTERS]
    tokenizer = T5Tokenizer(vocab=special + words + characters, extra_ids=0)
    tokenizer.add_tokens([AddedToken(IMAGE_TOKEN, normalized=False, special=True)], special_tokens=True)
    return tokenizer


def build_tiny_instructblip(folder: Path) -> None:
    """Save a tiny InstructBlipForConditionalGeneration (FlanT5) and its processor, laid out like the hub's."""
    tokenizer = tiny_t5_tokenizer()
    qformer_tokenizer = tiny_bert_tokenizer(with_blip_tokens=False)
    config = InstructBlipConfig(
        vision_config={
            "hidden_size": 32,
            "intermediate_size": 37,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "image_size": TINY_INSTRUCTBLIP_IMAGE_SIZE,
            "patch_size": 8,
            "initializer_range": TINY_INSTRUCTBLIP_INITIALIZER_RANGE,
        },
        qformer_config={
            "vocab_size": len(qformer_tokenizer),
            "hidden_size": 32,
            "intermediate_size": 37,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "encoder_hidden_size": 32,
            "pad_token_id": qformer_tokenizer.pad_token_id,
            "initializer_range": TINY_INSTRUCTBLIP_INITIALIZER_RANGE,
        },
        text_config={
            "model_type": "t5",
            "vocab_size": len(tokenizer),
            "d_model": 32,
            "d_kv": 8,
            "d_ff": 37,
            "num_layers": 2,
            "num_decoder_layers": 2,
            "num_heads": 4,
            "feed_forward_proj": "gated-gelu",  # FlanT5's
            "tie_word_embeddings": False,  # FlanT5's
            "pad_token_id": tokenizer.pad_token_id,
            "eos_token_id": tokenizer.eos_token_id,
            "decoder_start_token_id": tokenizer.pad_token_id,
            # The default (1.0) gives logits so large that every tiny P("Yes") is about 1e-9: tests could not see
            # the inputs matter. At 0.3 the probabilities stay near 1/vocab (about 0.0044) and vary with the inputs.
            "initializer_factor": 0.3,
        },
        num_query_tokens=TINY_INSTRUCTBLIP_QUERY_TOKENS,
        image_token_index=tokenizer.convert_tokens_to_ids(IMAGE_TOKEN),
        initializer_range=TINY_INSTRUCTBLIP_INITIALIZER_RANGE,  # the language projection's
    )
    torch.manual_seed(0)
    model = InstructBlipForConditionalGeneration(config).eval()
    image_processor = BlipImageProcessorPil(
        size={"height": TINY_INSTRUCTBLIP_IMAGE_SIZE, "width": TINY_INSTRUCTBLIP_IMAGE_SIZE},
        image_mean=OPENAI_CLIP_MEAN,
        image_std=OPENAI_CLIP_STD,
        resample=3,  # bicubic, as the hub's processor
    )
    processor = InstructBlipProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        qformer_tokenizer=qformer_tokenizer,
        num_query_tokens=TINY_INSTRUCTBLIP_QUERY_TOKENS,
    )
    model.save_pretrained(folder, safe_serialization=True)
    processor.save_pretrained(folder)


def tiny_instructblip_dir() -> Path:
    return publish_directory(build_tiny_instructblip, cache_dir() / "tiny" / "instructblip-v1")


TINY_INSTRUCTBLIP_BUILDERS = {"tiny": tiny_instructblip_dir}


class VQAScoreParams(Params):
    model: str = VQASCORE_INSTRUCTBLIP_ID
    """The VLM: a Hugging Face id, a local folder or "tiny". Default Salesforce/instructblip-flan-t5-xl (about
    16 GB in float32; use dtype bfloat16 on a GPU)."""
    model_family: Literal["instructblip"] = "instructblip"
    """How the model is loaded and asked: "instructblip" (InstructBlipForConditionalGeneration with a FlanT5
    language model). LLaVA-1.5 and Qwen2-VL are not supported yet."""
    question_template: str = Field(VQASCORE_QUESTION_TEMPLATE)
    """The question; `{}` is replaced by the prompt. The default is t2v-metrics' VQAScore template."""

    @field_validator("question_template")
    @classmethod
    def _has_one_placeholder(cls, value: str) -> str:
        if value.count("{}") != 1:
            raise ValueError(
                f"question_template must contain exactly one '{{}}' for the prompt, got {value!r}"
            )
        return value


def first_token_yes_probability(first_step_logits: torch.Tensor, yes_token_id: int) -> torch.Tensor:
    """P("Yes") from the [B, vocab] logits of the first decoder step: a softmax over the whole vocabulary."""
    return first_step_logits.to(torch.float32).softmax(dim=-1)[:, yes_token_id]


@METRICS.register("vqascore")
class VQAScoreMetric(Metric):
    """VQAScore: P("Yes") of a VLM asked whether the image shows the prompt (t2v-metrics' template)."""

    Params = VQAScoreParams
    version = "1"
    categories = None
    higher_is_better = True
    params: VQAScoreParams

    def __init__(self, params: VQAScoreParams, *, device: torch.device, dtype: torch.dtype) -> None:
        super().__init__(params, device=device, dtype=dtype)
        source = resolve_model(params.model, TINY_INSTRUCTBLIP_BUILDERS)
        self.model = (
            load_pretrained(InstructBlipForConditionalGeneration, source, dtype=dtype).to(device).eval()
        )
        self.processor = load_pretrained(InstructBlipProcessor, source)
        self.yes_token_id = self._single_token_id(VQASCORE_ANSWER)
        self._check_image_tokens(source)

    def _single_token_id(self, answer: str) -> int:
        ids = self.processor.tokenizer(answer, add_special_tokens=False)["input_ids"]
        if len(ids) != 1:
            raise ModelLoadError(
                f"the tokenizer of '{self.params.model}' splits the answer {answer!r} into {len(ids)} tokens "
                f"{ids}; VQAScore needs it to be one token (FlanT5: '▁Yes')."
            )
        return ids[0]

    def _check_image_tokens(self, source: str) -> None:
        # transformers 5 places the Q-Former outputs at the <image> placeholders the processor inserts; an old
        # checkpoint without `image_token_index` or without the processor's `num_query_tokens` cannot do that.
        image_token_id = self.processor.tokenizer.convert_tokens_to_ids(self.processor.image_token.content)
        if self.model.config.image_token_index != image_token_id or self.processor.num_query_tokens is None:
            raise ModelLoadError(
                f"'{source}' lacks transformers 5's image placeholders (config.image_token_index = "
                f"{self.model.config.image_token_index}, tokenizer <image> id {image_token_id}, processor "
                f"num_query_tokens = {self.processor.num_query_tokens}). Download the current revision of the "
                "checkpoint (`hf download <id>`), whose config and processor set them."
            )

    def question(self, prompt: str) -> str:
        return self.params.question_template.replace("{}", prompt)

    @torch.inference_mode()
    def yes_probabilities(self, images: Sequence, prompts: Sequence[str]) -> torch.Tensor:
        """P("Yes") per (image, prompt) pair, float32 on the CPU."""
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

    def score(self, batch: Sequence[ScoreInput]) -> list[ScoreRow]:
        if not batch:
            return []
        probabilities = self.yes_probabilities(
            [item.image for item in batch], [item.prompt for item in batch]
        )
        return [ScoreRow(score=value, reason=f"P(yes) {value:.2f}") for value in probabilities.tolist()]
