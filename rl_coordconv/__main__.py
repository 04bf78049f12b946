"""``python -m rl_coordconv <command> ...``: the ``rl-coordconv`` command."""

import sys

from rl_coordconv.commands import main

sys.exit(main())
