"""Exact nearest neighbours by cosine: top-k over a bank of embeddings, scanned in chunks so that no normalised copy
of the bank is ever made."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ovi_bench.components import nonfinite_rows
from ovi_bench.errors import OviBenchError


def _inverse_norms(rows: torch.Tensor) -> torch.Tensor:
    # Norms in at least float32: a float16 row's sum of squares overflows at a norm of 256. An all-zero row has no
    # direction: its cosine to anything is defined as 0.
    norms = torch.linalg.vector_norm(rows, dim=-1, dtype=torch.promote_types(rows.dtype, torch.float32))
    return torch.where(norms > 0, norms.reciprocal(), torch.zeros_like(norms))


def bank_inverse_norms(bank: torch.Tensor, chunk_size: int = 65536) -> torch.Tensor:
    """1 / ‖b‖ for every row of `bank` [N, D] (0 for an all-zero row): [N], on the bank's device, at least float32.

    Read `chunk_size` rows at a time, so it never copies the bank; pass it to `nearest_neighbours` to search a fixed
    bank many times.
    """
    return torch.cat(
        [_inverse_norms(bank[start : start + chunk_size]) for start in range(0, bank.shape[0], chunk_size)]
    )


@torch.no_grad()
def nearest_neighbours(
    queries: torch.Tensor,
    bank: torch.Tensor,
    k: int,
    *,
    bank_inverse_norms: torch.Tensor | None = None,
    chunk_size: int = 65536,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The k bank rows with the highest cosine to each query: (cosines [B, k], descending, and indices [B, k] int64).

    Exact. The bank [N, D] is neither copied nor normalised as a whole: it is scanned `chunk_size` rows at a time,
    each chunk's dot products with the unit queries are scaled by the rows' inverse norms (`bank_inverse_norms`, or
    computed per chunk) and merged into a running top-k, so the memory beyond the bank is O(B · chunk_size) (plus a
    chunk-sized copy only when the bank's norms have to be computed in a wider dtype). Runs on the bank's device in
    the bank's dtype; the results are returned on the queries' device, the cosines in the bank's dtype. Not
    differentiable: callers that need gradients gather the neighbours by index and recompute their cosines.
    """
    if queries.ndim != 2 or bank.ndim != 2 or queries.shape[1] != bank.shape[1]:
        raise ValueError(
            f"nearest_neighbours needs queries [B, D] and a bank [N, D] of the same width, got "
            f"{tuple(queries.shape)} and {tuple(bank.shape)}"
        )
    if not bank.is_floating_point():
        raise ValueError(f"the bank must hold floating-point embeddings, not {bank.dtype}")
    count = bank.shape[0]
    if not 1 <= k <= count:
        raise OviBenchError(
            f"{k} nearest neighbours were asked for, but the bank holds {count} embeddings: use 1 <= k <= {count}, "
            "or a larger bank."
        )
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be at least 1, got {chunk_size}")
    if bank_inverse_norms is not None and bank_inverse_norms.shape != (count,):
        raise ValueError(
            f"bank_inverse_norms must have shape ({count},), got {tuple(bank_inverse_norms.shape)}"
        )
    if bad_rows := nonfinite_rows(queries.detach()):
        raise OviBenchError(f"nearest_neighbours: query rows {bad_rows} hold NaN or infinity.")

    unit_queries = F.normalize(queries.detach().to(device=bank.device, dtype=bank.dtype), dim=-1)
    best_cosines = torch.empty(queries.shape[0], 0, device=bank.device, dtype=bank.dtype)
    best_indices = torch.empty(queries.shape[0], 0, device=bank.device, dtype=torch.int64)
    for start in range(0, count, chunk_size):
        chunk = bank[start : start + chunk_size]
        inverse_norms = (
            _inverse_norms(chunk)
            if bank_inverse_norms is None
            else bank_inverse_norms[start : start + chunk.shape[0]]
        )
        cosines = unit_queries @ chunk.T
        cosines *= inverse_norms.to(device=bank.device, dtype=bank.dtype)
        # The chunk's own top-k first, so the merge only ever concatenates 2k columns.
        chunk_cosines, chunk_indices = cosines.topk(min(k, chunk.shape[0]), dim=1)
        merged_cosines = torch.cat([best_cosines, chunk_cosines], dim=1)
        merged_indices = torch.cat([best_indices, chunk_indices + start], dim=1)
        best_cosines, order = merged_cosines.topk(min(k, merged_cosines.shape[1]), dim=1)
        best_indices = merged_indices.gather(1, order)
    return best_cosines.to(queries.device), best_indices.to(queries.device)
