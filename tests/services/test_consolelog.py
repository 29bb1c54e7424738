"""The serial console log's tail: real files, with what consoles really write (escapes, bells, bad UTF-8)."""

from __future__ import annotations

import os

from fogmachine.services import consolelog

CONSOLE = (b"\x1b[0;32m[  OK  ]\x1b[0m Started \x1b]0;title\x07sshd.\r\n"
           b"bell\x07 nul\x00 del\x7f c1\xc2\x9b done\r\n"
           b"bad utf-8: \xff\xfe caf\xc3\xa9\ttab\n"
           b"web1 login: ")


def test_clean_keeps_text_and_drops_what_is_not():
    text = consolelog.clean(CONSOLE)
    assert text == ("[  OK  ] Started sshd.\n"
                    "bell nul del c1 done\n"
                    "bad utf-8: \ufffd\ufffd caf\u00e9\ttab\n"
                    "web1 login: ")


def test_a_cut_drops_the_partial_first_line():
    assert consolelog.clean(b"\xa9rtial line\nwhole line\n", cut=True) == "whole line\n"
    assert consolelog.clean(b"no newline at all", cut=True) == "no newline at all"


def test_read_tail_reads_the_end_only(tmp_path):
    path = tmp_path / "web1.log"
    path.write_bytes(b"x" * 10_000 + b"\nthe end\n")
    raw, truncated = consolelog.read_tail(str(path))
    assert truncated and len(raw) == consolelog.TAIL_BYTES and raw.endswith(b"\nthe end\n")
    path.write_bytes(b"short\n")
    assert consolelog.read_tail(str(path)) == (b"short\n", False)
    assert consolelog.read_tail(str(tmp_path / "none.log")) is None


def test_a_symbolic_link_is_not_followed(tmp_path):
    secret = tmp_path / "secret"
    secret.write_text("not a console\n")
    os.symlink(secret, tmp_path / "web1.log")
    assert consolelog.read_tail(str(tmp_path / "web1.log")) is None


async def test_tail_says_why_there_is_nothing(tmp_path):
    assert "keeps no serial console logs" in (await consolelog.tail("", "web1", "h1")).note
    assert "cannot be a log file's name" in (await consolelog.tail(str(tmp_path), "../etc/passwd", "h1")).note
    elsewhere = await consolelog.tail(str(tmp_path), "web1", "h1")
    assert elsewhere.text == "" and f"on its host h1, in {tmp_path}/web1.log" in elsewhere.note
    assert "not on the Fogmachine server" in elsewhere.note
    (tmp_path / "web1.log").write_bytes(b"\x1b[2J\r\n")
    assert (await consolelog.tail(str(tmp_path), "web1", "h1")).note == "The console log is empty so far."
    (tmp_path / "web1.log").write_bytes(CONSOLE)
    found = await consolelog.tail(str(tmp_path) + "/", "web1", "h1")
    assert found.text.endswith("web1 login: ") and found.path == f"{tmp_path}/web1.log" and not found.truncated
