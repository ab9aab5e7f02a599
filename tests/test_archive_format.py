"""Signed log archives and evidence bundles: format, strict reading, archive chain, interop."""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import io
import json
import os
import shutil
import subprocess
import tracemalloc
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from certs import keys
from secnode.core.messagelog.archive import (
    MIMETYPE,
    ArchiveFormatError,
    ArchiveKind,
    LoadedArchive,
    LogEvidence,
    ReadLimits,
    archive_filename,
    read_archive,
    select_evidence,
    write_archive,
)
from secnode.core.messagelog.batch import prepare_batch
from secnode.core.messagelog.record import LogRecord, genesis_hash
from secnode.core.messagelog.report import FailureKind, VerificationReport, VerifyOptions
from secnode.core.messagelog.verify import verify_files, verify_log
from tests.test_messagelog_core import (
    CHAIN,
    NODE_ID,
    T0,
    Log,
    World,
    build_log,
    make_record,
    make_world,
)

AS_OF = T0 + dt.timedelta(minutes=30)
RANGES = [(1, 16), (17, 24), (25, 32), (33, 40)]


def archive_range(
    world: World,
    log: Log,
    first: int,
    last: int,
    sequence: int,
    previous: bytes | None,
    *,
    records: list[LogRecord] | None = None,
    signer_issued: object | None = None,
) -> bytes:
    chosen = records if records is not None else [r for r in log.records if first <= r.seq <= last]
    evidence = select_evidence(
        chosen, log.batches, log.proofs, world.certificates(), world.ocsp.values()
    )
    who = signer_issued or world.node
    out = io.BytesIO()
    write_archive(
        evidence,
        out,
        node_id=NODE_ID,
        signer_cert=who.cert,  # type: ignore[attr-defined]
        signer=keys.SoftwareSigner(who.key),  # type: ignore[attr-defined]
        extra_certs=[world.ca.ca.cert],
        sequence=sequence,
        previous_archive_sha256=previous,
        created_at=T0 + dt.timedelta(hours=1, minutes=sequence),
        archive_id=f"mlog-{sequence}",
    )
    return out.getvalue()


def make_archives(world: World, log: Log) -> list[bytes]:
    blobs: list[bytes] = []
    previous: bytes | None = None
    for sequence, (first, last) in enumerate(RANGES, start=1):
        blob = archive_range(world, log, first, last, sequence, previous)
        previous = read_archive(blob).sha256
        blobs.append(blob)
    return blobs


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    return make_world(tmp_path_factory.mktemp("world"))


@pytest.fixture(scope="module")
def clean(world: World) -> Log:
    return build_log(world)


@pytest.fixture(scope="module")
def archives(world: World, clean: Log) -> list[bytes]:
    return make_archives(world, clean)


def verify(
    world: World, blobs: list[bytes], live: LogEvidence | None = None, **options: object
) -> VerificationReport:
    opts = VerifyOptions(**{"as_of": AS_OF, **options})  # type: ignore[arg-type]
    return verify_files(blobs, world.anchors, live=live, options=opts)


def entries(blob: bytes) -> list[tuple[str, bytes]]:
    with zipfile.ZipFile(io.BytesIO(blob)) as zf:
        return [(i.filename, zf.read(i)) for i in zf.infolist()]


def rezip(
    blob: bytes, mutate: Callable[[list[tuple[str, bytes]]], list[tuple[str, bytes]]]
) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in mutate(entries(blob)):
            info = zipfile.ZipInfo(name, date_time=(2026, 1, 1, 0, 0, 0))
            if name != "mimetype":
                info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, data)
    return buf.getvalue()


def replace_entry(blob: bytes, name: str, fn: Callable[[bytes], bytes]) -> bytes:
    return rezip(blob, lambda es: [(n, fn(d) if n == name else d) for n, d in es])


