"""One entry module per ``data-select`` command: ``commands/<command>.py`` defines ``run(opts) -> int``.

An entry module is thin: it calls the engine or selector that does the work and prints what a person reads.
"""
