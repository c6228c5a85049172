"""Dataset tab: pick or upload data, map its columns, and see exactly what the model will see.

Everything shown here (format, bad rows, duplicates, leakage, rendered rows, token lengths,
cost) comes from the same pipeline the training job runs, before any model is loaded.
A `dataset_dir` (such as LLaMA-Factory's data/ folder) adds its dataset_info.json entries to the
list, and {{name}}/{{author}} placeholders (identity.json) can be filled in here.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

import gradio as gr
import pandas as pd

from backend.access.uploads import safe_name, store_upload
from backend.access.zip_datasets import store_zip_dataset
from backend.config import TrainConfig, default_for, fields
from backend.data import DataOptions, labelled_choices, register_dataset
from backend.data.images import thumbnails
from backend.data.readers import SUPPORTED_SUFFIXES
from backend.data.report import inspect_dataset
from backend.data.tokens import render_segments, token_stats, tokens_to_train
from backend.errors import TuneForgeError
from backend.runs.speed import cached_speed, measure_speed
from webui.charts import length_histogram
from webui.context import AppContext
from webui.empty import empty_table, fitted
from webui.formats import format_duration
from webui.forms import controls, options_from
from webui.i18n import say, say_line, t
from webui.lanes import DEVICE
from webui.refusals import KEEP, LINE, on_refusal, on_refusal_raise
from webui.tab import Controls, Page, Tab

COLUMN_OPTIONS = tuple(f.name for f in fields() if f.metadata["widget"] == "column")
RENDERED_ROWS = 3
NO_PREVIEW = partial(empty_table, "empty.dataset_preview")
NO_IMAGES = partial(gr.update, value=None, visible=False)
# Options whose change alters what the dataset checks show.
DATA_TRIGGERS = ("dataset", "task", "dataset_format", "eval_dataset", "skip_bad_rows", *COLUMN_OPTIONS)
DATA_TRIGGERS += ("scrub_pii", "dedup", "drop_leaked", "val_size", "max_samples", "cutoff_len", "seed")
DATA_TRIGGERS += ("dataset_dir", "identity_name", "identity_author")


def config_from(values) -> TrainConfig:
    return TrainConfig.from_dict(options_from(values))


# Options whose default depends on the task (learning_rate, pref_loss): they follow a task switch.
TASK_FOLLOWERS = tuple(f for f in fields() if f.metadata["task_defaults"])
FIRST_TASK = next(f.default for f in fields() if f.name == "task")


def follow_task_defaults(previous_task, task, *values):
    """On a task switch, an option still at the previous task's default takes the new task's; one the person
    set stays, even if it happens to be some other task's default. Also returns task: the next switch's previous.

    Where both tasks share a default, nothing is sent: these values were read as the switch was clicked, and
    writing one back would undo a change still on its way (a demo dataset picked just before, from sft to dpo).
    """

    def follow(f, value):
        before, after = default_for(f, previous_task), default_for(f, task)
        return after if value == before and after != before else gr.update()

    return *[follow(f, value) for f, value in zip(TASK_FOLLOWERS, values, strict=True)], task


def cost_text(config: TrainConfig, report, stats, tokens_per_s: float | None) -> str:
    per_epoch = stats.tokens_per_epoch(report.train_rows)
    batch_rows = config.per_device_train_batch_size * config.gradient_accumulation_steps
    total = tokens_to_train(stats, report.train_rows, config.num_train_epochs, config.max_steps, batch_rows)
    plan = (
        say("msg.cost_steps", steps=config.max_steps, rows=batch_rows)
        if config.max_steps > 0
        else say("msg.cost_epochs", tokens=f"{per_epoch:,}", epochs=f"{config.num_train_epochs:g}")
    )
    line = say("msg.cost", plan=plan, total=f"{total:,}")
    if tokens_per_s:
        eta = format_duration(total / tokens_per_s)
        line += say("msg.cost_eta", eta=eta, speed=f"{tokens_per_s:,.0f}")
    else:
        line += say("msg.cost_press_estimate")
    return line


class DatasetTab(Tab):
    id = "dataset"

    def build(self) -> Controls:
        gr.Markdown(f"{t('ui.dataset.intro')} {', '.join(s[1:].upper() for s in SUPPORTED_SUFFIXES)}.")
        self._source()
        options = self._options()
        with gr.Row():
            self.check = gr.Button(t("ui.dataset.check"), size="sm")
            self.register_name = gr.Textbox(
                placeholder=t("ui.dataset.register_name"), show_label=False, scale=2, elem_id="register-name"
            )
            self.register = gr.Button(t("ui.dataset.register"), size="sm")
        self._checks()
        return options

    def _source(self) -> None:
        with gr.Row():
            self.named = gr.Dropdown(
                choices=labelled_choices(self.ctx.jobs.workspace),
                value="demo_identity",
                label=t("ui.dataset.named"),
                info=t("ui.dataset.named_info"),
                elem_id="demo-dataset",
                scale=1,
            )
            self.upload = gr.File(
                label=t("ui.dataset.upload"),
                file_types=[*SUPPORTED_SUFFIXES, ".zip"],
                elem_id="dataset-upload",
                scale=2,
            )

    def _options(self) -> Controls:
        options = controls("dataset")
        with gr.Accordion(t("ui.dataset.columns"), open=False):
            gr.Markdown(t("ui.dataset.columns_intro"))
            with gr.Row():
                options.update(controls("columns"))
        with gr.Accordion(t("ui.dataset.cleaning"), open=False):
            with gr.Row():
                options.update(controls("cleaning"))
        with gr.Accordion(t("ui.dataset.identity"), open=False, elem_id="identity-accordion") as self.identity:
            gr.Markdown(t("ui.dataset.identity_intro"))
            with gr.Row():
                options.update(controls("identity"))
        return options

    def _checks(self) -> None:
        self.summary = gr.Markdown(elem_id="dataset-summary")
        self.preview = gr.Dataframe(
            NO_PREVIEW(),
            label=t("ui.dataset.preview"),
            interactive=False,
            wrap=True,
            elem_id="dataset-preview",
            elem_classes="tf-table",
        )
        self.thumbnails = gr.Gallery(
            label=t("ui.dataset.thumbnails"), elem_id="dataset-thumbnails", columns=8, height=150, visible=False
        )
        self.rendered = gr.HighlightedText(
            label=t("ui.dataset.rendered"),
            color_map={"trained": "#16a34a", "masked": "#9ca3af"},
            show_legend=True,
            combine_adjacent=True,
            elem_id="dataset-rendered",
        )
        with gr.Row():
            self.histogram = gr.Plot(label=t("ui.dataset.histogram"), elem_id="length-histogram")
        self.cost = gr.Markdown(elem_id="dataset-cost")
        self.estimate = gr.Button(t("ui.dataset.estimate"), size="sm", elem_id="estimate-btn")

    def connect(self, page: Page) -> None:
        form = page.form
        inputs = [form[f.name] for f in fields()]
        columns = [form[name] for name in COLUMN_OPTIONS]
        checked = [self.summary, self.preview, self.rendered, self.histogram, self.cost, self.identity, self.thumbnails]
        checked += columns
        self.named.input(self.on_named, self.named, form["dataset"])
        form["dataset"].change(self.on_dataset_named, form["dataset"], self.named, show_progress="hidden")
        form["dataset_dir"].change(self.on_dataset_dir, form["dataset_dir"], self.named)
        self.upload.upload(self.on_upload, self.upload, [form["dataset"], self.upload, self.named])
        # The page's first check is one of its triggers, not a listener of its own: two listeners ran side by
        # side, and a slow first check (the demo, seconds on a busy machine) landed after the check of a file
        # uploaded meanwhile, so the summary described the demo. One listener runs its triggers in turn.
        triggers = [form[name].change for name in DATA_TRIGGERS] + [self.check.click, self.ctx.blocks.load]
        # Progress on the summary alone: each target is revisited on every later event (webui/progress_targets.py).
        gr.on(
            triggers,
            self.on_check,
            inputs,
            checked,
            show_progress="minimal",
            show_progress_on=self.summary,
            trigger_mode="always_last",
        )
        followers, previous_task = [form[f.name] for f in TASK_FOLLOWERS], gr.State(FIRST_TASK)
        # One handler for them all, so that the previous task they compare against is updated once.
        task_and_followers = [previous_task, form["task"], *followers]
        # Outside the queue: a queued follower ran seconds late under load, from the values read at the
        # switch, and overwrote what the person typed after it (a learning rate set right after the switch).
        form["task"].change(follow_task_defaults, task_and_followers, [*followers, previous_task], queue=False)
        self.estimate.click(self.on_estimate, inputs, self.cost, **DEVICE)  # it trains a few steps to measure
        self.register.click(self.on_register, [self.register_name, *inputs], [self.summary, self.named])
        # Named datasets saved elsewhere (the Recipes tab, the API, a terminal) show when the tab is opened.
        self.item.select(self.on_dataset_dir, form["dataset_dir"], self.named)

    def on_dataset_named(self, dataset):
        """A dataset that is one of the list's names (a task's demo, say) shows as picked there too."""
        names = [value for _, value in labelled_choices(self.ctx.jobs.workspace)]
        return gr.update(value=dataset) if dataset in names else gr.update()

    def on_named(self, name):
        """A name picked from the list becomes `dataset`; emptying the list leaves `dataset` as it is."""
        return name or gr.update()

    @on_refusal_raise("Cannot upload")  # a popup on the page; an API caller gets the error, as from every endpoint
    def on_upload(self, file):
        """Keep the file in the workspace and point `dataset` at it; the drop zone empties for the next one."""
        if file is None:
            return gr.update(), None, gr.update()
        # A zip brings a data file with its images, which the file names relative to itself.
        store = store_zip_dataset if Path(str(file)).suffix.lower() == ".zip" else store_upload
        work = lambda person: store(file, self.ctx.gate.uploads_dir(person))  # noqa: E731
        stored = self.ctx.act("dataset_upload", work, details={"file": safe_name(Path(str(file)).name)})
        return str(stored), None, None

    def _inspect(self, values, progress=None):
        config = config_from(values)
        self.ctx.jobs.confinement.options(config)  # the preview would show any readable file's rows otherwise
        self.ctx.gate.check_options(self.ctx.person(), config.to_dict())  # and another person's upload
        report = inspect_dataset(DataOptions.from_config(config, self.ctx.jobs.workspace), progress)
        return config, report

    @on_refusal(None, KEEP)
    def on_dataset_dir(self, dataset_dir):
        """List the folder's entries beside the demos and the workspace's names (a bad folder: the check says why)."""
        self.ctx.jobs.confinement.dataset_dir(dataset_dir)
        return gr.update(choices=labelled_choices(self.ctx.jobs.workspace, dataset_dir))

    @on_refusal(
        "Cannot use this dataset", LINE, NO_PREVIEW, None, None, "", KEEP, NO_IMAGES, *[KEEP] * len(COLUMN_OPTIONS)
    )
    def on_check(self, *values, progress=gr.Progress()):
        config, report = self._inspect(values, lambda rows: progress(None, desc=f"read {rows:,} rows"))
        column_updates = [gr.update(choices=["", *report.columns]) for _ in COLUMN_OPTIONS]
        # Opened for data with placeholders, so the fields that fill them are in view; never closed on the person.
        identity = gr.update(open=True) if report.placeholders else gr.update()
        preview = fitted(pd.DataFrame(report.preview)) if report.preview else NO_PREVIEW()
        images = image_gallery(report.first_examples[:RENDERED_ROWS])
        if report.format == "classification":
            segments = self._rendered(report, config)
            summary = "  \n".join(map(say_line, report.summary_lines()))
            return summary, preview, segments, None, "", identity, images, *column_updates
        segments, histogram, cost, problem = self._tokens(config, report)
        summary = "  \n".join([*map(say_line, report.summary_lines()), *filter(None, [problem])])
        return summary, preview, segments, histogram, cost, identity, images, *column_updates

    @on_refusal("Cannot train on this data with this model", None, None, "", LINE)
    def _tokens(self, config, report):
        """The rendered rows, the length histogram and the cost; or, when the model cannot read the data, why."""
        stats = token_stats(
            report.sample, config.model, config.template, config.cutoff_len, report.usable_rows, config.image_max_pixels
        )
        segments = self._rendered(report, config)
        note = say("chart.sampled", rows=f"{stats.sampled:,}") if stats.sampled < report.usable_rows else ""
        histogram = length_histogram(stats.lengths, config.cutoff_len, stats.truncated_share, note)
        return segments, histogram, cost_text(config, report, stats, cached_speed(config)), ""

    @staticmethod
    def _rendered(report, config) -> list[tuple[str, str | None]]:
        segments: list[tuple[str, str | None]] = []
        for i, example in enumerate(report.first_examples[:RENDERED_ROWS], start=1):
            segments.append((say("msg.rendered_row", row=i) + "\n", None))
            segments += render_segments(example, config.model, config.template, config.cutoff_len)
            segments.append(("\n", None))
        return segments

    @on_refusal("Cannot estimate")
    def on_estimate(self, *values):
        config, report = self._inspect(values)
        if report.format == "classification":
            return say("msg.no_estimate_for_classification")
        stats = token_stats(
            report.sample, config.model, config.template, config.cutoff_len, report.usable_rows, config.image_max_pixels
        )
        speed = self.ctx.act("time_estimate", lambda person: measure_speed(config, self.ctx.jobs.workspace))
        return cost_text(config, report, stats, speed)

    @on_refusal("Cannot save", LINE, KEEP)
    def on_register(self, name, *values):
        config, report = self._inspect(values)
        source = report_source(config, self.ctx)
        formatting = config.dataset_format if config.dataset_format != "auto" else source.formatting
        columns = {**source.columns, **DataOptions.from_config(config).mapping}
        saved = (self.ctx.jobs.workspace, name, source.path, formatting, columns, source.tags)
        self.ctx.act("dataset_register", lambda person: register_dataset(*saved))
        choices = labelled_choices(self.ctx.jobs.workspace, config.dataset_dir)
        return say("msg.saved_dataset", name=name), gr.update(choices=choices, value=name)


def image_gallery(examples) -> dict:
    """The rendered rows' images, captioned with their row and place; hidden for text-only data."""
    shown = [(image, say("msg.row_image", row=row, place=place, count=count))
             for image, row, place, count in thumbnails(examples)]  # fmt: skip
    return gr.update(value=shown or None, visible=bool(shown))


def report_source(config: TrainConfig, ctx: AppContext):
    from backend.data.registry import resolve_all

    sources = resolve_all(config.dataset, ctx.jobs.workspace, config.dataset_dir)
    if len(sources) > 1:
        raise TuneForgeError("save one dataset at a time, not a mix")
    if sources[0].path is None:
        raise TuneForgeError("only local files can be saved as named datasets")
    return sources[0]
