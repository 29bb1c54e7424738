"""API tokens: create (the token is in that one answer and nowhere else), list, show, revoke.

Users see and revoke only their own tokens; administrators see and revoke
everyone's. Someone else's token id answers 404, as if it did not exist.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from fogmachine.services import tokens
from fogmachine.services.actor import Actor
from fogmachine.web.api.base import ApiHandler, Op
from fogmachine.web.api.schema import Field, Obj, Query, page_of, page_params

TAG = "tokens"
_TOKEN_FIELDS = (
    Field("id", "integer", minimum=1),
    Field("name", "string"),
    Field("owner", "string", "username of the token's owner"),
    Field("prefix", "string", "the token's first characters, to recognise it", example="fm_1a2b3c4d_"),
    Field("scope", "string", "read: GET only; write: everything the owner may do", enum=tokens.SCOPES),
    Field("state", "string", enum=("active", "expired", "revoked")),
    Field("created_at", "datetime"),
    Field("expires_at", "datetime", nullable=True),
    Field("last_used_at", "datetime", "to within a minute", nullable=True),
)
TOKEN = Obj("Token", _TOKEN_FIELDS, closed=False)
NEW_TOKEN = Obj("NewToken", (
    *_TOKEN_FIELDS,
    Field("token", "string", "the secret: shown in this answer only, send it as Authorization: Bearer TOKEN"),
), closed=False)
TOKEN_LIST = page_of("TokenList", "tokens", TOKEN)
TOKEN_CREATE = Obj("TokenCreate", (
    Field("name", "string", "what the token is for, e.g. the CI job", min_length=1, max_length=tokens.MAX_NAME,
          example="nightly-ci"),
    Field("scope", "string", "read: GET only; write: everything you may do", required=False,
          enum=tokens.SCOPES, default="read"),
    Field("expires_in_days", "integer", "every token expires", required=False, minimum=1,
          maximum=tokens.MAX_DAYS, default=tokens.DEFAULT_DAYS),
))
LIST_QUERY = Query((
    Field("user", "string", "only this user's tokens (administrators)", required=False, max_length=64),
    Field("include_inactive", "boolean", "also revoked and expired tokens", required=False, default=False),
    *page_params(),
))


def _create(session: Session, actor: Actor, new: tokens.NewToken) -> dict[str, Any]:
    row, secret = tokens.create_token(session, actor, new)
    return {**tokens.token_to_dict(row), "token": secret}


def _list(session: Session, actor: Actor, flt: tokens.TokenFilter) -> tuple[list[dict[str, Any]], int]:
    rows, total = tokens.list_tokens(session, actor, flt)
    return [tokens.token_to_dict(t) for t in rows], total


def _get(session: Session, actor: Actor, token_id: int) -> dict[str, Any]:
    return tokens.token_to_dict(tokens.get_token(session, actor, token_id))


def _revoke(session: Session, actor: Actor, token_id: int) -> dict[str, Any]:
    return tokens.token_to_dict(tokens.revoke_token(session, actor, token_id))


class TokensHandler(ApiHandler):
    api = {
        "get": Op("List API tokens", TAG, "Your active tokens, newest first (administrators: everyone's).",
                  query=LIST_QUERY, response=TOKEN_LIST),
        "post": Op("Create an API token", TAG, "The answer holds the token itself, which is never shown again. "
                   "Besides a token or the session cookie, this operation also takes your username and password "
                   "as HTTP Basic (curl -u NAME), to make a first token from a script.",
                   body=TOKEN_CREATE, status=201, response=NEW_TOKEN, location=True, errors=(409, 429),
                   basic_auth=True),
    }

    async def get(self) -> None:
        flt = tokens.TokenFilter(**self.params)
        rows, total = await self.ctx.db.run(_list, self.actor, flt)
        self.write_json({"tokens": rows, "total": total, "offset": flt.offset, "limit": flt.limit})

    async def post(self) -> None:
        created = await self.ctx.db.run(_create, self.actor, tokens.NewToken(**self.data))
        self.created(f"/api/v1/tokens/{created['id']}", created)


class TokenHandler(ApiHandler):
    api = {"get": Op("Show an API token", TAG, response=TOKEN)}

    async def get(self, token_id: str) -> None:
        self.write_json(await self.ctx.db.run(_get, self.actor, self.path_id(token_id, "token")))


class TokenRevokeHandler(ApiHandler):
    api = {"post": Op("Revoke an API token", TAG, "It stops working at once; it stays listed as revoked.",
                      response=TOKEN, errors=(409,))}

    async def post(self, token_id: str) -> None:
        self.write_json(await self.ctx.db.run(_revoke, self.actor, self.path_id(token_id, "token")))


default_handlers = [
    (r"/api/v1/tokens", TokensHandler),
    (r"/api/v1/tokens/(?P<token_id>[0-9]+)", TokenHandler),
    (r"/api/v1/tokens/(?P<token_id>[0-9]+)/revoke", TokenRevokeHandler),
]
