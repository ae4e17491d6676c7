"""``python -m runtime.mesh``: a short name for :mod:`runtime.node.mesh`."""

import sys

from runtime.node.mesh import main

if __name__ == "__main__":
    sys.exit(main())
