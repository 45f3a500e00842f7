"""FLOPs and estimated GPU time per image for every decoder (and the learned priors) at their real architectures.

Usage:
    python benchmarks/decoder_flops.py [--peak-tflops 989] [--achieved-fraction 0.35] [--images 24000]

Each network is built from its diffusers config in `benchmarks/decoder_architectures.json` on PyTorch's meta device
(no weights, no memory, no arithmetic) and called once with the shapes the diffusers pipeline feeds it, under
`torch.utils.flop_counter.FlopCounterMode`, which counts the matrix products, convolutions and attention (2 FLOPs
per multiply-add; norms, activations and the scheduler's element-wise updates are not counted). A call made with
classifier-free guidance is counted at batch 2 (the pipeline batches the unconditional and the conditional
branch), then multiplied by the pipeline's step count; decoding the latents (VAE or MoVQ) is counted once. Not
counted: the CLIP image encoder (decoders get precomputed embeddings) and the text encoders, which run once per
prompt, not per step (about 2 x parameters x 77 tokens: 0.1 TFLOP for ViT-bigG/14's text tower).

Seconds are an estimate, not a measurement: FLOPs / (the card's dense bf16 peak x an assumed achieved fraction).
The defaults are an H100/H200 SXM's 989 TFLOP/s and 35%. The parameter count of every network is printed beside
the figure it is checked against, so a mistaken configuration shows.
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

ARCHITECTURES = Path(__file__).with_name("decoder_architectures.json")
COMPBENCH_IMAGES = 8 * 300 * 10  # T2I-CompBench++: 8 categories x 300 val prompts x 10 images
DEVICE = torch.device("meta")
TEXT_TOKENS = 77


def build_module(name: str, models: dict) -> torch.nn.Module:
    """Builds one network of the architecture file on the meta device (an IP-Adapter is built onto its UNet)."""
    from diffusers import AutoencoderKL, PriorTransformer, UNet2DConditionModel, UNet2DModel, VQModel
    from diffusers.pipelines.deprecated.unclip.text_proj import UnCLIPTextProjModel

    classes = {
        "UNet2DConditionModel": UNet2DConditionModel,
        "UNet2DModel": UNet2DModel,
        "AutoencoderKL": AutoencoderKL,
        "VQModel": VQModel,
        "PriorTransformer": PriorTransformer,
        "UnCLIPTextProjModel": UnCLIPTextProjModel,
    }
    entry = models[name]
    if entry["class"] == "IPAdapter":
        config = entry["config"]
        return attach_ip_adapter(
            build_module(config["unet"], models),
            image_embed_dim=config["image_embed_dim"],
            num_tokens=config["num_tokens"],
        )
    with DEVICE, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return classes[entry["class"]](**entry["config"]).eval()


def attach_ip_adapter(unet: torch.nn.Module, *, image_embed_dim: int, num_tokens: int) -> torch.nn.Module:
    """Gives `unet` IP-Adapter's image projection and decoupled cross-attention, as `load_ip_adapter` does.

    The processors and their sizes follow diffusers' `_convert_ip_adapter_attn_to_diffusers`: every cross-attention
    gets `to_k_ip`/`to_v_ip` from the UNet's cross-attention width to the block's width.
    """
    from diffusers.models.attention_processor import AttnProcessor2_0, IPAdapterAttnProcessor2_0
    from diffusers.models.embeddings import ImageProjection, MultiIPAdapterImageProjection

    widths = list(unet.config.block_out_channels)
    processors = {}
    with DEVICE:
        for name in unet.attn_processors:
            if name.endswith("attn1.processor"):
                processors[name] = AttnProcessor2_0()
                continue
            if name.startswith("mid_block"):
                hidden_size = widths[-1]
            elif name.startswith("up_blocks"):
                hidden_size = list(reversed(widths))[int(name[len("up_blocks.")])]
            else:
                hidden_size = widths[int(name[len("down_blocks.")])]
            processors[name] = IPAdapterAttnProcessor2_0(
                hidden_size=hidden_size,
                cross_attention_dim=unet.config.cross_attention_dim,
                scale=1.0,
                num_tokens=(num_tokens,),
            )
        projection = ImageProjection(
            image_embed_dim=image_embed_dim,
            cross_attention_dim=unet.config.cross_attention_dim,
            num_image_text_embeds=num_tokens,
        )
    unet.set_attn_processor(processors)
    unet.encoder_hid_proj = MultiIPAdapterImageProjection([projection])
    unet.config.encoder_hid_dim_type = "ip_image_proj"
    return unet


def adapter_parameters(unet: torch.nn.Module) -> int:
    """Parameters IP-Adapter adds to a UNet: the image projection and every to_k_ip/to_v_ip."""
    projection = sum(p.numel() for p in unet.encoder_hid_proj.parameters())
    return projection + sum(p.numel() for n, p in unet.named_parameters() if "_ip." in n)


def count_flops(call: Callable[[], object]) -> int:
    with FlopCounterMode(display=False) as counter, torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        call()
    return counter.get_total_flops()


def meta(*shape: int) -> torch.Tensor:
    return torch.empty(shape, device=DEVICE)


@dataclass
class Stage:
    """One network's share of an image: FLOPs of one call, how many calls per image, and what the call is."""

    network: str
    flops_per_call: int
    calls: int
    what: str

    @property
    def flops(self) -> int:
        return self.flops_per_call * self.calls


