"""Splitting one run over several processes (`accelerate launch -m ovi_bench run CONFIG`, or torchrun).

Every work item (prior × prompt × seed) belongs to one shard, by a stable hash of (prior, prompt id, seed), so a
process's share depends on nothing but the number of processes. Each process generates and scores its share into the
same run folder with no collective operation: artifacts are content-addressed files written atomically, and each
process appends to its own manifest and score files (`manifest.rank3.jsonl`), which every reader merges. A process
that has finished its share leaves a marker file; the main process then waits for the others' markers and writes the
results over all items, computing only what is still missing.

Because the store is shared and content-addressed, resuming works with any number of processes: an item done by
shard 3 of 8 is simply found done by shard 1 of 2. The markers only decide when the main process starts the merge;
correctness never rests on them, since the merge itself makes whatever is still missing (a marker taken for done too
early costs duplicated work, never a wrong result).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ovi_bench.errors import OviBenchError
from ovi_bench.io import atomic_write_text, canonical_json, sha256_text

MARKERS = "shards"
"""Folder of the run folder holding the finished-share markers."""


def torch_cuda_count() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def shard_index(prior: str, prompt_id: str, seed: int, count: int) -> int:
    """The shard of a work item: stable across runs, machines and Python versions (no `hash()`)."""
    return int(sha256_text(canonical_json([prior, prompt_id, seed]))[:16], 16) % count


@dataclass(frozen=True)
class Shard:
    """This process's place in a launch: shard `index` of `count`."""

    index: int = 0
    count: int = 1
    launch: str = ""
    """Identifies the launch (torchrun's run id, or Slurm's job id), so that a marker left by an earlier launch is
    never taken for this one's."""

    @property
    def is_main(self) -> bool:
        return self.index == 0

    @property
    def writer(self) -> str:
        """Suffix of the files this process appends to: "" for the main or only process, "rank3" for shard 3."""
        return "" if self.index == 0 else f"rank{self.index}"

    def owns(self, prior: str, prompt_id: str, seed: int) -> bool:
        return self.count == 1 or shard_index(prior, prompt_id, seed, self.count) == self.index

    @classmethod
    def from_environment(cls, device: str = "auto") -> tuple[Shard, str]:
        """The shard and device of this process, from what the launcher set: `RANK`, `WORLD_SIZE`, `LOCAL_RANK`
        (accelerate launch, torchrun, and so Slurm through accelerate's launcher), or `SLURM_PROCID`,
        `SLURM_NTASKS`, `SLURM_LOCALID` (srun alone). Without them: the only shard, and `device` unchanged.

        No process group is initialised: nothing here needs a collective, and an initialised group changes what the
        model libraries do (transformers then writes checkpoint files on rank 0 only). Each process of a GPU launch
        gets its own GPU, `cuda:<local rank>`.
        """
        environ = os.environ
        rank_name, count_name, local_name = (
            ("RANK", "WORLD_SIZE", "LOCAL_RANK")
            if "WORLD_SIZE" in environ
            else ("SLURM_PROCID", "SLURM_NTASKS", "SLURM_LOCALID")
        )
        try:
            count = int(environ.get(count_name, "1"))
            index = int(environ.get(rank_name, "0"))
            local = int(environ.get(local_name, "0"))
        except ValueError as error:
            raise OviBenchError(
                f"the launcher set {rank_name}/{count_name}/{local_name} to non-numbers ({error})."
            ) from None
        if count <= 1:
            return cls(), device
        if not 0 <= index < count:
            raise OviBenchError(
                f"{rank_name}={index} is outside 0…{count - 1} ({count_name}={count}); check the launch command."
            )
        launch = environ.get("TORCHELASTIC_RUN_ID") or environ.get("SLURM_JOB_ID", "")
        if device in ("auto", "cuda") and torch_cuda_count() > 0:
            device = f"cuda:{local % torch_cuda_count()}"
        return cls(index, count, launch), device

    # -- markers ------------------------------------------------------------------------------------------------

    def _marker(self, run_dir: Path, index: int, fingerprint: str) -> Path:
        return run_dir / MARKERS / f"{fingerprint[:16]}-{self.count}-{index}.json"

    def mark_done(self, run_dir: Path, fingerprint: str, items: int) -> None:
        """Say that this shard's items are all in the store."""
        atomic_write_text(
            self._marker(run_dir, self.index, fingerprint),
            json.dumps({"launch": self.launch, "index": self.index, "count": self.count, "items": items})
            + "\n",
        )

    def unfinished(self, run_dir: Path, fingerprint: str) -> list[int]:
        """The shards of this launch that have not marked their share done yet."""
        waiting = []
        for index in range(self.count):
            try:
                marker = json.loads(self._marker(run_dir, index, fingerprint).read_text())
            except (OSError, ValueError):
                waiting.append(index)
                continue
            if marker.get("launch") != self.launch:
                waiting.append(index)
        return waiting

    def wait_for_others(
        self,
        run_dir: Path,
        fingerprint: str,
        *,
        say: Callable[[str], None],
        poll_seconds: float = 2.0,
        timeout_seconds: float | None = None,
    ) -> list[int]:
        """Wait until every shard of this launch is done (or the timeout passes); returns those still unfinished.

        Polling a marker file, not a collective: a slow shard (hours, on a big run) cannot hit a communication
        timeout, and a shard that died is the launcher's to report (torchrun stops the others when one fails).
        """
        started = time.monotonic()
        last_report = 0.0
        while waiting := self.unfinished(run_dir, fingerprint):
            elapsed = time.monotonic() - started
            if timeout_seconds is not None and elapsed >= timeout_seconds:
                return waiting
            if elapsed - last_report >= 60 or last_report == 0.0:
                say(
                    f"waiting for shard(s) {', '.join(map(str, waiting))} of {self.count} to finish their share"
                )
                last_report = elapsed or 1e-9
            time.sleep(poll_seconds)
        return []
