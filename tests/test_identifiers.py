import pytest

from secnode.core.identifiers import (
    IdentifierError,
    MemberId,
    NodeId,
    ServiceId,
    SubsystemId,
    parse_client,
)


@pytest.mark.parametrize(
    ("cls", "text"),
    [
        (MemberId, "JP/GOV/072028"),
        (SubsystemId, "JP/GOV/072028/residents"),
        (ServiceId, "JP/GOV/072028/residents/getAddress"),
        (ServiceId, "JP/GOV/072028/residents/getAddress/v1"),
        (NodeId, "JP/GOV/072028/ss1"),
        (MemberId, "JP-test/COM/1234-5(x)+y,z=q?'."),
    ],
)
def test_round_trip(cls: type, text: str) -> None:
    parsed = cls.parse(text)
    assert str(parsed) == text
    assert cls.parse(str(parsed)) == parsed
    assert hash(cls.parse(text)) == hash(parsed)


def test_equality_and_relations() -> None:
    svc = ServiceId.parse("JP/GOV/072028/residents/getAddress/v1")
    assert svc.member == MemberId("JP", "GOV", "072028")
    assert svc.subsystem_id == SubsystemId.parse("JP/GOV/072028/residents")
    assert ServiceId.parse("JP/GOV/072028/residents/getAddress").version is None
    assert svc != ServiceId.parse("JP/GOV/072028/residents/getAddress")
    assert len({MemberId.parse("JP/GOV/1"), MemberId.parse("JP/GOV/1")}) == 1
    assert NodeId.parse("JP/GOV/072028/ss1").member == MemberId.parse("JP/GOV/072028")


@pytest.mark.parametrize(
    ("cls", "text", "message"),
    [
        (MemberId, "", "empty"),
        (MemberId, "JP//072028", "CLASS is empty"),
        (MemberId, "JP/GOV/", "CODE is empty"),
        (MemberId, "/GOV/1", "INSTANCE is empty"),
        (MemberId, "JP/GOV", "has 2 part(s)"),
        (MemberId, "JP/GOV/1/2", "has 4 part(s)"),
        (SubsystemId, "JP/GOV/1", "has 3 part(s)"),
        (ServiceId, "JP/GOV/1/sub", "has 4 part(s)"),
        (ServiceId, "JP/GOV/1/sub/svc/v1/extra", "has 7 part(s)"),
        (NodeId, "JP/GOV/1", "has 3 part(s)"),
        (MemberId, "JP/GOV/07;2028", "forbidden"),
        (MemberId, "JP/GOV/07:2028", "forbidden"),
        (MemberId, "JP/GOV/07\\2028", "forbidden"),
        (MemberId, "JP/GOV/07%2028", "forbidden"),
        (MemberId, "JP/GOV/07 2028", "not allowed"),
        (MemberId, "JP/GOV/会津", "not allowed"),
        (SubsystemId, "JP/GOV/1/a\nb", "not allowed"),
        (MemberId, "JP/GOV/" + "x" * 256, "longer than 255"),
    ],
)
def test_malformed(cls: type, text: str, message: str) -> None:
    with pytest.raises(IdentifierError, match=None) as info:
        cls.parse(text)
    assert message in str(info.value)


def test_constructor_validates_too() -> None:
    with pytest.raises(IdentifierError, match="forbidden"):
        MemberId("JP", "GOV", "a/b")


def test_parse_client() -> None:
    assert parse_client("JP/GOV/1") == MemberId("JP", "GOV", "1")
    assert parse_client("JP/GOV/1/sub") == SubsystemId("JP", "GOV", "1", "sub")
    with pytest.raises(IdentifierError, match="expected"):
        parse_client("JP/GOV/1/sub/x")
