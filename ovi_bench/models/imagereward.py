"""ImageReward on transformers' BLIP: the checkpoint converter (both ways), the reward model, the tiny checkpoint.

ImageReward (THUDM/ImageReward, `ImageReward/ImageReward.py`) is BLIP ViT-L/16 at 224 px and BLIP's BERT text
encoder with cross-attention ("med" config): the prompt, encoded with cross-attention to the image's patch states,
gives its [CLS] state to an MLP 768→1024→128→64→16→1, whose output is standardised with the authors' mean and std.
The released `ImageReward.pt` is `ImageReward.state_dict()` in BLIP's original layout (`blip.visual_encoder.*`,
`blip.text_encoder.*`, `blip.vision_proj.*`, `blip.text_proj.*`, `mlp.layers.*`); this module renames it onto a
`BlipVisionModel`, a `BlipTextModel` with cross-attention layers and the MLP, refusing any key it does not know
(the authors' loader uses `strict=False`, so a wrong file would load silently there). See
`ovi_bench.metrics.imagereward` for the metric, the weights and every difference from the authors' package.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn
from transformers import BertTokenizer, BlipTextConfig, BlipTextModel, BlipVisionConfig, BlipVisionModel

from ovi_bench.errors import ModelLoadError
from ovi_bench.io import publish_directory
from ovi_bench.models.aesthetic import AestheticMLP
from ovi_bench.models.clip import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD
from ovi_bench.models.evaluators.blip import BLIP_DECODER_TOKEN, BLIP_ENCODER_TOKEN, tiny_bert_tokenizer
from ovi_bench.models.hub import load_pretrained, looks_like_path, model_file, resolve_model
from ovi_bench.models.tensor_files import read_tensor_file
from ovi_bench.paths import cache_dir, expand_user

IMAGEREWARD_ID = "THUDM/ImageReward"
IMAGEREWARD_CHECKPOINT = "ImageReward.pt"
IMAGEREWARD_SAFETENSORS = "ImageReward.safetensors"
MED_CONFIG = "med_config.json"
IMAGEREWARD_TOKENIZER_ID = "bert-base-uncased"
"""BLIP's `init_tokenizer`: bert-base-uncased plus [DEC] (bos) and [ENC] (an additional special token)."""

IMAGEREWARD_MAX_TOKENS = 35
"""`tokenizer(prompt, padding='max_length', truncation=True, max_length=35)` in `ImageReward.score`."""
IMAGEREWARD_MEAN = 0.16717362830052426
IMAGEREWARD_STD = 1.0333394966054072
"""`ImageReward.__init__`: rewards are reported as (mlp_output - mean) / std."""

VIT_HEAD_DIM = 64
"""BLIP's `create_vit` gives every head 64 channels (ViT-B: 12 × 64, ViT-L: 16 × 64); the head count is not stored."""
VIT_LAYER_NORM_EPS = 1e-6
"""BLIP's VisionTransformer uses `partial(nn.LayerNorm, eps=1e-6)` (transformers' BlipVisionConfig default: 1e-5)."""

# Original (BLIP / timm) vision key -> transformers' BlipVisionModel key. {n}: a block index, {p}: weight or bias.
VISION_KEYS: tuple[tuple[str, str], ...] = (
    ("cls_token", "embeddings.class_embedding"),
    ("pos_embed", "embeddings.position_embedding"),
    ("patch_embed.proj.{p}", "embeddings.patch_embedding.{p}"),
    ("blocks.{n}.norm1.{p}", "encoder.layers.{n}.layer_norm1.{p}"),
    ("blocks.{n}.attn.qkv.{p}", "encoder.layers.{n}.self_attn.qkv.{p}"),
    ("blocks.{n}.attn.proj.{p}", "encoder.layers.{n}.self_attn.projection.{p}"),
    ("blocks.{n}.norm2.{p}", "encoder.layers.{n}.layer_norm2.{p}"),
    ("blocks.{n}.mlp.fc1.{p}", "encoder.layers.{n}.mlp.fc1.{p}"),
    ("blocks.{n}.mlp.fc2.{p}", "encoder.layers.{n}.mlp.fc2.{p}"),
    ("norm.{p}", "post_layernorm.{p}"),
)
VISION_PREFIX, TEXT_PREFIX, MLP_PREFIX = "blip.visual_encoder.", "blip.text_encoder.", "mlp."
UNUSED_KEYS = re.compile(
    r"^blip\.(vision_proj|text_proj)\.(weight|bias)$|^blip\.text_encoder\.embeddings\.position_ids$"
)
"""In the release but not used by the reward: BLIP's contrastive projections (`ImageReward.score` never calls them)
and the text encoder's persistent `position_ids` buffer (0, 1, 2, ...; transformers rebuilds it)."""

