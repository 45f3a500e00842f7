"""Tiny random-weight Kandinsky 2.2 folders, built in code and saved like the real ones.

They let tests and dry runs go through the real `from_pretrained` loading code without any download (the same
approach as diffusers' own tests, whose configs these follow). Each folder is built once into
`cache_dir()/tiny/<name>-v1/`; bump the version in the name whenever a builder's output changes.
"""

from __future__ import annotations

from pathlib import Path

import torch
from diffusers import (
    DDPMScheduler,
    KandinskyV22Pipeline,
    KandinskyV22PriorPipeline,
    PriorTransformer,
    UnCLIPScheduler,
    UNet2DConditionModel,
    VQModel,
)
from transformers import (
    CLIPImageProcessorPil,
    CLIPTextConfig,
    CLIPTextModelWithProjection,
    CLIPTokenizer,
    CLIPVisionConfig,
    CLIPVisionModelWithProjection,
)
from transformers.convert_slow_tokenizer import bytes_to_unicode

from ovi_bench.io import publish_directory
from ovi_bench.paths import cache_dir

EMBEDDING_DIM = 32
"""The width of every tiny embedding: text_embeds, image_embeds, the prior's output and the decoder's input."""

TEXT_MAX_LENGTH = 77
"""Must equal the prior's num_embeddings (its positional table holds 77 text tokens + 4)."""

BOS_TOKEN, EOS_TOKEN = "<|startoftext|>", "<|endoftext|>"

OPENAI_CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
OPENAI_CLIP_STD = [0.26862954, 0.26130258, 0.27577711]


def tiny_tokenizer() -> CLIPTokenizer:
    """A CLIP tokenizer without merges: every byte is a token, plus a `</w>` variant that ends a word.

    EOS gets the highest id (513), as in real CLIP, and is also the pad token (CLIPTokenizer's default).
    """
    characters = list(bytes_to_unicode().values())
    vocab = {character: index for index, character in enumerate(characters)}
    vocab.update({character + "</w>": 256 + index for index, character in enumerate(characters)})
    vocab[BOS_TOKEN] = 512
    vocab[EOS_TOKEN] = 513
    return CLIPTokenizer(vocab=vocab, merges=[], model_max_length=TEXT_MAX_LENGTH)


def _tiny_text_encoder(tokenizer: CLIPTokenizer) -> CLIPTextModelWithProjection:
    # diffusers' tests use bos 0 / eos 2 / pad 1, and eos_token_id == 2 makes transformers pool at argmax(input_ids)
    # (legacy). We name our tokenizer's real ids instead, so pooling takes the first EOS token explicitly.
    config = CLIPTextConfig(
        hidden_size=EMBEDDING_DIM,
        projection_dim=EMBEDDING_DIM,
        intermediate_size=37,
        num_attention_heads=4,
        num_hidden_layers=5,
        vocab_size=1000,
        max_position_embeddings=TEXT_MAX_LENGTH,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(0)
    return CLIPTextModelWithProjection(config).eval()


def _tiny_image_encoder() -> CLIPVisionModelWithProjection:
    # Wider, shallower and with larger initial weights than diffusers' test tower (width 32, 5 layers, factor 1):
    # optimisation-based priors (OVI) must be able to steer its output to a text direction (cosine >= 0.95), which
    # the test tower cannot. A 32 px image in 8 px patches (16 patches) keeps it cheap.
    config = CLIPVisionConfig(
        hidden_size=64,
        projection_dim=EMBEDDING_DIM,
        intermediate_size=128,
        num_attention_heads=4,
        num_hidden_layers=2,
        image_size=32,
        patch_size=8,
        initializer_factor=4.0,
    )
    torch.manual_seed(0)
    return CLIPVisionModelWithProjection(config).eval()


def _tiny_prior() -> PriorTransformer:
    torch.manual_seed(0)
    prior = PriorTransformer(
        num_attention_heads=2, attention_head_dim=12, embedding_dim=EMBEDDING_DIM, num_layers=1
    )
    # clip_mean/clip_std start at zero, which would make post_process_latents return zeros. A nonzero mean also
    # makes post-processing visible in tests.
    statistics = torch.Generator().manual_seed(0)
    with torch.no_grad():
        prior.clip_std.copy_(torch.ones_like(prior.clip_std))
        prior.clip_mean.copy_(0.1 * torch.randn(prior.clip_mean.shape, generator=statistics))
    return prior.eval()


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


def build_tiny_kandinsky_prior(folder: Path) -> None:
    """Save a tiny KandinskyV22PriorPipeline into `folder`."""
    tokenizer = tiny_tokenizer()
    image_encoder = _tiny_image_encoder()
    pipeline = KandinskyV22PriorPipeline(
        prior=_tiny_prior(),
        image_encoder=image_encoder,
        text_encoder=_tiny_text_encoder(tokenizer),
        tokenizer=tokenizer,
        # The real prior's scheduler (x0 prediction).
        scheduler=UnCLIPScheduler(
            variance_type="fixed_small_log",
            prediction_type="sample",
            num_train_timesteps=1000,
            clip_sample=True,
            clip_sample_range=10.0,
        ),
        # Only KandinskyV22PriorPipeline.interpolate uses it (ovi-bench loads the pipeline without it); saved so
        # the folder has the real layout and loads with a plain from_pretrained too.
        image_processor=clip_image_processor(image_encoder.config.image_size),
    )
    pipeline.save_pretrained(folder, safe_serialization=True)


def _tiny_unet() -> UNet2DConditionModel:
    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        in_channels=4,
        out_channels=8,  # noise and learned variance, as in the real decoder
        addition_embed_type="image",
        down_block_types=("ResnetDownsampleBlock2D", "SimpleCrossAttnDownBlock2D"),
        up_block_types=("SimpleCrossAttnUpBlock2D", "ResnetUpsampleBlock2D"),
        mid_block_type="UNetMidBlock2DSimpleCrossAttn",
        block_out_channels=(32, 64),
        layers_per_block=1,
        encoder_hid_dim=EMBEDDING_DIM,
        encoder_hid_dim_type="image_proj",
        cross_attention_dim=32,
        attention_head_dim=4,
        resnet_time_scale_shift="scale_shift",
        class_embed_type=None,
    )
    return unet.eval()