# ----- format ------------------------------------------------------------------------------
def test_archive_layout_and_manifest(world: World, archives: list[bytes]) -> None:
    loaded = read_archive(archives[1], "a2")
    names = [n for n, _ in entries(archives[1])]
    assert names[:5] == [
        "mimetype",
        "manifest.json",
        "manifest.sig",
        "records.jsonl",
        "batches.json",
    ]
    assert all(n.startswith(("certs/", "ocsp/")) for n in names[5:])
    with zipfile.ZipFile(io.BytesIO(archives[1])) as zf:
        assert zf.infolist()[0].compress_type == zipfile.ZIP_STORED
        assert zf.read("mimetype") == MIMETYPE
    m = loaded.manifest
    assert (m.kind, m.sequence, m.chain_id, m.first_seq, m.last_seq, m.record_count) == (
        ArchiveKind.ARCHIVE,
        2,
        CHAIN,
        17,
        24,
        8,
    )
    assert m.previous_archive_sha256 == read_archive(archives[0]).sha256
    assert loaded.sha256 == hashlib.sha256(loaded.manifest_bytes).digest()
    for name, content in loaded.files.items():
        if name not in ("manifest.json", "manifest.sig"):
            assert m.files[name] == hashlib.sha256(content).digest()
    assert [r.seq for r in loaded.evidence.records] == list(range(17, 25))
    assert {p.seq for p in loaded.evidence.proofs} == set(range(17, 25))
    assert len(loaded.evidence.ocsp_responses) == 2
    assert archive_filename(m, loaded.sha256).startswith("mlog-")
    doc = json.loads(loaded.manifest_bytes)
    assert doc["format"] == "secnode-log-archive/1"


def test_records_round_trip_with_bodies(world: World, clean: Log, archives: list[bytes]) -> None:
    loaded = read_archive(archives[0])
    assert loaded.evidence.records == clean.records[:16]
    assert [r.body for r in loaded.evidence.records] == [r.body for r in clean.records[:16]]
    assert loaded.evidence.batches == clean.batches[:2]


def test_archive_chain_verifies(world: World, archives: list[bytes]) -> None:
    report = verify(world, archives)
    assert report.ok, report.summary()
    assert report.checked["archives"] == 4 and report.checked["manifests"] == 4
    assert report.checked["records"] == 40
    # order of the files on the command line does not matter
    assert verify(world, list(reversed(archives))).ok


def test_archives_plus_live_database(world: World, clean: Log, archives: list[bytes]) -> None:
    """Rows 25..40 are still in the database (retention not yet passed) beside the archives."""
    live = clean.copy()
    live.records = [r.without_body() for r in clean.records[24:]]
    report = verify(world, archives[:2], live=live.evidence(world))
    assert report.ok, report.summary()
    assert report.chains[CHAIN] == {"first_seq": 1, "last_seq": 40, "records": 40}
    live.records = [r for r in live.records if r.seq != 30]
    report = verify(world, archives[:2], live=live.evidence(world))
    assert report.first_failure is not None
    assert (report.first_failure.kind, report.first_failure.seq) == (FailureKind.MISSING, 30)


