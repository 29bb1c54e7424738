"""The ORM: every table Fogmachine keeps, in SQLAlchemy 2 declarative style.

The metadata carries a naming convention so that Alembic's constraint names are
the same on SQLite, MariaDB and PostgreSQL and migrations can refer to them.
Times are stored as naive UTC (``utcnow()``, from ``fogmachine.timestamps``,
re-exported here with ``HostState`` and ``GuestState`` from ``fogmachine.states``)
because MariaDB has no time zone type; every reader treats them as UTC.

Ids are never reused: the audit log names objects by id, and a guest's id is in
its domain's mark. MariaDB and PostgreSQL never hand out an id twice; SQLite does
(the largest id + 1, so deleting the newest row frees its id) unless the table is
declared AUTOINCREMENT, hence ``NEVER_REUSE_IDS`` on every table with an integer id.
"""

from __future__ import annotations

import datetime as dt
import enum
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    event,
    false,
    inspect,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, relationship

# Defined in the base layer so that the hypervisor adapter can use them without the ORM; re-exported here
# ("X as X": explicitly, for mypy), where the code above the adapters has always imported them from.
from fogmachine.states import GuestState as GuestState
from fogmachine.states import HostState as HostState
from fogmachine.timestamps import utcnow as utcnow

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


# SQLite's AUTOINCREMENT: an id is never handed out again, even after its row is deleted.
# Other databases ignore the option (their sequences and counters never go back).
NEVER_REUSE_IDS = {"sqlite_autoincrement": True}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class TargetKind(enum.StrEnum):
    PROFILE = "profile"
    IMAGE = "image"
    SYSTEM = "system"
    LOCAL = "local"


class Step(enum.StrEnum):
    """Where a guest is in its provisioning; ``READY`` and ``FAILED`` are final."""

    PLACING = "placing"
    # A guest of an environment's later tier: its capacity is claimed, its provisioning waits until every
    # guest of the tiers before it is ready (services/environments).
    WAITING = "waiting"
    REGISTERING = "registering"
    DEFINING = "defining"
    BOOTING = "booting"
    INSTALLING = "installing"
    READY = "ready"
    FAILED = "failed"
    RETIRED = "retired"


IN_PROGRESS_STEPS = (Step.PLACING, Step.REGISTERING, Step.DEFINING, Step.BOOTING)


class User(Base):
    __tablename__ = "users"
    __table_args__ = NEVER_REUSE_IDS

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    email: Mapped[str] = mapped_column(String(255), default="")
    password_hash: Mapped[str] = mapped_column(String(255), default="")
    is_admin: Mapped[bool] = mapped_column(Boolean, default=False)
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    ssh_key: Mapped[str] = mapped_column(Text, default="")
    description: Mapped[str] = mapped_column(Text, default="")
    notify_expiry: Mapped[bool] = mapped_column(Boolean, default=True)
    notify_ready: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    last_login_at: Mapped[dt.datetime | None] = mapped_column(DateTime, default=None)

    guests: Mapped[list[Guest]] = relationship(back_populates="owner")
    tokens: Mapped[list[ApiToken]] = relationship(back_populates="user", cascade="all, delete-orphan")


class Host(Base):
    __tablename__ = "hosts"
    __table_args__ = NEVER_REUSE_IDS

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    uri: Mapped[str] = mapped_column(String(1024))
    virt_type: Mapped[str] = mapped_column(String(32))
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    in_config: Mapped[bool] = mapped_column(Boolean, default=True)
    state: Mapped[str] = mapped_column(String(16), default=HostState.UNKNOWN)
    state_reason: Mapped[str] = mapped_column(Text, default="")
    last_seen_at: Mapped[dt.datetime | None] = mapped_column(DateTime, default=None)
    total_memory_mb: Mapped[int] = mapped_column(BigInteger, default=0)
    free_memory_mb: Mapped[int] = mapped_column(BigInteger, default=0)
    cpus: Mapped[int] = mapped_column(Integer, default=0)
    committed_memory_mb: Mapped[int] = mapped_column(BigInteger, default=0)
    committed_vcpus: Mapped[int] = mapped_column(Integer, default=0)
    guest_count: Mapped[int] = mapped_column(Integer, default=0)
    hypervisor_type: Mapped[str] = mapped_column(String(64), default="")
    hypervisor_version: Mapped[str] = mapped_column(String(64), default="")
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)

    guests: Mapped[list[Guest]] = relationship(back_populates="host")


