"""`maebench doctor` (maebench/doctor.py): the CPU path end to end, and the pure functions the
GPU path relies on (tolerance, MFU, datasheet peaks, SDPA kernel names, the report)."""
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from maebench import doctor

ROOT = Path(__file__).resolve().parents[1]


def _cpu_env():
    return {**os.environ, "CUDA_VISIBLE_DEVICES": ""}      # the CPU path, also on a GPU machine


def _rows(report: dict) -> dict:
    return {r["check"]: r for r in report["checks"]}


def _check_cpu_report(report: dict) -> None:
    assert report["path"] == "cpu" and report["no_gpu"] and report["ok"]
    rows = _rows(report)
    assert [r for r in report["checks"] if r["status"] == "FAIL"] == []
    loss = report["mae_step"]["fp32"]["loss"]
    assert math.isfinite(loss) and loss > 0
    assert "autocast" not in report["mae_step"]                  # the CPU never autocasts
    assert report["process_group"] == {"backend": "gloo", "ok": True, "all_reduce": [1.0, 2.0, 3.0, 4.0]}
    assert rows["process group (gloo)"]["status"] == "PASS"
    assert rows["SDPA MATH"]["status"] == "PASS"
    assert report["sdpa_dispatch"]["backends"]                   # the profiled step names its kernel
    speed = report["speed"]
    assert speed["eager"]["images_per_s"] > 0 and 0 < speed["eager"]["mfu"]
    assert speed["train_flops_per_image"] == 3 * speed["forward_flops_per_image"] > 0
    assert report["environment"]["torch"] and report["environment"]["cuda_available"] is False


def test_doctor_on_cpu_exits_0_says_no_gpu_and_writes_default_json(tmp_path):
    r = subprocess.run([sys.executable, "-m", "maebench", "doctor"], cwd=tmp_path, env=_cpu_env(),
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert doctor.NO_GPU in r.stdout
    assert "Traceback" not in r.stderr
    _check_cpu_report(json.loads((tmp_path / "doctor.json").read_text()))


def test_gpu_check_script_is_the_same_command(tmp_path):
    out = tmp_path / "sub" / "report.json"
    out.parent.mkdir()
    r = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), "--json", str(out), "--steps", "1"],
                       cwd=tmp_path, env=_cpu_env(), capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert doctor.NO_GPU in r.stdout
    report = json.loads(out.read_text())
    _check_cpu_report(report)
    assert report["config"]["steps"] == 1 and report["speed"]["steps"] == 1


def test_a_failed_check_is_a_fail_row_and_exit_1(tmp_path, monkeypatch, capsys):
    import torch
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(doctor, "mae_loss", lambda model, imgs, noise: model(imgs, noise=noise)[0] * float("nan"))
    monkeypatch.setattr(doctor, "process_group_check", lambda report, device: None)
    out = tmp_path / "d.json"
    assert doctor.run(out, steps=1) == 1
    report = json.loads(out.read_text())
    assert report["ok"] is False
    assert _rows(report)["MAE step fp32"]["status"] == "FAIL"
    printed = capsys.readouterr().out
    assert "FAILED: MAE step fp32" in printed and "FAIL" in printed


