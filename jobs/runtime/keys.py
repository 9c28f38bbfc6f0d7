"""Key store for pseudonymization keys (削除情報等): kept apart from the lake, never printed.

Lookup order for a key id:
1. environment variable ``WASURE_KEY_<KEY_ID>`` (key id upper-cased, non-alphanumerics as ``_``),
   base64 — how a secrets backend or an Airflow connection hands keys to a task in production;
2. the key file ``$WASURE_KEYS`` (default ``~/.config/wasure/keys.json``): ``{"keys": {"<key id>":
   "<base64>"}}``, which must be mode 0600 and must not lie under the lake root.

Besides the purpose and ledger keys (`wasure keys init`), `wasure backup` creates one key per backup
here and `wasure backup --expire` destroys it (jobs/lake/backup_crypto.py): the key file must be writable
by the job, and a backup key given by an environment variable cannot be destroyed by wasure.

Errors name the key id and the store, never key material.
"""
from __future__ import annotations

import base64
import binascii
import fcntl
import json
import os
import re
import secrets
import stat
from pathlib import Path
from typing import TYPE_CHECKING, Callable, TypeVar

from jobs.runtime.console import InputError

if TYPE_CHECKING:                       # the lake layer sits above the runtime: types only
    from jobs.lake.layout import Lake

MIN_KEY_BYTES = 32
T = TypeVar("T")


def key_file_path() -> Path:
    default = Path(os.environ.get("XDG_CONFIG_HOME", Path.home() / ".config")) / "wasure" / "keys.json"
    return Path(os.environ.get("WASURE_KEYS", default)).expanduser().resolve()


def _env_name(key_id: str) -> str:
    return "WASURE_KEY_" + re.sub(r"[^A-Za-z0-9]", "_", key_id).upper()


def _check_location(path: Path, lake: Lake | None) -> None:
    # A remote lake (hdfs://, s3a://) cannot contain a local key file; a local one must not.
    if lake is not None and lake.is_local and (path == lake.root or lake.root in path.parents):
        raise InputError(f"the key file {path} lies under the lake root {lake.uri}: keys must be stored apart from the data")


def _read_file(path: Path) -> dict[str, str]:
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise InputError(f"the key file {path} is readable by others (mode {mode:o}); run `chmod 600 {path}`")
    try:
        data = json.loads(path.read_text())
        keys = data["keys"]
        if not isinstance(keys, dict):
            raise TypeError
    except (ValueError, KeyError, TypeError):
        raise InputError(f"the key file {path} is not of the form {{\"keys\": {{\"<key id>\": \"<base64>\"}}}}") from None
    return keys


def load_key(key_id: str, lake: Lake | None = None) -> bytes:
    env = os.environ.get(_env_name(key_id))
    source = f"environment variable {_env_name(key_id)}"
    if env is None:
        path = key_file_path()
        _check_location(path, lake)
        if not path.is_file():
            raise InputError(f"key {key_id!r} not found: no {_env_name(key_id)} and no key file at {path} "
                             f"(create one with `wasure keys init`)")
        keys = _read_file(path)
        if key_id not in keys:
            raise InputError(f"key {key_id!r} not found in the key file {path} (add it with `wasure keys init`)")
        env, source = keys[key_id], f"key file {path}"
    try:
        key = base64.b64decode(env, validate=True)
    except (binascii.Error, ValueError):
        raise InputError(f"key {key_id!r} in the {source} is not valid base64") from None
    if len(key) < MIN_KEY_BYTES:
        raise InputError(f"key {key_id!r} in the {source} is {len(key)} bytes; at least {MIN_KEY_BYTES} are required")
    return key


def load_purpose_keys(policy, purposes: list[str], lake: Lake | None = None) -> dict[str, tuple[str, bytes]]:
    """purpose -> (key id, key); every key is checked before any job writes."""
    unknown = [p for p in purposes if p not in policy.purposes]
    if unknown:
        raise InputError(f"unknown purpose(s): {', '.join(unknown)} (the policy has {', '.join(policy.purposes)})")
    return {p: (policy.purposes[p].key_id, load_key(policy.purposes[p].key_id, lake)) for p in purposes}


def init_keys(key_ids: list[str], lake: Lake | None = None) -> list[str]:
    """Create the missing keys (32 random bytes each) in the key file, mode 0600. Returns the new ids."""
    if all(_env_name(k) in os.environ for k in key_ids):
        return []                         # every key comes from the environment: the file is not needed

    def add_missing(keys: dict[str, str]) -> list[str]:
        created = [k for k in key_ids if k not in keys and _env_name(k) not in os.environ]
        for key_id in created:
            keys[key_id] = base64.b64encode(secrets.token_bytes(MIN_KEY_BYTES)).decode()
        return created

    return _update_file(lake, add_missing)


def create_key(key_id: str, lake: Lake | None = None) -> bytes:
    """A new key (32 random bytes) under a new id in the key file: a backup's key (jobs/lake/backup_crypto.py).
    An id already in use is refused, so a key is never replaced under data it encrypts."""
    def add(keys: dict[str, str]) -> bytes:
        if key_id in keys or _env_name(key_id) in os.environ:
            raise InputError(f"key {key_id!r} exists already (key file {key_file_path()} or {_env_name(key_id)}); "
                             "a new key needs a new id")
        key = secrets.token_bytes(MIN_KEY_BYTES)
        keys[key_id] = base64.b64encode(key).decode()
        return key

    return _update_file(lake, add)


def env_key_name(key_id: str) -> str | None:
    """The environment variable holding ``key_id`` when there is one: wasure cannot destroy such a key."""
    name = _env_name(key_id)
    return name if name in os.environ else None


def delete_key(key_id: str, lake: Lake | None = None) -> bool:
    """Destroy ``key_id`` in the key file (crypto-shredding: what it encrypted becomes unreadable).
    False when it was not there. A key held in an environment variable is refused: it lives in a
    secrets backend wasure cannot change."""
    if env_key_name(key_id):
        raise InputError(f"key {key_id!r} is given by the environment variable {_env_name(key_id)}: wasure cannot destroy it; "
                         "delete it in the secrets backend and unset the variable, then run again")
    return _update_file(lake, lambda keys: keys.pop(key_id, None) is not None)


def _update_file(lake: Lake | None, change: Callable[[dict[str, str]], T]) -> T:
    """Read, change and rewrite the key file under an exclusive lock (lakes sharing one key file
    may add backup keys at the same time: a lost update would lose a backup's only key). The new
    file (0600) is renamed over the old one: never half-written. Unchanged keys: nothing written."""
    path = key_file_path()
    _check_location(path, lake)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    lock = os.open(path.with_name(path.name + ".lock"), os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        keys = _read_file(path) if path.is_file() else {}
        before = dict(keys)
        result = change(keys)
        if keys != before:
            tmp = path.with_name(path.name + ".tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as handle:
                json.dump({"keys": keys}, handle, indent=2)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, path)
        return result
    finally:
        os.close(lock)
