"""``python -m noded``: the same as ``ganeti-noded``."""

import sys

from noded.entry import main

sys.exit(main())
