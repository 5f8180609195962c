"""Running an engine over a grid: the one batching layer of memgen, generic over engines.

Data flow: ``device`` (device policy) -> ``batching`` (``sharded_map``: one point ->
``jit(shard_map(lax.map(vmap)))``) -> ``plan`` (buckets -> micro-batches -> chunks, the one
memory refusal) -> ``loop`` (the one runner: progress, Ctrl-C, finite checks naming
coordinates). Nothing here knows a model: an engine (``memgen.engines.protocol``) says what
a point is.
"""
