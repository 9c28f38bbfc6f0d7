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


def delete_unreferenced(files, root: str, keep: set[str], partition_columns: list[str]) -> int:
    """Delete every file under ``root`` whose URI (spelled ``join(root, ...)``, as ``files.list``
    answers) is not in ``keep``, hidden names left alone, then the directories left empty (never
    ``root``). Returns the files deleted."""
    deleted = 0
    for uri in files.list(root):
        if is_hidden(name_of(uri), partition_columns):
            continue
        if files.is_dir(uri):
            deleted += delete_unreferenced(files, uri, keep, partition_columns)
            if not files.list(uri):
                files.delete(uri)
        elif uri not in keep:
            files.delete(uri)
            deleted += 1
    return deleted
