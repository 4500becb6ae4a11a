"""AdaLoRA's rank-budget schedule as a loop Callback (imported by methods/adalora.py when training starts)."""

from __future__ import annotations

from tunelab.training.callbacks import Callback, Context


class RankBudget(Callback):
    """Sets peft's total_step/tinit/tfinal from the real step count and calls ``update_and_allocate`` after each
    optimizer step (its gradients still present). Its state is peft's importance averages and rank pattern."""

    acts_on_gradients = True

    def __init__(self, model, warmup_fraction: float, final_fraction: float):
        self.model, self.warmup_fraction, self.final_fraction = model, warmup_fraction, final_fraction

    def _peft_config(self):
        return self.model.peft_config[self.model.active_adapter]

    def on_train_begin(self, ctx: Context) -> None:
        total, peft_cfg = ctx.total_steps, self._peft_config()
        # floor keeps tinit < total - tfinal whenever the fractions sum below 1 (checked in apply)
        peft_cfg.total_step = total
        peft_cfg.tinit, peft_cfg.tfinal = int(self.warmup_fraction * total), int(self.final_fraction * total)

    def on_before_zero_grad(self, ctx: Context) -> None:
        self.model.base_model.update_and_allocate(ctx.state.step)  # needs this step's gradients

    def state_dict(self) -> dict:
        a = self.model.base_model.rankallocator

        def copy(d: dict) -> dict:
            return {n: t.detach().cpu().clone() for n, t in d.items()}

        return {
            "ipt": copy(a.ipt),
            "exp_avg_ipt": copy(a.exp_avg_ipt),
            "exp_avg_unc": copy(a.exp_avg_unc),
            "rank_pattern": self._peft_config().rank_pattern,
        }

    def load_state_dict(self, state: dict) -> None:
        a = self.model.base_model.rankallocator
        device = next(self.model.parameters()).device

        def placed(d: dict) -> dict:
            return {n: t.to(device) for n, t in d.items()}

        a.ipt, a.exp_avg_ipt, a.exp_avg_unc = (
            placed(state["ipt"]),
            placed(state["exp_avg_ipt"]),
            placed(state["exp_avg_unc"]),
        )
        self._peft_config().rank_pattern = state["rank_pattern"]
