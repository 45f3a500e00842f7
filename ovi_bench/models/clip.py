"""CLIP image and text towers: one loader, one preprocessing definition, and the tiny random-weight CLIP.

Every CLIP embedding in ovi-bench goes through this module: the `clip` metric, the CLIP feature spaces of fid/kid/cmmd,
the aesthetic predictor's input, the embedding bank, the Kandinsky 2.2 prior's text and image encoders (which are
CLIP towers saved in sub-folders of the prior's repository, loaded by `ovi_bench.models.kandinsky`), and the towers of
every embedding space (`ovi_bench.models.towers`).

Where callers differ on purpose, the difference is a named parameter here, so that a score never changes by accident:
* `backend` of the image processor: "checkpoint" lets transformers pick the class the checkpoint's
  preprocessor_config.json names (its torchvision backend when torchvision is installed), as the `clip` metric and the
  aesthetic predictor have always loaded it; "pil" always uses transformers' PIL implementation, so that pixels do not
  depend on whether torchvision is installed (fid/kid/cmmd and the bank record their resize policy). `resample`
  overrides the checkpoint's resampling filter (fid/kid/cmmd: bicubic).
* `whole_model` when loading the image tower: a whole `CLIPModel` (text tower too) or `CLIPVisionModelWithProjection`.
  A whole model takes its projection width from the top-level config, which a vision config alone may leave at its
  default; both run the same forward (`vision_model`, pooled output, `visual_projection`).
* `padding` of token ids: "longest" with the attention mask (the official CLIP text encoding of the `clip` metric), or
  "max_length" without a mask (as KandinskyV22PriorPipeline encodes, whose prior reads every padded position).
"""

from __future__ import annotations

import functools
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch
from PIL import Image
from transformers import (
    AutoImageProcessor,
    BatchEncoding,
    CLIPConfig,
    CLIPImageProcessorPil,
    CLIPModel,
    CLIPProcessor,
    CLIPTextConfig,
    CLIPTextModelWithProjection,
    CLIPTokenizer,
    CLIPVisionModelWithProjection,
    PreTrainedTokenizerBase,
)
from transformers.convert_slow_tokenizer import bytes_to_unicode
from transformers.image_processing_utils import BaseImageProcessor

from ovi_bench.errors import ModelLoadError
from ovi_bench.io import publish_directory
from ovi_bench.models.hub import explain_load_failure, load_pretrained, resolve_model
from ovi_bench.paths import cache_dir

OPENAI_CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
OPENAI_CLIP_STD = [0.26862954, 0.26130258, 0.27577711]

ImageProcessorBackend = Literal["checkpoint", "pil"]
"""Which implementation prepares the pixels: the checkpoint's own class (transformers' default backend), or PIL."""

TextPadding = Literal["longest", "max_length"]
"""How a batch of token ids is padded: to its longest row (attention mask used), or to the tokenizer's maximum."""

ClipVisionTower = CLIPModel | CLIPVisionModelWithProjection
"""Either class: both have `vision_model` and `visual_projection`, which is all the image side uses."""

ClipTextTower = CLIPModel | CLIPTextModelWithProjection
"""Either class: both have `text_model` and `text_projection`."""


# ---------------------------------------------------------------------------------------------------------------------
# Preprocessing: how images become pixel_values, and how texts become token ids.


def pixel_values(processor: BaseImageProcessor, images: Sequence[Image.Image]) -> torch.Tensor:
    """[B, 3, H, W] float32 CLIP input: each image in RGB, then the processor's resize, centre crop and normalisation."""
    return processor(images=[image.convert("RGB") for image in images], return_tensors="pt")["pixel_values"]


def token_ids(
    tokenizer: PreTrainedTokenizerBase, texts: Sequence[str], *, padding: TextPadding
) -> BatchEncoding:
    """`input_ids` and `attention_mask` [B, L] of the texts, truncated to the tokenizer's model_max_length (77 for
    CLIP: longer prompts are cut, as in the official code) and padded as `padding` says."""
    return tokenizer(
        list(texts),
        padding=padding,
        max_length=tokenizer.model_max_length,
        truncation=True,
        return_tensors="pt",
    )


