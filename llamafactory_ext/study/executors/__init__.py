"""Ways to run a study's steps besides the default one-at-a-time loop (``study/execute.py``): concurrently on
one machine's GPUs (``local_parallel``) or as Slurm jobs (``slurm``, scripts from ``jobscript``)."""
