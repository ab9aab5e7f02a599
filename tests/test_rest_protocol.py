"""X-Road REST (r1) client interface: paths, headers, request hash, metaservices, errors."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import uuid
from collections.abc import Callable, Iterator

import pytest

from secnode.core import errors, faults, rest, rest_headers, rest_path
from secnode.core.errors import XRoadError
from secnode.core.identifiers import MemberId, NodeId, ServiceId, SubsystemId

CLIENT = ("X-Road-Client", "JP/GOV/372013/welfare")


def ids(*values: str) -> Callable[[], str]:
    it: Iterator[str] = iter(values)
    return lambda: next(it)


def parse(
    path: str,
    headers: list[tuple[str, str]] | None = None,
    method: str = "GET",
    query: str | None = None,
) -> rest.RestRequest:
    return rest.parse_rest_request(
        method,
        path,
        query,
        [CLIENT] if headers is None else headers,
        new_id=ids("generated-message-id", "generated-request-id"),
    )


def refused(code: str, *args: object, **kwargs: object) -> XRoadError:
    with pytest.raises(XRoadError, match=rf"^{re.escape(code)}: ") as info:
        parse(*args, **kwargs)  # type: ignore[arg-type]
    assert info.value.code == code, info.value
    assert info.value.http_status == 400
    return info.value


# --------------------------------------------------------------------------
# Path
# --------------------------------------------------------------------------


def test_path_shape_from_pr_rest() -> None:
    # pr-rest §4.1: GET /r1/INSTANCE/CLASS2/MEMBER2/SUBSYSTEM2/BARSERVICE/v1/bar/zyggy?quu=1
    req = parse(
        "/r1/INSTANCE/CLASS2/MEMBER2/SUBSYSTEM2/BARSERVICE/v1/bar/zyggy",
        query="quu=1",
        headers=[("X-Road-Client", "INSTANCE/CLASS1/MEMBER1/SUBSYSTEM1")],
    )
    assert req.service == ServiceId("INSTANCE", "CLASS2", "MEMBER2", "SUBSYSTEM2", "BARSERVICE")
    assert req.client == SubsystemId("INSTANCE", "CLASS1", "MEMBER1", "SUBSYSTEM1")
    assert req.service_path == "/v1/bar/zyggy"
    assert req.provider_target == "/v1/bar/zyggy?quu=1"


def test_no_service_path_and_empty_query() -> None:
    req = parse("/r1/JP/GOV/072028/tax/income")
    assert (req.service_path, req.query, req.provider_target) == ("", None, "")
    assert parse("/r1/JP/GOV/072028/tax/income/", query="").provider_target == "/?"


def test_percent_decoding_per_segment() -> None:
    req = parse("/r1/JP/GOV/%30%37%32028/tax%2Dsys/in%28come%29/a%2Fb%20c")
    assert req.service == ServiceId("JP", "GOV", "072028", "tax-sys", "in(come)")
    # The service path is passed on raw, encoded slashes and all.
    assert req.service_path == "/a%2Fb%20c"


@pytest.mark.parametrize(
    "path",
    [
        "/r1/JP/GOV/072028/tax%2Fevil/income",  # an encoded slash cannot split a part
        "/r1/JP/GOV/07%252028/tax/income",  # double encoding leaves a '%'
        "/r1/JP/GOV/0720 28/tax/income",
        "/r1/JP/GOV/%ff%fe/tax/income",  # not UTF-8
    ],
)
def test_bad_identifier_segments(path: str) -> None:
    with pytest.raises(
        XRoadError, match=r"^Client\.(InvalidServiceIdentifier|BadRequest): "
    ) as info:
        parse(path)
    assert info.value.code in (errors.INVALID_SERVICE_IDENTIFIER, errors.BAD_REQUEST)
    assert info.value.http_status == 400


@pytest.mark.parametrize(
    "path",
    ["/", "/r1/", "/r1/JP/GOV/072028/tax", "/r1/JP/GOV//tax/income", "/r2/JP/GOV/1/s/x", "r1/a"],
)
def test_bad_paths(path: str) -> None:
    refused(errors.BAD_REQUEST, path)


def test_unsupported_version_named() -> None:
    assert "r2" in refused(errors.BAD_REQUEST, "/r2/JP/GOV/072028/tax/income").message


def test_method_checked() -> None:
    refused(errors.INVALID_HTTP_METHOD, "/r1/JP/GOV/072028/tax/income", method="CONNECT")
    assert parse("/r1/JP/GOV/072028/tax/income", method="patch").method == "PATCH"


# --------------------------------------------------------------------------
# Path confinement
# --------------------------------------------------------------------------

SERVICE = "/r1/JP/GOV/072028/tax/income"

#: Service paths that could leave the registered service URL's path, in every encoding.
ESCAPING_PATHS = [
    "/../outside",
    "/..",
    "/.",
    "/./x",
    "/./../../outside",
    "/a/b/../../../outside",
    "/%2e%2e/outside",
    "/%2E%2E/outside",
    "/%2e%2E/outside",
    "/.%2e/outside",
    "/%2e./outside",
    "/%2e/outside",
    "/a/%2e%2e",
    "/..%2foutside",  # encoded slash forms the segment
    "/..%2Foutside",
    "/a%2f..%2f..%2foutside",
    "/%2e%2e%2foutside",
    "/..%5coutside",  # encoded backslash
    "/a%5C..%5Coutside",
    "/a\\..\\outside",  # raw backslash
    "/%252e%252e/outside",  # double encoded
    "/%25252e%25252e/outside",  # triple encoded
    "/..;/outside",  # Tomcat path parameter
    "/..;jsessionid=1/outside",
    "/%2e%2e%3b/outside",
    "/..%00/outside",  # NUL cut
    "/..%20/outside",  # trailing space (Windows)
]
#: Paths that stay under the registered path: passed on unchanged.
CONFINED_PATHS = [
    "",
    "/",
    "/a%2Fb%3Ac%7Ed%3Be",
    "/v1/people%20list",
    "/a..b/c.d/..../...",
    "/.well-known/openapi.json",
    "/a%2e/b%2ec",
    "/x//y",
    "/%E4%BC%9A%E6%B4%A5",  # UTF-8, percent-encoded
    "/%89%EF%92%C3",  # Shift_JIS, percent-encoded: not UTF-8, still fine
    "/a;b=c/d",
]


@pytest.mark.parametrize("service_path", ESCAPING_PATHS)
def test_escaping_service_paths_refused(service_path: str) -> None:
    with pytest.raises(XRoadError, match=r"contains a '\.' or '\.\.' segment") as info:
        rest_path.check_service_path(service_path)
    assert (info.value.code, info.value.http_status) == (errors.BAD_REQUEST, 400)
    assert "'.' or '..' segment" in info.value.message
    err = refused(errors.BAD_REQUEST, SERVICE + service_path)  # and at the client interface
    assert "registered path" in err.message


@pytest.mark.parametrize("service_path", CONFINED_PATHS)
def test_confined_service_paths_pass_unchanged(service_path: str) -> None:
    rest_path.check_service_path(service_path, "q=%2F%3A&x=..%2F..")  # a query is not a path
    req = parse(SERVICE + service_path, query="q=%2F%3A")
    assert req.service_path == service_path
    assert req.message_headers().rest_path == service_path  # what is signed
    assert rest_path.service_target("http://127.0.0.1:9/base/", service_path, "q=%2F%3A") == (
        f"http://127.0.0.1:9/base{service_path}?q=%2F%3A"
    )


@pytest.mark.parametrize(
    ("service_path", "query"),
    [
        ("x", None),  # would extend the base URL's last segment
        ("@evil.example/x", None),  # would become the host of a base URL without a path
        ("/a#b", None),  # a fragment is cut by the HTTP client: sent != signed
        ("/a", "q=1#b"),
        ("/a b", None),
        ("/\u4f1a", None),  # raw non-ASCII
        ("/a", "q=\r\nX: y"),
    ],
)
def test_peer_paths_that_change_the_target_refused(service_path: str, query: str | None) -> None:
    """What a peer node could sign that the client interface would never produce."""
    with pytest.raises(XRoadError, match=r"^Client\.BadRequest: service (path|query) ") as info:
        rest_path.service_target("http://127.0.0.1:9", service_path, query)
    assert info.value.code == errors.BAD_REQUEST


# --------------------------------------------------------------------------
# Headers
# --------------------------------------------------------------------------


def test_missing_client_header() -> None:
    err = refused(errors.BAD_REQUEST, "/r1/JP/GOV/072028/tax/income", headers=[])
    assert "X-Road-Client" in err.message
    refused(errors.BAD_REQUEST, "/r1/JP/GOV/072028/tax/income", headers=[("x-road-client", " ")])


def test_client_header_last_wins_case_insensitive_and_member_allowed() -> None:
    req = parse(
        "/r1/JP/GOV/072028/tax/income",
        headers=[("X-Road-Client", "JP/GOV/1/a"), ("x-road-client", "JP/GOV/372013")],
    )
    assert req.client == MemberId("JP", "GOV", "372013")


@pytest.mark.parametrize("value", ["JP/GOV", "JP/GOV/1/a/b", "JP/GOV/1/a b", "JP/GOV/%2F/x"])
def test_bad_client_header(value: str) -> None:
    refused(
        errors.INVALID_CLIENT_IDENTIFIER,
        "/r1/JP/GOV/072028/tax/income",
        headers=[("X-Road-Client", value)],
    )


def test_client_header_percent_decoded() -> None:
    req = parse("/r1/JP/GOV/072028/tax/income", headers=[("X-Road-Client", "JP/GOV/%33%37/w")])
    assert req.client == SubsystemId("JP", "GOV", "37", "w")


def test_x_road_headers_read() -> None:
    req = parse(
        "/r1/JP/GOV/072028/tax/income",
        headers=[
            CLIENT,
            ("X-Road-Id", "first"),
            ("X-ROAD-ID", " msg-1 "),
            ("X-Road-UserId", "JP1234567890"),
            ("X-Road-Issue", "ticket-7"),
            ("X-Road-Purpose", "child-allowance"),
            ("X-Road-Legal-Basis", "consent"),
            ("X-Road-Data-Subject", "JP-123"),
            ("X-Road-Security-Server", "JP/GOV/072028/ss1"),
        ],
    )
    assert req.message_id == "msg-1" and not req.message_id_generated
    assert (req.user_id, req.issue) == ("JP1234567890", "ticket-7")
    assert (req.purpose, req.legal_basis, req.data_subject) == (
        "child-allowance",
        "consent",
        "JP-123",
    )
    assert req.security_server == NodeId("JP", "GOV", "072028", "ss1")
    assert req.request_id == "generated-message-id"  # first id made: the request id only


def test_message_id_generated_as_uuid4_when_absent() -> None:
    req = rest.parse_rest_request("GET", "/r1/JP/GOV/072028/tax/income", None, [CLIENT])
    assert req.message_id_generated
    assert uuid.UUID(req.message_id).version == 4
    assert uuid.UUID(req.request_id).version == 4
    assert req.message_id != req.request_id


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("X-Road-Id", "x" * 256),
        ("X-Road-UserId", "a\x01b"),
        ("X-Road-Purpose", "x" * 1025),
        ("X-Road-Id", "   "),
        ("X-Road-Security-Server", "JP/GOV/1"),
    ],
)
def test_bad_header_values(name: str, value: str) -> None:
    refused(errors.BAD_REQUEST, "/r1/JP/GOV/072028/tax/income", headers=[CLIENT, (name, value)])


def test_message_headers_for_digest() -> None:
    req = parse(
        "/r1/JP/GOV/072028/tax/income/v1/x",
        method="POST",
        query="a=1",
        headers=[CLIENT, ("Content-Type", "application/json"), ("X-Road-Id", "m")],
    )
    mh = req.message_headers()
    assert mh.protocol == "rest"
    assert (mh.rest_method, mh.rest_path, mh.rest_query) == ("POST", "/v1/x", "a=1")
    assert mh.content_type == "application/json" and mh.message_id == "m"


def test_filter_headers_strips_hop_by_hop_and_node_headers() -> None:
    headers = [
        ("Host", "node:8080"),
        ("Connection", "keep-alive, X-Secret-Hop"),
        ("X-Secret-Hop", "1"),
        ("Keep-Alive", "timeout=5"),
        ("Transfer-Encoding", "chunked"),
        ("TE", "trailers"),
        ("Upgrade", "h2c"),
        ("Proxy-Authorization", "Basic x"),
        ("User-Agent", "curl"),
        ("Content-Length", "3"),
        ("Expect", "100-continue"),
        ("Server", "x"),
        ("X-Road-Request-Hash", "forged"),
        ("X-Road-Error", "forged"),
        ("X-Road-Client", "JP/GOV/1/x"),
        ("Accept", "application/json"),
        ("Authorization", "Bearer t"),
        ("X-Road-Represented-Party", "COM/123"),
        ("Accept", "text/plain"),
    ]
    assert rest_headers.filter_headers(headers) == [
        ("Accept", "application/json"),
        ("Authorization", "Bearer t"),
        ("X-Road-Represented-Party", "COM/123"),
        ("Accept", "text/plain"),
    ]


def test_headers_with_underscores_never_reach_the_provider() -> None:
    """CGI/WSGI/PHP read ``X_Road_Client`` as ``X-Road-Client``: every ``_`` name is dropped,
    from the client's passthrough and again from what a peer node hands the provider side."""
    sent = [
        CLIENT,
        ("X_Road_Client", "JP/GOV/9/forged"),
        ("x_road_id", "forged"),
        ("Transfer_Encoding", "chunked"),
        ("My_Header", "1"),
        ("My-Header", "2"),
    ]
    req = parse("/r1/JP/GOV/072028/tax/income", headers=sent)
    assert req.passthrough_headers() == [("My-Header", "2")]
    to_provider = rest_headers.provider_headers(req.message_headers(), sent, req.request_id)
    assert not [n for n, _ in to_provider if "_" in n]
    assert ("X-Road-Client", "JP/GOV/372013/welfare") in to_provider
    assert ("My-Header", "2") in to_provider


