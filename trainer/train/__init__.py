"""Training: the state and one step, checkpoints, the loop every worker runs, the two Sessions it
runs under (this process, or a Ray Train worker group), the job driver, and what rank 0 reports.

state        TrainState (model, optimizer, schedule, step) and how a fresh one is built
batches      the data order: seeded epoch permutations, each rank's slice of a global batch
step         one optimizer step (the loss with the anchors in the graph, the warm-up tricks)
evaluation   the model on a split, COCO AP and VOC07 11-point AP through pycocotools
checkpoints  exact checkpoints, loaded with weights_only=True
device       which device a run in one process uses (--device), bf16 autocast, batches to it
loop         run_loop: one worker's training, written against a Session
local_run    train(): a whole run in this process
ray_run      the Ray Session, the TorchTrainer, waiting for resources
local_ray    the Ray a command starts for itself, locked down
driver       run_job: one job of the store from QUEUED to an end
reporting    what rank 0 writes: snapshots, progress, pictures, the result
"""
