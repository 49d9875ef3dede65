"""``JsonFormatter``: the JSON line ``log.format: json`` writes, and the session stamp."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from reactor.runtime.logs import set_log_session, setup_logging


def test_json_log_lines_carry_the_session_and_the_traceback(tmp_path: Path) -> None:
    path = tmp_path / "egress.log"
    root = logging.getLogger()
    saved = list(root.handlers), root.level
    try:
        setup_logging(path, "egress", level="info", format="json")
        log = logging.getLogger("reactor.test")
        log.info("before")
        set_log_session("abc123")
        try:
            raise ValueError("bad frame")
        except ValueError:
            log.exception("it failed: %s", "details")
        set_log_session(None)
        log.debug("not at info")
        for h in root.handlers:
            h.flush()
    finally:
        for h in list(root.handlers):
            root.removeHandler(h)
            h.close()
        for h in saved[0]:
            root.addHandler(h)
        root.setLevel(saved[1])
    before, failed = (json.loads(line) for line in path.read_text().splitlines())
    assert before["session"] is None and before["message"] == "before"
    assert before["worker"] == "egress" and before["logger"] == "reactor.test"
    assert failed["session"] == "abc123" and failed["level"] == "error"
    assert failed["message"] == "it failed: details"
    assert failed["exception"].splitlines()[-1] == "ValueError: bad frame"
