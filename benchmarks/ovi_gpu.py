"""OVI on a GPU at Kandinsky 2.2's real scale: the ViT-bigG/14 image tower with random weights, in bfloat16.

Usage (on a CUDA machine):
    python benchmarks/ovi_gpu.py [--batch-sizes 8 32 64] [--steps 20] [--peak-tflops 989]

Reports seconds per prompt at 1000 steps and achieved TFLOP/s against the card's dense bf16 peak (989 TFLOP/s for
an H100 or H200 SXM; pass another value for other cards), counting 4 × parameters × tokens FLOPs per prompt-step.
Two modes: the tower's weights in bfloat16, and float32 weights under bfloat16 autocast (the prior's
`precision = "bfloat16-autocast"`).
"""

from __future__ import annotations

import argparse
import time

import torch
from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

from ovi_bench.priors.ovi import optimise_pseudo_tokens

VIT_BIGG14 = CLIPVisionConfig(
    hidden_size=1664,
    intermediate_size=8192,
    num_attention_heads=16,
    num_hidden_layers=48,
    image_size=224,
    patch_size=14,
    projection_dim=1280,
    hidden_act="gelu",
)


def seconds_per_step(model, batch_size: int, steps: int, autocast: torch.dtype | None) -> float:
    text_embeds = torch.randn(batch_size, 1280, device="cuda")
    generators = [torch.Generator().manual_seed(seed) for seed in range(batch_size)]
    kwargs = dict(
        pseudo_tokens=4, learning_rate=2e-2, weight_decay=0.01, init_std=0.02, autocast_dtype=autocast
    )

    def run(count: int) -> float:
        torch.cuda.synchronize()
        start = time.perf_counter()
        optimise_pseudo_tokens(model, text_embeds, generators, steps=count, **kwargs)
        torch.cuda.synchronize()
        return time.perf_counter() - start

    run(2)  # warm-up: kernels, allocator
    return (run(steps + 1) - run(1)) / steps


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[8, 32, 64])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--peak-tflops", type=float, default=989.0)
    arguments = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("this benchmark needs a CUDA device")
    torch.backends.cuda.matmul.allow_tf32 = True
    print(f"{torch.cuda.get_device_name()}, torch {torch.__version__}")
    for mode, weights_dtype, autocast in (
        ("bf16 weights", torch.bfloat16, None),
        ("fp32 + bf16 autocast", torch.float32, torch.bfloat16),
    ):
        with torch.device("cuda"):
            torch.manual_seed(0)
            model = CLIPVisionModelWithProjection(VIT_BIGG14).to(weights_dtype).eval()
        parameters = sum(p.numel() for p in model.vision_model.encoder.parameters())
        tokens = model.vision_model.embeddings.num_positions
        print(f"\n{mode}: {parameters / 1e9:.2f} B parameters × {tokens} tokens")
        print("| batch | s / step | s / prompt at 1000 steps | TFLOP/s | of peak |")
        print("|---:|---:|---:|---:|---:|")
        for batch_size in arguments.batch_sizes:
            step = seconds_per_step(model, batch_size, arguments.steps, autocast)
            achieved = 4 * parameters * tokens * batch_size / step
            print(
                f"| {batch_size} | {step:.3f} | {1000 * step / batch_size:.2f} | {achieved / 1e12:.0f} | "
                f"{achieved / 1e12 / arguments.peak_tflops:.0%} |"
            )
        del model
        torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
