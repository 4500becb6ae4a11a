"""`tunelab ui`: a local web dashboard over a folder of run folders (runs, curves, compare, launch, playground).

Imported only by the `ui` command and its tests: FastAPI and the model code load lazily.
"""