def test_unwritable_json_is_a_one_line_error_before_any_check(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(doctor, "environment", lambda: pytest.fail("checks ran before the path was checked"))
    from maebench.cli import main
    assert main(["doctor", "--json", str(tmp_path / "missing" / "d.json")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("maebench: error: cannot write") and "no directory" in err and len(err.splitlines()) == 1


@pytest.mark.parametrize("steps", ["0", "-3", "x"])
def test_steps_must_be_positive(steps):
    from maebench.cli import main
    assert main(["doctor", "--steps", steps]) == 2


# --------------------------------------------------------------------------------------------
# pure functions
# --------------------------------------------------------------------------------------------
def test_mfu_is_achieved_over_peak():
    # 30 GFLOP per image (fwd + bwd) x 1000 images/s = 30 TFLOP/s achieved; peak 120 TFLOP/s -> 25 %
    assert doctor.mfu(30e9, 1000.0, 120e12) == pytest.approx(0.25)
    assert doctor.mfu(3 * 10e9, 500.0, 989e12) == pytest.approx(15e12 / 989e12)


@pytest.mark.parametrize("name, tflops, label", [
    ("NVIDIA H100 80GB HBM3", 989, "H100 SXM"),
    ("NVIDIA H100 PCIe", 756, "H100 PCIe"),
    ("NVIDIA H100 NVL", 835, "H100 NVL"),
    ("NVIDIA H200", 989, "H200 SXM"),
    ("NVIDIA H200 NVL", 835, "H200 NVL"),
    ("NVIDIA GH200 480GB", 989, "GH200"),
    ("NVIDIA A100-SXM4-80GB", 312, "A100"),
    ("NVIDIA A100 80GB PCIe", 312, "A100"),
    ("NVIDIA L40S", 362, "L40S"),
    ("NVIDIA L4", 121, "L4"),
])
def test_bf16_peak_by_device_name_substring(name, tflops, label):
    assert doctor.bf16_peak(name) == (tflops * 1e12, label)


def test_unknown_device_has_no_datasheet_peak():
    assert doctor.bf16_peak("Tesla V100-SXM2-32GB") is None
    assert doctor.bf16_peak("NVIDIA GeForce RTX 4090") is None


def test_loss_tolerance():
    assert doctor.LOSS_RTOL == 2e-2
    ok, rel = doctor.losses_agree(1.0, 1.015)
    assert ok and rel == pytest.approx(0.015)
    ok, rel = doctor.losses_agree(0.80, 0.83)                   # 3.75 % apart
    assert not ok and rel == pytest.approx(0.0375)
    assert not doctor.losses_agree(1.0, 1.021)[0]
    assert doctor.losses_agree(1.0, 1.019)[0]
    assert doctor.losses_agree(1.0, float("nan")) == (False, math.inf)
    assert not doctor.losses_agree(float("inf"), float("inf"))[0]


@pytest.mark.parametrize("names, expected", [
    (["aten::scaled_dot_product_attention", "aten::_scaled_dot_product_flash_attention",
      "void pytorch_flash::flash_fwd_kernel<Flash_fwd_kernel_traits<64, 128>>"], ["flash"]),
    (["aten::_scaled_dot_product_efficient_attention", "fmha_cutlassF_bf16_aligned_64x64_rf_sm80"], ["efficient"]),
    (["fmha_cutlassB_bf16_aligned_64x64_k64_sm80"], ["efficient"]),
    (["aten::_scaled_dot_product_cudnn_attention",
      "cudnn_generated_fort_native_sdpa_sm90_flash_fprop_wgmma_f16_knob_3_64x64x64"], ["cudnn"]),
    (["aten::_scaled_dot_product_attention_math", "aten::bmm", "aten::_softmax"], ["math"]),
    (["aten::_scaled_dot_product_flash_attention_for_cpu"], ["flash"]),
    (["aten::scaled_dot_product_attention", "aten::addmm", "sm90_xmma_gemm_bf16bf16_bf16f32"], []),
    (["aten::_scaled_dot_product_flash_attention", "aten::_scaled_dot_product_attention_math"], ["flash", "math"]),
])
def test_sdpa_kernel_name_classification(names, expected):
    assert doctor.classify_sdpa(names) == expected


def test_report_table_and_json():
    report = doctor.Report(path="cuda", data={"speed": {"mfu": 0.4}})
    report.add("a", doctor.PASS, 1.5, "fine")
    assert report.to_json()["ok"] is True
    report.add("b", doctor.FAIL, "bad", "why")
    j = report.to_json()
    assert j["ok"] is False and j["no_gpu"] is False and j["speed"] == {"mfu": 0.4}
    assert j["checks"][1] == {"check": "b", "status": "FAIL", "value": "bad", "detail": "why"}
    assert [r.check for r in report.failed] == ["b"]
    lines = report.table().splitlines()
    assert lines[0].split() == ["check", "status", "value", "detail"] and "FAIL" in lines[-1]


def test_attention_shapes_and_cpu_backends():
    import torch
    model, _, _ = doctor._build(dict(doctor.CPU_CONFIG, batch_size=2), torch.device("cpu"))
    shapes = doctor.attention_shapes(model, batch=2)
    # vit-micro at 32 px, patch 4: 64 patches, 16 kept at mask 0.75; 3 heads of 32, decoder 2 of 32
    assert shapes == {"encoder": (2, 3, 17, 32), "decoder": (2, 2, 65, 32)}
    math_result = doctor.try_sdpa_backend("MATH", shapes, torch.device("cpu"), torch.float32)
    assert math_result == {"available": True, "max_abs_diff": 0.0}
    cudnn = doctor.try_sdpa_backend("CUDNN_ATTENTION", shapes, torch.device("cpu"), torch.float32)
    assert cudnn["available"] is False and cudnn["reason"]


def test_the_cuda_branches_run_with_cuda_stood_in(monkeypatch):
    """No GPU here: the CUDA-only branches (fp32 vs autocast rows, datasheet MFU, compiled row)
    run on CPU tensors with the CUDA calls replaced, so a broken name or key in them fails here.
    Autocast to "cuda" is disabled by torch without a GPU, so both precisions give one loss."""
    import warnings

    import torch
    from maebench import compiling, flops

    class FakeCuda:
        type = "cuda"
    for name, value in {"is_bf16_supported": lambda *a, **k: True, "synchronize": lambda *a: None,
                        "get_device_name": lambda *a: "NVIDIA H100 80GB HBM3", "empty_cache": lambda: None,
                        "reset_peak_memory_stats": lambda *a: None}.items():
        monkeypatch.setattr(torch.cuda, name, value)
    monkeypatch.setattr(flops, "matmul_peak", lambda *a, **k: 700e12)
    monkeypatch.setattr(flops, "peak_memory_mb", lambda device: 1234.0)
    monkeypatch.setattr(torch, "compile", lambda fn, **k: fn)
    monkeypatch.setattr(compiling, "cache_dir", lambda: "unused")
    monkeypatch.setattr(doctor, "dispatch_check", lambda *a: None)
    cfg = dict(doctor.CPU_CONFIG, batch_size=2)
    model, imgs, noise = doctor._build(cfg, torch.device("cpu"))
    report = doctor.Report(path="cuda")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        doctor.precision_check(report, model, imgs, noise, FakeCuda())
        doctor.speed_check(report, model, imgs, noise, FakeCuda(), cfg, 1)
    rows = {r.check: r for r in report.rows}
    assert rows["MAE loss fp32 vs bf16"].status == "PASS"
    assert rows["MAE loss after AdamW step fp32 vs bf16"].status == "PASS"
    assert report.data["mae_step"]["autocast"]["dtype"] == "bf16"
    assert rows["step compiled"].status == "PASS" and "compile ~" in rows["step compiled"].detail
    assert "H100 SXM bf16 dense datasheet peak" in rows["MFU eager"].detail
    speed = report.data["speed"]
    assert speed["peak_flop_s"] == 989e12 and speed["measured_matmul_flop_s"] == 700e12
    assert speed["eager"]["mfu"] == pytest.approx(speed["train_flops_per_image"] * speed["eager"]["images_per_s"] / 989e12)
    assert not report.failed
