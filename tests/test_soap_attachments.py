"""SOAP with attachments through two real nodes (pr-mess §2.4: SwA, Annex F; MTOM, Annex G).

The requests are X-Road's published ones: the message protocol's Annex F (SwA) and Annex G
(MTOM/XOP) examples from ``shared/xroad/pr-mess/`` and the attachment case of X-Road's
proxy test suite (``tests/data/xroad_queries/attachments.query``), changed only in their
identifiers, message ids and (for the annexes, printed with bare LF) MIME's CRLF line
ends. The provider system is a real HTTP server in this process: it records the bytes
that reach it and answers multipart itself. What is checked: the provider gets the
message byte for byte with its Content-Type; the client gets the provider's multipart
answer with only ``requestHash`` added to the SOAP part; ``requestHash`` is over the
request's SOAP part; both logs keep the message (whole, or its digest, per
``messagelog.bodies``) and ``secnode log verify`` passes; a tampered attachment is refused
at the provider node; malformed multipart messages get a clear SOAP fault.
"""

from __future__ import annotations

import asyncio
import base64
import email
import email.policy
import hashlib
import json
import re
import shutil
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiohttp import web
from lxml import etree

from secnode.core import errors, mime_related, soap_mime
from secnode.core.errors import XRoadError
from secnode.core.identifiers import SubsystemId
from secnode.core.message import request_digest
from secnode.core.soap import parse_soap_request
from secnode.demo.calls import CallResult
from secnode.demo.calls import http as http_call
from secnode.demo.federation import DemoError, Federation, build_two_city_federation
from secnode.demo.ports import free_port
from tests.test_exchange_e2e import Peer, sign_as
from tests.test_xroad_compat import QUERIES, XROAD
from tests.witness_support import witness_headers

SOAP_NS = "http://schemas.xmlsoap.org/soap/envelope/"
NS = {"s": SOAP_NS, "xrd": "http://x-road.eu/xsd/xroad.xsd"}
HASH_ELEMENT = re.compile(rb"<[\w:]*requestHash [^>]*>[^<]*</[\w:]*requestHash>")
#: An attachment that looks like MIME to a careless parser: line ends, dashes, a NUL.
TRICKY = b"\x00\xff\r\n--MIME_boundary\r\n--not-a-boundary--\r\n\r\nend\n"


# ----- the published messages -----------------------------------------------------------------
@dataclass(frozen=True)
class Message:
    content_type: str
    body: bytes


def annex(name: str) -> Message:
    """An annex example as a client sends it: the Content-Type header (unwrapped) and the
    body with MIME's CRLF line ends (the document prints them as LF)."""
    text = (XROAD / "pr-mess" / name).read_text()
    head, _, body = text.partition("\nMIME-Version: 1.0\n\n")
    ctype = " ".join(head.split("Content-Type:", 1)[1].split())
    return Message(ctype, body.replace("\n", "\r\n").encode())


def xroad_attachments_query() -> Message:
    """X-Road's proxy test ``attachments.query`` as it is (bare LF, no Content-IDs); its
    test sends it as multipart/related with the boundary of the file."""
    body = (QUERIES / "attachments.query").read_bytes()
    return Message('multipart/related; type="text/xml"; boundary=jetty771207119h3h10dty', body)


