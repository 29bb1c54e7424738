#!/usr/bin/env python3
"""End-to-end smoke check of the loopback Cobbler (after cobbler_server.sh start + cobbler_seed.py).

    python tests/infra/cobbler_smoke.py [XMLRPC_URL [SVC_BASE_URL]]

Creates a system on profile fm-tiny with Fogmachine's autoinstall_meta, installs a throw-away
`fogmachine_update` snippet if none exists, renders the system's autoinstall file both over XML-RPC
(generate_autoinstall) and over HTTP from the svc app, checks the %post section and the substituted
variables, then removes the system (and the throw-away snippet).  Stdlib only.  Exit 0 on success.
"""

import sys
import time
import urllib.error
import urllib.request
import xmlrpc.client

XMLRPC_URL = sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:25151/"
SVC_URL = sys.argv[2] if len(sys.argv) > 2 else "http://127.0.0.1:25152/cblr/svc/op/"
NAME = "fm-smoke-system"
MAC = "52:54:00:12:34:56"
META = {"fogmachine_server": "http://10.0.2.2:8888", "fogmachine_token": "abc", "fogmachine_mac": MAC}
SNIPPET = """\
## throw-away snippet written by tests/infra/cobbler_smoke.py
wget -q -O- "$fogmachine_server/api/hook?token=$fogmachine_token&mac=$fogmachine_mac&system=$system_name"
"""


def timed(label, fn, *args):
    t0 = time.perf_counter()
    out = fn(*args)
    print(f"{label:<44} {(time.perf_counter() - t0) * 1000:7.1f} ms")
    return out


def main():
    s = xmlrpc.client.ServerProxy(XMLRPC_URL, allow_none=True)
    print("version:", s.version())
    tok = timed("login", s.login, "cobbler", "cobbler")
    if s.get_profile("fm-tiny") == "~":
        sys.exit("profile fm-tiny missing: run tests/infra/cobbler_seed.py first")

    wrote_snippet = False
    try:
        s.read_autoinstall_snippet("fogmachine_update", tok)
        print("snippet fogmachine_update already exists; using it")
    except xmlrpc.client.Fault:
        timed("write_autoinstall_snippet", s.write_autoinstall_snippet, "fogmachine_update", SNIPPET, tok)
        wrote_snippet = True

    if s.get_system(NAME) != "~":
        s.remove_system(NAME, tok)
    h = timed("new_system", s.new_system, tok)
    s.modify_system(h, "name", NAME, tok)
    s.modify_system(h, "profile", "fm-tiny", tok)
    s.modify_system(h, "hostname", NAME, tok)
    s.modify_system(h, "modify_interface", {"macaddress-eth0": MAC}, tok)
    s.modify_system(h, "autoinstall_meta", META, tok)
    timed("save_system", s.save_system, h, tok)
    try:
        found = s.find_system({"mac_address": MAC})
        assert found == [NAME], found

        rendered = timed("generate_autoinstall('', NAME)", s.generate_autoinstall, "", NAME)
        url = SVC_URL + "autoinstall/system/" + NAME
        t0 = time.perf_counter()
        with urllib.request.urlopen(url, timeout=10) as resp:
            body = resp.read().decode()
            ms = (time.perf_counter() - t0) * 1000
            print(f"{'GET svc autoinstall/system/NAME':<44} {ms:7.1f} ms  HTTP {resp.status}")
        print("---- rendered over HTTP ----")
        print(body, end="" if body.endswith("\n") else "\n")
        print("----------------------------")
        assert body == rendered, "HTTP and XML-RPC renderings differ"
        post = body[body.index("%post") :]
        assert "%end" in post, "no %end after %post"
        if wrote_snippet:
            for v in META.values():
                assert v in post, f"autoinstall_meta value {v!r} not substituted in the snippet"
            assert NAME in post
        try:
            urllib.request.urlopen(SVC_URL + "autoinstall/system/no-such-system", timeout=10)
            raise AssertionError("missing system did not 404")
        except urllib.error.HTTPError as exc:
            assert exc.code == 404, exc.code
            print(f"missing system -> HTTP {exc.code} {exc.read().decode()!r}")
    finally:
        timed("remove_system", s.remove_system, NAME, tok)
        if wrote_snippet:
            s.remove_autoinstall_snippet("fogmachine_update", tok)
    assert s.get_system(NAME) == "~"
    print("OK")


if __name__ == "__main__":
    main()
