"""Python's cycle collector in TuneForge's long-lived processes: held off while a process imports its
libraries, then told that what the imports built is there to stay.

Importing torch, transformers, peft, trl and datasets (a job) or gradio (the app) builds 580,000–870,000
objects that live as long as the process. CPython's collector walks all of them at every full collection:
8 times during those imports (0.9 s of a 2-core Zen 4's 5 s), once more at each `Trainer.train()` (accelerate's
`free_memory` calls `gc.collect()`, 0.3 s), and every so often while the app serves. `gc.freeze()` takes them
out of its walk; reference counting still frees any of them that dies, and only a cycle among them would be
kept. The imports leave about 11,000 objects of cyclic garbage, kept rather than collected (a job's 525 MB
did not shrink when a collection freed them): finding them would cost a full collection, 0.3 s.

The job server holds, imports and freezes before it forks, as Python's documentation advises a fork server:
a forked job's collections then never write to the pages it shares with the server.
"""

from __future__ import annotations

import gc

_held = False


def hold() -> None:
    """No collections while this process imports what it will keep. Called where a process starts, never by
    code that others call in their own process (a test's in-process run), whose collections are theirs."""
    global _held
    gc.disable()
    _held = True


def settle() -> None:
    """After hold(): what is alive now stays for the process's life, out of every later collection, which
    resume here. Without hold() (the caller is not a process of ours), nothing."""
    global _held
    if _held:
        gc.freeze()
        gc.enable()
        _held = False