def readdress(fed: Federation, message: Message, service: str | None = None) -> Message:
    """Annex F/G and X-Road's query, addressed to Aizu's portal calling Takamatsu's welfare."""
    aizu, taka = fed.nodes["aizu"], fed.nodes["takamatsu"]
    client = SubsystemId.parse(aizu.client_id)
    welfare = SubsystemId.parse(f"{taka.member}/welfare")
    body = message.body
    for old, new in (
        (b"EE", client.instance),
        (b"GOV", client.member_class),
        (b"BUSINESS", client.member_class),
        (b"MEMBER1", client.code),
        (b"consumer", client.code),
        (b"SUBSYSTEM1", client.subsystem),
        (b"MEMBER2", welfare.code),
        (b"producer", welfare.code),
        (b"SUBSYSTEM2", welfare.subsystem),
    ):
        body = body.replace(b">" + old + b"<", b">" + new.encode() + b"<")
    if b">SUBSYSTEM" not in message.body:  # X-Road's query: member-level client and service
        body = body.replace(
            b'<xroad:client id:objectType="MEMBER">', b'<xroad:client id:objectType="SUBSYSTEM">'
        ).replace(
            f"<id:memberCode>{client.code}</id:memberCode>\n        </xroad:client>".encode(),
            f"<id:memberCode>{client.code}</id:memberCode>\n            "
            f"<id:subsystemCode>{client.subsystem}</id:subsystemCode>\n"
            "        </xroad:client>".encode(),
        )
        body = body.replace(
            f"<id:memberCode>{welfare.code}</id:memberCode>\n".encode(),
            f"<id:memberCode>{welfare.code}</id:memberCode>\n            "
            f"<id:subsystemCode>{welfare.subsystem}</id:subsystemCode>\n".encode(),
        )
    if service is not None:
        code = b"<id:serviceCode>%s</id:serviceCode>" % service.encode()
        body = re.sub(rb"<id:serviceCode>\w+</id:serviceCode>", code, body)
    body = re.sub(
        rb"<(\w+):id>[^<]*</\1:id>",
        lambda m: b"<%s:id>%s</%s:id>" % (m[1], str(uuid.uuid4()).encode(), m[1]),
        body,
    )
    return Message(message.content_type, body)


def message_id(message: Message) -> str:
    match = re.search(rb"<\w+:id>([^<]*)</\w+:id>", message.body)
    assert match is not None
    return match[1].decode()


def independent_parts(content_type: str, body: bytes) -> list[tuple[str | None, str, bytes]]:
    """(Content-ID, Content-Type, content) of each part, by the standard library's parser."""
    doc = email.message_from_bytes(
        f"Content-Type: {content_type}\r\n\r\n".encode() + body, policy=email.policy.HTTP
    )
    assert doc.is_multipart(), body[:300]
    return [
        (p["Content-ID"], p.get_content_type(), p.get_payload(decode=True))
        for p in doc.iter_parts()
    ]


# ----- pure: the published examples taken apart --------------------------------------------------
def test_annex_f_and_g_are_taken_apart() -> None:
    for name, form in (("f-swaref-request.txt", "swa"), ("g-mtom-request.txt", "mtom")):
        msg = annex(name)
        split = soap_mime.split(msg.body, msg.content_type)
        assert split.form == form and split.related is not None
        assert [p.content_id for p in split.related.parts] == ["rootpart", "data.bin"]
        assert split.soap.startswith(b'<?xml version="1.0"') and split.soap.endswith(
            b"</SOAP-ENV:Envelope>\r\n"
        )
        assert split.related.attachments[0].content(msg.body) == b"VGhpcyBpcyBhdHRhY2htZW50Lg0K"
        request = parse_soap_request(split.soap, split.soap_content_type)
        assert request.service.service == "exampleService" and request.issue == "12345"
    query = xroad_attachments_query()
    split = soap_mime.split(query.body, query.content_type)
    assert split.related is not None and len(split.related.attachments) == 3
    contents = [p.content(query.body) for p in split.related.attachments]
    assert contents == [b"blaah\n", b"blaah1\n", b"blaah2\n"]


