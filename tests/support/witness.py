"""Support for tests that speak the node-to-node protocol by hand (no tests here).

A client node signs its ``request_out`` log position (docs/protocol.md §4.1) and a
provider node that keeps a log refuses a request without it, so a hand-made request
carries one too: a position in a made-up chain, signed with the request's key.
"""

from __future__ import annotations

import hashlib

from secnode.core.msgsig import MessageSigner
from secnode.core.witness import LogPosition, RequestWitness, request_witness_digest
from secnode.proxy import wire

#: The chain a hand-made request claims to be logged in.
TEST_CHAIN = "JP/TEST/0/peer#00000000"


def witness_headers(signer: MessageSigner, request_digest: bytes, seq: int = 1) -> dict[str, str]:
    """``Secnode-Witness`` for a request with ``request_digest``, signed by ``signer``."""
    position = LogPosition(TEST_CHAIN, seq, hashlib.sha256(request_digest).digest())
    signature = signer.sign_raw(request_witness_digest(request_digest, position))
    return {wire.H_WITNESS: wire.encode_witness(RequestWitness(position, signature))}