def test_database_row_changed_after_archiving(
    world: World, clean: Log, archives: list[bytes]
) -> None:
    live = clean.copy()
    live.records = list(clean.records[16:])
    live.records[2] = dataclasses.replace(live.records[2], user_id="JP000000000")
    report = verify(world, archives[:1], live=live.evidence(world))
    assert report.first_failure is not None
    assert (report.first_failure.kind, report.first_failure.seq) == (FailureKind.ALTERED, 19)


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl not installed")
def test_openssl_accepts_manifest_signature_and_token(
    tmp_path: Path, world: World, archives: list[bytes]
) -> None:
    loaded = read_archive(archives[0])
    (tmp_path / "manifest.json").write_bytes(loaded.manifest_bytes)
    (tmp_path / "manifest.sig").write_bytes(loaded.signature)
    ca = tmp_path / "ca.pem"
    ca.write_bytes(world.ca.ca.cert.public_bytes(serialization.Encoding.PEM))
    cms = subprocess.run(
        [
            "openssl",
            "cms",
            "-verify",
            "-binary",
            "-inform",
            "DER",
            "-in",
            str(tmp_path / "manifest.sig"),
            "-content",
            str(tmp_path / "manifest.json"),
            "-CAfile",
            str(ca),
            "-purpose",
            "any",
            "-out",
            "/dev/null",
        ],
        capture_output=True,
        text=True,
    )
    assert cms.returncode == 0, cms.stderr
    batch = loaded.evidence.batches[0]
    (tmp_path / "token.tst").write_bytes(batch.token)
    tsa = tmp_path / "tsa.pem"
    tsa.write_bytes(world.tsa_cert.public_bytes(serialization.Encoding.PEM))
    ts = subprocess.run(
        [
            "openssl",
            "ts",
            "-verify",
            "-digest",
            batch.root.hex(),
            "-in",
            str(tmp_path / "token.tst"),
            "-token_in",
            "-CAfile",
            str(ca),
            "-untrusted",
            str(tsa),
        ],
        capture_output=True,
        text=True,
    )
    assert ts.returncode == 0 and "Verification: OK" in ts.stdout, ts.stdout + ts.stderr
    other = subprocess.run(
        [
            "openssl",
            "ts",
            "-verify",
            "-digest",
            hashlib.sha256(b"x").hexdigest(),
            "-in",
            str(tmp_path / "token.tst"),
            "-token_in",
            "-CAfile",
            str(ca),
            "-untrusted",
            str(tsa),
        ],
        capture_output=True,
        text=True,
    )
    assert other.returncode != 0


# ----- the archive chain -------------------------------------------------------------------
def test_archive_removed_from_the_middle(world: World, archives: list[bytes]) -> None:
    report = verify(world, [archives[0], archives[1], archives[3]])
    first = report.first_failure
    assert first is not None and first.kind is FailureKind.ARCHIVE_CHAIN
    assert first.seq == 33 and "archive(s) 3..3 missing" in first.message
    assert report.kinds() == [FailureKind.ARCHIVE_CHAIN]  # the record gap is not re-reported


def test_first_archive_missing(world: World, archives: list[bytes]) -> None:
    report = verify(world, archives[1:])
    assert report.first_failure is not None
    assert report.first_failure.kind is FailureKind.ARCHIVE_CHAIN
    assert verify(world, archives[1:], complete=False).ok


def test_middle_archive_replaced_by_resigned_forgery(
    world: World, clean: Log, archives: list[bytes]
) -> None:
    """An insider with the sign key rewrites archive 2 (a body changed): the chain breaks."""
    records = [r for r in clean.records if 17 <= r.seq <= 24]
    records[3] = dataclasses.replace(records[3], body=b"rewritten")
    forged = archive_range(
        world, clean, 17, 24, 2, read_archive(archives[0]).sha256, records=records
    )
    report = verify(world, [archives[0], forged, archives[2], archives[3]])
    kinds = report.kinds()
    assert FailureKind.ARCHIVE_CHAIN in kinds
    assert report.first_failure is not None
    assert (report.first_failure.kind, report.first_failure.seq) == (FailureKind.ALTERED, 20)


def test_duplicate_sequence_numbers(world: World, clean: Log, archives: list[bytes]) -> None:
    again = archive_range(world, clean, 17, 24, 2, read_archive(archives[0]).sha256)
    report = verify(world, [archives[0], archives[1], again, archives[2], archives[3]])
    assert FailureKind.ARCHIVE_CHAIN in report.kinds()


# ----- tampering inside one archive --------------------------------------------------------
def _flip_body_byte(records_jsonl: bytes, seq: int) -> bytes:
    lines = records_jsonl.split(b"\n")
    out = []
    for line in lines:
        if line:
            obj = json.loads(line)
            if obj["seq"] == seq:
                record = LogRecord.from_json(obj)
                body = bytearray(record.body or b"")
                body[0] ^= 0x20
                line = dataclasses.replace(record, body=bytes(body)).to_jsonl()
        out.append(line)
    return b"\n".join(out)


