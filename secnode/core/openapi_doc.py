"""A stored OpenAPI description as X-Road's REST metaservices use it (pure).

``listMethods`` / ``allowedMethods`` list a service's endpoints (method + path, a
path parameter written ``*`` as X-Road does) and ``getOpenAPI`` hands the
description out with its ``servers`` cut to the path, so the provider system's
internal host never leaves the node (pr-mrest §3.3, X-Road's
``RestMetadataServiceHandlerImpl``).
"""

from __future__ import annotations

import json
import re
from typing import Any, Final

import yaml

from certs.errors import SecnodeError

_METHODS: Final = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
_TEMPLATE: Final = re.compile(r"\{[^/{}]*\}")
_ORIGIN: Final = re.compile(r"^[A-Za-z{][A-Za-z0-9+.\-{}]*://[^/?#]*")
#: What X-Road lists for a REST service without a description: every method, every path.
ANY_ENDPOINT: Final = ("*", "**")


class OpenApiError(SecnodeError):
    """A stored description that is not an OpenAPI document (JSON or YAML mapping)."""


def is_json(text: str) -> bool:
    return text.lstrip().startswith("{")


def load(text: str) -> dict[str, Any]:
    """The description as a mapping; JSON or YAML (safe loader: no object tags)."""
    try:
        doc = json.loads(text) if is_json(text) else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as exc:
        raise OpenApiError(f"OpenAPI description does not parse: {exc}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("paths", {}), dict):
        raise OpenApiError("OpenAPI description is not a mapping with 'paths'")
    return doc


def endpoints(text: str) -> list[tuple[str, str]]:
    """(METHOD, path) of each operation, in the document's order; ``{id}`` becomes ``*``."""
    out: list[tuple[str, str]] = []
    for path, item in load(text).get("paths", {}).items():
        if not isinstance(item, dict):
            continue
        for method in _METHODS:
            if method in item:
                out.append((method.upper(), _TEMPLATE.sub("*", str(path))))
    return out


def _path_only(server: Any) -> Any:
    if not isinstance(server, dict) or not isinstance(server.get("url"), str):
        return server
    path = _ORIGIN.sub("", server["url"]).split("?", 1)[0].split("#", 1)[0]
    cut = {k: v for k, v in server.items() if k not in ("url", "variables")}
    cut["url"] = path or "/"
    used = set(re.findall(r"\{([^/{}]*)\}", cut["url"]))
    variables = server.get("variables")
    if isinstance(variables, dict) and used:
        cut["variables"] = {k: v for k, v in variables.items() if k in used}
    return cut


def without_hosts(text: str) -> tuple[str, str]:
    """(content type, text) of the description with each ``servers`` URL cut to its path
    (document, path and operation level), in the format it was stored in."""
    doc = load(text)

    def cut(node: dict[str, Any]) -> None:
        if isinstance(node.get("servers"), list):
            node["servers"] = [_path_only(s) for s in node["servers"]]

    cut(doc)
    for item in doc.get("paths", {}).values():
        if isinstance(item, dict):
            cut(item)
            for method in _METHODS:
                if isinstance(item.get(method), dict):
                    cut(item[method])
    if is_json(text):
        return "application/json", json.dumps(doc, indent=2, ensure_ascii=False)
    return "text/yaml", yaml.safe_dump(doc, sort_keys=False, allow_unicode=True)
