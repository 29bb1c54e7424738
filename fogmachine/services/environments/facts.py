"""What a tier's variables are rendered over: the earlier tiers' guests, the environment, its owner.

Apart from ``variables`` so that the engine can gather the facts without
loading Jinja2 (about 2 MB of the server's memory, issue 12's budget): it is
loaded on the first template check or tier start, not at the server's start.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class GuestFacts:
    """What one guest reported at phone-home, and its name."""

    name: str
    ip: str
    hostname: str
    mac: str


@dataclass(frozen=True)
class EnvFacts:
    name: str
    purpose: str
    template: str


@dataclass(frozen=True)
class OwnerFacts:
    username: str
    email: str
