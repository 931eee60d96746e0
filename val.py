"""`python val.py` runs `medseg-val`: evaluate a trained model on whole volumes.

The code is medseg/commands/val.py. Run it from the repository root, or
anywhere once medseg is installed (`pip install -e .`).
"""

import sys

from medseg.commands.val import main

if __name__ == "__main__":
    sys.exit(main())
