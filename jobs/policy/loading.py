"""Reading a policy: YAML -> typed ``Policy`` with every problem named (file, key path, message),
the lake schema check, the JSON Schema and the default policy path."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from jobs.policy.classes import PolicyError
from jobs.policy.model import Policy
from jobs.policy.rules import _semantic_problems, hierarchy_file_problems


def _loc_to_path(loc: tuple[Any, ...]) -> str:
    parts: list[str] = []
    for item in loc:
        if isinstance(item, int):
            parts.append(f"[{item}]")
        elif item in ("ColumnClass", "ColumnSpec") or str(item).startswith(("function-", "union[", "literal[")):
            continue  # pydantic's union branch names are noise in a key path
        else:
            parts.append(("." if parts else "") + str(item))
    return "".join(parts) or "<root>"




def parse_policy(data: Any, source: str = "<memory>", raw: bytes | None = None,
                 base_dir: Path | None = None) -> Policy:
    """``base_dir``: where relative hierarchy files are (the policy file's directory); when given,
    every tree hierarchy's file is checked too (load_policy does this)."""
    if not isinstance(data, dict):
        raise PolicyError(source, [("<root>", "the policy must be a YAML mapping")])
    file_problems = hierarchy_file_problems(data.get("hierarchies"), base_dir) if base_dir is not None else []
    try:
        policy = Policy.model_validate(data)
    except ValidationError as exc:
        problems: dict[str, str] = {}
        for error in exc.errors():
            path = _loc_to_path(error["loc"])
            # Union errors repeat per branch; keep the first message per key path.
            problems.setdefault(path, error["msg"])
        for path, message in file_problems:
            problems.setdefault(path, message)
        raise PolicyError(source, sorted(problems.items())) from None
    problems = _semantic_problems(policy) + file_problems
    if problems:
        raise PolicyError(source, problems)
    digest = hashlib.sha256(raw if raw is not None else json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()
    policy._source, policy._sha256 = source, digest
    return policy


def load_policy(path: str | Path) -> Policy:
    path = Path(path)
    source = str(path)
    if not path.is_file():
        raise PolicyError(source, [("<file>", "policy file not found")])
    raw = path.read_bytes()
    try:
        data = yaml.safe_load(raw)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "<file>"
        raise PolicyError(source, [(where, f"not valid YAML: {getattr(exc, 'problem', exc)}")]) from None
    return parse_policy(data, source, raw, base_dir=path.resolve().parent)


def check_table_schema(policy: Policy, table: str, columns: list[str]) -> None:
    """An unclassified column in the lake is an error: new personal columns must not slip through."""
    spec = policy.tables[table]
    problems = [(f"tables.{table}.columns", f"column {c!r} exists in the lake but is not classified")
                for c in columns if c not in spec.columns and c != "subject_bucket"]
    if problems:
        raise PolicyError(policy.source, problems)


def json_schema() -> dict[str, Any]:
    schema = Policy.model_json_schema(by_alias=True)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "wasure policy"
    return schema


def default_policy_path() -> Path:
    import os

    env = os.environ.get("WASURE_POLICY")
    if env:
        return Path(env)
    local = Path("policies/example.yaml")
    if local.is_file():
        return local
    return Path(__file__).resolve().parents[2] / "policies" / "example.yaml"
