"""torch.profiler around a ``data-select score`` run: top kernels and the share of wall time the GPU is idle.

The window is the runner's shard loop (its ``record_function`` range, :data:`WINDOW`): encoding, batching,
the forward passes and writing shards, as a user's run spends it, minus model loading. GPU busy time is the
union of the kernel, memcpy and memset intervals of the exported trace inside the window; idle = 1 - busy /
window. On CPU there is no device timeline: the top operators by self CPU time are reported instead and the
idle share is "unmeasured".
"""

from __future__ import annotations

import json
import os
import tempfile
from collections import defaultdict
from contextlib import contextmanager

WINDOW = "data-select score: shards"  # data_selection/scoring/runner.py
GPU_CATS = ("kernel", "gpu_memcpy", "gpu_memset")


def _union_us(intervals: list[tuple[float, float]]) -> float:
    total, end = 0.0, float("-inf")
    for s, e in sorted(intervals):
        if e <= end:
            continue
        total += e - max(s, end)
        end = e
    return total


def summarize_trace(trace: dict, top: int = 15) -> dict:
    """Window, GPU busy/idle and the top kernels of a chrome trace exported by torch.profiler."""
    events = [e for e in trace.get("traceEvents", []) if e.get("ph") == "X"]
    windows = [e for e in events if e.get("name") == WINDOW and e.get("cat") == "user_annotation"]
    if not windows:
        return {"error": f"no '{WINDOW}' range in the trace"}
    w0 = min(float(e["ts"]) for e in windows)
    w1 = max(float(e["ts"]) + float(e["dur"]) for e in windows)
    gpu = [(max(w0, float(e["ts"])), min(w1, float(e["ts"]) + float(e["dur"]))) for e in events
           if e.get("cat") in GPU_CATS and float(e["ts"]) < w1 and float(e["ts"]) + float(e["dur"]) > w0]
    if not gpu:
        return {"window_s": (w1 - w0) / 1e6, "gpu_idle_share": None}
    busy = _union_us(gpu)
    by_name: dict[str, list[float]] = defaultdict(lambda: [0.0, 0])
    for e in events:
        if e.get("cat") == "kernel" and w0 <= float(e["ts"]) < w1:
            by_name[e["name"]][0] += float(e["dur"])
            by_name[e["name"]][1] += 1
    kernel_total = sum(v[0] for v in by_name.values()) or 1.0
    tops = sorted(by_name.items(), key=lambda kv: -kv[1][0])[:top]
    return {"window_s": (w1 - w0) / 1e6, "gpu_busy_s": busy / 1e6, "gpu_idle_share": 1 - busy / (w1 - w0),
            "top_kernels": [{"name": n[:120], "seconds": t / 1e6, "calls": c, "share_of_kernel_time": t / kernel_total}
                            for n, (t, c) in tops]}


@contextmanager
def profiled(device: str, out_path: str, top: int = 15):
    """Profile the block; write :func:`summarize_trace`'s summary (GPU) or the top CPU operators to ``out_path``."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    on_gpu = device != "cpu"
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if on_gpu else [])
    with profile(activities=activities) as prof:
        yield
    if on_gpu:
        torch.cuda.synchronize()
    fd, trace_path = tempfile.mkstemp(suffix=".json")
    os.close(fd)
    prof.export_chrome_trace(trace_path)
    with open(trace_path) as f:
        summary = summarize_trace(json.load(f), top)
    os.unlink(trace_path)
    cpu_ops = sorted(prof.key_averages(), key=lambda a: -a.self_cpu_time_total)[:top]
    total_cpu = sum(a.self_cpu_time_total for a in prof.key_averages()) or 1.0
    summary["top_cpu_ops"] = [{"name": a.key[:120], "self_cpu_s": a.self_cpu_time_total / 1e6, "calls": a.count,
                               "share_of_cpu_op_time": a.self_cpu_time_total / total_cpu} for a in cpu_ops]
    if not on_gpu:
        summary["gpu_idle_share"] = None
    with open(out_path, "w") as f:
        json.dump(summary, f, indent=2)