@dataclass
class Pipeline:
    name: str
    settings: str
    stages: list[Stage]
    faithful: str

    @property
    def flops(self) -> int:
        return sum(stage.flops for stage in self.stages)


def cfg_batch(guided: bool) -> int:
    return 2 if guided else 1


def latent_unet_call(unet: torch.nn.Module, latent: int, batch: int, **kwargs: object) -> int:
    return count_flops(lambda: unet(meta(batch, unet.config.in_channels, latent, latent), 999, **kwargs))


def kandinsky22(models: dict, built: dict, steps: int = 50, size: int = 512) -> Pipeline:
    unet, movq = built["kandinsky22-unet"], built["kandinsky22-movq"]
    latent = size // 8  # movq_scale_factor = 2 ** (len(block_out_channels) - 1)
    step = latent_unet_call(
        unet, latent, 2, encoder_hidden_states=None, added_cond_kwargs={"image_embeds": meta(2, 1280)}
    )
    decode = count_flops(lambda: movq.decode(meta(1, 4, latent, latent), force_not_quantize=True))
    return Pipeline(
        "kandinsky-2.2-decoder",
        f"{size}x{size}, {steps} steps, CFG 4",
        [
            Stage("kandinsky22-unet", step, steps, "UNet, batch 2 (CFG)"),
            Stage("kandinsky22-movq", decode, 1, f"MoVQ decode {latent}->{size}"),
        ],
        models["kandinsky22-unet"]["faithful"],
    )


def sd_ip_adapter(
    models: dict, built: dict, family: str, size: int, steps: int, guidance: float, text_width: int
) -> Pipeline:
    unet, vae = built[f"{family}-ip-adapter"], built[f"{family}-vae"]
    latent = size // 8
    image_width = models[f"{family}-ip-adapter"]["config"]["image_embed_dim"]
    added: dict[str, object] = {
        "image_embeds": [meta(2, 1, image_width)]
    }  # one adapter, one image per prompt
    if family == "sdxl":
        added |= {"text_embeds": meta(2, 1280), "time_ids": meta(2, 6)}
    step = latent_unet_call(
        unet, latent, 2, encoder_hidden_states=meta(2, TEXT_TOKENS, text_width), added_cond_kwargs=added
    )
    decode = count_flops(lambda: vae.decode(meta(1, 4, latent, latent)))
    return Pipeline(
        f"{family}-ip-adapter",
        f"{size}x{size}, {steps} steps, CFG {guidance:g}",
        [
            Stage(f"{family}-unet + {family}-ip-adapter", step, steps, "UNet with IP-Adapter, batch 2 (CFG)"),
            Stage(f"{family}-vae", decode, 1, f"VAE decode {latent}->{size}"),
        ],
        "yes",
    )


def stable_unclip(models: dict, built: dict, variant: str, steps: int = 20, size: int = 768) -> Pipeline:
    unet, vae = built[f"unclip-{variant}-unet"], built["unclip-vae"]
    latent = size // 8
    # The class label is the image embedding concatenated with its noise-level embedding (2 x the CLIP width).
    noise_embedding = unet.config.projection_class_embeddings_input_dim
    step = latent_unet_call(
        unet,
        latent,
        2,
        encoder_hidden_states=meta(2, TEXT_TOKENS, 1024),
        class_labels=meta(2, noise_embedding),
    )
    decode = count_flops(lambda: vae.decode(meta(1, 4, latent, latent)))
    return Pipeline(
        f"stable-unclip ({variant.upper()})",
        f"{size}x{size}, {steps} steps, CFG 10",
        [
            Stage(f"unclip-{variant}-unet", step, steps, "UNet, batch 2 (CFG)"),
            Stage("unclip-vae", decode, 1, f"VAE decode {latent}->{size}"),
        ],
        models[f"unclip-{variant}-unet"]["faithful"],
    )


