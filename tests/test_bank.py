"""Embedding banks: Ledoit–Wolf statistics, Mahalanobis distance, exact nearest neighbours, build/resume/load, CLI."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

import ovi_bench.bank.build as build_module
from ovi_bench.bank.build import build_bank
from ovi_bench.bank.folder import EmbeddingBank
from ovi_bench.bank.neighbours import bank_inverse_norms, nearest_neighbours
from ovi_bench.bank.sources import HFDatasetImages
from ovi_bench.bank.statistics import bank_statistics, ledoit_wolf
from ovi_bench.bank.tiny import draw_tiny_bank_images, resolve_bank, tiny_bank_dir
from ovi_bench.errors import DataError, OviBenchError
from ovi_bench.models.kandinsky import image_encoder_identity, load_image_encoder, tiny_kandinsky_prior_dir

CPU = torch.device("cpu")
F64 = torch.float64


def _correlated_data(count: int, dim: int, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    mixing = torch.randn(dim, dim, generator=generator, dtype=F64)
    return torch.randn(count, dim, generator=generator, dtype=F64) @ mixing + 3.0


def _reference_ledoit_wolf(data: torch.Tensor) -> tuple[torch.Tensor, float]:
    """Ledoit & Wolf (2004), Lemma 3.2–3.4 as printed, with their norm ‖A‖² = tr(A Aᵀ) / p, one sample at a time."""
    count, dim = data.shape
    centred = data - data.mean(dim=0)
    sample_covariance = centred.T @ centred / count
    identity = torch.eye(dim, dtype=F64)

    def norm_squared(matrix: torch.Tensor) -> float:
        return (matrix @ matrix.T).trace().item() / dim

    m = (sample_covariance @ identity.T).trace().item() / dim
    d_squared = norm_squared(sample_covariance - m * identity)
    b_bar_squared = 0.0
    for sample in centred:
        b_bar_squared += norm_squared(torch.outer(sample, sample) - sample_covariance)
    b_bar_squared /= count**2
    b_squared = min(b_bar_squared, d_squared)
    a_squared = d_squared - b_squared
    shrunk = (b_squared / d_squared) * m * identity + (a_squared / d_squared) * sample_covariance
    return shrunk, b_squared / d_squared


# ---------------------------------------------------------------------------------------------------------------------
# Statistics


@pytest.mark.parametrize(("count", "dim"), [(12, 40), (300, 24)], ids=["n<p", "n>p"])
def test_ledoit_wolf_equals_the_2004_formula(count: int, dim: int) -> None:
    data = _correlated_data(count, dim, seed=count)
    covariance, shrinkage = ledoit_wolf(data)
    expected_covariance, expected_shrinkage = _reference_ledoit_wolf(data)
    assert covariance.dtype == F64 and covariance.shape == (dim, dim)
    assert 0.0 < shrinkage < 1.0
    assert shrinkage == pytest.approx(expected_shrinkage, rel=1e-10, abs=1e-12)
    torch.testing.assert_close(covariance, expected_covariance, rtol=1e-10, atol=1e-10)
    # float32 input (what banks hold) is read in float64: same result as the float64 copy of the float32 values.
    torch.testing.assert_close(ledoit_wolf(data.float())[0], ledoit_wolf(data.float().double())[0])


@pytest.mark.parametrize(("count", "dim"), [(12, 40), (300, 24)], ids=["n<p", "n>p"])
def test_ledoit_wolf_equals_sklearn(count: int, dim: int) -> None:
    covariance_module = pytest.importorskip("sklearn.covariance")
    data = _correlated_data(count, dim, seed=count + 1)
    expected_covariance, expected_shrinkage = covariance_module.ledoit_wolf(
        data.numpy(), assume_centered=False
    )
    covariance, shrinkage = ledoit_wolf(data)
    assert shrinkage == pytest.approx(expected_shrinkage, rel=1e-10)
    np.testing.assert_allclose(covariance.numpy(), expected_covariance, rtol=1e-10, atol=1e-10)


def test_statistics_are_positive_definite_with_an_exact_precision() -> None:
    data = _correlated_data(20, 48, seed=3).float()  # n < p: the sample covariance alone is singular
    statistics = bank_statistics(data)
    assert statistics.mean.dtype == statistics.covariance.dtype == statistics.precision.dtype == F64
    assert torch.linalg.eigvalsh(statistics.covariance).min() > 0
    torch.testing.assert_close(
        statistics.precision @ statistics.covariance, torch.eye(48, dtype=F64), atol=1e-9, rtol=0
    )
    torch.testing.assert_close(statistics.precision, statistics.precision.T)
    with pytest.raises(DataError, match="at least 2 embeddings"):
        bank_statistics(data[:1])


@pytest.mark.parametrize("normalised", [False, True])
def test_mahalanobis_squared_equals_the_formula(normalised: bool) -> None:
    data = _correlated_data(200, 16, seed=4)
    statistics = bank_statistics(data, normalised=normalised)
    queries = _correlated_data(5, 16, seed=5)
    rows = torch.nn.functional.normalize(queries, dim=-1) if normalised else queries
    difference = rows - statistics.mean
    expected = torch.einsum("bi,ij,bj->b", difference, statistics.precision, difference)
    torch.testing.assert_close(statistics.mahalanobis_squared(queries), expected, rtol=1e-10, atol=1e-10)
    # In float32, on the embeddings' dtype, and differentiable: d/de of (e−μ)ᵀP(e−μ) is 2P(e−μ).
    embeds = queries.float().requires_grad_()
    distance = statistics.mahalanobis_squared(embeds)
    assert distance.dtype == torch.float32 and distance.shape == (5,)
    torch.testing.assert_close(distance.double(), expected, rtol=1e-4, atol=1e-4)
    if not normalised:
        distance.sum().backward()
        torch.testing.assert_close(
            embeds.grad.double(), 2 * difference @ statistics.precision, rtol=1e-4, atol=1e-4
        )
        # At the mean the distance is zero.
        assert statistics.mahalanobis_squared(statistics.mean[None]).item() == pytest.approx(0.0, abs=1e-20)


# ---------------------------------------------------------------------------------------------------------------------
# Nearest neighbours


@pytest.mark.parametrize("chunk_size", [1, 3, 7, 50, 65536])
@pytest.mark.parametrize("precomputed_norms", [False, True])
def test_nearest_neighbours_equal_brute_force(chunk_size: int, precomputed_norms: bool) -> None:
    generator = torch.Generator().manual_seed(6)
    # Rows of very different norms: cosine, not dot product, must decide.
    bank = torch.randn(50, 12, generator=generator) * torch.rand(50, 1, generator=generator) * 10
    queries = torch.randn(4, 12, generator=generator) * 3
    k = 5
    expected = torch.nn.functional.normalize(queries, dim=-1) @ torch.nn.functional.normalize(bank, dim=-1).T
    expected_cosines, expected_indices = expected.topk(k, dim=1)
    norms = bank_inverse_norms(bank, chunk_size=7) if precomputed_norms else None
    cosines, indices = nearest_neighbours(queries, bank, k, bank_inverse_norms=norms, chunk_size=chunk_size)
    assert indices.dtype == torch.int64 and indices.shape == cosines.shape == (4, k)
    assert torch.equal(indices, expected_indices)
    torch.testing.assert_close(cosines, expected_cosines)
    assert (cosines[:, :-1] >= cosines[:, 1:]).all()  # descending


def test_nearest_neighbours_edge_cases() -> None:
    bank = torch.randn(6, 4, generator=torch.Generator().manual_seed(7))
    queries = bank[:2].clone()
    cosines, indices = nearest_neighbours(queries, bank, 6, chunk_size=4)  # k = N
    assert indices[:, 0].tolist() == [0, 1]
    assert sorted(indices[0].tolist()) == list(range(6))
    torch.testing.assert_close(cosines[:, 0], torch.ones(2))
    with pytest.raises(OviBenchError, match="bank holds 6"):
        nearest_neighbours(queries, bank, 7)
    with pytest.raises(OviBenchError, match="NaN"):
        nearest_neighbours(torch.full((1, 4), float("nan")), bank, 1)
    # An all-zero bank row has cosine 0 to everything, never NaN.
    with_zero = torch.cat([torch.zeros(1, 4), bank])
    cosines, _ = nearest_neighbours(queries, with_zero, 7)
    assert cosines.isfinite().all()


# ---------------------------------------------------------------------------------------------------------------------
# Building, resuming and loading banks


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """20 drawn images: 14 at the top, 6 in a subfolder (sorted relative paths put 'nested/' after '000…')."""
    folder = tmp_path_factory.mktemp("images")
    draw_tiny_bank_images(folder, count=20, seed=1)
    (folder / "nested").mkdir()
    for path in sorted(folder.glob("*.png"))[14:]:
        path.rename(folder / "nested" / path.name.replace(".png", ".PNG"))
    (folder / "notes.txt").write_text("not an image")
    return folder


def _build(images: Path, out: Path, **options: object) -> EmbeddingBank:
    settings = {"batch_size": 4, "device": "cpu", "shard_size": 8, "progress": False} | options
    return build_bank(images, "tiny", out, **settings)


def test_build_then_load_round_trip(images: Path, tmp_path: Path) -> None:
    from transformers import CLIPImageProcessorPil

    built = _build(images, tmp_path / "bank")
    loaded = EmbeddingBank.load(tmp_path / "bank")
    assert loaded.info == built.info
    assert loaded.info.count == 20 and loaded.info.dim == 32 and loaded.info.encoder == "tiny"
    assert loaded.info.encoder_identity == image_encoder_identity("tiny")
    assert built.build_report is not None and built.build_report.shards_encoded == 3
    assert sorted(path.name for path in (tmp_path / "bank" / "shards").iterdir()) == [
        "00000.safetensors",
        "00001.safetensors",
        "00002.safetensors",
    ]
    assert not (tmp_path / "bank" / "progress.json").exists()
    sources = loaded.row_sources()
    assert sources[:14] == [f"{index:05d}.png" for index in range(14)]
    assert sources[14:] == [f"nested/{index:05d}.PNG" for index in range(14, 20)]

    # The embeddings are the tiny image encoder's own, after the prior's image processor.
    encoder = load_image_encoder("tiny", CPU, torch.float32)
    processor = CLIPImageProcessorPil.from_pretrained(tiny_kandinsky_prior_dir() / "image_processor")
    pictures = [Image.open(images / name).convert("RGB") for name in sources]
    with torch.no_grad():
        expected = encoder(
            pixel_values=processor(images=pictures, return_tensors="pt").pixel_values
        ).image_embeds
    embeddings = loaded.embeddings()
    assert embeddings.shape == (20, 32) and embeddings.dtype == torch.float32
    torch.testing.assert_close(embeddings, expected, rtol=1e-5, atol=1e-5)
    assert loaded.embeddings(dtype=F64).dtype == F64

    # nearest() finds each embedding itself first.
    cosines, indices = loaded.nearest(embeddings[[3, 17]], k=2)
    assert indices[:, 0].tolist() == [3, 17]
    torch.testing.assert_close(cosines[:, 0], torch.ones(2))


def test_build_resumes_after_an_interruption(
    images: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reference = _build(images, tmp_path / "in-one-go")
    encode = build_module.encode_images
    calls: list[int] = []

    def interrupted_encode(encoder, processor, batch):  # type: ignore[no-untyped-def]
        calls.append(len(batch))
        if len(calls) == 3:  # the first batch of shard 1 (shards of 8 images, batches of 4)
            raise KeyboardInterrupt
        return encode(encoder, processor, batch)

    monkeypatch.setattr(build_module, "encode_images", interrupted_encode)
    out = tmp_path / "resumed"
    with pytest.raises(KeyboardInterrupt):
        _build(images, out)
    assert (out / "progress.json").is_file() and not (out / "bank.json").exists()
    assert sorted(path.name for path in (out / "shards").iterdir()) == ["00000.safetensors"]
    with pytest.raises(DataError, match="did not finish"):
        EmbeddingBank.load(out)
    first_shard_mtime = (out / "shards" / "00000.safetensors").stat().st_mtime_ns

    calls.clear()
    monkeypatch.setattr(build_module, "encode_images", lambda *args: (calls.append(0), encode(*args))[1])
    resumed = _build(images, out)
    assert len(calls) == 3  # shard 1 (2 batches) and shard 2 (1 batch) only
    assert resumed.build_report is not None
    assert (resumed.build_report.shards_encoded, resumed.build_report.shards_reused) == (2, 1)
    assert (out / "shards" / "00000.safetensors").stat().st_mtime_ns == first_shard_mtime
    assert resumed.info.digest == reference.info.digest
    assert torch.equal(resumed.embeddings(), reference.embeddings())

    # A finished bank re-run computes nothing.
    calls.clear()
    again = _build(images, out)
    assert calls == [] and again.build_report is not None and again.build_report.shards_encoded == 0
    assert again.info == resumed.info


def test_unreadable_images_are_skipped_and_reported(images: Path, tmp_path: Path) -> None:
    folder = tmp_path / "images"
    shutil.copytree(images, folder)
    (folder / "broken.jpg").write_bytes(b"this is no jpeg")
    truncated = (folder / "00002.png").read_bytes()
    (folder / "00002.png").write_bytes(truncated[: len(truncated) // 2])
    with pytest.warns(UserWarning, match=r"2 unreadable image\(s\).*00002\.png"):
        bank = _build(folder, tmp_path / "bank")
    assert bank.info.count == 19  # 21 files, 2 unreadable
    assert sorted(entry.image for entry in bank.skipped) == ["00002.png", "broken.jpg"]
    assert all(entry.reason for entry in bank.skipped)
    assert "00002.png" not in bank.row_sources() and len(bank.row_sources()) == 19
    record = json.loads((tmp_path / "bank" / "bank.json").read_text())
    assert {entry["image"] for entry in record["skipped"]} == {"00002.png", "broken.jpg"}


def test_build_refuses_a_folder_of_another_build(images: Path, tmp_path: Path) -> None:
    out = tmp_path / "bank"
    _build(images, out)
    other_images = tmp_path / "other"
    draw_tiny_bank_images(other_images, count=5, seed=2)
    with pytest.raises(DataError, match="other images"):
        _build(other_images, out)
    with pytest.raises(DataError, match="--shard-size 8"):
        _build(images, out, shard_size=16)
    with pytest.raises(DataError, match="another image encoder"):
        build_bank(
            images, str(_other_encoder_folder(tmp_path)), out, device="cpu", shard_size=8, progress=False
        )
    (tmp_path / "not-a-bank").mkdir()
    (tmp_path / "not-a-bank" / "notes.txt").write_text("mine")
    with pytest.raises(DataError, match="not empty and not an embedding bank"):
        _build(images, tmp_path / "not-a-bank")
    with pytest.raises(DataError, match="does not exist"):
        _build(tmp_path / "no-such-images", tmp_path / "new")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no images"):
        _build(tmp_path / "empty", tmp_path / "new")
    assert not (tmp_path / "new").exists()


def _other_encoder_folder(tmp_path: Path) -> Path:
    """A copy of the tiny prior whose image encoder has one weight changed."""
    folder = tmp_path / "other-prior"
    if not folder.exists():
        shutil.copytree(tiny_kandinsky_prior_dir(), folder)
        weights_path = folder / "image_encoder" / "model.safetensors"
        weights = load_file(weights_path)
        name = next(key for key in sorted(weights) if key.endswith("weight"))
        weights[name] = weights[name] + 1.0
        save_file(weights, weights_path)
    return folder


def test_check_encoder_refuses_another_image_encoder(tmp_path: Path) -> None:
    bank = EmbeddingBank.load(tiny_bank_dir())
    bank.check_encoder("tiny")
    bank.check_encoder(str(tiny_kandinsky_prior_dir()))  # the same encoder by its folder
    other = str(_other_encoder_folder(tmp_path))
    with pytest.raises(DataError) as error:
        bank.check_encoder(other)
    message = str(error.value)
    assert "'tiny'" in message and other in message and "--encoder" in message


def test_statistics_are_cached_and_a_corrupt_cache_is_recomputed(tmp_path: Path) -> None:
    folder = tmp_path / "bank"
    shutil.copytree(tiny_bank_dir(), folder)
    for stale in folder.glob("stats-*.safetensors"):
        stale.unlink()
    statistics = EmbeddingBank.load(folder).statistics()
    assert statistics.shrinkage > 0 and not statistics.normalised
    cache_file = folder / "stats-raw.safetensors"
    assert cache_file.is_file() and not (folder / "stats-normalised.safetensors").exists()
    cached = EmbeddingBank.load(folder).cached_statistics()
    assert cached is not None and torch.equal(cached.covariance, statistics.covariance)

    cache_file.write_bytes(b"not safetensors")
    reopened = EmbeddingBank.load(folder)
    assert reopened.cached_statistics() is None
    recomputed = reopened.statistics()
    assert torch.equal(recomputed.precision, statistics.precision)
    assert recomputed.shrinkage == statistics.shrinkage
    assert EmbeddingBank.load(folder).cached_statistics() is not None  # rewritten

    normalised = EmbeddingBank.load(folder).statistics(normalised=True)
    assert normalised.normalised and (folder / "stats-normalised.safetensors").is_file()
    assert not torch.equal(normalised.mean, statistics.mean)


def test_load_refuses_missing_unfinished_and_corrupt_banks(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="ovi-bench bank build"):
        EmbeddingBank.load(tmp_path / "missing")
    folder = tmp_path / "bank"
    shutil.copytree(tiny_bank_dir(), folder)
    (folder / "bank.json").write_text("{not json")
    with pytest.raises(DataError, match="corrupt"):
        EmbeddingBank.load(folder)

    shutil.rmtree(folder)
    shutil.copytree(tiny_bank_dir(), folder)
    shard = folder / "shards" / "00000.safetensors"
    tensors = load_file(shard)
    tensors["embeddings"][0, 0] += 1.0
    save_file(tensors, shard)
    with pytest.raises(DataError, match="do not match"):
        EmbeddingBank.load(folder).embeddings()


def test_faiss_backend(monkeypatch: pytest.MonkeyPatch) -> None:
    bank = EmbeddingBank.load(tiny_bank_dir())
    queries = torch.randn(3, 32, generator=torch.Generator().manual_seed(8))
    with monkeypatch.context() as patch:
        patch.setitem(sys.modules, "faiss", None)  # import faiss now raises ImportError
        with pytest.raises(OviBenchError, match="pip install faiss-cpu"):
            bank.nearest(queries, 4, backend="faiss")
    pytest.importorskip("faiss")
    cosines, indices = bank.nearest(queries, 4, backend="faiss")
    exact_cosines, exact_indices = bank.nearest(queries, 4)
    assert torch.equal(indices, exact_indices)
    torch.testing.assert_close(cosines, exact_cosines, rtol=1e-5, atol=1e-5)


def test_tiny_bank_is_deterministic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = EmbeddingBank.load(tiny_bank_dir())
    assert resolve_bank("tiny") == tiny_bank_dir() == first.path
    assert resolve_bank(str(tmp_path)) == tmp_path
    assert (first.info.count, first.info.dim) == (256, 32)
    monkeypatch.setenv("OVI_BENCH_CACHE", str(tmp_path / "another-cache"))
    second_dir = tiny_bank_dir()
    assert second_dir != first.path
    assert EmbeddingBank.load(second_dir).info.digest == first.info.digest


# ---------------------------------------------------------------------------------------------------------------------
# The CLI


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ovi_bench", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "COLUMNS": "200"},
    )


def test_cli_bank_build_and_info(images: Path, tmp_path: Path) -> None:
    out = tmp_path / "bank"
    built = _cli(
        "bank", "build", str(images), "--encoder", "tiny", "--out", str(out), "--device", "cpu", "-q"
    )
    assert built.returncode == 0, built.stderr
    assert "20 embeddings of width 32" in built.stdout
    bank = EmbeddingBank.load(out)
    bank.statistics()
    info = _cli("bank", "info", str(out))
    assert info.returncode == 0, info.stderr
    fields = dict(line.split("\t", 1) for line in info.stdout.splitlines())
    assert fields["count"] == "20" and fields["dim"] == "32" and fields["encoder"] == "tiny"
    assert fields["digest"] == bank.info.digest
    assert float(fields["shrinkage (raw)"]) == pytest.approx(bank.statistics().shrinkage)
    assert fields["shrinkage (normalised)"] == "not computed yet"


def test_cli_bank_build_missing_images_folder(tmp_path: Path) -> None:
    result = _cli(
        "bank", "build", str(tmp_path / "nowhere"), "--encoder", "tiny", "--out", str(tmp_path / "b")
    )
    assert result.returncode == 2
    assert "does not exist" in result.stderr and "Traceback" not in result.stderr


# ---------------------------------------------------------------------------------------------------------------------
# Hugging Face data set source (optional `datasets` package)


def test_hf_dataset_source_needs_the_datasets_package(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setitem(sys.modules, "datasets", None)  # import datasets now raises ImportError
    with pytest.raises(OviBenchError, match="pip install datasets"):
        build_bank(HFDatasetImages(str(tmp_path)), "tiny", tmp_path / "bank", device="cpu", progress=False)


def test_hf_dataset_source_matches_the_folder_build(images: Path, tmp_path: Path) -> None:
    datasets = pytest.importorskip("datasets")
    pyarrow = pytest.importorskip("pyarrow")
    folder_bank = _build(images, tmp_path / "from-folder")
    rows = [{"bytes": (images / name).read_bytes(), "path": None} for name in folder_bank.row_sources()]
    rows.append({"bytes": b"no image here", "path": None})  # last, so the batches match the folder build's
    features = datasets.Features({"image": datasets.Image(), "caption": datasets.Value("string")})
    columns = features.encode_batch({"image": rows, "caption": ["x"] * len(rows)})
    # Built from an Arrow table with a fixed fingerprint: datasets 5.2's Dataset.from_dict hashes the table with dill,
    # which fails under some pyarrow/dill pairs (measured: pyarrow 25 and 26 with dill 0.3.9–0.4.1).
    table = pyarrow.Table.from_pydict(columns, schema=features.arrow_schema)
    dataset = datasets.Dataset(table, info=datasets.DatasetInfo(features=features), fingerprint="test")
    datasets.DatasetDict({"train": dataset}).save_to_disk(str(tmp_path / "saved"))

    with pytest.warns(UserWarning, match="1 unreadable"):
        bank = _build(HFDatasetImages(str(tmp_path / "saved"), split="train"), tmp_path / "from-dataset")
    assert bank.info.count == 20 and bank.info.sources[0].startswith("Hugging Face data set")
    assert bank.row_sources()[0] == f"{tmp_path / 'saved'}[train]#0"
    assert [entry.image for entry in bank.skipped] == [f"{tmp_path / 'saved'}[train]#20"]
    torch.testing.assert_close(bank.embeddings(), folder_bank.embeddings())
    with pytest.raises(DataError, match="--image-column"):
        _build(HFDatasetImages(str(tmp_path / "saved"), image_column="caption"), tmp_path / "wrong-column")
    with pytest.raises(DataError, match="--split"):
        _build(HFDatasetImages(str(tmp_path / "saved"), split="test"), tmp_path / "wrong-split")
