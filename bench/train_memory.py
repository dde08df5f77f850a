"""GPU memory of one training micro-batch of a Qwen2.5-3B-shaped model, calculated: what fits where.

peak = model states + activations/logits of the worst micro-batch (+ what the CPU trace cannot see), then an
allowance for the CUDA context and the caching allocator's fragmentation.

* **States** (DeepSpeed ZeRO-3, bf16 mixed precision): bf16 weights 2 B + bf16 gradients 2 B + fp32 master
  weights 4 B + Adam's two fp32 moments 8 B = 16 B per parameter, divided by the number of GPUs (ZeRO-3 on one
  GPU shards nothing: 16 x 3.09e9 = 49.4 GB), plus the gathered bf16 weights ZeRO-3 keeps live
  (``stage3_max_live_parameters`` 1e9 -> at most 2 GB). ``ds_z3_offload.json`` moves weights, gradients and
  optimizer states to CPU memory (16 B per parameter there): the GPU keeps the live gathered weights only.
* **Activations and logits**: traced, not guessed. The real transformers Qwen2 code (and LLaMA-Factory's /
  our loss code) runs forward + backward on *fake* tensors (``torch._subclasses.FakeTensorMode``: shapes and
  dtypes, no memory) at the full 3B shape, bf16, LLaMA-Factory's gradient checkpointing (reentrant), on the
  worst micro-batch the recipes allow: 2 rows of up to 16,384 tokens. A dispatch mode counts the bytes of every
  tensor storage alive and records the peak. Parameter gradients are dropped as soon as they are accumulated
  (ZeRO-3 moves them into its own partition, already counted in the 16 B). Added by hand where the CPU trace
  differs from a GPU: SDPA's masked (memory-efficient) CUDA kernel turns the boolean padding mask into a
  bf16 bias of ``rows x L x L`` per layer call (1.07 GB at 2 x 16K, kept for the recomputed layer's backward,
  2 while converting); Liger's fused linear-cross-entropy (Triton, cannot run on CPU) is traced as the body
  without a vocabulary projection plus its own working set from liger-kernel 0.8.5's code: grad_input
  (T x H bf16), grad_weight (V x H bf16), one fp32 V x H accumulation, a [chunk x V] bf16 logits chunk with
  chunk = next_pow2(ceil(T / ceil(V / H))) = 512 rows at T = 32,768.
* **Check against a measurement**: the issue measured ``advanced.yaml`` on one H200 at 121.5 GB peak
  (nvidia-smi: tensors + CUDA context + allocator cache). The calculation for the same configuration is
  printed next to it (125.4 GB, 3% above: the added terms are upper bounds). A variant "fits" when the
  calculation is below 78 GiB on an 80 GB GPU (H100) or 139 GiB on a 141 GB GPU (H200).

Usage: python bench/train_memory.py [--tokens 16384] [--json out.json]   (CPU only, about a minute)
"""

from __future__ import annotations

import argparse
import json
import sys
import weakref
from pathlib import Path

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from data_selection.tiny_model import QWEN25_3B_SHAPE  # noqa: E402
from llamafactory_ext.train.padding_free import use_padding_free_attention  # noqa: E402

GB, GIB = 1e9, 2**30
MEASURED_ADVANCED_H200_GB = 121.5  # issue 14: advanced.yaml, 1 x H200, ZeRO-3, nvidia-smi peak
CAPACITY_GIB = {"80 GB GPU": 78.0, "141 GB GPU": 139.0}


class LiveBytes(TorchDispatchMode):
    """Bytes of tensor storages created inside the mode and still alive; ``peak`` is their maximum."""

    def __init__(self):
        super().__init__()
        self.current = self.peak = 0
        self._seen: dict[int, int] = {}

    def _track(self, t: torch.Tensor) -> None:
        storage = t.untyped_storage()
        key = id(storage)
        if key in self._seen:
            return
        n = storage.nbytes()
        self._seen[key] = n
        self.current += n
        self.peak = max(self.peak, self.current)
        weakref.finalize(storage, self._release, key)

    def _release(self, key: int) -> None:
        self.current -= self._seen.pop(key, 0)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_flatten(out)[0]:
            if isinstance(t, torch.Tensor):
                self._track(t)
        return out


