"""Response-only cross-entropy scoring: batching, chunked log-probs, the resumable sharded runner, merge."""
