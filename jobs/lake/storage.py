"""Files of the lake, addressed by URI: the one place that lists, reads, writes, renames and deletes.

A lake root is a URI: a local path or ``file://...`` today, ``hdfs://``, ``s3a://``, ``abfss://`` or
``gs://`` on a cluster (docs/cluster.md). Jobs never touch lake paths with pathlib, os or shutil;
they ask ``files_for(uri)`` for the backend of that URI and join paths with ``join``:

    >>> files = files_for(lake.uri)
    >>> files.write_text(join(lake.uri, "state", "pseudonymize.json"), "{}")   # atomic replace
    >>> files.list(join(lake.uri, "backups"))                                  # child URIs, sorted

Two backends with the same methods: ``LocalFiles`` (Python's os, for local lakes: no JVM round trip,
usable before Spark starts, no Hadoop ``.crc`` side files) and ``HadoopFiles`` (Hadoop's FileSystem
through the active Spark session's JVM: every scheme Spark itself can read, with the same
configuration and credentials). Delta tables are not handled here but by ``jobs.lake.table.LakeTable``.
"""
from __future__ import annotations

import glob as _glob
import os
import shutil
import uuid
from pathlib import Path
from urllib.parse import urlparse

from jobs.runtime.console import InputError

LOCAL_SCHEMES = ("", "file")


def scheme(uri: str) -> str:
    return urlparse(str(uri)).scheme.lower() if "://" in str(uri) else ""


def is_local(uri: str) -> bool:
    return scheme(uri) in LOCAL_SCHEMES


def normalize(uri: str | Path) -> str:
    """An absolute local path for local URIs (``file:///x`` -> ``/x``), the URI without a trailing
    slash otherwise. Raises InputError (exit 2) for what is not a usable lake address."""
    text = str(uri).strip()
    if not text:
        raise InputError("the lake URI is empty")
    if is_local(text):
        if text.startswith("file:"):
            parsed = urlparse(text)
            if parsed.netloc not in ("", "localhost"):
                raise InputError(f"{text}: a file:// URI names no host (file:///absolute/path)")
            text = parsed.path
        return str(Path(text).resolve())
    parsed = urlparse(text)
    if not parsed.netloc and parsed.scheme not in ("s3a", "gs"):
        raise InputError(f"{text}: the URI names no host or bucket ({parsed.scheme}://host:port/path)")
    return text.rstrip("/")


def join(base: str, *parts: str) -> str:
    """``base/part/...`` for local paths and URIs alike (parts never start with a slash)."""
    out = str(base).rstrip("/")
    for part in parts:
        part = str(part).strip("/")
        if part:
            out = f"{out}/{part}"
    return out


def relative(uri: str, base: str) -> str:
    """``uri`` relative to ``base`` (``a/b`` for ``base/a/b``)."""
    uri, base = str(uri).rstrip("/"), str(base).rstrip("/")
    if uri == base:
        return ""
    if not uri.startswith(base + "/"):
        raise ValueError(f"{uri} is not under {base}")
    return uri[len(base) + 1:]


def name_of(uri: str) -> str:
    return str(uri).rstrip("/").rsplit("/", 1)[-1]


def parent_of(uri: str) -> str:
    return str(uri).rstrip("/").rsplit("/", 1)[0]