def _tiny_movq() -> VQModel:
    torch.manual_seed(0)
    movq = VQModel(
        block_out_channels=[32, 64],
        down_block_types=["DownEncoderBlock2D", "AttnDownEncoderBlock2D"],
        in_channels=3,
        latent_channels=4,
        layers_per_block=1,
        norm_num_groups=8,
        norm_type="spatial",
        num_vq_embeddings=12,
        out_channels=3,
        up_block_types=["AttnUpDecoderBlock2D", "UpDecoderBlock2D"],
        vq_embed_dim=4,
    )
    return movq.eval()


def _decoder_scheduler() -> DDPMScheduler:
    # The real decoder's scheduler_config.json (diffusers' tests use DDIM instead). from_config, not the
    # constructor: it ignores keys DDPMScheduler does not take (set_alpha_to_one), as hub loading does.
    return DDPMScheduler.from_config(
        {
            "beta_schedule": "linear",
            "beta_start": 0.00085,
            "beta_end": 0.012,
            "clip_sample": False,
            "num_train_timesteps": 1000,
            "prediction_type": "epsilon",
            "set_alpha_to_one": False,
            "steps_offset": 1,
        }
    )


def build_tiny_kandinsky_decoder(folder: Path) -> None:
    """Save a tiny KandinskyV22Pipeline (UNet, movq, DDPM scheduler) into `folder`."""
    pipeline = KandinskyV22Pipeline(unet=_tiny_unet(), scheduler=_decoder_scheduler(), movq=_tiny_movq())
    pipeline.save_pretrained(folder, safe_serialization=True)


def tiny_kandinsky_prior_dir() -> Path:
    """The tiny prior folder (prior, image_encoder, text_encoder, tokenizer, scheduler, image_processor)."""
    return publish_directory(build_tiny_kandinsky_prior, cache_dir() / "tiny" / "kandinsky-2.2-prior-v1")


def tiny_kandinsky_decoder_dir() -> Path:
    """The tiny decoder folder (unet, movq, scheduler)."""
    return publish_directory(build_tiny_kandinsky_decoder, cache_dir() / "tiny" / "kandinsky-2.2-decoder-v1")


PRIOR_TINY_BUILDERS = {"tiny": tiny_kandinsky_prior_dir}
"""Tiny references accepted wherever a Kandinsky 2.2 prior folder is expected."""

DECODER_TINY_BUILDERS = {"tiny": tiny_kandinsky_decoder_dir}
"""Tiny references accepted wherever a Kandinsky 2.2 decoder folder is expected."""
