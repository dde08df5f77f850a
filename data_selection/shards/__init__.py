"""The resumable sharded run every pool-wide job shares (``score``, ``score-checkpoints``, ``verify``, ``prune-steps``).

One sequence, in :func:`~data_selection.shards.driver.run_sharded`: distributed env (``torchrun``'s
``RANK``/``WORLD_SIZE``) -> the job's setup (device, pool, identity) -> check the output folder's identity
(:mod:`.identity`) -> plan the shards and deal them to ranks (:mod:`.plan`) -> rank 0 publishes ``meta.json``,
the others wait for it (:mod:`.meta`) -> the shards this rank still lacks -> the job's per-shard work, one
progress line per finished shard (:mod:`.progress`) -> the shards still missing anywhere -> the job's merge
(under :func:`.merge.merge_lock`) once none is. The folder's files are named in :mod:`.layout`.
"""
