"""Chat tab: stream replies from the base model or any finished run."""

from __future__ import annotations

import gradio as gr

from webui.lanes import DEVICE
from webui.refusals import stream_with_refusal
from webui.tab import Controls, Page, Tab


class ChatTab(Tab):
    title, id = "Chat", "chat"

    def build(self) -> Controls:
        with gr.Row():
            self.target = gr.Dropdown(
                label="Talk to",
                choices=self.ctx.chat.targets(),
                value="base",
                elem_id="chat-target",
                scale=3,
                info="'base' is the model before fine-tuning; pick a run to talk to its fine-tuned version.",
            )
            self.reload = gr.Button("↻ runs", size="sm", scale=0)
        self._settings()
        self.chatbot = gr.Chatbot(label="Conversation", elem_id="chatbot", height=380)
        with gr.Row():
            self.box = gr.Textbox(
                placeholder="Type a message and press Enter", show_label=False, elem_id="chat-input", scale=5
            )
            self.send = gr.Button("Send", variant="primary", elem_id="chat-send", scale=1)
            self.clear = gr.Button("Clear", elem_id="chat-clear", scale=1)
        return {}

    def _settings(self) -> None:
        with gr.Accordion("Generation settings", open=False):
            self.system = gr.Textbox(
                label="System prompt", placeholder="Leave empty for the model's default", elem_id="chat-system"
            )
            self.temperature = gr.Slider(
                0.0, 2.0, value=0.7, step=0.05, label="temperature", info="0 = always the likeliest token"
            )
            self.top_p = gr.Slider(
                0.05, 1.0, value=0.9, step=0.05, label="top_p", info="Sample only from this share of probability mass"
            )
            self.max_new = gr.Slider(
                8, 2048, value=256, step=8, label="max_new_tokens", info="Longest reply, in tokens"
            )

    def connect(self, page: Page) -> None:
        inputs = [self.box, self.chatbot, self.target, self.system, self.temperature, self.top_p, self.max_new]
        self.send.click(self.respond, inputs, [self.chatbot, self.box], **DEVICE)
        self.box.submit(self.respond, inputs, [self.chatbot, self.box], **DEVICE)
        self.clear.click(self.on_clear, None, [self.chatbot, self.box])
        self.reload.click(self.targets, None, self.target)
        self.ctx.blocks.load(self.targets, None, self.target)

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

    def targets(self):
        return gr.update(choices=self.ctx.chat.targets())
