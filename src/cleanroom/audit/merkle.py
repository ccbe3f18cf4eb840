"""RFC 6962 Merkle trees over audit records, plus the CloudTrail-style hash chain.

Hashing follows RFC 6962 §2.1 (same as RFC 9162 §2.1.1) with SHA-256:
    leaf hash  = SHA-256(0x00 || frame bytes)
    node hash  = SHA-256(0x01 || left || right)
    MTH({})    = SHA-256("")
The distinct prefixes stop a leaf from being passed off as an interior node (second-preimage attack).

The leaf is the record's *encrypted* frame, so anyone holding the segment files can recompute the tree and
check proofs; reading a record still needs the audit key (or, for one record, its disclosed record key).

`CompactTree` keeps only the O(log n) roots of the perfect subtrees (the "frontier"), which is all the
writer needs to append and to compute the root. `MerkleTree` keeps every level for proof generation.
Proof verification implements RFC 9162 §2.1.3.2 (inclusion) and §2.1.4.2 (consistency) literally.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence

HASH_LEN = 32
_GENESIS_PREFIX = b"cleanroom-audit-v1 chain-genesis"

# hashlib's SHA-256 (OpenSSL's, like `cryptography`'s) costs about 0.4 us per call where a
# `hashes.Hash` object costs about 1.2 us; the writer hashes three times per record, the verifier more.
_LEAF_PREFIX = hashlib.sha256(b"\x00")
_NODE_PREFIX = b"\x01"


def sha256(*parts: bytes | bytearray | memoryview) -> bytes:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part)
    return digest.digest()


EMPTY_ROOT = sha256(b"")


def leaf_hash(frame: bytes | bytearray | memoryview) -> bytes:
    digest = _LEAF_PREFIX.copy()
    digest.update(frame)
    return digest.digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"".join((_NODE_PREFIX, left, right))).digest()


def chain_genesis(log_id: bytes) -> bytes:
    return sha256(_GENESIS_PREFIX, log_id)


def chain_next(prev_chain: bytes, record_leaf_hash: bytes) -> bytes:
    """Hash chain: each head commits to the previous head and the new record's leaf hash."""
    return hashlib.sha256(prev_chain + record_leaf_hash).digest()


class CompactTree:
    """Append-only frontier of perfect-subtree roots (largest first); O(log n) state."""

    def __init__(self, size: int = 0, frontier: Sequence[bytes] = ()) -> None:
        if size < 0 or len(frontier) != bin(size).count("1"):
            raise ValueError("frontier does not match tree size")
        if any(len(h) != HASH_LEN for h in frontier):
            raise ValueError("frontier hashes must be 32 bytes")
        self.size = size
        self.frontier = list(frontier)

    def copy(self) -> CompactTree:
        # Once per group commit (the rollback point); skips the constructor's checks, already done.
        clone = CompactTree.__new__(CompactTree)
        clone.size = self.size
        clone.frontier = self.frontier.copy()
        return clone

    def append(self, leaf: bytes) -> None:
        node = leaf
        size = self.size
        # Each trailing 1 bit of the old size is a perfect subtree of equal height to merge with.
        while size & 1:
            node = node_hash(self.frontier.pop(), node)
            size >>= 1
        self.frontier.append(node)
        self.size += 1

    def root(self) -> bytes:
        if not self.frontier:
            return EMPTY_ROOT
        acc = self.frontier[-1]
        for h in reversed(self.frontier[:-1]):
            acc = node_hash(h, acc)
        return acc


class MerkleTree:
    """All levels of an RFC 6962 tree, built bottom-up. An unpaired last node is promoted unchanged to
    the next level, which yields exactly the RFC's split-at-largest-power-of-two tree."""

    def __init__(self, leaves: Iterable[bytes]) -> None:
        level = list(leaves)
        self.levels: list[list[bytes]] = [level]
        while len(level) > 1:
            nxt = [node_hash(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
            if len(level) % 2:
                nxt.append(level[-1])
            self.levels.append(nxt)
            level = nxt

    @property
    def size(self) -> int:
        return len(self.levels[0])

    def root(self) -> bytes:
        return self.levels[-1][0] if self.size else EMPTY_ROOT

    def _subtree(self, lo: int, hi: int) -> bytes:
        """MTH(D[lo:hi]) for any range, using stored nodes where the range is an aligned perfect block."""
        n = hi - lo
        if n == 0:
            return EMPTY_ROOT
        height = n.bit_length() - 1
        if n == 1 << height and lo % n == 0 and height < len(self.levels):
            return self.levels[height][lo >> height]
        k = _largest_power_of_two_below(n)
        return node_hash(self._subtree(lo, lo + k), self._subtree(lo + k, hi))

    def root_at(self, size: int) -> bytes:
        if not 0 <= size <= self.size:
            raise ValueError("size outside the tree")
        return self._subtree(0, size)

    def inclusion_proof(self, index: int, size: int | None = None) -> list[bytes]:
        """RFC 6962 §2.1.1 PATH(index, D[0:size])."""
        size = self.size if size is None else size
        if not 0 <= index < size <= self.size:
            raise ValueError("leaf index outside the tree")
        return self._path(index, 0, size)

    def _path(self, m: int, lo: int, hi: int) -> list[bytes]:
        n = hi - lo
        if n == 1:
            return []
        k = _largest_power_of_two_below(n)
        if m < k:
            return [*self._path(m, lo, lo + k), self._subtree(lo + k, hi)]
        return [*self._path(m - k, lo + k, hi), self._subtree(lo, lo + k)]

    def consistency_proof(self, old_size: int, new_size: int | None = None) -> list[bytes]:
        """RFC 6962 §2.1.2 PROOF(old_size, D[0:new_size])."""
        new_size = self.size if new_size is None else new_size
        if not 0 <= old_size <= new_size <= self.size:
            raise ValueError("sizes outside the tree")
        if old_size in (0, new_size):
            return []
        return self._subproof(old_size, 0, new_size, True)

    def _subproof(self, m: int, lo: int, hi: int, complete: bool) -> list[bytes]:
        n = hi - lo
        if m == n:
            return [] if complete else [self._subtree(lo, hi)]
        k = _largest_power_of_two_below(n)
        if m <= k:
            return [*self._subproof(m, lo, lo + k, complete), self._subtree(lo + k, hi)]
        return [*self._subproof(m - k, lo + k, hi, False), self._subtree(lo, lo + k)]


def _largest_power_of_two_below(n: int) -> int:
    """Largest power of two strictly less than n (n >= 2)."""
    return 1 << ((n - 1).bit_length() - 1)


def verify_inclusion(leaf: bytes, index: int, size: int, path: Sequence[bytes], root: bytes) -> bool:
    """RFC 9162 §2.1.3.2."""
    if index >= size or index < 0:
        return False
    fn, sn, r = index, size - 1, leaf
    for p in path:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root


def verify_consistency(old_size: int, new_size: int, old_root: bytes, new_root: bytes, path: Sequence[bytes]) -> bool:
    """RFC 9162 §2.1.4.2, with the trivial cases (old size 0, equal sizes) made explicit."""
    if old_size < 0 or old_size > new_size:
        return False
    if old_size == new_size:
        return not path and old_root == new_root
    if old_size == 0:
        return not path
    if not path:
        return False
    nodes = list(path)
    if old_size & (old_size - 1) == 0:
        nodes.insert(0, old_root)
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = nodes[0]
    for c in nodes[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    return fr == old_root and sr == new_root and sn == 0
