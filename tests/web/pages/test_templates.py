"""Every template renders, with the data its handler gives it, in each of its shapes.

Rendering goes through a real Tornado Application and RequestHandler (so
``static_url``, ``xsrf_form_html`` and the layout's helpers are the real ones);
only the HTTP connection under the request is a stand-in, because nothing is
sent anywhere.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from types import SimpleNamespace

import pytest
import tornado.httputil

from fogmachine.app import TEMPLATES, make_app, open_database
from fogmachine.catalog import CatalogEntry
from fogmachine.composition import build_context
from fogmachine.db.models import Guest, Host, User, utcnow
from fogmachine.placement import Usage
from fogmachine.services.actor import Actor
from fogmachine.services.checkout.claim import MAX_PURPOSE
from fogmachine.services.consolelog import ConsoleTail
from fogmachine.services.environments import spec as specmod
from fogmachine.services.environments.templates import TemplateView
from fogmachine.services.guests import guest_to_dict
from fogmachine.services.guestview import StepRow
from fogmachine.services.hosts import Capacity, host_to_dict
from fogmachine.services.sessions import SessionView
from fogmachine.services.useradmin import UserSummary
from fogmachine.web.pages import guestlist, userlist
from fogmachine.web.pages.common import DashboardHandler
from fogmachine.web.pages.forms import FailedForm


class _Connection:
    """The request's connection; rendering never writes to it."""

    def set_close_callback(self, callback: object) -> None:
        pass


def handler_for(config, path: str = "/", user: object = None) -> DashboardHandler:
    # Rendering touches neither the database (never connected to) nor the context's pools (never started).
    app = make_app(build_context(config, open_database(config)))
    request = tornado.httputil.HTTPServerRequest(
        start_line=tornado.httputil.RequestStartLine("GET", path, "HTTP/1.1"), connection=_Connection(),
        headers=tornado.httputil.HTTPHeaders({"Host": "fog.example.org"}))
    handler = DashboardHandler(app, request)
    handler.current_user = user
    return handler


ALICE = SimpleNamespace(id=1, username="alice", is_admin=False)
ROOT = SimpleNamespace(id=3, username="root", is_admin=True)


def host(name="h1", **kw):
    values = dict(name=name, uri="test:///x", virt_type="test", state="up", enabled=True, in_config=True,
                  state_reason="", total_memory_mb=16384, free_memory_mb=15000, cpus=8, committed_vcpus=30,
                  committed_memory_mb=1024, guest_count=2, last_seen_at=utcnow())
    values.update(kw)
    return host_to_dict(Host(**values), 4.0, Usage(ram_mb=1384, vcpus=30, guests=2))


def guest(gid=1, name="web1", owner="alice", **kw):
    values = dict(id=gid, name=name, domain_name=name, managed=True, target="tiny", target_kind="local",
                  ram_mb=512, vcpus=1, disk_gb=10, purpose="<b>testing</b>", state="running", step="ready",
                  step_reason="", ip="10.0.0.5", hostname=f"{name}.lab", mac="52:54:00:00:00:01",
                  expires_at=utcnow() + dt.timedelta(days=2), created_at=utcnow(), updated_at=utcnow())
    values.update(kw)
    g = Guest(**values)
    g.owner = User(username=owner) if owner else None
    g.host = Host(name="h1")
    return guest_to_dict(g)


CAPACITY = Capacity(hosts_total=2, hosts_usable=1, memory_total_mb=16384, memory_free_mb=15000,
                    vcpu_capacity=32, vcpus_free=2, guests=2)
ENTRIES = [CatalogEntry(name="tiny", kind="local", ram_mb=256, vcpus=1, disk_gb=0, virt_type="test",
                        description="a tiny guest"),
           CatalogEntry(name="f40", kind="profile", ram_mb=2048, vcpus=2, disk_gb=20, virt_type="kvm")]
USERS = [UserSummary(1, "alice", "alice@example.org", False, True, utcnow(), None, 1),
         UserSummary(3, "root", "", True, True, utcnow(), utcnow(), 0),
         UserSummary(4, "carl", "", False, False, utcnow(), None, 0)]
