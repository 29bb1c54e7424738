"""Cobbler 3's XML-RPC API, spoken over Tornado's non-blocking HTTP client.

Why not ``xmlrpc.client.ServerProxy`` in an executor: it blocks a thread per
call and cannot be given a deadline per request; Tornado's client waits on the
IOLoop and has connect and request timeouts. ``xmlrpc.client`` still does the
(de)serialization, so the wire format is exactly what Cobbler expects.

This module is the ONE place where Cobbler's faults and transport failures
become Fogmachine errors (``_translate``): the rest of the code never sees an
``xmlrpc.client.Fault`` or a socket error. Cobbler's own message is kept, minus
the Python class name it prefixes (``<class 'cobbler.cexceptions.CX'>:'...'``).

Logins are cached: Cobbler keeps a token alive for an hour after its last use.
When Cobbler has forgotten it (restart, expiry) the call fails with an
"invalid token" fault; the client logs in again once and repeats the call.

Always ``autoinstall``/``autoinstall_meta``: Cobbler 3.3 accepts the legacy
``kickstart``/``ks_meta`` and silently stores nothing.
"""

from __future__ import annotations

import asyncio
import logging
import re
import ssl
import xmlrpc.client
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, cast
from urllib.parse import urlsplit, urlunsplit
from xml.parsers.expat import ExpatError

import tornado.httpclient

from fogmachine.errors import BackendTimeout, CobblerError, FogmachineError

log = logging.getLogger(__name__)

MISSING = "~"  # what get_<item>(name) answers for an object that does not exist
_FAULT_PREFIX = re.compile(r"^<class '[\w.]+'>:")
_INVALID_TOKEN = re.compile(r"invalid token|\"token\" did not have the correct format", re.IGNORECASE)
# Cobbler echoes the token it refused ("invalid token: <token>"): whatever follows never leaves here.
_TOKEN_ECHO = re.compile(r"(invalid token)\s*:?\s*\S+", re.IGNORECASE)
REDACTED = "***"


class CobblerUnreachable(CobblerError):
    """Cobbler could not be reached at all (refused, no route, DNS, TLS, HTTP error page)."""

    code = "cobbler_unreachable"


class CobblerTimeout(BackendTimeout):
    code = "cobbler_timeout"


def clean_fault(text: str) -> str:
    """Cobbler's message without the ``<class '...'>:`` prefix and the quotes around it."""
    text = _FAULT_PREFIX.sub("", text.strip(), count=1).strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        text = text[1:-1]
    return text


