"""Chat tab: stream replies from the base model or any finished run."""

from __future__ import annotations

import gradio as gr

from backend.access.limits import CHAT
from backend.serving.chat import BASE
from webui.i18n import t
from webui.lanes import DEVICE, STATUS
from webui.refusals import stream_with_refusal
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
        )
        self._settings()
        self.chatbot = gr.Chatbot(label=t("ui.chat.conversation"), elem_id="chatbot", height=380)
        with gr.Row():
            self.box = gr.Textbox(placeholder=t("ui.chat.placeholder"), show_label=False, elem_id="chat-input", scale=5)
            self.send = gr.Button(t("ui.chat.send"), variant="primary", elem_id="chat-send", scale=1)
            self.clear = gr.Button(t("ui.chat.clear"), elem_id="chat-clear", scale=1)
        return {}

    def _settings(self) -> None:
        with gr.Accordion(t("ui.chat.settings"), open=False):
            self.system = gr.Textbox(
                label=t("ui.chat.system"), placeholder=t("ui.chat.system_placeholder"), elem_id="chat-system"
            )
            self.temperature = gr.Slider(
                *CHAT["temperature"],
                value=0.7,
                step=0.05,
                label=t("ui.temperature"),
                info=t("ui.chat.temperature_info"),
            )
            self.top_p = gr.Slider(
                *CHAT["top_p"], value=0.9, step=0.05, label=t("ui.chat.top_p"), info=t("ui.chat.top_p_info")
            )
            self.max_new = gr.Slider(
                8,
                CHAT["max_new_tokens"][1],
                value=256,
                step=8,
                label=t("ui.max_new_tokens"),
                info=t("ui.chat.max_new_info"),
            )

    def connect(self, page: Page) -> None:
        inputs = [self.box, self.chatbot, self.target, self.system, self.temperature, self.top_p, self.max_new]
        self.send.click(self.respond, inputs, [self.chatbot, self.box], **DEVICE)
        self.box.submit(self.respond, inputs, [self.chatbot, self.box], **DEVICE)
        self.clear.click(self.on_clear, None, [self.chatbot, self.box])
        self.ctx.blocks.load(self.targets, [self.target, self.chatbot], self.target)
        self.item.select(self.targets, [self.target, self.chatbot], self.target, **STATUS)
        page.finished.change(self.targets, [self.target, self.chatbot], self.target, **STATUS)

    def respond(self, message, history, target, system, temperature, top_p, max_new):
        history = list(history or [])
        if not str(message).strip():
            yield history, message
            return
        history += [{"role": "user", "content": message}, {"role": "assistant", "content": ""}]
        stream = self.ctx.chat.stream(target, message, history[:-2], system, temperature, top_p, max_new)
        for text in stream_with_refusal(stream, failed="chat failed"):
            history[-1]["content"] = text
            yield history, ""

    def on_clear(self):
        return [], ""

    def targets(self, target=None, history=None):
        """The chat partners. Before a conversation has begun with the base model, the newest completed run
        is picked: the model just trained is the one a person wants to talk to."""
        choices = self.ctx.chat.targets()
        fresh = not history and target in (None, BASE) and len(choices) > 1
        return gr.update(choices=choices, value=choices[1] if fresh else target)
