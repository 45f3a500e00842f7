"""LLaVA-1.5 (Liu et al. 2024): loading it for VQAScore, and its tiny twin.

Tiny: a random-weight LLaVA (CLIP vision tower 32 px, patch 8, two layers; Llama language model, hidden size 32) with
a Llama-style BPE tokenizer built in code, saved into `cache_dir()/tiny/llava-v1/`.
"""

from __future__ import annotations

from pathlib import Path

import torch
from tokenizers import AddedToken
from transformers import (
    LlamaTokenizer,
    LlavaConfig,
    LlavaForConditionalGeneration,
    LlavaProcessor,
)

from ovi_bench.errors import ModelLoadError
from ovi_bench.io import publish_directory
from ovi_bench.models.clip import clip_image_processor
from ovi_bench.models.hub import load_pretrained, resolve_model
from ovi_bench.models.instructblip import IMAGE_TOKEN, TINY_T5_CHARACTERS, TINY_T5_WORDS
from ovi_bench.paths import cache_dir

TINY_LLAVA_IMAGE_SIZE = 32
TINY_LLAVA_PATCH_SIZE = 8
TINY_LLAVA_INITIALIZER_RANGE = 0.2
"""Ten times the default, as for the tiny InstructBLIP, so that the image visibly changes the tiny P("Yes")."""
_TINY_LLAVA_WORDS = TINY_T5_WORDS + " USER ASSISTANT"
_TINY_LLAVA_CHARACTERS = TINY_T5_CHARACTERS + ":\n"


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


def load_llava(
    ref: str, device: torch.device, dtype: torch.dtype
) -> tuple[LlavaForConditionalGeneration, LlavaProcessor]:
    """A LLaVA-1.5 checkpoint (hub id, local folder or "tiny") and its processor, in eval mode, the tokenizer padding
    on the left (next-token logits are read at the last position of every row)."""
    source = resolve_model(ref, TINY_LLAVA_BUILDERS)
    model = load_pretrained(LlavaForConditionalGeneration, source, dtype=dtype).to(device).eval()
    processor = load_pretrained(LlavaProcessor, source)
    processor.tokenizer.padding_side = "left"
    if processor.tokenizer.pad_token_id is None:
        raise ModelLoadError(f"the tokenizer of '{ref}' has no pad token; LLaVA-1.5's has <pad>.")
    image_token_id = processor.tokenizer.convert_tokens_to_ids(processor.image_token)
    if model.config.image_token_index != image_token_id:
        raise ModelLoadError(
            f"'{source}': config.image_token_index = {model.config.image_token_index} but the tokenizer's "
            f"{processor.image_token} is {image_token_id}; download the current revision of the checkpoint."
        )
    return model, processor
