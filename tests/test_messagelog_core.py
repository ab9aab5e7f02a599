"""Message-log core: record hashing, batches, and the verifier's detection of each tampering.

Everything is real: certificates from a test CA, message signatures made with
the node's sign key (``secnode.core.msgsig``), OCSP responses from
``certs.ocsp.OCSPResponder``, RFC 3161 tokens from ``certs.tsa.TimeStampAuthority``.
The tamperings are done the way an insider with database access would do them.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import itertools
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from hypothesis import given, settings
from hypothesis import strategies as st

from certs import keys
from certs.ocsp import OCSPResponder, Revocation, build_request
from certs.tsa import TimeStampAuthority
from certs.tsa_verify import build_request as tsa_request
from certs.tsa_verify import token_from_response
from secnode.core.jsonfmt import FormatError, canonical_json
from secnode.core.messagelog.archive import LogEvidence
from secnode.core.messagelog.batch import (
    RecordProof,
    StampedBatch,
    check_proof,
    prepare_batch,
    proofs_from_leaves,
)
from secnode.core.messagelog.record import (
    Direction,
    LogRecord,
    RecordError,
    canonical_bytes,
    format_time,
    genesis_hash,
    parse_time,
)
from secnode.core.messagelog.report import (
    FailureKind,
    TrustAnchors,
    VerificationReport,
    VerifyOptions,
)
from secnode.core.messagelog.verify import verify_log
from secnode.core.msgsig import MessageSigner
from tests import conftest
from tests.conftest import PASSPHRASE, Issued, make_ca

NODE_ID = "JP/GOV/072028/ss1"
CHAIN = f"{NODE_ID}#w1"
PEER_SERVICE = "JP/GOV/132187/citizen/getResident/v1"
CLIENT = "JP/GOV/072028/welfare"
T0 = dt.datetime.now(dt.UTC).replace(microsecond=0)
#: record_hash of the pinned vector in test_canonical_bytes_are_pinned (also in docs/audit.md)
RECORD_VECTOR_HASH = "2d33d8fabfe00fc2bcf232ecba9f86a32e9985b36133e4d6a18f867a941f71b5"


# ----- a small federation: CA, two members' sign keys, OCSP, TSA ---------------------------
@dataclass
class World:
    ca: conftest.TestCA
    node: Issued
    peer: Issued
    tsa_cert: x509.Certificate
    tsa: TimeStampAuthority
    ocsp: dict[bytes, bytes]  # cert sha256 -> OCSP response DER (good, produced at T0)
    stranger: Issued  # a sign cert from a CA the auditor does not trust
    other_tsa: TimeStampAuthority  # a TSA from that untrusted CA

    @property
    def anchors(self) -> TrustAnchors:
        return TrustAnchors(ca_certs=[self.ca.ca.cert], tsa_certs=[self.tsa_cert])

    def certificates(self) -> list[x509.Certificate]:
        return [self.node.cert, self.peer.cert, self.tsa_cert, self.ca.ca.cert]

    def stamp(self, root: bytes, tsa: TimeStampAuthority | None = None) -> bytes:
        der, _ = tsa_request(root)
        return token_from_response((tsa or self.tsa).respond(der))


def _sha(cert: x509.Certificate) -> bytes:
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).digest()


def _ocsp_for(ca: conftest.TestCA, cert: x509.Certificate, revoked: bool = False) -> bytes:
    signer = ca.ca.signer(PASSPHRASE)
    responder = OCSPResponder(
        ca.ca.cert,
        ca.ca.cert,
        signer.issuer_key(),
        lambda serial: Revocation(T0 - dt.timedelta(minutes=1) if revoked else None),
    )
    request, _ = build_request(cert, ca.ca.cert, nonce=False)
    return responder.respond(request, now=T0).der


def _tsa(ca: conftest.TestCA) -> tuple[x509.Certificate, TimeStampAuthority]:
    issued = ca.issue("tsa", "CN=Test TSA, O=Test, C=JP")
    return issued.cert, TimeStampAuthority(issued.cert, keys.SoftwareSigner(issued.key))


def make_world(base: Path) -> World:
    ca = make_ca(base)
    node = ca.issue("sign", "serialNumber=JP/GOV/072028, O=Aizu, C=JP")
    peer = ca.issue("sign", "serialNumber=JP/GOV/132187, O=Tokyo, C=JP")
    tsa_cert, tsa = _tsa(ca)
    rogue = make_ca(base, "Rogue CA")
    stranger = rogue.issue("sign", "serialNumber=JP/GOV/072028, O=Aizu, C=JP")
    _, other_tsa = _tsa(rogue)
    ocsp = {_sha(c.cert): _ocsp_for(ca, c.cert) for c in (node, peer)}
    return World(ca, node, peer, tsa_cert, tsa, ocsp, stranger, other_tsa)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    # The log's times start when its certificates are made (valid from 5 min before), not
    # when the module was collected: in a long run that was minutes earlier ("not yet valid").
    global T0
    T0 = dt.datetime.now(dt.UTC).replace(microsecond=0)
    return make_world(tmp_path_factory.mktemp("world"))


# ----- building a log the way the node would -----------------------------------------------
@dataclass
class Log:
    records: list[LogRecord]
    batches: list[StampedBatch] = field(default_factory=list)
    proofs: list[RecordProof] = field(default_factory=list)
    extra_ocsp: list[bytes] = field(default_factory=list)

    def evidence(self, world: World) -> LogEvidence:
        return LogEvidence(
            list(self.records),
            list(self.batches),
            list(self.proofs),
            world.certificates(),
            [*world.ocsp.values(), *self.extra_ocsp],
        )

    def copy(self) -> Log:
        return Log(list(self.records), list(self.batches), list(self.proofs), list(self.extra_ocsp))


def seal_after(record: LogRecord, prev_hash: bytes, seq: int | None = None) -> LogRecord:
    """Re-seal ``record`` at ``seq`` after ``prev_hash``: what a forger with DB access does."""
    draft = dataclasses.replace(record, seq=record.seq if seq is None else seq, prev_hash=prev_hash)
    return dataclasses.replace(draft, record_hash=draft.computed_hash())


def rechain(records: list[LogRecord], start: int) -> list[LogRecord]:
    """Renumber from ``start`` on and recompute every hash after it (a full rewrite)."""
    out = list(records[:start])
    for record in records[start:]:
        prev = out[-1].record_hash if out else genesis_hash(record.chain_id)
        out.append(seal_after(record, prev, len(out) + 1))
    return out


def message_fields(world: World, i: int, signer: Issued | None = None) -> dict[str, object]:
    who = signer or (world.node if i % 2 == 0 else world.peer)
    digest = hashlib.sha256(f"canonical message digest {i}".encode()).digest()
    sig = MessageSigner(who.cert, keys.SoftwareSigner(who.key)).sign(digest)
    return {
        "signed_digest": digest,
        "signature": sig,
        "signer_cert_sha256": _sha(who.cert),
        "ocsp_sha256": hashlib.sha256(world.ocsp[_sha(who.cert)]).digest()
        if _sha(who.cert) in world.ocsp
        else None,
    }


def make_record(
    world: World,
    seq: int,
    prev_hash: bytes,
    i: int | None = None,
    *,
    signer: Issued | None = None,
    chain: str = CHAIN,
    time: dt.datetime | None = None,
) -> LogRecord:
    i = seq if i is None else i
    directions = [Direction.REQUEST_OUT, Direction.RESPONSE_IN]
    refusal = i % 11 == 0
    body = f"<body n='{i}'>payload {i} \u4f1a\u6d25</body>".encode()
    extra = {} if refusal else message_fields(world, i, signer)
    return LogRecord.create(
        chain_id=chain,
        seq=seq,
        prev_hash=prev_hash,
        time=time or T0 + dt.timedelta(seconds=i),
        direction=Direction.REFUSAL if refusal else directions[i % 2],
        node_id=NODE_ID,
        client_id=CLIENT,
        service_id=PEER_SERVICE,
        message_id=f"msg-{(i + 1) // 2}",
        user_id="JP123456789",
        purpose="welfare-eligibility",
        legal_basis="consent",
        data_subject="subject-42",
        decision="deny" if refusal else "allow",
        reason="no agreement covers this purpose" if refusal else "agreement A-7",
        headers_sha256=hashlib.sha256(f"headers {i}".encode()).digest(),
        body=body,
        **extra,  # type: ignore[arg-type]
    )


def build_log(
    world: World, n: int = 40, batch_size: int = 8, stamped: int | None = None, chain: str = CHAIN
) -> Log:
    records: list[LogRecord] = []
    for seq in range(1, n + 1):
        prev = records[-1].record_hash if records else genesis_hash(chain)
        records.append(make_record(world, seq, prev, chain=chain))
    log = Log(records)
    upto = n if stamped is None else stamped
    for start in range(0, upto, batch_size):
        chunk = records[start : min(start + batch_size, upto)]
        prepared = prepare_batch(chunk)
        log.batches.append(
            prepared.stamped(world.stamp(prepared.root), "Test TSA", "http://tsa.test/")
        )
        log.proofs.extend(prepared.proofs())
    return log


def check(world: World, log: Log, **options: object) -> VerificationReport:
    opts = VerifyOptions(as_of=T0 + dt.timedelta(minutes=30), **options)  # type: ignore[arg-type]
    return verify_log(world.anchors, live=log.evidence(world), options=opts)


def first(report: VerificationReport) -> tuple[FailureKind, int | None, str | None]:
    failure = report.first_failure
    assert failure is not None, "expected a failure"
    return failure.kind, failure.seq, failure.record_id


@pytest.fixture(scope="module")
def clean(world: World) -> Log:
    return build_log(world)


# ----- records -----------------------------------------------------------------------------
def test_canonical_bytes_are_pinned() -> None:
    """The byte-level definition in docs/audit.md, as a vector other implementations can use."""
    record = LogRecord.create(
        chain_id="JP/GOV/072028/ss1#a",
        seq=1,
        prev_hash=genesis_hash("JP/GOV/072028/ss1#a"),
        time=dt.datetime(2026, 4, 1, 9, 30, tzinfo=dt.UTC),
        direction="request_in",
        node_id="JP/GOV/072028/ss1",
        headers_sha256=bytes(32),
        body=b"hello",
        client_id="JP/GOV/132187/app",
        data_subject='\u4f1a\u6d25 "x"\n',
        record_id="r1",
    )
    expected = (
        '{"body_sha256":"2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824",'
        '"body_size":5,"chain_id":"JP/GOV/072028/ss1#a","client_id":"JP/GOV/132187/app",'
        '"data_subject":"\u4f1a\u6d25 \\"x\\"\\n","decision":null,"direction":"request_in",'
        '"headers_sha256":"' + "0" * 64 + '","id":"r1","legal_basis":null,'
        '"message_id":null,"node_id":"JP/GOV/072028/ss1","ocsp_sha256":null,"purpose":null,'
        '"reason":null,"seq":1,"service_id":null,"signature":null,"signed_digest":null,'
        '"signer_cert_sha256":null,"time":"2026-04-01T09:30:00.000000Z","user_id":null,'
        '"version":1}'
    ).encode("utf-8")
    assert canonical_bytes(record) == expected
    genesis = hashlib.sha256(b"secnode-log-genesis\x00JP/GOV/072028/ss1#a").digest()
    assert record.prev_hash == genesis
    assert record.record_hash == hashlib.sha256(genesis + expected).digest()
    assert record.record_hash.hex() == RECORD_VECTOR_HASH


def test_body_bound_by_digest_only(world: World) -> None:
    record = make_record(world, 1, genesis_hash(CHAIN))
    purged = record.without_body()
    assert purged.body is None and purged.hash_ok() and purged == record
    assert canonical_bytes(purged) == canonical_bytes(record)
    tampered = dataclasses.replace(record, body=record.body[:-1] + b"X")  # type: ignore[index]
    assert tampered.hash_ok() and not tampered.body_ok()


def test_stored_form_round_trips_and_parser_is_strict(world: World) -> None:
    record = make_record(world, 2, genesis_hash(CHAIN))
    line = record.to_jsonl()
    again = LogRecord.from_jsonl(line)
    assert again == record and again.body == record.body and again.to_jsonl() == line
    obj = json.loads(line)
    for mutate, message in [
        (lambda o: o.update(extra=1), "unknown field"),
        (lambda o: o.pop("purpose"), "missing field"),
        (lambda o: o.update(seq="2"), "seq must be an integer"),
        (lambda o: o.update(direction="sideways"), "unknown direction"),
        (lambda o: o.update(time="2026-04-01T09:30:00Z"), "time must look like"),
        (lambda o: o.update(body_sha256="AB" * 32), "hex"),
        (lambda o: o.update(signature="MEUC!!"), "invalid base64"),
        (lambda o: o.update(body="AB=="), "not in canonical form"),  # b"\x00" is "AA=="
        (lambda o: o.update(version=2), "unsupported record version"),
    ]:
        changed = dict(obj)
        mutate(changed)
        with pytest.raises(FormatError, match=message):
            LogRecord.from_json(changed)
    with pytest.raises(FormatError, match="duplicate key"):
        LogRecord.from_jsonl(b'{"seq":1,"seq":2}')
    with pytest.raises(FormatError, match="floating-point"):
        LogRecord.from_jsonl(b'{"seq":1.5}')


def test_create_validates(world: World) -> None:
    good = {
        "chain_id": CHAIN,
        "seq": 1,
        "prev_hash": bytes(32),
        "time": T0,
        "direction": "refusal",
        "node_id": NODE_ID,
        "headers_sha256": bytes(32),
    }
    with pytest.raises(RecordError, match="give the body"):
        LogRecord.create(**good)  # type: ignore[arg-type]
    with pytest.raises(RecordError, match="seq must be"):
        LogRecord.create(**{**good, "seq": 0}, body=b"")  # type: ignore[arg-type]
    with pytest.raises(RecordError, match="timezone-aware"):
        LogRecord.create(**{**good, "time": dt.datetime(2026, 1, 1)}, body=b"")  # type: ignore[arg-type]
    with pytest.raises(RecordError, match="come together"):
        LogRecord.create(**good, body=b"", signature=b"x")  # type: ignore[arg-type]
    with pytest.raises(RecordError, match="chain_id"):
        LogRecord.create(**{**good, "chain_id": "bad chain"}, body=b"")  # type: ignore[arg-type]
    # bodies may be left out of the log: the digest still binds them
    kept = LogRecord.create(**good, body=b"secret", keep_body=False)  # type: ignore[arg-type]
    assert kept.body is None and kept.body_sha256 == hashlib.sha256(b"secret").digest()
    with pytest.raises(FormatError, match="canonical range"):
        canonical_json({"n": 2**60})


# ----- batches -----------------------------------------------------------------------------
def test_batch_proofs_and_leaves(world: World, clean: Log) -> None:
    batch = clean.batches[1]
    records = clean.records[batch.first_seq - 1 : batch.last_seq]
    again = proofs_from_leaves(batch, [r.record_hash for r in records])
    assert again == [p for p in clean.proofs if p.batch_id == batch.batch_id]
    proof = again[3]
    assert check_proof(batch, records[3].record_hash, proof)
    assert not check_proof(batch, records[4].record_hash, proof)
    assert not check_proof(batch, records[3].record_hash, dataclasses.replace(proof, index=4))
    assert not check_proof(clean.batches[0], records[3].record_hash, proof)
    with pytest.raises(ValueError, match="contiguous"):
        prepare_batch([clean.records[0], clean.records[2]])
    assert StampedBatch.from_json(batch.to_json()) == batch
    assert RecordProof.from_json(proof.to_json()) == proof


# ----- the verifier on an intact log -------------------------------------------------------
def test_intact_log_verifies(world: World, clean: Log) -> None:
    report = check(world, clean)
    assert report.ok, report.summary()
    assert report.checked["records"] == 40
    assert report.checked["proofs"] == 40
    assert report.checked["batches"] == 5
    assert report.checked["signatures"] == 40 - 3  # seqs 11, 22, 33 are refusals
    assert report.checked["bodies"] == 40
    assert report.chains[CHAIN] == {"first_seq": 1, "last_seq": 40, "records": 40}
    doc = json.loads(json.dumps(report.to_json()))
    assert doc["ok"] is True and doc["first_failure"] is None


def test_bodies_purged_still_verify(world: World, clean: Log) -> None:
    log = clean.copy()
    log.records = [r.without_body() for r in log.records]
    report = check(world, log)
    assert report.ok and report.checked["bodies"] == 0


# ----- the six acceptance tamperings and their variants ------------------------------------
def test_one_body_byte_changed(world: World, clean: Log) -> None:
    log = clean.copy()
    victim = log.records[16]
    body = bytearray(victim.body or b"")
    body[5] ^= 0x01
    log.records[16] = dataclasses.replace(victim, body=bytes(body))
    report = check(world, log)
    assert first(report) == (FailureKind.ALTERED, 17, victim.id)
    assert "body" in report.failures[0].message
    assert len(report.failures) == 1


def test_one_record_deleted(world: World, clean: Log) -> None:
    log = clean.copy()
    del log.records[20]  # seq 21
    report = check(world, log)
    assert first(report) == (FailureKind.MISSING, 21, None)
    assert clean.records[21].id in report.failures[0].message
    assert report.kinds() == [FailureKind.MISSING]


def test_one_record_deleted_and_rest_renumbered(world: World, clean: Log) -> None:
    log = clean.copy()
    log.records = [
        dataclasses.replace(r, seq=r.seq - 1) if r.seq > 21 else r
        for r in log.records
        if r.seq != 21
    ]
    report = check(world, log)
    assert first(report)[:2] == (FailureKind.MISSING, 21)


def test_one_record_deleted_and_chain_recomputed(world: World, clean: Log) -> None:
    """Delete, renumber, rehash: only the stamps know, and they cannot tell a deletion
    from an edit (see _diagnose_stamp), so the first rewritten record is named."""
    for deleted, kind in [(19, FailureKind.ALTERED), (24, FailureKind.ALTERED)]:
        log = clean.copy()
        log.records = rechain([r for r in log.records if r.seq != deleted], deleted - 1)
        assert all(r.hash_ok() for r in log.records)
        report = check(world, log)
        assert first(report) == (kind, deleted, clean.records[deleted].id)
        assert report.failures[0].last_seq == 39


def test_two_records_swapped_in_storage_order(world: World, clean: Log) -> None:
    log = clean.copy()
    log.records[9], log.records[10] = log.records[10], log.records[9]
    report = check(world, log)
    assert first(report) == (FailureKind.REORDERED, 11, clean.records[10].id)
    assert report.kinds() == [FailureKind.REORDERED]


def test_two_records_swapped_by_seq(world: World, clean: Log) -> None:
    """The rows keep their hashes but exchange seq numbers (UPDATE ... SET seq = ...)."""
    log = clean.copy()
    a, b = log.records[9], log.records[10]
    log.records[9], log.records[10] = (
        dataclasses.replace(b, seq=10),
        dataclasses.replace(a, seq=11),
    )
    report = check(world, log)
    assert first(report)[:2] == (FailureKind.REORDERED, 10)
    assert report.kinds() == [FailureKind.REORDERED]


def test_two_records_swapped_and_chain_recomputed(world: World, clean: Log) -> None:
    log = clean.copy()
    swapped = list(log.records)
    swapped[9], swapped[10] = swapped[10], swapped[9]
    log.records = rechain(swapped, 9)
    report = check(world, log)
    assert first(report)[:2] == (FailureKind.REORDERED, 10)


def test_forged_record_inserted_with_recomputed_chain(world: World, clean: Log) -> None:
    """The hard case: every hash and link is valid again; only the stamps tell."""
    log = clean.copy()
    forged = make_record(world, 14, log.records[12].record_hash, i=1000)
    log.records = rechain([*log.records[:13], forged, *log.records[13:]], 13)
    structural = [r.hash_ok() for r in log.records]
    assert all(structural)  # the forger did the hashing right
    report = check(world, log)
    assert first(report) == (FailureKind.INSERTED, 14, forged.id)
    # the rest of the rewritten chain is folded into that one finding (seq 41, pushed
    # out of the last batch, is recent enough to be waiting for its stamp)
    assert report.failures[0].last_seq == 40
    assert report.kinds() == [FailureKind.INSERTED]


def test_forged_record_inserted_without_recomputing(world: World, clean: Log) -> None:
    log = clean.copy()
    forged = make_record(world, 14, log.records[12].record_hash, i=1000)
    later = [dataclasses.replace(r, seq=r.seq + 1) for r in log.records[13:]]
    log.records = [*log.records[:13], forged, *later]
    report = check(world, log)
    assert first(report) == (FailureKind.INSERTED, 14, forged.id)


def test_forged_record_appended_with_duplicate_seq(world: World, clean: Log) -> None:
    log = clean.copy()
    forged = make_record(world, 14, log.records[12].record_hash, i=1000)
    log.records.insert(14, forged)
    report = check(world, log)
    assert first(report) == (FailureKind.INSERTED, 14, forged.id)


def test_content_changed_without_resealing(world: World, clean: Log) -> None:
    log = clean.copy()
    changed = dataclasses.replace(log.records[6], purpose="marketing")
    log.records[6] = changed
    report = check(world, log)
    assert first(report) == (FailureKind.ALTERED, 7, changed.id)
    assert report.kinds() == [FailureKind.ALTERED]


def test_content_changed_and_chain_recomputed(world: World, clean: Log) -> None:
    log = clean.copy()
    changed = dataclasses.replace(log.records[25], data_subject="someone-else")
    log.records = rechain([*log.records[:25], changed, *log.records[26:]], 25)
    report = check(world, log)
    assert first(report) == (FailureKind.ALTERED, 26, changed.id)


def test_content_changed_hash_recomputed_only_for_that_record(world: World, clean: Log) -> None:
    log = clean.copy()
    changed = seal_after(
        dataclasses.replace(log.records[25], purpose="marketing"), log.records[24].record_hash
    )
    log.records[25] = changed
    report = check(world, log)
    assert first(report) == (FailureKind.ALTERED, 26, changed.id)


def test_token_replaced_with_one_for_another_root(world: World, clean: Log) -> None:
    log = clean.copy()
    victim = log.batches[2]
    other = world.stamp(hashlib.sha256(b"another root").digest())
    log.batches[2] = dataclasses.replace(victim, token=other)
    report = check(world, log)
    kind, seq, _ = first(report)
    assert (kind, seq) == (FailureKind.BAD_TOKEN, victim.first_seq)
    assert report.failures[0].batch_id == victim.batch_id
    assert "imprint" in report.failures[0].message
    assert report.kinds() == [FailureKind.BAD_TOKEN]


def test_token_swapped_between_batches(world: World, clean: Log) -> None:
    log = clean.copy()
    a, b = log.batches[0], log.batches[1]
    log.batches[0], log.batches[1] = (
        dataclasses.replace(a, token=b.token),
        dataclasses.replace(b, token=a.token),
    )
    report = check(world, log)
    assert first(report)[:2] == (FailureKind.BAD_TOKEN, 1)
    assert report.kinds() == [FailureKind.BAD_TOKEN, FailureKind.BAD_TOKEN]


def test_root_and_token_replaced_together(world: World, clean: Log) -> None:
    log = clean.copy()
    fake_root = hashlib.sha256(b"fake").digest()
    victim = log.batches[3]
    log.batches[3] = dataclasses.replace(victim, root=fake_root, token=world.stamp(fake_root))
    report = check(world, log)
    assert first(report)[:2] == (FailureKind.BAD_TOKEN, victim.first_seq)
    assert report.kinds() == [FailureKind.BAD_TOKEN]


def test_token_from_an_unapproved_tsa(world: World, clean: Log) -> None:
    log = clean.copy()
    victim = log.batches[0]
    log.batches[0] = dataclasses.replace(victim, token=world.stamp(victim.root, world.other_tsa))
    report = check(world, log)
    assert first(report)[:2] == (FailureKind.BAD_TOKEN, 1)


def test_overlapping_batches(world: World, clean: Log) -> None:
    log = clean.copy()
    prepared = prepare_batch(log.records[4:12])  # seqs 5..12 straddle two batches
    log.batches.append(prepared.stamped(world.stamp(prepared.root), "Test TSA"))
    log.proofs.extend(prepared.proofs())
    report = check(world, log)
    assert first(report)[:2] == (FailureKind.BAD_TOKEN, 5)
    assert "overlaps" in report.failures[0].message


# ----- stamping coverage -------------------------------------------------------------------
def test_recent_unstamped_records_are_within_grace(world: World) -> None:
    log = build_log(world, n=20, batch_size=8, stamped=16)
    assert check(world, log).ok
    late = VerifyOptions(as_of=T0 + dt.timedelta(hours=5))
    report = verify_log(world.anchors, live=log.evidence(world), options=late)
    assert first(report)[:2] == (FailureKind.UNSTAMPED, 17)
    assert report.failures[0].last_seq == 20 and len(report.failures) == 1


def test_missing_proof_is_unstamped(world: World, clean: Log) -> None:
    log = clean.copy()
    log.proofs = [p for p in log.proofs if p.seq != 30]
    # all records of the batch are present, so the root still recomputes from them
    assert check(world, log).ok
    log.records = [r for r in log.records if r.seq != 29] + []
    log.proofs = [p for p in log.proofs if p.seq != 29]
    report = check(world, log)
    assert FailureKind.UNSTAMPED in report.kinds()


# ----- chain structure ---------------------------------------------------------------------
def test_chain_must_start_at_genesis(world: World, clean: Log) -> None:
    log = clean.copy()
    log.records = log.records[8:]
    log.batches = log.batches[1:]
    report = check(world, log)
    assert first(report)[:2] == (FailureKind.MISSING, 1)
    report = check(world, log, complete=False)
    assert report.ok and "starts at seq 9" in report.notes[0]


def test_first_record_with_wrong_genesis(world: World) -> None:
    record = make_record(world, 1, bytes(32))
    report = check(world, Log([record]))
    assert first(report) == (FailureKind.ALTERED, 1, record.id)


def test_independent_chains_verify_independently(world: World) -> None:
    a = build_log(world, n=10, batch_size=4, chain=f"{NODE_ID}#w1")
    b = build_log(world, n=7, batch_size=4, chain=f"{NODE_ID}#w2")
    merged = Log(a.records + b.records, a.batches + b.batches, a.proofs + b.proofs)
    assert check(world, merged).ok
    merged.records = [r for r in merged.records if not (r.chain_id.endswith("w2") and r.seq == 3)]
    report = check(world, merged)
    failure = report.first_failure
    assert failure is not None and failure.chain_id == f"{NODE_ID}#w2" and failure.seq == 3


# ----- signatures --------------------------------------------------------------------------
def _log_with(world: World, mutate: Callable[[int, dict[str, object]], None]) -> Log:
    """A log whose seq 5 was *logged* with a defective signature (then sealed and stamped)."""
    records: list[LogRecord] = []
    for seq in range(1, 9):
        prev = records[-1].record_hash if records else genesis_hash(CHAIN)
        record = make_record(world, seq, prev)
        if seq == 5:
            fields = message_fields(world, seq)
            mutate(seq, fields)
            record = LogRecord.create(
                chain_id=CHAIN,
                seq=seq,
                prev_hash=prev,
                time=record.time,
                direction=record.direction,
                node_id=NODE_ID,
                headers_sha256=record.headers_sha256,
                body=record.body,
                **fields,  # type: ignore[arg-type]
            )
        records.append(record)
    prepared = prepare_batch(records)
    return Log(
        records, [prepared.stamped(world.stamp(prepared.root), "Test TSA")], prepared.proofs()
    )


def test_signature_over_other_digest(world: World) -> None:
    def other_digest(seq: int, fields: dict[str, object]) -> None:
        fields["signed_digest"] = hashlib.sha256(b"something else").digest()

    report = check(world, _log_with(world, other_digest))
    assert first(report)[:2] == (FailureKind.BAD_SIGNATURE, 5)
    assert report.kinds() == [FailureKind.BAD_SIGNATURE]


def test_signature_by_untrusted_certificate(world: World) -> None:
    def stranger(seq: int, fields: dict[str, object]) -> None:
        fields.update(message_fields(world, seq, signer=world.stranger))

    report = check(world, _log_with(world, stranger))
    assert first(report)[:2] == (FailureKind.BAD_SIGNATURE, 5)
    assert "not trusted" in report.failures[0].message


def test_signer_certificate_hash_mismatch(world: World) -> None:
    def wrong_hash(seq: int, fields: dict[str, object]) -> None:
        fields["signer_cert_sha256"] = (
            _sha(world.peer.cert) if seq % 2 == 0 else _sha(world.node.cert)
        )

    report = check(world, _log_with(world, wrong_hash))
    assert first(report)[:2] == (FailureKind.BAD_SIGNATURE, 5)


def test_ocsp_evidence(world: World) -> None:
    revoked = _ocsp_for(world.ca, world.peer.cert, revoked=True)

    def revoked_status(seq: int, fields: dict[str, object]) -> None:
        fields["ocsp_sha256"] = hashlib.sha256(revoked).digest()

    log = _log_with(world, revoked_status)
    report = check(world, log)
    assert first(report)[:2] == (FailureKind.BAD_SIGNATURE, 5)
    assert "OCSP response" in report.failures[0].message  # not supplied at all
    log.extra_ocsp.append(revoked)
    report = check(world, log)
    assert first(report)[:2] == (FailureKind.BAD_SIGNATURE, 5)
    assert "revoked" in report.failures[0].message
    assert check(world, log, check_ocsp=False).ok


def _timed_log(
    world: World, times: list[dt.datetime], signer: Issued, chain: str = f"{NODE_ID}#timed"
) -> Log:
    """Signed records at ``times`` (one per time, in order), sealed and stamped in one batch."""
    records: list[LogRecord] = []
    for seq, when in enumerate(times, start=1):
        prev = records[-1].record_hash if records else genesis_hash(chain)
        # i = 2 * seq + 1: never a refusal (i % 11 == 0 happens; skip those numbers)
        i = next(n for n in itertools.count(2 * seq + 1, 2) if n % 11)
        records.append(make_record(world, seq, prev, i, signer=signer, chain=chain, time=when))
    prepared = prepare_batch(records)
    return Log(
        records, [prepared.stamped(world.stamp(prepared.root), "Test TSA")], prepared.proofs()
    )


def test_ocsp_staleness_is_judged_per_record_not_per_minute(world: World) -> None:
    """Issue 12 item 10: the staple goes stale at second 30 of a minute; the records of that
    minute signed after it are each a finding (a per-minute cache let them all pass)."""
    staple = world.ocsp[_sha(world.node.cert)]  # thisUpdate = T0
    minute = T0.replace(second=0) + dt.timedelta(minutes=3)
    stale_at = minute + dt.timedelta(seconds=30)
    times = [minute + dt.timedelta(seconds=5 * k) for k in range(12)]  # :00, :05 ... :55
    log = _timed_log(world, times, world.node)
    max_age = (stale_at - T0).total_seconds()
    report = check(world, log, ocsp_max_age=max_age)
    flagged = [f.seq for f in report.failures]
    assert flagged == [8, 9, 10, 11, 12], report.summary()  # :35 ... :55; :30 is still fresh
    assert {f.kind for f in report.failures} == {FailureKind.BAD_SIGNATURE}
    assert all("stale" in f.message for f in report.failures)
    assert hashlib.sha256(staple).digest() == log.records[0].ocsp_sha256
    # with a staple allowed to be 30 s older, the same records all pass
    assert check(world, log, ocsp_max_age=max_age + 30).ok


def test_signer_expiry_is_judged_per_record_not_per_hour(world: World) -> None:
    """The signer certificate expires between two records of one calendar hour."""
    short = world.ca.issue("sign", "serialNumber=JP/GOV/072028, O=Aizu short, C=JP", days=1)
    expiry = short.cert.not_valid_after_utc
    hour = expiry.replace(minute=0, second=0, microsecond=0)
    before = max(hour, expiry - dt.timedelta(seconds=30))
    after = min(hour + dt.timedelta(hours=1, microseconds=-1), expiry + dt.timedelta(seconds=30))
    log = _timed_log(world, [before, after], short)
    evidence = log.evidence(world)
    evidence = dataclasses.replace(evidence, certificates=[*evidence.certificates, short.cert])
    opts = VerifyOptions(as_of=after + dt.timedelta(minutes=1), check_ocsp=False)
    report = verify_log(world.anchors, live=evidence, options=opts)
    assert [(f.kind, f.seq) for f in report.failures] == [(FailureKind.BAD_SIGNATURE, 2)], (
        report.summary()
    )
    assert "not trusted" in report.failures[0].message


def test_report_json_names_first_failure(world: World, clean: Log) -> None:
    log = clean.copy()
    del log.records[3]
    doc = json.loads(json.dumps(check(world, log).to_json()))
    assert doc["ok"] is False
    assert doc["first_failure"]["kind"] == "missing" and doc["first_failure"]["seq"] == 4
    assert doc["failed"] == {"missing": 1}
    assert doc["checked"]["records"] == 39


@settings(max_examples=300, deadline=None)
@given(
    when=st.datetimes(
        min_value=dt.datetime(1900, 1, 2),
        max_value=dt.datetime(9999, 12, 30),
        timezones=st.sampled_from(
            [dt.UTC, dt.timezone(dt.timedelta(hours=9)), dt.timezone(dt.timedelta(hours=-5))]
        ),
    )
)
def test_record_time_text_is_utc_with_microseconds(when: dt.datetime) -> None:
    """The fast path for the node's UTC clock gives the text the general path gives."""
    utc = when.astimezone(dt.UTC)
    assert format_time(when) == utc.replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"
    assert parse_time(format_time(when), "t") == utc


def test_record_time_must_be_timezone_aware() -> None:
    with pytest.raises(RecordError, match=r"record time must be timezone-aware"):
        format_time(dt.datetime(2026, 4, 1, 9, 30))
