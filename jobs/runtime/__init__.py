"""The runtime layer: what every job runs on, below the lake.

- spark.py: the one SparkSession, the Delta jars, the Delta settings and query sizing;
- keys.py: the key store of the pseudonymization keys (削除情報等), outside the lake;
- console.py: progress, summary tables, the error classes and their exit codes;
- concurrency.py: independent tables of one step run a few at a time on the one session.

Imports only the contract (jobs/policy/); never the lake, a job or a surface.
"""
