"""Evaluation with lighteval and the comparison of evaluated models.

* :mod:`.options`: ``llamafactory-ext eval``'s options and the plan they resolve to;
* :mod:`.presets`: benchmark suites and the evaluation protocols of the studies we reproduce;
* :mod:`.suites`: ``--suite`` parsing and local problem files;
* :mod:`.staging`: the model staged as symlinks with the protocol's generation config;
* :mod:`.run`: building and running the lighteval command, summaries, progress;
* :mod:`.lighteval_tasks`: lighteval custom tasks (copied verbatim into each evaluation folder);
* :mod:`.seeded_lighteval`: lighteval's CLI with torch seeded (copied verbatim too);
* :mod:`.lighteval_results`: results files of lighteval 0.10–0.13 read into one shape;
* :mod:`.compare`: the base vs random vs selected table and chart.
"""