PROFILE = {"email": "alice@example.org", "ssh_key": "ssh-ed25519 AAAA x", "description": "team A",
           "notify_expiry": True, "notify_ready": False, "created_at": utcnow(), "last_login_at": None,
           "sessions": [SessionView(7, utcnow(), utcnow(), "192.0.2.1", "Firefox <b>", True),
                        SessionView(8, utcnow(), utcnow(), "192.0.2.2", "", False)],
           "tokens": [{"id": 5, "name": "ci <job>", "owner": "alice", "prefix": "fm_1a2b3c4d_", "scope": "write",
                       "state": "active", "created_at": "2026-05-01T10:00:00Z", "expires_at": "2026-07-30T10:00:00Z",
                       "last_used_at": None}],
           "token_form": {"name": "", "scope": "read", "days": "90"}}
USERLIST = {"total_users": 4, "user_paging": userlist.parse({}).paging(4), "user_heads": userlist.HEADS,
            "userview": userlist.parse({})}
THEMES = {"chosen_theme": "dark", "theme_labels": {"system": "As the system", "light": "Light", "dark": "Dark"}}
NEW_TOKEN = {"id": 6, "name": "laptop", "token": "fm_9f8e7d6c_SECRET",
             "curl": "curl -H 'Authorization: Bearer fm_9f8e7d6c_SECRET' http://fm.example.org/api/v1/guests"}
FORM = {"target": "tiny", "name": "web2", "days": "3", "purpose": "demo"}
HOSTS = [host(), host("h2", enabled=False), host("h3", state="down", state_reason="connection refused")]
GUESTS = [guest(), guest(2, "db1", state="paused", step="failed", step_reason="boot failed"),
          guest(3, "prov", state="undefined", step="booting", expires_at=None)]
RETIRED = [guest(7, "old1", state="undefined", step="retired", step_reason="reservation expired",
                 retired_at=dt.datetime(2026, 5, 4, 10, 30), created_at=dt.datetime(2026, 4, 27, 9, 0))]
EVENTS = [{"id": 12, "at": "2026-05-04T10:30:15.123456Z", "actor": "root", "action": "host.disable",
           "object_type": "host", "object_id": "2", "object_name": "h2", "result": "ok",
           "message": "<i>maintenance</i>", "remote_addr": "192.0.2.7"},
          {"id": 11, "at": "2026-05-04T10:29:00Z", "actor": "mallory", "action": "user.login",
           "object_type": "user", "object_id": "", "object_name": "mallory", "result": "failed",
           "message": "wrong password", "remote_addr": "2001:db8::1"}]


def glist(list_page, user, rows, total=None, **query):
    """A guest list's values as its handler gives them: ``rows`` on the list of ``list_page`` ("mine",
    "host", ...) as ``query`` asks it."""
    view = guestlist.parse(list_page, Actor(user.id, user.username, user.is_admin),
                           {k: [v.encode()] for k, v in query.items()})
    total = len(rows) if total is None else total
    return dict(guests=rows, total_guests=total,
                **guestlist.template_values(list_page, view, total, [h["name"] for h in HOSTS]))


def users_list(view, total):
    return dict(total_users=total, user_paging=view.paging(total), user_heads=userlist.HEADS, userview=view)


SOON = guest(5, "soon1", expires_at=utcnow() + dt.timedelta(hours=5))
GONE = guest(6, "late1", expires_at=utcnow() - dt.timedelta(hours=1))
AUDIT_FORM = {"actor": "", "action": "", "object_type": "", "object_id": "", "result": "", "since": "", "until": ""}
AUDIT_SUGGESTIONS = {"action": ("guest", "guest.start"), "result": ("ok", "failed")}

GUEST_PAGE = dict(
    guest=guest(step_reason="a <reason>"), sentence="Ready and running", reason="a <reason>", ssh="ssh alice@10.0.0.5",
    steps=[StepRow("defining", "2026-05-04T10:30:00Z", "", 2), StepRow("booting", "2026-05-04T10:30:02Z", "", 1),
           StepRow("ready", "2026-05-04T10:30:03Z", "", None)],
    events=[{"at": "2026-05-04T10:30:00Z", "actor": "alice", "action": "guest.checkout", "result": "ok",
             "message": "local tiny on h1", "remote_addr": ""}],
    events_limited=False, retired=False, console_name="web1", back="/guests/1",
    console=ConsoleTail(text="<tty> login:", path="/var/log/fm/web1.log"), environment=None)

DB_WEB = specmod.parse({"tiers": [{"name": "db", "target": "tiny"},
                                  {"name": "web", "target": "f40", "count": 2, "anti_affinity": True,
                                   "variables": {"db_host": "{{ db.ip }}"}}]})
