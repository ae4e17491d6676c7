"""``python -m runtime.operator``: a short name for :mod:`runtime.settlement.operator`."""

import sys

from runtime.settlement.operator import main

if __name__ == "__main__":
    sys.exit(main())
