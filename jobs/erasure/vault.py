"""The per-request vault (plain ids and values, AES-GCM under a key derived from the ledger key) and value hashes."""
from __future__ import annotations

import hashlib
import hmac
import json
import os
from pathlib import Path

from pyspark.sql import Column, SparkSession
from pyspark.sql import functions as F

from jobs.console import InputError
from jobs.lake import Lake

# ------------------------------------------------------------------ vault (plain ids and values, encrypted)

def _vault_key(key: bytes) -> bytes:
    return hmac.new(key, b"wasure erasure vault v1", hashlib.sha256).digest()


def vault_path(lake: Lake, request_id: str) -> Path:
    return lake.root / "state" / "erasure_vault" / f"{request_id}.bin"


def write_vault(lake: Lake, key: bytes, request_id: str, payload: dict) -> None:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    path = vault_path(lake, request_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    nonce = os.urandom(12)
    blob = nonce + AESGCM(_vault_key(key)).encrypt(nonce, json.dumps(payload).encode(), request_id.encode())
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(blob)
    os.replace(tmp, path)


def read_vault(lake: Lake, key: bytes, request_id: str) -> dict | None:
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    path = vault_path(lake, request_id)
    if not path.is_file():
        return None
    blob = path.read_bytes()
    try:
        return json.loads(AESGCM(_vault_key(key)).decrypt(blob[:12], blob[12:], request_id.encode()))
    except InvalidTag:
        raise InputError(f"the erasure vault of request {request_id} does not open with ledger key "
                         f"(was the key rotated?)") from None


def destroy_vault(lake: Lake, request_id: str) -> None:
    vault_path(lake, request_id).unlink(missing_ok=True)


def value_hash(key: bytes, value: str) -> str:
    return hmac.new(key, ("value\0" + value).encode("utf-8"), hashlib.sha256).hexdigest()


def value_hash_column(column: Column, key: bytes) -> Column:
    """``value_hash`` as a Spark Column (JVM HMAC UDF, or its Arrow twin without the jar)."""
    from anonymizers.pseudonym import keyed_hash

    return keyed_hash(SparkSession.active(), key)(F.concat(F.lit("value\0"), column))