TEMPLATE_VIEWS = [TemplateView(1, "db-web", "a <db>\nthen web", None, DB_WEB, utcnow(), utcnow()),
                  TemplateView(2, "alice-lab", "", "alice", DB_WEB, utcnow(), utcnow())]
ENV_ROWS = [{"id": 4, "name": "lab1", "owner": "alice", "template": "db-web", "purpose": "<b>demo</b>",
             "step": "provisioning", "reason": "", "progress": "tier 2 of 2: web",
             "expires_at": "2026-05-10T10:00:00Z", "created_at": "2026-05-04T10:00:00Z"},
            {"id": 5, "name": "lab2", "owner": "alice", "template": "db-web", "purpose": "", "step": "failed",
             "reason": "guest lab2-web1 (tier web) failed at booting: <no>", "progress": "failed in tier 2 of 2: web",
             "expires_at": None, "created_at": "2026-05-04T10:00:00Z"}]
ENV = {"id": 4, "name": "lab1", "owner": "alice", "template": "db-web", "purpose": "<b>demo</b>",
       "step": "provisioning", "step_reason": "", "tier": 1, "keep_failed": False,
       "created_at": "2026-05-04T10:00:00Z", "expires_at": "2026-05-10T10:00:00Z", "retired_at": None,
       "tiers": [{"index": 0, "name": "db", "target": "tiny", "count": 1, "anti_affinity": False, "variables": [],
                  "state": "ready", "guests": [guest(11, "lab1-db1")]},
                 {"index": 1, "name": "web", "target": "f40", "count": 2, "anti_affinity": True,
                  "variables": ["db_host"], "state": "provisioning",
                  "guests": [guest(12, "lab1-web1", step="booting"), guest(13, "lab1-web2", step="retired")]}]}
ENV_PAGE = dict(env=ENV, tiers=ENV["tiers"], sentence="Provisioning tier 2 of 2 (web)", reason="", retired=False,
                following=True, guest_ids=[11, 12, 13], back="/environments/4", env_extend="env-extend-4")
RETIRED_ENV = {**ENV, "step": "retired", "step_reason": "deleted by alice", "retired_at": "2026-05-05T10:00:00Z",
               "tiers": [{**ENV["tiers"][0], "state": "retired", "guests": []}]}
EDITOR = dict(form={"name": "", "description": "", "tiers": "tiers:\n  - name: db\n    target: tiny\n"},
              max_bytes=65536, max_description=2000)