CLIP_TOKENIZER_FILES = ("vocab.json|tokenizer.json", "merges.txt|tokenizer.json")
"""What loading a CLIP tokenizer from a folder reads: the BPE vocabulary and merges (or one tokenizer.json)."""


def load_token_counter(ref: str) -> Callable[[Sequence[str]], list[int]]:
    """A function giving each text's CLIP token count (`clip_token_counts`), with the tokenizer of `ref`: a Hugging
    Face id, a local folder, or "tiny"."""
    tokenizer = load_tokenizer(resolve_model(ref, TINY_CLIP_BUILDERS))
    return functools.partial(clip_token_counts, tokenizer)


def clip_token_counts(tokenizer: PreTrainedTokenizerBase, texts: Sequence[str]) -> list[int]:
    """Each text's token count before truncation, start and end tokens included: above the tokenizer's
    model_max_length (77 for CLIP), the text towers read a cut prompt (the prompt-length view's `clip_tokens`)."""
    return [len(ids) for ids in tokenizer(list(texts), truncation=False, verbose=False)["input_ids"]]


# ---------------------------------------------------------------------------------------------------------------------
# The forward passes (the same for a whole CLIPModel and for a tower saved alone).


def project_pixels(tower: ClipVisionTower, pixels: torch.Tensor) -> torch.Tensor:
    """`image_embeds` [B, D] of prepared pixels, in the tower's dtype and on its device; gradients follow the caller's
    mode (the OVI priors optimise through the tower)."""
    vision = tower.vision_model(pixel_values=pixels.to(tower.device, tower.dtype))
    return tower.visual_projection(vision.pooler_output)


@torch.inference_mode()
def encode_images(
    tower: ClipVisionTower, processor: BaseImageProcessor, images: Sequence[Image.Image]
) -> torch.Tensor:
    """`image_embeds` [B, D] of a batch of PIL images, float32 on the CPU (what the embedding bank stores)."""
    return project_pixels(tower, pixel_values(processor, images)).float().cpu()