@pytest.mark.parametrize(
    ("content_type", "body", "reason"),
    [
        ('multipart/related; type="text/xml"', b"--x\r\n\r\n<a/>\r\n--x--", "no boundary"),
        ("multipart/related; boundary=x", b"--x--\r\n", "no parts"),
        ("multipart/related; boundary=x", b"nothing here", "no delimiter"),
        ("multipart/related; boundary=x", b"--x\r\nContent-Type: text/xml\r\n\r\n<a/>", "closing"),
        (
            'multipart/related; boundary=x; start="<nowhere>"',
            b"--x\r\nContent-ID: <root>\r\nContent-Type: text/xml\r\n\r\n<a/>\r\n--x--",
            "start parameter <nowhere> names no part",
        ),
        (
            "multipart/related; boundary=x",
            b"--x\r\nContent-Type: text/plain\r\n\r\nhello\r\n--x--",
            "'text/plain', not a SOAP message",
        ),
        (
            'multipart/related; type="application/xop+xml"; boundary=x',
            b'--x\r\nContent-Type: application/xop+xml; type="application/soap+xml"\r\n\r\n'
            b"<a/>\r\n--x--",
            "SOAP 1.1",
        ),
        (
            "multipart/related; boundary=x",
            b"--x\r\nContent-Type: text/xml\r\nContent-Transfer-Encoding: base64\r\n\r\n"
            b"PGEvPg==\r\n--x--",
            "must not be base64-encoded",
        ),
        ("multipart/related; boundary=x", b"--x\r\nbroken header\r\n\r\n<a/>\r\n--x--", "header"),
        (
            'multipart/related; boundary=x; start="<a>"',
            b"--x\r\nContent-ID: <a>\r\nContent-Type: text/xml\r\n\r\n<a/>\r\n"
            b"--x\r\nContent-ID: <a>\r\n\r\nother\r\n--x--",
            "same Content-ID",
        ),
        (  # CRLF delimiters first, then a bare-LF one: content, so the close is missing
            "multipart/related; boundary=x",
            b"--x\r\nContent-Type: text/xml\r\n\r\n<a/>\n--x--\n",
            "no closing delimiter",
        ),
    ],
)
def test_malformed_multipart_is_refused(content_type: str, body: bytes, reason: str) -> None:
    with pytest.raises(XRoadError, match=re.escape(reason)) as info:
        soap_mime.split(body, content_type)
    assert info.value.code == errors.INVALID_SOAP


def test_x_road_mtom_query_around_soap_1_2_is_refused() -> None:
    """X-Road's ``soapfault-mtom.query`` declares its SOAP part ``application/soap+xml``."""
    body = (QUERIES / "soapfault-mtom.query").read_bytes()
    ctype = 'multipart/related; type="application/xop+xml"; boundary=jetty771207119h3h10dty'
    with pytest.raises(XRoadError, match=re.escape("X-Road v4.0 is SOAP 1.1")) as info:
        soap_mime.split(body, ctype)
    assert info.value.code == errors.INVALID_SOAP


def test_only_whole_delimiter_lines_split_parts() -> None:
    """A boundary inside a line, or followed by more characters, is content; a folded
    header line continues the one before; a preamble and an epilogue are not parts."""
    body = (
        b"preamble --b\r\n--b\r\nContent-Type: text/xml;\r\n charset=UTF-8\r\n\r\n<a/>"
        b"\r\n--b\r\n\r\nx --b\r\n--bb\r\n--b-\r\n--b--\r\nepilogue\r\n--b\r\n"
    )
    related = mime_related.parse(body, "multipart/related; boundary=b")
    assert [p.content(body) for p in related.parts] == [b"<a/>", b"x --b\r\n--bb\r\n--b-"]
    assert related.root.content_type == "text/xml; charset=UTF-8"
    assert related.parts[1].headers == {}


def test_replace_root_keeps_every_other_byte() -> None:
    msg = annex("g-mtom-request.txt")
    related = mime_related.parse(msg.body, msg.content_type)
    out = mime_related.replace_root(msg.body, related, b"<new/>")
    assert out == msg.body.replace(related.root.content(msg.body), b"<new/>")


