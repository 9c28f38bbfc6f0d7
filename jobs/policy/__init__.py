"""Policy as code: ``policies/*.yaml`` parsed and validated into typed objects.

Every error names the file, the key path (``tables.accounts.columns.email.class``) and what is
wrong. Jobs load the policy before they touch any data, so an invalid policy writes nothing.

    classes.py   the vocabulary: PolicyError, column classes, TREATMENTS, sane ranges
    model.py     the typed model (pydantic), one class per YAML block
    rules.py     cross-reference checks between blocks, hierarchy files
    loading.py   YAML -> Policy, the lake schema check, JSON Schema, default path
"""
from jobs.policy.classes import (AGE_MAX, BACKUP_RETENTION_DAYS_MAX, ERASURE_DEADLINE_DAYS_MAX, GRACE_DAYS_MAX, K_MAX, L_MAX,
                                 PERIOD_DAYS_MAX, PERSONAL_CLASSES, PSEUDONYMIZED_FORBIDDEN, PSEUDONYMIZED_OPERATORS,
                                 RELEASE_FORBIDDEN, TREATMENTS, ColumnClass, PolicyError, Treatment)
from jobs.policy.loading import check_table_schema, default_policy_path, json_schema, load_policy, parse_policy
from jobs.policy.model import (DP_BOUND_MAX, DP_BUDGET_MAX, DP_DELTA_MAX, DP_EPSILON_MAX, DP_RHO_MAX, DP_ROWS_MAX, ColumnSpec,
                               Defaults, DifferentialPrivacy, DPDomain, Hierarchy, LegalHold, MonthRange, Policy, Purpose,
                               Release, Retention, Statistic, Subject, Table)
from jobs.policy.rules import hierarchy_file_problems

__all__ = [
    "AGE_MAX", "BACKUP_RETENTION_DAYS_MAX", "ERASURE_DEADLINE_DAYS_MAX", "GRACE_DAYS_MAX", "K_MAX", "L_MAX",
    "PERIOD_DAYS_MAX", "PERSONAL_CLASSES", "PSEUDONYMIZED_FORBIDDEN", "PSEUDONYMIZED_OPERATORS", "RELEASE_FORBIDDEN",
    "TREATMENTS", "ColumnClass", "PolicyError", "Treatment",
    "check_table_schema", "default_policy_path", "json_schema", "load_policy", "parse_policy",
    "DP_BOUND_MAX", "DP_BUDGET_MAX", "DP_DELTA_MAX", "DP_EPSILON_MAX", "DP_RHO_MAX", "DP_ROWS_MAX",
    "ColumnSpec", "Defaults", "DifferentialPrivacy", "DPDomain", "Hierarchy", "LegalHold", "MonthRange", "Policy",
    "Purpose", "Release", "Retention", "Statistic", "Subject", "Table", "hierarchy_file_problems",
]
