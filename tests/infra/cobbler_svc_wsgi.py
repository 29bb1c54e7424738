"""WSGI wrapper that serves Cobbler 3.3's svc app (normally run by Apache mod_wsgi) under gunicorn.

Started by tests/infra/cobbler_server.sh:  gunicorn --chdir tests/infra cobbler_svc_wsgi:application

Routes (the same as Cobbler's Apache config):
  /cblr/svc/...   -> /var/www/cobbler/svc/services.py (autoinstall rendering etc.); that app reads
                     Apache's REQUEST_URI, which gunicorn does not set, so it is set here.
  /cobbler_api    -> proxied to cobblerd's XML-RPC on 127.0.0.1:<xmlrpc_port> (Apache's ProxyPass).
Anything else is a 404.
"""

import importlib.util
import os
import sys
import traceback
import urllib.error
import urllib.parse
import urllib.request

SERVICES_PY = os.environ.get("FM_COBBLER_SERVICES_PY", "/var/www/cobbler/svc/services.py")
XMLRPC_URL = "http://127.0.0.1:25151/"  # cobblerd binds this address, hard-coded

_spec = importlib.util.spec_from_file_location("cobbler_svc_services", SERVICES_PY)
_services = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_services)


def _reply(start_response, status, body, ctype="text/plain;charset=utf-8"):
    if isinstance(body, str):
        body = body.encode("utf-8")
    start_response(status, [("Content-Type", ctype), ("Content-Length", str(len(body)))])
    return [body]


def _proxy_xmlrpc(environ, start_response):
    if environ.get("REQUEST_METHOD") != "POST":
        return _reply(start_response, "405 Method Not Allowed", "XML-RPC needs POST\n")
    length = int(environ.get("CONTENT_LENGTH") or 0)
    body = environ["wsgi.input"].read(length) if length else environ["wsgi.input"].read()
    req = urllib.request.Request(XMLRPC_URL, data=body, headers={"Content-Type": "text/xml"})
    try:
        with urllib.request.urlopen(req, timeout=120) as resp:
            return _reply(
                start_response,
                f"{resp.status} {resp.reason}",
                resp.read(),
                resp.headers.get("Content-Type", "text/xml"),
            )
    except urllib.error.HTTPError as exc:
        return _reply(start_response, f"{exc.code} {exc.reason}", exc.read())
    except OSError as exc:
        return _reply(start_response, "502 Bad Gateway", f"cobblerd unreachable: {exc}\n")


def application(environ, start_response):
    path = environ.get("PATH_INFO", "") or "/"
    if path == "/cobbler_api" or path.startswith("/cobbler_api/"):
        return _proxy_xmlrpc(environ, start_response)
    if not path.startswith("/cblr/svc/"):
        return _reply(start_response, "404 Not Found", f"not found: {path}\n")
    # Apache's REQUEST_URI is the raw (still %-encoded) path; services.py unquotes it and splits it on "/".
    # Leave the query string out (Apache would include it, and services.py would then glue it to the last
    # path token); services.py reads QUERY_STRING separately.
    raw = environ.get("RAW_URI") or urllib.parse.quote(environ.get("SCRIPT_NAME", "") + path)
    environ["REQUEST_URI"] = urllib.parse.urlsplit(raw).path  # also copes with an absolute-form request line
    environ.setdefault("QUERY_STRING", "")
    try:
        return _call_services(environ, start_response)
    except Exception:
        tb = traceback.format_exc()
        print(tb, file=sys.stderr)
        return _reply(start_response, "500 Internal Server Error", tb)


def _call_services(environ, start_response):
    try:
        return _services.application(environ, start_response)
    except AttributeError as exc:
        if "'CobblerSvc' object has no attribute" not in str(exc):
            raise
        # unknown op: services.py does getattr(CobblerSvc(...), op) unguarded
        return _reply(start_response, "404 Not Found", f"unknown op: {exc}\n")
