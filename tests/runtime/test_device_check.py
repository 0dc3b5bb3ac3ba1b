"""The CPU-checkable parts of the GPU path: a machine whose GPUs torch cannot use is an error,
not a silent fall-back to the CPU; and the data-parallel wrap does not drop the compiled
forward of a run tagged compiled."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from kdspec.errors import KdspecError
from kdspec.runtime.device_check import check_gpu_usable, nvidia_device_files
from kdspec.runtime.lockstep_group import step_forward


def _dev(tmp_path: Path, *names: str) -> Path:
    for name in names:
        (tmp_path / name).touch()
    return tmp_path


def test_gpus_that_torch_cannot_use_stop_the_run_with_the_reason(tmp_path: Path) -> None:
    dev = _dev(tmp_path, "nvidia0", "nvidia1", "nvidiactl", "nvidia-uvm")
    assert nvidia_device_files(dev) == ["nvidia0", "nvidia1"]
    with pytest.raises(KdspecError) as raised:
        check_gpu_usable(allow_cpu=False, dev=dev, cuda_available=lambda: False, environ={})
    text = str(raised.value)
    assert f"{dev}/nvidia0, {dev}/nvidia1" in text and torch.__version__ in text
    assert "--cpu" in text and "kdspec would train on the CPU instead" in text
    if torch.version.cuda is None:  # this machine's wheel says why in its own words
        assert "it is a CPU-only build" in text


@pytest.mark.parametrize(("names", "allow_cpu", "available", "environ"), [
    ((), False, False, {}),  # no GPU at all: the CPU is the machine
    (("nvidia0",), True, False, {}),  # --cpu
    (("nvidia0",), False, True, {}),  # torch can use it
    (("nvidia0",), False, False, {"CUDA_VISIBLE_DEVICES": ""}),  # GPUs hidden on purpose
    (("nvidia0",), False, False, {"CUDA_VISIBLE_DEVICES": "-1"}),
    (("nvidiactl",), False, False, {}),  # the control file alone is not a GPU
])
def test_the_cpu_is_fine_where_asked_for_or_where_there_is_no_gpu(
        tmp_path: Path, names: tuple[str, ...], allow_cpu: bool, available: bool,
        environ: dict[str, str]) -> None:
    check_gpu_usable(allow_cpu=allow_cpu, dev=_dev(tmp_path, *names),
                     cuda_available=lambda: available, environ=environ)


def test_this_machine_passes_the_check() -> None:
    """The real /dev and torch of the machine running the suite: either torch can use its
    GPUs or it has none (a CI machine with unusable GPUs should fail here, loudly)."""
    check_gpu_usable(allow_cpu=False)


class _Wrapper(torch.nn.Module):
    """Stands in for DistributedDataParallel: a module around the model."""

    def __init__(self, inner: torch.nn.Module) -> None:
        super().__init__()
        self.module = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.module(x)


def test_a_compiled_data_parallel_run_compiles_the_wrapped_model() -> None:
    model = torch.nn.Linear(3, 2)
    forward = step_forward(model, wrap=_Wrapper, compile_it=True)
    assert isinstance(forward, torch._dynamo.eval_frame.OptimizedModule)
    assert isinstance(forward._orig_mod, _Wrapper) and forward._orig_mod.module is model
    assert step_forward(model, wrap=None, compile_it=False) is model
    wrapped = step_forward(model, wrap=_Wrapper, compile_it=False)
    assert isinstance(wrapped, _Wrapper)
    plain = step_forward(model, wrap=None, compile_it=True)
    assert plain._orig_mod is model  # type: ignore[union-attr]