_PLACEHOLDERS = {"{n}": r"(?P<n>\d+)", "{p}": r"(?P<p>weight|bias)"}


def _template_pattern(template: str) -> re.Pattern[str]:
    pattern = re.escape(template)
    for placeholder, group in _PLACEHOLDERS.items():
        pattern = pattern.replace(re.escape(placeholder), group)
    return re.compile(f"^{pattern}$")


def _rename(key: str, table: Sequence[tuple[str, str]], *, inverse: bool) -> str | None:
    """`key` renamed through `table` (original -> transformers, or back with `inverse`); None if no row matches."""
    for original, converted in table:
        source, target = (converted, original) if inverse else (original, converted)
        match = _template_pattern(source).match(key)
        if match:
            return target.format(**match.groupdict())
    return None


@dataclass
class ConvertedState:
    """The checkpoint's tensors under transformers' names, one state_dict per module."""

    vision: dict[str, torch.Tensor]
    text: dict[str, torch.Tensor]
    mlp: dict[str, torch.Tensor]


def convert_state_dict(state: Mapping[str, torch.Tensor], source: str) -> ConvertedState:
    """Split and rename an ImageReward state_dict (original layout); an unknown key is an error naming it."""
    converted = ConvertedState({}, {}, {})
    unexpected = []
    for key, tensor in state.items():
        if UNUSED_KEYS.match(key):
            continue
        if key.startswith(VISION_PREFIX):
            renamed = _rename(key.removeprefix(VISION_PREFIX), VISION_KEYS, inverse=False)
            if renamed is not None:
                converted.vision[renamed] = tensor
                continue
        elif key.startswith(TEXT_PREFIX):
            # BLIP's med.py and transformers' modeling_blip_text.py name the text encoder's modules alike.
            converted.text[key.removeprefix(TEXT_PREFIX)] = tensor
            continue
        elif key.startswith(MLP_PREFIX):
            converted.mlp[key.removeprefix(MLP_PREFIX)] = tensor
            continue
        unexpected.append(key)
    if unexpected:
        raise ModelLoadError(
            f"'{source}' is not an ImageReward checkpoint: unexpected keys {sorted(unexpected)[:10]}"
            f"{' ...' if len(unexpected) > 10 else ''}. Expected ImageReward.pt from {IMAGEREWARD_ID} (keys "
            f"{VISION_PREFIX}*, {TEXT_PREFIX}*, {MLP_PREFIX}layers.*), or its .safetensors conversion."
        )
    return converted


def original_state_dict(
    vision: BlipVisionModel, text: BlipTextModel, mlp: AestheticMLP
) -> dict[str, torch.Tensor]:
    """The inverse of `convert_state_dict` for the used modules: their tensors under the release's key names."""
    state = {}
    for key, tensor in vision.state_dict().items():
        original = _rename(key, VISION_KEYS, inverse=True)
        if original is None:
            raise ValueError(f"no original name for the vision key {key!r}")
        state[VISION_PREFIX + original] = tensor
    state |= {TEXT_PREFIX + key: tensor for key, tensor in text.state_dict().items()}
    state |= {MLP_PREFIX + key: tensor for key, tensor in mlp.state_dict().items()}
    return state


