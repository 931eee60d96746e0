"""The installed commands, one module each with a `main` (pyproject.toml lists them).

`medseg-train`, `medseg-val`, `medseg-export`, `medseg-infer`, `medseg-prepare` and
`medseg-evaluate`. The root scripts (train.py, val.py, export.py, deploy/python/infer.py) and
tools/*.py are thin wrappers of these, so a checkout keeps MedicalSeg's layout. Importing this
package imports no torch: the deploy runner and the preparation commands stay torch-free.
"""
