"""The reports wing (layer 5): what ``data-select report`` and ``prune-steps`` write, and the pages the study links.

Selection report (``data-select report NAME…``, :mod:`.selection`): :mod:`.facts` reads the selections and
computes what every output shows; :mod:`.markdown` writes ``report.md`` (with :mod:`.length` and :mod:`.temp`
sections), :mod:`.plots` the PNGs and :mod:`.html` the offline ``report.html``. Pruned subset
(``prune-steps``): :mod:`.pruned` (``report.md``), :mod:`.pruned_plots` (PNGs), :mod:`.html.pruned`.
Pieces both the PNG and the HTML side use: :mod:`.colors`, :mod:`.bins`, :mod:`.funnel`.

Nothing below this layer imports it; it reads the scores table, the selectors and the transforms' facts.
"""