def vision_config_of(state: Mapping[str, torch.Tensor], source: str) -> BlipVisionConfig:
    """BLIP's ViT as the checkpoint's shapes give it (the release does not store its vision config)."""
    try:
        width = state["embeddings.class_embedding"].shape[-1]
        patch = state["embeddings.patch_embedding.weight"].shape[-1]
        grid = round((state["embeddings.position_embedding"].shape[1] - 1) ** 0.5)
        intermediate = state["encoder.layers.0.mlp.fc1.weight"].shape[0]
    except KeyError as error:
        original = _rename(str(error.args[0]), VISION_KEYS, inverse=True)
        raise ModelLoadError(
            f"'{source}' lacks {VISION_PREFIX}{original}, which every ImageReward checkpoint holds."
        ) from error
    depth = len({key.split(".")[2] for key in state if key.startswith("encoder.layers.")})
    return BlipVisionConfig(
        hidden_size=width,
        intermediate_size=intermediate,
        num_hidden_layers=depth,
        num_attention_heads=max(1, width // VIT_HEAD_DIM),
        image_size=grid * patch,
        patch_size=patch,
        hidden_act="gelu",  # nn.GELU: the exact (erf) form
        layer_norm_eps=VIT_LAYER_NORM_EPS,
    )


def text_config_of(med_config: Path, encoder_width: int) -> BlipTextConfig:
    """BlipTextConfig of a BLIP "med" config; `encoder_width` (the ViT width) overrides the file's, as BLIP_Pretrain
    does. Cross-attention layers need `is_decoder` in transformers; the forward still runs bidirectionally."""
    try:
        med = json.loads(med_config.read_text())
    except (OSError, ValueError) as error:
        raise ModelLoadError(f"cannot read the ImageReward text config '{med_config}': {error}.") from error
    if not med.get("add_cross_attention") or med.get("position_embedding_type", "absolute") != "absolute":
        raise ModelLoadError(
            f"'{med_config}' is not BLIP's med config: ImageReward needs add_cross_attention = true and absolute "
            f"position embeddings. Use {MED_CONFIG} from {IMAGEREWARD_ID}."
        )
    try:
        return BlipTextConfig(
            vocab_size=med["vocab_size"],
            hidden_size=med["hidden_size"],
            intermediate_size=med["intermediate_size"],
            num_hidden_layers=med["num_hidden_layers"],
            num_attention_heads=med["num_attention_heads"],
            max_position_embeddings=med["max_position_embeddings"],
            hidden_act=med["hidden_act"],
            layer_norm_eps=med["layer_norm_eps"],
            pad_token_id=med["pad_token_id"],
            encoder_hidden_size=encoder_width,
            is_decoder=True,
            # Generation tokens: unused by an encoder, and BlipTextConfig's defaults lie outside a tiny vocabulary.
            bos_token_id=None,
            eos_token_id=None,
            sep_token_id=None,
        )
    except KeyError as error:
        raise ModelLoadError(
            f"'{med_config}' lacks {error.args[0]!r}; use {MED_CONFIG} from {IMAGEREWARD_ID}."
        ) from error


def load_converted(
    module: nn.Module, state: dict[str, torch.Tensor], original_prefix: str, source: str
) -> None:
    """Load `state` strictly into `module`; a missing, extra or mis-shaped tensor is an error naming the release key."""
    expected = {key: tuple(value.shape) for key, value in module.state_dict().items()}

    def original(key: str) -> str:
        if original_prefix == VISION_PREFIX:
            return original_prefix + (_rename(key, VISION_KEYS, inverse=True) or key)
        return original_prefix + key

    missing = sorted(original(key) for key in set(expected) - set(state))
    unexpected = sorted(original(key) for key in set(state) - set(expected))
    wrong = sorted(
        f"{original(key)} {tuple(state[key].shape)} (expected {expected[key]})"
        for key in set(expected) & set(state)
        if tuple(state[key].shape) != expected[key]
    )
    if missing or unexpected or wrong:
        raise ModelLoadError(
            f"'{source}' does not match ImageReward's architecture: missing {missing[:10]}, unexpected "
            f"{unexpected[:10]}, wrong shapes {wrong[:10]}. Use ImageReward.pt and {MED_CONFIG} from {IMAGEREWARD_ID} "
            "(or their conversion), both from the same release."
        )
    module.load_state_dict({key: value.to(torch.float32) for key, value in state.items()}, strict=True)


def imagereward_tokenizer(ref: str) -> BertTokenizer:
    """BLIP's `init_tokenizer`: a BERT tokenizer with [DEC] as bos token and [ENC] as an additional special token."""
    tokenizer = load_pretrained(BertTokenizer, resolve_model(ref, TINY_TOKENIZER_BUILDERS))
    tokenizer.add_special_tokens({"bos_token": BLIP_DECODER_TOKEN})
    tokenizer.add_special_tokens({"additional_special_tokens": [BLIP_ENCODER_TOKEN]})
    return tokenizer


def pixel_values(images: Sequence[Image.Image], size: int) -> torch.Tensor:
    """ImageReward's `_transform(size)` for PIL images, as torchvision computes it: bicubic resize of the short side
    to `size` (long side truncated), centre crop with torchvision's rounding, RGB, /255, OpenAI CLIP mean and std."""
    mean = torch.tensor(OPENAI_CLIP_MEAN).view(3, 1, 1)
    std = torch.tensor(OPENAI_CLIP_STD).view(3, 1, 1)
    rows = []
    for image in images:
        if not isinstance(image, Image.Image):
            raise TypeError(f"expected PIL images, got {type(image).__name__}")
        width, height = image.size
        short, long = sorted((width, height))
        resized_long = int(size * long / short)
        new_size = (size, resized_long) if width <= height else (resized_long, size)
        resized = image.resize(new_size, Image.Resampling.BICUBIC)
        top = round((new_size[1] - size) / 2.0)  # torchvision: int(round(...)), half to even
        left = round((new_size[0] - size) / 2.0)
        cropped = resized.crop((left, top, left + size, top + size)).convert("RGB")
        array = torch.from_numpy(np.array(cropped, dtype=np.uint8)).permute(2, 0, 1).float().div(255)
        rows.append((array - mean) / std)
    return torch.stack(rows)


class ImageRewardModel:
    """Images and prompts -> standardised ImageReward rewards. Towers in `dtype`; the MLP always in float32."""

    def __init__(self, checkpoint: str, tokenizer: str, device: torch.device, dtype: torch.dtype) -> None:
        weights, med_config = checkpoint_files(checkpoint)
        state = convert_state_dict(
            read_tensor_file(
                weights,
                what="ImageReward checkpoint",
                expected=f"Only a plain state_dict of tensors, such as {IMAGEREWARD_CHECKPOINT} from {IMAGEREWARD_ID}, "
                "is accepted",
            ),
            str(weights),
        )
        vision_config = vision_config_of(state.vision, str(weights))
        self.vision = BlipVisionModel(vision_config).eval()
        self.text = BlipTextModel(
            text_config_of(med_config, vision_config.hidden_size), add_pooling_layer=False
        ).eval()
        self.mlp = AestheticMLP(self.text.config.hidden_size).eval()
        for module, module_state, prefix in (
            (self.vision, state.vision, VISION_PREFIX),
            (self.text, state.text, TEXT_PREFIX),
            (self.mlp, state.mlp, MLP_PREFIX),
        ):
            load_converted(module, module_state, prefix, str(weights))
        self.vision.to(device, dtype)
        self.text.to(device, dtype)
        self.mlp.to(device)
        self.tokenizer = imagereward_tokenizer(tokenizer)
        if len(self.tokenizer) > self.text.config.vocab_size:
            raise ModelLoadError(
                f"the tokenizer '{tokenizer}' has {len(self.tokenizer)} tokens with [DEC] and [ENC], more than the "
                f"checkpoint's vocabulary ({self.text.config.vocab_size}): use {IMAGEREWARD_TOKENIZER_ID} with the "
                'real checkpoint, tokenizer = "tiny" with checkpoint = "tiny".'
            )
        self.image_size = vision_config.image_size
        self.device = device
        self.dtype = dtype

    def token_counts(self, prompts: Sequence[str]) -> list[int]:
        """Each prompt's length in tokens ([CLS] and [SEP] included), before truncation to IMAGEREWARD_MAX_TOKENS."""
        return [len(ids) for ids in self.tokenizer(list(prompts))["input_ids"]]

    @torch.inference_mode()
    def rewards(self, images: Sequence[Image.Image], prompts: Sequence[str]) -> list[float]:
        if len(images) != len(prompts):
            raise ValueError(f"got {len(images)} images but {len(prompts)} prompts")
        if not images:
            return []
        tokens = self.tokenizer(
            list(prompts),
            padding="max_length",
            truncation=True,
            max_length=IMAGEREWARD_MAX_TOKENS,
            return_tensors="pt",
        )
        image_embeds = self.vision(
            pixel_values=pixel_values(images, self.image_size).to(self.device, self.dtype)
        ).last_hidden_state
        # The first token stays [CLS]: ImageReward.score does not swap in [ENC] as BLIP's ITM head does.
        text_states = self.text(
            input_ids=tokens["input_ids"].to(self.device),
            attention_mask=tokens["attention_mask"].to(self.device),
            encoder_hidden_states=image_embeds,
            encoder_attention_mask=torch.ones(image_embeds.shape[:-1], dtype=torch.long, device=self.device),
        ).last_hidden_state
        rewards = self.mlp(text_states[:, 0, :].float())
        return ((rewards - IMAGEREWARD_MEAN) / IMAGEREWARD_STD).cpu().tolist()


def checkpoint_files(checkpoint: str) -> tuple[Path, Path]:
    """The weights file and the med config of a checkpoint reference: "tiny", a weights file (med_config.json beside
    it), a folder holding both, or a hub id (only those two files are downloaded)."""
    ref = str(tiny_imagereward_dir()) if checkpoint == "tiny" else checkpoint
    path = expand_user(ref)
    if path.suffix.lower() in {".pt", ".pth", ".safetensors"} and not path.is_dir():
        if not path.is_file():
            raise ModelLoadError(
                f"the ImageReward checkpoint '{ref}' does not exist. Download {IMAGEREWARD_CHECKPOINT} and "
                f"{MED_CONFIG} (`hf download {IMAGEREWARD_ID} {IMAGEREWARD_CHECKPOINT} {MED_CONFIG} --local-dir "
                "<folder>`) and point `checkpoint` at the folder or the file."
            )
        return path, _med_config_beside(path)
    if path.is_dir():
        safetensors_file = path / IMAGEREWARD_SAFETENSORS
        weights = safetensors_file if safetensors_file.is_file() else path / IMAGEREWARD_CHECKPOINT
        if not weights.is_file():
            raise ModelLoadError(
                f"the folder '{ref}' holds neither {IMAGEREWARD_CHECKPOINT} nor {IMAGEREWARD_SAFETENSORS}: download "
                f"them with `hf download {IMAGEREWARD_ID} {IMAGEREWARD_CHECKPOINT} {MED_CONFIG} --local-dir '{ref}'`."
            )
        return weights, _med_config_beside(weights)
    if looks_like_path(ref):
        raise ModelLoadError(f"the ImageReward checkpoint folder '{ref}' does not exist; fix `checkpoint`.")
    return model_file(ref, "", IMAGEREWARD_CHECKPOINT), model_file(ref, "", MED_CONFIG)


def _med_config_beside(weights: Path) -> Path:
    med_config = weights.with_name(MED_CONFIG)
    if not med_config.is_file():
        raise ModelLoadError(
            f"no {MED_CONFIG} beside '{weights}': ImageReward's text encoder is configured by it. Download it "
            f"from {IMAGEREWARD_ID} (`hf download {IMAGEREWARD_ID} {MED_CONFIG} --local-dir '{weights.parent}'`)."
        )
    return med_config


# ---------------------------------------------------------------------------------------------------------------------
# The tiny ImageReward: random towers and MLP built in code, written out as a release is (ImageReward.pt in the
# original key layout, med_config.json) beside a tiny BERT tokenizer, and loaded back through `ImageRewardModel`.

TINY_VISION_WIDTH = 2 * VIT_HEAD_DIM
"""Two heads of BLIP's 64 channels: the head count is derived from the width on loading, as for the real ViT-L."""
TINY_IMAGE_SIZE = 32
TINY_INITIALIZER_RANGE = 0.2
"""Ten times the default, so that the tiny rewards spread with the image and the prompt (as in the tiny BLIP VQA)."""


def tiny_med_config(vocab_size: int) -> dict[str, object]:
    return {
        "architectures": ["BertModel"],
        "attention_probs_dropout_prob": 0.1,
        "hidden_act": "gelu",
        "hidden_dropout_prob": 0.1,
        "hidden_size": 32,
        "initializer_range": TINY_INITIALIZER_RANGE,
        "intermediate_size": 37,
        "layer_norm_eps": 1e-12,
        "max_position_embeddings": 64,
        "model_type": "bert",
        "num_attention_heads": 4,
        "num_hidden_layers": 2,
        "pad_token_id": 0,
        "type_vocab_size": 2,
        "vocab_size": vocab_size,
        "encoder_width": 32,  # overridden by the ViT width on loading, as BLIP_Pretrain does with the real 768
        "add_cross_attention": True,
    }


def build_tiny_imagereward(folder: Path) -> None:
    """Write ImageReward.pt (original key layout, with the unused projections and position_ids of the release),
    med_config.json and `tokenizer/` (a BERT WordPiece tokenizer without BLIP's tokens, like bert-base-uncased)."""
    tokenizer = tiny_bert_tokenizer(with_blip_tokens=False)
    med = tiny_med_config(len(tokenizer) + 2)  # + [DEC] and [ENC], as 30522 + 2 = 30524 for the real one
    torch.manual_seed(0)
    vision = BlipVisionModel(
        BlipVisionConfig(
            hidden_size=TINY_VISION_WIDTH,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=TINY_VISION_WIDTH // VIT_HEAD_DIM,
            image_size=TINY_IMAGE_SIZE,
            patch_size=8,
            layer_norm_eps=VIT_LAYER_NORM_EPS,
            initializer_range=TINY_INITIALIZER_RANGE,
        )
    )
    (folder / MED_CONFIG).write_text(json.dumps(med, indent=2))
    text_config = text_config_of(folder / MED_CONFIG, TINY_VISION_WIDTH)
    text_config.initializer_range = TINY_INITIALIZER_RANGE
    text = BlipTextModel(text_config, add_pooling_layer=False)
    mlp = AestheticMLP(text_config.hidden_size)
    state = original_state_dict(vision, text, mlp)
    state["blip.text_encoder.embeddings.position_ids"] = torch.arange(text_config.max_position_embeddings)[
        None
    ]
    for name, width in (("vision_proj", TINY_VISION_WIDTH), ("text_proj", text_config.hidden_size)):
        projection = nn.Linear(width, 16)
        state[f"blip.{name}.weight"], state[f"blip.{name}.bias"] = projection.weight, projection.bias
    torch.save(
        {key: value.detach().clone().contiguous() for key, value in state.items()},
        folder / IMAGEREWARD_CHECKPOINT,
    )
    tokenizer.save_pretrained(folder / "tokenizer")


def tiny_imagereward_dir() -> Path:
    return publish_directory(build_tiny_imagereward, cache_dir() / "tiny" / "imagereward-v1")


TINY_TOKENIZER_BUILDERS = {"tiny": lambda: tiny_imagereward_dir() / "tokenizer"}
