"""Checkout: the catalog with each target's size, and the form that checks a guest out.

Before the form is sent, the page says which host would take the chosen
target or why none can (``checkout.preview``): the page's script asks the
API's ``GET /api/v1/catalog/placement`` as the choice changes (one preview,
one error shape; a GET needs no XSRF token, so the session cookie is enough),
and this handler renders the same answer for a chosen ``?target=`` so it works
without script too.
"""

from __future__ import annotations

from typing import Any

from fogmachine.errors import FogmachineError
from fogmachine.services import checkout
from fogmachine.web.pages.common import DashboardHandler, login_required

DEFAULT_DAYS = 7
FORM = "checkout"
FIELDS = ("target", "name", "days", "purpose")


class CheckoutHandler(DashboardHandler):
    async def _catalog(self) -> tuple[list[Any], str, bool]:
        catalog = self.ctx.catalog
        if catalog is None:
            return [], "The catalog is not available on this server.", True
        found = await catalog.entries()
        return list(found.entries), getattr(found, "error", ""), bool(found.stale)

    async def _preview(self, target: str) -> dict[str, Any] | None:
        if not target:
            return None
        try:
            return await checkout.preview(self.ctx, self.actor, target)
        except FogmachineError as exc:
            return {"fits": False, "host": None, "reason": exc.message, "hosts": []}

    async def _page(self) -> None:
        """The page: the catalog, the preview of the chosen target, and the form as usual or as it failed."""
        form = {"target": self.get_query_argument("target", ""), "name": "", "purpose": "",
                "days": str(min(DEFAULT_DAYS, self.ctx.config.max_days)), **self.failed_values(FORM)}
        entries, catalog_error, stale = await self._catalog()
        self.render("checkout.html", entries=entries, catalog_error=catalog_error, catalog_stale=stale, form=form,
                    preview=await self._preview(form["target"]))

    @login_required
    async def get(self) -> None:
        await self._page()

    @login_required
    async def post(self) -> None:
        form = {key: self.get_body_argument(key, "").strip() for key in FIELDS}
        days: int | str = int(form["days"]) if form["days"].isascii() and form["days"].isdigit() else form["days"]
        try:
            guest = await checkout.checkout(
                self.ctx, self.actor, checkout.CheckoutRequest(name=form["name"], target=form["target"], days=days,
                                                               purpose=form["purpose"]))
        except FogmachineError as exc:
            if exc.status in (401, 403):
                raise
            # A field's mistake goes under it; no room on any host, or the catalog down, at the top of the form.
            await self.form_failed(FORM, exc, form, "/checkout", page=self._page)
            return
        self.done(f"{guest.name} is on its way: watch it here as it is provisioned.", "/guests", guest=guest.id)


default_handlers = [(r"/checkout", CheckoutHandler)]
