"""The fastai callbacks and metrics of a training run, each on fastai's public events: speed (`FastPath`,
`DeviceSmoothLoss`), what is logged (`LossTerm`, `GainOverInput`, `epoch_logger`), the weight average (`WeightEMA`),
new patches every epoch (`ResamplePatches`), checkpoints and resuming (`Checkpoint`, `ResumeFrom`) and
deterministic kernels (`DeterministicAlgorithms`). `mrisr.training.train.sr_learner` puts them together."""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from fastai.callback.core import Callback, TrainEvalCallback
from fastai.callback.tracker import TrackerCallback
from fastai.learner import AvgSmoothLoss, Learner, Recorder
from fastai.metrics import Metric
from fastcore.foundation import L

from mrisr.data.pipeline import PatchSampler
from mrisr.imaging.metrics import gain_db
from mrisr.training.checkpoint import (LAST_CHECKPOINT, random_streams, read_checkpoint, save_checkpoint,
                                       set_random_streams, weights_only_safe)
from mrisr.training.device import channels_last_format, cudnn_autotuning, padded_input_channels
from mrisr.training.distributed import barrier, is_writer, unwrap

if TYPE_CHECKING:
    from mrisr.training.config import ExperimentConfig


class DeviceSmoothLoss(AvgSmoothLoss):
    """fastai's smoothed training loss, kept on the loss's device: fastai's own copies it to the CPU after every
    step, which makes the host wait for the GPU and stops it preparing the next batch meanwhile."""

    def accumulate(self, learn):
        self.count += 1
        loss = learn.loss.mean().detach()
        self.val = torch.lerp(loss, self.val.to(loss.device), self.beta)


class FastPath(Callback):
    """Speed settings for a fit: the model and each input batch in channels-last memory format (``channels_last_3d``
    for volumes), cuDNN autotuning (``torch.backends.cudnn.benchmark``, restored after the fit), and the smoothed
    training loss kept on the device (`DeviceSmoothLoss`) so that no step waits for the GPU."""

    def __init__(self, channels_last: bool, cudnn_benchmark: bool, device_smooth_loss: bool = True):
        self.channels_last, self.cudnn_benchmark = channels_last, cudnn_benchmark
        self.device_smooth_loss = device_smooth_loss

    def before_fit(self):
        recorder = getattr(self.learn, "recorder", None)
        if self.device_smooth_loss and recorder is not None and not isinstance(recorder.smooth_loss,
                                                                                DeviceSmoothLoss):
            recorder.smooth_loss = DeviceSmoothLoss(recorder.smooth_loss.beta)
        self.restore = ExitStack()  # the global settings of this fit, undone in after_fit
        self.restore.enter_context(cudnn_autotuning(self.cudnn_benchmark or torch.backends.cudnn.benchmark))
        self.restore.enter_context(padded_input_channels(self.learn.model,
                                                         enabled=self.channels_last and self.learn.model.ndim == 3))
        if self.channels_last:
            self.learn.model.to(memory_format=channels_last_format(self.learn.model.ndim))

    def before_batch(self):
        if self.channels_last:
            self.learn.xb = tuple(x.contiguous(memory_format=channels_last_format(x.ndim - 2)) for x in self.learn.xb)

    def after_fit(self):
        self.restore.close()
        recorder = getattr(self.learn, "recorder", None)
        if recorder is not None:  # the smoothed losses, on the CPU for plotting and lr_find's suggestions
            recorder.losses = [v.cpu() if torch.is_tensor(v) else v for v in recorder.losses]


class LossTerm(Metric):
    """A fastai metric that averages one term of `SRLoss` (its pixel loss or ``"perceptual"``) over the batches."""

    def __init__(self, term: str):
        self.term = term

    def reset(self):
        self.total, self.count = 0.0, 0

    def accumulate(self, learn):
        bs = learn.yb[0].shape[0]
        self.total += float(learn.loss_func.terms[self.term]) * bs
        self.count += bs

    @property
    def value(self):
        return self.total / self.count if self.count else None

    @property
    def name(self):
        return f"{self.term}_loss"