def test_provider_and_client_response_headers() -> None:
    req = parse(
        "/r1/JP/GOV/072028/tax/income",
        headers=[
            CLIENT,
            ("X-Road-UserId", "u"),
            ("X-Road-Purpose", "p"),
            ("Accept", "*/*"),
            ("X-Road-Service", "JP/GOV/9/forged/x"),
        ],
    )
    mh = req.message_headers()
    to_provider = rest_headers.provider_headers(mh, req.passthrough_headers(), req.request_id)
    assert ("Accept", "*/*") in to_provider
    assert ("X-Road-Service", "JP/GOV/072028/tax/income") in to_provider
    assert ("X-Road-Service", "JP/GOV/9/forged/x") not in to_provider
    assert ("X-Road-Id", "generated-message-id") in to_provider
    assert ("X-Road-Request-Id", "generated-request-id") in to_provider
    assert ("X-Road-Purpose", "p") in to_provider and ("X-Road-UserId", "u") in to_provider
    assert not any(n == "X-Road-Issue" for n, _ in to_provider)

    back = rest_headers.client_response_headers(
        [
            ("Content-Type", "application/json"),
            ("X-Road-Request-Hash", "forged"),
            ("Transfer-Encoding", "chunked"),
            ("X-Road-Error", "forged"),
        ],
        mh,
        req.request_id,
        "HASH",
    )
    assert back == [
        ("Content-Type", "application/json"),
        ("X-Road-Id", "generated-message-id"),
        ("X-Road-Client", "JP/GOV/372013/welfare"),
        ("X-Road-Service", "JP/GOV/072028/tax/income"),
        ("X-Road-Request-Id", "generated-request-id"),
        ("X-Road-Request-Hash", "HASH"),
    ]