class Guest(Base):
    """A virtual machine: one checked out through Fogmachine, or (``managed`` false)
    a domain found on a host that Fogmachine shows to admins but never touches."""

    __tablename__ = "guests"
    __table_args__ = (
        UniqueConstraint("host_id", "domain_name", name="uq_guests_host_id_domain_name"),
        Index("ix_guests_owner_id_step", "owner_id", "step"),
        NEVER_REUSE_IDS,
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(63), index=True)
    # ``name`` while the guest is live, NULL once retired: a unique column that lets
    # the database itself refuse two live guests of one name, even from two processes.
    live_name: Mapped[str | None] = mapped_column(String(63), unique=True, default=None)
    # The libvirt domain's name on its host; NULL once retired, so the name (and the
    # unique host/domain pair) is free for a new guest while the history row stays.
    domain_name: Mapped[str | None] = mapped_column(String(255), default=None)
    managed: Mapped[bool] = mapped_column(Boolean, default=True)
    owner_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), default=None, index=True)
    host_id: Mapped[int | None] = mapped_column(ForeignKey("hosts.id"), default=None, index=True)
    target: Mapped[str] = mapped_column(String(255), default="")
    target_kind: Mapped[str] = mapped_column(String(16), default=TargetKind.PROFILE)
    ram_mb: Mapped[int] = mapped_column(Integer, default=0)
    vcpus: Mapped[int] = mapped_column(Integer, default=0)
    disk_gb: Mapped[int] = mapped_column(Integer, default=0)
    purpose: Mapped[str] = mapped_column(Text, default="")
    expires_at: Mapped[dt.datetime | None] = mapped_column(DateTime, default=None, index=True)
    state: Mapped[str] = mapped_column(String(16), default=GuestState.UNDEFINED)
    step: Mapped[str] = mapped_column(String(16), default=Step.PLACING, index=True)
    step_reason: Mapped[str] = mapped_column(Text, default="")
    uuid: Mapped[str | None] = mapped_column(String(36), default=None)
    mac: Mapped[str | None] = mapped_column(String(17), unique=True, default=None)
    ip: Mapped[str] = mapped_column(String(64), default="")
    hostname: Mapped[str] = mapped_column(String(255), default="")
    vnc_port: Mapped[int | None] = mapped_column(Integer, default=None)
    cobbler_system: Mapped[str] = mapped_column(String(255), default="")
    volume_path: Mapped[str] = mapped_column(String(1024), default="")
    phonehome_token_hash: Mapped[str] = mapped_column(String(128), default="")
    # The token works while the guest installs and until this time (its first phone-home plus the grace);
    # NULL before that. See services/phonehome.py.
    phonehome_until: Mapped[dt.datetime | None] = mapped_column(DateTime, default=None)
    # Installed, but its domain still boots the installer's kernel: the switch to disk boot is retried
    # (services/diskboot.py) and, until it is done, the next boot is a reinstall, so the token stays open.
    diskboot_pending: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    # Cobbler's record of this guest still carries the phone-home token (blanked once the install is done).
    cobbler_token_pending: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow, index=True)
    retired_at: Mapped[dt.datetime | None] = mapped_column(DateTime, default=None)
    # The Fogmachine process running this guest's provisioning (see TaskLease): when
    # that process dies mid-checkout, reconciliation knows the work is orphaned.
    worker: Mapped[str] = mapped_column(String(64), default="")
    # Bumped by every write. The ORM writes a guest only where it is still the version it read
    # (version_id_col) and a host resync does the same by hand (services/hoststate.py), so a write
    # decided on an earlier read (a resync that read the row before reconciliation marked it failed)
    # is refused instead of overwriting what happened since.
    version: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    # A guest checked out as part of an environment: which one, which tier (0 first) and its place in the
    # tier (0 first: what ``{{ db.ip }}`` names). NULL for a guest of its own.
    environment_id: Mapped[int | None] = mapped_column(
        ForeignKey("environments.id", ondelete="SET NULL"), default=None, index=True)
    tier: Mapped[int | None] = mapped_column(Integer, default=None)
    tier_index: Mapped[int | None] = mapped_column(Integer, default=None)
    # The environment's variables as resolved for this guest when its tier started (JSON object of
    # strings; "" before): what its installer got and what ``GET /guest/MAC/env`` answers.
    env_vars: Mapped[str] = mapped_column(Text, default="", server_default="")

    __mapper_args__ = {"version_id_col": version}

    owner: Mapped[User | None] = relationship(back_populates="guests")
    host: Mapped[Host | None] = relationship(back_populates="guests")
    environment: Mapped[Environment | None] = relationship(back_populates="guests")


