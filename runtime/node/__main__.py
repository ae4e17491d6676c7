"""``python -m runtime.node --config FILE``: one live node (see :mod:`runtime.node.server`)."""

import sys

from runtime.node.server import main

sys.exit(main())
