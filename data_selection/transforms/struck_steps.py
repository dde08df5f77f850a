"""A pruned row's response as pieces, each deleted step marked: what ``prune-steps``' report page strikes through.

Computed while the pruned subset is written (:mod:`data_selection.transforms.output`) for at most
:data:`MAX_ROWS_SHOWN` pruned rows; the page (:mod:`data_selection.reports.html.pruned`) only draws them.
"""

from __future__ import annotations

from typing import Any

MAX_ROWS_SHOWN = 2000  # pruned rows whose text the page embeds


def struck_steps(seg, drop, limit: int = 20000) -> list[dict[str, Any]]:
    """The whole response as pieces: text outside the steps, each step (deleted or kept) and its separator.

    Joining the pieces not marked deleted gives ``seg.render(drop)``: a deleted step's following separator is
    deleted with it, except after the last kept step (as ``render`` joins kept steps).
    """
    r, steps, drop = seg.response, seg.steps, set(drop)
    kept = [i for i in range(len(steps)) if i not in drop]
    out = [{"text": r[: steps[0].start], "deleted": False}]
    for i, st in enumerate(steps):
        out.append({"text": r[st.start:st.end], "type": st.type, "deleted": i in drop})
        if i + 1 < len(steps):
            sep_kept = i not in drop and kept and i != kept[-1]
            out.append({"text": r[st.end:steps[i + 1].start], "deleted": not sep_kept})
    out.append({"text": r[steps[-1].end:], "deleted": False})
    total = 0
    for p in out:  # bound the embedded text
        p["text"] = p["text"][: max(0, limit - total)]
        total += len(p["text"])
    return [p for p in out if p["text"]]
