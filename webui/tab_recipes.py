"""Recipes tab: documents in, a reviewed training set out (backend.recipes).

Upload documents (or name a workspace folder), preview how they are cut into chunks, pick what to write
(question-answer pairs, instructions, summaries, chats, preference pairs) and who writes it (an
OpenAI-compatible endpoint such as Ollama, a completed run, or the base model), and start: a background job
like training, with progress, an ETA, abort and resume. When it ends, every row shows with its flags and its
source chunk; edit a cell, untick `keep` to drop a row, and save it as a named dataset.
"""

from __future__ import annotations

import html

import gradio as gr
import pandas as pd
import yaml

from backend.access.uploads import store_upload
from backend.errors import TuneForgeError
from backend.recipes.documents import SOURCE_SUFFIXES
from backend.recipes.jobs import RecipeJobs, preview_chunks
from backend.recipes.saving import describe_source
from backend.recipes.settings import RecipeConfig
from backend.recipes.steps import EXAMPLES, KINDS, TEMPLATES
from webui.context import caller
from webui.formats import format_duration
from webui.i18n import say, t
from webui.lanes import DEVICE, JOBS, STATUS
from webui.refusals import KEEP, LINE, on_refusal, on_refusal_raise
from webui.tab import Controls, Page, Tab

REFRESH_S = 2.0  # each tick is a message the whole page processes: webui/idle_cost.py
PREVIEWED = 200  # chunks shown; a large pile is still counted whole in the files line
GENERATORS = ("endpoint", "run", "base")
DEFAULT = RecipeConfig()
TEMPLATE_TEXT = yaml.safe_dump({"templates": TEMPLATES, "examples": EXAMPLES}, sort_keys=False, allow_unicode=True)
ENDED = ("completed", "failed", "aborted", "interrupted")
# The review table's columns, in order; a row is read back by position.
CHUNK_COLUMNS = ("#", "source", "tokens", "text")
ROW_COLUMNS = ("keep", "prompt", "answer", "rejected", "flags", "source", "chunk")


