"""API keys for the prediction service: made once, shown once, kept only as hashes.

Keys are 256-bit random tokens, so a plain SHA-256 of each is enough at rest (a slow password
hash guards guessable secrets; these are not). A request presents the key itself, as
`Authorization: Bearer KEY` or `X-API-Key: KEY`; its hash is compared in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
from collections.abc import Iterable
from pathlib import Path

KEY_PREFIX = "pk_"
LOOPBACK = {"127.0.0.1", "::1", "localhost"}
HASH = re.compile(r"^sha256:[0-9a-f]{64}$")


def exposure_problem(host: str, keys_file: Path | None, allow_anonymous: bool) -> str | None:
    """Why the service must not listen on `host` as configured (None: it may): beyond loopback
    it needs API keys, or an explicit word that a gateway in front authenticates."""
    if host in LOOPBACK or keys_file is not None or allow_anonymous:
        return None
    return (
        f"--host {host} listens beyond this machine: set PNEUMO_SERVE_API_KEYS_FILE "
        "(`pneumo api-key new`), or pass --allow-anonymous behind a gateway that authenticates"
    )


def new_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_key(key: str) -> str:
    return "sha256:" + hashlib.sha256(key.encode()).hexdigest()


def add_key_hash(path: Path, key: str) -> None:
    """Append the hash of `key` to a keys file, created readable by its owner only."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    with os.fdopen(fd, "a") as handle:
        handle.write(hash_key(key) + "\n")


def read_key_hashes(path: Path) -> frozenset[str]:
    """The hashes in a keys file: one per line, `#` comments and blank lines ignored.

    A line that is not a hash (a key pasted by mistake, say) is refused with its line number,
    never accepted as a key of its own.
    """
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise ValueError(f"API keys file {path}: cannot be read ({exc.strerror})") from None
    hashes = set()
    for number, line in enumerate(lines, 1):
        entry = line.split("#", 1)[0].strip()
        if not entry:
            continue
        if not HASH.match(entry):
            raise ValueError(
                f"API keys file {path}, line {number}: not a key hash (sha256:<64 hex digits>); "
                "`pneumo api-key new` prints the line to add"
            )
        hashes.add(entry)
    if not hashes:
        raise ValueError(f"API keys file {path}: no key hash in it")
    return frozenset(hashes)


def presented_key(headers: dict[bytes, bytes]) -> str | None:
    """The key a request carries, if any (raw ASGI headers, names lower-case)."""
    bearer = headers.get(b"authorization", b"").decode("latin-1")
    if bearer[:7].lower() == "bearer ":
        return bearer[7:].strip()
    header = headers.get(b"x-api-key")
    return header.decode("latin-1").strip() if header else None


def key_matches(key: str, hashes: Iterable[str]) -> bool:
    presented = hash_key(key)
    # Every hash is compared, so the time taken does not tell which one came close.
    return sum(hmac.compare_digest(presented, known) for known in hashes) > 0
