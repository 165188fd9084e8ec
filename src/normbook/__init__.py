"""normbook: the companion package of the normbook textbook on normalization layers.

    functional  the normalizations as plain tensor code (signatures of torch.nn.functional)
    autograd    torch.autograd.Function versions with hand-derived backward passes
    nn          modules mirroring torch.nn (same arguments, parameters, buffers and state_dict)
    data        Fashion-MNIST, found offline when possible, held in memory
    models      LeNet, a small CNN and deep MLPs, each taking a normalization factory
    config      FAST mode, device selection and seeding
"""
from . import autograd, config, functional, models, nn
from .config import device, fast_or_full, is_fast, seed_everything
from .fold import fold_batchnorm  # noqa: E402

__version__ = "0.1.0"
