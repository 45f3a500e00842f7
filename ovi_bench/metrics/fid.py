"""`fid`, `kid`, `cmmd`: set-level perceptual-quality metrics of a prior's images against a reference set of real images.

Each is a `SetMetric`: per-image features from one extractor (CLIP ViT-L/14 image embeddings, the DINOv2 CLS token,
or torch-fidelity's InceptionV3 when that optional extra is installed), then one distance per set.

Comparability: a distance is only meaningful against another distance computed in the same feature space, on the same
reference set, with similar sample counts (FID is biased upward for small sets). The leaderboard therefore names each
row `<metric>[<feature space>]`, e.g. `fid[clip-vit-l-14]`, and a non-default `feature_model` is part of the feature
space (`fid[clip-vit-l-14@tiny]`), so numbers from different extractors never share a row name.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from PIL import Image
from pydantic import Field

from ovi_bench.bank.folder import EmbeddingBank
from ovi_bench.bank.sources import IMAGE_SUFFIXES, ImageFiles
from ovi_bench.bank.tiny import draw_tiny_bank_images
from ovi_bench.components import FileNeed, ModelNeed, Params, model_files
from ovi_bench.errors import DataError
from ovi_bench.io import canonical_json, publish_directory, sha256_text
from ovi_bench.metrics.base import SetMetric, SetScore
from ovi_bench.metrics.functional.distances import (
    cmmd,
    feature_statistics,
    frechet_distance,
    kernel_inception_distance,
)
from ovi_bench.models.clip import TINY_CLIP_BUILDERS, load_clip_image_encoder
from ovi_bench.models.dinov2 import DINOV2_BASE_ID, Dinov2Features
from ovi_bench.models.hub import resolve_model
from ovi_bench.models.inception import load_inception_features
from ovi_bench.paths import cache_dir, expand_user

FEATURE_MODELS: dict[str, str] = {
    "clip-vit-l-14": "openai/clip-vit-large-patch14",
    "clip-vit-l-14-336": "openai/clip-vit-large-patch14-336",
    "dinov2": DINOV2_BASE_ID,
    "inception": "inception-v3-compat",
}
"""Default extractor of each feature space: a Hugging Face id, or (inception) torch-fidelity's extractor name."""

BICUBIC = Image.Resampling.BICUBIC


# ---------------------------------------------------------------------------------------------------------------------
# Feature extractors: images -> [B, F] float32 on the CPU.

Extractor = Callable[[Sequence[Image.Image]], torch.Tensor]


def _clip_extractor(ref: str, device: torch.device, dtype: torch.dtype, normalise: bool) -> Extractor:
    # The whole CLIPModel, as the `clip` metric loads it: CLIPVisionModelWithProjection alone would take the vision
    # config's projection width, which a checkpoint may leave at its default instead of the model's projection_dim.
    # Always transformers' PIL processor, bicubic: the resize policy is recorded and must not depend on torchvision.
    encoder = load_clip_image_encoder(
        resolve_model(ref, TINY_CLIP_BUILDERS),
        device,
        dtype,
        whole_model=True,
        backend="pil",
        resample=BICUBIC,
    )

    def extract(images: Sequence[Image.Image]) -> torch.Tensor:
        embeds = encoder.image_embeds(images)
        return (F.normalize(embeds, dim=-1) if normalise else embeds).cpu()

    return extract


# ---------------------------------------------------------------------------------------------------------------------
# Reference sets.

TINY_REFERENCE_IMAGES = 64


@dataclass(frozen=True)
class ReferenceSet:
    paths: list[Path]
    identity: str
    """sha256 of what the images are: sorted names + sizes + mtimes (the drawn tiny set: names), or a bank's digest."""
    description: str


def tiny_reference_dir() -> Path:
    """The tiny reference: the first 64 tiny-bank drawings (same generator), built on first use into the cache."""
    return publish_directory(
        lambda folder: draw_tiny_bank_images(folder, count=TINY_REFERENCE_IMAGES),
        cache_dir() / "tiny" / "fid-reference-v1",
    )


def _folder_identity(paths: Sequence[Path], names: Sequence[str]) -> str:
    entries = []
    for name, path in zip(names, paths, strict=True):
        status = path.stat()
        entries.append([name, status.st_size, status.st_mtime_ns])
    return sha256_text(canonical_json(sorted(entries)))


