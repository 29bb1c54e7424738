"""Who is acting: the one value every service takes to decide what is allowed.

Authorization lives in the services, not in templates: a service receives an
``Actor`` and refuses what that actor may not do, whichever door (page, API,
periodic task) the request came through.
"""

from __future__ import annotations

from dataclasses import dataclass

from fogmachine.errors import PermissionDenied


@dataclass(frozen=True)
class Actor:
    user_id: int | None
    username: str
    is_admin: bool = False
    remote_addr: str = ""
    # "write" or "read": an API token with scope read may not change anything.
    scope: str = "write"
    # The server-side login session the request came with (services/sessions.py); None for
    # API tokens, Basic auth and the system.
    session_id: int | None = None

    @classmethod
    def system(cls, task: str = "system") -> Actor:
        """Fogmachine itself (periodic tasks, reconciliation): allowed everything."""
        return cls(user_id=None, username=task, is_admin=True)

    def may_act_on(self, owner_id: int | None) -> bool:
        return self.is_admin or (owner_id is not None and owner_id == self.user_id)

    def require_write(self) -> None:
        if self.scope != "write":
            raise PermissionDenied("this API token has the read scope; it cannot change anything")

    def require_admin(self) -> None:
        if not self.is_admin:
            raise PermissionDenied("only administrators may do this")
