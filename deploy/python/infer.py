"""`python deploy/python/infer.py` runs `medseg-infer`: segment raw scans with ONNX, no torch.

The code is medseg/commands/infer.py. It needs medseg installed
(`pip install -e .`, as run-vnet.sh and .ci/run do).
"""

import sys

from medseg.commands.infer import main

if __name__ == "__main__":
    sys.exit(main())