def test_body_byte_changed_in_archive(world: World, archives: list[bytes]) -> None:
    tampered = replace_entry(archives[1], "records.jsonl", lambda d: _flip_body_byte(d, 19))
    report = verify(world, [archives[0], tampered, *archives[2:]])
    first = report.first_failure
    assert first is not None and (first.kind, first.seq) == (FailureKind.ALTERED, 19)
    assert first.record_id == read_archive(archives[1]).evidence.records[2].id
    # the manifest's file hash also disagrees; it is listed after the precise finding
    assert report.kinds() == [FailureKind.ALTERED, FailureKind.MANIFEST]


def test_records_swapped_in_resigned_archive(
    world: World, clean: Log, archives: list[bytes]
) -> None:
    records = [r for r in clean.records if 17 <= r.seq <= 24]
    records[1], records[2] = records[2], records[1]
    with pytest.raises(ArchiveFormatError, match="contiguous"):
        archive_range(world, clean, 17, 24, 2, read_archive(archives[0]).sha256, records=records)
    # the writer refuses, so the forger edits the zip and re-signs the manifest by hand
    loaded = read_archive(archives[1])
    swapped = b"".join(r.to_jsonl() + b"\n" for r in records)
    resigned = _resign(world, loaded, {"records.jsonl": swapped})
    report = verify(world, [archives[0], resigned, *archives[2:]])
    assert report.first_failure is not None
    assert (report.first_failure.kind, report.first_failure.seq) == (FailureKind.REORDERED, 19)


def _resign(
    world: World,
    loaded: LoadedArchive,
    changes: dict[str, bytes],
    manifest_edit: Callable[[dict[str, object]], None] | None = None,
    signer: object | None = None,
) -> bytes:
    from certs.cms import sign_detached
    from secnode.core.jsonfmt import canonical_json

    files = {**loaded.files, **changes}
    manifest = json.loads(loaded.manifest_bytes)
    for name, data in changes.items():
        manifest["files"][name] = hashlib.sha256(data).hexdigest()
    if manifest_edit:
        manifest_edit(manifest)
    manifest_bytes = canonical_json(manifest)
    who = signer or world.node
    files["manifest.json"] = manifest_bytes
    files["manifest.sig"] = sign_detached(manifest_bytes, who.cert, keys.SoftwareSigner(who.key))  # type: ignore[attr-defined]
    order = ["mimetype", "manifest.json", "manifest.sig"]
    return _zip_entries(
        [(n, files[n]) for n in order] + [(n, d) for n, d in files.items() if n not in order]
    )


def _zip_entries(items: list[tuple[str, bytes]]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in items:
            info = zipfile.ZipInfo(name, date_time=(2026, 1, 1, 0, 0, 0))
            if name != "mimetype":
                info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, data)
    return buf.getvalue()


def test_manifest_edited_without_signing_key(world: World, archives: list[bytes]) -> None:
    def later(data: bytes) -> bytes:
        doc = json.loads(data)
        doc["created_at"] = "2030-01-01T00:00:00.000000Z"
        return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()

    tampered = replace_entry(archives[1], "manifest.json", later)
    report = verify(world, [archives[0], tampered, *archives[2:]])
    assert report.first_failure is not None
    assert report.first_failure.kind is FailureKind.MANIFEST
    assert "signature" in report.first_failure.message


def test_manifest_signed_by_another_member(world: World, archives: list[bytes]) -> None:
    resigned = _resign(
        world,
        read_archive(archives[0]),
        {},
        signer=world.peer,
        manifest_edit=lambda m: m.update(
            signer_cert_sha256=hashlib.sha256(
                world.peer.cert.public_bytes(serialization.Encoding.DER)
            ).hexdigest()
        ),
    )
    report = verify(world, [resigned, *archives[1:]])
    kinds = report.kinds()
    assert kinds[0] is FailureKind.MANIFEST
    assert any("does not belong to node" in f.message for f in report.failures)


