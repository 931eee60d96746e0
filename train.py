"""`python train.py` runs `medseg-train`: train a segmentation model.

The code is medseg/commands/train.py. Run it from the repository root, or
anywhere once medseg is installed (`pip install -e .`).
"""

import sys

from medseg.commands.train import main

if __name__ == "__main__":
    sys.exit(main())
