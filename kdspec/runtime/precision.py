"""A run's numeric precision and speed options in one place: what ``auto`` resolves to, the
Accelerator's mixed-precision mode, the autocast context of each run, the memory layout of its
models and whether it needs a gradient scaler.

A spec names ``precision = auto | fp32 | bf16 | fp16`` and ``compile = auto | true | false``
(the run id includes what was written). fp32 is exact: no autocast, no scaler. bf16 and fp16
autocast the forward passes (training steps, the teacher's forward or its logit table,
evaluation); fp16 on CUDA also scales the loss (fp16 gradients underflow; bf16 has float32's
exponent and needs none).

``auto`` is decided per model by :func:`resolve_speed`, from what ``bench/bench_precision.py``
measured (docs/speed.md has the table): bf16 where the hardware computes it natively and the
model is big enough for the cheaper maths to outweigh the casts (ResNet-20 on 28x28 trains 2.0x
faster in bf16 on an AVX-512 BF16 CPU; LeNet-5, 0.4 M multiply-adds per image, 0.84x).
``torch.compile`` is chosen only on a device type where a test has shown compiled training to
reach eager training's accuracy (:data:`COMPILE_VERIFIED_DEVICES`, none yet), and there only for
runs long enough to pay back the first compile (~30-45 s per model on a 2-core CPU for a 1.15x
step). ``compile = true`` compiles anywhere, with a warning where it is unverified. Each run's
choice goes into its ``kdspec.precision`` and
``kdspec.compile`` tags.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from kdspec.plan import Precision, PrecisionSetting, RuntimeSpec
from kdspec.runtime.interfaces import AutocastFactory

if TYPE_CHECKING:
    from accelerate import Accelerator

#: Multiply-adds per image from which bf16 autocast pays on a CPU with native bf16 (measured:
#: LeNet-5's 0.4 M lose 16%, ResNet-20's 31 M (28x28x1) gain 2x; between them nothing was measured).
BF16_MIN_MACS = 5_000_000
#: Device types on which an accuracy-equivalence test has shown compiled training to reach the
#: accuracy of eager training. ``compile = auto`` compiles only there. Empty: on an H200 (torch
#: 2.11, bf16, channels-last) compiled ResNet-56 teachers reached 49 % and 74 % test accuracy
#: where eager ones reached 84-95 % (measured on an H200 GPU with torch 2.11), and no test covers a
#: CPU's compiled training run either. A device type is added here once ``tests/gpu`` (or its
#: CPU counterpart) shows compiled and eager training agree on it.
COMPILE_VERIFIED_DEVICES: frozenset[str] = frozenset()
MSG_COMPILE_UNVERIFIED = (
    "compiled training is unverified on {device}: compiled ResNet-56 teachers trained to "
    "49-74 % where eager ones reached 84-95 % (measured on an H200 GPU with torch 2.11)")
#: Once verified, ``compile = auto`` compiles a model of at least this many multiply-adds ...
COMPILE_MIN_MACS = 5_000_000
#: ... in a run that trains at least this many images (epochs x training set): at ~1,000 img/s
#: and a 15% faster step that saves ~260 s against a ~45 s first compile; shorter runs lose.
COMPILE_MIN_IMAGES = 2_000_000

#: Accelerate's ``mixed_precision`` for each of the spec's precisions.
MIXED_PRECISION: dict[str, str] = {"fp32": "no", "bf16": "bf16", "fp16": "fp16"}


@dataclass(frozen=True)
class SpeedChoice:
    """What one model trains with: its precision, whether it is compiled, and why."""

    precision: Precision
    compile: bool
    why: str  # one line, e.g. "auto: bf16 (avx512_bf16, 30.8 M MACs/image), not compiled (...)"

    def tags(self) -> dict[str, str]:
        from kdspec.tracking import schema

        return {schema.TAG_PRECISION: self.precision,
                schema.TAG_COMPILE: "true" if self.compile else "false",
                schema.TAG_SPEED_CHOICE: self.why}


def accelerator_mode(precisions: Iterable[PrecisionSetting]) -> str:
    """The Accelerator's mode for a plan: its studies' precision when they all name the same
    one, else "no" (each run then gets its own ``torch.autocast``, see
    :func:`autocast_factory`; ``auto`` is decided per model, so it always gives "no")."""
    wanted = set(precisions)
    one = wanted.pop() if len(wanted) == 1 else "auto"
    return MIXED_PRECISION.get(one, "no")


def model_macs(model: torch.nn.Module, *, in_channels: int, image_size: int,
               sequence_length: int | None = None) -> int:
    """Multiply-adds of one input's forward pass through ``model``'s convolutions and linear
    layers (what the precision rule weighs; norms, activations and attention's own products
    are not counted).

    One eval-mode forward of a zero image (of ``sequence_length`` token ids, all 1, for a text
    model) on the model's device, no grad: running statistics, the RNG and the train/eval mode
    are left as they were."""
    total = 0

    def count(module: torch.nn.Module, inputs: tuple[torch.Tensor, ...],
              output: torch.Tensor) -> None:
        nonlocal total
        if isinstance(module, torch.nn.Conv2d):
            kernel = module.kernel_size[0] * module.kernel_size[1]
            total += output[0].numel() * (module.in_channels // module.groups) * kernel
        elif isinstance(module, torch.nn.Linear):
            total += output[0].numel() * module.in_features

    hooks = [m.register_forward_hook(count) for m in model.modules()
             if isinstance(m, torch.nn.Conv2d | torch.nn.Linear)]
    parameter = next(model.parameters(), None)
    device = parameter.device if parameter is not None else torch.device("cpu")
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            if sequence_length is not None:
                model(torch.ones(1, sequence_length, dtype=torch.int64, device=device))
            else:
                model(torch.zeros(1, in_channels, image_size, image_size, device=device))
    finally:
        model.train(was_training)
        for hook in hooks:
            hook.remove()
    return total


def native_bf16(device: torch.device, cpu_support: str | None = None) -> str | None:
    """Why ``device`` computes bf16 natively ("cuda", "amx", "avx512_bf16"), or None."""
    if device.type == "cuda":
        return "cuda" if torch.cuda.is_bf16_supported() else None
    if device.type == "cpu":
        support = cpu_support if cpu_support is not None else cpu_bf16_support()
        return support if support != "none" else None
    return None


def resolve_speed(runtime: RuntimeSpec, *, device: torch.device, macs: int,
                  training_images: int, cpu_support: str | None = None) -> SpeedChoice:
    """The precision and compile choice of one model (``auto`` decided, named values kept).

    ``macs``: :func:`model_macs`; ``training_images``: epochs x training images of the run (0
    for a teacher that only runs forwards); ``cpu_support`` overrides :func:`cpu_bf16_support`
    (tests)."""
    reasons: list[str] = []
    precision: Precision
    if runtime.precision == "auto":
        native = native_bf16(device, cpu_support)
        if native is None:
            precision = "fp32"
            reasons.append(f"fp32 (no native bf16 on this {device.type})")
        elif device.type == "cpu" and macs < BF16_MIN_MACS:
            precision = "fp32"
            reasons.append(f"fp32 ({macs / 1e6:.1f} M MACs/image: too small to gain from bf16 "
                           "on a CPU)")
        else:
            precision = "bf16"
            reasons.append(f"bf16 ({native}, {macs / 1e6:.1f} M MACs/image)")
    else:
        precision = runtime.precision
        reasons.append(f"{precision} (named in the spec)")
    if runtime.compile == "auto":
        compiled = False
        if device.type not in COMPILE_VERIFIED_DEVICES:
            reasons.append(f"not compiled (compiled training is not verified on {device.type}: "
                           "write compile = true to force it)")
        elif macs >= COMPILE_MIN_MACS and training_images >= COMPILE_MIN_IMAGES:
            compiled = True
            reasons.append("compiled")
        else:
            reasons.append(f"not compiled ({training_images:,} training images, "
                           f"{macs / 1e6:.1f} M MACs/image: compiling would not pay back)")
    else:
        compiled = bool(runtime.compile)
        reasons.append(("compiled (named in the spec" + (
            "" if device.type in COMPILE_VERIFIED_DEVICES else
            f"; {MSG_COMPILE_UNVERIFIED.format(device=device.type)}") + ")")
            if compiled else "not compiled (named)")
    auto = runtime.precision == "auto" or runtime.compile == "auto"
    return SpeedChoice(precision, compiled, ("auto: " if auto else "") + ", ".join(reasons))


def keep_resumed_precision(choice: SpeedChoice, runtime: RuntimeSpec,
                           resumed_in: Iterable[str]) -> SpeedChoice:
    """A resumed ``auto`` run goes on in the precision its first epochs trained in (its
    ``kdspec.precision`` tag), even where this machine would choose otherwise: one run, one
    precision. ``resumed_in``: the tags of the group's resumed runs ("" where absent)."""
    earlier = {p for p in resumed_in if p}
    if runtime.precision != "auto" or len(earlier) != 1:
        return choice
    (precision,) = earlier
    if precision == choice.precision or precision not in ("fp32", "bf16"):
        return choice
    return SpeedChoice(precision, choice.compile,  # type: ignore[arg-type]
                       f"{choice.why}; resumed in {precision}, the precision of its first "
                       f"epochs (here auto would pick {choice.precision})")