def test_manifest_signed_by_untrusted_key(world: World, archives: list[bytes]) -> None:
    resigned = _resign(world, read_archive(archives[0]), {}, signer=world.stranger)
    report = verify(world, [resigned, *archives[1:]])
    assert report.first_failure is not None
    assert report.first_failure.kind is FailureKind.MANIFEST


def test_unlisted_and_missing_files(world: World, archives: list[bytes]) -> None:
    loaded = read_archive(archives[0])
    extra_cert = world.stranger.cert.public_bytes(serialization.Encoding.DER)
    name = f"certs/{hashlib.sha256(extra_cert).hexdigest()}.der"
    added = rezip(archives[0], lambda es: [*es, (name, extra_cert)])
    report = verify(world, [added, *archives[1:]])
    assert report.kinds() == [FailureKind.MANIFEST] and "not listed" in report.failures[0].message
    ocsp_name = next(n for n in loaded.files if n.startswith("ocsp/"))
    removed = rezip(archives[0], lambda es: [(n, d) for n, d in es if n != ocsp_name])
    report = verify(world, [removed, *archives[1:]])
    assert FailureKind.MANIFEST in report.kinds()


# ----- strict reading ----------------------------------------------------------------------
@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda es: [*es, ("../evil.sh", b"x")], "unexpected entry"),
        (lambda es: [*es, ("/etc/passwd", b"x")], "unexpected entry"),
        (lambda es: [*es, ("certs/../../x.der", b"x")], "unexpected entry"),
        (lambda es: [*es, ("certs\\" + "a" * 64 + ".der", b"x")], "unexpected entry"),
        (lambda es: [*es, ("certs/", b"")], "unexpected entry"),
        (lambda es: [*es, ("notes.txt", b"x")], "unexpected entry"),
        pytest.param(
            lambda es: [*es, es[3]],
            "duplicate entry",
            marks=pytest.mark.filterwarnings("ignore:Duplicate name"),
        ),
        (lambda es: [e for e in es if e[0] != "manifest.sig"], "missing manifest.sig"),
        (lambda es: [es[1], es[0], *es[2:]], "first entry"),
        (lambda es: [("mimetype", b"application/zip"), *es[1:]], "mimetype"),
        (
            lambda es: [
                *es[:3],
                ("records.jsonl", es[3][1].replace(b'{"body"', b'{ "body"', 1)),
                *es[4:],
            ],
            "not canonical",
        ),
        (lambda es: [*es[:3], ("records.jsonl", es[3][1].rstrip(b"\n")), *es[4:]], "newline"),
        (lambda es: [*es[:4], ("batches.json", b"[]"), *es[5:]], "JSON object"),
        (lambda es: [*es[:1], ("manifest.json", b'{"format":"other"}'), *es[2:]], "manifest"),
    ],
)
def test_reader_refuses_malformed_containers(
    archives: list[bytes],
    mutate: Callable[[list[tuple[str, bytes]]], list[tuple[str, bytes]]],
    message: str,
) -> None:
    with pytest.raises(ArchiveFormatError, match=message):
        read_archive(rezip(archives[0], mutate))


def test_reader_limits(archives: list[bytes], tmp_path: Path) -> None:
    with pytest.raises(ArchiveFormatError, match="larger than"):
        read_archive(archives[0], limits=ReadLimits(max_entry_bytes=1000))
    with pytest.raises(ArchiveFormatError, match="entries exceeds"):
        read_archive(archives[0], limits=ReadLimits(max_entries=3))
    with pytest.raises(ArchiveFormatError, match="total limit"):
        read_archive(archives[0], limits=ReadLimits(max_total_bytes=5000))
    # a zip bomb: a small file that inflates past the limit
    bomb = rezip(archives[0], lambda es: [*es[:3], ("records.jsonl", b"\n" * 5_000_000), *es[4:]])
    assert len(bomb) < 100_000
    with pytest.raises(ArchiveFormatError, match="larger than"):
        read_archive(bomb, limits=ReadLimits(max_entry_bytes=1_000_000))
    with pytest.raises(ArchiveFormatError, match="not a zip"):
        read_archive(b"PK\x03\x04 garbage")
    path = tmp_path / "a.zip"
    path.write_bytes(archives[0])
    assert read_archive(path).label == str(path)


