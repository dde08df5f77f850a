"""TEMP step 3, the diversity pick inside one source (docs/methods.md §3).

Per source with quota q: if q ≥ the source's survivors, all of them; q = 0, none; else k-means
(random_state = ``--seed``, n_init 1 as the official single faiss run) on the vectors of L^(1000) at the
directional checkpoints with k = max(1, q // 4) (at most the number of distinct vectors). Clusters are visited
smallest first (ties: smallest pool row), each getting ⌊remaining quota / clusters left⌋, clusters of fewer
than 2 rows skipped. Inside a cluster rows are ranked by

* ``signed`` (default, the official ``faiss_kmeans_selection``): L_last − L_first when the cluster's mean
  L^(1000) rises from the first to the last directional checkpoint, L_first − L_last otherwise, largest first;
* ``abs`` (an option, the paper's text read literally): |L_last − L_first|, largest first;

ties by pool row. Any remainder is drawn uniformly (``numpy.random.default_rng(--seed)``, sources in sorted
order) from the source's rows not yet picked (by construction, the skipped single-row clusters, as the
official code draws from them).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from data_selection.command_line import UserError
from data_selection.options.select import RANKINGS
from data_selection.selectors.temp_difficulty import one_thread

ROWS_PER_CLUSTER = 4
DIVERSITY_N_INIT = 1
DESCRIPTIONS = {
    "signed": "official: L_last - L_first signed by the cluster's mean change (largest first)",
    "abs": "option: |L_last - L_first| (largest first)",
}


def change(features: np.ndarray, members: np.ndarray, ranking: str) -> np.ndarray:
    """The ranking value of each row of one cluster (``members``: positions into ``features``)."""
    first, last = features[members, 0], features[members, -1]
    if ranking == "abs":
        return np.abs(last - first)
    return last - first if first.mean() < last.mean() else first - last


def pick_source(features: np.ndarray, rows: np.ndarray, quota: int, seed: int, rng: np.random.Generator,
                ranking: str = "signed") -> tuple[np.ndarray, dict[str, Any]]:
    """Positions (into ``rows``) picked from one source (see the module docstring); ``rows`` ascending."""
    from sklearn.cluster import KMeans

    if ranking not in RANKINGS:
        raise UserError(f"--temp-ranking must be one of {', '.join(RANKINGS)}, got {ranking!r}")
    m = len(rows)
    info: dict[str, Any] = {"rows": m, "quota": quota}
    if quota >= m:
        info.update(taken_whole=True, picked_by_rank=m, filled_at_random=0)
        return np.arange(m), info
    if quota == 0:
        info.update(picked_by_rank=0, filled_at_random=0)
        return np.arange(0), info
    k = max(1, quota // ROWS_PER_CLUSTER)
    k_used = min(k, len(np.unique(features, axis=0)))
    with one_thread():
        labels = KMeans(n_clusters=k_used, random_state=seed, n_init=DIVERSITY_N_INIT).fit_predict(features)
    members = [np.flatnonzero(labels == c) for c in range(k_used)]
    members = [mm for mm in members if len(mm)]
    members.sort(key=lambda mm: (len(mm), rows[mm[0]]))
    visit = [mm for mm in members if len(mm) >= 2]
    picked, left = [], quota
    for i, mm in enumerate(visit):
        per = left // (len(visit) - i)
        take = mm if len(mm) <= per else mm[np.lexsort((rows[mm], -change(features, mm, ranking)))[:per]]
        picked.append(take)
        left -= len(take)
    by_rank = int(sum(len(t) for t in picked))
    if left > 0:
        taken = np.zeros(m, bool)
        for t in picked:
            taken[t] = True
        rest = np.flatnonzero(~taken)
        picked.append(rest[np.sort(rng.choice(len(rest), size=left, replace=False))])
    info.update(k=k, k_used=k_used, cluster_sizes=[len(mm) for mm in members],
                clusters_skipped=len(members) - len(visit), picked_by_rank=by_rank, filled_at_random=max(0, left),
                centres=[[float(f"{v:.5g}") for v in features[mm].mean(axis=0)] for mm in members])
    return np.sort(np.concatenate(picked)), info
