"""What a guest of an environment's later tier waits for, in words a refusal can use.

Such a guest (step ``waiting``) holds its capacity but has no domain yet: it
is provisioned once every guest of the tiers before it is ready. A power
action on it has nothing to act on, so it is refused with the tier it waits
for ("guest lab1-web1 is waiting for tier db of environment lab1"), rather
than with libvirt's "no domain".
"""

from __future__ import annotations

import json

from fogmachine.db.models import Guest
from fogmachine.errors import ValidationError
from fogmachine.services.environments import spec as specmod


def _tier_names(spec_json: str) -> list[str]:
    try:
        return [tier.name for tier in specmod.parse(json.loads(spec_json)).tiers]
    except (ValueError, ValidationError):
        return []  # a spec that no longer parses: the tier is then named by its number


def waiting_for(guest: Guest) -> str:
    """"tier db of environment lab1": the tier ``guest`` waits for, the one its environment is provisioning
    now (or, should the environment say otherwise, the tier just before the guest's own). Reads
    ``guest.environment``, so it is called inside a unit of work."""
    env = guest.environment
    own = guest.tier or 0
    if env is None:
        return "the tiers before its own"
    if own == 0:
        return f"the start of environment {env.name}"
    current = env.tier if env.tier < own else max(own - 1, 0)
    names = _tier_names(env.spec)
    tier = names[current] if current < len(names) else str(current)
    return f"tier {tier} of environment {env.name}"