def test_unreadable_file_is_reported_not_raised(world: World, archives: list[bytes]) -> None:
    report = verify(world, [archives[0], b"not a zip", *archives[1:]])
    assert report.kinds() == [FailureKind.MANIFEST]
    assert report.failures[0].archive == "<archive 2>"


def test_writer_refuses_what_verify_would_reject(world: World, clean: Log) -> None:
    with pytest.raises(ArchiveFormatError, match="previous_archive_sha256"):
        archive_range(world, clean, 17, 24, 2, None)
    with pytest.raises(ArchiveFormatError, match="previous_archive_sha256"):
        archive_range(world, clean, 1, 16, 1, bytes(32))
    unstamped = build_log(world, n=10, batch_size=8, stamped=8)
    with pytest.raises(ArchiveFormatError, match="not stamped"):
        archive_range(world, unstamped, 1, 10, 1, None)
    with pytest.raises(ArchiveFormatError, match="no records"):
        archive_range(world, clean, 100, 120, 1, None)


# ----- evidence bundles --------------------------------------------------------------------
def make_bundle(
    world: World,
    log: Log,
    seqs: tuple[int, ...] = (9, 10),
    records: list[LogRecord] | None = None,
    with_proofs: bool = True,
) -> bytes:
    chosen = records if records is not None else [r for r in log.records if r.seq in seqs]
    evidence = select_evidence(
        chosen,
        log.batches,
        log.proofs if with_proofs else [],
        world.certificates(),
        world.ocsp.values(),
    )
    out = io.BytesIO()
    write_archive(
        evidence,
        out,
        node_id=NODE_ID,
        signer_cert=world.node.cert,
        signer=keys.SoftwareSigner(world.node.key),
        extra_certs=[world.ca.ca.cert],
        kind=ArchiveKind.BUNDLE,
        created_at=T0 + dt.timedelta(hours=2),
        description="message msg-5: request and response",
    )
    return out.getvalue()


def test_evidence_bundle_verifies_alone(world: World, clean: Log) -> None:
    bundle = make_bundle(world, clean)
    loaded = read_archive(bundle)
    assert loaded.manifest.kind is ArchiveKind.BUNDLE
    assert loaded.manifest.sequence is None and loaded.manifest.first_seq is None
    assert {r.message_id for r in loaded.evidence.records} == {"msg-5"}
    assert [b.batch_id for b in loaded.evidence.batches] == [f"{CHAIN}@9-16"]
    report = verify(world, [bundle])
    assert report.ok, report.summary()
    assert report.checked["signatures"] == 2 and report.checked["proofs"] == 2
    # a bundle of non-adjacent records: gaps around them are not errors
    assert verify(world, [make_bundle(world, clean, (3, 9, 27))]).ok


def test_evidence_bundle_tampering(world: World, clean: Log) -> None:
    records = [r for r in clean.records if r.seq in (9, 10)]
    changed = dataclasses.replace(records[1], body=b"<forged/>")
    report = verify(world, [make_bundle(world, clean, records=[records[0], changed])])
    assert report.first_failure is not None
    assert (report.first_failure.kind, report.first_failure.seq) == (FailureKind.ALTERED, 10)
    resealed = dataclasses.replace(records[1], user_id="someone")
    resealed = dataclasses.replace(resealed, record_hash=resealed.computed_hash())
    report = verify(world, [make_bundle(world, clean, records=[records[0], resealed])])
    assert report.first_failure is not None
    assert report.first_failure.kind is FailureKind.ALTERED  # link to seq 9 breaks
    report = verify(
        world, [make_bundle(world, clean, with_proofs=False)], as_of=T0 + dt.timedelta(days=1)
    )
    assert report.kinds() == [FailureKind.UNSTAMPED, FailureKind.UNSTAMPED]