class GainOverInput(Metric):
    """``gain_db``: mean PSNR of the model's output minus mean PSNR of its own input, on the same patches (dB, data
    range 1 of the normalised scale; `mrisr.imaging.metrics.gain_db`). Positive: the network is better than doing
    nothing."""

    def reset(self):
        self.total, self.count = 0.0, 0

    def accumulate(self, learn):
        gain = gain_db(learn.pred, learn.xb[0], learn.yb[0])
        self.total += float(gain.sum())
        self.count += len(gain)

    @property
    def value(self):
        return self.total / self.count if self.count else None

    @property
    def name(self):
        return "gain_db"


class WeightEMA(Callback):
    """An exponential moving average of the weights (``torch.optim.swa_utils``, decay ``decay`` per step): validation,
    checkpoints and the fitted model use the average; training steps update the raw weights (Polyak averaging, as
    in many SR and diffusion recipes). The average is swapped in before each validation and the raw weights back
    before the next epoch's training, so the checkpoint of an epoch holds the average. Skipped during ``lr_find``."""

    def __init__(self, decay: float = 0.999):
        self.decay = decay

    def before_fit(self):
        from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

        self.run = not hasattr(self.learn, "lr_finder")  # fastai skips the other events, and sets it back after fit
        if self.run:
            self.average = AveragedModel(self.learn.model, multi_avg_fn=get_ema_multi_avg_fn(self.decay),
                                         use_buffers=True)
            self.raw = None

    def after_step(self):
        self.average.update_parameters(unwrap(self.learn.model))

    def before_validate(self):
        self.raw = {k: v.detach().clone() for k, v in unwrap(self.learn.model).state_dict().items()}
        unwrap(self.learn.model).load_state_dict(self.average.module.state_dict())

    def before_train(self):
        if self.raw is not None:
            unwrap(self.learn.model).load_state_dict(self.raw)
            self.raw = None

    def state_dict(self) -> dict:
        """The average and the raw weights (between an epoch's validation and the next training they differ)."""
        return {"average": self.average.state_dict(), "raw": self.raw}

    def load_state_dict(self, state: dict):
        self.average.load_state_dict(state["average"])
        self.raw = state["raw"]


class Checkpoint(TrackerCallback):
    """After every epoch: ``<run_dir>/best.pth`` when the validation loss is the lowest so far, then
    ``<run_dir>/last.pth`` with everything `ResumeFrom` needs to continue the run exactly (optimiser, loss scaler,
    random streams, the states of callbacks that have a ``state_dict``, the peak lr). At the end of ``fit`` the best
    model is loaded back. Both files are written atomically, best first, so a run killed at any point leaves a
    ``last.pth`` that resumes to the same weights. fastai's `TrackerCallback` keeps the best score (kept across fits)
    and skips ``lr_find`` and ``get_preds``."""

    order = Recorder.order + 1  # after the epoch's losses are recorded

    def __init__(self, run_dir: Path, config: ExperimentConfig):
        super().__init__(monitor="valid_loss", reset_on_fit=False)
        self.best_path, self.last_path = Path(run_dir) / "best.pth", Path(run_dir) / LAST_CHECKPOINT
        self.config = config
        self.peak_lr = None

    def state_dict(self) -> dict:
        return {"best": self.best}

    def load_state_dict(self, state: dict):
        self.best = state["best"]

    def before_fit(self):
        super().before_fit()
        self.trained = 0  # validate() also sends before_fit ... after_fit around one validation: nothing to save there

    def before_train(self):
        self.trained += 1

    def after_epoch(self):
        if not self.trained:
            return
        super().after_epoch()  # self.best, self.new_best: the same on every process (`ReduceMetrics`)
        value = float(self.recorder.values[-1][self.idx])
        if not is_writer():
            return
        if self.new_best:
            save_checkpoint(unwrap(self.learn.model), self.config, self.best_path, epoch=self.epoch,
                            monitor=self.monitor, value=value)
        # the callbacks that keep state; asked of the class, since a callback's attributes fall back to the learner's
        states = {type(cb).__name__: cb.state_dict() for cb in self.learn.cbs if hasattr(type(cb), "state_dict")}
        scaler = getattr(self.learn, "scaler", None)
        training = {"epochs_done": self.epoch + 1, "peak_lr": self.peak_lr,
                    "optimizer": weights_only_safe(self.learn.opt.state_dict()),
                    "scaler": scaler.state_dict() if scaler is not None else None, "callbacks": states,
                    "random": random_streams(self.learn)}
        save_checkpoint(unwrap(self.learn.model), self.config, self.last_path, training=training, epoch=self.epoch,
                        monitor=self.monitor, value=value)

    def after_fit(self):
        if self.trained:
            barrier()  # process 0 has written it
            if self.best_path.exists():
                unwrap(self.learn.model).load_state_dict(read_checkpoint(self.best_path)["model"])
        super().after_fit()


