"""Building a bank: encode an image source with a prior's CLIP image encoder into shards, resuming a killed build."""

from __future__ import annotations

import contextlib
import hashlib
import json
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from safetensors.torch import save

from ovi_bench.bank.folder import (
    BANK_FORMAT,
    EMBEDDINGS_KEY,
    BankInfo,
    BuildReport,
    EmbeddingBank,
    Shard,
    SkippedImage,
    read_bank_json,
    read_shard,
)
from ovi_bench.bank.sources import ImageSource, as_image_source
from ovi_bench.components import DTYPES, nonfinite_rows, resolve_device
from ovi_bench.errors import DataError, ModelLoadError, OviBenchError
from ovi_bench.io import atomic_write_bytes, atomic_write_text, canonical_json, sha256_text
from ovi_bench.models.clip import ClipImageEncoder, encode_images
from ovi_bench.paths import expand_user
from ovi_bench.progress import progress_bar
from ovi_bench.spaces import DEFAULT_SPACE, get_space


def _encode_shard(
    source: ImageSource,
    indices: range,
    names: list[str],
    load_encoder: Callable[[], ClipImageEncoder],
    batch_size: int,
    advance: Callable[[int], None],
) -> tuple[torch.Tensor, list[str], list[SkippedImage]]:
    """Embeddings of the readable images among `indices` (in order), their names, and the unreadable ones."""
    encoder = load_encoder()
    parts: list[torch.Tensor] = []
    encoded: list[str] = []
    skipped: list[SkippedImage] = []
    for start in range(indices.start, indices.stop, batch_size):
        batch: list[Image.Image] = []
        for index in range(start, min(start + batch_size, indices.stop)):
            try:
                batch.append(source.open(index))
            except (
                Exception
            ) as error:  # any decoder failure on one user file skips that file, never the build
                skipped.append(SkippedImage(names[index], f"{type(error).__name__}: {error}"))
                continue
            encoded.append(names[index])
        if batch:
            embeds = encode_images(encoder.tower, encoder.processor, batch)
            if bad_rows := nonfinite_rows(embeds):
                raise ModelLoadError(
                    f"the image encoder gave NaN or infinity for {[encoded[len(encoded) - len(batch) + row] for row in bad_rows]}: "
                    "are its weights corrupt, or does float16 overflow? Try --dtype float32 or bfloat16."
                )
            parts.append(embeds)
        advance(min(start + batch_size, indices.stop) - start)
    dim = encoder.projection_dim
    embeddings = torch.cat(parts) if parts else torch.zeros(0, dim)
    return embeddings.contiguous(), encoded, skipped


def _plan_mismatch(recorded: dict[str, Any], plan: dict[str, Any], encoder_label: str) -> str | None:
    """Why a folder's recorded build plan does not match this build, or None when it does."""
    recorded_plan = recorded.get("plan", {})
    if recorded_plan.get("format") != plan["format"]:
        return f"it was written in another bank format ({recorded_plan.get('format')!r})"
    if recorded_plan.get("encoder_identity") != plan["encoder_identity"]:
        return (
            f"it was made with another image encoder ('{recorded.get('encoder')}'), not '{encoder_label}' "
            "(a bank holds the embeddings of one encoder)"
        )
    if (
        recorded_plan.get("images") != plan["images"]
        or recorded_plan.get("image_count") != plan["image_count"]
    ):
        return (
            f"it was made from other images ({recorded_plan.get('image_count')} images: "
            f"{'; '.join(recorded.get('sources', []))})"
        )
    for setting in ("dtype", "shard_size"):
        if recorded_plan.get(setting) != plan[setting]:
            option = setting.replace("_", "-")
            return (
                f"it was made with --{option} {recorded_plan.get(setting)} (run again with that, to resume)"
            )
    return None


