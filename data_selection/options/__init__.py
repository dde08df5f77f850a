"""One home for each ``data-select`` command's options: ``options/<command>.py`` holds its dataclass.

These modules are light (standard library and our plumbing only at module top): the CLI imports one to parse
and check a command line before any heavy package (torch, transformers, datasets, LLaMA-Factory) loads, and a
study imports them to check every planned step's options when the study is loaded.
"""
