"""The small end-to-end setup the DAG, browser and cluster tests share: the example policy cut to a
few tables and one purpose, a key file outside the lake, and a small generated lake.

The cut keeps one table of each retention kind (closure -> pseudonymize, closure -> delete,
business date -> delete), so several whole DAG runs stay affordable; the jobs themselves are
tested on the full policy elsewhere.
"""
from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
EXAMPLE_POLICY = REPO / "policies" / "example.yaml"
E2E_TABLES = ("accounts", "devices", "network_events")


def write_e2e_policy(directory: Path, tables: tuple[str, ...] = E2E_TABLES, releases: tuple[str, ...] = (),
                     statistics: tuple[str, ...] = ()):
    """The example policy with only ``tables``, the `service` purpose (and those of the named
    releases, none of them consent-based), no registers, and only the named releases and statistics; written to ``directory/policy.yaml`` beside its hierarchies."""
    import yaml

    from jobs.policy import load_policy

    data = yaml.safe_load(EXAMPLE_POLICY.read_text())
    data["tables"] = {name: spec for name, spec in data["tables"].items() if name in tables}
    kept = {"service"} | {data["releases"][r]["purpose"] for r in releases}
    data["purposes"] = {name: spec for name, spec in data["purposes"].items() if name in kept}
    for spec in data["purposes"].values():
        spec["requires_consent"] = False          # no consent register in this cut
    for spec in data["tables"].values():
        purposes = spec.get("purposes", [])
        spec["purposes"] = ["service"] if "service" in purposes else [p for p in purposes if p in kept] or ["service"]
    for register in ("consents_table", "restrictions_table", "legal_holds_table"):
        data["subject"].pop(register, None)
    data["releases"] = {k: v for k, v in data["releases"].items() if k in releases}
    data["statistics"] = {k: v for k, v in data["statistics"].items() if k in statistics}
    path = Path(directory) / "policy.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False))
    shutil.copytree(EXAMPLE_POLICY.parent / "hierarchies", path.parent / "hierarchies")   # tree files, next to it
    return load_policy(path)


@contextlib.contextmanager
def keys_file(policy, path: Path):
    """$WASURE_KEYS -> a fresh key file holding every key the policy names (restored afterwards)."""
    from jobs.runtime.keys import init_keys

    old = os.environ.get("WASURE_KEYS")
    os.environ["WASURE_KEYS"] = str(path)
    init_keys([p.key_id for p in policy.purposes.values()] + [policy.defaults.ledger_key_id])
    try:
        yield path
    finally:
        if old is None:
            os.environ.pop("WASURE_KEYS", None)
        else:
            os.environ["WASURE_KEYS"] = old


def write_small_lake(spark, policy, lake, subjects: int = 60, events_per_subject: int = 4):
    """``subjects`` subjects, the policy's tables, built by the generator's table builders."""
    from jobs import generate
    from jobs.lake.layout import write_policy_table
    from jobs.policy import check_table_schema

    options = generate.GenerateOptions(subjects=subjects, events_per_subject=events_per_subject)
    pools = generate.build_pools(options.seed)
    for name in policy.tables:
        df = getattr(generate, name)(spark, options, pools)
        check_table_schema(policy, name, df.columns)
        write_policy_table(spark, lake, policy.tables[name], df)
    return lake
