"""`python tools/crossval.py` runs `medseg-crossval`: train and score every cross-validation fold.

The code is medseg/commands/crossval.py. It needs medseg installed
(`pip install -e .`, as run-vnet.sh and .ci/run do).
"""

import sys

from medseg.commands.crossval import main

if __name__ == "__main__":
    sys.exit(main())
