"""Chat tab: stream replies from the base model, any finished run, or a GGUF file on llama.cpp; and score the
last reply with a reward model."""

from __future__ import annotations

from pathlib import Path

import gradio as gr

from backend.access.limits import CHAT, CHAT_DEFAULTS
from backend.access.uploads import safe_name, store_upload
from backend.data.images import IMAGE_SUFFIXES
from backend.errors import TuneForgeError
from backend.serving.chat import BASE
from webui.i18n import say, t
from webui.lanes import DEVICE, STATUS
from webui.pacing import paced
from webui.refusals import on_refusal, stream_with_refusal
from webui.tab import Controls, Page, Tab


class ChatTab(Tab):
    id = "chat"

    def build(self) -> Controls:
        self.target = gr.Dropdown(
            label=t("ui.chat.target"),
            choices=self.ctx.chat.targets(),
            value="base",
            elem_id="chat-target",
            info=t("ui.chat.target_info"),
            allow_custom_value=True,  # gguf:<any .gguf file>, run on llama.cpp
        )
        self._settings()
        self.chatbot = gr.Chatbot(label=t("ui.chat.conversation"), elem_id="chatbot", height=380)
        self.image = gr.Image(
            label=t("ui.chat.image"), type="filepath", sources=["upload"], elem_id="chat-image", height=160
        )
        with gr.Row():
            self.box = gr.Textbox(placeholder=t("ui.chat.placeholder"), show_label=False, elem_id="chat-input", scale=5)
            self.send = gr.Button(t("ui.chat.send"), variant="primary", elem_id="chat-send", scale=1)
            self.clear = gr.Button(t("ui.chat.clear"), elem_id="chat-clear", scale=1)
        self._scoring()
        return {}

    def _scoring(self) -> None:
        with gr.Accordion(t("ui.chat.score"), open=False, elem_id="chat-scoring"):
            with gr.Row():
                self.scorer = gr.Dropdown(
                    label=t("ui.chat.scorer"),
                    choices=self.ctx.chat.reward_models(),
                    elem_id="chat-scorer",
                    info=t("ui.chat.scorer_info"),
                    scale=3,
                )
                self.score_button = gr.Button(t("ui.chat.score_button"), elem_id="chat-score-button", scale=1)
            self.score = gr.Markdown(elem_id="chat-score")

    def _settings(self) -> None:
        with gr.Accordion(t("ui.chat.settings"), open=False):
            self.system = gr.Textbox(
                label=t("ui.chat.system"), placeholder=t("ui.chat.system_placeholder"), elem_id="chat-system"
            )
            self.temperature = gr.Slider(
                *CHAT["temperature"],
                value=CHAT_DEFAULTS["temperature"],
                step=0.05,
                label=t("ui.temperature"),
                info=t("ui.chat.temperature_info"),
                elem_id="chat-temperature",
            )
            self.top_p = gr.Slider(
                *CHAT["top_p"],
                value=CHAT_DEFAULTS["top_p"],
                step=0.05,
                label=t("ui.chat.top_p"),
                info=t("ui.chat.top_p_info"),
                elem_id="chat-top-p",
            )
            self.max_new = gr.Slider(
                8,
                CHAT["max_new_tokens"][1],
                value=CHAT_DEFAULTS["max_new_tokens"],
                step=8,
                label=t("ui.max_new_tokens"),
                elem_id="chat-max-new-tokens",
                info=t("ui.chat.max_new_info"),
            )

    def connect(self, page: Page) -> None:
        inputs = [self.box, self.chatbot, self.target, self.system, self.temperature, self.top_p, self.max_new]
        inputs.append(self.image)
        self.send.click(self.respond, inputs, [self.chatbot, self.box], **DEVICE)
        self.box.submit(self.respond, inputs, [self.chatbot, self.box], **DEVICE)
        self.clear.click(self.on_clear, None, [self.chatbot, self.box])
        self.score_button.click(self.on_score, [self.scorer, self.chatbot], self.score, **DEVICE)
        self.item.select(self.scorers, self.scorer, self.scorer, **STATUS)
        self.ctx.blocks.load(self.targets, [self.target, self.chatbot], self.target)
        self.item.select(self.targets, [self.target, self.chatbot], self.target, **STATUS)
        page.finished.change(self.targets, [self.target, self.chatbot], self.target, **STATUS)

    def respond(self, message, history, target, system, temperature, top_p, max_new, image=None):
        history = list(history or [])
        if not str(message).strip():
            yield history, message
            return
        images = [str(self._keep_image(image))] if image else None
        history += [{"role": "user", "content": message}, {"role": "assistant", "content": ""}]
        stream = self.ctx.chat.stream(target, message, history[:-2], system, temperature, top_p, max_new, images)
        for text in paced(stream_with_refusal(stream, failed="chat failed")):
            history[-1]["content"] = text
            yield history, ""

    def _keep_image(self, image) -> Path:
        """The uploaded image, kept in the uploads (the browser's temp copy lies outside the allowed folders)."""
        work = lambda person: store_upload(image, self.ctx.gate.uploads_dir(person), IMAGE_SUFFIXES)  # noqa: E731
        return self.ctx.act("dataset_upload", work, details={"file": safe_name(Path(str(image)).name)})

    def on_clear(self):
        return [], ""

    def targets(self, target=None, history=None):
        """The chat partners. Before a conversation has begun with the base model, the newest completed run
        is picked: the model just trained is the one a person wants to talk to."""
        choices = self.ctx.chat.targets()
        fresh = not history and target in (None, BASE) and len(choices) > 1
        return gr.update(choices=choices, value=choices[1] if fresh else target)

    @on_refusal("Cannot score")
    def on_score(self, scorer, history):
        """The reward model's score of the conversation's last reply, after the turns before it."""
        if not scorer:
            raise TuneForgeError("pick a reward model (a completed task rm run) first")
        turns = [m for m in history or [] if isinstance(m, dict)]
        last = max((i for i, m in enumerate(turns) if m.get("role") == "assistant"), default=None)
        if last is None or last == 0:
            raise TuneForgeError("there is no reply to score yet")
        value = self.ctx.chat.score_reply(scorer, text_of(turns[last - 1]), text_of(turns[last]), turns[: last - 1])
        return say("msg.reward_score", run=scorer, score=f"{value:.4f}")

    def scorers(self, scorer=None):
        choices = self.ctx.chat.reward_models()
        return gr.update(choices=choices, value=scorer if scorer in choices else None)


def text_of(message: dict) -> str:
    """A chat message's text, whether Gradio keeps it as a string or as content blocks."""
    content = message.get("content")
    if isinstance(content, list):
        return "".join(part.get("text", "") for part in content if isinstance(part, dict))
    return str(content or "")
