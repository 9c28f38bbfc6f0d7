"""One SparkSession for the whole test run (Spark starts in ~8 s on this box)."""
import os

import pytest

os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
os.environ.setdefault("WASURE_SPARK_UI", "0")
os.environ.setdefault("WASURE_SPARK_DRIVER_MEMORY", "4g")
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")


@pytest.fixture(scope="session")
def spark():
    from jobs.runtime import get_spark

    session = get_spark("wasure-tests")
    yield session
    session.stop()
