"""Rows as LLaMA-Factory renders them, for the example browser of ``report.html``.

With the scorer's tokenizer (or ``--tokenizer``) each row goes through
:class:`data_selection.encoding.TemplateEncoder`, the encoding training uses: the prompt is the decoded
unlabelled prefix, the response the decoded label tokens, cut where LLaMA-Factory cuts it at ``cutoff_len``.
When the scores hold per-token losses (``data-select score --per_token_prefix K``, column ``token_losses``)
the first K response tokens come as (text, loss) pieces the page colours. Without a tokenizer the template's
own formatters render the text (special tokens named, e.g. ``<eos_token>``), and nothing is coloured.
"""

from __future__ import annotations

from typing import Any

TRUNC = "\n… [{n:,} more characters not embedded]"


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit] + TRUNC.format(n=len(text) - limit)


def _join(elements: list[Any]) -> str:
    out = []
    for e in elements:
        if isinstance(e, str):
            out.append(e)
        elif isinstance(e, dict):
            out.append(str(e.get("token", "")))
        else:  # a set of special-token names
            out.extend(f"<{name}>" for name in sorted(e))
    return "".join(out)


class Renderer:
    def __init__(self, template: str, cutoff_len: int, tokenizer_path: str = "", max_chars: int = 6000):
        from llamafactory.data.template import TEMPLATES  # lazy: LLaMA-Factory (seconds)

        from data_selection.encoding import TemplateEncoder, load_tokenizer  # lazy: imports LLaMA-Factory

        self.max_chars = max_chars
        self.encoder = None
        self.why = ""
        self.template_name = template
        if tokenizer_path:
            try:
                self.encoder = TemplateEncoder(load_tokenizer(tokenizer_path), template, cutoff_len)
            except Exception as err:  # the page is still useful without token-level rendering
                self.why = f"tokenizer {tokenizer_path!r} not loaded ({type(err).__name__}: {str(err)[:200]})"
        else:
            self.why = "no tokenizer given"
        if self.encoder is None:
            self.template = TEMPLATES.get(template) or TEMPLATES["empty"]

    @property
    def description(self) -> str:
        if self.encoder is not None:
            return (f"rendered with LLaMA-Factory's template {self.template_name!r} and the tokenizer (token for "
                    f"token what training sees, cut at cutoff_len {self.encoder.cutoff_len:,})")
        return f"rendered with LLaMA-Factory's template {self.template_name!r} formatters ({self.why})"

    def render(self, ex: dict[str, Any], token_losses: list[float] | None = None) -> dict[str, Any]:
        if self.encoder is None:
            return self._render_text(ex)
        from llamafactory.extras.constants import IGNORE_INDEX  # lazy: as in __init__

        tok = self.encoder.tokenizer
        enc = self.encoder.encode(ex)
        first = next((i for i, label in enumerate(enc.labels) if label != IGNORE_INDEX), len(enc.labels))
        prompt = tok.decode(enc.input_ids[:first], skip_special_tokens=False)
        resp_ids = enc.input_ids[first:]
        pieces, used = [], 0
        if token_losses:
            k = min(len(token_losses), len(resp_ids))
            buf, buf_loss = [], []
            for i in range(k):
                buf.append(resp_ids[i])
                buf_loss.append(float(token_losses[i]))
                text = tok.decode(buf, skip_special_tokens=False)
                if "\ufffd" in text and i < k - 1:  # an incomplete UTF-8 sequence: join the next token
                    continue
                pieces.append([text, round(max(buf_loss), 4)])
                buf, buf_loss = [], []
            used = k
        rest = tok.decode(resp_ids[used:], skip_special_tokens=False)
        note = ""
        if enc.truncated:
            note = (f"over-length: {enc.n_tokens_full:,} tokens; LLaMA-Factory cuts it at cutoff_len "
                    f"{self.encoder.cutoff_len:,} (shown as cut: the end of the trace is lost)")
        return {"prompt": _cut(prompt, self.max_chars), "pieces": pieces, "response": _cut(rest, self.max_chars),
                "note": note}

    def _render_text(self, ex: dict[str, Any]) -> dict[str, Any]:
        t = self.template
        elements = list(t.format_prefix.apply())
        if ex.get("_system"):
            elements += t.format_system.apply(content=ex["_system"])
        for m in ex["_prompt"]:
            fmt = t.format_user if m["role"] == "user" else t.format_assistant if m["role"] == "assistant" else None
            elements += fmt.apply(content=m["content"]) if fmt else [m["content"]]
        response = _join(t.format_assistant.apply(content=ex["_response"][0]["content"])) if ex["_response"] else ""
        return {"prompt": _cut(_join(elements), self.max_chars), "pieces": [],
                "response": _cut(response, self.max_chars), "note": ""}
