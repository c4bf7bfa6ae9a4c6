"""``python -m masterd.cli``: the same as ``rpc-cli``."""

import sys

from masterd.cli.entry import main

sys.exit(main())
