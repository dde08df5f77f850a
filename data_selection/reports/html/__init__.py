"""``report.html``: one self-contained page per selection report, pruned subset and study.

:mod:`.page` inlines the stylesheet and script of ``assets/`` and the report's data (JSON) into one file that
opens offline; :mod:`.charts` builds the chart blocks the script draws as SVG; :mod:`.selection` gathers a
selection report's blocks (:mod:`.stages`: each strategy's own panel) and :mod:`.browser` its per-example
table; :mod:`.texts` renders rows the way LLaMA-Factory does (prompt, response, per-token losses);
:mod:`.pruned` is the page of ``prune-steps``. The study's page is :mod:`llamafactory_ext.study.report_html`
(it uses :mod:`.page` and :mod:`.charts`).
"""