def _bank_image_paths(bank: EmbeddingBank) -> tuple[list[Path], str]:
    """The source images of a bank, where it recorded them: absolute paths, or names under its source folder."""
    names = bank.row_sources()
    description = bank.info.sources[0] if bank.info.sources else ""
    if description.startswith("tiny:"):
        folder = tiny_reference_dir().parent / "bank-images-v1"
        publish_directory(draw_tiny_bank_images, folder)
        return [folder / name for name in names], "the tiny bank's drawn images"
    match = re.match(r"^folder (.+): \d+ image files$", description)
    if match:
        folder = Path(match.group(1))
        paths = [folder / name for name in names]
    elif all(Path(name).is_absolute() for name in names):
        paths = [Path(name) for name in names]
    else:
        raise DataError(
            f"the bank {bank.path} was built from '{description}', whose images ovi-bench cannot locate (only banks "
            "built from a folder or a list of files record where their images are): give that image folder itself as "
            "`reference`."
        )
    missing = [str(path) for path in paths if not path.is_file()]
    if missing:
        raise DataError(
            f"the bank {bank.path} lists {len(missing)} source image(s) that no longer exist (e.g. {missing[0]}): "
            "restore them, or give a folder of real images as `reference`."
        )
    return paths, f"the source images of the bank {bank.path}"


def resolve_reference(ref: str, max_images: int | None) -> ReferenceSet:
    """ "tiny", a bank folder (its source images) or a folder of images, in sorted order, optionally truncated."""
    if ref == "tiny":
        files = ImageFiles.from_folder(tiny_reference_dir())
        paths, names, description = files.paths, files.names(), "tiny: procedurally drawn images"
        identity_parts: list[Any] = ["tiny", TINY_REFERENCE_IMAGES]
    else:
        folder = expand_user(ref)
        if (folder / "bank.json").is_file():
            bank = EmbeddingBank.load(folder)
            paths, description = _bank_image_paths(bank)
            names = [str(path) for path in paths]
            identity_parts = ["bank", bank.info.digest]
        elif folder.is_dir():
            files = ImageFiles.from_folder(folder)
            paths, names, description = files.paths, files.names(), files.describe()
            identity_parts = ["folder"]
        else:
            raise DataError(
                f"the reference '{ref}' is neither a folder of real images ({'/'.join(IMAGE_SUFFIXES)}) nor an "
                'embedding bank folder: fix the path, or use reference = "tiny" for the offline smoke reference.'
            )
    if max_images is not None:
        paths, names = list(paths)[:max_images], list(names)[:max_images]
    # The tiny images are drawn by code, so their names and the drawing version say it all; the file times of a
    # cache folder would make every machine's smoke run a different protocol. Real folders: names, sizes, times.
    files = sorted(names) if ref == "tiny" else _folder_identity(paths, names)
    identity = sha256_text(canonical_json([*identity_parts, files]))
    return ReferenceSet(list(paths), identity, f"{description} ({len(paths)} images)")


# ---------------------------------------------------------------------------------------------------------------------
# The metrics.


class SetParams(Params):
    reference: str
    """Real images to compare with: a folder (searched recursively), a bank folder made by `ovi-bench bank build`
    from a folder (its source images), or "tiny" (procedurally drawn images for offline runs)."""
    feature_model: str | None = None
    """Override of the feature space's default extractor: a Hugging Face id, a local folder, or "tiny". A different
    extractor is a different feature space: it is named in the leaderboard row (`fid[clip-vit-l-14@tiny]`)."""
    resize: Literal["bicubic-pil"] = "bicubic-pil"
    """How images reach the extractor's input size: PIL bicubic (anti-aliased), as clean-fid recommends."""
    max_reference_images: int | None = Field(None, ge=2)
    """Use only the first N reference images (sorted order); None: all."""


class FIDParams(SetParams):
    features: Literal["clip-vit-l-14", "dinov2", "inception"] = "clip-vit-l-14"
    """Feature space: CLIP ViT-L/14 image embeddings, the DINOv2-base CLS token, or (optional extra) Inception."""


class KIDParams(FIDParams):
    subsets: int = Field(100, ge=1)
    """Random subsets the MMD² is averaged over."""
    subset_size: int = Field(1000, ge=2)
    """Images per subset; capped by the smaller set."""


class CMMDParams(SetParams):
    features: Literal["clip-vit-l-14-336", "clip-vit-l-14"] = "clip-vit-l-14-336"
    """CMMD is defined on CLIP embeddings; the paper uses ViT-L/14 at 336 px."""
    sigma: float = Field(10.0, gt=0)
    """Bandwidth of the Gaussian RBF kernel (the paper's 10)."""
    estimator: Literal["reference", "unbiased"] = "reference"
    """"reference": the authors' released code (plain kernel means, V-statistic); "unbiased": diagonals left out."""


