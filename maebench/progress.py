"""The training loop's progress: a bar on a terminal (loss, lr, images/s, MFU) and one line per
epoch for logs. Throughput counts optimizer steps only (evaluation excluded); MFU is against
the matmul peak measured in the same run (maebench.flops.matmul_peak).

With a `run_log` (rank 0's maebench.runlog.RunLog) every log step is also a log.jsonl line
(running means, the lr, the last gradient norm, images/s, MFU, peak memory) and every epoch
one more; the values are read at the log steps only, after the synchronize that times them."""
from __future__ import annotations

import time
from typing import Callable

import torch

from maebench import distributed as dist
from maebench.flops import matmul_peak, peak_memory_mb


class Progress:
    def __init__(self, *, desc: str, epochs: int, steps_per_epoch: int, batch_size: int, log_every: int,
                 device: torch.device, flops_per_image: float | None, log: Callable[[str], None],
                 run_log=None):
        self.desc, self.epochs, self.steps, self.batch_size = desc, epochs, steps_per_epoch, batch_size
        self.log_every, self.device, self.log = log_every, device, log
        self.world = dist.world_size()
        self.peak = matmul_peak(device)
        self.flops_per_step = 3 * flops_per_image * batch_size if flops_per_image else None   # fwd + bwd
        self.images, self.train_time, self.bar = 0, 0.0, None
        self._t, self._n = time.perf_counter(), 0
        self.run_log, self.grad_norm = run_log, None     # grad_norm: the loop's last (device tensor)
        self.step, self._lr_sum, self._lr_n = None, 0.0, 0   # optimizer steps from the start of training

    def start_epoch(self, epoch: int, done: int) -> None:
        if dist.is_main():
            from tqdm import tqdm
            self.bar = tqdm(total=self.steps, initial=done, desc=f"{self.desc} {epoch + 1}/{self.epochs}",
                            dynamic_ncols=True, leave=False, disable=None)   # a bar on a terminal only
        self._t, self._n = time.perf_counter(), 0
        if self.step is None and self.run_log is not None:   # (re)starting: drop what was logged later
            self.run_log.restart_at(epoch * self.steps + done)
        self.step, self._lr_sum, self._lr_n = epoch * self.steps + done, 0.0, 0

    def step_done(self, done_in_epoch: int, lr: float | None = None) -> bool:
        """Count one optimizer step (at lr); True at a log step (every log_every, and the epoch's last)."""
        self._n += 1
        self.step = (self.step or 0) + 1
        if lr is not None:
            self._lr_sum, self._lr_n = self._lr_sum + lr, self._lr_n + 1
        return self._n == self.log_every or done_in_epoch == self.steps

    def update(self, means: dict[str, float], lr: float) -> None:
        """Close the timing interval since the last update and show it."""
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        dt = time.perf_counter() - self._t
        self.train_time += dt
        self.images += self._n * self.batch_size
        if self.bar is not None:
            post = {k: f"{v:.4f}" for k, v in means.items()}
            post.update(lr=f"{lr:.2e}", img_s=f"{self._n * self.batch_size / dt:.1f}")
            if self.flops_per_step:
                post["mfu"] = f"{100 * self.flops_per_step * self._n / dt / self.world / self.peak:.1f}%"
            self.bar.set_postfix(post, refresh=False)
            self.bar.update(self._n)
        if self.run_log is not None:
            norm = None if self.grad_norm is None else float(self.grad_norm)
            mfu = self.flops_per_step * self._n / dt / self.world / self.peak if self.flops_per_step else None
            self.run_log.interval(step=self.step, epoch=self.step / self.steps, means=means, lr=lr, grad_norm=norm,
                                  images_per_s=self._n * self.batch_size / dt, mfu=mfu,
                                  peak_mem_mb=peak_memory_mb(self.device))
        self._t, self._n = time.perf_counter(), 0

    def end_epoch(self, epoch: int, means: dict[str, float], record: dict | None = None) -> None:
        """`record`: the loop's history line of the epoch (means and any evaluation), for the run log."""
        self.close()
        if self.run_log is not None and record is not None:
            self.run_log.epoch(record, train_lr=self._lr_sum / self._lr_n if self._lr_n else None, step=self.step)
        if dist.is_main():
            self.log(f"{self.desc} epoch {epoch + 1}/{self.epochs}: " + " ".join(f"{k}={v:.4f}" for k, v in means.items()))

    def close(self) -> None:
        """Also on an error or interrupt, so that its message starts on a clean line."""
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    @property
    def images_per_s(self) -> float:
        return self.images / self.train_time if self.train_time > 0 else 0.0

    @property
    def mfu(self) -> float | None:
        ips = self.images_per_s
        return self.flops_per_step / self.batch_size * ips / self.world / self.peak if self.flops_per_step and ips else None
