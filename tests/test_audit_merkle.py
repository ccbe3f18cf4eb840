"""RFC 6962 Merkle tree: known vectors, an independent reference, and mutation of every proof element."""

from __future__ import annotations

import hashlib

import pytest

from cleanroom.audit.merkle import (
    EMPTY_ROOT,
    CompactTree,
    MerkleTree,
    leaf_hash,
    node_hash,
    verify_consistency,
    verify_inclusion,
)

# The reference tree used by certificate-transparency (and RFC 9162 implementations' test suites):
# 8 leaves and the root of each prefix.
CT_LEAVES = [
    bytes.fromhex(h)
    for h in ("", "00", "10", "2021", "3031", "40414243", "5051525354555657", "606162636465666768696a6b6c6d6e6f")
]
CT_ROOTS = [
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]


def _ref_leaf(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


def _ref_mth(leaves: list[bytes]) -> bytes:
    """RFC 6962 §2.1, literally, with hashlib (independent of the code under test)."""
    n = len(leaves)
    if n == 0:
        return hashlib.sha256(b"").digest()
    if n == 1:
        return leaves[0]
    k = 1
    while k * 2 < n:
        k *= 2
    return hashlib.sha256(b"\x01" + _ref_mth(leaves[:k]) + _ref_mth(leaves[k:])).digest()


def _ref_path(m: int, leaves: list[bytes]) -> list[bytes]:
    n = len(leaves)
    if n == 1:
        return []
    k = 1
    while k * 2 < n:
        k *= 2
    if m < k:
        return [*_ref_path(m, leaves[:k]), _ref_mth(leaves[k:])]
    return [*_ref_path(m - k, leaves[k:]), _ref_mth(leaves[:k])]


def _ref_subproof(m: int, leaves: list[bytes], b: bool) -> list[bytes]:
    n = len(leaves)
    if m == n:
        return [] if b else [_ref_mth(leaves)]
    k = 1
    while k * 2 < n:
        k *= 2
    if m <= k:
        return [*_ref_subproof(m, leaves[:k], b), _ref_mth(leaves[k:])]
    return [*_ref_subproof(m - k, leaves[k:], False), _ref_mth(leaves[:k])]


def _leaves(n: int) -> list[bytes]:
    return [leaf_hash(i.to_bytes(4, "big")) for i in range(n)]


def test_ct_reference_vectors() -> None:
    hashed = [leaf_hash(d) for d in CT_LEAVES]
    assert hashed[0] == _ref_leaf(b"")
    compact = CompactTree()
    for size, expected in enumerate(CT_ROOTS, start=1):
        compact.append(hashed[size - 1])
        assert compact.root().hex() == expected
        assert MerkleTree(hashed[:size]).root().hex() == expected
        assert _ref_mth(hashed[:size]).hex() == expected
    assert MerkleTree([]).root() == EMPTY_ROOT == hashlib.sha256(b"").digest()


def test_leaf_and_node_prefixes_differ() -> None:
    a, b = _leaves(2)
    # A node can never be passed off as a leaf of the concatenation (second-preimage defence).
    assert node_hash(a, b) != leaf_hash(a + b)


@pytest.mark.parametrize("size", [*range(1, 34), 64, 65])
def test_inclusion_matches_reference_and_verifies(size: int) -> None:
    leaves = _leaves(size)
    tree = MerkleTree(leaves)
    root = _ref_mth(leaves)
    assert tree.root() == root
    compact = CompactTree()
    for leaf in leaves:
        compact.append(leaf)
    assert compact.root() == root
    for index in range(size):
        path = tree.inclusion_proof(index)
        assert path == _ref_path(index, leaves)
        assert verify_inclusion(leaves[index], index, size, path, root)
        assert not verify_inclusion(
            leaves[index], index, size, path, _ref_mth([*leaves[:-1], leaves[0]]) if size > 1 else b"\x00" * 32
        )
        if size > 1:
            assert not verify_inclusion(leaves[index], (index + 1) % size, size, path, root)
            assert not verify_inclusion(leaves[(index + 1) % size], index, size, path, root)
        for j in range(len(path)):
            bad = list(path)
            bad[j] = bytes([bad[j][0] ^ 1]) + bad[j][1:]
            assert not verify_inclusion(leaves[index], index, size, bad, root)
        assert not verify_inclusion(leaves[index], index, size, [*path, leaves[0]], root)
        if path:
            assert not verify_inclusion(leaves[index], index, size, path[:-1], root)


def test_inclusion_rejects_out_of_range() -> None:
    leaves = _leaves(5)
    tree = MerkleTree(leaves)
    assert not verify_inclusion(leaves[0], 5, 5, tree.inclusion_proof(4), tree.root())
    assert not verify_inclusion(leaves[0], -1, 5, [], tree.root())
    with pytest.raises(ValueError):
        tree.inclusion_proof(5)


@pytest.mark.parametrize("new_size", [*range(1, 26), 32, 33])
def test_consistency_matches_reference_and_verifies(new_size: int) -> None:
    leaves = _leaves(new_size)
    tree = MerkleTree(leaves)
    new_root = tree.root()
    for old_size in range(0, new_size + 1):
        old_root = _ref_mth(leaves[:old_size])
        assert tree.root_at(old_size) == old_root
        proof = tree.consistency_proof(old_size)
        if 0 < old_size < new_size:
            assert proof == _ref_subproof(old_size, leaves, True)
        assert verify_consistency(old_size, new_size, old_root, new_root, proof)
        if 0 < old_size < new_size:
            for j in range(len(proof)):
                bad = list(proof)
                bad[j] = bytes([bad[j][0] ^ 0x80]) + bad[j][1:]
                assert not verify_consistency(old_size, new_size, old_root, new_root, bad)
            wrong_old = bytes([old_root[0] ^ 1]) + old_root[1:]
            assert not verify_consistency(old_size, new_size, wrong_old, new_root, proof)
            wrong_new = bytes([new_root[0] ^ 1]) + new_root[1:]
            assert not verify_consistency(old_size, new_size, old_root, wrong_new, proof)
            assert not verify_consistency(old_size, new_size, old_root, new_root, proof[:-1])
            assert not verify_consistency(old_size, new_size, old_root, new_root, [*proof, new_root])
            assert not verify_consistency(old_size, new_size, old_root, new_root, [])


def test_consistency_detects_a_rewritten_prefix() -> None:
    leaves = _leaves(20)
    old_root = _ref_mth(leaves[:9])
    rewritten = list(leaves)
    rewritten[3] = leaf_hash(b"forged")
    tree = MerkleTree(rewritten)
    assert not verify_consistency(9, 20, old_root, tree.root(), tree.consistency_proof(9))


def test_compact_tree_frontier_roundtrip() -> None:
    compact = CompactTree()
    for leaf in _leaves(37):
        compact.append(leaf)
    again = CompactTree(compact.size, compact.frontier)
    assert again.root() == compact.root()
    with pytest.raises(ValueError):
        CompactTree(36, compact.frontier)
