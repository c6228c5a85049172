"""The one-command GPU check (bench/gpu_check.py) runs anywhere: on a CPU-only machine it says why it skipped."""

import json
import subprocess
import sys

import pytest

from tests.helpers import ROOT


def test_the_gpu_check_skips_with_the_reason_where_there_is_no_gpu():
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA GPU is here: run bench/gpu_check.py itself (a few minutes)")
    result = subprocess.run([sys.executable, "bench/gpu_check.py"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads(result.stdout) == {"skipped": "no CUDA GPU here (torch.cuda.is_available() is False)"}