def liger_working_bytes(tokens: int, hidden: int, vocab: int) -> int:
    """liger-kernel 0.8.5 fused_linear_cross_entropy_forward's buffers (see the module docstring)."""
    inc = -(-vocab // hidden)
    chunk = 1 << max(0, (-(-tokens // inc) - 1).bit_length())
    return tokens * hidden * 2 + vocab * hidden * 2 + vocab * hidden * 4 + chunk * vocab * 2


def _fake_model(shape: dict):
    from torch._subclasses.fake_tensor import FakeTensorMode
    from transformers import Qwen2Config, Qwen2ForCausalLM

    config = Qwen2Config(vocab_size=shape.get("vocab", 151936), hidden_size=shape["hidden"],
                         intermediate_size=shape["intermediate"], num_hidden_layers=shape["layers"],
                         num_attention_heads=shape["heads"], num_key_value_heads=shape["kv_heads"],
                         tie_word_embeddings=True, max_position_embeddings=32768)  # fmt: skip
    fake = FakeTensorMode(allow_non_fake_inputs=True)
    with fake:
        default = torch.get_default_dtype()
        torch.set_default_dtype(torch.bfloat16)
        try:
            model = Qwen2ForCausalLM(config)
        finally:
            torch.set_default_dtype(default)
        model.train()
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": True})
        model.enable_input_require_grads()
        model.config.use_cache = False
    for p in model.parameters():  # ZeRO-3 takes each gradient into its partition (counted in the states)
        p.register_post_accumulate_grad_hook(lambda p: setattr(p, "grad", None))
    return model, fake


def trace_micro_batch(model, fake, rows: list[int], layout: str, loss: str) -> int:
    """Peak bytes of activations + loss of one forward+backward (parameters and their gradients excluded)."""
    from llamafactory.extras.constants import IGNORE_INDEX

    vocab = model.config.vocab_size
    cu = torch.tensor([0] + [sum(rows[: i + 1]) for i in range(len(rows))], dtype=torch.int32)  # real: read by
    with fake:  # the per-row attention as Python ints
        if layout == "padded":
            model.set_attn_implementation("sdpa")
            length = -(-max(rows) // 8) * 8
            ids = torch.randint(0, vocab, (len(rows), length))
            mask = torch.zeros(len(rows), length, dtype=torch.long)
            for i, n in enumerate(rows):
                mask[i, :n] = 1
            inputs = {"input_ids": ids, "attention_mask": mask}
        else:
            use_padding_free_attention(model, "sdpa")
            ids = torch.randint(0, vocab, (1, sum(rows)))
            inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids),
                      "position_ids": torch.cat([torch.arange(n) for n in rows])[None],
                      "cu_seq_lens_q": cu, "cu_seq_lens_k": cu, "max_length_q": max(rows), "max_length_k": max(rows)}  # fmt: skip
        labels = ids.clone()
        labels[:, :64] = IGNORE_INDEX
    tracker = LiveBytes()
    with fake, tracker:
        if loss == "hf":  # transformers' ForCausalLMLoss inside the model (advanced.yaml)
            value = model(**inputs, labels=labels).loss
        elif loss == "body":  # the decoder alone; the vocabulary side is added from the loss's own code
            value = model.model(**inputs).last_hidden_state.float().square().mean()
        else:
            raise ValueError(loss)
        value.backward()
        del value
    return tracker.peak


def chunked_loss_working_bytes(chunk: int, vocab: int) -> int:
    """llamafactory-ext's chunked loss (dft_lean, iw_sft): a chunk's fp32 logits, log-softmax and gradient."""
    return 3 * chunk * vocab * 4


# name, layout, rows ("two": 2 x tokens, the second 8 shorter so the padded batch has a mask; "one": 1 row),
# what is traced ("hf": the model with HF's loss; "body": the decoder only), what is added from the code
VARIANTS = [
    ("advanced.yaml (padded, HF loss)", "padded", "two", "hf", None),
    ("advanced.yaml + enable_liger_kernel", "padded", "two", "body", "liger"),
    ("advanced_fast.yaml (padding_free + Liger)", "padding_free", "two", "body", "liger"),
    ("advanced_fast.yaml without Liger", "padding_free", "two", "hf", None),
    ("advanced.yaml, per-device batch 1 x accumulation 16", "padded", "one", "hf", None),
    ("dft_lean.yaml / iw_sft.yaml (chunked loss, 1024)", "padded", "two", "body", "chunked"),
]
# dft.yaml: LLaMA-Factory's dft_loss_func holds the same tensors as HF's loss (bf16 logits, their fp32 copy,
# cross_entropy's fp32 log-softmax, the same gradients): its memory is advanced.yaml's row.


def states_bytes(n_params: int, gpus: int, offload: bool) -> float:
    live = min(n_params, 10**9) * 2  # stage3_max_live_parameters gathered bf16 weights
    return live if offload else 16 * n_params / gpus + live


def calculate(tokens: int = 16384, shape: dict | None = None) -> dict:
    shape = dict(shape or QWEN25_3B_SHAPE)
    model, fake = _fake_model(shape)
    n_params = sum(p.numel() for p in model.parameters())
    hidden, vocab = shape["hidden"], 151936
    out = {"tokens_per_row": tokens, "n_params": n_params, "variants": {}}
    for name, layout, rows_kind, loss, added in VARIANTS:
        rows = [tokens] if rows_kind == "one" else [tokens, tokens - 8]
        traced = trace_micro_batch(model, fake, rows, layout, loss)
        padded_len = -(-max(rows) // 8) * 8
        positions = sum(rows) if layout == "padding_free" else padded_len * len(rows)
        masked = layout == "padded" and any(n != padded_len for n in rows)
        extra = 2 * len(rows) * padded_len * padded_len * 2 if masked else 0  # bf16 bias, 2 while converting
        if added == "liger":
            extra += liger_working_bytes(positions, hidden, vocab)
        elif added == "chunked":
            extra += chunked_loss_working_bytes(1024, vocab)
        out["variants"][name] = {"traced_bytes": traced, "added_bytes": extra, "activations_bytes": traced + extra}
    base = out["variants"][VARIANTS[0][0]]["activations_bytes"] + states_bytes(n_params, 1, False)
    out["advanced_1gpu_calculated_gb"] = base / GB
    for v in out["variants"].values():
        v["need_gib"] = {
            setup: (v["activations_bytes"] + states_bytes(n_params, gpus, offload)) / GIB
            for setup, gpus, offload in SETUPS
        }
    return out


SETUPS = (("1 GPU ZeRO-3", 1, False), ("1 GPU ZeRO-3 + ds_z3_offload", 1, True), ("8 GPUs ZeRO-3, per GPU", 8, False))


def fit_table(result: dict) -> list[str]:
    lines = ["| variant (worst micro-batch: 2 rows x 16,384 tokens) | activations + loss | "
             + " | ".join(setup for setup, _, _ in SETUPS) + " |", "|---|---|---|---|---|"]  # fmt: skip
    for name, v in result["variants"].items():
        cells = []
        for setup, _, _ in SETUPS:
            need = v["need_gib"][setup]
            fits = [gpu for gpu, cap in CAPACITY_GIB.items() if need <= cap]
            cells.append(f"{need:.0f} GiB ({' and '.join(fits) if fits else 'fits neither'})")
        lines.append(f"| {name} | {v['activations_bytes'] / GIB:.1f} GiB | " + " | ".join(cells) + " |")
    return lines


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tokens", type=int, default=16384, help="tokens of each of the two rows (the cutoff)")
    ap.add_argument("--json", help="also write the results here")
    args = ap.parse_args(argv)
    result = calculate(args.tokens)
    n = result["n_params"]
    print(f"Qwen2.5-3B shape: {n / 1e9:.3f}e9 parameters; ZeRO-3 states on 1 GPU {16 * n / GB:.1f} GB "
          f"(+ <= {min(n, 10**9) * 2 / GB:.1f} GB live gathered weights); on 8 GPUs {2 * n / GB:.1f} GB each")  # fmt: skip
    calc = result["advanced_1gpu_calculated_gb"]
    print(f"check: advanced.yaml on 1 GPU calculated {calc:.1f} GB, measured {MEASURED_ADVANCED_H200_GB} GB "
          f"(nvidia-smi, H200): calculation {calc / MEASURED_ADVANCED_H200_GB - 1:+.1%}")  # fmt: skip
    print("\n".join(fit_table(result)))
    print("(calculated, not measured: bench/train_mfu.py measures the peak on a GPU; 'fits' = below 78 GiB on "
          "an 80 GB GPU, 139 GiB on a 141 GB GPU)")  # fmt: skip
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
