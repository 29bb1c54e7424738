"""Two Fogmachine server processes sharing one database: password guesses made through either
are throttled by both, per account and address, and never lock the account itself."""

from __future__ import annotations

import asyncio
import base64
import json

from tests.system.test_accounts_two_processes import PASSWORD, Browser, two_servers

__all__ = ["two_servers"]


async def test_password_guesses_through_both_processes_count_together(two_servers):
    a, b = two_servers
    run = asyncio.to_thread
    attacker = Browser(source="127.0.0.2")
    codes = []
    for server in (a, b, a, b, a, b, a):
        codes.append(await run(attacker.login, server, "ann", "not the password"))
    assert codes == [401] * 5 + [429, 429]  # five failures over two processes lock the pair in both
    token_request = {"Authorization": "Basic " + base64.b64encode(f"ann:{PASSWORD}".encode()).decode(),
                     "Content-Type": "application/json"}
    code, _ = await run(attacker.request, b, "/api/v1/tokens", None, token_request, json.dumps({"name": "x"}).encode())
    assert code == 429  # Basic auth on token creation is the same login
    owner = Browser(source="127.0.0.3")
    assert await run(owner.login, a, "ann") == 303  # the account itself is not locked
    script = Browser(source="127.0.0.3")  # a script: no cookies, only Basic credentials
    code, _ = await run(script.request, b, "/api/v1/tokens", None, token_request, json.dumps({"name": "y"}).encode())
    assert code == 201
