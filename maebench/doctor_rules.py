"""`maebench doctor`'s rules, unit-tested without a GPU: the tolerances and why, the datasheet
bf16 peaks, MFU, which attention backend a kernel name belongs to, the report's rows and table,
and the environment rows (torch imported inside `environment` only). maebench/doctor.py runs
the checks."""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

PASS, FAIL, INFO, SKIP = "PASS", "FAIL", "INFO", "SKIP"
NO_GPU = "no CUDA GPU found: CPU path only; the GPU checks did not run"
MASK_RATIO = 0.75

# fp32 against bf16 autocast, relative difference of the loss. bf16 keeps 8 significant bits
# (relative rounding 2^-9 ~ 2e-3, about 3 decimal digits); the MAE loss is a mean over ~10^6-10^7
# squared errors, so rounding mostly averages out (measured here, CPU bf16 autocast of one
# forward: 4e-4 for vit-micro, 9e-5 for vit-tiny). 2e-2 is 10x the rounding of one value and far
# above those gaps, yet catches a wrong kernel or a broken cast, which moves the loss by O(1).
LOSS_RTOL = 2e-2
# a forced SDPA backend against the fp32 math result, max absolute difference of the output
# (inputs N(0, 1); outputs are averages of values of order 1): bf16 rounds at ~4e-3 of that
# (measured: 4e-3 with the CPU flash and math kernels in bf16 on the vit-micro shapes)
SDPA_ATOL = {"bfloat16": 5e-2, "float16": 1e-2, "float32": 1e-4}

# bf16 dense tensor-core peak, TFLOP/s, by a substring of torch.cuda.get_device_name()
# (lowercase), most specific first ("gh200" before "h200", "l40s" before "l40" before "l4").
# NVIDIA datasheets list bf16 "with sparsity"; dense is half of that figure:
#   H100 datasheet: SXM 1,979 / NVL 1,671 / PCIe 1,513 -> 989 / 835 / 756;
#   H200 datasheet: SXM 1,979 / NVL 1,671 -> 989 / 835; GH200 datasheet: 1,979 -> 989;
#   A100 datasheet: 624 -> 312 (SXM and PCIe); L40S: 733 -> 362 (datasheet: 362.05 dense);
#   L40: 362 -> 181; L4: 242 -> 121; HGX B200: 4.5 PFLOP/s -> 2,250 per GPU.
BF16_PEAK_TFLOPS: tuple[tuple[str, float, str], ...] = (
    ("gh200", 989.0, "GH200"),
    ("h200 nvl", 835.0, "H200 NVL"),
    ("h200", 989.0, "H200 SXM"),
    ("h100 nvl", 835.0, "H100 NVL"),
    ("h100 pcie", 756.0, "H100 PCIe"),
    ("h100", 989.0, "H100 SXM"),
    ("a100", 312.0, "A100"),
    ("b200", 2250.0, "B200"),
    ("l40s", 362.0, "L40S"),
    ("l40", 181.0, "L40"),
    ("l4", 121.0, "L4"),
)

# (substring of a profiler op or kernel name, backend); first match wins. cuDNN's own kernel
# names say "flash" too (cudnn_generated_..._sdpa_..._flash_...), so cuDNN is tested first.
_SDPA_NAMES = (
    ("cudnn_attention", "cudnn"), ("cudnn", "cudnn"),
    ("flash", "flash"),                                    # CUDA flash and CPU flash (_for_cpu)
    ("efficient_attention", "efficient"), ("fmha_cutlass", "efficient"),
    ("attention_math", "math"),
)


# --------------------------------------------------------------------------------------------
# pure functions (unit-tested without a GPU)
# --------------------------------------------------------------------------------------------
def bf16_peak(device_name: str) -> tuple[float, str] | None:
    """(bf16 dense peak FLOP/s, table label) for a device name, or None when not in the table."""
    name = device_name.lower()
    for key, tflops, label in BF16_PEAK_TFLOPS:
        if key in name:
            return tflops * 1e12, label
    return None


def mfu(train_flops_per_image: float, images_per_s: float, peak_flop_s: float) -> float:
    """Model FLOP utilisation: achieved FLOP/s (training FLOPs per image x images/s) over the peak."""
    return train_flops_per_image * images_per_s / peak_flop_s


