"""One SparkSession for the whole test run (Spark starts in ~8 s on this box)."""
import os

import pytest

os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
os.environ.setdefault("WASURE_SPARK_UI", "0")
os.environ.setdefault("WASURE_SPARK_DRIVER_MEMORY", "4g")
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")


@pytest.fixture(scope="session")
def spark():
    from jobs.runtime.spark import get_spark

    session = get_spark("wasure-tests")
    yield session
    session.stop()


EXAMPLE_POLICY = os.path.join(os.path.dirname(__file__), "..", "policies", "example.yaml")


@pytest.fixture(scope="session")
def policy():
    from jobs.policy import load_policy

    return load_policy(EXAMPLE_POLICY)


@pytest.fixture(scope="session")
def generated_lake(spark, policy, tmp_path_factory):
    """A small generated lake shared read-only by many tests (copy it before mutating: lake_copy)."""
    from jobs.generate import GenerateOptions, generate_lake
    from jobs.lake.layout import Lake

    lake = Lake.at(tmp_path_factory.mktemp("lake") / "lake")
    counts = generate_lake(spark, policy, lake, GenerateOptions(subjects=400, events_per_subject=10))
    object.__setattr__(lake, "counts", counts)  # frozen dataclass; counts are test metadata
    return lake


@pytest.fixture
def lake_copy(generated_lake, tmp_path):
    """A private copy of the generated lake for tests that change it (Delta logs use relative paths)."""
    import shutil

    from jobs.lake.layout import Lake

    target = tmp_path / "lake"
    shutil.copytree(generated_lake.root, target)
    return Lake.at(target)


@pytest.fixture(scope="session")
def keys_env(tmp_path_factory, policy):
    """A key file (mode 0600) outside every lake, with a key for each purpose and the ledger."""
    from jobs.runtime.keys import init_keys

    path = tmp_path_factory.mktemp("keys") / "keys.json"
    old = os.environ.get("WASURE_KEYS")
    os.environ["WASURE_KEYS"] = str(path)
    init_keys([p.key_id for p in policy.purposes.values()] + [policy.defaults.ledger_key_id])
    yield path
    if old is None:
        os.environ.pop("WASURE_KEYS", None)
    else:
        os.environ["WASURE_KEYS"] = old
