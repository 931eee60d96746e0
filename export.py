"""`python export.py` runs `medseg-export`: export a trained model to ONNX with deploy.yaml.

The code is medseg/commands/export.py. Run it from the repository root, or
anywhere once medseg is installed (`pip install -e .`).
"""

import sys

from medseg.commands.export import main

if __name__ == "__main__":
    sys.exit(main())
