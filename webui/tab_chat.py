"""Chat tab: stream replies from the base model or any finished run."""

from __future__ import annotations

import gradio as gr

from webui.context import AppContext
from webui.lanes import DEVICE
from webui.refusals import stream_with_refusal


def build(ctx: AppContext) -> None:
    with gr.Row():
        target = gr.Dropdown(
            label="Talk to",
            choices=ctx.chat.targets(),
            value="base",
            elem_id="chat-target",
            scale=3,
            info="'base' is the model before fine-tuning; pick a run to talk to its fine-tuned version.",
        )
        reload = gr.Button("↻ runs", size="sm", scale=0)
    with gr.Accordion("Generation settings", open=False):
        system = gr.Textbox(
            label="System prompt", placeholder="Leave empty for the model's default", elem_id="chat-system"
        )
        temperature = gr.Slider(
            0.0, 2.0, value=0.7, step=0.05, label="temperature", info="0 = always the likeliest token"
        )
        top_p = gr.Slider(
            0.05, 1.0, value=0.9, step=0.05, label="top_p", info="Sample only from this share of probability mass"
        )
        max_new = gr.Slider(8, 2048, value=256, step=8, label="max_new_tokens", info="Longest reply, in tokens")
    chatbot = gr.Chatbot(label="Conversation", elem_id="chatbot", height=380)
    with gr.Row():
        box = gr.Textbox(placeholder="Type a message and press Enter", show_label=False, elem_id="chat-input", scale=5)
        send = gr.Button("Send", variant="primary", elem_id="chat-send", scale=1)
        clear = gr.Button("Clear", elem_id="chat-clear", scale=1)

    def respond(message, history, target, system, temperature, top_p, max_new):
        history = list(history or [])
        if not str(message).strip():
            yield history, message
            return
        history += [{"role": "user", "content": message}, {"role": "assistant", "content": ""}]
        stream = ctx.chat.stream(target, message, history[:-2], system, temperature, top_p, max_new)
        for text in stream_with_refusal(stream, failed="chat failed"):
            history[-1]["content"] = text
            yield history, ""

    inputs = [box, chatbot, target, system, temperature, top_p, max_new]
    send.click(respond, inputs, [chatbot, box], **DEVICE)
    box.submit(respond, inputs, [chatbot, box], **DEVICE)
    clear.click(lambda: ([], ""), None, [chatbot, box])
    reload.click(lambda: gr.update(choices=ctx.chat.targets()), None, target)
    ctx.blocks.load(lambda: gr.update(choices=ctx.chat.targets()), None, target)