class LocalFiles:
    """The local backend (plain paths and ``file://``)."""

    def exists(self, uri: str) -> bool:
        return Path(uri).exists()

    def is_dir(self, uri: str) -> bool:
        return Path(uri).is_dir()

    def is_file(self, uri: str) -> bool:
        return Path(uri).is_file()

    def list(self, uri: str) -> list[str]:
        """Child URIs (files and directories), sorted; [] when ``uri`` is not a directory."""
        path = Path(uri)
        return sorted(str(p) for p in path.iterdir()) if path.is_dir() else []

    def glob(self, pattern: str) -> list[str]:
        """Matching paths, sorted; ``*`` does not match names starting with a dot (Python's rule)."""
        return sorted(_glob.glob(pattern))

    def read_text(self, uri: str) -> str:
        return Path(uri).read_text(encoding="utf-8")

    def write_text(self, uri: str, text: str) -> None:
        """Replace the file atomically: a reader sees the old or the new text, never a part."""
        path = Path(uri)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)

    def read_bytes(self, uri: str) -> bytes:
        return Path(uri).read_bytes()

    def write_bytes(self, uri: str, data: bytes) -> None:
        """Replace the file atomically, like ``write_text``."""
        path = Path(uri)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, path)

    def mkdirs(self, uri: str) -> None:
        Path(uri).mkdir(parents=True, exist_ok=True)

    def delete(self, uri: str) -> None:
        """Remove a file or a directory tree; nothing happens if it does not exist. A file's
        ``.<name>.crc`` goes with it, as Hadoop's local file system deletes it."""
        path = Path(uri)
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif path.exists() or path.is_symlink():
            path.unlink()
            path.with_name(f".{path.name}.crc").unlink(missing_ok=True)

    def rename(self, source: str, target: str) -> None:
        """Move ``source`` to ``target`` (which must not exist), creating the target's parent."""
        if Path(target).exists():
            raise FileExistsError(f"{target} exists")
        Path(target).parent.mkdir(parents=True, exist_ok=True)
        Path(source).rename(target)

    def put_dir(self, local_dir: str, uri: str) -> None:
        """Copy a local directory tree to ``uri`` (merged into what is there)."""
        if Path(local_dir).resolve() != Path(uri).resolve():
            shutil.copytree(local_dir, uri, dirs_exist_ok=True)

    def modified(self, uri: str) -> float:
        return Path(uri).stat().st_mtime

    def size(self, uri: str) -> int:
        """Bytes of every file under ``uri`` (0 when it does not exist)."""
        path = Path(uri)
        if path.is_file():
            return path.stat().st_size
        return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) if path.is_dir() else 0


class HadoopFiles:
    """Hadoop's FileSystem through the JVM of the active Spark session (hdfs://, s3a://, ...)."""

    def __init__(self, spark) -> None:
        self._jvm = spark.sparkContext._jvm
        self._conf = spark.sparkContext._jsc.hadoopConfiguration()

    def _path(self, uri: str):
        return self._jvm.org.apache.hadoop.fs.Path(uri)

    def _fs(self, uri: str):
        return self._path(uri).getFileSystem(self._conf)

    def exists(self, uri: str) -> bool:
        return bool(self._fs(uri).exists(self._path(uri)))

    def is_dir(self, uri: str) -> bool:
        fs, path = self._fs(uri), self._path(uri)
        return bool(fs.exists(path) and fs.getFileStatus(path).isDirectory())

    def is_file(self, uri: str) -> bool:
        fs, path = self._fs(uri), self._path(uri)
        return bool(fs.exists(path) and fs.getFileStatus(path).isFile())

    def list(self, uri: str) -> list[str]:
        if not self.is_dir(uri):
            return []
        names = [s.getPath().getName() for s in self._fs(uri).listStatus(self._path(uri))]
        return sorted(join(uri, n) for n in names if not _checksum_file(n))

    def glob(self, pattern: str) -> list[str]:
        statuses = self._fs(pattern).globStatus(self._path(pattern)) or []
        # globStatus answers fully qualified paths; keep the caller's spelling of the root.
        root = pattern.split("*", 1)[0].rsplit("/", 1)[0]
        qualified = self._fs(pattern).makeQualified(self._path(root)).toString()
        found = (root + s.getPath().toString()[len(qualified):] for s in statuses)
        return sorted(p for p in found if not _checksum_file(name_of(p)) and not _hidden_match(pattern, p))

    def read_text(self, uri: str) -> str:
        stream = self._fs(uri).open(self._path(uri))
        try:
            return bytes(self._jvm.org.apache.commons.io.IOUtils.toByteArray(stream)).decode("utf-8")
        finally:
            stream.close()

    def read_bytes(self, uri: str) -> bytes:
        stream = self._fs(uri).open(self._path(uri))
        try:
            return bytes(self._jvm.org.apache.commons.io.IOUtils.toByteArray(stream))
        finally:
            stream.close()

    def write_text(self, uri: str, text: str) -> None:
        self.write_bytes(uri, text.encode("utf-8"))

    def write_bytes(self, uri: str, data: bytes) -> None:
        """Write a temporary sibling, then rename it over ``uri`` in one step (HDFS's rename with
        OVERWRITE is atomic; object stores copy, which their readers see whole or not at all)."""
        fs, target = self._fs(uri), self._path(uri)
        tmp = self._path(join(parent_of(uri), f".{name_of(uri)}.{uuid.uuid4().hex[:8]}.tmp"))
        fs.mkdirs(target.getParent())
        out = fs.create(tmp, True)
        try:
            out.write(bytearray(data))
        finally:
            out.close()
        context = self._jvm.org.apache.hadoop.fs.FileContext.getFileContext(target.toUri(), self._conf)
        rename = getattr(self._jvm.org.apache.hadoop.fs, "Options$Rename")
        context.rename(tmp, target, java_array(rename, [rename.OVERWRITE]))

    def mkdirs(self, uri: str) -> None:
        self._fs(uri).mkdirs(self._path(uri))

    def delete(self, uri: str) -> None:
        fs, path = self._fs(uri), self._path(uri)
        if fs.exists(path):
            fs.delete(path, True)

    def rename(self, source: str, target: str) -> None:
        fs = self._fs(source)
        if fs.exists(self._path(target)):
            raise FileExistsError(f"{target} exists")
        fs.mkdirs(self._path(parent_of(target)))
        if not fs.rename(self._path(source), self._path(target)):
            raise OSError(f"could not move {source} to {target}")

    def put_dir(self, local_dir: str, uri: str) -> None:
        fs = self._fs(uri)
        for path in sorted(Path(local_dir).rglob("*")):
            if path.is_file():
                fs.copyFromLocalFile(False, True, self._path(str(path)),
                                     self._path(join(uri, path.relative_to(local_dir).as_posix())))

    def modified(self, uri: str) -> float:
        return self._fs(uri).getFileStatus(self._path(uri)).getModificationTime() / 1000.0

    def size(self, uri: str) -> int:
        """Bytes of every file under ``uri`` (0 when it does not exist): one NameNode call."""
        fs, path = self._fs(uri), self._path(uri)
        return int(fs.getContentSummary(path).getLength()) if fs.exists(path) else 0


