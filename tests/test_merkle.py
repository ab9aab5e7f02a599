"""RFC 6962 Merkle trees: the level-wise implementation against the recursive definition."""

from __future__ import annotations

import hashlib

from hypothesis import given, settings
from hypothesis import strategies as st

from secnode.core.messagelog.merkle import (
    inclusion_proof,
    inclusion_proofs,
    leaf_hash,
    merkle_root,
    node_hash,
    root_from_proof,
    verify_inclusion,
)


def _largest_power_of_two_below(n: int) -> int:
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def reference_mth(leaves: list[bytes]) -> bytes:
    """RFC 6962 §2.1, written as in the RFC (recursive; slow but obviously right)."""
    if not leaves:
        return hashlib.sha256(b"").digest()
    if len(leaves) == 1:
        return hashlib.sha256(b"\x00" + leaves[0]).digest()
    k = _largest_power_of_two_below(len(leaves))
    return hashlib.sha256(b"\x01" + reference_mth(leaves[:k]) + reference_mth(leaves[k:])).digest()


def reference_path(m: int, leaves: list[bytes]) -> list[bytes]:
    """RFC 6962 §2.1.1 PATH(m, D[n])."""
    if len(leaves) == 1:
        return []
    k = _largest_power_of_two_below(len(leaves))
    if m < k:
        return [*reference_path(m, leaves[:k]), reference_mth(leaves[k:])]
    return [*reference_path(m - k, leaves[k:]), reference_mth(leaves[:k])]


def make_leaves(n: int, salt: int = 0) -> list[bytes]:
    return [hashlib.sha256(f"{salt}:{i}".encode()).digest() for i in range(n)]


def test_known_small_trees() -> None:
    a, b, c = make_leaves(3)
    assert merkle_root([]) == hashlib.sha256(b"").digest()
    assert merkle_root([a]) == leaf_hash(a)
    assert merkle_root([a, b]) == node_hash(leaf_hash(a), leaf_hash(b))
    # Three leaves: the odd one is combined at the top, not duplicated (unlike Bitcoin).
    assert merkle_root([a, b, c]) == node_hash(node_hash(leaf_hash(a), leaf_hash(b)), leaf_hash(c))
    assert inclusion_proof([a, b, c], 2) == [node_hash(leaf_hash(a), leaf_hash(b))]


def test_domain_separation_stops_inner_node_as_leaf() -> None:
    """An inner node's 64-byte preimage cannot be presented as a leaf."""
    a, b = make_leaves(2)
    inner = leaf_hash(a) + leaf_hash(b)
    assert merkle_root([a, b]) != leaf_hash(inner)


@settings(max_examples=60, deadline=None)
@given(n=st.integers(min_value=1, max_value=300), salt=st.integers(0, 10**6))
def test_root_and_every_proof_match_rfc_definition(n: int, salt: int) -> None:
    leaves = make_leaves(n, salt)
    root, proofs = inclusion_proofs(leaves)
    assert root == reference_mth(leaves) == merkle_root(leaves)
    for index in {0, n - 1, n // 2, (n * 7) // 11}:
        assert proofs[index] == reference_path(index, leaves)
    for index, path in enumerate(proofs):
        assert verify_inclusion(leaves[index], index, n, path, root)


@settings(max_examples=80, deadline=None)
@given(
    n=st.integers(min_value=2, max_value=300),
    data=st.data(),
)
def test_tampering_is_rejected(n: int, data: st.DataObject) -> None:
    leaves = make_leaves(n)
    root, proofs = inclusion_proofs(leaves)
    index = data.draw(st.integers(0, n - 1), label="index")
    path = proofs[index]
    # another leaf at this position
    other = data.draw(st.integers(0, n - 1).filter(lambda i: i != index), label="other")
    assert not verify_inclusion(leaves[other], index, n, path, root)
    # the right leaf at another position (proof stretched to a different index)
    assert not verify_inclusion(leaves[index], other, n, path, root)
    # a flipped bit anywhere in the path
    if path:
        step = data.draw(st.integers(0, len(path) - 1), label="step")
        bit = data.draw(st.integers(0, 255), label="bit")
        bad = bytearray(path[step])
        bad[bit // 8] ^= 1 << (bit % 8)
        forged = [*path[:step], bytes(bad), *path[step + 1 :]]
        assert not verify_inclusion(leaves[index], index, n, forged, root)
        # a truncated or extended path
        assert not verify_inclusion(leaves[index], index, n, path[:-1], root)
    assert not verify_inclusion(leaves[index], index, n, [*path, root], root)


def test_proof_rejects_out_of_range() -> None:
    leaves = make_leaves(5)
    root, proofs = inclusion_proofs(leaves)
    assert root_from_proof(leaves[0], 5, 5, proofs[0]) is None
    assert root_from_proof(leaves[0], -1, 5, proofs[0]) is None
    assert root_from_proof(leaves[0], 0, 0, []) is None
    assert not verify_inclusion(leaves[0], 0, 5, [b"short"], root)


def test_single_leaf_batch_has_empty_path() -> None:
    (only,) = make_leaves(1)
    root, proofs = inclusion_proofs([only])
    assert proofs == [[]]
    assert verify_inclusion(only, 0, 1, [], root)
