"""The password policy: long enough, hard to guess, not the user's own name or address.

Length alone let ``password`` and ``12345678`` through. Guessability is
estimated with zxcvbn (Dropbox's estimator, the PyPI port), which knows the
common passwords, dictionary words, keyboard walks, dates, repeats and leet
substitutions, and gives a score 0-4 plus feedback a person can act on; its
feedback is the message. The minimum score is the setting
``password_min_score`` (default 3, "safely unguessable: moderate protection
from offline slow-hash attacks", fitting Argon2id hashes).

On top of zxcvbn (which only lowers the score of a password containing the
user's inputs), the username and the e-mail address are refused outright in
their obvious variants: any case, with digits and punctuation around them,
leet-speak, reversed. Every place that sets a password calls ``check``:
registration, the administrators' user creation, the password change (page and
API) and ``fogmachine user add``.

zxcvbn is imported on the first check, not with this module: its word lists
and their rank tables are about 12 MB of a server's resident memory (measured
with bench/virt_memory.py), and a server that never sees a password set
(most of them, most of the time) has no use for them.
"""

from __future__ import annotations

import re

from fogmachine.errors import ValidationError

MIN_LENGTH = 8
MAX_LENGTH = 1024
DEFAULT_MIN_SCORE = 3
# zxcvbn's matching grows quickly with the length; the first characters decide the score anyway. And
# zxcvbn 4.5 raises ValueError past 72 characters (its max_length): a longer password (up to MAX_LENGTH is
# allowed) answered 500 until the fuzz test sent one. 72 works with 4.4, which has no such limit, too.
ESTIMATE_CHARS = 72
_LEET = {"0": "o", "3": "e", "4": "a", "5": "s", "7": "t", "@": "a", "$": "s", "!": "i", "|": "l"}
_LEET_ONE = (str.maketrans({**_LEET, "1": "i"}), str.maketrans({**_LEET, "1": "l"}))
_NOT_LETTERS = re.compile(r"[^a-z]+")
_EDGES = re.compile(r"^[\W\d_]+|[\W\d_]+$")


def _folds(text: str) -> set[str]:
    """Letters only, lower case, leet undone, digits and punctuation around cut off:
    ``Al1ce-2024!`` and ``alice`` fold alike."""
    core = _EDGES.sub("", text.casefold()) or text.casefold()
    return {_NOT_LETTERS.sub("", core.translate(table)) for table in _LEET_ONE}


def _fold(text: str) -> str:
    return min(_folds(text))


def _personal(username: str, email: str) -> list[str]:
    """The user's own words, folded; very short ones would refuse too much."""
    words = {username, email, email.partition("@")[0]}
    return [w for w in (_fold(w) for w in words if w) if len(w) >= 3]


def check(password: str, *, username: str = "", email: str = "", min_score: int = DEFAULT_MIN_SCORE,
          field: str = "password") -> str:
    """The password, or ValidationError saying why (naming ``field``)."""
    if not isinstance(password, str) or len(password) < MIN_LENGTH:
        raise ValidationError(f"{field.replace('_', ' ')} must be at least {MIN_LENGTH} characters", field=field)
    if len(password) > MAX_LENGTH:
        raise ValidationError(f"{field.replace('_', ' ')} is too long (at most {MAX_LENGTH} characters)",
                              field=field)
    variants = {v for f in _folds(password) for v in (f, f[::-1])}
    for word in _personal(username, email):
        if any(word in v and len(v) < 2 * len(word) for v in variants):
            what = "username" if word == _fold(username) else "e-mail address"
            raise ValidationError(f"{field.replace('_', ' ')} must not be your {what} or a variant of it",
                                  field=field)
    if min_score > 0:
        from zxcvbn import zxcvbn  # type: ignore[import-untyped]  # lazily: see the module docstring

        result = zxcvbn(password[:ESTIMATE_CHARS], user_inputs=[w for w in (username, email) if w])
        if result["score"] < min_score:
            feedback = result["feedback"]
            advice = " ".join(part for part in [feedback.get("warning") or "", *feedback.get("suggestions", [])]
                              if part)
            raise ValidationError(
                f"{field.replace('_', ' ')} is too easy to guess (strength {result['score']} of 4, "
                f"{min_score} needed). {advice or 'Use a longer phrase of unusual words.'}".strip(),
                field=field, details={"score": result["score"], "min_score": min_score})
    return password