# --------------------------------------------------------------------------
# Request hash (X-Road RestRequest.toByteArray / ClientRestMessageProcessor)
# --------------------------------------------------------------------------

VECTOR_HEADERS = [
    ("Host", "aizu.example:8080"),
    ("User-Agent", "curl/8.5.0"),
    ("Accept", "application/json"),
    ("Content-Type", "application/json"),
    ("Content-Length", "13"),
    ("X-Road-Client", "JP/GOV/372013/welfare"),
    ("X-Road-UserId", "JP1234567890"),
    ("X-Road-Purpose", "child-allowance-eligibility"),
]
VECTOR_BODY = b'{"id":"A-17"}'
VECTOR_HEADER_PART = (
    b"POST\r\n"
    b"/r1/JP/GOV/072028/tax/income/v1/people%20list?year=2024&x=%2F\r\n"
    b"Accept:application/json\r\n"
    b"Content-Type:application/json\r\n"
    b"X-Road-Client:JP/GOV/372013/welfare\r\n"
    b"X-Road-UserId:JP1234567890\r\n"
    b"X-Road-Purpose:child-allowance-eligibility\r\n"
    b"X-Road-Request-Id:6f1c2f8e-7a4e-4d8e-b1a4-3c2b7e9d5f22\r\n"
    b"X-Road-Id:0b6f6d39-3b6c-4c2e-9d59-2f1b1c7c0a11\r\n"
)
# Golden values, also in docs/protocol.md.
VECTOR_HASH_WITH_BODY = (
    "f5LC4CGzh6pEf62idDX37mt5e47O7i8XP3auyzgBMkCfLDTwVac2w5N1WtrY43x+YqnJrBJVCACJKU/Q52IESg=="
)
VECTOR_HASH_NO_BODY = (
    "RF/sqGV8LQoS7YNj21UCESGeKB5lkYMaoKzOURoD+2loO1PWTMMOTWbACKJqeHpHy6RZHq2RgBnQb4pyaDTCuQ=="
)


