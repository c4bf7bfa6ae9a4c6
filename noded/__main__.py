"""``python -m noded``: the same as ``ganeti-noded``."""

import sys

from noded.cli import main

sys.exit(main())
