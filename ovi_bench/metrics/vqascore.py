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

Tiny: `model = "tiny"` builds a random-weight InstructBLIP-FlanT5 (T5 d_model 32, Q-Former 32, 4 query tokens) in
code, saves it with `save_pretrained` into `cache_dir()/tiny/instructblip-v1/` and loads it back like the real one.
In transformers 5 the processor prepends `num_query_tokens` copies of the `<image>` token to the language model's
input ids and the model writes the Q-Former outputs at the positions of `config.image_token_index`: both must be set,
in the tiny model as in the hub's (updated) checkpoints.

With `model_family = "llava"`, `model = "tiny"` builds a random-weight LLaVA (CLIP vision tower 32 px, patch 8, two
layers; Llama language model, hidden size 32) with a Llama-style BPE tokenizer built in code, saved into
`cache_dir()/tiny/llava-v1/`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import torch
from pydantic import Field, field_validator, model_validator
from tokenizers import AddedToken
from transformers import (
    BlipImageProcessorPil,
    InstructBlipConfig,
    InstructBlipForConditionalGeneration,
    InstructBlipProcessor,
    LlamaTokenizer,
    LlavaConfig,
    LlavaForConditionalGeneration,
    LlavaProcessor,
    T5Tokenizer,
)

from ovi_bench.components import ModelNeed, Params, model_files
from ovi_bench.errors import ModelLoadError
from ovi_bench.io import publish_directory
from ovi_bench.metrics.base import Metric, ScoreInput, ScoreRow
from ovi_bench.models.evaluators.tiny import tiny_bert_tokenizer
from ovi_bench.models.hub import load_pretrained, resolve_model
from ovi_bench.models.tiny import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD, clip_image_processor
from ovi_bench.paths import cache_dir
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

TINY_LLAVA_IMAGE_SIZE = 32
TINY_LLAVA_PATCH_SIZE = 8
TINY_LLAVA_INITIALIZER_RANGE = 0.2
"""Ten times the default, as for the tiny InstructBLIP, so that the image visibly changes the tiny P("Yes")."""
_TINY_LLAVA_WORDS = _TINY_T5_WORDS + " USER ASSISTANT"
_TINY_LLAVA_CHARACTERS = _TINY_T5_CHARACTERS + ":\n"


def tiny_llama_tokenizer() -> LlamaTokenizer:
    """A Llama-style BPE tokenizer (Metaspace "▁", byte fallback) over a few whole words and characters, in code.

    <unk> = 0, <s> = 1, </s> = 2 as in Llama; `<image>` and `<pad>` are added special tokens, as in llava-hf's.
    Each word "▁word" is built by left-to-right merges of its prefixes, so it tokenizes into one token.
    """
    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2}
    for character in "▁" + _TINY_LLAVA_CHARACTERS:
        vocab.setdefault(character, len(vocab))
    merges: list[tuple[str, str]] = []
    for word in dict.fromkeys(_TINY_LLAVA_WORDS.split()):
        piece = "▁"
        for character in word:
            if piece + character not in vocab:
                vocab[piece + character] = len(vocab)
                merges.append((piece, character))
            piece += character
    tokenizer = LlamaTokenizer(vocab=vocab, merges=merges, add_bos_token=True)  # Llama prepends <s>
    tokenizer.add_tokens([AddedToken(IMAGE_TOKEN, normalized=False, special=True)], special_tokens=True)
    tokenizer.add_special_tokens({"pad_token": "<pad>"})
    tokenizer.padding_side = "left"
    return tokenizer


def build_tiny_llava(folder: Path) -> None:
    """Save a tiny LlavaForConditionalGeneration (CLIP vision tower + Llama) and its LlavaProcessor."""
    tokenizer = tiny_llama_tokenizer()
    config = LlavaConfig(
        vision_config={
            "model_type": "clip_vision_model",
            "hidden_size": 32,
            "intermediate_size": 37,
            "num_hidden_layers": 2,  # the default vision_feature_layer is -2
            "num_attention_heads": 4,
            "image_size": TINY_LLAVA_IMAGE_SIZE,
            "patch_size": TINY_LLAVA_PATCH_SIZE,
            "projection_dim": 32,
            "initializer_range": TINY_LLAVA_INITIALIZER_RANGE,
        },
        text_config={
            "model_type": "llama",
            "vocab_size": len(tokenizer),
            "hidden_size": 32,
            "intermediate_size": 37,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "num_key_value_heads": 4,
            "max_position_embeddings": 512,
            "pad_token_id": tokenizer.pad_token_id,
            "bos_token_id": tokenizer.bos_token_id,
            "eos_token_id": tokenizer.eos_token_id,
            "initializer_range": TINY_LLAVA_INITIALIZER_RANGE,
        },
        image_token_index=tokenizer.convert_tokens_to_ids(IMAGE_TOKEN),
        image_seq_length=(TINY_LLAVA_IMAGE_SIZE // TINY_LLAVA_PATCH_SIZE) ** 2,
        vision_feature_select_strategy="default",
        vision_feature_layer=-2,
    )
    torch.manual_seed(0)
    model = LlavaForConditionalGeneration(config).eval()
    image_processor = clip_image_processor(TINY_LLAVA_IMAGE_SIZE)
    processor = LlavaProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=TINY_LLAVA_PATCH_SIZE,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,  # CLIP's class token, dropped by the "default" strategy
    )
    model.save_pretrained(folder, safe_serialization=True)
    processor.save_pretrained(folder)


def tiny_llava_dir() -> Path:
    return publish_directory(build_tiny_llava, cache_dir() / "tiny" / "llava-v1")


TINY_LLAVA_BUILDERS = {"tiny": tiny_llava_dir}


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
            self._load_llava()
            return
        source = resolve_model(params.model, TINY_INSTRUCTBLIP_BUILDERS)
        self.model = (
            load_pretrained(InstructBlipForConditionalGeneration, source, dtype=dtype).to(device).eval()
        )
        self.processor = load_pretrained(InstructBlipProcessor, source)
        self.yes_token_id = self._single_token_id(VQASCORE_ANSWER)
        self._check_image_tokens(source)

    def _load_llava(self) -> None:
        source = resolve_model(self.params.model, TINY_LLAVA_BUILDERS)
        self.model = (
            load_pretrained(LlavaForConditionalGeneration, source, dtype=self.dtype).to(self.device).eval()
        )
        self.processor = load_pretrained(LlavaProcessor, source)
        # The next-token logits are read at the last position of every row: pad on the left.
        self.processor.tokenizer.padding_side = "left"
        if self.processor.tokenizer.pad_token_id is None:
            raise ModelLoadError(
                f"the tokenizer of '{self.params.model}' has no pad token; LLaVA-1.5's has <pad>."
            )
        self.yes_token_id = self._answer_token_id(LLAVA_ANSWER_PREFIX, VQASCORE_ANSWER)
        image_token_id = self.processor.tokenizer.convert_tokens_to_ids(self.processor.image_token)
        if self.model.config.image_token_index != image_token_id:
            raise ModelLoadError(
                f"'{source}': config.image_token_index = {self.model.config.image_token_index} but the tokenizer's "
                f"{self.processor.image_token} is {image_token_id}; download the current revision of the checkpoint."
            )

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
