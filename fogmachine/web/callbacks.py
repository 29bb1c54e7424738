"""The routes guests call from their installer: ``/guest/<mac>/set``, ``/guest/<mac>/getuser`` and
``/guest/<mac>/env`` (an environment's variables, as its tier resolved them).

These keep the 2009 original's paths so existing kickstart snippets work with
one change (the token). Guests are not browsers: no session, no XSRF cookie;
the guest's own phone-home token is the credential. Answers are short JSON
(a shell script only looks at the HTTP status).
"""

from __future__ import annotations

from typing import Any

from fogmachine.services import phonehome
from fogmachine.web.base import JsonHandler

MAC_PATTERN = r"([0-9A-Fa-f:-]{12,17})"


class GuestCallbackHandler(JsonHandler):
    """No user to load and no XSRF: a guest authenticates with its token alone."""

    async def prepare(self) -> None:
        self.current_user = None

    def check_xsrf_cookie(self) -> None:
        pass

    def arg(self, name: str) -> str:
        """The argument exactly as sent (query string or form body, whichever the guest's tool uses).

        Not ``get_argument``: that strips whitespace and turns control characters into spaces, so
        ``10.0.2.15\\x00`` or ``web1\\n`` would arrive looking valid. The service's validators see the
        client's real text and refuse it whole. Undecodable bytes are a 400 (Tornado's decode_argument).
        """
        values = self.request.arguments.get(name)
        if not values:
            return ""
        return self.decode_argument(values[-1], name=name)[:512]


class SetHandler(GuestCallbackHandler):
    async def get(self, mac: str) -> None:
        guest = await phonehome.announce(self.ctx, mac, self.arg("token"), self.arg("ip"), self.arg("hostname"),
                                         self.request.remote_ip or "")
        self.write_json({"name": guest.name, "ip": guest.ip, "hostname": guest.hostname, "step": guest.step})

    async def post(self, mac: str) -> None:
        await self.get(mac)


class GetUserHandler(GuestCallbackHandler):
    async def get(self, mac: str) -> None:
        owner: dict[str, Any] = await phonehome.owner(self.ctx, mac, self.arg("token"), self.request.remote_ip or "")
        self.write_json(owner)

    async def post(self, mac: str) -> None:
        await self.get(mac)


class EnvHandler(GuestCallbackHandler):
    async def get(self, mac: str) -> None:
        self.write_json(await phonehome.environment(self.ctx, mac, self.arg("token"), self.request.remote_ip or ""))


default_handlers = [
    (rf"/guest/{MAC_PATTERN}/env", EnvHandler),
    (rf"/guest/{MAC_PATTERN}/set", SetHandler),
    (rf"/guest/{MAC_PATTERN}/getuser", GetUserHandler),
]
