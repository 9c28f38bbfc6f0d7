"""Delta deletion vectors read the way Delta's reader applies them, for ``LakeTable.read_now``.

A DELETE, UPDATE or MERGE on a table with deletion vectors does not rewrite a file: it records the
row indexes it removed in a deletion vector (a Roaring bitmap) that the file's ``add`` action
points to. A plain Parquet read of such a file would bring those rows back, so ``read_now`` keeps
only the rows whose ``_metadata.row_index`` is not in their file's vector: the filter Delta's reader
adds itself, without Delta's snapshot load and planning jobs (jobs/lake/plain_files.py).

The vectors' bytes are read here (PROTOCOL.md, "Deletion Vector Descriptor Schema" and "Deletion
Vector Format") and checked (length, CRC-32, magic number, cardinality); the filter is
``wasure.udf.RowNotDeleted`` (wasure-udf.jar), given every vector of the read. Anything unexpected
is ``DeletionVectorError``, and the caller reads through Delta instead.
"""
from __future__ import annotations

import struct
import uuid
import zlib
from typing import Callable

from pyspark.sql import Column, SparkSession

from jobs.lake.storage import join

ROW_NOT_DELETED_CLASS = "wasure.udf.RowNotDeleted"
MAGIC = 1681511377
Z85 = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#"
_Z85_VALUE = {c: i for i, c in enumerate(Z85)}


class DeletionVectorError(ValueError):
    """A deletion vector this module does not read (the caller falls back to Delta's reader)."""


def z85_decode(text: str) -> bytes:
    """Z85 (the Base85 variant Delta encodes vectors and their UUIDs in): 5 characters -> 4 bytes."""
    if len(text) % 5:
        raise DeletionVectorError("a Z85 text whose length is not a multiple of 5")
    out = bytearray()
    for start in range(0, len(text), 5):
        value = 0
        for char in text[start:start + 5]:
            if char not in _Z85_VALUE:
                raise DeletionVectorError("a character outside the Z85 alphabet")
            value = value * 85 + _Z85_VALUE[char]
        if value > 0xFFFFFFFF:
            raise DeletionVectorError("a Z85 group above 32 bits")
        out += struct.pack(">I", value)
    return bytes(out)


def vector_file(table_uri: str, descriptor: dict) -> str | None:
    """The file holding a stored vector (storage type ``u``: ``<prefix>/deletion_vector_<uuid>.bin``
    under the table, the UUID Z85-encoded in the descriptor's last 20 characters), or None for an
    inline one (``i``). Absolute paths (``p``) are not read here."""
    kind, where = descriptor.get("storageType"), descriptor.get("pathOrInlineDv") or ""
    if kind == "i":
        return None
    if kind != "u" or len(where) < 20:
        raise DeletionVectorError(f"deletion vector storage type {kind!r} is not read as plain files")
    prefix, encoded = where[:-20], where[-20:]
    name = f"deletion_vector_{uuid.UUID(bytes=z85_decode(encoded))}.bin"
    return join(table_uri, prefix, name) if prefix else join(table_uri, name)


def vector_bytes(descriptor: dict, read_file: Callable[[str], bytes], table_uri: str) -> bytes:
    """The serialized vector (magic number + bitmaps) a descriptor points to, checked: for a
    stored one, its 4-byte big-endian length and the CRC-32 after it (``read_file`` reads a whole
    file; several vectors share one)."""
    size = int(descriptor.get("sizeInBytes", -1))
    path = vector_file(table_uri, descriptor)
    if path is None:
        data = z85_decode(descriptor["pathOrInlineDv"])[:size]
    else:
        raw, offset = read_file(path), int(descriptor.get("offset") or 0)
        if offset + 8 + size > len(raw) or struct.unpack_from(">i", raw, offset)[0] != size:
            raise DeletionVectorError(f"{path}: the vector's length is not the descriptor's")
        data = raw[offset + 4:offset + 4 + size]
        if struct.unpack_from(">I", raw, offset + 4 + size)[0] != zlib.crc32(data):
            raise DeletionVectorError(f"{path}: the vector's checksum does not match")
    if len(data) != size or len(data) < 12 or struct.unpack_from("<i", data)[0] != MAGIC:
        raise DeletionVectorError("a deletion vector without Delta's magic number")
    return data


def row_not_deleted(spark: SparkSession, vectors: dict[str, bytes], cardinality: int) -> Callable[[Column, Column], Column] | None:
    """``(file_path, row_index) -> Column``: true for rows outside their file's vector (files keyed
    by name). None when wasure-udf.jar is not on the classpath. The UDF is applied, not registered,
    so it lives as long as the DataFrame that uses it. ``cardinality``: the rows the descriptors say
    are deleted; the parsed bitmaps must hold as many."""
    from pyspark.sql.classic.column import Column as ClassicColumn, _to_java_column, _to_seq

    from jobs.runtime.spark import jvm_class

    java_class = jvm_class(spark, ROW_NOT_DELETED_CLASS)
    if java_class is None:
        return None
    jvm = spark._jvm
    java_map = jvm.java.util.HashMap()
    for name, data in vectors.items():
        java_map.put(name, bytearray(data))
    try:
        function = java_class(java_map)
    except Exception as error:          # py4j's Py4JJavaError: a vector Roaring cannot read
        raise DeletionVectorError("a deletion vector the JVM could not read") from error
    if function.cardinality() != cardinality:
        raise DeletionVectorError("the deletion vectors hold another number of rows than their descriptors say")
    udf = function.function()          # Java's udf(UDF2, type): py4j would pick Scala's untyped overload

    def keep(file_path: Column, row_index: Column) -> Column:
        return ClassicColumn(udf.apply(_to_seq(spark.sparkContext, [file_path, row_index], _to_java_column)))

    return keep
