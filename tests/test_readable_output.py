"""Issue 15 (8): what the CLIs print is measured and named the way an operator reads it.

Tables align by displayed width (a Japanese character is two columns wide, so ``len()``
misaligned them); certificate subjects say ``serialNumber=`` instead of ``2.5.4.5=``. Both
through the real ``certs ca list`` command on a real CA.
"""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

import wcwidth
from cryptography import x509
from cryptography.x509.oid import NameOID

from certs.cliutil import cell_width
from certs.names import display_name
from tests.conftest import TestCA
from tests.support.cli import invoke


def display_column(line: str, pattern: str) -> int:
    """The terminal column where ``pattern`` first matches in ``line``."""
    match = re.search(pattern, line)
    assert match, (pattern, line)
    return int(wcwidth.wcswidth(line[: match.start()]))


def test_a_table_with_japanese_subjects_stays_aligned(test_ca: TestCA) -> None:
    test_ca.issue("sign", "serialNumber=JP/GOV/072028, O=会津若松市, C=JP")
    test_ca.issue("auth", "CN=JP/GOV/372013/ss1, O=Takamatsu City, C=JP")
    out = invoke("certs", "ca", "list", test_ca.dir).stdout.splitlines()
    header, rows = out[0], out[1:]
    assert len(rows) == 2 and "会津若松市" in rows[0]
    # NOT_AFTER starts at the same terminal column on every line, whatever the subject's
    # width (with len() the Japanese row's date came five columns late)
    date = r"\d{4}-\d\d-\d\d[T ]"
    column = display_column(header, "NOT_AFTER")
    assert [display_column(row, date) for row in rows] == [column, column]


def test_subjects_name_serial_number_also_for_rows_stored_before(test_ca: TestCA) -> None:
    issued = test_ca.issue("sign", "serialNumber=JP/GOV/072028, O=Aizu-Wakamatsu City, C=JP")
    # a row written by an older version, with the dotted OID
    with sqlite3.connect(test_ca.dir / "ca.db") as db:
        db.execute("UPDATE certificates SET subject = ?", (issued.cert.subject.rfc4514_string(),))
    assert "2.5.4.5=" in issued.cert.subject.rfc4514_string()
    listed = invoke("certs", "ca", "list", test_ca.dir).stdout
    assert "serialNumber=JP/GOV/072028" in listed and "2.5.4.5" not in listed
    shown = invoke("certs", "ca", "list", test_ca.dir, "--json").json()
    assert shown[0]["subject"] == "C=JP,O=Aizu-Wakamatsu City,serialNumber=JP/GOV/072028"


def test_display_name_names_other_attributes_and_round_trips(tmp_path: Path) -> None:
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "JP"),
            x509.NameAttribute(NameOID.ORGANIZATION_IDENTIFIER, "NTRJP-1234567890123"),
            x509.NameAttribute(NameOID.GIVEN_NAME, "Taro"),
            x509.NameAttribute(NameOID.SERIAL_NUMBER, "JP/GOV/072028"),
        ]
    )
    text = display_name(name)
    assert text == (
        "serialNumber=JP/GOV/072028,givenName=Taro,organizationIdentifier=NTRJP-1234567890123,C=JP"
    )
    assert "2.5.4." not in text


def test_cell_width_counts_wide_and_combining_characters() -> None:
    assert cell_width("会津") == 4
    assert cell_width("e\u0301") == 1  # e + combining acute accent
    assert cell_width("abc") == 3
    assert cell_width("a\x1bb") == 3  # a control character is still one printed column
