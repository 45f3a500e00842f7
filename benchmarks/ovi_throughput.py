"""OVI throughput on the CPU: prompts per second and achieved FLOP/s against the machine's own matmul throughput.

Usage:
    python benchmarks/ovi_throughput.py [--steps 6] [--threads 2]

Measured in one run, as ratios (these machines are noisy):
1. dense fp32 matmul throughput (best of several 2048³ products): the machine's ceiling;
2. OVI optimisation steps on a randomly initialised ViT-B/32-shaped vision tower at batch 1, 8 and 32, counting
   4 × parameters × tokens FLOPs per prompt-step (forward 2, backward to the activations 2; no weight gradients);
3. batch 8 as one batched problem vs eight one-prompt problems;
4. early stopping vs the fixed 1000 steps on the tiny Kandinsky tower: steps used and final cosine.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

from ovi_bench.priors.ovi import optimise_pseudo_tokens

VIT_B32 = CLIPVisionConfig(
    hidden_size=768,
    intermediate_size=3072,
    num_attention_heads=12,
    num_hidden_layers=12,
    image_size=224,
    patch_size=32,
    projection_dim=512,
)


def matmul_flops_per_second(size: int = 2048, repeats: int = 5) -> float:
    left, right = torch.randn(size, size), torch.randn(size, size)
    left @ right  # warm-up
    best = min(_timed(lambda: left @ right) for _ in range(repeats))
    return 2 * size**3 / best


def _timed(function) -> float:
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


def tower_parameters(model: CLIPVisionModelWithProjection) -> int:
    """Parameters that every token passes through: the encoder layers (projection and embeddings are negligible)."""
    return sum(parameter.numel() for parameter in model.vision_model.encoder.parameters())


def seconds_per_step(model, batch_size: int, steps: int) -> float:
    text_embeds = torch.randn(batch_size, model.config.projection_dim)
    generators = [torch.Generator().manual_seed(seed) for seed in range(batch_size)]
    kwargs = dict(pseudo_tokens=1, learning_rate=2e-2, weight_decay=0.01, init_std=0.02)
    optimise_pseudo_tokens(model, text_embeds, generators, steps=1, **kwargs)  # warm-up
    # Subtract a 1-step run so that the final evaluation pass and set-up are not counted as steps.
    one = min(
        _timed(lambda: optimise_pseudo_tokens(model, text_embeds, generators, steps=1, **kwargs))
        for _ in range(2)
    )
    many = min(
        _timed(lambda: optimise_pseudo_tokens(model, text_embeds, generators, steps=steps + 1, **kwargs))
        for _ in range(2)
    )
    return (many - one) / steps


def early_stopping_comparison(prompts: int = 32) -> dict[str, float]:
    from ovi_bench.models.kandinsky import load_image_encoder, load_text_side

    device, dtype = torch.device("cpu"), torch.float32
    image_encoder = load_image_encoder("tiny", device, dtype)
    texts = [
        f"prompt number {index}: a {colour} object"
        for index, colour in enumerate(["red", "blue", "green", "pink"] * (prompts // 4))
    ]
    text_embeds = load_text_side("tiny", device, dtype).encode(texts).text_embeds.float()
    generators = lambda: [torch.Generator().manual_seed(seed) for seed in range(prompts)]  # noqa: E731
    kwargs = dict(pseudo_tokens=4, learning_rate=2e-2, weight_decay=0.01, init_std=0.02)
    fixed = optimise_pseudo_tokens(image_encoder, text_embeds, generators(), steps=1000, **kwargs)
    early = optimise_pseudo_tokens(
        image_encoder, text_embeds, generators(), steps=1000, patience=50, min_improvement=1e-4, **kwargs
    )
    return {
        "fixed_steps": 1000.0,
        "early_mean_steps": statistics.mean(early.steps),
        "early_max_steps": float(max(early.steps)),
        "fixed_mean_cosine": statistics.mean(fixed.text_cosines),
        "early_mean_cosine": statistics.mean(early.text_cosines),
        "max_cosine_drop": max(f - e for f, e in zip(fixed.text_cosines, early.text_cosines, strict=True)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=6, help="timed optimisation steps per configuration")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    arguments = parser.parse_args()
    torch.set_num_threads(arguments.threads)
    torch.manual_seed(0)
    model = CLIPVisionModelWithProjection(VIT_B32).eval()
    parameters = tower_parameters(model)
    tokens = model.vision_model.embeddings.num_positions
    flops_per_prompt_step = 4 * parameters * tokens
    peak = matmul_flops_per_second()
    print(
        f"threads {arguments.threads}; ViT-B/32 tower: {parameters / 1e6:.1f} M parameters × {tokens} tokens"
    )
    print(f"dense fp32 matmul: {peak / 1e9:.1f} GFLOP/s\n")
    print("| batch | s / step | prompts / s at 1000 steps | GFLOP/s | of matmul |")
    print("|---:|---:|---:|---:|---:|")
    per_step = {}
    for batch_size in (1, 8, 32):
        per_step[batch_size] = seconds_per_step(model, batch_size, arguments.steps)
        achieved = flops_per_prompt_step * batch_size / per_step[batch_size]
        print(
            f"| {batch_size} | {per_step[batch_size]:.3f} | {batch_size / (1000 * per_step[batch_size]):.4f} | "
            f"{achieved / 1e9:.1f} | {achieved / peak:.0%} |"
        )
    print(
        f"\nbatch 8 batched vs one prompt at a time: {8 * per_step[1] / per_step[8]:.2f}× faster "
        f"({per_step[8]:.3f} s vs {8 * per_step[1]:.3f} s per step of 8 prompts)\n"
    )
    comparison = early_stopping_comparison()
    print("early stopping (tiny tower, 32 prompts, patience 50, min_improvement 1e-4):")
    for name, value in comparison.items():
        print(f"  {name}: {value:.4f}")
    print(
        f"  steps saved: {comparison['fixed_steps'] / comparison['early_mean_steps']:.2f}× fewer on average"
    )


if __name__ == "__main__":
    main()
