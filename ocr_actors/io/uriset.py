"""A compact set of URIs for planning at archive scale.

The driver must remember every source it has listed (to drop duplicates) and every
document the output already holds (to skip it). As Python ``str`` objects in a ``set``
that costs about 110 bytes per URI; here each URI is its 128-bit BLAKE2b digest, two
``uint64`` words in sorted NumPy runs: 16 bytes per URI. Two different URIs share a digest
with probability below 1e-20 for a billion URIs, far below the odds of a storage error.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence

import numpy as np


def uri_digests(uris: Sequence[str]) -> np.ndarray:
    """``(N, 2)`` uint64: each URI's BLAKE2b-128 digest (of its UTF-8 bytes) as two
    big-endian words, high word first."""
    blake2b = hashlib.blake2b
    joined = b"".join(blake2b(u.encode(), digest_size=16).digest() for u in uris)
    return np.frombuffer(joined, dtype=">u8").astype(np.uint64).reshape(-1, 2)


def first_occurrences(digests: np.ndarray) -> np.ndarray:
    """``(N,)`` bool: True at the first occurrence of each distinct digest (row)."""
    order = np.lexsort((digests[:, 1], digests[:, 0]))  # stable: equal rows keep their order
    ordered = digests[order]
    first = np.ones(len(ordered), dtype=bool)
    first[1:] = (ordered[1:] != ordered[:-1]).any(axis=1)
    mask = np.zeros(len(digests), dtype=bool)
    mask[order[first]] = True
    return mask


class UriSet:
    """A set of URIs held as digests: add and test in bulk (vectorised) or one at a time.

    The digests live in disjoint runs, each an array pair sorted by high word (rows with
    equal high words, about one pair in 2**64, are told apart by the low word). Adds are
    buffered and merged in before the next lookup; a run merges into the one before it
    while it is more than a quarter of that one's size, so runs shrink geometrically (at
    most log4(N) + 1 of them), each digest is copied O(log N) times, and a lookup is a
    few binary searches per run.
    """

    def __init__(self, uris: Iterable[str] = ()) -> None:
        self._runs: list[tuple[np.ndarray, np.ndarray]] = []  # (high words, low words)
        self._pending: list[np.ndarray] = []
        listed = list(uris)
        if listed:
            self.add(listed)

    def __len__(self) -> int:
        self._merge_pending()
        return sum(len(high) for high, _ in self._runs)

    def __contains__(self, uri: object) -> bool:
        return isinstance(uri, str) and bool(self.contains_digests(uri_digests([uri]))[0])

    @property
    def nbytes(self) -> int:
        """Bytes held by the digests."""
        self._merge_pending()
        return sum(high.nbytes + low.nbytes for high, low in self._runs)

    def add(self, uris: Sequence[str]) -> None:
        """Add URIs (duplicates and URIs already present are ignored)."""
        self.add_digests(uri_digests(uris))

    def contains(self, uris: Sequence[str]) -> np.ndarray:
        """``(N,)`` bool: which of ``uris`` are in the set."""
        return self.contains_digests(uri_digests(uris))

    def add_digests(self, digests: np.ndarray) -> None:
        """Add ``(N, 2)`` digests from :func:`uri_digests`."""
        if len(digests):
            self._pending.append(digests)

    def contains_digests(self, digests: np.ndarray) -> np.ndarray:
        """``(N,)`` bool: which ``(N, 2)`` digests are in the set."""
        self._merge_pending()
        return self._lookup(digests)

    def _lookup(self, digests: np.ndarray) -> np.ndarray:
        found = np.zeros(len(digests), dtype=bool)
        if not self._runs or not len(digests):
            return found
        order = np.argsort(digests[:, 0], kind="stable")  # sorted keys: faster binary searches
        high, low = digests[order, 0], digests[order, 1]
        hit = np.zeros(len(digests), dtype=bool)
        for run_high, run_low in self._runs:
            left = np.searchsorted(run_high, high, side="left")
            span = np.searchsorted(run_high, high, side="right") - left
            at = np.minimum(left, len(run_high) - 1)
            hit |= (span == 1) & (run_low[at] == low)
            for k in np.flatnonzero(span > 1):  # equal high words
                hit[k] |= bool((run_low[left[k] : left[k] + span[k]] == low[k]).any())
        found[order] = hit
        return found

    def _merge_pending(self) -> None:
        if not self._pending:
            return
        new = np.concatenate(self._pending) if len(self._pending) > 1 else self._pending[0]
        self._pending = []
        new = new[first_occurrences(new)]
        new = new[~self._lookup(new)]
        if not len(new):
            return
        order = np.argsort(new[:, 0], kind="stable")
        self._runs.append((new[order, 0], new[order, 1]))
        while len(self._runs) > 1 and 4 * len(self._runs[-1][0]) > len(self._runs[-2][0]):
            high, low = self._runs.pop()
            older_high, older_low = self._runs.pop()
            at = np.searchsorted(older_high, high)  # disjoint runs: the merge stays sorted and unique
            self._runs.append((np.insert(older_high, at, high), np.insert(older_low, at, low)))