# ----- the provider system -----------------------------------------------------------------------
class AttachmentProvider:
    """A provider system that answers a multipart request with a multipart response of the
    same form (SwA or MTOM), echoing the SOAP header and returning two attachments."""

    BOUNDARY = "provider-boundary-7f3a"

    def __init__(self) -> None:
        self.port = free_port()
        self.seen: list[tuple[dict[str, str], bytes]] = []
        self.sent: dict[str, Message] = {}
        self._loop = asyncio.new_event_loop()
        ready = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(ready,), daemon=True)
        self._thread.start()
        assert ready.wait(10), "provider system did not start"

    def _run(self, ready: threading.Event) -> None:
        asyncio.set_event_loop(self._loop)
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/soap", self._soap)
        self._runner = web.AppRunner(app)
        self._loop.run_until_complete(self._runner.setup())
        self._loop.run_until_complete(web.TCPSite(self._runner, "127.0.0.1", self.port).start())
        ready.set()
        self._loop.run_forever()

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    def received(self, mid: str) -> tuple[dict[str, str], bytes]:
        for headers, body in reversed(self.seen):
            if mid.encode() in body:
                return headers, body
        raise AssertionError(f"message {mid} did not reach the provider system")

    async def _soap(self, request: web.Request) -> web.Response:
        body = await request.read()
        ctype = request.headers.get("Content-Type", "")
        self.seen.append((dict(request.headers), body))
        parts = independent_parts(ctype, body)
        root = etree.fromstring(parts[0][2])
        header = root.find("s:Header", NS)
        wrapper = root.find("s:Body", NS)[0]
        ns, local = wrapper.tag[1:].split("}")
        mid = header.findtext("xrd:id", namespaces=NS)
        mtom = "xop+xml" in ctype
        ref = (
            '<xop:Include xmlns:xop="http://www.w3.org/2004/08/xop/include" href="cid:answer"/>'
            if mtom
            else "cid:answer"
        )
        soap = (
            f'<?xml version="1.0" encoding="UTF-8"?>\r\n<SOAP-ENV:Envelope xmlns:SOAP-ENV='
            f'"{SOAP_NS}">{etree.tostring(header).decode()}<SOAP-ENV:Body><p:{local}Response '
            f'xmlns:p="{ns}"><attachments>{len(parts) - 1}</attachments><answer>{ref}</answer>'
            f"</p:{local}Response></SOAP-ENV:Body></SOAP-ENV:Envelope>"
        ).encode()
        root_type = (
            'application/xop+xml; charset=UTF-8; type="text/xml"'
            if mtom
            else "text/xml; charset=UTF-8"
        )
        b = self.BOUNDARY
        out = b"".join(
            (
                b"preamble, ignored\r\n",
                f"--{b}\r\nContent-Type: {root_type}\r\nContent-ID: <resp-root>\r\n\r\n".encode(),
                soap,
                f"\r\n--{b}\r\nContent-Type: application/octet-stream\r\n".encode(),
                b"Content-Transfer-Encoding: binary\r\nContent-ID: <answer>\r\n\r\n",
                TRICKY + parts[-1][2],
                f"\r\n--{b}\r\nContent-Type: text/plain; charset=UTF-8\r\n".encode(),
                b"Content-ID: <note>\r\n\r\nprovider note\r\n",
                f"--{b}--\r\nepilogue, ignored too\r\n".encode(),
            )
        )
        kind = 'application/xop+xml"; start-info="text/xml' if mtom else "text/xml"
        out_type = f'multipart/related; type="{kind}"; start="<resp-root>"; boundary="{b}"'
        action = request.headers.get("SOAPAction")
        if action == '"plain"':  # answer a multipart request with a plain SOAP message
            out_type, out = "text/xml; charset=UTF-8", soap
        elif action == '"broken"':  # a multipart answer whose start names no part
            out_type = out_type.replace("<resp-root>", "<elsewhere>")
        self.sent[mid or ""] = Message(out_type, out)
        return web.Response(body=out, headers={"Content-Type": out_type})


@pytest.fixture(scope="module")
def provider() -> Iterator[AttachmentProvider]:
    system = AttachmentProvider()
    try:
        yield system
    finally:
        system.stop()


#: Takamatsu's services: (code, version, does the provider node's log keep bodies).
SERVICES = (("exampleService", "v1", True), ("exampleServiceMtom", "v1", False), ("test", "", True))


