"""The artifact store: atomic files, manifest, corruption detection, score cache."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
import torch

import ovi_bench.store as store_module
from ovi_bench.caches import RowCache
from ovi_bench.store import RunStore, item_key


def _metadata(seed: int = 0) -> dict:
    return {
        "prior": "p",
        "prompt_id": "color-val-0000",
        "category": "color",
        "prompt": "a red cube",
        "seed": seed,
    }


def test_item_key_depends_on_every_part_and_nothing_else() -> None:
    assert item_key("a", 1) == item_key("a", 1)
    assert item_key("a", 1) != item_key("a", 2)
    assert item_key("a", 1) != item_key("a", "1")
    assert len(item_key("x")) == 64


def test_file_names_never_come_from_prompt_text(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    key = item_key("image", "../../etc/passwd", 'a "quoted" / prompt')
    store.put_images([(key, b"png-bytes", _metadata())])
    written = [path for path in tmp_path.rglob("*") if path.is_file()]
    assert {path.name for path in written} == {f"{key}.png", "manifest.jsonl"}
    assert all(tmp_path in path.parents for path in written)


def test_image_round_trip_and_manifest_survives_reload(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    store.put_images([("k1", b"first", _metadata(1)), ("k2", b"second", _metadata(2))])
    reloaded = RunStore(tmp_path)
    assert reloaded.has_image("k1") and reloaded.has_image("k2")
    assert reloaded.read_image_bytes("k2") == b"second"
    assert reloaded.manifest["k1"].seed == 1
    assert not reloaded.has_image("k3")


def test_truncated_or_rewritten_image_is_not_trusted(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    store.put_images([("k1", b"0123456789", _metadata()), ("k2", b"abcdefghij", _metadata())])
    path1 = store.image_path("k1")
    path1.write_bytes(b"01234")  # truncated: size differs
    path2 = store.image_path("k2")
    path2.write_bytes(b"ABCDEFGHIJ")  # same size, other content: mtime differs, so the hash is checked
    os.utime(path2, ns=(1, 1))
    reloaded = RunStore(tmp_path)
    assert not reloaded.has_image("k1")
    assert not reloaded.has_image("k2")


def test_missing_image_file_is_not_trusted(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    store.put_images([("k1", b"data", _metadata())])
    store.image_path("k1").unlink()
    assert not RunStore(tmp_path).has_image("k1")


def test_half_written_manifest_line_is_skipped_and_appends_continue(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    store.put_images([("k1", b"data", _metadata())])
    with open(store.manifest_path, "a") as handle:
        handle.write('{"image_key": "k2", "path": "ima')  # a crash mid-line
    store = RunStore(tmp_path)
    assert set(store.manifest) == {"k1"}
    store.put_images([("k3", b"more", _metadata())])
    assert set(RunStore(tmp_path).manifest) == {"k1", "k3"}


def test_embedding_round_trip_and_corrupt_file_is_removed(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    image_embeds, negative = torch.randn(8), torch.randn(8)
    store.put_embedding("e1", image_embeds, negative, {"steps": 12})
    loaded = store.get_embedding("e1")
    assert loaded is not None
    torch.testing.assert_close(loaded[0], image_embeds)
    torch.testing.assert_close(loaded[1], negative)
    store.embedding_path("e1").write_bytes(b"not safetensors")
    assert store.get_embedding("e1") is None
    assert not store.embedding_path("e1").exists()
    store.put_embedding("nan", torch.full((4,), float("nan")), torch.zeros(4))
    assert store.get_embedding("nan") is None


def test_score_cache_appends_and_reloads(tmp_path: Path) -> None:
    path = tmp_path / "scores" / "m.jsonl"
    cache = RowCache(path)
    key = RowCache.score_key("abc", "a red cube", "color")
    cache.add([{"key": key, "score": 0.25, "reason": "r"}])
    assert RowCache(path).rows[key]["score"] == 0.25
    assert key != RowCache.score_key("abc", "a red cube", "shape")
    lines = path.read_text().splitlines()
    assert json.loads(lines[0])["key"] == key


def _temporaries(folder: Path) -> list[Path]:
    return [path for path in folder.rglob(".*") if path.is_file()]


@pytest.fixture
def commits_never_due(monkeypatch: pytest.MonkeyPatch) -> None:
    """Groups are committed only when their block ends (once the store has timed one commit)."""
    monkeypatch.setattr(store_module, "COMMIT_SECONDS", float("inf"))
    monkeypatch.setattr(store_module, "COMMIT_COST_RATIO", float("inf"))
    monkeypatch.setattr(store_module, "COMMIT_ITEMS", 10**9)


@pytest.mark.usefixtures("commits_never_due")
def test_grouped_writes_wait_under_hidden_names_until_committed(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    store.put_images([("k0", b"zeroth", _metadata(0))])  # outside a group: in place at once (and timed)
    assert RunStore(tmp_path).has_image("k0")
    with store.grouped_commits():
        store.put_embedding("e1", torch.randn(4), torch.zeros(4))
        store.put_images([("k1", b"first", _metadata(1))])
        store.put_images([("k2", b"second", _metadata(2))])
        # Not yet in place: hidden temporary files only, no manifest line, nothing another reader could trust.
        assert not store.embedding_path("e1").exists() and not store.image_path("k2").exists()
        assert not RunStore(tmp_path).has_image("k2") and len(_temporaries(tmp_path)) == 3
    reread = RunStore(tmp_path)
    assert reread.has_image("k1") and reread.has_image("k2") and reread.get_embedding("e1") is not None
    assert _temporaries(tmp_path) == []
    assert len((tmp_path / "manifest.jsonl").read_text().splitlines()) == 3


@pytest.mark.usefixtures("commits_never_due")
def test_a_group_is_committed_when_its_block_raises(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    store.put_images([("k0", b"zeroth", _metadata(0))])
    with pytest.raises(RuntimeError), store.grouped_commits():
        store.put_images([("k1", b"first", _metadata(1))])
        assert not store.image_path("k1").exists()
        raise RuntimeError("a decoder failed")
    assert RunStore(tmp_path).has_image("k1") and _temporaries(tmp_path) == []


def test_an_embedding_file_holds_the_bytes_safetensors_torch_writes(tmp_path: Path) -> None:
    import hashlib

    from safetensors.torch import save

    store = RunStore(tmp_path)
    image_embeds, negative = torch.randn(8), torch.randn(8)
    store.put_embedding("e1", image_embeds, negative, {"steps": 3})
    # The metadata also records the sha256 of the tensor bytes (`verify` checks it).
    digest = hashlib.sha256(image_embeds.numpy().tobytes() + negative.numpy().tobytes()).hexdigest()
    expected = save(
        {"image_embeds": image_embeds, "negative_image_embeds": negative},
        metadata={"facts": '{"steps":3}', "sha256": digest},
    )
    # The metadata's key order in the header is not fixed (safetensors keeps it in a hash map): compare the header's
    # content and the tensor bytes.
    written = store.embedding_path("e1").read_bytes()
    header_length, expected_length = (int.from_bytes(data[:8], "little") for data in (written, expected))
    assert json.loads(written[8 : 8 + header_length]) == json.loads(expected[8 : 8 + expected_length])
    assert written[8 + header_length :] == expected[8 + expected_length :]
    assert store.embedding_facts("e1") == {"steps": 3}


def test_a_timer_commits_a_due_group_without_waiting_for_the_next_write(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A group is committed within COMMIT_SECONDS even when no further write comes (a long batch)."""
    monkeypatch.setattr(store_module, "COMMIT_SECONDS", 0.2)
    monkeypatch.setattr(store_module, "COMMIT_COST_RATIO", float("inf"))
    store = RunStore(tmp_path)
    store.put_images([("k0", b"zeroth", _metadata(0))])  # outside a group: timed once
    with store.grouped_commits():
        store.put_embedding("e1", torch.randn(4), torch.zeros(4))
        store.put_images([("k1", b"first", _metadata(1))])
        written = time.monotonic()
        while not RunStore(tmp_path).has_image("k1"):
            assert time.monotonic() - written < 5, "the group was never committed while its block stayed open"
            time.sleep(0.01)
        waited = time.monotonic() - written
        assert store.embedding_path("e1").is_file() and _temporaries(tmp_path) == []
    assert waited < 0.2 + 0.5, f"committed after {waited:.2f} s"


def test_a_commit_error_in_the_timer_reaches_the_writer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store_module, "COMMIT_SECONDS", 0.05)
    monkeypatch.setattr(store_module, "COMMIT_COST_RATIO", float("inf"))
    store = RunStore(tmp_path)

    def full_disk(paths: list[Path]) -> None:
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space"), store.grouped_commits():
        store.put_images([("k1", b"first", _metadata(1))])
        monkeypatch.setattr(store_module, "sync_data", full_disk)
        time.sleep(0.5)
        store.put_images([("k2", b"second", _metadata(2))])
    assert _temporaries(tmp_path) == []
