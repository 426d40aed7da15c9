"""The contract between the control plane and the trainer, importable without torch.

spec         JobSpec: what a job asks for (a training config plus resources), JobState
documents    the JSON documents under a job's prefix: status, anchor snapshot, epoch metrics, result
transitions  status writes as compare-and-swaps; an ended state is final
writer       RunWriter: one run's objects under a folder or an s3:// prefix
store        JobStore: every job's objects in one store (the control plane's view)
storage/     objects by key in a local folder or S3, URIs, the mirror of s3:// datasets
"""
