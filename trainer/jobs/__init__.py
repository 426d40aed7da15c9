"""The contract between the control plane and the trainer, importable without torch.

spec     JobSpec: what a job asks for (a training config plus resources), JobState
schema   the JSON documents under a job's prefix: status, anchor snapshot, epoch metrics, result
store    JobStore: a job's objects in storage (local folder or S3), one writer per key
"""
