"""Sample provider systems for the demo and the benchmark: one REST, one SOAP.

REST (``/residents/{id}`` GET, ``/echo`` POST) and SOAP (any X-Road v4.0
request whose body is ``<getResident>`` or ``<echo>``: the response echoes the
request header, as X-Road requires of providers). Both are deliberately small
and fast so the benchmark measures the nodes, not the service.

``/person/{id}`` is the personal-data system of the demo's mission
(:mod:`secnode.demo.mission`): the same records, and it counts its calls
(``GET /person-calls``) so the demo can show a refused request never reached it.
"""

from __future__ import annotations

import argparse
import asyncio
import json

from aiohttp import web
from lxml import etree

from secnode.core.xmlsafe import parse_xml

SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"

RESIDENTS = {
    "1001": {
        "id": "1001",
        "name": "Aizu Taro",
        "address": "Aizu-Wakamatsu, Fukushima",
        "birth_year": 1980,
        "household": 3,
    },
    "2002": {
        "id": "2002",
        "name": "Sanuki Hanako",
        "address": "Takamatsu, Kagawa",
        "birth_year": 1991,
        "household": 2,
    },
}


async def resident(request: web.Request) -> web.Response:
    item = RESIDENTS.get(request.match_info["rid"])
    if item is None:
        return web.json_response({"error": "no such resident"}, status=404)
    return web.json_response(item)


async def echo(request: web.Request) -> web.Response:
    body = await request.read()
    return web.Response(body=body, content_type=request.content_type or "application/json")


async def slow(request: web.Request) -> web.Response:
    """Answers after ``?seconds=`` (at most 30): for timeout tests and demonstrations."""
    try:
        delay = min(float(request.query.get("seconds", "5")), 30.0)
    except ValueError:
        delay = 5.0
    await asyncio.sleep(delay)
    return web.json_response({"slept": delay})


async def soap_endpoint(request: web.Request) -> web.Response:
    """Answer a SOAP request: copy its Header, answer ``<xResponse>`` for body ``<x>``."""
    data = await request.read()
    try:
        root = parse_xml(data)
    except Exception as exc:  # a sample service: answer a fault, never crash
        return web.Response(status=500, text=f"<fault>{exc}</fault>", content_type="text/xml")
    header = root.find(f"{{{SOAP_ENV}}}Header")
    body = root.find(f"{{{SOAP_ENV}}}Body")
    request_elem = body[0] if body is not None and len(body) else None
    env = etree.Element(f"{{{SOAP_ENV}}}Envelope", nsmap={"SOAP-ENV": SOAP_ENV})
    if header is not None:
        env.append(header)
    out_body = etree.SubElement(env, f"{{{SOAP_ENV}}}Body")
    if request_elem is not None:
        qname = etree.QName(request_elem)
        resp = etree.SubElement(
            out_body,
            f"{{{qname.namespace}}}{qname.localname}Response"
            if qname.namespace
            else f"{qname.localname}Response",
        )
        if qname.localname == "getResident":
            rid = (request_elem.findtext(".//{*}id") or request_elem.findtext("id") or "").strip()
            for key, value in (RESIDENTS.get(rid) or {"error": "no such resident"}).items():
                etree.SubElement(resp, key).text = str(value)
        else:
            resp.extend(list(request_elem))
    return web.Response(
        body=etree.tostring(env, xml_declaration=True, encoding="UTF-8"),
        content_type="text/xml",
        charset="utf-8",
    )


# ----- the mission's personal-data system (secnode.demo.mission) ---------------------------
PERSON_CALLS = web.AppKey("person_calls", list[int])


async def person(request: web.Request) -> web.Response:
    """A resident's full record; the node must cut it to the agreed fields."""
    request.app[PERSON_CALLS][0] += 1
    return await resident(request)


async def person_calls(request: web.Request) -> web.Response:
    """How often ``/person/{id}`` was called: a refused request must not count."""
    return web.json_response({"calls": request.app[PERSON_CALLS][0]})


async def health(_request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


def build_app() -> web.Application:
    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_get("/residents/{rid}", resident)
    app.router.add_post("/echo", echo)
    app.router.add_get("/slow", slow)
    app.router.add_post("/soap", soap_endpoint)
    app.router.add_get("/health", health)
    app[PERSON_CALLS] = [0]
    app.router.add_get("/person/{rid}", person)
    app.router.add_get("/person-calls", person_calls)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description="secnode demo sample services")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    print(json.dumps({"listening": f"http://{args.host}:{args.port}"}), flush=True)
    web.run_app(build_app(), host=args.host, port=args.port, access_log=None, print=None)


if __name__ == "__main__":
    main()
