"""The log never carries raw control characters: one record is one line, whatever a client sent.

Through the real logging set-up (fogmachine.logs.setup) and the real server:
a phone-home whose ``ip`` carries ``\\nFAKE LOG LINE``, a checkout with such a
guest name, a login with such a user name, then every line of the log is read.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest

from fogmachine.config import Config
from fogmachine.logs import TRACEBACK_INDENT, escape_controls
from tests.support.logcapture import server_log
from tests.web.test_callbacks import TOKEN, _installing

FORGED = "\nFAKE LOG LINE"
RECORD_START = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} [A-Z]+ ")


def assert_one_line_per_record(text: str) -> None:
    for line in text.split("\n"):
        if line:
            assert RECORD_START.match(line) or line.startswith(TRACEBACK_INDENT), f"forged or broken line: {line!r}"
    assert not re.search(r"[\x00-\x08\x0b-\x1f\x7f\u2028\u2029]", text), "a raw control character in the log"


@pytest.mark.parametrize("text", ["a\nFAKE", "a\r\nFAKE", "a\x00b", "a\x1b[31mred", "a\u2028FAKE", "a\x85FAKE",
                                  "a\u202eevil"], ids=ascii)
def test_messages_and_arguments_are_escaped(text: str) -> None:
    with server_log("info") as buffer:
        logging.getLogger("fogmachine.test").warning("got %s and %r" + text, text, text)
    out = buffer.getvalue()
    assert out.count("\n") == 1, out
    assert_one_line_per_record(out)
    assert escape_controls(text) in out


def test_a_traceback_keeps_its_lines_indented_even_when_the_exception_carries_a_newline() -> None:
    with server_log("info") as buffer:
        try:
            raise ValueError("bad value" + FORGED)
        except ValueError:
            logging.getLogger("fogmachine.test").exception("it failed with %s", "x" + FORGED)
    out = buffer.getvalue()
    assert_one_line_per_record(out)
    assert "Traceback (most recent call last)" in out and "FAKE LOG LINE" in out


@pytest.fixture
async def installing(make_config: Callable[..., Config], start_server: Callable[..., Any], tmp_path: Path,
                     database_url: str) -> Any:
    """A server with one guest waiting for its phone-home, whose token is TOKEN (the callbacks tests' own)."""
    return await _installing(make_config, start_server, tmp_path, database_url)


async def test_client_text_with_control_characters_never_forges_a_log_line(installing: Any) -> None:
    srv = installing
    with server_log("debug") as buffer:
        query = urlencode({"token": TOKEN, "ip": "::1%a" + FORGED, "hostname": "web1"})
        await srv.fetch(f"/guest/{srv.guest.mac}/set?{query}")
        await srv.fetch(f"/guest/{srv.guest.mac}/set?" + urlencode({"token": "wrong" + FORGED, "ip": "::1"}))
        await srv.fetch("/api/v1/guests", method="POST", body={"name": "bad" + FORGED, "target": "announce",
                                                                 "days": 1, "purpose": "x" + FORGED})
        page = await srv.fetch("/login")
        xsrf = page.headers.get_list("Set-Cookie")[0].split("=", 1)[1].split(";", 1)[0]
        await srv.fetch("/login", method="POST", body=urlencode({"username": "x" + FORGED, "password": "p" + FORGED,
                                                                 "_xsrf": xsrf}),
                        headers={"Cookie": f"_xsrf={xsrf}", "Content-Type": "application/x-www-form-urlencoded",
                                 "User-Agent": "agent\tFAKE"})
    out = buffer.getvalue()
    assert "/guest/" in out  # the requests were logged at all
    assert_one_line_per_record(out)


@pytest.mark.parametrize(("uri", "expected"), [
    ("/guest/x/set?token=abc&ip=1.2.3.4", "/guest/x/set?token=***&ip=1.2.3.4"),
    ("/x?%74oken=abc&new_password=p&_xsrf=2%7Ca&api_key=k", "/x?%74oken=***&new_password=***&_xsrf=***&api_key=***"),
    ("/x?ip=1.2.3.4", "/x?ip=1.2.3.4"),
    ("/x", "/x"),
])
def test_the_request_log_masks_every_secret_looking_parameter(uri: str, expected: str) -> None:
    from fogmachine.logs import redact_uri

    assert redact_uri(uri) == expected


def test_a_credential_in_any_record_is_masked() -> None:
    secret = "s3cr3t-VALUE-0123456789"
    with server_log("debug") as buffer:
        log = logging.getLogger("fogmachine.test")
        log.info("calling http://h/x?token=%s&a=1", secret)
        log.info("headers %r", {"Authorization": f"Bearer {secret}", "Cookie": f"fm_session={secret}"})
        log.info("password=%s", secret)
        log.info("a failed form's cookie fm_form=%s", secret)  # what someone typed, not the log's business
        try:
            raise RuntimeError(f"failed for /guest/m/set?token={secret}")
        except RuntimeError:
            log.exception("boom")
    assert secret not in buffer.getvalue()
