"""Selection studies: ``llamafactory-ext study STUDY.yaml`` (see ``studies/``).

* :mod:`.config`: the YAML, validated; :mod:`.steps`: hash-keyed steps; :mod:`.plan`: config -> steps;
* :mod:`.execute`: run them, resumably; :mod:`.results`: per-problem scores from lighteval's details;
* :mod:`.stats`: crossed-bootstrap intervals; :mod:`.report`: the report; :mod:`.estimate`: dry-run GPU-hours;
* the CLI command: :mod:`llamafactory_ext.commands.study` (options: :mod:`llamafactory_ext.options.study`).
"""
