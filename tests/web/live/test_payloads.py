"""What a page receives: guest rows as the page draws them, and each message encoded once for all its pages."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import joinedload

from fogmachine.db.models import Guest
from fogmachine.services import guestview
from fogmachine.services.guests import guest_to_dict
from fogmachine.web.base import to_json
from fogmachine.web.live import payloads
from fogmachine.web.pages.view import took, when, when_exact
from tests.web.live.conftest import connect, has_guest, next_message, next_text, other_process


async def test_a_guest_row_is_what_the_page_draws(live_site):
    """The row a socket sends carries the page's buttons and printed expiry, the owner to filter on,
    and none of the fields whose change alone is no news."""
    site = live_site
    web1 = await site.guest("alice", "web1")

    def read(s):
        guest = s.scalars(select(Guest).options(joinedload(Guest.owner), joinedload(Guest.host))
                          .where(Guest.id == web1)).one()
        return guest_to_dict(guest), payloads.guest_payload(guest)

    plain, row = await site.ctx.db.run(read)
    assert row["owner_id"] == site.users["alice"] and row["owner"] == "alice"
    assert "pause" in row["actions"] and row["expires_text"] == when(plain["expires_at"])
    assert "updated_at" in plain and not set(payloads.QUIET_FIELDS) & set(row)
    assert {k: v for k, v in row.items() if k not in ("owner_id", "actions", "expires_text")} == \
        {k: v for k, v in plain.items() if k not in payloads.QUIET_FIELDS}

async def test_a_message_is_encoded_once_for_every_page_it_goes_to(live_site, database_url, monkeypatch):
    """Pages that may see the same news get one JSON text, made once per poll, not once per socket."""
    site = live_site
    web1 = await site.guest("alice", "web1")
    await site.guest("bob", "bob1")
    encoded: list[str] = []

    def counting(payload: Any) -> str:
        text = to_json(payload)
        encoded.append(text)
        return text

    monkeypatch.setattr(payloads, "to_json", counting)
    # two tabs of alice's, bob, and an administrator
    pages = [await connect(site, name) for name in ("alice", "alice", "bob", "root")]
    for ws in pages:
        await next_message(ws, lambda m: m["type"] == "snapshot")

    # a host: every page hears it, in one text encoded once (four encodings before)
    await other_process(database_url, "host", "h2", "state_reason", "cable cut")
    texts = [await next_text(ws, lambda m: any(h["state_reason"] == "cable cut" for h in m["hosts"]))
             for ws in pages]
    assert len(set(texts)) == 1 and encoded.count(texts[0]) == 1

    # alice's guest: her two tabs and the administrator get the same text, encoded once
    await other_process(database_url, "guest", web1, "state", "paused")
    alice1, alice2, _, root = pages
    texts = [await next_text(ws, has_guest(web1, state="paused")) for ws in (alice1, alice2, root)]
    assert len(set(texts)) == 1 and encoded.count(texts[0]) == 1
    for ws in pages:
        ws.close()


async def test_a_guest_page_is_what_the_page_renders(live_site):
    """The page a socket sends says what the rendered page says: the same sentence, reason and ssh line
    (``guestview.status_parts``, which renders the page too), the steps' times and durations as the template
    prints them, and the row's fields and buttons."""
    site = live_site
    web1 = await site.guest("alice", "web1")

    def read(s):
        guest = s.scalars(select(Guest).options(joinedload(Guest.owner), joinedload(Guest.host))
                          .where(Guest.id == web1)).one()
        guest.ip, guest.step_reason = "192.0.2.7", "a warning"
        s.flush()
        return payloads.page_payload(guest, guestview.status_parts(s, guest)), payloads.guest_payload(guest)

    page, row = await site.ctx.db.run(read)
    rendered = await site.ctx.db.run(guestview.guest_page, site.actor("alice"), web1)
    for key in ("sentence", "reason", "ssh", "retired"):
        assert page[key] == rendered[key], key
    assert page["reason"] == "a warning" and page["ssh"] == "ssh alice@192.0.2.7"
    assert page["steps"] == [{"step": s.step, "at": s.at, "at_text": when_exact(s.at),
                              "took_text": took(s.took_seconds), "reason": s.reason} for s in rendered["steps"]]
    assert {k: v for k, v in page.items() if k in row} == row and page["retired_text"] == ""
