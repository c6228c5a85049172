"""An idle app and page cost next to nothing: the queue's pace, and the page's frames (webui/idle_cost.py).
That the running app's page asks for no tracker frames is test_browser.py's."""

import asyncio

import gradio as gr

from webui.idle_cost import FRAME_SCRIPT, PROGRESS_POLL_S, QUEUE_POLL_S, FrameScript, quiet_queue, with_frame_script

PAGE = b'<!doctype html>\n<html lang="en">\n\t<head>\n\t\t<meta charset="utf-8" />\n'
PAGE += b'<script type="module" src="x.js"></script>'


def test_the_frame_script_goes_first_in_the_head_before_any_other_script():
    page = with_frame_script(PAGE)
    assert page.startswith(b'<!doctype html>\n<html lang="en">\n\t<head>' + FRAME_SCRIPT.encode())
    assert page.index(FRAME_SCRIPT.encode()) < page.index(b'<script type="module"')
    assert with_frame_script(b"<p>no head here</p>") == b"<p>no head here</p>"


def serve_through_middleware(
    content_type: bytes, chunks: list[bytes], method: str = "GET", path: str = "/"
) -> tuple[dict, bytes]:
    """One request through FrameScript in front of an app that answers with these chunks: (start, body)."""

    async def app(scope, receive, send):
        length = str(sum(map(len, chunks))).encode()
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", content_type), (b"content-length", length)]})  # fmt: skip
        for i, chunk in enumerate(chunks):
            await send({"type": "http.response.body", "body": chunk, "more_body": i < len(chunks) - 1})

    sent = []

    async def send(message):
        sent.append(message)

    async def receive():
        return {"type": "http.request"}

    asyncio.run(FrameScript(app)({"type": "http", "method": method, "path": path}, receive, send))
    return sent[0], b"".join(m.get("body", b"") for m in sent[1:])


def test_the_middleware_rewrites_a_page_sent_in_pieces_and_says_its_new_length():
    start, body = serve_through_middleware(b"text/html; charset=utf-8", [PAGE[:20], PAGE[20:]])
    assert body == with_frame_script(PAGE)
    assert dict(start["headers"])[b"content-length"] == str(len(body)).encode()
    assert [k for k, _ in start["headers"]].count(b"content-length") == 1


def test_the_middleware_leaves_everything_but_gradios_own_pages_as_it_came():
    # A user's .html handed out as a file stays byte for byte the file.
    cases = [
        (b"application/json", "GET", "/"),
        (b"text/html", "POST", "/"),
        (b"text/html", "GET", "/gradio_api/file=/w/a.html"),
    ]
    for content_type, method, path in cases:
        start, body = serve_through_middleware(content_type, [PAGE], method, path)
        assert body == PAGE and dict(start["headers"])[b"content-length"] == str(len(PAGE)).encode()


def test_the_queue_looks_for_work_at_the_quiet_pace_and_a_gradio_without_the_knobs_is_left_alone(capsys):
    with gr.Blocks() as blocks:
        gr.Textbox()
    quiet_queue(blocks.queue())
    assert (blocks._queue.sleep_when_free, blocks._queue.progress_update_sleep_when_free) == (
        QUEUE_POLL_S,
        PROGRESS_POLL_S,
    )
    quiet_queue(object())
    assert "gradio's queue has no idle pace to set" in capsys.readouterr().err
