"""wasure: data retention and anonymization batch engine (Spark + Delta Lake)."""
from setuptools import find_packages, setup

# Pins that resolve together in one virtualenv (checked on Python 3.11):
# delta-spark 4.4.x requires pyspark <= 4.2; great-expectations is installed WITHOUT
# its [spark] extra because that extra caps pyspark below 4.2; PySpark 4.2 does not
# fully support pandas 3.
CORE = [
    "pyspark==4.2.0",
    "delta-spark==4.4.1",
    "great-expectations>=1.24,<1.25",
    "pandas>=2.2,<3",
    "pyarrow>=18",          # PySpark 4.2's floor for Arrow input; anonymizers.frames hands every small frame to Spark as Arrow
    "pydantic>=2.7,<3",
    "pyyaml>=6",
    "typer>=0.12",
    "rich>=13",
    "faker>=40,<41",
    "matplotlib>=3.8",
    # formal differential privacy for statistics (docs/statistics.md says why OpenDP)
    "opendp>=0.16,<0.17",
]
AIRFLOW = [
    "apache-airflow==3.3.2",
    "apache-airflow-providers-apache-spark",
]
DEV = [
    "pytest>=8",
    "pytest-timeout",
    "hypothesis>=6",
    "pycanon",
    # the readers data scientists use on published tables (docs/reading.md, tests/test_reading.py)
    "deltalake>=1.6,<2",
    "polars>=1.30",
]
# Benchmarks only (bench/kanonymity.py compares with anjana on UCI Adult). anjana 1.2.3 pins exact
# versions (typing_extensions==4.15.0, pycanon==1.3.5, numpy==2.0.2) that conflict with airflow and
# pydantic: a resolver install downgrades them. `make bench` therefore installs it with --no-deps
# (plus beartype, its only import not already here); it runs fine on this venv's versions.
BENCH = [
    "anjana==1.2.3",
    "beartype==0.22.2",
]

setup(
    name="wasure",
    version="0.1.0",
    description="Data retention and anonymization batch engine on Spark + Delta Lake",
    python_requires=">=3.11,<3.12",
    packages=find_packages(include=["jobs", "jobs.*", "anonymizers", "expectations", "expectations.*", "dags"]),
    include_package_data=True,
    package_data={"expectations": ["static/vendor/**/*"]},   # offline Data Docs assets
    install_requires=CORE,
    # browser: the Airflow form test (tests/browser) drives Debian's chromium; never `playwright install`
    extras_require={"airflow": AIRFLOW, "dev": DEV, "bench": BENCH, "browser": ["playwright==1.65.2"]},
    entry_points={"console_scripts": ["wasure=jobs.cli:main"]},
)
