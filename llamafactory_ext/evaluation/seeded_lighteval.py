"""Run lighteval's CLI seeded and with a heartbeat: ``python seeded_lighteval.py --seed N [--heartbeat S] accelerate …``.

* lighteval 0.13 seeds only ``random`` and numpy, so its transformers backend samples (temperature 0.6) from an
  unseeded torch generator and the same evaluation gives different scores on each run: every RNG is seeded
  before lighteval starts.
* lighteval's litellm backend (``--backend vllm``) would answer from litellm's request-keyed disk cache: off.
* lighteval's progress bar ticks once per batch, and one batch of a model that never stops generating can
  run for an hour on a CPU with no sign of life. On the transformers backend, every ``--heartbeat`` seconds
  (default 30) a line says which batch is generating and how many tokens it has produced of how many allowed.

``llamafactory-ext eval`` copies this file next to the run and calls it with the interpreter of lighteval's own
environment (which may be the separate vLLM venv), so it imports nothing from this package.
"""

import sys
import threading
import time


def install_heartbeat(interval: float) -> None:
    """Count decoding steps of ``GenerationMixin.generate`` and print progress every ``interval`` seconds."""
    import torch
    from transformers import GenerationMixin, StoppingCriteria, StoppingCriteriaList

    state = {"batch": 0, "prompts": 0, "steps": 0, "limit": None, "since": None}
    start = time.time()

    class _CountSteps(StoppingCriteria):
        def __call__(self, input_ids, scores, **kwargs):
            state["steps"] += 1
            return torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)

    original = GenerationMixin.generate

    def generate(self, *args, stopping_criteria=None, **kwargs):
        input_ids = kwargs.get("input_ids", args[0] if args else None)
        state.update(batch=state["batch"] + 1, steps=0, since=time.time(), limit=kwargs.get("max_new_tokens"),
                     prompts=int(input_ids.shape[0]) if input_ids is not None else 0)
        criteria = StoppingCriteriaList(stopping_criteria or [])
        criteria.append(_CountSteps())
        try:
            return original(self, *args, stopping_criteria=criteria, **kwargs)
        finally:
            state["since"] = None

    GenerationMixin.generate = generate

    def beat() -> None:
        while True:
            time.sleep(interval)
            if state["since"] is None:
                continue
            limit = f" of up to {state['limit']:,}" if state["limit"] else ""
            print(f"[eval heartbeat] {time.time() - start:,.0f} s: batch {state['batch']} ({state['prompts']} "
                  f"prompts) has generated {state['steps']:,}{limit} new tokens in "
                  f"{time.time() - state['since']:,.0f} s", file=sys.stderr, flush=True)

    threading.Thread(target=beat, name="eval-heartbeat", daemon=True).start()


def main() -> None:
    args = sys.argv[1:]
    seed, heartbeat = 1234, 30.0
    while args[:1] and args[0] in ("--seed", "--heartbeat"):
        if args[0] == "--seed":
            seed = int(args[1])
        else:
            heartbeat = float(args[1])
        args = args[2:]
    from transformers import set_seed

    set_seed(seed)  # random, numpy, torch (CPU and all GPUs)
    if heartbeat > 0 and args[:1] == ["accelerate"]:
        install_heartbeat(heartbeat)
    if args[:2] == ["endpoint", "litellm"]:
        # lighteval turns on litellm's disk cache (./.litellm_cache) at import and asks for it on every request;
        # its key is the request, not the model behind the server, so a re-run after --overwrite (or of another
        # checkpoint served under the same name) would get the old answers. lighteval's own per-model cache stays.
        import lighteval.models.endpoints.litellm_model  # noqa: F401
        import litellm

        litellm.cache = None
    from lighteval.__main__ import app

    sys.argv = ["lighteval", *args]
    app()


if __name__ == "__main__":
    main()
