"""An adapter trained elsewhere opens like a run of our own: chat and export work on it."""

import shutil

import pytest
import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM

from backend.errors import TuneForgeError
from backend.runs.job_manager import JobManager
from backend.serving.adapters import import_adapter
from backend.serving.chat import ChatEngine
from backend.serving.export import Exporter
from tests.helpers import wait_for


def test_a_foreign_adapter_folder_chats_and_exports_like_our_runs(workspace, tmp_path, secret_dataset, small_model):
    jobs = JobManager(workspace)
    try:
        options = {"model": small_model, "dataset": str(secret_dataset), "max_steps": 12, "learning_rate": 1e-2}
        trained = jobs.start({**options, "val_size": 0})
        wait_for(lambda: jobs.status(trained)["status"] == "completed", timeout=300)
        # As LLaMA-Factory leaves it: saves/<model>/lora/sft with only the adapter, no tokenizer.
        saves = tmp_path / "saves" / "SmolLM2-135M-Instruct" / "lora" / "sft"
        saves.mkdir(parents=True)
        for name in ("adapter_config.json", "adapter_model.safetensors"):
            shutil.copy2(jobs.run_dir(trained) / name, saves / name)

        run_id = import_adapter(jobs, saves)
        assert run_id == "imported-sft" and jobs.status(run_id)["status"] == "completed"
        assert jobs.config(run_id)["model"] == small_model
        assert sorted(p.name for p in saves.iterdir()) == ["adapter_config.json", "adapter_model.safetensors"]

        chat = ChatEngine(jobs)
        reply = chat.reply(run_id, "What is the secret word?", temperature=0, max_new_tokens=12)
        assert reply == chat.reply(trained, "What is the secret word?", temperature=0, max_new_tokens=12)
        merged = AutoModelForCausalLM.from_pretrained(Exporter(jobs).export(run_id, "merged"))
        ids = torch.tensor([[1, 2, 3, 4]])
        reference = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(small_model), saves)
        torch.testing.assert_close(merged(ids).logits, reference(ids).logits, atol=1e-2, rtol=0)  # fp32 merge rounding

        with pytest.raises(TuneForgeError, match="is taken"):
            import_adapter(jobs, saves)
        with pytest.raises(TuneForgeError, match="not a PEFT adapter folder"):
            import_adapter(jobs, tmp_path)
    finally:
        jobs.shutdown()
