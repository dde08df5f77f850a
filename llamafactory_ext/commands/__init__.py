"""One entry module per ``llamafactory-ext`` command: ``commands/<command>.py`` defines ``run(...) -> int``."""
