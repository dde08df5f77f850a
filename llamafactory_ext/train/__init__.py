"""Training with LLaMA-Factory plus our losses and callbacks: ``llamafactory-ext train RECIPE.yaml``.

* :mod:`.launch`: the entry point; launcher (torchrun, like ``llamafactory-cli``) and worker in one;
* :mod:`.args`: the recipe keys we add to LLaMA-Factory's, and how a recipe is split between the two;
* :mod:`.trainer`: our trainer swapped into LLaMA-Factory's SFT workflow for the duration of a run;
* :mod:`.padding_free`: the same micro-batches without padding (one row, attention within each row);
* :mod:`.losses`: chunked token losses (lean DFT, iw-SFT) that never hold [tokens x vocabulary] logits;
* :mod:`.iw_reference`: iw-SFT reference log-probs looked up from ``scores.parquet``;
* :mod:`.callbacks`: trainer callbacks a recipe can name.

``python -m llamafactory_ext.train RECIPE.yaml`` is the same as ``llamafactory-ext train RECIPE.yaml`` (and is
what torchrun runs in every worker).
"""