class RecipesTab(Tab):
    id = "recipes"

    def __init__(self, ctx, recipes: RecipeJobs):
        super().__init__(ctx)
        self.recipes = recipes

    def build(self) -> Controls:
        gr.Markdown(t("ui.recipes.intro"))
        with gr.Row():
            self.upload = gr.File(
                label=t("ui.recipes.upload"), file_count="multiple", file_types=list(SOURCE_SUFFIXES),
                elem_id="recipe-upload", scale=2,
            )  # fmt: skip
            self.sources = gr.Textbox(
                label=t("ui.recipes.sources"), info=t("ui.recipes.sources_info"), lines=3, elem_id="recipe-sources",
                scale=3,
            )  # fmt: skip
        with gr.Row():
            self.kind = gr.Radio(list(KINDS), value=DEFAULT.kind, label=t("ui.recipes.kind"), elem_id="recipe-kind")
            self.name = gr.Textbox(label=t("ui.recipes.name"), elem_id="recipe-name")
        with gr.Row():
            self.chunk_tokens = gr.Number(DEFAULT.chunk_tokens, label=t("ui.recipes.chunk_tokens"), precision=0)
            self.overlap = gr.Number(DEFAULT.overlap_tokens, label=t("ui.recipes.overlap"), precision=0)
            self.per_chunk = gr.Number(DEFAULT.per_chunk, label=t("ui.recipes.per_chunk"), precision=0)
            self.max_chunks = gr.Number(
                DEFAULT.max_chunks, label=t("ui.recipes.max_chunks"), precision=0, elem_id="recipe-max-chunks"
            )
        self._generator()
        with gr.Accordion(t("ui.recipes.templates"), open=False):
            gr.Markdown(t("ui.recipes.templates_intro"))
            self.templates = gr.Code(TEMPLATE_TEXT, language="yaml", elem_id="recipe-templates")
        with gr.Row():
            self.preview_btn = gr.Button(t("ui.recipes.preview"), size="sm", elem_id="recipe-preview-btn")
            self.start = gr.Button(t("ui.recipes.start"), variant="primary", elem_id="recipe-start")
            self.abort = gr.Button(t("ui.recipes.abort"), variant="stop", size="sm", elem_id="recipe-abort")
            self.resume = gr.Button(t("ui.recipes.resume"), size="sm", elem_id="recipe-resume")
        self.message = gr.Markdown(elem_id="recipe-message")
        self.progress = gr.HTML(elem_id="recipe-progress")
        self.chunks = gr.Dataframe(
            pd.DataFrame(columns=list(CHUNK_COLUMNS)),
            label=t("ui.recipes.chunks"),
            interactive=False,
            wrap=True,
            elem_id="recipe-chunks",
            elem_classes="tf-table",
        )
        self._review()
        self.recipe_id, self.shown, self.rows = gr.State(""), gr.State(""), gr.State([])
        self.timer = gr.Timer(REFRESH_S)
        return {}

    def _generator(self) -> None:
        with gr.Group():
            self.generator = gr.Radio(
                list(GENERATORS), value="endpoint", label=t("ui.recipes.generator"), elem_id="recipe-generator"
            )
            with gr.Row():
                self.base_url = gr.Textbox(
                    label=t("ui.recipes.base_url"), placeholder="http://localhost:11434/v1", elem_id="recipe-base-url"
                )
                self.model = gr.Textbox(label=t("ui.recipes.model"), placeholder="llama3.1", elem_id="recipe-model")
                self.api_key = gr.Textbox(label=t("ui.recipes.api_key"), type="password", elem_id="recipe-api-key")
                self.run = gr.Dropdown(
                    label=t("ui.recipes.run"), choices=self.ctx.jobs.finished_runs(), elem_id="recipe-run"
                )

    def _review(self) -> None:
        gr.Markdown(t("ui.recipes.review_intro"))
        self.table = gr.Dataframe(
            headers=list(ROW_COLUMNS), datatype=["bool", "str", "str", "str", "str", "str", "str"],
            interactive=True, wrap=True, static_columns=[4, 5, 6], elem_id="recipe-rows", elem_classes="tf-table",
        )  # fmt: skip
        with gr.Row():
            self.load = gr.Button(t("ui.recipes.load"), size="sm", elem_id="recipe-load")
            self.save_name = gr.Textbox(
                placeholder=t("ui.recipes.save_name"), show_label=False, elem_id="recipe-save-name"
            )
            self.save = gr.Button(t("ui.recipes.save"), variant="primary", size="sm", elem_id="recipe-save")

    def connect(self, page: Page) -> None:
        spec_inputs = [self.sources, self.kind, self.name, self.chunk_tokens, self.overlap, self.per_chunk]
        spec_inputs += [self.max_chunks, self.generator, self.base_url, self.model, self.api_key, self.run]
        spec_inputs += [self.templates]
        self.upload.upload(self.on_upload, [self.upload, self.sources], [self.sources, self.upload])
        self.preview_btn.click(self.on_preview, spec_inputs, [self.message, self.chunks], **DEVICE)
        self.start.click(self.on_start, spec_inputs, [self.message, self.recipe_id, self.shown], **JOBS)
        self.abort.click(self.on_abort, self.recipe_id, self.message, **JOBS)
        self.resume.click(self.on_resume, [self.recipe_id, self.api_key], [self.message, self.shown], **JOBS)
        watched = [self.progress, self.table, self.rows, self.shown, self.save_name]
        self.timer.tick(self.on_tick, [self.recipe_id, self.shown], watched, show_progress="hidden", **STATUS)
        self.load.click(self.on_load, self.recipe_id, [self.table, self.rows, self.save_name])
        self.save.click(self.on_save, [self.recipe_id, self.table, self.rows, self.save_name], self.message)
        page.finished.change(lambda runs: gr.update(choices=runs), page.finished, self.run)

    # ---- sources and settings -------------------------------------------------------------------
    @on_refusal_raise("Cannot upload")
    def on_upload(self, files, sources):
        stored = [
            self.ctx.act(
                "dataset_upload",
                lambda person, f=f: store_upload(f, self.ctx.gate.uploads_dir(person), SOURCE_SUFFIXES),
            )
            for f in files or []
        ]
        lines = [line for line in (sources or "").splitlines() if line.strip()]
        return "\n".join(lines + [str(p) for p in stored if str(p) not in lines]), None

    def spec(self, sources, kind, name, chunk_tokens, overlap, per_chunk, max_chunks, generator, base_url, model,
             api_key, run, templates) -> dict:  # fmt: skip
        """The recipe_start spec the form describes (the API's own contract, plus the tab's extra options)."""
        try:
            edited = yaml.safe_load(templates or "") or {}
        except yaml.YAMLError as exc:
            raise TuneForgeError(f"templates: not valid YAML ({str(exc).splitlines()[0]})") from None
        if not isinstance(edited, dict):
            raise TuneForgeError("templates: a mapping with 'templates' and 'examples'")
        changed = {
            part: {k: v for k, v in (edited.get(part) or {}).items() if v != defaults.get(k)}
            for part, defaults in (("templates", TEMPLATES), ("examples", EXAMPLES))
        }
        return {
            "sources": [line.strip() for line in (sources or "").splitlines() if line.strip()],
            "generator": _generator_spec(generator, base_url, model, api_key, run),
            "kind": kind,
            "chunk_tokens": _whole(chunk_tokens),
            "per_chunk": _whole(per_chunk),
            "name": (name or "").strip(),
            "overlap_tokens": _whole(overlap),
            "max_chunks": _whole(max_chunks),
            **{part: values for part, values in changed.items() if values},
        }

    @on_refusal("Cannot preview", LINE, KEEP)
    def on_preview(self, *values):
        spec = {**self.spec(*values), "generator": "base"}  # the chunks do not depend on who writes the rows
        config, _key = self.recipes.checked({**spec, "name": spec["name"] or "preview"})  # and confines the sources
        reports, chunks = preview_chunks(config.sources, config.chunk_tokens, config.overlap_tokens, config.model)
        rows = [(c.index, c.source_line, c.tokens, c.text) for c in chunks[:PREVIEWED]]
        frame = pd.DataFrame(rows, columns=list(CHUNK_COLUMNS))
        return files_line(r.as_dict() for r in reports), frame

    @on_refusal("Cannot start", LINE, KEEP, KEEP)
    def on_start(self, *values):
        recipe_id = start_recipe(self.ctx.gate, self.recipes, caller(), self.spec(*values))
        return say("msg.recipe_started", name=recipe_id), recipe_id, ""

    @on_refusal("Cannot abort")
    def on_abort(self, recipe_id):
        if not recipe_id:
            raise TuneForgeError("no recipe started on this page")
        work = lambda person: self.recipes.abort(recipe_id)  # noqa: E731
        self.ctx.act("recipe_abort", work, owner=lambda: self.recipes.owner(recipe_id))
        return say("msg.recipe_aborted", name=recipe_id)

    @on_refusal("Cannot resume", LINE, KEEP)
    def on_resume(self, recipe_id, api_key):
        if not recipe_id:
            raise TuneForgeError("no recipe started on this page")
        work = lambda person: self.recipes.resume(recipe_id, api_key or "")  # noqa: E731
        self.ctx.act("recipe_resume", work, owner=lambda: self.recipes.owner(recipe_id))
        return say("msg.recipe_resumed", name=recipe_id), ""

    # ---- progress and review ----------------------------------------------------------------------
    def on_tick(self, recipe_id, shown):
        """The progress line; the rows table once, when the recipe ends (so edits are never overwritten)."""
        if not recipe_id:
            return gr.update(), gr.update(), gr.update(), shown, gr.update()
        try:
            status = self.recipes.status(recipe_id)
        except TuneForgeError as exc:
            return f"<span class='tf-error'>{html.escape(str(exc))}</span>", *[gr.update()] * 2, shown, gr.update()
        line = progress_html(recipe_id, status)
        if status["status"] in ENDED and shown != status["status"]:
            table, rows = self.rows_table(recipe_id)
            return line, table, rows, status["status"], recipe_id
        return line, gr.update(), gr.update(), shown, gr.update()

    @on_refusal_raise("Cannot show the rows")
    def on_load(self, recipe_id):
        if not recipe_id:
            raise TuneForgeError("no recipe started on this page")
        table, rows = self.rows_table(recipe_id)
        return table, rows, recipe_id

    def rows_table(self, recipe_id: str):
        rows = self.recipes.review_rows(recipe_id)
        frame = pd.DataFrame([table_row(row) for row in rows], columns=list(ROW_COLUMNS))
        return frame, rows

    @on_refusal("Cannot save")
    def on_save(self, recipe_id, table, rows, name):
        if not recipe_id:
            raise TuneForgeError("no recipe started on this page")
        edited = edited_rows(table, rows)
        saved = self.ctx.act("recipe_save", lambda person: self.recipes.save_reviewed(recipe_id, edited, name or ""))
        return say("msg.recipe_saved", rows=saved, name=(name or recipe_id).strip())


