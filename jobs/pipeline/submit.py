"""The spark-submit application of the pipeline steps (Airflow's cluster mode, docs/airflow.md):
``spark-submit ... jobs/pipeline/submit.py STEP --policy P --lake L --date D [--options JSON]``.
A file of its own so that the path spark-submit runs stays the same however the package is laid out."""
import sys

if __name__ == "__main__" and not __package__:          # run as a file: make the checkout importable
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from jobs.pipeline import main  # noqa: E402

if __name__ == "__main__":
    raise SystemExit(main())