@pytest.fixture(scope="module")
def fed(
    tmp_path_factory: pytest.TempPathFactory, provider: AttachmentProvider
) -> Iterator[Federation]:
    federation = build_two_city_federation(tmp_path_factory.mktemp("fed"), say=lambda _m: None)
    try:
        taka, aizu = federation.nodes["takamatsu"], federation.nodes["aizu"]
        url = f"http://127.0.0.1:{provider.port}/soap"
        for code, version, bodies in SERVICES:
            federation.run(
                "secnode", "service", "add", "welfare", code, "--type", "soap", "--url", url,
                "--version", version, "--log-bodies" if bodies else "--no-log-bodies",
                "--dir", taka.dir,
            )  # fmt: skip
            name = f"welfare/{code}" + (f"/{version}" if version else "")
            federation.run("secnode", "acl", "grant", name, aizu.client_id, "--dir", taka.dir)
            federation.run(
                "secnode", "service", "classify", name, "--non-personal", "--dir", taka.dir
            )
        yield federation
    finally:
        federation.stop()


def post(fed: Federation, message: Message, action: str = '""') -> CallResult:
    headers = {"Content-Type": message.content_type, "SOAPAction": action}
    return http_call("POST", fed.nodes["aizu"].client_url + "/", message.body, headers)


def fault_code(result: CallResult) -> str | None:
    try:
        doc = etree.fromstring(result.body)
    except etree.XMLSyntaxError:
        return None
    return doc.findtext("s:Body/s:Fault/faultcode", namespaces=NS)


def fault_text(result: CallResult) -> str:
    """The fault's code and string (for assertion messages)."""
    doc = etree.fromstring(result.body)
    fault = doc.find("s:Body/s:Fault", NS)
    if fault is None:
        return result.body[:2000].decode("utf-8", "replace")
    return f"{fault.findtext('faultcode')}: {fault.findtext('faultstring')}"


@pytest.fixture(scope="module")
def ready(fed: Federation) -> Federation:
    """Takamatsu has picked up the services and rights (its reload job runs every few s)."""
    deadline = time.monotonic() + 40
    while True:
        result = post(fed, readdress(fed, annex("f-swaref-request.txt")))
        if result.status == 200 and fault_code(result) is None:
            return fed
        assert time.monotonic() < deadline, fault_text(result)
        time.sleep(0.5)


def log_rows(node_dir: Path, mid: str) -> dict[str, tuple[bytes, int, bytes | None]]:
    """direction -> (body_sha256, body_size, body) of the node's records of message ``mid``."""
    conn = sqlite3.connect(node_dir / "messagelog.db")
    try:
        rows = conn.execute(
            "SELECT direction, body_sha256, body_size, body FROM mlog_records WHERE message_id = ?",
            (mid,),
        ).fetchall()
    finally:
        conn.close()
    return {
        d: (bytes(sha), size, None if body is None else bytes(body)) for d, sha, size, body in rows
    }


# ----- through the nodes ---------------------------------------------------------------------
CASES = [
    pytest.param("f-swaref-request.txt", None, True, id="annex-f-swa"),
    pytest.param("g-mtom-request.txt", "exampleServiceMtom", False, id="annex-g-mtom"),
    pytest.param("attachments.query", None, True, id="xroad-attachments-query"),
]


