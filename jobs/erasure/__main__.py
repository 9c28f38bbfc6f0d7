"""`python -m jobs.erasure erase|verify ...` (spark-submit)."""
from jobs.erasure.job import main

raise SystemExit(main())
