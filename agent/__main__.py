"""``python -m agent``: the ``tailor`` command."""

import sys

from agent.interfaces.cli import main

sys.exit(main())
