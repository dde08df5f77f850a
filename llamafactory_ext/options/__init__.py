"""One home for each ``llamafactory-ext`` command's options: ``options/<command>.py`` holds its dataclass.

Light modules (standard library and our plumbing only at module top), as in ``data_selection.options``.
"""
