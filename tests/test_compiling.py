"""compile: true|false (maebench/compiling.py): the compiled training step computes the eager
step's losses; a step that fails to compile runs eagerly after one line saying so; an error of
the step itself is not mistaken for a compile failure."""
import pytest
import torch
import torch.nn as nn

from maebench import compiling
from maebench.engine import fit
from loop_config import loop_cfg


class Fixed(torch.utils.data.Dataset):
    def __init__(self):
        g = torch.Generator().manual_seed(0)
        self.x = torch.randn(16, 8, generator=g)
        self.y = (self.x.sum(1) > 0).long()

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return self.x[i], self.y[i]


def loss_fn(model, batch, device):
    x, y = batch
    return nn.functional.cross_entropy(model(x.to(device)), y.to(device)), {}


def five_steps(tmp_path, compile_on, log=lambda s: None):
    """5 epochs of one optimizer step each: the history is the loss of every step."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 32), nn.LayerNorm(32), nn.GELU(), nn.Linear(32, 2))
    cfg = loop_cfg(epochs=5, batch_size=16, lr=0.05, num_workers=0, compile=compile_on)
    return fit(model, Fixed(), loss_fn, cfg, out_dir=tmp_path, device=torch.device("cpu"), log=log)


def test_compiled_and_eager_losses_agree_within_1e_4_over_five_steps(tmp_path):
    eager = [h["loss"] for h in five_steps(tmp_path / "eager", False).history]
    lines = []
    compiled = [h["loss"] for h in five_steps(tmp_path / "compiled", True, lines.append).history]
    assert not [x for x in lines if x.startswith("compile:")]          # it did compile
    assert len(set(eager)) == 5                                        # the weights moved every step
    assert compiled == pytest.approx(eager, abs=1e-4)


def test_the_inductor_cache_lives_under_maebench_home(monkeypatch, _isolated_home):
    monkeypatch.delenv("TORCHINDUCTOR_CACHE_DIR", raising=False)
    assert compiling.cache_dir() == str(_isolated_home / "cache" / "inductor")


def test_a_step_that_fails_to_compile_runs_eagerly_after_one_line(tmp_path, monkeypatch):
    def broken_compile(fn, **kw):
        def run(*a, **k):
            raise RuntimeError("InductorError: CppCompileError: C++ compile error\nno compiler found")
        return run
    monkeypatch.setattr(torch, "compile", broken_compile)
    eager = [h["loss"] for h in five_steps(tmp_path / "eager", False).history]
    lines = []
    fell_back = [h["loss"] for h in five_steps(tmp_path / "fallback", True, lines.append).history]
    said = [x for x in lines if x.startswith("compile:")]
    assert len(said) == 1 and "continuing eagerly" in said[0] and "C++ compile error" in said[0]
    assert fell_back == eager


def test_without_a_cxx_compiler_the_real_compile_falls_back_to_eager(monkeypatch):
    import torch._inductor.config as inductor_config
    monkeypatch.setattr(inductor_config.cpp, "cxx", ("/nonexistent/c++",))
    monkeypatch.setattr(inductor_config, "fx_graph_cache", False)
    torch._dynamo.reset()
    lines = []
    step = compiling.maybe_compile(lambda x: (x.sin() * 2).sum(), True, log=lines.append)
    x = torch.randn(7)
    assert step(x).item() == pytest.approx((x.sin() * 2).sum().item())
    assert len(lines) == 1 and "continuing eagerly" in lines[0]
    torch._dynamo.reset()


def test_an_error_of_the_step_itself_is_raised_not_hidden_as_a_compile_failure():
    lines = []
    step = compiling.maybe_compile(lambda x: x @ torch.ones(3, 3), True, log=lines.append)
    with pytest.raises(RuntimeError, match="shapes cannot be multiplied"):
        step(torch.ones(2, 5))
    assert lines == []


def test_compile_off_returns_the_function_itself():
    assert compiling.maybe_compile(loss_fn, False) is loss_fn
    assert compiling.maybe_compile(loss_fn, None) is loss_fn
