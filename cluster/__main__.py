"""``python -m cluster up|down|status|fs`` (run from the repo root; cluster/control.py does the work)."""
import sys

from cluster.control import main

sys.exit(main())
