"""``data-select push NAME --repo user/name``: publish a selected subset as a Hugging Face dataset repo."""

from __future__ import annotations

import json

from data_selection.options.push import PushOptions
from data_selection.push import run_push


def run(opts: PushOptions) -> int:
    res = run_push(opts)
    print(f"pushed {', '.join(res['files'])} to {res['url']}")
    print(f"LLaMA-Factory entry for the hub copy:\n\"{opts.names[0]}\": {json.dumps(res['entry'])}")
    return 0