def vector_request() -> rest.RestRequest:
    return rest.parse_rest_request(
        "POST",
        "/r1/JP/GOV/072028/tax/income/v1/people%20list",
        "year=2024&x=%2F",
        VECTOR_HEADERS,
        new_id=ids("0b6f6d39-3b6c-4c2e-9d59-2f1b1c7c0a11", "6f1c2f8e-7a4e-4d8e-b1a4-3c2b7e9d5f22"),
    )


def test_request_hash_vector() -> None:
    req = vector_request()
    assert req.header_part() == VECTOR_HEADER_PART
    body_digest = hashlib.sha512(VECTOR_BODY).digest()
    # Recompute from the formula, independently of rest.py.
    inner = hashlib.sha512(VECTOR_HEADER_PART).digest() + body_digest
    expected = base64.b64encode(hashlib.sha512(inner).digest()).decode()
    assert req.request_hash(body_digest) == expected == VECTOR_HASH_WITH_BODY
    no_body = base64.b64encode(hashlib.sha512(VECTOR_HEADER_PART).digest()).decode()
    assert req.request_hash(None) == no_body == VECTOR_HASH_NO_BODY
    assert len(base64.b64decode(VECTOR_HASH_WITH_BODY)) == 64


def test_header_part_keeps_client_x_road_id_and_drops_client_request_id_and_hash() -> None:
    part = rest_headers.rest_header_part(
        "GET",
        "/r1/a/b/c/d/e",
        None,
        [
            ("X-Road-Id", "m1"),
            ("x-road-request-id", "client-made"),
            ("X-Road-Request-Hash", "h"),
            ("accept", "a"),
            ("accept", "b"),
        ],
        "rid",
    )
    assert part == (
        b"GET\r\n/r1/a/b/c/d/e\r\nX-Road-Id:m1\r\naccept:a\r\naccept:b\r\nX-Road-Request-Id:rid\r\n"
    )