def autocast_for(device: torch.device, precision: Precision) -> AbstractContextManager[object]:
    """The autocast context of a run's precision (a no-op for fp32)."""
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


def autocast_factory(accelerator: Accelerator, precision: Precision) -> AutocastFactory:
    """The autocast context for a run: the accelerator's when its precision matches."""
    if accelerator.mixed_precision == MIXED_PRECISION[precision]:
        return accelerator.autocast
    return lambda: autocast_for(accelerator.device, precision)


def needs_grad_scaler(precision: Precision, device: torch.device) -> bool:
    """Whether the training step scales its loss: fp16 on CUDA only."""
    return precision == "fp16" and device.type == "cuda"


def configure_cuda_numerics(device: torch.device) -> None:
    """On CUDA, make fp32 mean fp32: TF32 off for matmuls and for cuDNN convolutions (torch
    leaves cuDNN's TF32 on by default, which rounds fp32 convolutions to 10 mantissa bits on
    Ampere and later), and cuDNN's autotuner off so a run picks the same kernels each time.
    bf16/fp16 runs are unaffected (their matmuls are not fp32). A no-op elsewhere. The legacy
    ``allow_tf32`` flags, not ``fp32_precision``: with the newer API set, torch 2.14 refuses to
    read the legacy flags that other libraries still read."""
    if device.type != "cuda":
        return
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cudnn.benchmark = False


def to_training_layout(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """``model`` on ``device`` in channels-last layout (its 4-d weights NHWC): convolutions are
    faster so on CUDA and, measured with bench/bench_precision.py on a 2-core AVX-512 CPU, there
    too (fp32 training 1.30x for ResNet-20 and 1.18x for LeNet-5). A layout only: the same maths,
    rounded in another order."""
    return model.to(device).to(memory_format=torch.channels_last)


def cpu_bf16_support() -> str:
    """What this CPU does for bf16 matrix maths: ``"amx"`` (AMX tiles), ``"avx512_bf16"``
    (native bf16 dot products), or ``"none"`` (bf16 emulated through fp32: slower than fp32)."""
    cpu = torch.cpu
    if getattr(cpu, "_is_amx_tile_supported", lambda: False)():
        return "amx"
    if getattr(cpu, "_is_avx512_bf16_supported", lambda: False)():
        return "avx512_bf16"
    return "none"