def test_bundle_verifies_beside_archives(world: World, clean: Log, archives: list[bytes]) -> None:
    report = verify(world, [*archives, make_bundle(world, clean)])
    assert report.ok, report.summary()


def test_verify_log_accepts_loaded_archives(world: World, archives: list[bytes]) -> None:
    loaded = [read_archive(b) for b in archives]
    report = verify_log(world.anchors, archives=loaded, options=VerifyOptions(as_of=AS_OF))
    assert report.ok


# ----- large bodies: body files streamed in, body entries hashed on the way out ------------------
MIB = 1024 * 1024
BIG_CHAIN = f"{NODE_ID}#big"


def write_body(path: Path, size: int) -> bytes:
    """A body file of ``size`` random bytes, written a MiB at a time; its SHA-256."""
    digest = hashlib.sha256()
    with open(path, "wb") as fh:
        for start in range(0, size, MIB):
            piece = os.urandom(min(MIB, size - start))
            digest.update(piece)
            fh.write(piece)
    return digest.digest()


def body_file_log(world: World, directory: Path, count: int, size: int) -> Log:
    """``count`` records whose bodies are body files of ``size`` bytes (as the node's log
    keeps a spooled body: digest and size in the record, the bytes in a file), then one
    with a small body in the record; all stamped."""
    records: list[LogRecord] = []
    for seq in range(1, count + 2):
        prev = records[-1].record_hash if records else genesis_hash(BIG_CHAIN)
        record = make_record(world, seq, prev, seq * 2, chain=BIG_CHAIN)  # a signed message
        if seq <= count:
            path = directory / f"body-{seq}"
            digest = write_body(path, size)
            record = dataclasses.replace(
                record, body_sha256=digest, body_size=size, body=None, body_file=str(path)
            )
            record = dataclasses.replace(record, record_hash=record.computed_hash())
        records.append(record)
    log = Log(records)
    prepared = prepare_batch(records)
    log.batches.append(prepared.stamped(world.stamp(prepared.root), "Test TSA", "http://t/"))
    log.proofs.extend(prepared.proofs())
    return log


def write_to(path: Path, world: World, log: Log, records: list[LogRecord] | None = None) -> None:
    """``log`` (or ``records`` of it) as archive 1 at ``path``, or as a bundle of ``records``."""
    evidence = select_evidence(
        records or log.records, log.batches, log.proofs, world.certificates(), world.ocsp.values()
    )
    with open(path, "wb") as fh:
        write_archive(
            evidence,
            fh,
            node_id=NODE_ID,
            signer_cert=world.node.cert,
            signer=keys.SoftwareSigner(world.node.key),
            extra_certs=[world.ca.ca.cert],
            kind=ArchiveKind.ARCHIVE if records is None else ArchiveKind.BUNDLE,
            sequence=1 if records is None else None,
            created_at=T0 + dt.timedelta(hours=1),
        )


