"""Where the backups are and which exist: ``backups/YYYY-MM-DD/`` with a ``_manifest.json`` written
last (a backup without it is incomplete), and when each expires. File listings only, no Spark job:
the backup job (jobs/backup.py), its encryption (jobs/lake/backup_crypto.py), the deletion ledger
(jobs/lake/backup_ledger.py) and the erasure all read this."""
from __future__ import annotations

import datetime as dt
import json

from jobs.lake.layout import Lake
from jobs.policy import Policy
from jobs.lake.storage import join, name_of

MANIFEST = "_manifest.json"


def backup_dir(lake: Lake, day: dt.date) -> str:
    return join(lake.backups, day.isoformat())


def expires_on(policy: Policy, day: dt.date) -> dt.date:
    return day + dt.timedelta(days=policy.defaults.backup_retention_days)


def list_backups(lake: Lake) -> list[dt.date]:
    """Dates of complete backups (those with a manifest), oldest first."""
    files = lake.files
    days = []
    for child in files.list(lake.backups):          # [] when there is no backups/ yet
        try:
            day = dt.date.fromisoformat(name_of(child))
        except ValueError:
            continue
        if files.is_file(join(child, MANIFEST)):
            days.append(day)
    return sorted(days)


def unexpired_backups(policy: Policy, lake: Lake, as_of: dt.date) -> list[dt.date]:
    return [d for d in list_backups(lake) if expires_on(policy, d) > as_of]


def read_manifest(lake: Lake, day: dt.date) -> dict:
    return json.loads(lake.files.read_text(join(backup_dir(lake, day), MANIFEST)))
