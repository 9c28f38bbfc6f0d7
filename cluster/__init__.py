"""The local test cluster: HDFS + Spark standalone on 127.0.0.1 (docs/cluster.md)."""
