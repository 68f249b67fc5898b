"""The per-process micro-batch chosen by memory (maebench/microbatch.py): the recipe's when it
fits, smaller with the global batch kept through accum_iter when it does not, a one-line refusal
before training when one image does not fit; trial steps leave the model and the RNG as they
were; accumulation gives the full batch's update."""
import copy
import resource
import subprocess
import sys

import pytest
import torch
import torch.nn as nn

from maebench import microbatch
from maebench.engine import fit
from maebench.errors import MaebenchError
from loop_config import loop_cfg

CPU = torch.device("cpu")


class Images(torch.utils.data.Dataset):
    """64 'images' of 3 x 64 x 64 whose __getitem__ draws noise (trial steps must not shift the RNG)."""

    def __len__(self):
        return 64

    def __getitem__(self, i):
        return torch.full((3, 64, 64), i / 64.0) + 0.1 * torch.randn(3, 64, 64), i % 2


def convnet():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.Conv2d(32, 32, 3, padding=1),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.5), nn.Linear(32, 2))


def xent(model, batch, device):
    x, y = batch
    return nn.functional.cross_entropy(model(x.to(device)), y.to(device)), {}


def choose(model, monkeypatch=None, free=None, **kw):
    if free is not None:                     # the machine as the test describes it
        monkeypatch.setattr(microbatch, "available", lambda: (free, None, "cgroup memory limit"))
    lines = []
    args = dict(batch_size=32, world=1, accum_iter=1, requested=None, model=model, train_set=Images(),
                loss_fn=xent, collate_fn=None, device=CPU, amp=False, num_workers=0, optimizer="adamw")
    m, accum = microbatch.choose(**{**args, **kw}, log=lines.append)
    (line,) = lines
    return m, accum, line


def test_the_recipe_micro_batch_is_kept_when_memory_is_plentiful():
    m, accum, line = choose(convnet())
    assert (m, accum) == (32, 1) and "as the recipe" in line and "--set micro_batch=N overrides" in line


def test_a_smaller_machine_gets_a_smaller_micro_batch_and_the_same_global_batch(monkeypatch):
    """One 3x64x64 image through this convnet holds ~4 MB of activations: 64 MB takes fewer than 32."""
    m, accum, line = choose(convnet(), monkeypatch, free=64 << 20)
    assert m < 32 and m * accum == 32 and 32 % m == 0
    assert f"micro-batch {m} per process, accum_iter {accum} (global batch 32 kept; the recipe's 32" in line
    assert "cgroup memory limit" in line


def test_when_one_image_does_not_fit_it_stops_before_training_in_one_line(monkeypatch):
    with pytest.raises(MaebenchError) as e:
        choose(convnet(), monkeypatch, free=1 << 20)
    text = str(e.value)
    assert text.startswith("not enough memory to train: 1 image(s) per step need ~") and "\n" not in text
    assert "available (cgroup memory limit)" in text and "--set img_size=" in text and "--set num_workers=0" in text


def test_a_model_whose_batchnorm_cannot_train_on_one_image_is_measured_from_two(monkeypatch):
    """A linear probe's BatchNorm1d refuses a 1-image training batch; the trial steps use 2 and 4."""
    torch.manual_seed(0)
    probe = nn.Sequential(nn.Flatten(), nn.Linear(3 * 64 * 64, 256), nn.BatchNorm1d(256, affine=False), nn.Linear(256, 2))
    tried, call = [], microbatch.Trial.__call__
    monkeypatch.setattr(microbatch.Trial, "__call__", lambda self, n: (tried.append(n), call(self, n)))
    m, accum, line = choose(probe, monkeypatch, free=1 << 30)
    assert tried == [1, 2, 4] and (m, accum) == (32, 1) and "as the recipe" in line


def test_a_loss_that_pairs_images_gets_an_even_micro_batch(monkeypatch):
    """Mixup / cutmix pair the images of a batch (timm's Mixup refuses an odd one): the trial
    steps use 2 and 4 images, and on a small machine the chosen micro-batch stays even."""
    from maebench.classification import ClassificationLoss
    mixing = ClassificationLoss(2, mixup=0.8, cutmix=1.0, mixup_prob=1.0, switch_prob=0.5, label_smoothing=0.1)
    m, accum, line = choose(convnet(), monkeypatch, free=64 << 20, loss_fn=mixing)
    assert m % 2 == 0 and m < 32 and m * accum == 32


def test_trial_steps_leave_the_model_and_the_rng_as_they_were(monkeypatch):
    model = convnet()
    before, rng = copy.deepcopy(model.state_dict()), torch.get_rng_state()
    choose(model, monkeypatch, free=64 << 20)                       # forces the 1- and 2-image trial steps
    assert torch.equal(torch.get_rng_state(), rng)
    for k, v in model.state_dict().items():                          # BatchNorm statistics included
        assert torch.equal(v, before[k]), k
    assert all(p.grad is None for p in model.parameters())


