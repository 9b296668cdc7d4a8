"""The training loop shared by every workload.

Concerns live elsewhere: timing (harness.timing), checkpoint files
(harness.checkpoint), records (harness.runlog), strategies and precision
(harness.parallel), LR (harness.optim), samplers (harness.data).
"""

from __future__ import annotations

import contextlib
import math
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm import tqdm
from yacs.config import CfgNode as CN

from harness import checkpoint as ckpt
from harness import distributed as du
from harness import faults, parallel, preemption, vis
from harness.config import device_count, global_batch_size
from harness.data import InferenceSampler, TrainSampler, TrainSubset, build_loader, subset_indices
from harness.distributed import LaggedVote
from harness.flops import compute_precision, flops_per_sample, peak_tflops
from harness.nan_guard import NonFiniteGuard
from harness.optim import LRSchedule, build_optimizer, scaled_lr
from harness.profiling import StepProfiler
from harness.resume_guard import flat_config
from harness.rundir import checkpoint_path
from harness.runlog import RunLogger
from harness.tasks import Task
from harness.timing import CommTimer, Meter, RunClock, WindowTimer
from harness.world import WorldInfo


class NonFiniteLossError(RuntimeError):
    pass


class MeterSet:
    """Named Meters for the task's per-step training metrics (``Task.train_metrics``):
    device tensors summed each step, synchronised only when a record is written."""

    def __init__(self) -> None:
        self.meters: dict[str, Meter] = {}

    def add(self, values: dict[str, torch.Tensor]) -> None:
        for name, value in values.items():
            self.meters.setdefault(name, Meter()).add(value)

    def global_means(self) -> dict[str, float]:
        return {f"train/{name}": meter.global_mean() for name, meter in sorted(self.meters.items())}

    def merge_into(self, other: MeterSet) -> None:
        for name, meter in self.meters.items():
            other.meters.setdefault(name, Meter()).merge(meter)

    def state(self) -> dict[str, tuple[float, int]]:
        return {name: meter.state() for name, meter in self.meters.items()}

    def load(self, state: dict[str, tuple[float, int]]) -> None:
        self.meters = {}
        for name, value in state.items():
            self.meters[name] = Meter()
            self.meters[name].load(value)


def eval_autocast(cfg: CN, device: torch.device) -> contextlib.AbstractContextManager:
    """Validation's precision: TRAIN.AMP's autocast, or fp32 when EVAL.AMP is false."""
    return parallel.autocast(cfg, device) if cfg.EVAL.AMP else contextlib.nullcontext()