# (template, who is logged in, values, strings the page must contain)
CASES = [
    ("overview.html", ALICE, dict(hosts=HOSTS, capacity=CAPACITY, **glist("mine", ALICE, GUESTS[:2])),
     ["Your guests", "web1", "db1", "hosts taking guests", 'data-host="h2"', "disabled", 'role="search"',
      'data-insert="all"', "1\u20132 of 2 guests",
      '<th scope="col" aria-sort="ascending"><a class="sort" href="/?sort=-created#guests">Created']),
    ("overview.html", ALICE, dict(hosts=[], capacity=CAPACITY, **glist("mine", ALICE, [])),
     ["You have no guests", "No hosts yet"]),
    ("overview.html", None, dict(hosts=HOSTS, capacity=CAPACITY, guests=[]), ["Log in", "h3", "connection refused"]),
    ("hosts.html", ROOT, dict(hosts=HOSTS, capacity=CAPACITY, **glist("host", ROOT, GUESTS, total=120, page="3")),
     ["Hosts and guests", 'href="/hosts?sort=owner#guests">Owner', "Everyone's guests", 'data-view="host"',
      '<th scope="col" aria-sort="ascending"><a class="sort" href="/hosts?sort=-host#guests">Host',
      'href="/hosts?host=h2#guests"', "101\u2013120 of 120 guests", 'href="/hosts?page=2#guests">previous',
      'id="gl-owner"', 'data-insert="no"']),
    ("hosts.html", ALICE, dict(hosts=HOSTS, capacity=CAPACITY, **glist("host", ALICE, [])),
     ["Only your own guests are listed", "None of your guests is on a host", "list yours"]),
    ("checkout.html", ALICE, dict(entries=ENTRIES, catalog_error="", catalog_stale=False, form=FORM, preview=None,
                                  ),
     ["Pick a profile", "256 MiB", "2 GiB", "20 GB", 'value="profile:f40"', 'value="tiny" checked',
      f'maxlength="{MAX_PURPOSE}" required']),
    ("checkout.html", ALICE, dict(entries=ENTRIES, catalog_error="Cobbler down", catalog_stale=True, form=FORM,
                                  preview={"fits": True, "host": "h1", "hosts": [
                                      {"name": "h1", "fits": True, "reason": "", "free_ram_mb": 9000,
                                       "free_vcpus": 3},
                                      {"name": "h2", "fits": False, "reason": "disabled", "free_ram_mb": 0,
                                       "free_vcpus": 0}]},
                                  failed=FailedForm("checkout", "name", "name is taken", {})),
     ["would take it", "<strong>h1</strong>", "disabled", "may be out of date",
      'aria-invalid="true" aria-describedby="checkout-name-error" autofocus>',
      '<span class="field-error" id="checkout-name-error">name is taken</span>']),
    ("checkout.html", ALICE, dict(entries=ENTRIES, catalog_error="", catalog_stale=False, form=FORM, preview=None,
                                  failed=FailedForm("checkout", "target", "unknown profile <x>", {})),
     ['id="checkout-target-error">unknown profile &lt;x&gt;</span>', '<fieldset class="catalog invalid">',
      'value="tiny" checked required aria-invalid="true" aria-describedby="checkout-target-error" autofocus>',
      'value="profile:f40"  required aria-invalid="true" aria-describedby="checkout-target-error">']),
    ("checkout.html", ALICE, dict(entries=ENTRIES, catalog_error="", catalog_stale=False, form=FORM, preview=None,
                                  failed=FailedForm("checkout", "", "no host has room", {})),
     ['<p class="flash flash-error form-error" role="alert" id="checkout-error" tabindex="-1">no host has room</p>']),
    ("checkout.html", ALICE, dict(entries=ENTRIES, catalog_error="", catalog_stale=False, form=FORM,
                                  preview={"fits": False, "host": None, "reason": "no host has 999 GiB free"},
                                  ), ["no host has 999 GiB free"]),
    ("checkout.html", ALICE, dict(entries=[], catalog_error="cannot read catalog.conf", catalog_stale=True,
                                  form=FORM, preview=None),
     ["the catalog is empty", "cannot read catalog.conf"]),
    ("reservations.html", ALICE, dict(history=RETIRED, **glist("reservations", ALICE, GUESTS)),
     ["My reservations", "Pause", "Unpause", "boot failed", "&lt;b&gt;testing&lt;/b&gt;", "History",
      'data-retired-id="7"', "2026-05-04 10:30 UTC", "2026-04-27 09:00 UTC", "reservation expired"]),
    ("reservations.html", ALICE, dict(history=[], **glist("reservations", ALICE, [])),
     ["You have no guests", "No retired guests."]),
    ("reservations.html", ALICE, dict(history=[], **glist("reservations", ALICE, [], total=3, q="zz", page="4",
                                                         sort="-expires")),
     ["No guests on this page: the list has 1 page.", 'href="/guests?q=zz&amp;sort=-expires">last page',
      'value="zz"', '<input type="hidden" name="sort" value="-expires">']),
    ("guest_list.html", ROOT, dict(row_view="admin",
                                   **glist("admin", ROOT, [SOON, GONE], q="web\x01", state="flying", host="h9",
                                           owner="bob", sort="password_hash", page="0")),
     ['aria-invalid="true" aria-describedby="gl-q-error"', "the search takes at most 100 characters",
      'id="gl-state-error">state must be one of the states the list offers, not “flying”',
      '<option value="h9" selected>',
      'value="bob"', "sort must be one of name, state", "page must be a whole number from 1 to 100000",
      "expires in 4 h", 'class="timeleft soon"', 'class="timeleft expired"', "matching guests",
      "a guest that stops matching stays listed until you reload"]),
    ("list_heads.html", ROOT, dict(head_cells=userlist.HEADS, sorter=userlist.parse({"user_sort": [b"role"]})),
     ['<th scope="col" aria-sort="ascending"><a class="sort" href="/admin?user_sort=-role#users">Role',
      '<th scope="col">Actions</th>', 'aria-sort="none"']),
    ("pager.html", ROOT, dict(sorter=userlist.parse({"user_page": [b"2"]}), pager_label="Pages of users",
                              pager_of=userlist.parse({"user_page": [b"2"]}).paging(120)),
     ['aria-label="Pages of users"', 'rel="prev" href="/admin#users">previous',
      'rel="next" href="/admin?user_page=3#users">next']),
    ("retired_row.html", ALICE, dict(guest=RETIRED[0], row_view="reservations"),
     ["old1", "tiny", "h1", "reservation expired", "&lt;b&gt;testing&lt;/b&gt;"]),
    ("retired_row.html", ROOT, dict(guest=RETIRED[0], row_view="admin"), ['<td data-label="Owner">alice</td>']),
    ("audit.html", ROOT, dict(events=EVENTS, total=120, page=1, pages=3, form={**AUDIT_FORM, "action": "host"},
                              filtered=True, suggestions=AUDIT_SUGGESTIONS,
                              prev_url="/admin/audit?action=host", next_url="/admin/audit?action=host&page=3"),
     ["Audit log", "120 events match", "page 2 of 3", "2026-05-04 10:30:15 UTC", "host.disable",
      "&lt;i&gt;maintenance&lt;/i&gt;", "192.0.2.7", "2001:db8::1", "result-failed", 'value="host"',
      'href="/admin/audit?action=host&amp;page=3"', "previous", 'href="/admin/audit?actor=mallory"',
      'href="/admin/audit?object_type=host&amp;object_id=2"', '<option value="guest.start">']),
    ("audit.html", ROOT, dict(events=[], total=0, page=0, pages=1, form={**AUDIT_FORM, "since": "yesterday"},
                              filtered=False, suggestions=AUDIT_SUGGESTIONS, prev_url=None, next_url=None,
                              failed=FailedForm("audit", "since", "since must be a date such as 2026-01-31", {})),
     ['id="audit-since-error">since must be a date', 'value="yesterday"', 'aria-describedby="audit-since-error"',
      "No events recorded yet."]),
    ("audit.html", ROOT, dict(events=[], total=60, page=4, pages=2, form=AUDIT_FORM, filtered=False,
                              suggestions={}, prev_url="/admin/audit?page=2", next_url=None),
     ["No events on this page", "2 pages"]),
    ("guest_row.html", ALICE, dict(guest=GUESTS[0], row_view="reservations", back="/guests"),
     ['data-guest-id="1"', 'action="/guests/1/pause"', 'action="/guests/1/extend"', "data-confirm"]),
    ("guest_row.html", ALICE, dict(guest=GUESTS[0], row_view="mine", back="/"), ["web1.lab", 'data-label="Created"']),
    ("guest_row.html", ROOT, dict(guest=SOON, row_view="host", back="/hosts"),
     ['class="timeleft soon"', "expires in 4 h", 'data-soon-s="86400"', '<td data-label="Owner">alice']),
    ("guest_row.html", ROOT, dict(guest=guest(9, "legacy", owner=None, managed=False), row_view="admin",
                                  back="/admin"), ["not managed"]),
    ("host_card.html", ALICE, dict(host=HOSTS[2]), ["connection refused", "state-down"]),
    ("confirm.html", ALICE, dict(action="delete", guest=GUESTS[0], back="/guests", unreachable=None),
     ["Delete web1?", 'value="yes"', 'action="/guests/1/delete"', "cannot be undone", "Keep it"]),
    ("confirm.html", ROOT, dict(action="delete", guest=GUESTS[0], back="/guests", unreachable="host h1 is down: gone"),
     ["host h1 is down: gone", 'name="force" value="yes"', "Delete web1 anyway"]),
    ("confirm.html", ALICE, dict(action="destroy", guest=GUESTS[0], back="/guests/1", unreachable=None),
     ["Power off web1?", 'action="/guests/1/destroy"', "pulling the power cord", "Power off web1</button>",
      'href="/guests/1"']),
    ("confirm.html", ALICE, dict(action="restart", guest=GUESTS[0], back="/guests", unreachable=None),
     ["Restart web1?", 'action="/guests/1/restart"', "Restart web1</button>"]),
    ("guest.html", ALICE, GUEST_PAGE,
     ["<h1>web1</h1>", "Ready and running", "ssh alice@10.0.0.5", "&lt;b&gt;testing&lt;/b&gt;", "web1.lab",
      'action="/guests/1/stop"', 'action="/guests/1/extend"', "+1 day", "+7 days", 'id="console"',
      "booting", "guest.checkout", "&lt;tty&gt; login:", 'value="/guests/1"', "Reason:</strong> a &lt;reason&gt;",
      'data-confirm="Power off web1?', 'data-confirm="Restart web1?', "The end of /var/log/fm/web1.log"]),
    ("guest.html", ROOT, {**GUEST_PAGE, "guest": RETIRED[0], "sentence": "Retired: reservation expired", "reason": "",
                          "ssh": "", "steps": [], "events": [], "retired": True,
                          "console": ConsoleTail(note="no longer shown")},
     ["Retired: reservation expired", "No steps recorded.", "Nothing recorded yet.", "no longer shown"]),
    ("guest.html", ALICE, {**GUEST_PAGE, "environment": {"id": 4, "name": "lab1", "tier": "web"}},
     ['Part of environment <a href="/environments/4">lab1</a> (tier web)']),
    ("environments.html", ALICE, dict(environments=ENV_ROWS),
     ['href="/environments/4"', "tier 2 of 2: web", "&lt;b&gt;demo&lt;/b&gt;", "step-failed",
      "failed at booting: &lt;no&gt;", 'href="/environments/new"', 'href="/environment-templates"',
      'data-expires="2026-05-10T10:00:00Z"']),
    ("environments.html", ROOT, dict(environments=ENV_ROWS), ['<td data-label="Owner">alice</td>']),
    ("environments.html", ALICE, dict(environments=[]), ["You have no environments."]),
    ("environment_new.html", ALICE, dict(form={"template": "db-web", "name": "lab1", "days": "3", "purpose": "x",
                                               "keep_failed": "yes"}, env_templates=TEMPLATE_VIEWS,
                                         total_templates=3, may_write=False),
     ['<option value="db-web" selected>db-web — 3 guests in 2 tiers</option>', "a &lt;db&gt;\nthen web",
      "<strong>web</strong>: 2 \u00d7 f40, on different hosts; variables db_host", "private: alice",
      'name="keep_failed" value="yes" checked', "The first 2 of 3 are listed."]),
    ("environment_new.html", ALICE, dict(form={"template": "gone", "name": "lab1", "days": "3", "purpose": "x",
                                               "keep_failed": ""}, env_templates=TEMPLATE_VIEWS,
                                         total_templates=2, may_write=False,
                                         failed=FailedForm("new-environment", "", "tier web cannot be placed", {})),
     ['<option value="gone" selected>gone</option>',
      'id="new-environment-error" tabindex="-1">tier web cannot be placed</p>']),
    ("environment_new.html", ALICE, dict(form={"template": "", "name": "", "days": "3", "purpose": "",
                                               "keep_failed": ""}, env_templates=[], total_templates=0,
                                         may_write=True),
     ["There is no environment template you can use yet.", 'href="/environment-templates/new"']),
    ("environment.html", ALICE, ENV_PAGE,
     ["<h1>lab1</h1>", 'id="env-sentence" aria-live="polite">Provisioning tier 2 of 2 (web)<',
      'data-guest-ids="11 12 13"', 'data-following="yes"', 'data-tier-state="0">ready<',
      'data-tier-state="1">provisioning<', '<tr data-guest-id="12" data-view="mine"', 'href="/guests/13"',
      "2 \u00d7 f40", "on different hosts", "db_host", 'action="/environments/4/start"',
      'action="/environments/4/stop"',
      'action="/environments/4/delete" data-confirm="Delete lab1?', 'action="/environments/4/extend"', "+7 days",
      "&lt;b&gt;demo&lt;/b&gt;", "environment.js"]),
    ("environment.html", ALICE, {**ENV_PAGE, "failed": FailedForm("env-extend-4", "days", "days must be between",
                                                                  {"days": "45"})},
     ['id="env-extend-4-days-error">days must be between', 'value="45"']),
    ("environment.html", ROOT, {**ENV_PAGE, "env": RETIRED_ENV, "tiers": RETIRED_ENV["tiers"], "retired": True,
                                "sentence": "Retired: deleted by alice", "following": False},
     ["Retired: deleted by alice", "No guests left in this tier.", "Retired</dt>", 'data-following="no"']),
    ("environment.html", ALICE, {**ENV_PAGE, "env": {**ENV, "step": "failed", "keep_failed": True,
                                                     "step_reason": "guest lab1-web1 failed at booting: <x>"},
                                 "sentence": "Failed: its guests are kept for inspection",
                                 "reason": "guest lab1-web1 failed at booting: <x>", "following": False},
     ['class="status-sentence step-failed" id="env-sentence" aria-live="polite">Failed: its guests are kept',
      '<p class="reason" id="env-reason"><strong>Reason:</strong> <span id="env-reason-text">guest lab1-web1 '
      'failed at booting: &lt;x&gt;</span>', "its guests are kept for inspection</dd>"]),
    ("environment_confirm.html", ALICE, dict(env=ENV),
     ["<h1>Delete lab1?</h1>", "every guest of it (2)", 'action="/environments/4/delete"', 'value="yes"',
      'href="/environments/4">Keep it']),
    ("env_templates.html", ROOT, dict(env_templates=TEMPLATE_VIEWS, total_templates=2, may_write=True,
                                      writable={"db-web", "alice-lab"}, max_file_kb=64),
     ['href="/environment-templates/new"', 'action="/environment-templates/import"',
      'href="/environment-templates/alice-lab/edit"', 'href="/environment-templates/db-web/export" download',
      'href="/environments/new?template=db-web"', "Templates you save are shared", "Templates (2)"]),
    ("env_templates.html", ALICE, dict(env_templates=TEMPLATE_VIEWS[:1], total_templates=1, may_write=False,
                                       writable=set(), max_file_kb=64),
     ["Administrators write them.", 'href="/environment-templates/db-web/export"']),
    ("env_templates.html", ROOT, dict(env_templates=[], total_templates=0, may_write=True, writable=set(),
                                      max_file_kb=64,
                                      failed=FailedForm("import", "file", "tiers[1] (web), variable db_host: no", {})),
     ["No environment templates yet.", '<details class="card" id="import" open>',
      'id="import-file-error">tiers[1] (web), variable db_host: no']),
    ("env_template_card.html", ROOT, dict(t=TEMPLATE_VIEWS[1], card_links=True, writable={"alice-lab"}),
     ['<h3 id="tpl-alice-lab-title">alice-lab</h3>', "private: alice", 'href="/environment-templates/alice-lab/edit"']),
    ("env_template_edit.html", ROOT, dict(existing=None, **EDITOR),
     ["New environment template", 'name="name"', "tiers:\n  - name: db", 'action="/environment-templates/new"',
      "db_host: \"{{ db.ip }}\""]),
    ("env_template_edit.html", ROOT, dict(existing="db-web", **EDITOR,
                                          failed=FailedForm("template", "tiers", "tiers[1] (web), variable db_host: x",
                                                            {})),
     ["Edit db-web", 'action="/environment-templates/db-web/edit"', 'href="/environment-templates/db-web/export"',
      'id="template-tiers-error">tiers[1] (web), variable db_host: x',
      'aria-invalid="true" aria-describedby="template-tiers-error" autofocus>']),
    ("admin.html", ROOT, dict(**USERLIST, users=USERS, hosts=HOSTS, retired=False,
                              **glist("admin", ROOT, GUESTS, total=150, page="2")),
     ["Administration", "Make admin", "Enable", "you", "previous", "next", 'action="/admin/hosts/h2/enable"',
      'data-insert="no"', 'href="/admin/audit"', 'href="/admin?guests=retired#guests"', "51\u2013100 of 150 guests",
      'value="/admin?page=2#guests"']),
    ("admin.html", ROOT, dict(**USERLIST, users=USERS, hosts=HOSTS, retired=False,
                              **glist("admin", ROOT, GUESTS, total=53, page="2")),
     ['data-insert="new"']),
    ("admin.html", ROOT, dict(**USERLIST, users=USERS, hosts=[], retired=False, **glist("admin", ROOT, []),
                              failed=FailedForm("new-user", "username", "user dup already exists",
                                                {"username": "dup", "email": "d@example.org", "is_admin": "yes"})),
     ['id="new-user-username-error">user dup already exists', "No guests.", '<details class="card" open>',
      'value="dup"', 'value="d@example.org"', 'name="is_admin" value="yes" checked']),
    ("admin.html", ROOT, dict(**USERLIST, users=USERS, hosts=HOSTS, retired=True,
                              **glist("admin", ROOT, RETIRED, total=201, guests="retired")),
     ["Retired guests (201)", 'data-retired-id="7"', "reservation expired", 'href="/admin#guests"',
      'href="/admin?guests=retired&amp;page=2#guests"', 'href="/admin?guests=retired&amp;sort=retired#guests">Retired',
      '<input type="hidden" name="guests" value="retired">']),
    ("admin.html", ROOT, dict(**USERLIST, users=USERS, hosts=HOSTS, retired=True,
                              **glist("admin", ROOT, [], guests="retired")),
     ["No retired guests: they are kept for 30 days."]),
    ("admin.html", ROOT, dict(users=USERS[1:2], hosts=[], retired=False,
                              **glist("admin", ROOT, [], guests="retired"),
                              **users_list(userlist.parse({"user_q": [b"b"], "user_sort": [b"-guests"],
                                                           "user_page": [b"2"], "guests": [b"retired"]}), 120)),
     ["120 users match; page 2 of 3", 'aria-sort="descending"', 'href="/admin?guests=retired&amp;user_q=b#users"',
      'href="/admin?guests=retired&amp;user_q=b&amp;user_sort=-guests#users">previous',
      'user_sort=-guests&amp;user_page=3#users">next', 'user_sort=guests#users">Guests',
      '<input type="hidden" name="guests" value="retired">']),
    ("login.html", None, dict(next="/guests", failed=FailedForm("login", "", "wrong username or password",
                                                                {"username": "alice"})),
     ['id="login-error" tabindex="-1">wrong username or password', 'value="/guests"', "Register", 'value="alice"',
      'aria-describedby="login-error" autofocus>']),
    ("login.html", None, dict(next="/"), ["autofocus></label>", "Register"]),
    ("register.html", None, dict(failed=FailedForm("register", "username", "username must be", {"username": "x"})),
     ["Create my account", "username must be"]),
    ("profile.html", ALICE, dict(profile=PROFILE, new_token=None, **THEMES,
                                 failed=FailedForm("password", "current_password", "the current password is wrong",
                                                   {})),
     ["ssh-ed25519 AAAA x", "the current password", "Firefox &lt;b&gt; <strong>(this one)</strong>", "192.0.2.2",
      'action="/profile/sessions/8/end"', 'action="/profile/sessions/end-all"', "720 minutes unused",
      'id="password-current_password-error">the current password is wrong', "ci &lt;job&gt;", "fm_1a2b3c4d_",
      'action="/profile/tokens/5/revoke"', 'value="dark" checked', 'href="/api/v1/docs"']),
    ("profile.html", ALICE, dict(profile={**PROFILE, "tokens": []}, new_token=NEW_TOKEN, **THEMES,
                                 failed=FailedForm("token", "expires_in_days",
                                                   "expires_in_days must be a whole number of days",
                                                   {"name": "ci", "scope": "write", "expires_in_days": "x"})),
     ["fm_9f8e7d6c_SECRET", "Bearer fm_9f8e7d6c_SECRET&#x27; http://fm.example.org/api/v1/guests", "No active tokens",
      'value="ci"', '<option value="write" selected>', 'value="x"', 'id="token-expires_in_days-error"',
      'data-copy="new-token-value"']),
    ("error.html", ALICE, dict(status_code=403, message="only administrators may do this"),
     ["Not allowed", "only administrators"]),
    ("error.html", None, dict(status_code=500, message="Something went wrong"), ["Error 500"]),
    ("404.html", None, dict(status_code=404, message="No page at /x."), ["Not found", "No page at /x."]),
    ("api_docs.html", None, {}, ["swagger-ui"]),
    ("console.html", ALICE, dict(guest=GUESTS[0]),
     ["Console of web1", 'id="consoles" data-guest-id="1"', "vendor/xterm/lib/xterm.js", 'type="module"',
      "after 15 min without a keystroke"]),
    ("console_panel.html", ROOT, dict(guest=GUESTS[0]),
     ['id="serial-open"', 'id="serial-takeover" hidden', 'id="vnc-open"', 'data-guest-name="web1"']),
]


