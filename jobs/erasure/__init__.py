"""Erasure on request (`wasure erase`, `wasure verify-erasure`): REQUIREMENTS S3, S4, S5, S13, S14.

The package, by layer: ``model`` (constants, state tables, requests), ``intake`` (input checked before
any write), ``vault``, ``holds``, ``plan`` (counts, files, commit history), ``steps`` (one batch through
the state machine), ``receipts``, ``job`` (`wasure erase`, spark-submit entry point) and
``verification`` (`wasure verify-erasure`).

One run takes a batch of requests (each: a request id, one or more subject ids, a source among
account_closure / ccpa / appi / gdpr, the date it was received) and moves every request through a
resumable state machine stored in the Delta table ``state/erasure_state`` (append-only, one commit
per transition of the batch):

    received -> retained_copy -> deleted -> backups_quarantined -> purged -> verified -> closed

- received: the subject ids are checked; their identifying values (the unique values of columns of
  class identifying / individual_code / property_damage, and the subject id itself) are captured
  into an encrypted per-request vault (AES-GCM under a key derived from the ledger key) so that a
  run killed later can still verify, and their keyed hashes into ``state/erasure_values`` so that
  an auditor can verify after the vault is destroyed.
- retained_copy: for account closures (and APPI requests), the tables whose retention action is
  ``pseudonymize`` keep their 仮名加工情報 (``jobs.pseudonymize.retain_pseudonymized``, S5).
- deleted: ONE Delta DELETE per table for the whole batch (``LakeTable.delete_values``: the
  subjects' buckets, and their ids held by a UDF, never written to ``_delta_log``); the commit's
  userMetadata (job "erasure", the request ids, no personal value) lets ``quarantine.reconcile(job="erasure")`` rebuild the quarantine ledger and the per-table
  audit, and lets a re-run tell which tables are done. Legal holds keep the held rows (S13).
- backups_quarantined: every unexpired backup holding a subject is recorded in the deletion ledger
  (``jobs.backup``), which a restore re-applies.
- purged: after the grace period the superseded files are rewritten and vacuumed
  (``quarantine.physical_purge``: files with deleted rows rewritten, superseded files deleted); until then requests wait here.
- verified: ``verify.scan_for_values`` over every file under the lake root except the backups
  quarantined for these subjects finds none of their identifying values.
- closed: receipt JSON (``receipts/<request id>.json``) and a row in ``audit/erasure``; the vault is
  destroyed.

Every state, ledger, audit and receipt row names a subject only by HMAC-SHA256 with the ledger key
(``policy.defaults.ledger_key_id``). Plain ids and values live in memory and, encrypted, in the vault.
A run killed anywhere finishes when any later `wasure erase` runs (every open request is resumed),
with no double effect: each step is idempotent or recognizes its own earlier commits.
"""
from jobs.lake.holds import Hold, HoldBook
from jobs.erasure.intake import (
    RequestInput, check_request_id, check_source, check_subject_ids, default_request_id, parse_received_at,
    prepare_requests, read_id_file, requests_from_inbox, submit_requests,
)
from jobs.erasure.job import check_purpose_keys, needed_purposes, run
from jobs.erasure.model import (
    EXTENDED, JOB, KEEPS_PSEUDONYMIZED, REQUESTS_TABLE, ROWS_TABLE, SOURCES, STATE_TABLE, STATES, VALUES_TABLE,
    ErasureReport, Request, append_states, load_states,
)
from jobs.erasure.plan import all_commits, capture_values, erasure_commits, pseudonymize_tables, table_hits
from jobs.erasure.receipts import build_receipts
from jobs.erasure.vault import read_vault, value_hash, value_hash_column
from jobs.erasure.verification import VerifyReport, scan_for_hashes, verify
from jobs.lake.layout import table_version

__all__ = [
    "Hold", "HoldBook", "RequestInput", "check_request_id", "check_source", "check_subject_ids", "default_request_id",
    "parse_received_at", "prepare_requests", "read_id_file", "requests_from_inbox", "submit_requests",
    "check_purpose_keys", "needed_purposes", "run", "EXTENDED", "JOB", "KEEPS_PSEUDONYMIZED",
    "REQUESTS_TABLE", "ROWS_TABLE", "SOURCES", "STATE_TABLE", "STATES", "VALUES_TABLE", "ErasureReport", "Request",
    "append_states", "load_states", "all_commits", "capture_values", "erasure_commits", "pseudonymize_tables",
    "table_hits", "build_receipts", "read_vault", "value_hash", "value_hash_column", "VerifyReport",
    "scan_for_hashes", "verify", "table_version",
]
