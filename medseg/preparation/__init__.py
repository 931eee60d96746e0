"""Dataset preparation from the command line: the shared driver and one module per dataset.

`medseg-prepare <dataset> ...` (or `python tools/prepare_<dataset>.py ...`) runs a dataset
module's `main`; each module says where its data comes from and how its cases are found, and
`driver` does the rest (flags, download, planning, preparation, configs). Torch-free.
"""