def start_recipe(gate, recipes: RecipeJobs, username: str | None, spec: dict) -> str:
    """Start a recipe as the caller: a member's sources may not be another person's private uploads."""

    def work(person) -> str:
        sources = spec.get("sources") if isinstance(spec, dict) else None
        for source in [sources] if isinstance(sources, str) else sources if isinstance(sources, list) else []:
            gate.check_dataset(person, str(source), what="source")
        return recipes.start(spec, owner=person.name)

    return gate.act(username, "recipe_start", work)


def _generator_spec(generator, base_url, model, api_key, run):
    if generator == "base":
        return "base"
    if generator == "run":
        if not run:
            raise TuneForgeError("generator: pick a completed run")
        return {"run": run}
    return {"base_url": (base_url or "").strip(), "model": (model or "").strip(), "api_key": api_key or ""}


def _whole(value) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        raise TuneForgeError(f"{value!r}: must be a whole number") from None


def files_line(files) -> str:
    """Each source in a word: its chunks, or why it gave none (a scanned PDF says so here)."""
    parts = []
    for f in files:
        name = html.escape(f["path"].rsplit("/", 1)[-1])
        parts.append(f"⚠️ {name}: {html.escape(f['error'])}" if f["error"] else f"{name}: {f['chunks']}")
    return say("msg.recipe_files", files="; ".join(parts)) if parts else ""


