import json

from fogmachine import __version__
from fogmachine.db import migrate


async def test_version_health_and_dashboard(make_config, start_server):
    srv = await start_server(make_config(hosts={"h1": {}, "h2": {}}))
    r = await srv.fetch("/api/v1/version")
    assert r.code == 200
    body = json.loads(r.body)
    assert body["version"] == __version__
    assert body["database_revision"] == migrate.head_revision()
    r = await srv.fetch("/healthz")
    assert r.code == 200 and json.loads(r.body)["status"] == "ok"
    r = await srv.fetch("/")
    assert r.code == 200
    assert b"h1" in r.body and b"h2" in r.body


async def test_unknown_api_route_is_json_404_and_page_404_uses_layout(make_config, start_server):
    srv = await start_server(make_config())
    r = await srv.fetch("/api/v1/nothing-here")
    assert r.code == 404
    assert json.loads(r.body)["error"]["code"] == "not_found"
    r = await srv.fetch("/no/such/page")
    assert r.code == 404
    assert b"Not found" in r.body and b"Fogmachine" in r.body


async def test_health_reports_unreachable_database(make_config, start_server):
    from fogmachine.db.session import make_engine

    srv = await start_server(make_config())
    db = srv.ctx.db
    old = db.engine
    # A closed port on loopback: the connection is refused at once.
    db.engine = make_engine("mysql+mysqldb://root@127.0.0.1:1/test", connect_timeout=1)
    db.sessionmaker.configure(bind=db.engine)
    try:
        r = await srv.fetch("/healthz")
        assert r.code == 503
        assert json.loads(r.body)["database"] == "unreachable"
    finally:
        db.engine.dispose()
        db.engine = old
        db.sessionmaker.configure(bind=old)
