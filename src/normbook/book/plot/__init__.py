"""The book's figures. Each module holds the figures of one part of the book; all are re-exported here, so
chapters call ``normbook.plot.<name>``. Every function returns a matplotlib Figure (and never calls show())."""
from .common import *  # noqa: F401,F403
from .signal import *  # noqa: F401,F403  chapter 1: activations, gradients, histograms per layer
from .batchnorm import *  # noqa: F401,F403  chapters 2-3: BN math, which elements share statistics
from .norms import *  # noqa: F401,F403  chapters 4-5: inference mode, the normalization cube
from .training import *  # noqa: F401,F403  chapter 6: learning curves and sweeps
from .practice import *  # noqa: F401,F403  chapter 7: fine-tuning, residual scale, small batches
from .kernels import *  # noqa: F401,F403  chapter 10: achieved bandwidth against a copy
from .transformers import *  # noqa: F401,F403  chapter 9: per-layer quantities, curves over seeds
from .distributed import *  # noqa: F401,F403  chapter 8: per-process BN vs SyncBatchNorm
