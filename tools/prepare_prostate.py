"""`medseg-prepare prostate` from a checkout; the code is medseg/preparation/prostate.py.

`--help` gives the flags, where the data comes from and the layout expected. Needs medseg
installed (`pip install -e .`, as run-vnet.sh and .ci/run do).
"""

import sys

from medseg.preparation.prostate import main

if __name__ == "__main__":
    sys.exit(main())
