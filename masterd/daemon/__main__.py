"""``python -m masterd.daemon``: ganeti-masterd."""

import sys

from masterd.daemon.entry import main

sys.exit(main())