@pytest.mark.slow
@pytest.mark.parametrize(("source", "service", "full_body"), CASES)
def test_attachments_delivered_as_sent_both_ways(
    ready: Federation, provider: AttachmentProvider, source: str, service: str | None,
    full_body: bool,
) -> None:  # fmt: skip
    base = xroad_attachments_query() if source.endswith(".query") else annex(source)
    message = readdress(ready, base, service)
    mid = message_id(message)
    result = post(ready, message)
    assert result.status == 200 and fault_code(result) is None, result.body[:2000]

    # The provider system got the message byte for byte, with its Content-Type and SOAPAction.
    seen_headers, seen_body = provider.received(mid)
    assert seen_body == message.body
    assert seen_headers["Content-Type"] == message.content_type
    assert seen_headers.get("SOAPAction") == '""'
    sent_parts = independent_parts(message.content_type, message.body)
    assert independent_parts(seen_headers["Content-Type"], seen_body) == sent_parts

    # The client got the provider's multipart answer; only requestHash was added (root part).
    answer = provider.sent[mid]
    assert result.headers["Content-Type"] == answer.content_type
    hashes = HASH_ELEMENT.findall(result.body)
    assert len(hashes) == 1 and result.body.replace(hashes[0], b"") == answer.body
    got, want = (independent_parts(answer.content_type, b) for b in (result.body, answer.body))
    assert [(cid, t) for cid, t, _ in got] == [(cid, t) for cid, t, _ in want]
    assert got[1:] == want[1:] and got[1][2].startswith(TRICKY)

    # requestHash is over the request's SOAP part as the client sent it (not the MIME message).
    soap_part = sent_parts[0][2]
    assert soap_part.lstrip().startswith(b"<?xml") and soap_part in message.body
    root = etree.fromstring(got[0][2])
    expected = base64.b64encode(hashlib.sha512(soap_part).digest()).decode()
    assert root.findtext("s:Header/xrd:requestHash", namespaces=NS) == expected

    # Both logs keep the whole message (or, where bodies are not kept, its digest).
    whole = hashlib.sha256(message.body).digest()
    aizu_rows = log_rows(ready.nodes["aizu"].dir, mid)
    assert aizu_rows["request_out"] == (whole, len(message.body), message.body)
    assert aizu_rows["response_in"][2] == result.body
    taka_rows = log_rows(ready.nodes["takamatsu"].dir, mid)
    kept = message.body if full_body else None
    assert taka_rows["request_in"] == (whole, len(message.body), kept)
    assert taka_rows["response_out"][:2] == (
        hashlib.sha256(result.body).digest(),
        len(result.body),
    )


@pytest.mark.slow
def test_plain_answer_to_an_mtom_request(ready: Federation, provider: AttachmentProvider) -> None:
    message = readdress(ready, annex("g-mtom-request.txt"), "exampleServiceMtom")
    result = post(ready, message, '"plain"')
    assert result.status == 200 and fault_code(result) is None, fault_text(result)
    assert result.headers["Content-Type"] == "text/xml; charset=UTF-8"
    answer = provider.sent[message_id(message)]
    hashes = HASH_ELEMENT.findall(result.body)
    assert len(hashes) == 1 and result.body.replace(hashes[0], b"") == answer.body
    soap_part = independent_parts(message.content_type, message.body)[0][2]
    expected = base64.b64encode(hashlib.sha512(soap_part).digest()).decode()
    root = etree.fromstring(result.body)
    assert root.findtext("s:Header/xrd:requestHash", namespaces=NS) == expected


@pytest.mark.slow
def test_broken_multipart_answer_is_a_service_failure(ready: Federation) -> None:
    result = post(ready, readdress(ready, annex("f-swaref-request.txt")), '"broken"')
    assert fault_code(result) == "Server.ServerProxy.ServiceFailed.InvalidSoap", fault_text(result)
    assert "start parameter <elsewhere> names no part" in fault_text(result)


@pytest.mark.slow
def test_log_verify_passes_on_attachment_records(ready: Federation, tmp_path: Path) -> None:
    """Both logs verify with the multipart records in them; a stored attachment changed
    afterwards does not (the log keeps the whole message, not just its SOAP part)."""
    message = readdress(ready, annex("f-swaref-request.txt"))
    assert post(ready, message).status == 200
    for city in ("aizu", "takamatsu"):
        report = json.loads(
            ready.run("secnode", "log", "verify", "--json", "--dir", ready.nodes[city].dir)
        )
        assert report["ok"] and report["checked"]["records"] >= 8, report
    copy = tmp_path / "aizu"
    shutil.copytree(ready.nodes["aizu"].dir, copy, ignore=shutil.ignore_patterns("messagelog.db*"))
    with (
        closing(sqlite3.connect(ready.nodes["aizu"].dir / "messagelog.db")) as live,
        closing(sqlite3.connect(copy / "messagelog.db")) as dest,
    ):
        live.backup(dest)
        forged = message.body.replace(b"VGhpcyBpcyBhdHRhY2htZW50Lg0K", b"VGhpcyBpcyBmb3JnZWQuDQo=")
        changed = dest.execute(
            "UPDATE mlog_records SET body = ? WHERE message_id = ? AND direction = 'request_out'",
            (forged, message_id(message)),
        ).rowcount
        dest.commit()
    assert changed == 1
    with pytest.raises(DemoError, match="body changed"):
        ready.run("secnode", "log", "verify", "--dir", copy)


