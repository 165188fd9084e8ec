"""normbook: the companion package of the normbook textbook on normalization layers.

The library (what a user of the layers imports):

    functional  the normalizations as plain tensor code (signatures of torch.nn.functional)
    autograd    torch.autograd.Function versions with hand-derived backward passes
    nn          modules mirroring torch.nn (same arguments, parameters, buffers and state_dict)
    kernels     Triton kernels (LayerNorm, RMSNorm, channels-last BatchNorm) with functional's signatures
    distributed SyncBatchNorm on torch.distributed;  fold  BatchNorm folded into the preceding layer
    batchnorm   BatchNorm layers in a model: find, recompute population statistics, freeze
    timing      one stopwatch (torch.utils.benchmark.Timer), functions timed side by side
    data        Fashion-MNIST, found offline when possible, held in memory; the train/validation/test split
    config      FAST mode, device selection, seeding, CPU threads

``normbook.book`` holds what the book's chapters use (statistics of verdicts, models, training loop, runs and
sweeps, plots, exercises); the library never imports it.
"""
from . import autograd, batchnorm, config, functional, nn, timing
from .config import device, fast_or_full, is_fast, seed_everything
from .fold import fold_batchnorm

__all__ = ["autograd", "batchnorm", "config", "functional", "nn", "timing", "device", "fast_or_full", "is_fast",
           "seed_everything", "fold_batchnorm"]
__version__ = "0.1.0"
