"""Which dataset scripts there are: `medseg-prepare` from a checkout (medseg/commands/prepare.py).

`python tools/prepare.py` lists the datasets; `python tools/prepare.py <dataset> [flags]` runs one,
like `python tools/prepare_<dataset>.py [flags]`. The shared driver is medseg/preparation/driver.py.
Needs medseg installed (`pip install -e .`).
"""

import sys

from medseg.commands.prepare import main

if __name__ == "__main__":
    sys.exit(main())
