"""Which datasets under the lake are derived from a policy table and still hold its subjects.

仮名加工情報 is personal data (APPI art. 2(5); GDPR recital 26): an erasure request reaches it like the
raw rows (REQUIREMENTS S4). The copies are found from the policy, not listed in the erasure code:

    pseudonymized/<purpose>/<table>                 one per purpose the table serves (`wasure pseudonymize`)
    pseudonymized/<purpose>/retained/<table>        rows kept past deletion (retention action pseudonymize, S5)
    staging/pseudonymized/<purpose>/<table>         an output waiting for its gate (a killed run leaves one)
    quarantine/pseudonymized/<purpose>/<table>/<t>  outputs that failed their gate

In every copy the subject key is the keyed pseudonym of the subject id under the purpose's key,
which is how erasure finds a subject's rows there. Anonymized releases (匿名加工情報: per-release
surrogates, k-anonymous classes) and statistics (aggregates with small-cell suppression) keep no
subject row and no linking code, by construction and by their gates, so they are not copies here.
A job that adds a per-subject output adds its location to ``derived_copies``.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from jobs.lake import Lake, is_delta
from jobs.policy import Policy, Table

RETAINED = "retained"


@dataclass(frozen=True)
class DerivedCopy:
    table: str            # the policy table it is derived from
    purpose: str          # whose key pseudonymizes the subject key in it
    relative: str         # path under the lake root
    subject_column: str   # holds the pseudonym of the subject id
    retained: bool        # 仮名加工情報 kept after an account closure (S5)


def retained_purpose(table: Table) -> str:
    """The purpose whose key pseudonymizes the rows a table keeps past deletion."""
    return table.retention.purpose if table.retention and table.retention.purpose else table.purposes[0]


def keeps_pseudonymized(table: Table) -> bool:
    """Tables whose rows are kept as 仮名加工情報 after closure: retention action ``pseudonymize``."""
    return table.retention is not None and table.retention.action == "pseudonymize"


def retained_path(lake: Lake, purpose: str, table_name: str) -> str:
    return str(Path(lake.pseudonymized(purpose, RETAINED)) / table_name)


def derived_copies(policy: Policy, lake: Lake) -> list[DerivedCopy]:
    """Every existing copy of every policy table's subject rows outside raw/ (see module docstring)."""
    root = lake.root
    out: list[DerivedCopy] = []

    def add(name: str, purpose: str, path: Path, retained: bool = False) -> None:
        if is_delta(path):
            out.append(DerivedCopy(name, purpose, str(path.relative_to(root)), policy.tables[name].subject_key, retained))

    for name, table in policy.tables.items():
        for purpose in table.purposes:
            add(name, purpose, Path(lake.pseudonymized(purpose, name)))
            add(name, purpose, Path(lake.staging("pseudonymized", purpose, name)))
            failed = Path(lake.quarantine("pseudonymized", purpose, name))
            for attempt in sorted(failed.iterdir()) if failed.is_dir() else []:
                add(name, purpose, attempt)
        if keeps_pseudonymized(table):
            purpose = retained_purpose(table)
            add(name, purpose, Path(retained_path(lake, purpose, name)), retained=True)
    return out