def karlo_decoder(models: dict, built: dict, steps: int = 25, super_res_steps: int = 7) -> Pipeline:
    text_proj, unet = built["karlo-text-proj"], built["karlo-decoder-unet"]
    first, last = built["karlo-super-res-first"], built["karlo-super-res-last"]
    tokens = TEXT_TOKENS + text_proj.clip_extra_context_tokens
    project = count_flops(
        lambda: text_proj(
            image_embeddings=meta(1, 768),  # the learned unconditional embedding is concatenated inside
            prompt_embeds=meta(2, 768),
            text_encoder_hidden_states=meta(2, TEXT_TOKENS, 768),
            do_classifier_free_guidance=True,
        )
    )
    step = latent_unet_call(
        unet,
        64,
        2,
        encoder_hidden_states=meta(2, tokens, 1536),
        class_labels=meta(2, 1280),
        attention_mask=torch.ones(2, tokens, dtype=torch.bool, device=DEVICE),
    )
    size = first.config.sample_size
    super_res = count_flops(lambda: first(meta(1, 6, size, size), 999))
    super_res_last = count_flops(lambda: last(meta(1, 6, size, size), 999))
    return Pipeline(
        "karlo-decoder",
        f"64x64 {steps} steps CFG 8, then {super_res_steps} super-res steps to {size}x{size}",
        [
            Stage("karlo-text-proj", project, 1, "text projection, batch 2 (CFG)"),
            Stage("karlo-decoder-unet", step, steps, "64x64 decoder UNet, batch 2 (CFG)"),
            Stage("karlo-super-res-first", super_res, super_res_steps - 1, f"super-res 64->{size}, no CFG"),
            Stage("karlo-super-res-last", super_res_last, 1, "super-res last step, no CFG"),
        ],
        "yes",
    )


def prior(models: dict, built: dict, name: str, label: str, steps: int = 25) -> Pipeline:
    network = built[name]
    width = models[name]["config"]["embedding_dim"]
    step = count_flops(
        lambda: network(
            meta(2, width),
            timestep=999,
            proj_embedding=meta(2, width),
            encoder_hidden_states=meta(2, TEXT_TOKENS, width),
            attention_mask=torch.ones(2, TEXT_TOKENS, dtype=torch.bool, device=DEVICE),
        )
    )
    return Pipeline(
        label,
        f"{steps} steps, CFG 4",
        [Stage(name, step, steps, "PriorTransformer, batch 2 (CFG)")],
        models[name]["faithful"],
    )


def parameter_rows(models: dict, built: dict) -> list[str]:
    rows = []
    for name, entry in models.items():
        module = built[name]
        count = (
            adapter_parameters(module)
            if entry["class"] == "IPAdapter"
            else sum(p.numel() for p in module.parameters())
        )
        published = entry.get("published_parameters")
        check = f"{published / 1e6:,.0f} M ({count / published - 1:+.1%})" if published else "none published"
        source = entry["source"]
        rows.append(
            f"| {name} | {entry['class']} | {count / 1e6:,.1f} M | {check} | "
            f"{source['repository']} `{source['path']}` @ {source['commit'][:10]} | {entry['faithful']} |"
        )
    return rows


def seconds(flops: float, peak_tflops: float, fraction: float) -> float:
    return flops / (peak_tflops * 1e12 * fraction)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--peak-tflops", type=float, default=989.0, help="dense bf16 peak of the card")
    parser.add_argument("--achieved-fraction", type=float, default=0.35, help="assumed share of the peak")
    parser.add_argument("--images", type=int, default=COMPBENCH_IMAGES, help="images in one run")
    arguments = parser.parse_args()
    start = time.perf_counter()
    models = json.loads(ARCHITECTURES.read_text())["models"]
    built = {name: build_module(name, models) for name in models}
    print(f"torch {torch.__version__}; every network built on the meta device from {ARCHITECTURES.name}\n")
    print("| network | class | parameters | published (difference) | derived from | faithful |")
    print("|---|---|---:|---:|---|---|")
    print("\n".join(parameter_rows(models, built)))

    pipelines = [
        kandinsky22(models, built),
        sd_ip_adapter(models, built, "sdxl", size=1024, steps=50, guidance=5.0, text_width=2048),
        sd_ip_adapter(models, built, "sd15", size=512, steps=50, guidance=7.5, text_width=768),
        stable_unclip(models, built, "h"),
        stable_unclip(models, built, "l"),
        karlo_decoder(models, built),
        prior(models, built, "kandinsky22-prior", "kandinsky-2.2 prior"),
        prior(models, built, "karlo-prior", "karlo prior"),
    ]
    peak, fraction, images = arguments.peak_tflops, arguments.achieved_fraction, arguments.images
    print("\nPer stage (TFLOP per image):\n")
    print("| pipeline | stage | TFLOP per call | calls | TFLOP |")
    print("|---|---|---:|---:|---:|")
    for pipeline in pipelines:
        for stage in pipeline.stages:
            print(
                f"| {pipeline.name} | {stage.what} | {stage.flops_per_call / 1e12:.3f} | {stage.calls} | "
                f"{stage.flops / 1e12:.2f} |"
            )
    print(
        f"\nEstimated GPU time at {peak:g} TFLOP/s x {fraction:.0%} achieved (an assumption, not a measurement); "
        f"a run of {images:,} images:\n"
    )
    print("| pipeline | settings | TFLOP / image | est. s / image | est. GPU-hours / run | config |")
    print("|---|---|---:|---:|---:|---|")
    for pipeline in pipelines:
        per_image = seconds(pipeline.flops, peak, fraction)
        print(
            f"| {pipeline.name} | {pipeline.settings} | {pipeline.flops / 1e12:.1f} | {per_image:.2f} | "
            f"{per_image * images / 3600:.1f} | {pipeline.faithful} |"
        )
    print(f"\n{time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
