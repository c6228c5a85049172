"""TRL's fused LM head on a CPU: only the labelled positions are scored, with the numbers TRL gives for them
when it scores every position (backend.training.labelled_positions)."""

import pytest
import torch
import trl.trainer.utils as trl_utils
from trl.kernels.chunked_logprob import _use_triton as trl_own_choice

from backend.training.labelled_positions import score_labelled_positions_only
from tests.helpers import run_cli_in_process, write_config


@pytest.fixture
def rows_scored(monkeypatch):
    """TRL's own choice of positions restored for the test, and the count of rows each call of the fused head
    projected onto the vocabulary."""
    monkeypatch.setattr(trl_utils, "_use_triton", trl_own_choice)
    projected = trl_utils._ChunkedLogProbFunction
    seen = []

    class Counting:
        @staticmethod
        def apply(hidden, *rest):
            seen.append(hidden.shape[0])
            return projected.apply(hidden, *rest)

    monkeypatch.setattr(trl_utils, "_ChunkedLogProbFunction", Counting)
    return seen


def fused_head_pass(model, ids, labels):
    """The fused head's log-probabilities, entropies and loss, and the gradient the loss leaves on the head."""
    model.zero_grad()
    out = model(input_ids=ids, labels=labels, fused_lm_head=True)
    out.loss.backward()
    return out.log_probs.detach(), out.entropy.detach(), out.loss.detach(), model.lm_head.weight.grad.clone()


def test_a_cpu_scores_the_labelled_positions_alone_and_gets_the_same_numbers(small_model, rows_scored):
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(small_model, dtype=torch.float32)
    trl_utils.add_fused_lm_head(model, outputs=("log_probs", "entropy"))
    ids = torch.randint(3, 300, (2, 12))
    labels = ids.clone()
    labels[:, :7] = -100  # the prompt
    labels[1, 10:] = -100  # the second row's padding
    labelled = int((labels[:, 1:] != -100).sum())  # each position predicts the next token's label

    every_position = fused_head_pass(model, ids, labels)
    assert rows_scored == [2 * 11]  # TRL's own choice on a CPU: every position, prompt and padding too
    score_labelled_positions_only()
    labelled_only = fused_head_pass(model, ids, labels)
    assert rows_scored[1:] == [labelled] and labelled < 2 * 11

    for before, after in zip(every_position, labelled_only, strict=True):
        torch.testing.assert_close(after, before)


def test_a_batch_with_no_label_gives_a_zero_loss_that_still_backpropagates(small_model, rows_scored):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(small_model, dtype=torch.float32)
    trl_utils.add_fused_lm_head(model, outputs=("log_probs", "entropy"))
    score_labelled_positions_only()
    ids = torch.randint(3, 300, (2, 8))
    log_probs, _, loss, grad = fused_head_pass(model, ids, torch.full_like(ids, -100))
    assert rows_scored == [0] and float(loss) == 0.0
    assert not log_probs.any() and not grad.any()


def test_a_dpo_run_on_a_cpu_scores_only_the_answers(tmp_path, small_model, rows_scored):
    """A real (tiny) DPO run through the job's recipe, begun with TRL's own choice: every call of the head
    during training and evaluation went the labelled-positions-only way."""
    decisions = []
    projected = trl_utils._ChunkedLogProbFunction

    class Deciding:
        @staticmethod
        def apply(hidden, *rest):
            decisions.append(trl_utils._use_triton(hidden.device))  # what _fused_forward just asked
            return projected.apply(hidden, *rest)

    trl_utils._ChunkedLogProbFunction = Deciding  # restored with the rest by the fixture's monkeypatch
    config = write_config(
        tmp_path / "run.yaml", model=small_model, task="dpo", dataset="demo_preference", max_samples=8, val_size=2,
        max_steps=1, per_device_train_batch_size=2, cutoff_len=128, output_dir=str(tmp_path / "run"), save_steps=0,
        report_to="none",
    )  # fmt: skip
    result = run_cli_in_process(config)
    assert result.returncode == 0, result.stderr[-3000:]
    assert decisions and all(decisions), decisions
