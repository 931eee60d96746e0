"""`python tools/evaluate.py` runs `medseg-evaluate`: score predictions against references.

The code is medseg/commands/evaluate.py. It needs medseg installed
(`pip install -e .`, as run-vnet.sh and .ci/run do).
"""

import sys

from medseg.commands.evaluate import main

if __name__ == "__main__":
    sys.exit(main())
