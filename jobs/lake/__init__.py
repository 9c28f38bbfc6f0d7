"""The lake layer: every read and write of the lake goes through here.

- storage.py: files by URI (local, hdfs://, s3a://): list, read, write, rename, delete;
- table.py: ``LakeTable``, the one Delta table handle (version, history, snapshot, append, subject
  deletes, physical purge, staged publish and quarantine);
- plain_files.py: when a small Delta table's current version can be read as its Parquet files;
  deletion_vectors.py: their deletion vectors read and applied as Delta's reader applies them;
- layout.py: where things live under the lake root, and the policy-aware checks every job runs first;
- lease.py: one writing job per lake at a time;
- registers and ledgers kept in the lake: subjects.py (consents, restrictions, closures), holds.py
  (legal holds), quarantine.py (logical deletes awaiting their purge), backup_catalog.py,
  backup_crypto.py and backup_ledger.py (backups, their keys, subjects erased since), lineage.py
  (derived datasets of a table), catalog.py (the releases as catalog tables), residue.py (the
  residue scan for identifying values).

Imports the contract and the runtime; never a job or a surface.
"""
