"""``python -m runtime.aggregator``: a short name for :mod:`runtime.settlement.aggregator`."""

import sys

from runtime.settlement.aggregator import main

if __name__ == "__main__":
    sys.exit(main())
