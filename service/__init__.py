"""The control plane: a FastAPI job service (no torch) over the job store, launching jobs on Ray."""
