"""`medseg-prepare lung_coronavirus` from a checkout (medseg/preparation/lung_coronavirus.py).

`--help` gives the flags, where the data comes from and the layout expected. Needs medseg
installed (`pip install -e .`, as run-vnet.sh and .ci/run do).
"""

import sys

from medseg.preparation.lung_coronavirus import main

if __name__ == "__main__":
    sys.exit(main())