def losses_agree(reference: float, other: float, rtol: float = LOSS_RTOL) -> tuple[bool, float]:
    """(within tolerance, relative difference |other - reference| / |reference|); a non-finite
    loss never agrees."""
    if not (math.isfinite(reference) and math.isfinite(other)):
        return False, math.inf
    rel = abs(other - reference) / max(abs(reference), 1e-12)
    return rel <= rtol, rel


def classify_sdpa(names) -> list[str]:
    """The SDPA backends a list of profiler op / kernel names shows (sorted; [] for none).
    The dispatching op itself (aten::scaled_dot_product_attention) names no backend."""
    found = set()
    for name in names:
        low = name.lower()
        if "sdpa" not in low and "attention" not in low and "fmha" not in low and "flash" not in low:
            continue
        for key, backend in _SDPA_NAMES:
            if key in low:
                found.add(backend)
                break
    return sorted(found)


@dataclass
class Row:
    check: str
    status: str
    value: str
    detail: str = ""


@dataclass
class Report:
    """The rows of the table and the measurements of the JSON file."""
    path: str                                   # "cuda" or "cpu"
    rows: list[Row] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)

    def add(self, check: str, status: str, value: Any, detail: str = "") -> None:
        self.rows.append(Row(check, status, str(value), detail))

    @property
    def failed(self) -> list[Row]:
        return [r for r in self.rows if r.status == FAIL]

    def table(self) -> str:
        from tabulate import tabulate
        return tabulate([[r.check, r.status, r.value, r.detail] for r in self.rows],
                        headers=["check", "status", "value", "detail"])

    def to_json(self) -> dict[str, Any]:
        return {"path": self.path, "ok": not self.failed, "no_gpu": self.path != "cuda",
                "checks": [asdict(r) for r in self.rows], **self.data}


def _error(e: BaseException, limit: int = 160) -> str:
    from maebench.errors import first_line
    return first_line(e, limit, typed=True)


def environment() -> dict[str, Any]:
    import platform

    import timm
    import torch
    import torch.distributed as dist

    from maebench import __version__
    env: dict[str, Any] = {
        "maebench": __version__, "python": platform.python_version(), "platform": platform.platform(),
        "torch": torch.__version__, "timm": timm.__version__, "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "nccl": None, "cuda_available": torch.cuda.is_available(), "device_count": 0, "devices": [],
        "bf16_supported": None, "nccl_available": dist.is_available() and dist.is_nccl_available(),
        "gloo_available": dist.is_available() and dist.is_gloo_available(), "cpu_threads": torch.get_num_threads(),
        "float32_matmul_precision": torch.get_float32_matmul_precision()}
    try:
        env["nccl"] = ".".join(map(str, torch.cuda.nccl.version()))
    except Exception:            # noqa: BLE001 -- a build without NCCL
        pass
    if env["cuda_available"]:
        env["device_count"] = torch.cuda.device_count()
        for i in range(env["device_count"]):
            p = torch.cuda.get_device_properties(i)
            env["devices"].append({"index": i, "name": p.name, "memory_gib": round(p.total_memory / 2 ** 30, 1),
                                   "capability": f"{p.major}.{p.minor}", "multiprocessors": p.multi_processor_count})
        env["bf16_supported"] = torch.cuda.is_bf16_supported(including_emulation=False)
    return env


def environment_rows(report: Report, env: dict) -> None:
    report.add("versions", INFO, f"torch {env['torch']}",
               f"CUDA {env['cuda']}, cuDNN {env['cudnn']}, NCCL {env['nccl']}, timm {env['timm']}, "
               f"python {env['python']}")
    if not env["cuda_available"]:
        report.add("CUDA GPU", SKIP, "none", NO_GPU)
        report.add("NCCL available", INFO, env["nccl_available"], "(used on a GPU only)")
        return
    d = env["devices"][0]
    report.add("CUDA GPU", PASS, d["name"], f"{env['device_count']} device(s); device 0: {d['memory_gib']} GiB, "
               f"compute capability {d['capability']}, {d['multiprocessors']} SMs")
    report.add("bf16 support", PASS if env["bf16_supported"] else INFO, env["bf16_supported"],
               "native (compute capability >= 8.0)" if env["bf16_supported"] else "no native bf16: amp.py uses fp16")
    report.add("NCCL available", PASS if env["nccl_available"] else FAIL, env["nccl_available"],
               "torch.distributed.is_nccl_available()")