def test_large_body_files_archive_and_verify_in_bounded_memory(
    world: World, tmp_path: Path
) -> None:
    """Three 20 MiB body files: writing the archive, reading it, verifying it and bundling
    its records again (their bodies streamed from the archive's entries) stay within a few
    MiB of Python allocations (the whole-in-memory build peaked above 100 MiB)."""
    log = body_file_log(world, tmp_path, 3, 20 * MIB)
    archive, bundle = tmp_path / "mlog.zip", tmp_path / "evidence.zip"
    tracemalloc.start()
    try:
        write_to(archive, world, log)
        loaded = read_archive(archive)
        report = verify_log(world.anchors, archives=[loaded], options=VerifyOptions(as_of=AS_OF))
        write_to(bundle, world, log, records=loaded.evidence.records[1:3])
        bundle_report = verify(world, [bundle])  # type: ignore[list-item]
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert report.ok, report.summary()
    assert report.checked["bodies"] == 4 and report.checked["records"] == 4
    assert bundle_report.ok and bundle_report.checked["bodies"] == 2, bundle_report.summary()
    assert peak < 16 * MIB, f"peak Python allocations {peak / MIB:.1f} MiB"
    with zipfile.ZipFile(archive) as zf:
        infos = zf.infolist()
        assert (infos[0].filename, infos[0].compress_type) == ("mimetype", zipfile.ZIP_STORED)
        bodies = [i for i in infos if i.filename.startswith("bodies/")]
        assert [i.filename for i in bodies] == [
            f"bodies/{r.body_sha256.hex()}" for r in log.records[:3]
        ]
        assert all(i.file_size == 20 * MIB for i in bodies)
        manifest = json.loads(zf.read("manifest.json"))
        for record in log.records[:3]:
            name = f"bodies/{record.body_sha256.hex()}"
            assert manifest["files"][name] == record.body_sha256.hex()
            with zf.open(name) as fh, open(str(record.body_file), "rb") as original:
                assert hashlib.sha256(fh.read()).digest() == record.body_sha256
                assert hashlib.sha256(original.read()).digest() == record.body_sha256
    records = [r for r in loaded.evidence.records if r.body_entry is not None]
    assert [r.seq for r in records] == [1, 2, 3] and all(r.body is None for r in records)
    with records[0].open_body() as fh:
        assert hashlib.sha256(fh.read()).digest() == records[0].body_sha256


def test_a_changed_body_entry_is_reported_by_verify(world: World, tmp_path: Path) -> None:
    """A body entry altered (same size, zip rewritten with a valid CRC) or removed inside a
    written archive: verify names the entry against the manifest and the record whose body
    it is."""
    log = body_file_log(world, tmp_path, 2, 600 * 1024)
    path = tmp_path / "mlog.zip"
    write_to(path, world, log)
    victim = log.records[1]
    name = f"bodies/{victim.body_sha256.hex()}"

    def flip(data: bytes) -> bytes:
        return data[:1000] + bytes([data[1000] ^ 1]) + data[1001:]

    report = verify(world, [replace_entry(path.read_bytes(), name, flip)])
    assert set(report.kinds()) == {FailureKind.MANIFEST, FailureKind.ALTERED}, report.summary()
    (manifest,) = [f for f in report.failures if f.kind is FailureKind.MANIFEST]
    assert f"SHA-256 of {name} differs from the manifest" in manifest.message
    (altered,) = [f for f in report.failures if f.kind is FailureKind.ALTERED]
    assert altered.record_id == victim.id and altered.seq == 2
    assert f"archive entry {name} does not match body_sha256" in altered.message
    removed = rezip(path.read_bytes(), lambda es: [(n, d) for n, d in es if n != name])
    report = verify(world, [removed])
    messages = {f.kind: f.message for f in report.failures}
    assert f"{name} is listed in the manifest but absent" in messages[FailureKind.MANIFEST]
    assert "is missing" in messages[FailureKind.ALTERED], report.summary()
    assert [f.record_id for f in report.failures if f.kind is FailureKind.ALTERED] == [victim.id]


def test_writer_refuses_a_changed_or_missing_body_file(world: World, tmp_path: Path) -> None:
    """The body file is hashed while it streams into the archive: one changed after its
    record was sealed (same size) or gone is refused, never archived and then purged."""
    log = body_file_log(world, tmp_path, 2, 600 * 1024)
    target = Path(str(log.records[1].body_file))
    with open(target, "r+b") as fh:
        fh.seek(300_000)
        byte = fh.read(1)
        fh.seek(300_000)
        fh.write(bytes([byte[0] ^ 1]))
    with pytest.raises(ArchiveFormatError, match=r"#2 .*does not match body_sha256"):
        write_to(tmp_path / "a.zip", world, log)
    target.unlink()
    with pytest.raises(ArchiveFormatError, match=r"#2 .*body-2 is missing \(.*\); not archived"):
        write_to(tmp_path / "b.zip", world, log)