class EnvTemplate(Base):
    """An environment template: ordered tiers of catalog entries (services/envtemplates).

    ``spec`` is the validated template as JSON (``{"tiers": [...]}``), the same shape the API and the
    YAML files speak; a template is read and written whole. ``owner_id`` NULL: a shared template,
    managed by administrators; set: a user's private one (when the settings allow them).
    """

    __tablename__ = "env_templates"
    __table_args__ = NEVER_REUSE_IDS

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(63), unique=True)
    description: Mapped[str] = mapped_column(Text, default="")
    owner_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), default=None, index=True)
    spec: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)

    owner: Mapped[User | None] = relationship()


class Environment(Base):
    """Several guests checked out as one, in ordered tiers, for one lease (services/environments).

    ``spec`` is the template's spec as it was at checkout (a later edit of the template changes no
    running environment). ``step`` is the environment's own: provisioning (``tier`` says which tier is
    on its way), ready, failed (``step_reason`` names the guest and its step) or retired. ``live_name``
    is ``name`` while the environment is live, NULL once retired, as for guests.
    """

    __tablename__ = "environments"
    __table_args__ = NEVER_REUSE_IDS

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(63), index=True)
    live_name: Mapped[str | None] = mapped_column(String(63), unique=True, default=None)
    owner_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), default=None, index=True)
    template_id: Mapped[int | None] = mapped_column(
        ForeignKey("env_templates.id", ondelete="SET NULL"), default=None, index=True)
    template_name: Mapped[str] = mapped_column(String(63), default="")
    spec: Mapped[str] = mapped_column(Text, default="")
    purpose: Mapped[str] = mapped_column(Text, default="")
    expires_at: Mapped[dt.datetime | None] = mapped_column(DateTime, default=None, index=True)
    step: Mapped[str] = mapped_column(String(16), default="provisioning", index=True)
    step_reason: Mapped[str] = mapped_column(Text, default="")
    tier: Mapped[int] = mapped_column(Integer, default=0)
    keep_failed: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow, index=True)
    retired_at: Mapped[dt.datetime | None] = mapped_column(DateTime, default=None)
    version: Mapped[int] = mapped_column(Integer, default=1, server_default="1")

    __mapper_args__ = {"version_id_col": version}

    owner: Mapped[User | None] = relationship()
    guests: Mapped[list[Guest]] = relationship(back_populates="environment")


class ApiToken(Base):
    """A bearer token for the API; only its SHA-256 is stored, the token is shown once."""

    __tablename__ = "api_tokens"
    __table_args__ = NEVER_REUSE_IDS

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    name: Mapped[str] = mapped_column(String(128))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16), default="")
    scope: Mapped[str] = mapped_column(String(16), default="read")
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    expires_at: Mapped[dt.datetime | None] = mapped_column(DateTime, default=None)
    last_used_at: Mapped[dt.datetime | None] = mapped_column(DateTime, default=None)
    revoked: Mapped[bool] = mapped_column(Boolean, default=False)

    user: Mapped[User] = relationship(back_populates="tokens")


class UserSession(Base):
    """A browser's login (services/sessions.py): only the SHA-256 of the cookie's random id is stored."""

    __tablename__ = "sessions"
    __table_args__ = NEVER_REUSE_IDS

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    last_seen_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    remote_addr: Mapped[str] = mapped_column(String(64), default="")
    user_agent: Mapped[str] = mapped_column(String(255), default="")
    ended_at: Mapped[dt.datetime | None] = mapped_column(DateTime, default=None)
    end_reason: Mapped[str] = mapped_column(String(32), default="")


