"""`python -m shared.launch` (what `make run` runs)."""

import sys

from shared.launch.app import main

if __name__ == "__main__":
    sys.exit(main())