def build_bank(
    images: str | Path | Sequence[str | Path] | ImageSource,
    encoder: str,
    out: str | Path,
    *,
    batch_size: int = 64,
    device: str = "auto",
    dtype: str = "float32",
    shard_size: int = 4096,
    progress: bool = True,
    description: str | None = None,
    space: str = DEFAULT_SPACE,
) -> EmbeddingBank:
    """Encode images with the vision tower of a space's towers into the bank folder `out`, resuming a killed build.

    `images`: a folder (every .png/.jpg/.jpeg/.webp/.bmp under it, sorted by relative path), a list of image files,
    or an `ImageSource` such as `HFDatasetImages`. `encoder`: the towers of `space` (`ovi_bench.models.towers`: hub id,
    local folder or "tiny"; in the bigG space a Kandinsky 2.2 prior, whose `image_encoder` encodes); their image
    processor prepares the pixels (always transformers' PIL implementation, so the embeddings do not depend on whether
    torchvision is installed). `description` replaces the default BankInfo.sources text. bank.json records `space`.

    Shard i holds images [i·shard_size, (i+1)·shard_size) and is written atomically; a shard already in `out` for
    the same plan (encoder identity, images, dtype, shard size) is kept, so a re-run encodes only what is missing and
    gives the same bank (same digest, for the same batch size and device). Unreadable images are skipped, recorded
    in bank.json and reported with a warning. Refuses (DataError) an `out` that holds a bank or an unfinished build
    of another encoder, other images or other settings, or a non-empty folder that is not a bank.
    """
    from ovi_bench.models.hub import is_tiny_name
    from ovi_bench.models.towers import load_towers_image_encoder, resolve_towers, towers_identity

    if batch_size < 1 or shard_size < 1:
        raise OviBenchError(
            f"batch size and shard size must be at least 1, got {batch_size} and {shard_size}."
        )
    if dtype not in DTYPES:
        raise OviBenchError(f"unknown dtype '{dtype}': use one of {', '.join(DTYPES)}.")
    source = as_image_source(images)  # first: a missing images folder fails before any model is touched
    out = expand_user(out)
    if out.exists() and not out.is_dir():
        raise DataError(f"--out {out} is a file: give a folder for the bank.")

    get_space(space)  # an unknown space fails before any model is touched
    resolved = resolve_towers(encoder, space)
    encoder_label = str(Path(resolved)) if Path(resolved).is_dir() and not is_tiny_name(encoder) else encoder
    names = source.names()
    plan = {
        "format": BANK_FORMAT,
        "encoder_identity": towers_identity(resolved, space),
        "images": source.fingerprint(),
        "image_count": len(names),
        "dtype": dtype,
        "shard_size": shard_size,
    }
    plan_digest = sha256_text(canonical_json(plan))
    sources = [description or source.describe()]

    record_path, progress_path = out / "bank.json", out / "progress.json"
    finished = record_path.is_file()
    if finished or progress_path.is_file():
        recorded = read_bank_json(record_path if finished else progress_path)
        if reason := _plan_mismatch(recorded, plan, encoder_label):
            state = "holds a bank" if finished else "holds an unfinished bank build"
            raise DataError(
                f"--out {out} {state} that cannot be continued by this build: {reason}. Choose another --out, or "
                "delete that folder to build it anew."
            )
    elif out.is_dir() and any(out.iterdir()):
        raise DataError(f"--out {out} is not empty and not an embedding bank: choose a new or empty folder.")
    else:
        atomic_write_text(
            progress_path,
            json.dumps({"plan": plan, "encoder": encoder_label, "sources": sources}, indent=2) + "\n",
        )

    loaded: list[ClipImageEncoder] = []

    def load_encoder() -> ClipImageEncoder:
        # Loaded only when a shard must be encoded: re-running a finished build never touches the 1.8 B-parameter tower.
        if not loaded:
            loaded.append(load_towers_image_encoder(resolved, space, resolve_device(device), DTYPES[dtype]))
        return loaded[0]

    shard_count = (len(names) + shard_size - 1) // shard_size
    shard_names = [f"{index:05d}.safetensors" for index in range(shard_count)]
    # Only what bank.json needs is kept per shard, so building a large bank never holds it all in memory.
    shard_rows: list[int] = []
    dims: set[int] = set()
    all_names: list[str] = []
    all_skipped: list[SkippedImage] = []
    digest = hashlib.sha256()
    encoded_shards = images_encoded = 0
    with _progress_bar(progress, len(names)) as advance:
        for index, shard_name in enumerate(shard_names):
            indices = range(index * shard_size, min((index + 1) * shard_size, len(names)))
            shard_path = out / "shards" / shard_name
            shard = read_shard(shard_path)
            if shard is not None and shard.metadata.get("plan") == plan_digest and _shard_consistent(shard):
                advance(len(indices))
            else:
                embeddings, encoded, skipped = _encode_shard(
                    source, indices, names, load_encoder, batch_size, advance
                )
                metadata = {
                    "plan": plan_digest,
                    "images": json.dumps(encoded),
                    "skipped": json.dumps([asdict(entry) for entry in skipped]),
                }
                atomic_write_bytes(shard_path, save({EMBEDDINGS_KEY: embeddings}, metadata=metadata))
                shard = Shard(embeddings, metadata)
                encoded_shards += 1
                images_encoded += len(encoded)
            rows = shard.embeddings.shape[0]
            shard_rows.append(rows)
            all_names += json.loads(shard.metadata["images"])
            all_skipped += [SkippedImage(**entry) for entry in json.loads(shard.metadata["skipped"])]
            if rows:
                dims.add(shard.embeddings.shape[1])
                digest.update(shard.embeddings.numpy().data)

    if not all_names:
        raise DataError(
            f"none of the {len(names)} images could be read (e.g. {all_skipped[0].reason}): no bank built."
        )
    if len(dims) != 1:
        raise DataError(
            f"the shards in {out / 'shards'} have different widths {sorted(dims)}: delete {out} and build again."
        )

    if encoded_shards or not finished:
        info = BankInfo(
            encoder=encoder_label,
            encoder_identity=plan["encoder_identity"],
            count=len(all_names),
            dim=dims.pop(),
            digest=digest.hexdigest(),
            created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
            sources=sources,
            space=space,
        )
        record = {
            "format": BANK_FORMAT,
            **asdict(info),
            "plan": plan,
            "shards": [
                {"file": name, "rows": rows} for name, rows in zip(shard_names, shard_rows, strict=True)
            ],
            "skipped": [asdict(entry) for entry in all_skipped],
            # Informational: embeddings can differ across devices and batch sizes by float rounding.
            "build": {
                "device": str(loaded[0].tower.device) if loaded else device,
                "batch_size": batch_size,
            },
        }
        atomic_write_text(out / "images.json", json.dumps(all_names) + "\n")
        atomic_write_text(record_path, json.dumps(record, indent=2, ensure_ascii=False) + "\n")
        progress_path.unlink(missing_ok=True)

    if all_skipped:
        listed = "; ".join(f"{entry.image} ({entry.reason})" for entry in all_skipped[:10])
        more = f" and {len(all_skipped) - 10} more" if len(all_skipped) > 10 else ""
        warnings.warn(
            f"{len(all_skipped)} unreadable image(s) left out of the bank {out}: {listed}{more}. All are listed under "
            "'skipped' in its bank.json.",
            stacklevel=2,
        )
    bank = EmbeddingBank.load(out)
    bank.build_report = BuildReport(
        shards_encoded=encoded_shards,
        shards_reused=shard_count - encoded_shards,
        images_encoded=images_encoded,
        skipped=all_skipped,
    )
    return bank


def _shard_consistent(shard: Shard) -> bool:
    try:
        names = json.loads(shard.metadata["images"])
        json.loads(shard.metadata["skipped"])
    except (KeyError, json.JSONDecodeError):
        return False
    return isinstance(names, list) and len(names) == shard.embeddings.shape[0]


@contextlib.contextmanager
def _progress_bar(show: bool, total: int) -> Iterator[Callable[[int], None]]:
    """A progress bar over the images, or a no-op; yields `advance(n)`."""
    with progress_bar(show=show) as bar:
        task = bar.add_task("encode images", total=total)
        yield lambda count: bar.advance(task, count)