def test_header_part_is_utf8() -> None:
    part = rest_headers.rest_header_part("GET", "/r1/a/b/c/d/e", None, [("X-Note", "市役所")], "r")
    assert "市役所".encode() in part


def test_request_hash_changes_with_every_input() -> None:
    req = vector_request()
    base = req.request_hash(hashlib.sha512(VECTOR_BODY).digest())
    assert req.request_hash(hashlib.sha512(VECTOR_BODY + b" ").digest()) != base
    other = rest_headers.rest_header_part(
        "POST", req.path, "year=2025&x=%2F", req.headers, req.request_id, req.message_id
    )
    assert rest_headers.rest_request_hash(other, hashlib.sha512(VECTOR_BODY).digest()) != base
    with pytest.raises(ValueError, match=r"must be a 64-byte SHA-512 digest"):
        rest_headers.rest_request_hash(b"x", b"short")


# --------------------------------------------------------------------------
# Metaservices (pr-mrest Annex B, pr-meta Annex C)
# --------------------------------------------------------------------------


def test_metaservice_detection() -> None:
    path = "/r1/INSTANCE/CLASS2/MEMBER2/SUBSYSTEM2/listMethods"
    meta = rest.detect_metaservice("GET", path, None)
    assert meta == rest.MetaRequest(
        "listMethods", SubsystemId("INSTANCE", "CLASS2", "MEMBER2", "SUBSYSTEM2")
    )
    meta = rest.detect_metaservice("GET", "/r1/JP/GOV/072028/tax/allowedMethods", None)
    assert meta is not None and meta.kind == "allowedMethods"
    meta = rest.detect_metaservice(
        "GET", "/r1/JP/GOV/072028/tax/getOpenAPI", "serviceCode=listFirms"
    )
    assert meta is not None and (meta.kind, meta.service_code) == ("getOpenAPI", "listFirms")
    assert rest.detect_metaservice("GET", "/listClients", None) == rest.MetaRequest("listClients")
    meta = rest.detect_metaservice("GET", "/listClients", "xRoadInstance=JP")
    assert meta is not None and meta.instance == "JP"