def public_url(url: str) -> str:
    """The URL without a password, for messages and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.hostname or ""
    if parts.username:
        netloc = f"{parts.username}@{netloc}"
    if parts.port:
        netloc = f"{netloc}:{parts.port}"
    return urlunsplit(parts._replace(netloc=netloc))


@dataclass(frozen=True)
class SystemSpec:
    """What Fogmachine registers in Cobbler for one guest."""

    name: str
    mac: str
    hostname: str
    profile: str | None = None
    image: str | None = None
    autoinstall_meta: Mapping[str, Any] = field(default_factory=dict)
    netboot_enabled: bool = False
    interface: str = "eth0"


class CobblerClient:
    """One Cobbler server: its URL, credentials, a cached token and an HTTP client of its own."""

    def __init__(self, url: str, user: str, password: str, *, timeout: float = 10.0, max_clients: int = 16) -> None:
        if not url:
            raise ValueError("CobblerClient needs a URL")
        self.url = url
        self.display_url = public_url(url)
        self.user = user
        self.password = password
        self.timeout = timeout
        self._max_clients = max_clients
        self._http: tornado.httpclient.AsyncHTTPClient | None = None
        self._token: str | None = None
        self._login_lock: asyncio.Lock | None = None
        self.calls = 0  # XML-RPC calls made, for tests and benchmarks

    # -- the component interface -------------------------------------------------------------
    async def start(self) -> None:
        self._client()

    async def stop(self) -> None:
        if self._http is not None:
            self._http.close()
            self._http = None
        self._token = None

    def _client(self) -> tornado.httpclient.AsyncHTTPClient:
        if self._http is None:
            # force_instance: our own queue and connection limit, closed by stop().
            self._http = tornado.httpclient.AsyncHTTPClient(force_instance=True, max_clients=self._max_clients)
        return self._http

    # -- transport and the one place errors are translated -------------------------------------
    async def _post(self, method: str, params: tuple[Any, ...], secret: str | None = None) -> Any:
        """One XML-RPC call; ``secret`` (the session token or the password it carries) never appears in
        the error it may raise, nor in a log line."""
        body = xmlrpc.client.dumps(params, method, allow_none=True).encode("utf-8")
        request = tornado.httpclient.HTTPRequest(
            self.url, method="POST", body=body, headers={"Content-Type": "text/xml"},
            connect_timeout=self.timeout, request_timeout=self.timeout, follow_redirects=False,
        )
        self.calls += 1
        try:
            response = await self._client().fetch(request, raise_error=False)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            raise self._translate(method, exc, secret=secret) from exc
        if response.code != 200:
            raise self._translate(method, response.error or RuntimeError(f"HTTP {response.code}"),
                                  status=response.code, secret=secret)
        try:
            result, _ = xmlrpc.client.loads(response.body, use_builtin_types=True)
        except Exception as exc:
            raise self._translate(method, exc, secret=secret) from exc
        return result[0] if result else None

    def _redact(self, text: str, secret: str | None) -> str:
        """Cobbler's text without any credential: the token or password this call carried, the cached
        token, and whatever follows "invalid token"."""
        for value in (secret, self._token):
            if value and len(value) >= 4:
                text = text.replace(value, REDACTED)
        return _TOKEN_ECHO.sub(rf"\1: {REDACTED}", text)

    def _translate(self, method: str, exc: BaseException, status: int | None = None,
                   secret: str | None = None) -> FogmachineError:
        """Every failure of a Cobbler call becomes a Fogmachine error here, and only here."""
        where = f"Cobbler at {self.display_url}"
        if isinstance(exc, xmlrpc.client.Fault):
            message = self._redact(clean_fault(exc.faultString), secret)
            log.info("Cobbler %s failed: %s", method, message)
            return CobblerError(f"Cobbler: {message}", details={"cobbler_url": self.display_url, "method": method,
                                                                  "fault": message})
        details = {"cobbler_url": self.display_url, "method": method}
        if isinstance(exc, tornado.httpclient.HTTPClientError) and exc.code == 599 and "timeout" in str(exc).lower():
            return CobblerTimeout(f"{where} did not answer {method} within {self.timeout:g} s", details=details)
        if isinstance(exc, TimeoutError):
            return CobblerTimeout(f"{where} did not answer {method} within {self.timeout:g} s", details=details)
        if status is not None:
            return CobblerUnreachable(f"{where} answered HTTP {status}: is this Cobbler's XML-RPC URL?",
                                      details={**details, "http_status": status})
        if isinstance(exc, xmlrpc.client.ResponseError | xmlrpc.client.ProtocolError | ValueError | ExpatError):
            return CobblerUnreachable(f"{where} did not answer with XML-RPC: is this Cobbler's XML-RPC URL?",
                                      details=details)
        if isinstance(exc, OSError | ssl.SSLError | tornado.httpclient.HTTPClientError):
            reason = self._redact(getattr(exc, "strerror", None) or str(exc) or type(exc).__name__, secret)
            return CobblerUnreachable(f"{where} is unreachable: {reason}", details=details)
        log.exception("unexpected error calling Cobbler %s", method)
        return CobblerError(f"{where}: {method} failed: {type(exc).__name__}", details=details)

    # -- calls -----------------------------------------------------------------------------------
    async def call(self, method: str, *params: Any) -> Any:
        """An anonymous call (reads)."""
        return await self._post(method, params)

    async def _login(self, stale: str | None) -> str:
        if self._login_lock is None:
            self._login_lock = asyncio.Lock()
        async with self._login_lock:
            if self._token is not None and self._token != stale:
                return self._token  # someone else logged in while we waited
            try:
                token = str(await self._post("login", (self.user, self.password), secret=self.password))
            except CobblerError as exc:
                if "login failed" in exc.message:
                    raise CobblerError(f"Cobbler at {self.display_url} refused the login of user {self.user!r}; "
                                       "check cobbler_user and cobbler_password",
                                       details={"cobbler_url": self.display_url}) from exc
                raise
            self._token = token
            return token

    async def authed(self, method: str, *params: Any) -> Any:
        """A call that takes the login token as its last argument; logs in again once if Cobbler forgot it."""
        token = self._token or await self._login(None)
        try:
            return await self._post(method, (*params, token), secret=token)
        except CobblerError as exc:
            if not _INVALID_TOKEN.search(exc.details.get("fault", "")):
                raise
            log.info("Cobbler token expired; logging in again")
            token = await self._login(token)
            return await self._post(method, (*params, token), secret=token)

    # -- what Fogmachine uses --------------------------------------------------------------------
    async def version(self) -> float:
        return float(await self.call("version"))

    async def list_profiles(self) -> list[dict[str, Any]]:
        return cast(list[dict[str, Any]], await self.call("get_profiles"))

    async def list_images(self) -> list[dict[str, Any]]:
        return cast(list[dict[str, Any]], await self.call("get_images"))

    async def list_systems(self) -> list[dict[str, Any]]:
        return cast(list[dict[str, Any]], await self.call("get_systems"))

    async def list_distros(self) -> list[dict[str, Any]]:
        return cast(list[dict[str, Any]], await self.call("get_distros"))

    async def settings(self) -> dict[str, Any]:
        return cast(dict[str, Any], await self.call("get_settings"))

    async def get_profile(self, name: str, resolved: bool = True) -> dict[str, Any] | None:
        found = await self.call("get_profile", name, False, resolved)
        return None if found == MISSING else found

    async def get_image(self, name: str, resolved: bool = True) -> dict[str, Any] | None:
        found = await self.call("get_image", name, False, resolved)
        return None if found == MISSING else found

    async def get_system(self, name: str, resolved: bool = False) -> dict[str, Any] | None:
        found = await self.call("get_system", name, False, resolved)
        return None if found == MISSING else found

    async def blended_profile(self, name: str) -> dict[str, Any]:
        """Everything a profile resolves to, distro included (kernel, initrd, kernel options, breed)."""
        return cast(dict[str, Any], await self.call("get_blended_data", name, ""))

    async def find_system(self, criteria: Mapping[str, Any]) -> list[str]:
        return cast(list[str], await self.call("find_system", dict(criteria)))

    async def new_system(self) -> str:
        return str(await self.authed("new_system"))

    async def modify_system(self, handle: str, field_name: str, value: Any) -> None:
        await self.authed("modify_system", handle, field_name, value)

    async def save_system(self, handle: str) -> None:
        await self.authed("save_system", handle)

    async def create_system(self, spec: SystemSpec) -> None:
        """get_system (must not exist), new_system, one modify per field, save_system."""
        if (spec.profile is None) == (spec.image is None):
            raise ValueError("a system needs exactly one of profile and image")
        # save_system silently replaces a system of the same name: never clobber someone else's.
        # (Asked beside new_system: an unsaved handle costs Cobbler nothing.)
        existing, handle = await asyncio.gather(self.get_system(spec.name), self.new_system())
        if existing is not None:
            raise CobblerError(f"Cobbler already has a system named {spec.name}; remove it there or pick "
                               "another name", details={"cobbler_url": self.display_url, "system": spec.name})
        fields: list[tuple[str, Any]] = [
            ("name", spec.name),
            ("profile", spec.profile) if spec.profile is not None else ("image", spec.image),
            ("hostname", spec.hostname),
            ("modify_interface", {f"macaddress-{spec.interface}": spec.mac}),
            ("autoinstall_meta", dict(spec.autoinstall_meta)),
            ("netboot_enabled", spec.netboot_enabled),
        ]
        for field_name, value in fields:
            await self.modify_system(handle, field_name, value)
        await self.save_system(handle)

    async def edit_system(self, name: str, changes: Mapping[str, Any]) -> None:
        """Change some fields of an existing system (get_system_handle, one modify per field, save_system)."""
        handle = await self.authed("get_system_handle", name)
        for field_name, value in changes.items():
            await self.modify_system(handle, field_name, value)
        await self.save_system(handle)

    async def remove_system(self, name: str) -> bool:
        """Remove the system; True if it existed. A missing system is not an error (undo may repeat)."""
        if await self.get_system(name) is None:
            return False
        await self.authed("remove_system", name)
        return True

    async def write_autoinstall_template(self, name: str, text: str) -> None:
        await self.authed("write_autoinstall_template", name, text)

    async def write_autoinstall_snippet(self, name: str, text: str) -> None:
        await self.authed("write_autoinstall_snippet", name, text)

    async def read_autoinstall_snippet(self, name: str) -> str:
        return str(await self.authed("read_autoinstall_snippet", name))

    async def generate_autoinstall(self, system: str) -> str:
        return str(await self.call("generate_autoinstall", "", system))
