"""The Cobbler client against the real loopback Cobbler, and its error translation."""

from __future__ import annotations

import asyncio
import socket
import urllib.request
from collections.abc import AsyncIterator

import pytest

from fogmachine.cobbler import CobblerClient, CobblerTimeout, CobblerUnreachable, SystemSpec, clean_fault
from fogmachine.cobbler.client import public_url
from fogmachine.errors import CobblerError
from tests.support import cobbler as support

PREFIX = "fmtest-client-"


def test_clean_fault_drops_the_python_class() -> None:
    assert clean_fault("<class 'cobbler.cexceptions.CX'>:'invalid token: x'") == "invalid token: x"
    assert clean_fault("<class 'ValueError'>:virt_ram needs to be an integer") == "virt_ram needs to be an integer"
    assert clean_fault("plain") == "plain"


def test_public_url_hides_a_password() -> None:
    assert public_url("http://u:secret@cobbler:80/cobbler_api") == "http://u@cobbler:80/cobbler_api"
    assert public_url("http://cobbler/cobbler_api") == "http://cobbler/cobbler_api"


@pytest.fixture
async def client(cobbler_server: None) -> AsyncIterator[CobblerClient]:
    client = CobblerClient(support.XMLRPC_URL, support.USER, support.PASSWORD, timeout=10)
    yield client
    await client.stop()
    support.remove_systems(PREFIX)


def _spec(suffix: str, mac: str, **kw: object) -> SystemSpec:
    return SystemSpec(name=PREFIX + suffix, mac=mac, hostname=PREFIX + suffix, **kw)  # type: ignore[arg-type]


@pytest.mark.cobbler
async def test_system_round_trip_with_autoinstall_meta(client: CobblerClient) -> None:
    assert await client.version() >= 3.3
    meta = {"fogmachine_server": "http://10.0.2.2:8888", "fogmachine_token": "tok-123",
            "fogmachine_mac": "52:54:00:aa:00:01"}
    await client.create_system(_spec("a", "52:54:00:aa:00:01", profile=support.PROFILE, autoinstall_meta=meta))
    system = await client.get_system(PREFIX + "a")
    assert system is not None
    assert system["autoinstall_meta"] == meta and system["profile"] == support.PROFILE
    assert system["interfaces"]["eth0"]["mac_address"] == "52:54:00:aa:00:01"
    assert await client.find_system({"mac_address": "52:54:00:aa:00:01"}) == [PREFIX + "a"]
    # The installed snippet renders with the system's variables, over XML-RPC and from the svc app.
    rendered = await client.generate_autoinstall(PREFIX + "a")
    url = f"{support.SVC_URL}/autoinstall/system/{PREFIX}a"
    over_http = await asyncio.get_running_loop().run_in_executor(
        None, lambda: urllib.request.urlopen(url, timeout=10).read().decode())
    assert rendered == over_http
    post = rendered[rendered.index("%post"):]
    for value in ("fm_token='tok-123'", "fm_mac='52:54:00:aa:00:01'", "fm_server='http://10.0.2.2:8888'",
                  f"fm_name='{PREFIX}a'", "/guest/$fm_mac/set", "/guest/$fm_mac/getuser"):
        assert value in post
    assert await client.remove_system(PREFIX + "a") is True
    assert await client.get_system(PREFIX + "a") is None
    assert await client.remove_system(PREFIX + "a") is False


@pytest.mark.cobbler
async def test_faults_keep_cobblers_message(client: CobblerClient) -> None:
    await client.create_system(_spec("b", "52:54:00:aa:00:02", profile=support.PROFILE))
    with pytest.raises(CobblerError) as info:
        await client.create_system(_spec("c", "52:54:00:aa:00:02", profile=support.PROFILE))
    assert info.value.status == 502
    assert "MAC address duplicate found" in info.value.message
    with pytest.raises(CobblerError) as info:
        await client.create_system(_spec("d", "52:54:00:aa:00:04", profile="fmtest-no-such-profile"))
    assert "fmtest-no-such-profile" in info.value.message
    assert await client.get_system(PREFIX + "d") is None


@pytest.mark.cobbler
async def test_an_existing_system_of_that_name_is_never_replaced(client: CobblerClient) -> None:
    await client.create_system(_spec("e", "52:54:00:aa:00:05", profile=support.PROFILE))
    with pytest.raises(CobblerError) as info:
        await client.create_system(_spec("e", "52:54:00:aa:00:06", profile=support.PROFILE))
    assert "already has a system named" in info.value.message
    system = await client.get_system(PREFIX + "e")
    assert system is not None and system["interfaces"]["eth0"]["mac_address"] == "52:54:00:aa:00:05"


@pytest.mark.cobbler
async def test_a_forgotten_token_means_one_new_login(client: CobblerClient) -> None:
    await client.create_system(_spec("f", "52:54:00:aa:00:07", profile=support.PROFILE))
    first = client._token
    client._token = "A" * len(first or "x" * 36)  # what Cobbler answers after a restart: "invalid token"
    assert await client.remove_system(PREFIX + "f") is True
    assert client._token not in (None, "A" * len(first or "x" * 36))


@pytest.mark.cobbler
async def test_a_wrong_password_says_which_setting(client: CobblerClient) -> None:
    bad = CobblerClient(support.XMLRPC_URL, support.USER, "wrong", timeout=5)
    try:
        with pytest.raises(CobblerError) as info:
            await bad.create_system(_spec("g", "52:54:00:aa:00:08", profile=support.PROFILE))
        assert "cobbler_password" in info.value.message
    finally:
        await bad.stop()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_unreachable_cobbler_is_a_502_naming_the_url() -> None:
    url = f"http://127.0.0.1:{_free_port()}/"
    client = CobblerClient(url, "u", "p", timeout=5)
    try:
        with pytest.raises(CobblerUnreachable) as info:
            await client.version()
        assert info.value.status == 502 and url in info.value.message
        assert info.value.details["cobbler_url"] == url
    finally:
        await client.stop()


async def test_a_silent_cobbler_times_out_with_504() -> None:
    hold: list[asyncio.StreamWriter] = []

    async def never_answer(_r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        hold.append(w)

    server = await asyncio.start_server(never_answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    client = CobblerClient(f"http://127.0.0.1:{port}/", "u", "p", timeout=0.3)
    try:
        with pytest.raises(CobblerTimeout) as info:
            await client.version()
        assert info.value.status == 504 and "within 0.3 s" in info.value.message
    finally:
        await client.stop()
        for w in hold:
            w.close()
        server.close()
        await server.wait_closed()


async def test_something_that_is_not_xmlrpc_is_reported_as_such() -> None:
    async def not_xmlrpc(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await r.readuntil(b"\r\n\r\n")
        w.write(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello")
        await w.drain()
        w.close()

    server = await asyncio.start_server(not_xmlrpc, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    client = CobblerClient(f"http://127.0.0.1:{port}/", "u", "p", timeout=5)
    try:
        with pytest.raises(CobblerUnreachable) as info:
            await client.version()
        assert "did not answer with XML-RPC" in info.value.message
    finally:
        await client.stop()
        server.close()
        await server.wait_closed()


@pytest.mark.cobbler
async def test_a_wrong_path_on_a_web_server_is_reported_with_the_http_status(cobbler_server: None) -> None:
    client = CobblerClient("http://127.0.0.1:25152/not-cobbler", "u", "p", timeout=5)
    try:
        with pytest.raises(CobblerUnreachable) as info:
            await client.version()
        assert "answered HTTP 404" in info.value.message
    finally:
        await client.stop()