def test_not_metaservices() -> None:
    assert rest.detect_metaservice("GET", "/r1/JP/GOV/072028/tax/income", None) is None
    assert rest.detect_metaservice("GET", "/r1/JP/GOV/072028/tax/listMethods/x", None) is None
    assert rest.detect_metaservice("GET", "/health", None) is None


def test_metaservice_errors() -> None:
    with pytest.raises(
        XRoadError, match=r"getOpenAPI needs the query parameter serviceCode"
    ) as info:
        rest.detect_metaservice("GET", "/r1/JP/GOV/072028/tax/getOpenAPI", None)
    assert info.value.code == errors.BAD_REQUEST and "serviceCode" in info.value.message
    with pytest.raises(XRoadError, match=r"^Client\.InvalidServiceIdentifier: ") as info:
        rest.detect_metaservice("GET", "/r1/JP/GOV/072028/tax/getOpenAPI", "serviceCode=a/b")
    assert info.value.code == errors.INVALID_SERVICE_IDENTIFIER
    with pytest.raises(XRoadError, match=r"^Client\.InvalidHttpMethod: ") as info:
        rest.detect_metaservice("POST", "/listClients", None)
    assert info.value.code == errors.INVALID_HTTP_METHOD


# --------------------------------------------------------------------------
# Error rendering (REST side)
# --------------------------------------------------------------------------


def test_rest_error_rendering() -> None:
    err = XRoadError(errors.BAD_REQUEST, "X-Road-Client header is missing", detail="d-1")
    status, headers, body = faults.rest_response(err)
    assert status == 400
    assert headers["X-Road-Error"] == "Client.BadRequest"
    assert headers["Content-Type"].startswith("application/json")
    assert json.loads(body) == {
        "type": "Client.BadRequest",
        "message": "X-Road-Client header is missing",
        "detail": "d-1",
    }


@pytest.mark.parametrize(
    ("code", "status"),
    [
        (errors.BAD_REQUEST, 400),
        (errors.INVALID_SIGNATURE, 400),
        (errors.DUPLICATE_MESSAGE_ID, 400),
        (errors.MESSAGE_TOO_LARGE, 400),  # X-Road: 400 or 500 only
        (errors.ACCESS_DENIED, 500),
        (errors.UNKNOWN_MEMBER, 500),
        (errors.UNKNOWN_SERVICE, 500),
        (errors.CLIENT_PROXY_UNKNOWN_SERVICE, 500),
        (errors.SERVICE_FAILED, 500),
        (errors.OUTDATED_GLOBALCONF, 500),
    ],
)
def test_status_conventions(code: str, status: int) -> None:
    assert XRoadError(code, "m").http_status == status


def test_error_code_and_status_validated() -> None:
    with pytest.raises(ValueError, match=r"malformed X-Road error code"):
        XRoadError("Client.Bad\r\nX-Injected: 1", "m")
    with pytest.raises(ValueError, match=r"malformed X-Road error code 'nodots'"):
        XRoadError("nodots", "m")
    with pytest.raises(ValueError, match=r"error HTTP status must be 4xx or 5xx, not 200"):
        XRoadError(errors.BAD_REQUEST, "m", http_status=200)


def test_detail_defaults_to_fresh_uuid_and_prefixing() -> None:
    a, b = XRoadError(errors.SERVICE_FAILED, "m"), XRoadError(errors.SERVICE_FAILED, "m")
    assert a.detail != b.detail and len(a.detail) == 36
    inner = XRoadError("ServiceFailed.MissingBody", "no body", detail="x")
    outer = inner.with_prefix(errors.SERVER_CLIENT_PROXY)
    assert outer.code == "Server.ClientProxy.ServiceFailed.MissingBody"
    assert outer.http_status == 500 and outer.detail == "x"


def test_non_ascii_error_message_survives_json() -> None:
    body = faults.rest_body(XRoadError(errors.ACCESS_DENIED, "同意がありません"))
    assert json.loads(body.decode("utf-8"))["message"] == "同意がありません"