class AuditEvent(Base):
    """Who did what to which object, when, from where, and how it ended."""

    __tablename__ = "audit_events"
    __table_args__ = (
        # Login throttling counts failed logins per username and per address (services/loginthrottle.py).
        Index("ix_audit_events_action_result_name_at", "action", "result", "object_name", "at"),
        Index("ix_audit_events_action_result_addr_at", "action", "result", "remote_addr", "at"),
        NEVER_REUSE_IDS,
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow, index=True)
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), default=None, index=True)
    actor_name: Mapped[str] = mapped_column(String(64), default="")
    action: Mapped[str] = mapped_column(String(64))
    object_type: Mapped[str] = mapped_column(String(32), default="")
    object_id: Mapped[str] = mapped_column(String(64), default="")
    object_name: Mapped[str] = mapped_column(String(255), default="")
    result: Mapped[str] = mapped_column(String(16), default="ok")
    message: Mapped[str] = mapped_column(Text, default="")
    remote_addr: Mapped[str] = mapped_column(String(64), default="")


class TaskLease(Base):
    """Who runs a periodic task now, and until when.

    Several Fogmachine processes may share one database; each periodic task must
    run in one of them at a time. A process takes or renews a lease with one
    conditional UPDATE; one that dies stops renewing and loses the lease when it
    expires. Rows named ``process:<id>`` are the processes' own heartbeats.
    """

    __tablename__ = "task_leases"

    name: Mapped[str] = mapped_column(String(128), primary_key=True)
    owner: Mapped[str] = mapped_column(String(64), default="")
    expires_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class GuestNotice(Base):
    """A notice (expiry warning, ready, retired) sent to a guest's owner.

    The unique pair (guest, kind) is what makes each notice go out exactly once,
    even when two processes notice the same guest at the same moment.
    """

    __tablename__ = "guest_notices"
    __table_args__ = (UniqueConstraint("guest_id", "kind", name="uq_guest_notices_guest_id_kind"), NEVER_REUSE_IDS)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    guest_id: Mapped[int] = mapped_column(ForeignKey("guests.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(32))
    sent_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    # True once delivered, or at once for a warning skipped because a nearer one was due.
    delivered: Mapped[bool] = mapped_column(Boolean, default=False)


class GuestStep(Base):
    """When a guest entered a provisioning step (and the reason it had then): the guest page's timeline.

    ``guests.step`` only says where a guest is now. Rows here are written by
    ``_record_step_changes`` below, in the flush that changes the step, so the
    history is in the same transaction as the change and no writer of the step
    (claim, the engine, phone-home, reconciliation, delete, expiry, and any
    written later) can forget it. They go with their guest (``ON DELETE CASCADE``,
    and explicitly in the history purge).
    """

    __tablename__ = "guest_steps"
    __table_args__ = (Index("ix_guest_steps_guest_id_at", "guest_id", "at"), NEVER_REUSE_IDS)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    guest_id: Mapped[int] = mapped_column(ForeignKey("guests.id", ondelete="CASCADE"))
    step: Mapped[str] = mapped_column(String(16))
    at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    reason: Mapped[str] = mapped_column(Text, default="")

    # One way only: a guest never loads its history by accident, and a new guest (no id before the flush)
    # can still be named.
    guest: Mapped[Guest] = relationship()


@event.listens_for(Session, "before_flush")
def _record_step_changes(session: Session, _context: Any, _instances: Any) -> None:
    """A ``GuestStep`` row for every managed guest whose ``step`` this flush changes (or that it inserts)."""
    for obj in (*session.new, *session.dirty):
        if not isinstance(obj, Guest) or obj.managed is False:
            continue
        if obj in session.new:
            step = obj.step or Step.PLACING
        else:
            history = inspect(obj).attrs.step.history
            if not history.added or (history.deleted and history.deleted[0] == history.added[0]):
                continue
            step = history.added[0]
        session.add(GuestStep(guest=obj, step=step, reason=(obj.step_reason or "")[:2000], at=utcnow()))