def test_on_cuda_the_micro_batch_is_halved_until_a_step_fits():
    """The try-and-halve path with a stand-in for the GPU: steps above 4 images run out of memory."""
    class Trial:
        model, tried = nn.Linear(2, 2), []

        def __call__(self, n):
            self.tried.append(n)
            if n > 4:
                raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    trial = Trial()
    m, why = microbatch._on_cuda(trial, [16, 8, 4, 2, 1], torch.device("cuda", 0))
    assert (m, trial.tried) == (4, [16, 8, 4]) and why == "ran out of GPU memory; 4 fit"


def test_micro_batch_set_by_hand_is_at_most_that_many_images_per_forward():
    m, accum, line = choose(convnet(), requested=8)
    assert (m, accum) == (8, 4) and "(config key micro_batch; global batch 32 kept)" in line
    assert choose(convnet(), requested=5)[:2] == (4, 8)                 # the largest divisor of 32 up to 5
    assert choose(convnet(), requested=256)[:2] == (32, 1)              # a recipe's 256 on a batch of 32


def test_gradient_accumulation_gives_the_update_of_the_whole_batch(tmp_path):
    """BatchNorm-free model, one SGD step on 16 images: all at once, or 8 micro-batches of 2."""
    class Points(torch.utils.data.Dataset):
        def __init__(self):
            g = torch.Generator().manual_seed(0)
            self.x, self.y = torch.randn(16, 8, generator=g), torch.randint(0, 3, (16,), generator=g)

        def __len__(self):
            return 16

        def __getitem__(self, i):
            return self.x[i], self.y[i]

    def one_step(micro):
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(8, 32), nn.GELU(), nn.LayerNorm(32), nn.Linear(32, 3))
        cfg = loop_cfg(epochs=1, batch_size=16, lr=0.5, optimizer="sgd", momentum=0.0, amp=False, num_workers=0,
                       micro_batch=micro)
        return fit(model, Points(), xent, cfg, out_dir=tmp_path / f"m{micro}", device=CPU, log=lambda s: None).model

    whole, accumulated = one_step(16), one_step(2)
    torch.manual_seed(0)
    start = nn.Sequential(nn.Linear(8, 32), nn.GELU(), nn.LayerNorm(32), nn.Linear(32, 3))
    moved = max((a - b).abs().max().item() for a, b in zip(whole.parameters(), start.parameters()))
    assert moved > 1e-3                                              # the step did something
    for (k, a), b in zip(whole.state_dict().items(), accumulated.state_dict().values()):
        assert torch.allclose(a, b, atol=1e-6, rtol=0), k


def test_coco_with_its_paper_defaults_under_a_memory_cap_trains_or_refuses_in_one_line(tmp_path):
    """LSJ 1024 px, global batch 64, 4 loader workers, on the embedded set, in a process whose
    address space is capped (RLIMIT_AS) at what importing the libraries takes plus 1 GB, less
    than one 1024 px image needs (~1.5 GB measured on this CPU): it says which micro-batch it chose
    and completes an optimizer step, or refuses in one line before training; it is never killed."""
    env = {k: v for k, v in __import__("os").environ.items() if k != "MAEBENCH_RESULTS"}
    env.update(MAEBENCH_HOME=str(tmp_path / "home"), OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="")
    probe = ("import torch, torchvision, timm, pycocotools.coco, maebench.tasks.coco.model\n"
             "from maebench.microbatch import _status\nprint(_status('VmSize'))")
    baseline = int(subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True,
                                  check=True).stdout)
    cap = baseline + (1 << 30)

    def limit():
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))

    r = subprocess.run([sys.executable, "-m", "maebench", "run", "--task", "coco", "--backbone", "scratch-vit-t",
                        "--epochs", "1", "--device", "cpu"], env=env, cwd=tmp_path, capture_output=True, text=True,
                       timeout=1800, preexec_fn=limit)
    assert r.returncode in (0, 1), f"exit {r.returncode}: {r.stderr[-3000:]}"       # never killed (-9 / 137)
    assert "Traceback" not in r.stderr, r.stderr[-3000:]
    if r.returncode == 0:
        assert "micro-batch " in r.stdout and "coco epoch 1/1" in r.stdout + r.stderr
    else:
        errors = [line for line in r.stderr.splitlines() if line.startswith("maebench: error: ")]
        assert len(errors) == 1 and errors[0].startswith("maebench: error: not enough memory to train"), r.stderr
        assert "--set img_size=" in errors[0] and "coco epoch" not in r.stdout + r.stderr
