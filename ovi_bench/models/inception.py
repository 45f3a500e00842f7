"""InceptionV3 features for the `inception` feature space, through torch-fidelity (an optional extra)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from PIL import Image

from ovi_bench.errors import OviBenchError
from ovi_bench.paths import expand_user

INCEPTION_SIZE = 299
BICUBIC = Image.Resampling.BICUBIC


def load_inception_features(
    ref: str, device: torch.device
) -> Callable[[Sequence[Image.Image]], torch.Tensor]:
    """torch-fidelity's InceptionV3 pool features (2048): images -> [B, 2048] float32 on the CPU. `ref`: a local
    weights file, or anything else for torch-fidelity's own download."""
    try:
        from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3
    except ImportError as error:
        raise OviBenchError(
            'features = "inception" needs torch-fidelity\'s InceptionV3, an optional extra that is not installed: '
            "`pip install torch-fidelity` together with the torchvision build that matches your torch. It is not a "
            "core dependency because torchvision wheels are pinned to one torch version (and break beside others) and "
            'its weights download from GitHub on first use. Or use features = "clip-vit-l-14" or "dinov2".'
        ) from error
    weights = expand_user(ref)
    model = FeatureExtractorInceptionV3(
        "inception-v3-compat",
        ["2048"],
        **({"feature_extractor_weights_path": str(weights)} if weights.is_file() else {}),
    ).to(device)
    model.eval()

    @torch.inference_mode()
    def extract(images: Sequence[Image.Image]) -> torch.Tensor:
        # Resized here with PIL bicubic to 299×299 (our recorded policy), so the extractor's own resize is a no-op.
        arrays = [
            torch.from_numpy(
                np.array(
                    image.convert("RGB").resize((INCEPTION_SIZE, INCEPTION_SIZE), BICUBIC), dtype=np.uint8
                )
            ).permute(2, 0, 1)
            for image in images
        ]
        return model(torch.stack(arrays).to(device))[0].float().cpu()

    return extract
