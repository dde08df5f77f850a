"""Selection that moves with the model (issue 29): recipe keys, stages, the in-loop scorer and the stage sampler."""