class ResumeFrom(Callback):
    """Continue a run from the ``last.pth`` its `Checkpoint` wrote: before the first epoch the weights, the
    optimiser's moments, the loss scaler, the callbacks' states (best score, weight average) and every random stream
    (`random_streams`) come back as they were, and the epoch counter carries on from ``epochs_done``. fastai's
    one-cycle schedule is a function of ``epoch / n_epoch`` and the patches of ``(seed, epoch)``, so the rest of the
    run is the one an uninterrupted run would have had: `fit` trains only the epochs left. Skipped during ``lr_find``.
    """

    order = TrainEvalCallback.order - 1  # before anything reads the epoch counter

    def __init__(self, saved: dict, epochs: int):
        self.saved, self.epochs = saved, epochs
        self.done, self.peak_lr = saved["training"]["epochs_done"], saved["training"]["peak_lr"]

    def before_fit(self):
        self.run, self.restored = not hasattr(self.learn, "lr_finder"), False

    def before_epoch(self):
        self.learn.epoch += self.done  # the loop counts the epochs left; the schedule and patches need the true one
        self.learn.n_epoch = self.epochs
        if not self.restored:
            training = self.saved["training"]
            unwrap(self.learn.model).load_state_dict(self.saved["model"])
            self.learn.opt.load_state_dict({"state": training["optimizer"]["state"],
                                            "hypers": L(training["optimizer"]["hypers"])})
            if training["scaler"] is not None and getattr(self.learn, "scaler", None) is not None:
                self.learn.scaler.load_state_dict(training["scaler"])
            for cb in self.learn.cbs:
                if type(cb).__name__ in training["callbacks"]:
                    cb.load_state_dict(training["callbacks"][type(cb).__name__])
            set_random_streams(self.learn, training["random"])
            self.restored = True

    def after_fit(self):
        self.learn.remove_cb(self)  # spent: a later fit starts from its own epoch 0


class DeterministicAlgorithms(Callback):
    """Deterministic kernels for the fit (``config.deterministic``): ``torch.use_deterministic_algorithms(True)``,
    cuDNN's deterministic algorithms and no autotuning; all three restored after the fit. An op without a
    deterministic implementation then raises an error naming it. `sr_learner` also sets ``CUBLAS_WORKSPACE_CONFIG``
    (cuBLAS needs it before its first call). See docs/training.md, "Reproducibility"."""

    order = FastPath.order + 1  # after FastPath has set cuDNN autotuning, so that it is off

    def before_fit(self):
        self.saved = (torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.deterministic,
                      torch.backends.cudnn.benchmark)
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False

    def after_fit(self):
        torch.use_deterministic_algorithms(self.saved[0])
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = self.saved[1:]


def epoch_logger(learn: Learner):
    """A fastai logger printing one plain line per epoch (instead of progress bars), skipping ``lr_find``."""

    def log(values):
        if hasattr(learn, "lr_finder"):
            return
        cells = [f"{n} {v:.5g}" if isinstance(v, float) else f"{n} {v}"
                 for n, v in zip(learn.recorder.metric_names, values)]
        print("  ".join(cells), flush=True)

    return log


class ResamplePatches(Callback):
    """Before each training epoch, move every training patch to a new random place: the sampler's patch places are
    a function of ``(seed, epoch)`` (`mrisr.data.pipeline.PatchSampler`)."""

    def __init__(self, sampler: PatchSampler):
        self.sampler = sampler

    def before_epoch(self):
        self.sampler.epoch = self.epoch
