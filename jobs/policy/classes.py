"""The contract's vocabulary: the policy error, the column classes, what each class becomes in each
kind of output (``TREATMENTS``), and the sane ranges of numeric settings."""
from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class PolicyError(ValueError):
    """An invalid policy. ``problems`` is a list of (key path, message)."""

    def __init__(self, source: str, problems: list[tuple[str, str]]):
        self.source = source
        self.problems = problems
        lines = [f"{source}: {path}: {msg}" for path, msg in problems]
        super().__init__("invalid policy\n" + "\n".join(lines))


class ColumnClass(str, Enum):
    identifying = "identifying"              # name, address detail, phone, email (APPI rule 31 item 1)
    individual_code = "individual_code"      # 個人識別符号: My Number, passport, licence, biometrics
    property_damage = "property_damage"      # card numbers, bank accounts, payment / Wi-Fi credentials
    quasi_identifier = "quasi_identifier"    # birth date, gender, postal area: generalized for release
    sensitive = "sensitive"                  # health measurements: only inside k-anonymous classes
    linking_code = "linking_code"            # member / device ids, persistent pseudonyms (連結符号)
    free_text = "free_text"                  # text that may mention any of the above
    other = "other"                          # not personal on its own (timestamps, counters, flags)


PERSONAL_CLASSES = {
    ColumnClass.identifying, ColumnClass.individual_code, ColumnClass.property_damage,
    ColumnClass.quasi_identifier, ColumnClass.sensitive, ColumnClass.linking_code, ColumnClass.free_text,
}


@dataclass(frozen=True)
class Treatment:
    """What a column of one class becomes in each kind of output: the one table that pseudonymize,
    anonymize, statistics and their gates all read (APPI rule 31 for 仮名加工情報, rule 34 and
    k-anonymity for 匿名加工情報 and statistics)."""

    pseudonymized: str                    # the default in 仮名加工情報: pseudonymize / drop / scrub / keep
    allowed: tuple[str, ...] | None       # treatments a policy may choose instead (None: any)
    refusal: str = ""                     # why another treatment is refused (policy validation)
    released: bool = True                 # may a release or a statistics table carry it (generalized)


TREATMENTS: dict[ColumnClass, Treatment] = {
    ColumnClass.identifying: Treatment("pseudonymize", ("pseudonymize", "drop"),
                                       "identifying columns are pseudonymized or dropped", released=False),
    ColumnClass.individual_code: Treatment("drop", ("drop",), "{cls} is always dropped (APPI rule 31); "
                                           "treatment {treatment!r} is not allowed", released=False),
    ColumnClass.property_damage: Treatment("drop", ("drop",), "{cls} is always dropped (APPI rule 31); "
                                           "treatment {treatment!r} is not allowed", released=False),
    ColumnClass.quasi_identifier: Treatment("keep", None),
    ColumnClass.sensitive: Treatment("keep", None),
    ColumnClass.linking_code: Treatment("pseudonymize", None, released=False),
    ColumnClass.free_text: Treatment("scrub", ("scrub", "drop"), "free_text columns are scrubbed or dropped", released=False),
    ColumnClass.other: Treatment("keep", None),
}
# The operator (anonymizers.registry, by name) that carries out each 仮名加工情報 treatment.
PSEUDONYMIZED_OPERATORS = {"drop": "drop", "scrub": "scrub", "pseudonymize": "keyed_pseudonym"}
# Classes no output may carry at all: always dropped, even from 仮名加工情報.
PSEUDONYMIZED_FORBIDDEN = tuple(c.value for c, t in TREATMENTS.items() if t.pseudonymized == "drop" and t.allowed == ("drop",))
# Classes a 匿名加工情報 release or a statistics table may not carry.
RELEASE_FORBIDDEN = tuple(c.value for c, t in TREATMENTS.items() if not t.released)


# Sane ranges (docs/policy.md, "Bounds and checks"): a value outside them is a typo or a
# misunderstanding (hours for days, a share as a percentage), never a policy anyone means.
PERIOD_DAYS_MAX = 36500            # retention period: 1 day .. 100 years
GRACE_DAYS_MAX = 3650              # logical delete -> physical purge: 0 .. 10 years
BACKUP_RETENTION_DAYS_MAX = 3650   # 1 day .. 10 years
ERASURE_DEADLINE_DAYS_MAX = 90     # CCPA: 45 days, extendable once by 45 (Cal. Civ. Code 1798.130(a)(2))
K_MAX = 1000                       # k of a release or a statistic: 2 .. 1000
L_MAX = 1000                       # l of a release: 1 .. 1000
AGE_MAX = 150                      # age_band width and top
