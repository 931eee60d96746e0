"""`medseg-prepare luna16` from a checkout; the code is medseg/preparation/luna16.py.

`--help` gives the flags, where the data comes from and the layout expected. Needs medseg
installed (`pip install -e .`, as run-vnet.sh and .ci/run do).
"""

import sys

from medseg.preparation.luna16 import main

if __name__ == "__main__":
    sys.exit(main())
