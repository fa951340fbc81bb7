"""World-space voxel hash over points: k-nearest and radius queries, vectorised.

Points are bucketed by integer voxel coordinates packed into one int64 key; the
keys are sorted once, so a cell's points are a contiguous run found with
``torch.searchsorted``. Queries gather the runs of the cells around them and
filter by distance, all in batched tensor ops on the points' device (CPU or
CUDA). Rebuilding is a sort: cheap enough (milliseconds for 10^5 points) to
redo after a map update instead of maintaining the index incrementally.

Choose ``voxel_size`` near the typical query radius / neighbour distance: too
small means many empty cells per query, too large many candidates per cell.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

# 21 bits per axis: voxel coordinates in [-2^20, 2^20).
_BITS = 21
_OFFSET = 1 << (_BITS - 1)
# Queries are processed in chunks of at most this many candidate pairs.
_MAX_PAIRS = 1 << 23


def _pack(cells: Tensor) -> Tensor:
    """int64 keys [...] of voxel coordinates [..., 3]."""
    shifted = cells + _OFFSET
    return (shifted[..., 0] << (2 * _BITS)) | (shifted[..., 1] << _BITS) | shifted[..., 2]


class VoxelHashIndex:
    """Voxel hash of a fixed set of points.

    Args:
        points: [N, 3] positions (metres).
        voxel_size: cell edge (metres).
    """

    def __init__(self, points: Tensor, voxel_size: float) -> None:
        if not voxel_size > 0:
            raise ValueError(f"voxel_size must be positive, got {voxel_size}")
        if points.dim() != 2 or points.shape[1] != 3:
            raise ValueError(f"points must be [N, 3], got {list(points.shape)}")
        self.voxel_size = float(voxel_size)
        self.points = points.detach()
        cells = self._cells(self.points)
        if len(cells) and (cells.min() < -_OFFSET or cells.max() >= _OFFSET):
            raise ValueError("points span more voxels than the 21-bit keys hold; use a larger voxel_size")
        keys = _pack(cells)
        sorted_keys, self.order = torch.sort(keys)  # order[j]: index of the j-th point in key order
        self.cell_keys, counts = torch.unique_consecutive(sorted_keys, return_counts=True)
        self.cell_start = torch.cumsum(counts, 0) - counts
        self.cell_count = counts
        self._sorted_points = self.points[self.order]

    def __len__(self) -> int:
        return self.points.shape[0]

    def _cells(self, points: Tensor) -> Tensor:
        return torch.floor(points / self.voxel_size).long()

    def _offsets(self, reach: int, device: torch.device) -> Tensor:
        r = torch.arange(-reach, reach + 1, device=device)
        return torch.stack(torch.meshgrid(r, r, r, indexing="ij"), dim=-1).reshape(-1, 3)  # [(2 reach + 1)^3, 3]

    def _candidates(self, queries: Tensor, reach: int) -> tuple[Tensor, Tensor, Tensor]:
        """Points in the (2 reach + 1)^3 cells around each query: (query id, sorted position, squared distance)."""
        device = queries.device
        if len(self.cell_keys) == 0:
            empty = torch.zeros(0, dtype=torch.long, device=device)
            return empty, empty, torch.zeros(0, dtype=queries.dtype, device=device)
        n_cells = (2 * reach + 1) ** 3
        keys = _pack(self._cells(queries)[:, None, :] + self._offsets(reach, device)[None]).reshape(-1)  # [Q * K]
        slot = torch.searchsorted(self.cell_keys, keys)
        slot = slot.clamp_max_(len(self.cell_keys) - 1)
        found = self.cell_keys.index_select(0, slot) == keys
        slot, run_id = slot[found], torch.nonzero(found).flatten()
        counts = self.cell_count.index_select(0, slot)
        first = torch.cumsum(counts, 0) - counts  # where each run starts among the candidates
        # Candidate m of run j sits at cell_start[slot_j] + (m - first_j).
        position = torch.repeat_interleave(self.cell_start.index_select(0, slot) - first, counts)
        position += torch.arange(len(position), device=device)
        query = torch.repeat_interleave(torch.div(run_id, n_cells, rounding_mode="floor"), counts)
        p = self._sorted_points.index_select(0, position)
        q = queries.index_select(0, query)
        dx, dy, dz = (p - q).unbind(-1)
        return query, position, dx * dx + dy * dy + dz * dz

    def _covered(self, queries: Tensor, reach: int) -> Tensor:
        """Per query [Q], the radius of the ball around it that its searched block contains."""
        cells = self._cells(queries)
        low = queries - (cells - reach) * self.voxel_size
        high = (cells + reach + 1) * self.voxel_size - queries
        return torch.minimum(low, high).min(dim=-1).values

    def _chunks(self, n_queries: int, reach: int) -> list[slice]:
        # Bound the candidate pairs by the densest cell, so that memory stays flat.
        per_query = (2 * reach + 1) ** 3 * max(int(self.cell_count.max()) if len(self.cell_count) else 1, 1)
        step = max(1, _MAX_PAIRS // per_query)
        return [slice(i, min(i + step, n_queries)) for i in range(0, n_queries, step)]

    def radius(self, queries: Tensor, r: float) -> tuple[Tensor, Tensor, Tensor]:
        """All points within distance ``r`` of each query.

        Args:
            queries: [Q, 3]
            r: radius (metres).

        Returns:
            query_idx [M], point_idx [M], distance [M]: pairs grouped by query
            (in query order), in no particular order within a query.
        """
        reach = max(1, math.ceil(r / self.voxel_size))
        out = [], [], []
        if self._block_too_large(reach):
            for chunk in self._brute_chunks(len(queries)):
                dist = self._distances(queries[chunk])
                query, point = torch.nonzero(dist <= r, as_tuple=True)
                out[0].append(query + chunk.start)
                out[1].append(point)
                out[2].append(dist[query, point])
        for chunk in [] if out[0] else self._chunks(len(queries), reach):
            query, position, dist_sq = self._candidates(queries[chunk], reach)
            keep = dist_sq <= r * r
            out[0].append(query[keep] + chunk.start)
            out[1].append(self.order[position[keep]])
            out[2].append(dist_sq[keep].sqrt())
        if not out[0]:
            empty = torch.zeros(0, dtype=torch.long, device=queries.device)
            return empty, empty, torch.zeros(0, dtype=queries.dtype, device=queries.device)
        return torch.cat(out[0]), torch.cat(out[1]), torch.cat(out[2])

    def knn(self, queries: Tensor, k: int, max_radius: float | None = None) -> tuple[Tensor, Tensor]:
        """The ``k`` nearest points of each query.

        Searches the cells around each query, then larger blocks for the
        queries whose k-th candidate could still be beaten by a point outside
        the searched block, until all are settled, the search passes
        ``max_radius``, or it covers all points.

        Args:
            queries: [Q, 3]
            k: neighbours per query.
            max_radius: ignore points farther than this (metres).

        Returns:
            indices [Q, k] (int64, -1 where fewer were found) and distances
            [Q, k] (inf there), nearest first.
        """
        n_q, device = len(queries), queries.device
        indices = torch.full((n_q, k), -1, dtype=torch.long, device=device)
        dists = torch.full((n_q, k), float("inf"), dtype=queries.dtype, device=device)
        if len(self) == 0 or n_q == 0 or k == 0:
            return indices, dists
        extent = float((self.points.max(0).values - self.points.min(0).values).norm())
        pending = torch.arange(n_q, device=device)
        reach = 1
        while len(pending):
            if self._block_too_large(reach):
                self._knn_brute(queries, pending, k, max_radius, indices, dists)
                break
            for chunk in self._chunks(len(pending), reach):
                rows = pending[chunk]
                indices[rows], dists[rows] = self._knn_block(queries[rows], k, reach, max_radius)
            if reach * self.voxel_size > extent or (max_radius is not None and reach * self.voxel_size >= max_radius):
                break
            kth = dists[pending, k - 1]
            pending = pending[~(kth <= self._covered(queries[pending], reach))]
            kth = dists[pending, k - 1]
            # A k-th candidate at distance d is beaten only by points within d:
            # a block of reach ceil(d / voxel) settles it; without one, grow.
            if len(pending) and bool(torch.isfinite(kth).all()):
                reach = max(reach + 1, int(torch.ceil(kth.max() / self.voxel_size)))
            else:
                reach *= 2
        return indices, dists

    def _block_too_large(self, reach: int) -> bool:
        """Whether a (2 reach + 1)^3 block has more cells than the index has occupied ones."""
        return (2 * reach + 1) ** 3 > max(27, len(self.cell_keys))

    def _brute_chunks(self, n_queries: int) -> list[slice]:
        step = max(1, _MAX_PAIRS // max(len(self), 1))
        return [slice(i, min(i + step, n_queries)) for i in range(0, n_queries, step)]

    def _distances(self, queries: Tensor) -> Tensor:
        """Exact distances [Q, N] to every point (no matrix-product shortcut: it loses precision)."""
        return torch.cdist(queries, self.points.to(queries.dtype), compute_mode="donot_use_mm_for_euclid_dist")

    def _knn_brute(self, queries: Tensor, rows: Tensor, k: int, max_radius: float | None,
                   indices: Tensor, dists: Tensor) -> None:  # fmt: skip
        """k nearest of queries[rows] against all points, written into indices/dists."""
        kk = min(k, len(self))
        for chunk in self._brute_chunks(len(rows)):
            sub = rows[chunk]
            dist = self._distances(queries[sub])
            if max_radius is not None:
                dist = torch.where(dist <= max_radius, dist, torch.full_like(dist, float("inf")))
            best, idx = torch.topk(dist, kk, dim=1, largest=False)
            found = torch.isfinite(best)
            indices[sub, :kk] = torch.where(found, idx, torch.full_like(idx, -1))
            dists[sub, :kk] = best

    def _knn_block(self, queries: Tensor, k: int, reach: int, max_radius: float | None) -> tuple[Tensor, Tensor]:
        """k nearest among the candidates of the (2 reach + 1)^3 block: [Q, k] indices and distances."""
        n_q, device = len(queries), queries.device
        query, position, dist_sq = self._candidates(queries, reach)
        if max_radius is not None:
            keep = dist_sq <= max_radius * max_radius
            query, position, dist_sq = query[keep], position[keep], dist_sq[keep]
        # Candidates arrive grouped by query: scatter them into a padded [Q, C]
        # table (C: most candidates of a query) and take the k smallest per row.
        # Measured faster than sorting the candidates.
        counts = torch.bincount(query, minlength=n_q)
        width = max(int(counts.max()) if len(counts) else 0, k)
        col = torch.arange(len(query), device=device) - (torch.cumsum(counts, 0) - counts).index_select(0, query)
        table = torch.full((n_q, width), float("inf"), dtype=dist_sq.dtype, device=device)
        table[query, col] = dist_sq
        best, best_col = torch.topk(table, k, dim=1, largest=False)
        pos_table = torch.zeros((n_q, width), dtype=torch.long, device=device)
        pos_table[query, col] = position
        idx = self.order.index_select(0, pos_table.gather(1, best_col).reshape(-1)).reshape(n_q, k)
        missing = torch.isinf(best)
        return torch.where(missing, torch.full_like(idx, -1), idx), best.sqrt()
