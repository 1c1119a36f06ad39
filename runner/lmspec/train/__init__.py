"""Training with DeepSpeed: it owns the run of a TrainingJob.

    rundir     the job a run runs (select), its run directory and the lock on it
    plan       where the ranks come from (local ranks, hostfile, torchrun/Slurm), checked against the job
    launch     the launcher: the ranks in this process or through deepspeed
    world      who this process is in the distributed world
    worker     the entry point of each rank
    loop       the recipe: setup (data, model, DeepSpeed engine) → train → evaluate → save
    runstate   lock.json, and the checkpoints a run resumes from (its Progress)
    criterion  the loss the recipe calls once per micro batch; preference: DPO and SimPO
    order      the rows of each epoch, and the seeds of every random draw
    gather     whole weights out of (and into) ZeRO partitions, one at a time
    export     the export: weights streamed into Hugging Face shards, adapter, tokenizer
    check      the sample a run keeps to check its export
    faults     the one fault-injection seam (LMSPEC_FAULT_AT), for tests
    errors     TrainError
    dsconfig   the DeepSpeed config generated from a TrainingJob
    checkpoint DeepSpeed-native checkpoints, published atomically, and resume checks
    metrics    metrics.jsonl and TensorBoard

Importing this package is cheap; torch and deepspeed load inside the modules that need them.
"""
