"""A streamed reply reaches the page at most ten times a second: the first text at once, the last always."""

import webui.pacing as pacing
from webui.pacing import paced


def test_a_fast_stream_is_thinned_to_its_pace_and_keeps_its_first_and_last_text(monkeypatch):
    clock = iter([0.00, 0.03, 0.06, 0.09, 0.12, 0.15, 0.18, 0.21, 0.24])  # a token every 30 ms
    monkeypatch.setattr(pacing.time, "monotonic", lambda: next(clock))
    texts = [f"t{i}" for i in range(9)]
    assert list(paced(texts, every_s=0.1)) == ["t0", "t4", "t8"]  # t4 and t8 are each 0.12 s after the last sent


def test_a_slow_stream_passes_whole_and_a_stopped_one_ends_with_its_newest_text(monkeypatch):
    clock = iter([0.0, 0.5, 1.0])
    monkeypatch.setattr(pacing.time, "monotonic", lambda: next(clock))
    assert list(paced(["a", "ab", "abc"], every_s=0.1)) == ["a", "ab", "abc"]
    clock = iter([0.0, 0.01, 0.02])
    assert list(paced(["a", "ab", "⚠️ refused"], every_s=0.1)) == ["a", "⚠️ refused"]
    assert list(paced([])) == []