def progress_html(recipe_id: str, status: dict) -> str:
    total, done = status["total"] or 0, status["done"] or 0
    share = done / total if total else 0.0
    detail = say(
        "msg.recipe_progress", status=f"<b>{status['status']}</b>", done=done, total=total or "?",
        rows=status["rows"], failed=status["failed_calls"], eta=format_duration(status["eta_s"]),
    )  # fmt: skip
    if status["dataset"]:
        detail += " · " + say("msg.recipe_dataset", name=html.escape(status["dataset"]), rows=status["saved_rows"])
    if status["files"]:
        detail += "<br>" + files_line(status["files"])
    if status["error"]:
        detail += f"<br><span class='tf-error'>{html.escape(status['error'])}</span>"
    return (
        f"<div id='recipe-progress-line' data-recipe='{html.escape(recipe_id)}' data-status='{status['status']}'>"
        f"<div class='tf-bar'><div class='tf-fill' style='width:{100 * share:.1f}%'></div></div>"
        f"<div class='tf-progress-text'>{detail}</div></div>"
    )


def table_row(row: dict) -> list:
    if "messages" in row:
        prompt, answer = conversation_text(row["messages"]), ""
    else:
        prompt = row.get("instruction", "") + (f"\n\n{row['input']}" if row.get("input") else "")
        answer = row.get("output", row.get("chosen", ""))
    flags = ", ".join(row.get("flags") or [])
    keep = not {"duplicate", "near_duplicate"} & set(row.get("flags") or [])
    return [keep, prompt, answer, row.get("rejected", ""), flags, describe_source(row), row.get("chunk_text", "")]


def conversation_text(messages: list[dict]) -> str:
    return "\n".join(f"{m['role']}: {m['content']}" for m in messages)


def edited_rows(table, rows: list[dict]) -> list[dict]:
    """The kept rows with the table's edits; a row's source and bookkeeping come from the recipe, never the table."""
    frame = table if isinstance(table, pd.DataFrame) else pd.DataFrame(table)
    kept = []
    for i, values in enumerate(frame.itertuples(index=False)):
        if i >= len(rows) or not _truthy(values[0]):
            continue
        kept.append(_edited(rows[i], str(values[1] or ""), str(values[2] or ""), str(values[3] or "")))
    return kept


def _edited(row: dict, prompt: str, answer: str, rejected: str) -> dict:
    row = {k: v for k, v in row.items() if k not in ("flags", "chunk_text")}
    if "messages" in row:
        row["messages"] = parsed_conversation(prompt)
        return row
    instruction, _, rest = prompt.partition("\n\n")
    if "input" in row and row.get("input"):
        row["instruction"], row["input"] = instruction, rest
    else:
        row["instruction"] = prompt
    row["chosen" if "chosen" in row else "output"] = answer
    if "rejected" in row:
        row["rejected"] = rejected
    return row


def parsed_conversation(text: str) -> list[dict]:
    messages: list[dict] = []
    for line in text.splitlines():
        role, sep, content = line.partition(": ")
        if sep and role in ("user", "assistant", "system"):
            messages.append({"role": role, "content": content})
        elif messages:
            messages[-1]["content"] += "\n" + line
    if not messages or messages[-1]["role"] != "assistant":
        raise TuneForgeError("a conversation row: write each turn as 'user: …' or 'assistant: …', ending with one")
    return messages


def _truthy(value) -> bool:
    return value is True or str(value).strip().lower() in ("true", "1", "yes")
