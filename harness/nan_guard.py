"""TRAIN.NAN_POLICY: non-finite losses and gradients, found on the device without a
per-step synchronisation.

After each step's backward, one fused pass over the gradients
(``torch._amp_foreach_non_finite_check_and_unscale_`` with a scale of 1, the kernel
GradScaler uses; values are unchanged) and an ``isfinite`` of the loss set a device
flag; a device counter accumulates it. The host reads the counter only where the
loop synchronises anyway: at the log window boundary and before a checkpoint.

- ``stop``: the run fails at the next window boundary or checkpoint, naming the first
  bad step; no checkpoint is ever written after a non-finite step, so ``last.pt`` is
  the last good state.
- ``skip``: a bad step's gradients are zeroed on the device (``masked_fill_`` with the
  flag), so the batch contributes nothing; plain SGD then leaves the weights exactly
  as they were, while optimizers with state still advance it as for a zero gradient
  (momentum decays, Adam's step count grows). Under fp16 the GradScaler skips the step
  itself (no optimizer step, the loss scale backs off). The bad step's loss is left
  out of ``train/loss``; ``train/nonfinite_steps`` counts the skipped steps per window.
Under DDP the gradients are all-reduced before the check, so every rank agrees.
"""

from __future__ import annotations

import torch


class NonFiniteError(RuntimeError):
    pass


class NonFiniteGuard:
    def __init__(self, policy: str, device: torch.device, scaler_enabled: bool) -> None:
        if policy not in ("stop", "skip"):
            raise ValueError(f"TRAIN.NAN_POLICY {policy!r}: one of stop, skip")
        self.policy, self.device = policy, device
        self.scaler_enabled = scaler_enabled  # fp16: the GradScaler handles inf gradients itself
        self._one = torch.ones(1, device=device)
        self._reset()

    def _reset(self) -> None:
        self.bad_steps = torch.zeros((), dtype=torch.int64, device=self.device)
        self.first_bad = torch.full((), -1, dtype=torch.int64, device=self.device)

    def after_backward(
        self, step_loss: torch.Tensor, model: torch.nn.Module, global_step: int
    ) -> torch.Tensor:
        """The step's flag (a 0-dim bool on the device); under skip, its gradients are zeroed."""
        bad = ~torch.isfinite(step_loss)
        grads = [p.grad for p in model.parameters() if p.grad is not None]
        if grads and not self.scaler_enabled:
            found = torch.zeros(1, device=self.device)
            for group in _by_device_and_dtype(grads):
                torch._amp_foreach_non_finite_check_and_unscale_(group, found, self._one.to(group[0].device))
            bad = bad | (found[0] > 0)
            if self.policy == "skip":
                for g in grads:
                    g.masked_fill_(bad, 0.0)
        self.bad_steps += bad.long()
        self.first_bad = torch.where(
            (self.first_bad < 0) & bad, torch.full_like(self.first_bad, global_step), self.first_bad
        )
        return bad

    def loss_for_mean(self, step_loss: torch.Tensor, bad: torch.Tensor) -> torch.Tensor:
        """What the window's mean loss adds for this step: 0 for a skipped step."""
        if self.policy != "skip":
            return step_loss
        return torch.where(bad, torch.zeros_like(step_loss), step_loss)

    def end_window(self, where: str) -> int:
        """Synchronises: the window's count of bad steps (reset). Under stop, raises."""
        count = self._check(where)
        self._reset()
        return count

    def before_checkpoint(self, where: str) -> None:
        """Synchronises: under stop, a checkpoint after a bad step is never written."""
        self._check(where)

    def _check(self, where: str) -> int:
        count, first = int(self.bad_steps.item()), int(self.first_bad.item())
        if count and self.policy == "stop":
            raise NonFiniteError(
                f"non-finite loss or gradients at step {first + 1} ({count} step(s) {where}; "
                "TRAIN.NAN_POLICY stop): no checkpoint is written after it. Lower TRAIN.LR, set "
                "TRAIN.CLIP_GRAD, or TRAIN.NAN_POLICY skip"
            )
        return count


def _by_device_and_dtype(tensors: list[torch.Tensor]) -> list[list[torch.Tensor]]:
    groups: dict[tuple, list[torch.Tensor]] = {}
    for t in tensors:
        groups.setdefault((t.device, t.dtype), []).append(t)
    return list(groups.values())