def _hidden_match(pattern: str, path: str) -> bool:
    """Python's glob rule, kept on every backend: ``*`` does not match a name starting with a dot
    (``.tmp-*`` must be asked for); Hadoop's glob would match it."""
    wanted, got = pattern.rstrip("/").split("/"), path.rstrip("/").split("/")
    return any(g.startswith(".") and not w.startswith(".") for w, g in zip(wanted, got) if w != g)


def _checksum_file(name: str) -> bool:
    """Hadoop's local file system keeps a ``.<name>.crc`` beside each file: not lake content."""
    return name.startswith(".") and name.endswith(".crc")


def java_array(java_class, values: list):
    """A Java array of ``java_class`` (for varargs parameters such as ``Options.Rename...``)."""
    from pyspark import SparkContext

    array = SparkContext._gateway.new_array(java_class, len(values))
    for i, value in enumerate(values):
        array[i] = value
    return array


def files_for(uri: str, spark=None):
    """The backend for ``uri``: LocalFiles for local paths, HadoopFiles (through ``spark`` or the
    active session) for any other scheme."""
    if is_local(uri):
        return LocalFiles()
    if spark is None:
        from pyspark.sql import SparkSession

        spark = SparkSession.getActiveSession()
    if spark is None:
        from jobs.runtime.spark import get_spark

        spark = get_spark()
    return HadoopFiles(spark)


def check_reachable(uri: str, spark=None, must_exist: bool = True) -> None:
    """Exit 2 naming the URI when its file system cannot be reached or the root does not exist
    (an unreachable NameNode, a missing bucket or path, a typo), before any job writes. With
    ``must_exist=False`` (a lake about to be generated) only its parent must be there."""
    where = uri if must_exist else parent_of(uri)
    try:
        files = files_for(uri, spark)
        present = files.is_dir(where)
    except InputError:
        raise
    except Exception as error:  # py4j wraps the JVM's IOException (ConnectException, UnknownHost...)
        lines = [line.strip() for line in str(error).splitlines() if "Exception" in line or "refused" in line]
        raise InputError(f"the lake {uri} cannot be reached: {(lines[0] if lines else type(error).__name__)[:300]}") from None
    if not present:
        raise InputError(f"the lake {uri} does not exist (no directory {where})" if must_exist else
                         f"cannot create the lake {uri}: its parent {where} does not exist")
