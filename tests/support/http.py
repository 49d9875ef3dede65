"""Plain HTTP to a test daemon (``http.client``: no client library between the test and
the server's bytes)."""

from __future__ import annotations

import http.client
import json
from typing import Any
from urllib.parse import urlsplit

from tests.support.daemon import Daemon

#: A small video section: cheap daemons for tests that are not about the picture.
SMALL = {"video": {"width": 320, "height": 240, "fps": 30}}


def request(d: Daemon, method: str, path: str, body: bytes | str | None = None,
            headers: dict[str, str] | None = None, timeout: float = 15.0
            ) -> tuple[int, Any]:
    """One HTTP request to the daemon; ``(status, parsed JSON or raw bytes)``."""
    u = urlsplit(d.url)
    conn = http.client.HTTPConnection(u.hostname or "127.0.0.1", u.port, timeout=timeout)
    try:
        data = body.encode() if isinstance(body, str) else body
        conn.request(method, path, body=data, headers=headers or {})
        resp = conn.getresponse()
        raw = resp.read()
    finally:
        conn.close()
    try:
        return resp.status, json.loads(raw)
    except ValueError:
        return resp.status, raw


def post_json(d: Daemon, path: str, obj: Any, **kw: Any) -> tuple[int, Any]:
    return request(d, "POST", path, json.dumps(obj),
                   {"Content-Type": "application/json", **kw.pop("headers", {})}, **kw)
