"""The page's words in every language: one catalogue a language, `webui/locales/<code>.yaml`.

Two ways a word reaches the page, from the same catalogues:

- `t(key)`: static text (labels, help, tab names, buttons, headings) goes out as Gradio's own i18n marker
  (`gr.I18n`), and the browser translates it into its locale: the browser's language, or the one picked in
  Gradio's Settings panel (the page's footer), which switches the page at once.
- `say(key, **values)`: text made while handling an event (messages, chart titles, table headers) has values
  in it, which Gradio's markers cannot carry. It is written here, in the language the page shows: the page's
  script keeps a cookie with Gradio's current locale (`HEAD`), and a request without it falls back on its
  Accept-Language header.

The backend writes its one-line errors and report lines in English (the CLI, `train.log` and the API keep
them so). `say_line` translates those the catalogue has a pattern for (`lines:`), and leaves any other as it is.

A catalogue is YAML rather than JSON: a translator writes long help texts without escaping quotes, and can
leave a comment. Options are keyed by their name (`options.<name>.label` / `.help`); English help is not in
`en.yaml` but comes from the option's field in backend/config.py, so it is written once.
"""

from __future__ import annotations

import re
from functools import cache
from http.cookies import SimpleCookie
from pathlib import Path

import gradio as gr
import yaml
from gradio.context import LocalContext
from gradio.i18n import I18nData

from backend.config import fields

LOCALES_DIR = Path(__file__).parent / "locales"
SOURCE = "en"  # every key is in English first; a language that lacks one shows the English
COOKIE = "tf_locale"

# Keeps the tf_locale cookie equal to the locale Gradio's i18n shows (it writes it to <html lang>), so that
# the text the server writes follows the browser's language and a switch in Gradio's Settings panel.
HEAD = f"""<script>
(() => {{
  const keep = () => {{
    const lang = document.documentElement.lang || navigator.language || "{SOURCE}";
    document.cookie = "{COOKIE}=" + encodeURIComponent(lang) + "; path=/; SameSite=Lax";
  }};
  keep();
  new MutationObserver(keep).observe(document.documentElement, {{attributes: true, attributeFilter: ["lang"]}});
}})();
</script>"""


def flatten(tree: dict, prefix: str = "") -> dict[str, str]:
    flat = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def read_catalogue(path: Path) -> dict[str, str]:
    """One language's catalogue as flat dotted keys (`options.cutoff_len.label`)."""
    return flatten(yaml.safe_load(path.read_text(encoding="utf-8")) or {})


@cache
def catalogues() -> dict[str, dict[str, str]]:
    """Language code → key → text. English options' help comes from the config's fields (the one source)."""
    found = {path.stem: read_catalogue(path) for path in sorted(LOCALES_DIR.glob("*.yaml"))}
    found[SOURCE].update({f"options.{f.name}.help": f.metadata["help"] for f in fields()})
    return found


I18N = gr.I18n(**catalogues())


def t(key: str) -> I18nData | str:
    """Static text, translated in the browser. A key missing from English shows as itself (the
    catalogue test names it), so a new option without a label still has a working form."""
    return I18N(key) if key in catalogues()[SOURCE] else key


def option_label(f) -> I18nData | str:
    key = f"options.{f.name}.label"
    return t(key) if key in catalogues()[SOURCE] else f.metadata["label"] or f.name


def option_help(f) -> str:
    """The help line: the YAML key first, small as help text is, so people who know the keys find them."""
    return f"{f.name} · {t(f'options.{f.name}.help')}"


def locale() -> str:
    """The catalogue the page of the event being handled shows; English outside an event."""
    request = LocalContext.request.get(None)
    headers = getattr(request, "headers", None) or {}
    cookie = SimpleCookie(headers.get("cookie", ""))
    wanted = [cookie[COOKIE].value] if COOKIE in cookie else []
    wanted += [part.split(";")[0].strip() for part in headers.get("accept-language", "").split(",")]
    return negotiate(wanted)


def negotiate(wanted: list[str]) -> str:
    """The first of the wanted languages a catalogue speaks: exactly, or by its language (zh-Hans → zh-CN)."""
    known = catalogues()
    for tag in filter(None, wanted):
        if tag in known:
            return tag
        language = tag.split("-")[0].lower()
        for code in known:
            if code.split("-")[0].lower() == language:
                return code
    return SOURCE


def say(key: str, **values) -> str:
    """Text for the current event's page, in its language, with the values filled in."""
    words = catalogues()[locale()].get(key) or catalogues()[SOURCE][key]
    return words.format(**values) if values else words


@cache
def line_patterns() -> list[tuple[str, re.Pattern]]:
    """English report and error lines as patterns: a catalogue's `lines.<name>` is both the English text
    and, with each {value} a capture, the pattern that finds it in a backend message."""
    patterns = []
    for key, text in catalogues()[SOURCE].items():
        if key.startswith("lines."):
            parts = re.split(r"\{(\w+)\}", text)
            regex = "".join(re.escape(p) if i % 2 == 0 else f"(?P<{p}>.+?)" for i, p in enumerate(parts))
            patterns.append((key, re.compile(regex)))
    return patterns


def say_line(text: str) -> str:
    """A backend line (an error, a report line) in the page's language, where the catalogue knows its pattern."""
    language = locale()
    if language == SOURCE:
        return text
    for key, pattern in line_patterns():
        match = pattern.fullmatch(text)
        if match:
            return say(key, **{name: say_line(value) for name, value in match.groupdict().items()})
    return text


def headed(frame):
    """A table with its column names in the page's language, where the catalogue names them (`columns.<name>`)."""
    words = catalogues()[SOURCE]
    return frame.rename(columns={c: say(f"columns.{c}") for c in frame.columns if f"columns.{c}" in words})
