"""`medseg-prepare mri_spine_seg` from a checkout; the code is medseg/preparation/mri_spine_seg.py.

`--help` gives the flags, where the data comes from and the layout expected. Needs medseg
installed (`pip install -e .`, as run-vnet.sh and .ci/run do).
"""

import sys

from medseg.preparation.mri_spine_seg import main

if __name__ == "__main__":
    sys.exit(main())
