"""`python -m tooling.launch` (what `make run` runs)."""

import sys

from tooling.launch.app import main

if __name__ == "__main__":
    sys.exit(main())