@pytest.mark.slow
def test_tampered_attachment_is_refused_at_the_provider_node(ready: Federation) -> None:
    """Aizu's real keys sign the Annex F message; the attachment changes in transit."""
    aizu = ready.nodes["aizu"]
    peer = Peer(ready, aizu.dir / "certs" / "auth.pem", aizu.dir / "keys" / "auth.key")
    signer, staple = sign_as(ready, "aizu")
    for tamper in (False, True):
        message = readdress(ready, annex("f-swaref-request.txt"))
        split = soap_mime.split(message.body, message.content_type)
        headers = parse_soap_request(split.soap, split.soap_content_type).message_headers(
            message.content_type
        )
        digest = request_digest(headers, hashlib.sha256(message.body).digest())
        body = message.body.replace(b"VGhpcyBpcyBhdHRhY2htZW50Lg0K", b"VGhpcyBpcyBmb3JnZWQuDQo=")
        status, resp_headers, out = peer.send(
            headers,
            body if tamper else message.body,
            signer.sign(digest),
            staple,
            peer="takamatsu",
            witness=witness_headers(signer, digest),
        )
        if not tamper:  # the control: the same construction, untouched, is served
            assert status == 200 and b"exampleServiceSwaRefResponse" in out, out[:2000]
            continue
        assert resp_headers.get("X-Road-Error") == "Client.InvalidSignature", out[:2000]
        assert b"does not verify" in out


MALFORMED = [
    ('multipart/related; type="text/xml"', b"--b\r\n\r\n<a/>\r\n--b--\r\n", "no boundary"),
    ("multipart/related; boundary=b", b"--b--\r\n", "no parts"),
    (
        'multipart/related; boundary=b; start="<nowhere>"',
        b"--b\r\nContent-ID: <root>\r\nContent-Type: text/xml\r\n\r\n<a/>\r\n--b--\r\n",
        "names no part",
    ),
    (
        "multipart/related; boundary=b",
        b"--b\r\nContent-Type: text/plain\r\n\r\nnot xml\r\n--b--\r\n",
        "not a SOAP message",
    ),
]


@pytest.mark.slow
@pytest.mark.parametrize(("content_type", "body", "reason"), MALFORMED)
def test_malformed_multipart_gets_a_soap_fault_and_is_logged(
    fed: Federation, content_type: str, body: bytes, reason: str
) -> None:
    result = post(fed, Message(content_type, body))
    assert fault_code(result) == "Client.InvalidSoap", result.body[:1000]
    assert result.headers.get("X-Road-Error") == "Client.InvalidSoap"
    assert reason.encode() in result.body and b"Traceback" not in result.body
    log_file = fed.base / "logs" / "node-aizu.log"
    assert reason in log_file.read_text(errors="replace")


@pytest.mark.slow
def test_a_non_xml_root_part_is_a_clear_fault(fed: Federation) -> None:
    body = b"--b\r\nContent-Type: text/xml\r\n\r\nthis is not XML\r\n--b--\r\n"
    result = post(fed, Message("multipart/related; boundary=b", body))
    assert (fault_code(result) or "").startswith("Client.Invalid"), result.body[:1000]


@pytest.mark.slow
def test_the_size_limit_applies_to_the_whole_message(ready: Federation) -> None:
    message = readdress(ready, annex("f-swaref-request.txt"))
    big = message.body.replace(
        b"VGhpcyBpcyBhdHRhY2htZW50Lg0K", b"A" * (10 * 1024 * 1024)
    )  # the SOAP part stays small; the attachment takes the message over the limit
    result = post(ready, Message(message.content_type, big))
    assert result.headers.get("X-Road-Error") == "Client.MessageTooLarge", result.body[:500]