class _FeatureSetMetric(SetMetric):
    """Shared by fid, kid and cmmd: extractor loading, feature space naming, reference resolution."""

    higher_is_better = False
    normalise_features: ClassVar[bool] = False
    params: Any

    def __init__(self, params: Params, *, device: torch.device, dtype: torch.dtype) -> None:
        super().__init__(params, device=device, dtype=dtype)
        self.reference = resolve_reference(self.params.reference, self.params.max_reference_images)
        self._extract: Extractor | None = (
            None  # loaded on the first `features` call: cached runs never load it
        )

    @classmethod
    def required_models(cls, params: FIDParams | CMMDParams) -> list[ModelNeed]:
        if params.features == "inception":  # torch-fidelity's weights: a local file, or its own download
            return []
        ref = params.feature_model or FEATURE_MODELS[params.features]
        return [ModelNeed(ref, f"{params.features} feature extractor", model_files(""))]

    @classmethod
    def required_files(cls, params: SetParams) -> list[FileNeed]:
        if params.reference == "tiny":
            return []
        fix = "fix the path: a folder of real images, or a bank folder built from one"
        return [FileNeed("reference images", params.reference, folder=True, fix=fix)]

    @property
    def feature_space(self) -> str:
        return feature_space(self.params.features, self.params.feature_model)

    def extractor_fingerprint(self) -> str:
        model = self.params.feature_model or FEATURE_MODELS[self.params.features]
        if model in TINY_CLIP_BUILDERS:  # the tiny models are versioned by their cache folder names
            model = f"tiny:{self.params.features}:v1"
        return sha256_text(
            canonical_json(
                {
                    "features": self.params.features,
                    "model": model,
                    "resize": self.params.resize,
                    "normalise": self.normalise_features,
                    "dtype": str(self.dtype),
                    "version": "1",
                }
            )
        )

    def _extractor(self) -> Extractor:
        if self._extract is None:
            features = self.params.features
            ref = self.params.feature_model or FEATURE_MODELS[features]
            if features.startswith("clip"):
                self._extract = _clip_extractor(ref, self.device, self.dtype, self.normalise_features)
            elif features == "dinov2":
                self._extract = Dinov2Features(ref, self.device, self.dtype)
            else:
                self._extract = load_inception_features(ref, self.device)
        return self._extract

    def features(self, images: Sequence[Image.Image]) -> torch.Tensor:
        if not images:
            return torch.empty(0, 0)
        return self._extractor()(images)

    def reference_identity(self) -> str:
        return self.reference.identity

    def reference_image_paths(self) -> list[Path]:
        return self.reference.paths

    @classmethod
    def content_identity(cls, values: dict[str, Any]) -> dict[str, Any]:
        # A reference folder changed in place changes the metric's fingerprint, as a rebuilt bank does for priors.
        return {"reference": resolve_reference(values["reference"], values["max_reference_images"]).identity}


def feature_space(features: str, feature_model: str | None) -> str:
    """The label of a feature space: the extractor family, plus the model when it is not the family's default."""
    if feature_model is None or feature_model == FEATURE_MODELS[features]:
        return features
    label = (
        feature_model if feature_model in TINY_CLIP_BUILDERS else Path(feature_model).name or feature_model
    )
    return f"{features}@{label}"


class FIDMetric(_FeatureSetMetric):
    """Fréchet distance between Gaussian fits of generated and reference features (set level; lower is better)."""

    Params = FIDParams
    version = "1"

    def compare(self, generated: torch.Tensor, reference: torch.Tensor) -> SetScore:
        mu1, sigma1 = feature_statistics(generated)
        mu2, sigma2 = feature_statistics(reference)
        return SetScore(frechet_distance(mu1, sigma1, mu2, sigma2), {})


class KIDMetric(_FeatureSetMetric):
    """Kernel distance: unbiased MMD² with the cubic polynomial kernel, mean over random subsets (lower is better)."""

    Params = KIDParams
    version = "1"

    def compare(self, generated: torch.Tensor, reference: torch.Tensor) -> SetScore:
        mean, std = kernel_inception_distance(
            generated,
            reference,
            subsets=self.params.subsets,
            subset_size=self.params.subset_size,
            generator=0,
        )
        size = min(self.params.subset_size, generated.shape[0], reference.shape[0])
        return SetScore(mean, {"kid_std": std, "subsets": self.params.subsets, "subset_size": size})


class CMMDMetric(_FeatureSetMetric):
    """CMMD: MMD² with a Gaussian kernel (σ = 10) on L2-normalised CLIP embeddings, × 1000 (lower is better)."""

    Params = CMMDParams
    version = "1"
    normalise_features = True

    def compare(self, generated: torch.Tensor, reference: torch.Tensor) -> SetScore:
        unbiased = self.params.estimator == "unbiased"
        value = cmmd(generated, reference, sigma=self.params.sigma, unbiased=unbiased)
        return SetScore(value, {"estimator": self.params.estimator})
