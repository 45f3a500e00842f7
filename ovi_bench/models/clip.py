"""A tiny random-weight CLIP (model + processor) built in code, for the `clip` metric's offline tests and smoke run."""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import CLIPConfig, CLIPModel, CLIPProcessor

from ovi_bench.io import publish_directory
from ovi_bench.models.tiny import clip_image_processor, tiny_tokenizer
from ovi_bench.paths import cache_dir

TINY_CLIP_IMAGE_SIZE = 32


def build_tiny_clip(folder: Path) -> None:
    """Save a tiny CLIPModel and its CLIPProcessor into `folder`, loadable like `openai/clip-vit-base-patch32`."""
    tokenizer = tiny_tokenizer()
    config = CLIPConfig(
        text_config={
            "hidden_size": 32,
            "intermediate_size": 37,
            "num_attention_heads": 4,
            "num_hidden_layers": 2,
            "vocab_size": 1000,
            "max_position_embeddings": 77,
            "bos_token_id": tokenizer.bos_token_id,
            "eos_token_id": tokenizer.eos_token_id,
            "pad_token_id": tokenizer.pad_token_id,
        },
        vision_config={
            "hidden_size": 32,
            "intermediate_size": 37,
            "num_attention_heads": 4,
            "num_hidden_layers": 2,
            "image_size": TINY_CLIP_IMAGE_SIZE,
            "patch_size": 8,
        },
        projection_dim=16,
    )
    torch.manual_seed(0)
    model = CLIPModel(config).eval()
    image_processor = clip_image_processor(TINY_CLIP_IMAGE_SIZE)
    model.save_pretrained(folder, safe_serialization=True)
    CLIPProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(folder)


def tiny_clip_dir() -> Path:
    return publish_directory(build_tiny_clip, cache_dir() / "tiny" / "clip-v1")


TINY_CLIP_BUILDERS = {"tiny": tiny_clip_dir}
"""Tiny references accepted wherever a CLIP checkpoint is expected."""
