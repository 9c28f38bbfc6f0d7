"""`python -m jobs.cli ...` is `wasure ...`."""
import sys

from jobs.cli import main

sys.exit(main())