class Trainer:
    def __init__(
        self, cfg: CN, task: Task, world: WorldInfo, device: torch.device, run_dir: Path, logger: RunLogger
    ):
        self.cfg, self.task, self.world, self.device = cfg, task, world, device
        self.run_dir, self.log = run_dir, logger
        parallel.check_amp(cfg, device)
        self.devices = device_count(cfg)
        self.global_batch = global_batch_size(cfg)
        # Per optimizer step this process loads BATCH_SIZE_PER_GPU (x GPUS for dp), in GRAD_ACCUM pieces.
        per_process = cfg.TRAIN.BATCH_SIZE_PER_GPU * (self.devices if cfg.DIST.STRATEGY == "dp" else 1)
        self.micro_batch = per_process // cfg.TRAIN.GRAD_ACCUM

        train_set, val_set = task.build_datasets()
        weights = task.train_sample_weights(train_set)
        if cfg.DATASET.SUBSET:
            # The same seeded subset on every rank: an epoch of a fixed sample count.
            picked = subset_indices(len(train_set), cfg.DATASET.SUBSET, cfg.SEED)
            train_set = TrainSubset(train_set, picked)
            weights = None if weights is None else weights[picked]
        self.sampler = TrainSampler(len(train_set), world.world_size, world.rank, cfg.SEED, weights=weights)
        loader_args = dict(
            num_workers=cfg.DATA.NUM_WORKERS,
            pin_memory=cfg.DATA.PIN_MEMORY,
            prefetch_factor=cfg.DATA.PREFETCH_FACTOR,
            persistent_workers=cfg.DATA.PERSISTENT_WORKERS,
        )
        self.train_loader = build_loader(
            train_set, self.sampler, self.micro_batch, drop_last=True, **loader_args
        )
        eval_batch = cfg.EVAL.BATCH_SIZE_PER_GPU or cfg.TRAIN.BATCH_SIZE_PER_GPU
        self.val_loader = build_loader(
            val_set,
            InferenceSampler(len(val_set), world.world_size, world.rank),
            eval_batch,
            drop_last=False,
            **loader_args,
        )
        self.steps_per_epoch = len(self.sampler) // self.micro_batch // cfg.TRAIN.GRAD_ACCUM
        if cfg.TRAIN.MAX_STEPS_PER_EPOCH:
            self.steps_per_epoch = min(self.steps_per_epoch, cfg.TRAIN.MAX_STEPS_PER_EPOCH)
        if self.steps_per_epoch < 1:
            raise ValueError(
                f"the training set ({len(train_set)} samples) is smaller than one global batch "
                f"({self.global_batch}); lower TRAIN.BATCH_SIZE_PER_GPU or DIST.GPUS"
            )
        self.evaluator = task.build_evaluator(val_set, output_dir=run_dir / "results")

        torch.manual_seed(cfg.SEED)  # identical initial weights on every rank
        self.raw_model = task.build_model()
        self.num_params = sum(p.numel() for p in self.raw_model.parameters() if p.requires_grad)
        self.model = parallel.wrap_model(cfg, self.raw_model, device, world, logger.info)
        self.raw_model = parallel.unwrap(self.model)
        self.lr = scaled_lr(cfg)
        self.optimizer = build_optimizer(cfg, self.raw_model, self.lr)
        self.schedule = LRSchedule(cfg, self.lr, self.steps_per_epoch)
        self.scaler = parallel.grad_scaler(cfg, device)
        self.nan_guard = NonFiniteGuard(cfg.TRAIN.NAN_POLICY, device, self.scaler.is_enabled())
        self.comm_timer = self._attach_comm_timer()
        self.flops_per_sample, self.peak_tflops = self._count_flops(train_set)
        if cfg.TRAIN.COMPILE:
            self.model = torch.compile(self.model)
        torch.manual_seed(cfg.SEED * 1000 + world.rank + 1)  # dropout differs per rank, as with real data

        self.epoch = self.step_in_epoch = self.global_step = 0
        self.clock = RunClock()
        self.window_loss, self.epoch_loss = Meter(), Meter()
        self.window_metrics, self.epoch_metrics = MeterSet(), MeterSet()
        self.steps_since_start = 0
        self.stop_vote = LaggedVote()
        self.profiler = StepProfiler(cfg, run_dir, device, world.rank)

    # ------------------------------------------------------------- state
    def state_dict(self) -> dict[str, Any]:
        self.clock.tick()
        mine = {
            "rng": ckpt.rng_state(),
            "window_loss": self.window_loss.state(),
            "epoch_loss": self.epoch_loss.state(),
            "window_metrics": self.window_metrics.state(),
            "epoch_metrics": self.epoch_metrics.state(),
        }
        return {
            "model": self.raw_model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict(),
            "schedule": {"base_lr": self.lr},
            "epoch": self.epoch,
            "step_in_epoch": self.step_in_epoch,
            "global_step": self.global_step,
            "samples": self.samples,
            **self.clock.state(),
            "world_size": self.world.world_size,
            "per_rank": du.gather_objects(mine),
            "best": self.log.best,
            "config": flat_config(self.cfg),  # what a relaunch is compared with (harness.resume_guard)
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.raw_model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scaler.load_state_dict(state["scaler"])
        for key in ("epoch", "step_in_epoch", "global_step"):
            setattr(self, key, state[key])
        self.clock.load(state)
        per_rank = state["per_rank"]
        if len(per_rank) != self.world.world_size:
            self.log.warning(
                "checkpoint was written at world size %d, resuming at %d: the data order and "
                "random state differ from an uninterrupted run",
                len(per_rank),
                self.world.world_size,
            )
        mine = per_rank[self.world.rank % len(per_rank)]
        ckpt.set_rng_state(mine["rng"])
        self.window_loss.load(mine["window_loss"])
        self.epoch_loss.load(mine["epoch_loss"])
        self.window_metrics.load(mine.get("window_metrics", {}))
        self.epoch_metrics.load(mine.get("epoch_metrics", {}))

    @property
    def samples(self) -> int:
        return self.global_step * self.global_batch

    def save(self) -> None:
        self.nan_guard.before_checkpoint(f"before the checkpoint of step {self.global_step}")
        state = self.state_dict()  # collective: every rank takes part
        if du.is_main():
            ckpt.save_checkpoint(
                checkpoint_path(self.run_dir),
                state,
                midway=faults.checkpoint_midway(self.cfg, self.run_dir, self.global_step),
            )
        du.barrier()

    def _attach_comm_timer(self) -> CommTimer | None:
        """Time DDP's gradient all-reduces (time/comm_s, time/comm_exposed_s) with a comm hook."""
        if not isinstance(self.model, nn.parallel.DistributedDataParallel):
            return None
        comm = CommTimer(self.model.process_group, self.world.world_size)
        comm.attach(self.model)
        return comm

    def _count_flops(self, train_set: Any) -> tuple[float | None, float | None]:
        """(training FLOPs per sample, this GPU's dense peak TFLOP/s or None), counted once on a
        meta copy of the model (harness.flops): the run's weights and RNG are not touched."""
        try:
            items = [train_set[(0, i)] for i in range(min(2, len(train_set)))]
            batch = self.task.prepare_batch(torch.utils.data.default_collate(items), torch.device("cpu"))
            per_sample = flops_per_sample(
                self.raw_model, batch, lambda model, b: self.task.loss(self.task.forward(model, b), b)
            )
        except Exception as e:  # a model the meta device cannot run: no FLOP figures, training goes on
            self.log.warning(
                "FLOPs per sample not counted (%s: %s); perf/* metrics are left out",
                type(e).__name__,
                str(e).splitlines()[0] if str(e) else "",
            )
            return None, None
        peak = None
        if self.device.type == "cuda":
            peak = peak_tflops(
                torch.cuda.get_device_name(self.device), compute_precision(self.cfg.TRAIN.AMP, self.device)
            )
        return per_sample, peak

    # ------------------------------------------------------------- loop
    def fit(self) -> str:
        """Train to TRAIN.EPOCHS; returns "completed" or "preempted"."""
        self.clock.restart()
        self.profiler.start()
        try:
            result = self._train_epochs()
        except BaseException:
            self.profiler.stop(summarize=False)
            raise
        self.profiler.stop()
        return result

    def _train_epochs(self) -> str:
        cfg = self.cfg
        while self.epoch < cfg.TRAIN.EPOCHS:
            if not self.train_one_epoch():
                return "preempted"
            self._record_epoch()
            every = cfg.EVAL.EVERY_EPOCHS
            if every and ((self.epoch + 1) % every == 0 or self.epoch + 1 == cfg.TRAIN.EPOCHS):
                self._record("val", self.evaluate())
            self.epoch, self.step_in_epoch = self.epoch + 1, 0
            self.epoch_loss = Meter()
            self.clock.new_epoch()
            self.epoch_metrics = MeterSet()
            ckpt_every = cfg.CHECKPOINT.EVERY_EPOCHS  # 0: only at the end (and on preemption)
            if (ckpt_every and self.epoch % ckpt_every == 0) or self.epoch == cfg.TRAIN.EPOCHS:
                self.save()
            self.log.status(state="running", epoch=self.epoch, step=self.global_step)
        return "completed"

    def train_one_epoch(self) -> bool:
        """One epoch from ``step_in_epoch``; False when stopped for preemption."""
        cfg, accum = self.cfg, self.cfg.TRAIN.GRAD_ACCUM
        self.model.train()
        self.sampler.set_position(self.epoch, self.step_in_epoch * self.micro_batch * accum)
        batches = iter(self.train_loader)
        timer = WindowTimer(self.device, self.comm_timer, self.flops_per_sample, self.peak_tflops)
        bar = tqdm(
            total=self.steps_per_epoch,
            initial=self.step_in_epoch,
            desc=f"epoch {self.epoch}",
            disable=not (du.is_main() and cfg.LOG.PROGRESS),
            leave=False,
            mininterval=2,
        )
        while self.step_in_epoch < self.steps_per_epoch:
            lr = self.schedule.apply(self.optimizer, self.epoch, self.step_in_epoch)
            step_loss = torch.zeros((), device=self.device)
            timer.begin_step()
            for micro in range(accum):
                batch = next(batches)
                self.clock.add_data_wait(timer.lap("data_wait"))
                batch = self.task.prepare_batch(batch, self.device, cfg.TRAIN.CHANNELS_LAST)
                timer.lap("h2d")
                with parallel.no_sync(self.model, micro < accum - 1), parallel.autocast(cfg, self.device):
                    outputs = self.task.forward(self.model, batch)
                    loss = self.task.loss(outputs, batch)
                with torch.no_grad():
                    self.window_metrics.add(self.task.train_metrics(outputs, batch))
                if self.global_step == cfg.FAULT.NAN_AT_STEP:
                    loss = loss * float("nan")
                timer.lap("forward")
                self.scaler.scale(loss / accum).backward()
                timer.lap("backward")
                step_loss += loss.detach().float() / accum
            bad = self.nan_guard.after_backward(step_loss, self.raw_model, self.global_step)
            self.window_loss.add(self.nan_guard.loss_for_mean(step_loss, bad))
            self._optimizer_step()
            timer.lap("optimizer")
            self.step_in_epoch += 1
            self.global_step += 1
            self.steps_since_start += 1
            timer.end_step(self.global_batch)
            self.profiler.step()
            bar.update(1)
            self._inject_faults()
            if self.global_step % cfg.LOG.EVERY_N_STEPS == 0 or self.step_in_epoch == self.steps_per_epoch:
                self._record_window(timer, lr)
                timer.reset()
            if cfg.CHECKPOINT.EVERY_N_STEPS and self.global_step % cfg.CHECKPOINT.EVERY_N_STEPS == 0:
                self.save()
            # Agreed one step after a request (no per-step stall); at once at the epoch's end.
            if self.stop_vote.poll(
                preemption.stop_requested() is not None, final=self.step_in_epoch == self.steps_per_epoch
            ):
                bar.close()
                self._check_finite(self.window_loss, "before the preemption checkpoint")
                self.save()
                self.log.info(
                    "stopped at epoch %d step %d (%s); checkpoint written",
                    self.epoch,
                    self.global_step,
                    preemption.stop_requested() or "another rank's request",
                )
                return False
        bar.close()
        return True

    def _optimizer_step(self) -> None:
        if self.cfg.TRAIN.CLIP_GRAD > 0:
            self.scaler.unscale_(self.optimizer)
            nn.utils.clip_grad_norm_(self.raw_model.parameters(), self.cfg.TRAIN.CLIP_GRAD)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)

    def _inject_faults(self) -> None:
        fault = self.cfg.FAULT
        if self.global_step == fault.PREEMPT_AT_STEP:
            preemption.request_stop("FAULT.PREEMPT_AT_STEP")
        marker = self.run_dir / ".fault-crash-done"
        if self.global_step == fault.CRASH_AT_STEP and not marker.exists():
            if du.is_main():
                marker.touch()  # crash once: a resubmitted run gets past it
            raise RuntimeError(f"FAULT.CRASH_AT_STEP: injected crash at step {self.global_step}")

    @torch.no_grad()
    def evaluate(self) -> dict[str, Any]:
        self.clock.pause()
        model = self.raw_model if self.world.world_size > 1 else self.model
        model.eval()
        self.evaluator.reset()
        faults.preempt_in_validation(self.cfg, self.epoch)
        first = None
        for raw in self.val_loader:
            batch = self.task.prepare_batch(raw, self.device, self.cfg.TRAIN.CHANNELS_LAST)
            with eval_autocast(self.cfg, self.device):
                outputs = self.task.eval_forward(model, batch)
            self.evaluator.process(batch, outputs)
            first = first or (raw, outputs)
        metrics = self.evaluator.evaluate()
        vis.write_validation_grid(self.cfg, self.run_dir, self.log, *(first or (None, None)), self.epoch)
        self.model.train()
        self.clock.restart()  # validation time is not training time
        return {f"val/{k}": v for k, v in metrics.items()}

    # ------------------------------------------------------------- records
    def _check_finite(self, meter: Meter, where: str) -> float:
        value = meter.global_mean()
        if meter.count and not math.isfinite(value):
            raise NonFiniteLossError(
                f"training loss is {value} {where} (epoch {self.epoch}, step {self.global_step}); the last "
                f"good checkpoint is kept at {checkpoint_path(self.run_dir)}. Lower TRAIN.LR or set "
                "TRAIN.CLIP_GRAD"
            )
        return value

    def _record_window(self, timer: WindowTimer, lr: float) -> None:
        loss = self._check_finite(self.window_loss, f"in the steps up to {self.global_step}")
        skipped = self.nan_guard.end_window(f"in the steps up to {self.global_step}")
        if skipped:  # TRAIN.NAN_POLICY skip: the mean is over the steps that counted
            self.window_loss.count -= skipped
            loss = self._check_finite(self.window_loss, f"in the steps up to {self.global_step}")
        self.epoch_loss.merge(self.window_loss)
        self.window_loss = Meter()
        train_metrics = self.window_metrics.global_means()
        self.window_metrics.merge_into(self.epoch_metrics)
        self.window_metrics = MeterSet()
        stats = timer.summary(self.devices)
        stats.update(train_metrics)
        if self.cfg.TRAIN.NAN_POLICY == "skip":
            stats["train/nonfinite_steps"] = skipped
        stats.update(
            {
                "train/loss": loss,
                "train/lr": lr,
                "steady": self.steps_since_start - stats["steps"] >= self.cfg.LOG.WARMUP_STEPS,
            }
        )
        stats.pop("wall_s")
        self._record("train", stats, epoch=self.epoch + self.step_in_epoch / self.steps_per_epoch)
        self.log.status(
            state="running",
            epoch=self.epoch,
            step=self.global_step,
            last_img_per_s=stats["throughput/img_per_s"],
        )

    def _record_epoch(self) -> None:
        self.clock.tick()
        epoch_samples = self.steps_per_epoch * self.global_batch
        self._record(
            "epoch",
            {
                **self.epoch_metrics.global_means(),
                "train/loss": self.epoch_loss.global_mean(),
                "train/lr": self.optimizer.param_groups[0]["lr"],
                "time/epoch_s": self.clock.epoch_time,
                "throughput/img_per_s": epoch_samples / max(1e-9, self.clock.epoch_time),
                "time/data_wait_share": self.clock.epoch_data_wait / max(1e-9, self.clock.epoch_time),
            },
        )

    def _record(self, kind: str, values: dict[str, Any], epoch: float | None = None) -> None:
        self.clock.tick()
        self.log.record(
            kind,
            values,
            step=self.global_step,
            epoch=self.epoch if epoch is None else epoch,
            elapsed=self.clock.elapsed,
            samples=self.samples,
        )
        if kind == "val":
            self.log.info(
                "epoch %d validation: %s",
                self.epoch,
                {k: round(v, 4) for k, v in values.items() if isinstance(v, float)},
            )
