"""The per-request vault (plain ids and values, AES-GCM under a key derived from the ledger key) and value hashes."""
from __future__ import annotations

import hashlib
import hmac
import json
import os

from pyspark.sql import Column, SparkSession
from pyspark.sql import functions as F

from jobs.runtime.console import InputError
from jobs.lake.layout import Lake
from jobs.lake.storage import join

# ------------------------------------------------------------------ vault (plain ids and values, encrypted)

def _vault_key(key: bytes) -> bytes:
    return hmac.new(key, b"wasure erasure vault v1", hashlib.sha256).digest()


def vault_path(lake: Lake, request_id: str) -> str:
    return join(lake.state("erasure_vault"), f"{request_id}.bin")


def write_vault(lake: Lake, key: bytes, request_id: str, payload: dict) -> None:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    nonce = os.urandom(12)
    blob = nonce + AESGCM(_vault_key(key)).encrypt(nonce, json.dumps(payload).encode(), request_id.encode())
    lake.files.write_bytes(vault_path(lake, request_id), blob)     # atomic replace


def read_vault(lake: Lake, key: bytes, request_id: str) -> dict | None:
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    path, files = vault_path(lake, request_id), lake.files
    if not files.is_file(path):
        return None
    blob = files.read_bytes(path)
    try:
        return json.loads(AESGCM(_vault_key(key)).decrypt(blob[:12], blob[12:], request_id.encode()))
    except InvalidTag:
        raise InputError(f"the erasure vault of request {request_id} does not open with ledger key "
                         f"(was the key rotated?)") from None


def destroy_vault(lake: Lake, request_id: str) -> None:
    lake.files.delete(vault_path(lake, request_id))


def value_hash(key: bytes, value: str) -> str:
    return hmac.new(key, ("value\0" + value).encode("utf-8"), hashlib.sha256).hexdigest()


def value_hash_column(column: Column, key: bytes) -> Column:
    """``value_hash`` as a Spark Column (JVM HMAC UDF, or its Arrow twin without the jar)."""
    from anonymizers.pseudonym import keyed_hash

    return keyed_hash(SparkSession.active(), key)(F.concat(F.lit("value\0"), column))
