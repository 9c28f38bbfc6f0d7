"""What ``VACUUM ... RETAIN 0 HOURS`` deletes, found and deleted without Spark (``LakeTable.purge``).

Delta's VACUUM lists the table's directory in Spark jobs, replays the snapshot, joins the two,
deletes, and writes two commits of its own (``VACUUM START`` / ``VACUUM END``): seven Spark jobs and
~1 s per table on this box whatever the table's size (bench/analysis.md, "Session 35"). When the
latest checksum file lists every file of the current version, the files to keep are known without
Spark, and the rest is a walk of the table's directories: every file that the current version does
not reference goes (data files replaced or removed by earlier commits, deletion-vector files no
file points to any more, files of writes that never committed), then the directories left empty.

Hidden names are left alone, as VACUUM leaves them (``DeltaTableUtils.isHiddenDirectory``): those
starting with ``_`` or ``.`` (``_delta_log``, Hadoop's ``.crc`` sidecars, which go with their file),
except the directory of a partition column whose name starts with ``_``.
"""
from __future__ import annotations

from typing import Iterable

from jobs.lake.storage import name_of


def is_hidden(name: str, partition_columns: Iterable[str]) -> bool:
    return name.startswith(("_", ".")) and not any(name.startswith(f"{c}=") for c in partition_columns)


def delete_unreferenced(files, root: str, keep: set[str], partition_columns: list[str]) -> int | None:
    """Delete every file under ``root`` whose URI (spelled ``join(root, ...)``, as ``files.list``
    answers) is not in ``keep``, hidden names left alone, then the directories left empty (never
    ``root``). Returns the files deleted; None, with nothing deleted, when the walk does not find
    every file of ``keep`` (a spelling of ``root`` the listing answers differently, or a referenced
    file missing): then nothing here can tell which files are unreferenced."""
    listed, directories = _walk(files, root, partition_columns)
    if not keep <= listed:
        return None
    unreferenced = sorted(listed - keep)
    for uri in unreferenced:
        files.delete(uri)
    for directory in directories:                    # deepest first
        if not files.list(directory):
            files.delete(directory)
    return len(unreferenced)


def _walk(files, directory: str, partition_columns: list[str]) -> tuple[set[str], list[str]]:
    """(every file under ``directory``, its directories deepest first), hidden names left out."""
    found, directories = set(), []
    for uri in files.list(directory):
        if is_hidden(name_of(uri), partition_columns):
            continue
        if files.is_dir(uri):
            below, deeper = _walk(files, uri, partition_columns)
            found |= below
            directories += deeper + [uri]
        else:
            found.add(uri)
    return found, directories
