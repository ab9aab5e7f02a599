"""Log witnesses (pure): the position format, the signed request witness, the record field.

The wire and reconcile behaviour is tested on real nodes in
``tests/test_messagelog_reconcile.py`` and ``tests/test_exchange_e2e.py``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
from pathlib import Path

import pytest
from sqlalchemy import inspect, text

from secnode.core.jsonfmt import canonical_json
from secnode.core.messagelog import LogRecord, genesis_hash
from secnode.core.messagelog.record import RecordError, canonical_bytes
from secnode.core.witness import (
    LogPosition,
    RequestWitness,
    WitnessError,
    request_witness_digest,
    witnessed_position,
)
from secnode.messagelog import tables
from secnode.messagelog.convert import record_of, row_of
from secnode.messagelog.database import LEGACY_BASELINE, LOG_SCHEMA
from secnode.store import db

CHAIN = "JP/GOV/072028/ss1#4f1c2a9e"
HASH = hashlib.sha256(b"request_in").digest()


def record(witness: str | None = None) -> LogRecord:
    return LogRecord.create(
        chain_id=CHAIN,
        seq=3,
        prev_hash=genesis_hash(CHAIN),
        time=dt.datetime(2026, 4, 1, 9, 30, tzinfo=dt.UTC),
        direction="response_in",
        node_id="JP/GOV/072028/ss1",
        headers_sha256=bytes(32),
        body=b"{}",
        record_id="r3",
        witness=witness,
    )


def test_position_round_trips_in_its_compact_form() -> None:
    position = LogPosition(CHAIN, 7, HASH)
    text = position.encode()
    assert text == f'{{"chain_id":"{CHAIN}","record_hash":"{HASH.hex()}","seq":7}}'
    assert LogPosition.decode(text) == position == witnessed_position(text)


@pytest.mark.parametrize(
    ("obj", "why"),
    [
        ({"chain_id": CHAIN, "record_hash": HASH.hex(), "seq": 0}, "seq"),
        ({"chain_id": CHAIN, "record_hash": HASH.hex(), "seq": True}, "seq"),
        ({"chain_id": CHAIN, "record_hash": HASH.hex()[:-2], "seq": 1}, "hex"),
        ({"chain_id": "bad chain id", "record_hash": HASH.hex(), "seq": 1}, "chain_id"),
        ({"chain_id": CHAIN, "record_hash": HASH.hex(), "seq": 1, "x": 1}, "exactly"),
        ({"chain_id": CHAIN, "seq": 1}, "exactly"),
    ],
)
def test_malformed_positions_are_refused(obj: dict[str, object], why: str) -> None:
    with pytest.raises(WitnessError, match=why):
        LogPosition.decode(json.dumps(obj))


def test_request_witness_carries_its_signature_and_binds_the_request() -> None:
    position = LogPosition(CHAIN, 2, HASH)
    witness = RequestWitness(position, b"\x30\x06sig")
    parsed = RequestWitness.decode(witness.encode())
    assert parsed == witness and witnessed_position(witness.encode()) == position
    digest = request_witness_digest(bytes(32), position)
    assert digest != request_witness_digest(b"\x01" * 32, position)
    assert digest != request_witness_digest(bytes(32), dataclasses.replace(position, seq=3))
    with pytest.raises(WitnessError, match="signature"):
        RequestWitness.decode(json.dumps({**position.to_json(), "signature": "not base64!"}))
    with pytest.raises(WitnessError, match="exactly"):
        RequestWitness.decode(position.encode())  # the unsigned form is not a request witness


def test_a_record_without_witness_hashes_as_before_the_field_existed() -> None:
    plain = record()
    fields = plain.canonical_fields()
    assert "witness" not in fields
    assert canonical_bytes(plain) == canonical_json(fields)
    stored = plain.to_json()
    assert "witness" not in stored
    assert LogRecord.from_json(stored) == plain


def test_the_witness_is_hashed_and_stored() -> None:
    text = LogPosition(CHAIN, 7, HASH).encode()
    witnessed = record(text)
    fields = witnessed.canonical_fields()
    assert fields["witness"] == text
    assert canonical_bytes(witnessed) == canonical_json(fields)
    assert canonical_bytes(witnessed).endswith(
        b',"version":1,"witness":' + json.dumps(text).encode() + b"}"
    )
    assert witnessed.record_hash != record().record_hash and witnessed.hash_ok()
    back = LogRecord.from_json(witnessed.to_json())
    assert back == witnessed and back.witness == text
    # a changed witness is a changed record
    assert not dataclasses.replace(witnessed, witness=text.replace('"seq":7', '"seq":8')).hash_ok()


def test_a_stored_witness_must_be_text() -> None:
    stored = record().to_json()
    stored["witness"] = 7
    with pytest.raises(RecordError, match="witness"):
        LogRecord.from_json(stored)


def test_a_log_database_from_an_earlier_release_gets_the_column(tmp_path: Path) -> None:
    """A separate SQLite log made before the field existed is upgraded when a node opens it;
    its rows keep their content (and so their hashes)."""
    engine = db.make_engine(f"sqlite:///{tmp_path / 'messagelog.db'}")
    try:
        tables.metadata.create_all(engine)
        old = record()
        with engine.begin() as conn:
            conn.execute(text("ALTER TABLE mlog_records DROP COLUMN witness"))
            row = {k: v for k, v in row_of(old).items() if k != "witness"}
            conn.execute(tables.records.insert().values(**row))
        db.migrate(engine, LOG_SCHEMA, baseline=LEGACY_BASELINE)
        db.migrate(engine, LOG_SCHEMA, baseline=LEGACY_BASELINE)  # idempotent
        columns = {c["name"] for c in inspect(engine).get_columns("mlog_records")}
        assert "witness" in columns
        with engine.connect() as conn:
            (stored,) = conn.execute(tables.records.select()).all()
        assert record_of(stored) == old and record_of(stored).hash_ok()
    finally:
        engine.dispose()