def encode_token_ids(
    tower: ClipTextTower, tokens: BatchEncoding, *, use_attention_mask: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """(`text_embeds` [B, D], `last_hidden_state` [B, L, W]) of tokenized texts, on the tower's device and dtype.

    Without the mask, CLIP's causal mask alone keeps the padding after EOS out of every token up to the pooled EOS.
    """
    device = tower.device
    mask = tokens["attention_mask"].to(device) if use_attention_mask else None
    text = tower.text_model(tokens["input_ids"].to(device), attention_mask=mask)
    return tower.text_projection(text.pooler_output), text.last_hidden_state


# ---------------------------------------------------------------------------------------------------------------------
# Loading (a resolved reference: see `ovi_bench.models.hub.resolve_model`).


def load_image_processor(
    resolved: str,
    *,
    backend: ImageProcessorBackend,
    subfolder: str = "",
    resample: Image.Resampling | None = None,
) -> BaseImageProcessor:
    """The image processor saved with a CLIP checkpoint; see the module docstring for `backend` and `resample`."""
    options: dict = {"subfolder": subfolder} if subfolder else {}
    if resample is not None:
        options["resample"] = resample
    processor_class = CLIPImageProcessorPil if backend == "pil" else AutoImageProcessor
    return load_pretrained(processor_class, resolved, **options)


def load_vision_tower(
    resolved: str, device: torch.device, dtype: torch.dtype, *, whole_model: bool, subfolder: str = ""
) -> ClipVisionTower:
    """A CLIP image tower with its projection, in eval mode; see the module docstring for `whole_model`."""
    model_class = CLIPModel if whole_model else CLIPVisionModelWithProjection
    options = {"subfolder": subfolder} if subfolder else {}
    return load_pretrained(model_class, resolved, dtype=dtype, **options).to(device).eval()


def load_text_encoder(
    resolved: str,
    device: torch.device,
    dtype: torch.dtype,
    *,
    subfolder: str = "",
    config: CLIPTextConfig | None = None,
) -> CLIPTextModelWithProjection:
    """A CLIP text tower with its projection, in eval mode; `config` overrides the saved one (a projection width that
    a whole CLIP repository keeps in its top-level config, which the text config would not see)."""
    options: dict = {"subfolder": subfolder} if subfolder else {}
    if config is not None:
        options["config"] = config
    return load_pretrained(CLIPTextModelWithProjection, resolved, dtype=dtype, **options).to(device).eval()


def load_tokenizer(resolved: str, subfolder: str = "") -> CLIPTokenizer:
    """A CLIP tokenizer, refusing the empty one transformers 5 builds silently when the vocabulary files are missing."""
    options = {"subfolder": subfolder} if subfolder else {}
    tokenizer = load_pretrained(CLIPTokenizer, resolved, **options)
    if len(tokenizer) <= len(tokenizer.all_special_tokens):
        what = "CLIPTokenizer" + (f" ({subfolder})" if subfolder else "")
        raise explain_load_failure(resolved, what, FileNotFoundError("no vocabulary found"))
    return tokenizer


@dataclass(frozen=True)
class ClipImageEncoder:
    """A CLIP image tower and the image processor that prepares its input: images -> `image_embeds`."""

    tower: ClipVisionTower
    processor: BaseImageProcessor

    @property
    def projection_dim(self) -> int:
        return self.tower.visual_projection.out_features

    @torch.inference_mode()
    def image_embeds(self, images: Sequence[Image.Image]) -> torch.Tensor:
        """[B, D] float32 on the tower's device, not normalised."""
        return project_pixels(self.tower, pixel_values(self.processor, images)).float()


def load_clip_image_encoder(
    resolved: str,
    device: torch.device,
    dtype: torch.dtype,
    *,
    whole_model: bool,
    backend: ImageProcessorBackend,
    resample: Image.Resampling | None = None,
    model_subfolder: str = "",
    processor_subfolder: str = "",
) -> ClipImageEncoder:
    """The image tower and image processor of a CLIP checkpoint (the parameters: see the module docstring)."""
    return ClipImageEncoder(
        tower=load_vision_tower(resolved, device, dtype, whole_model=whole_model, subfolder=model_subfolder),
        processor=load_image_processor(
            resolved, backend=backend, subfolder=processor_subfolder, resample=resample
        ),
    )


@dataclass(frozen=True)
class ClipEncoders:
    """A whole CLIP model (image and text towers) with its tokenizer and image processor, as the `clip` metric uses it:
    the official T2I-CompBench CLIP encoding (text padded to the longest prompt, attention mask used)."""

    model: CLIPModel
    tokenizer: PreTrainedTokenizerBase
    image_encoder: ClipImageEncoder

    @torch.inference_mode()
    def text_embeds(self, texts: Sequence[str]) -> torch.Tensor:
        """[B, D] float32 on the model's device, not normalised."""
        tokens = token_ids(self.tokenizer, texts, padding="longest")
        return encode_token_ids(self.model, tokens, use_attention_mask=True)[0].float()


def load_clip_encoders(resolved: str, device: torch.device, dtype: torch.dtype) -> ClipEncoders:
    """A whole CLIP checkpoint with the tokenizer and image processor saved beside it (transformers' Auto classes, as
    `CLIPProcessor` loads them)."""
    model = load_vision_tower(resolved, device, dtype, whole_model=True)
    processor = load_pretrained(CLIPProcessor, resolved)
    return ClipEncoders(
        model=model,
        tokenizer=processor.tokenizer,
        image_encoder=ClipImageEncoder(model, processor.image_processor),
    )


@dataclass(frozen=True)
class TextEncoding:
    """What the prior's text side gives for a batch of texts, on the text encoder's device and dtype."""

    text_embeds: torch.Tensor
    """[B, D] the projected pooled (EOS token) embedding, not L2-normalised."""
    last_hidden_state: torch.Tensor
    """[B, 77, W] the per-token states the diffusion prior attends to."""
    attention_mask: torch.Tensor
    """[B, 77] bool, True for real tokens (padding is False)."""


TEXT_CACHE_SIZE = 64
"""Texts whose encodings a TextSide keeps. A run plans each prompt's seeds next to each other, so a prompt's 10 seeds
(the official protocol) meet its cached encoding even across batch boundaries; 64 rows of ViT-bigG's [77, 1280]
states are 25 MB in float32."""


@dataclass(frozen=True)
class TextSide:
    """The prior's tokenizer and CLIP text encoder, encoding exactly as KandinskyV22PriorPipeline does.

    Each distinct text is encoded once: the last `TEXT_CACHE_SIZE` texts are kept, so a prompt with several seeds
    is encoded once per run rather than once per seed. A text not in the cache is encoded on its own, never batched
    with others, so that its encoding is the same bits whatever it was batched with and whatever was encoded before
    (with batching, a cached row would carry the rounding of the batch that happened to encode it first). The text
    encoder is a small part of every prior's cost (ViT-bigG's text tower: ~3% of the Kandinsky 2.2 prior's FLOPs at
    25 steps), so the batch-of-one calls cost little.
    """

    tokenizer: CLIPTokenizer
    text_encoder: CLIPTextModelWithProjection
    _cache: OrderedDict[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = field(
        default_factory=OrderedDict, compare=False, repr=False
    )
    """text -> (text_embeds [D], last_hidden_state [77, W], attention_mask [77]), least recently used first."""

    @property
    def device(self) -> torch.device:
        return self.text_encoder.device

    def encode(self, texts: Sequence[str]) -> TextEncoding:
        texts = list(texts)
        rows = {text: self._cache[text] for text in dict.fromkeys(texts) if text in self._cache}
        for text in dict.fromkeys(texts):
            if text not in rows:
                encoding = self._encode([text])
                rows[text] = (
                    encoding.text_embeds[0],
                    encoding.last_hidden_state[0],
                    encoding.attention_mask[0],
                )
        for text in dict.fromkeys(texts):
            self._cache[text] = rows[text]
            self._cache.move_to_end(text)
        while len(self._cache) > TEXT_CACHE_SIZE:
            self._cache.popitem(last=False)
        return TextEncoding(
            text_embeds=torch.stack([rows[text][0] for text in texts]),
            last_hidden_state=torch.stack([rows[text][1] for text in texts]),
            attention_mask=torch.stack([rows[text][2] for text in texts]),
        )

    def _encode(self, texts: list[str]) -> TextEncoding:
        # no_grad rather than inference_mode: optimisation-based priors use text_embeds as a target inside autograd,
        # which inference tensors cannot join. Like the pipeline: padded to 77 tokens, no attention mask.
        tokens = token_ids(self.tokenizer, texts, padding="max_length")
        with torch.no_grad():
            text_embeds, last_hidden_state = encode_token_ids(
                self.text_encoder, tokens, use_attention_mask=False
            )
        return TextEncoding(
            text_embeds=text_embeds,
            last_hidden_state=last_hidden_state,
            attention_mask=tokens["attention_mask"].bool().to(self.device),
        )


def checked_text_side(
    ref: str, tokenizer: CLIPTokenizer, text_encoder: CLIPTextModelWithProjection, *, tokenizer_config: str
) -> TextSide:
    """The tokenizer and text encoder as a TextSide, refusing a tokenizer that pads past the encoder's positions
    (`tokenizer_config`: where the fix goes, for the message)."""
    max_positions = text_encoder.config.max_position_embeddings
    if tokenizer.model_max_length > max_positions:
        raise ModelLoadError(
            f"the tokenizer of '{ref}' pads to {tokenizer.model_max_length} tokens but its text encoder has only "
            f"{max_positions} positions: set model_max_length in {tokenizer_config}."
        )
    return TextSide(tokenizer=tokenizer, text_encoder=text_encoder)


# ---------------------------------------------------------------------------------------------------------------------
# Tiny pieces, built in code: the byte-level CLIP tokenizer, OpenAI's preprocessing, and the tiny CLIPModel.

TINY_TEXT_MAX_LENGTH = 77
"""The tiny tokenizer's padded length; must equal a tiny prior's num_embeddings (77 text tokens + the extra ones)."""
TINY_EMBEDDING_DIM = 32
"""The width of the tiny Kandinsky 2.2 CLIP towers' embeddings (text_embeds, image_embeds), and so of every tiny
prior's output (Kandinsky, ECLIPSE) and the tiny decoder's input."""
BOS_TOKEN, EOS_TOKEN = "<|startoftext|>", "<|endoftext|>"
TINY_CLIP_IMAGE_SIZE = 32


def tiny_tokenizer() -> CLIPTokenizer:
    """A CLIP tokenizer without merges: every byte is a token, plus a `</w>` variant that ends a word.

    EOS gets the highest id (513), as in real CLIP, and is also the pad token (CLIPTokenizer's default).
    """
    characters = list(bytes_to_unicode().values())
    vocab = {character: index for index, character in enumerate(characters)}
    vocab.update({character + "</w>": 256 + index for index, character in enumerate(characters)})
    vocab[BOS_TOKEN] = 512
    vocab[EOS_TOKEN] = 513
    return CLIPTokenizer(vocab=vocab, merges=[], model_max_length=TINY_TEXT_MAX_LENGTH)


def tiny_text_config(
    width: int, *, layers: int, heads: int, intermediate_size: int, projection_dim: int | None = None
) -> CLIPTextConfig:
    """A random-weight CLIP text tower's config for the tiny tokenizer: hidden size `width`, projection
    `projection_dim` (default `width`), 77 positions, and pooling at the tiny tokenizer's real EOS id (diffusers' tests
    use bos 0 / eos 2 / pad 1, and eos_token_id == 2 makes transformers pool at argmax(input_ids), the legacy rule)."""
    tokenizer = tiny_tokenizer()
    return CLIPTextConfig(
        hidden_size=width,
        projection_dim=projection_dim or width,
        intermediate_size=intermediate_size,
        num_attention_heads=heads,
        num_hidden_layers=layers,
        vocab_size=1000,
        max_position_embeddings=TINY_TEXT_MAX_LENGTH,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )


def tiny_text_encoder(
    width: int, *, layers: int, heads: int, intermediate_size: int, projection_dim: int | None = None
) -> CLIPTextModelWithProjection:
    """A random-weight CLIP text tower with projection (seed 0) of `tiny_text_config`."""
    config = tiny_text_config(
        width, layers=layers, heads=heads, intermediate_size=intermediate_size, projection_dim=projection_dim
    )
    torch.manual_seed(0)
    return CLIPTextModelWithProjection(config).eval()


def clip_image_processor(image_size: int) -> CLIPImageProcessorPil:
    """OpenAI CLIP preprocessing (bicubic resize of the short side, centre crop, CLIP mean/std) at `image_size`,
    for every tiny folder that holds a CLIP-style vision tower."""
    # transformers 5 without torchvision
    # turns `CLIPImageProcessor` into this class anyway (with a warning), and save_pretrained records the class it
    # really has; naming it directly keeps the saved folder the same whether or not torchvision is installed.
    return CLIPImageProcessorPil(
        size={"shortest_edge": image_size},
        crop_size={"height": image_size, "width": image_size},
        image_mean=OPENAI_CLIP_MEAN,
        image_std=OPENAI_CLIP_STD,
        resample=3,  # bicubic
    )


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
