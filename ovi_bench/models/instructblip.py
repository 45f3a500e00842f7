"""InstructBLIP with a FlanT5 language model (Dai et al. 2023): loading it for VQAScore, and its tiny twin.

Tiny: a random-weight InstructBLIP-FlanT5 (T5 d_model 32, Q-Former 32, 4 query tokens) built in code, saved with
`save_pretrained` into `cache_dir()/tiny/instructblip-v1/` and loaded back like the real one. In transformers 5 the
processor prepends `num_query_tokens` copies of the `<image>` token to the language model's input ids and the model
writes the Q-Former outputs at the positions of `config.image_token_index`: both must be set, in the tiny model as in
the hub's (updated) checkpoints.
"""

from __future__ import annotations

from pathlib import Path

import torch
from tokenizers import AddedToken
from transformers import (
    BlipImageProcessorPil,
    InstructBlipConfig,
    InstructBlipForConditionalGeneration,
    InstructBlipProcessor,
    T5Tokenizer,
)

from ovi_bench.errors import ModelLoadError
from ovi_bench.io import publish_directory
from ovi_bench.models.clip import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD
from ovi_bench.models.evaluators.blip import tiny_bert_tokenizer
from ovi_bench.models.hub import load_pretrained, resolve_model
from ovi_bench.paths import cache_dir

TINY_INSTRUCTBLIP_IMAGE_SIZE = 32
TINY_INSTRUCTBLIP_QUERY_TOKENS = 4
IMAGE_TOKEN = "<image>"
TINY_INSTRUCTBLIP_INITIALIZER_RANGE = 0.2
"""Ten times the default, for the vision tower, Q-Former and language projection: with the default, the image
changes the tiny P("Yes") only in the 7th decimal, so tests could not see that the image reaches the answer."""

# Whole words of the question template and of CompBench-like prompts, so that tiny questions tokenize into words.
TINY_T5_WORDS = """
Does does this figure show Please please answer yes or no Yes No a an the of on in and with
red blue green yellow black white cube sphere cat cats dog dogs table car tree two three
"""
TINY_T5_CHARACTERS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789?.,!'\"-()"


def tiny_t5_tokenizer() -> T5Tokenizer:
    """A Unigram (SentencePiece-style) T5 tokenizer over a few whole words and single characters, built in code.

    <pad> = 0 (also T5's decoder start), </s> = 1, <unk> = 2 as in FlanT5; the `<image>` token closes the vocabulary.
    """
    special = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)]
    words = [("▁" + word, -1.0) for word in dict.fromkeys(TINY_T5_WORDS.split())]
    characters = [("▁", -2.0)] + [(character, -5.0) for character in TINY_T5_CHARACTERS]
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


def load_instructblip(
    ref: str, device: torch.device, dtype: torch.dtype
) -> tuple[InstructBlipForConditionalGeneration, InstructBlipProcessor]:
    """An InstructBLIP checkpoint (hub id, local folder or "tiny") and its processor, in eval mode; refuses checkpoints
    without transformers 5's image placeholders."""
    source = resolve_model(ref, TINY_INSTRUCTBLIP_BUILDERS)
    model = load_pretrained(InstructBlipForConditionalGeneration, source, dtype=dtype).to(device).eval()
    processor = load_pretrained(InstructBlipProcessor, source)
    # transformers 5 places the Q-Former outputs at the <image> placeholders the processor inserts; an old
    # checkpoint without `image_token_index` or without the processor's `num_query_tokens` cannot do that.
    image_token_id = processor.tokenizer.convert_tokens_to_ids(processor.image_token.content)
    if model.config.image_token_index != image_token_id or processor.num_query_tokens is None:
        raise ModelLoadError(
            f"'{source}' lacks transformers 5's image placeholders (config.image_token_index = "
            f"{model.config.image_token_index}, tokenizer <image> id {image_token_id}, processor "
            f"num_query_tokens = {processor.num_query_tokens}). Download the current revision of the "
            "checkpoint (`hf download <id>`), whose config and processor set them."
        )
    return model, processor
