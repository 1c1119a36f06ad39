"""Training with DeepSpeed: it owns the run of a TrainingJob.

    launch     the run directory, the world (local ranks, hostfile, torchrun/Slurm), the launcher
    world      who this process is in the distributed world
    worker     the entry point of each rank
    loop       the recipe: data, model, DeepSpeed engine, steps, validation, export
    dsconfig   the DeepSpeed config generated from a TrainingJob
    checkpoint DeepSpeed-native checkpoints, published atomically, and resume checks
    metrics    metrics.jsonl and TensorBoard

Importing this package is cheap; torch and deepspeed load inside the modules that need them.
"""
