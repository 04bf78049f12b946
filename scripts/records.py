"""``python scripts/records.py ...`` is ``rl-coordconv records ...`` (rl_coordconv/commands/records.py)."""

import sys

from rl_coordconv.commands.records import main

if __name__ == "__main__":
    sys.exit(main())
