"""Training with DeepSpeed: the recipe (``loop``), launching (``launch``), checkpoints.

Importing this package is cheap; torch and deepspeed load inside the modules that need them.
"""
