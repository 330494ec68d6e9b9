import pytest
import torch

CUDA = torch.cuda.is_available()

# Every op test runs on the CPU, and again on CUDA where a GPU exists.
DEVICES = [
    pytest.param("cpu", id="cpu"),
    pytest.param("cuda", id="cuda", marks=pytest.mark.skipif(not CUDA, reason="CUDA twin: no GPU on this machine")),
]


@pytest.fixture(params=DEVICES)
def device(request):
    return torch.device(request.param)