@pytest.mark.parametrize(("template", "user", "values", "expected"), CASES,
                         ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_template_renders(make_config, template, user, values, expected):
    handler = handler_for(make_config(), user=user)
    values = dict(values)
    # a form that failed, as the layout would have taken it from its cookie
    handler._failed_form, handler._failed_form_taken = values.pop("failed", None), True
    html = handler.render_string(template, **values).decode()
    for text in expected:
        assert text in html, f"{text!r} missing from {template}"
    if template not in ("guest_row.html", "host_card.html", "retired_row.html", "console_panel.html",
                        "guest_list.html", "list_heads.html", "pager.html", "env_template_card.html"):
        assert html.lstrip().lower().startswith("<!doctype html>")


def test_every_template_has_a_case():
    on_disk = {p.name for p in Path(TEMPLATES).glob("*.html")} - {"base.html"}  # base: in every full page
    assert on_disk == {c[0] for c in CASES}


def test_closed_registration_hides_the_form(make_config):
    handler = handler_for(make_config(open_registration="false"))
    html = handler.render_string("register.html").decode()
    assert "Registration is closed" in html and "<form method=\"post\" action=\"/register\"" not in html
    html = handler.render_string("login.html", next="/").decode()
    assert "Accounts are made by the administrators" in html and 'href="/register"' not in html
