"""The networks the book trains and inspects.

Normalization enters every model through a *norm factory*: a callable ``norm(num_features, spatial_dims)``
returning a module, where ``spatial_dims`` is 0 after a Linear layer and 2 after a Conv2d. The factories below
build BatchNorm, GroupNorm or LayerNorm from either ``torch.nn`` or ``normbook.nn`` (same class names), so the same
architecture can be assembled from the book's layers and from PyTorch's and compared weight for weight.

Every factory and model here takes the layer library as ``layers`` and defaults to ``torch.nn`` (one default for
the whole module); pass ``layers=normbook.nn`` to build a network from the book's layers.
"""
from __future__ import annotations

from typing import Callable, Optional

import torch
from torch import nn

__all__ = ["NormFactory", "batch_norm", "group_norm", "layer_norm", "lenet", "small_cnn", "deep_mlp"]

NormFactory = Callable[[int, int], nn.Module]


def batch_norm(layers=nn, **kwargs) -> NormFactory:
    """BatchNorm1d after a Linear layer, BatchNorm2d after a Conv2d. ``layers`` is ``torch.nn`` or ``normbook.nn``."""
    def make(num_features: int, spatial_dims: int) -> nn.Module:
        cls = {0: layers.BatchNorm1d, 1: layers.BatchNorm1d, 2: layers.BatchNorm2d, 3: layers.BatchNorm3d}[spatial_dims]
        return cls(num_features, **kwargs)
    return make


def group_norm(num_groups: int = 32, layers=nn, **kwargs) -> NormFactory:
    """GroupNorm with ``min(num_groups, C)`` groups (Wu & He use 32 groups; narrow layers get fewer)."""
    def make(num_features: int, spatial_dims: int) -> nn.Module:
        groups = min(num_groups, num_features)
        while num_features % groups:  # the largest divisor of C not above num_groups
            groups -= 1
        return layers.GroupNorm(groups, num_features, **kwargs)
    return make


def layer_norm(layers=nn, **kwargs) -> NormFactory:
    """LayerNorm over every feature of one example: LayerNorm(C) after Linear, GroupNorm(1, C) after a conv
    (one group normalizes over (C, H, W) per example, which is LayerNorm for images, as in Wu & He 2018)."""
    def make(num_features: int, spatial_dims: int) -> nn.Module:
        if spatial_dims == 0:
            return layers.LayerNorm(num_features, **kwargs)
        return layers.GroupNorm(1, num_features, **kwargs)
    return make


def _maybe(norm: Optional[NormFactory], num_features: int, spatial_dims: int) -> list:
    return [norm(num_features, spatial_dims)] if norm is not None else []


def lenet(norm: Optional[NormFactory] = None, *, activation: Callable[[], nn.Module] = nn.Sigmoid,
          num_classes: int = 10, padding: Optional[int] = None) -> nn.Sequential:
    """d2l's LeNet-5 for 1x28x28 inputs: (N, 1, 28, 28) -> (N, num_classes) logits.

    Without ``norm`` this is d2l's LeNet (first conv padded by 2, 16*5*5 = 400 flattened features). With ``norm``
    it is d2l's BatchNorm LeNet: no padding (16*4*4 = 256 features) and a norm layer after every conv and every
    hidden linear layer, before the activation. ``padding`` overrides the first conv's padding.
    """
    if padding is None:
        padding = 2 if norm is None else 0
    side = ((28 + 2 * padding - 4) // 2 - 4) // 2
    bias = norm is None  # a bias right before a normalization is cancelled by its mean subtraction
    return nn.Sequential(
        nn.Conv2d(1, 6, kernel_size=5, padding=padding, bias=bias), *_maybe(norm, 6, 2), activation(),
        nn.AvgPool2d(kernel_size=2, stride=2),
        nn.Conv2d(6, 16, kernel_size=5, bias=bias), *_maybe(norm, 16, 2), activation(),
        nn.AvgPool2d(kernel_size=2, stride=2),
        nn.Flatten(),
        nn.Linear(16 * side * side, 120, bias=bias), *_maybe(norm, 120, 0), activation(),
        nn.Linear(120, 84, bias=bias), *_maybe(norm, 84, 0), activation(),
        nn.Linear(84, num_classes),
    )


def small_cnn(norm: Optional[NormFactory] = None, *, width: int = 32, num_classes: int = 10,
              activation: Callable[[], nn.Module] = nn.ReLU) -> nn.Sequential:
    """A small ReLU CNN for 1x28x28 inputs: three 3x3 conv blocks (width, 2*width, 2*width channels, each
    conv -> norm -> ReLU, the first two followed by 2x2 max pooling), global average pooling, a linear head."""
    bias = norm is None
    c1, c2 = width, 2 * width
    return nn.Sequential(
        nn.Conv2d(1, c1, 3, padding=1, bias=bias), *_maybe(norm, c1, 2), activation(), nn.MaxPool2d(2),
        nn.Conv2d(c1, c2, 3, padding=1, bias=bias), *_maybe(norm, c2, 2), activation(), nn.MaxPool2d(2),
        nn.Conv2d(c2, c2, 3, padding=1, bias=bias), *_maybe(norm, c2, 2), activation(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c2, num_classes),
    )


def deep_mlp(depth: int = 100, width: int = 256, *, in_features: Optional[int] = None, init: str = "default",
             norm: Optional[NormFactory] = None, activation: Callable[[], nn.Module] = nn.ReLU,
             bias: Optional[bool] = None) -> nn.Sequential:
    """``depth`` blocks of Linear(width) [-> norm] -> activation, for watching signals propagate.

    ``init``: "default" (PyTorch's Linear init, U(-1/sqrt(fan_in), 1/sqrt(fan_in))), "normal" (N(0, 1) weights),
    "kaiming" (N(0, 2/fan_in), He et al. 2015), "xavier" (Glorot normal), or a float s for N(0, s^2).
    Biases (kept only without ``norm`` unless ``bias`` says otherwise) start at zero except under "default".
    """
    in_features = width if in_features is None else in_features
    if bias is None:
        bias = norm is None
    layers: list = []
    for i in range(depth):
        linear = nn.Linear(in_features if i == 0 else width, width, bias=bias)
        _init_linear(linear, init)
        layers += [linear, *_maybe(norm, width, 0), activation()]
    return nn.Sequential(*layers)


def _init_linear(linear: nn.Linear, init) -> None:
    if init == "default":
        return
    with torch.no_grad():
        if init == "normal":
            linear.weight.normal_(0.0, 1.0)
        elif init == "kaiming":
            nn.init.kaiming_normal_(linear.weight, nonlinearity="relu")
        elif init == "xavier":
            nn.init.xavier_normal_(linear.weight)
        elif isinstance(init, (int, float)) and not isinstance(init, bool):
            linear.weight.normal_(0.0, float(init))
        else:
            raise ValueError(f"unknown init {init!r}: expected 'default', 'normal', 'kaiming', 'xavier' or a float "
                             "standard deviation")
        if linear.bias is not None:
            linear.bias.zero_()


class BasicBlock(nn.Module):
    """A residual block (He et al. 2016): ``out = relu(x + branch(x))`` with branch = conv3x3 -> norm -> ReLU ->
    conv3x3 -> norm, width ``channels`` kept (no downsampling). ``norm=None`` gives a block without normalization
    (convs with biases). ``zero_init=True`` sets the last norm's weight (gamma) to zero (Goyal et al. 2017), so the
    block starts as the identity map (followed by a ReLU). Shapes: (N, C, H, W) -> (N, C, H, W)."""

    def __init__(self, channels: int, norm: Optional[NormFactory] = None, *, zero_init: bool = False) -> None:
        super().__init__()
        bias = norm is None
        self.branch = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=1, bias=bias), *_maybe(norm, channels, 2), nn.ReLU(),
            nn.Conv2d(channels, channels, 3, padding=1, bias=bias), *_maybe(norm, channels, 2))
        if zero_init:
            last = self.branch[-1]
            if norm is None or getattr(last, "weight", None) is None:
                raise ValueError("zero_init needs a norm with an affine weight at the end of the branch")
            nn.init.zeros_(last.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(x + self.branch(x))


def small_resnet(norm: Optional[NormFactory] = None, *, width: int = 16, blocks: int = 4, num_classes: int = 10,
                 zero_init: bool = False) -> nn.Sequential:
    """A small ResNet for 1x28x28 inputs: a stem (conv3x3 to ``width`` channels -> norm -> ReLU -> 2x2 max
    pooling, 14x14), ``blocks`` :class:`BasicBlock` of constant width, global average pooling and a linear head.
    (N, 1, 28, 28) -> (N, num_classes). ``zero_init``: the last gamma of every residual branch starts at 0."""
    bias = norm is None
    return nn.Sequential(
        nn.Conv2d(1, width, 3, padding=1, bias=bias), *_maybe(norm, width, 2), nn.ReLU(), nn.MaxPool2d(2),
        *[BasicBlock(width, norm, zero_init=zero_init) for _ in range(blocks)],
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, num_classes))


__all__ += ["BasicBlock", "small_resnet"]


# ---------------------------------------------------------------- chapter 9: a small Vision Transformer
class TokenBatchNorm(nn.Module):
    """BatchNorm over tokens: input (N, L, d), one statistic per feature over all N*L tokens of the batch."""

    def __init__(self, d: int, layers=nn, **kwargs) -> None:
        super().__init__()
        self.bn = layers.BatchNorm1d(d, **kwargs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(x.transpose(1, 2)).transpose(1, 2)


def token_norm(kind: str, d: int, layers=nn, *, bias: bool = True, eps: Optional[float] = None) -> nn.Module:
    """The normalization of one token vector of width d: "ln" (LayerNorm; ``bias=False`` drops its shift, as in
    nanoGPT), "rms" (RMSNorm), "bn" (TokenBatchNorm). ``eps`` None keeps the layer's default."""
    kwargs = {} if eps is None else {"eps": eps}
    if kind == "ln":
        return layers.LayerNorm(d, bias=bias, **kwargs) if not bias else layers.LayerNorm(d, **kwargs)
    if kind == "rms":
        return layers.RMSNorm(d, **kwargs)
    if kind == "bn":
        return TokenBatchNorm(d, layers, **kwargs)
    raise ValueError(f"norm must be 'ln', 'rms' or 'bn', got {kind!r}")


class SelfAttention(nn.Module):
    """Multi-head self-attention; with ``qk_norm`` a LayerNorm (or RMSNorm) of each head's queries and keys before
    the dot product; with ``softcap`` c the logits are soft-capped, ``c * tanh(logits / c)``, before the softmax
    (as in Gemma 2). ``max_logit`` holds the largest |logit| the softmax received in the last forward pass,
    ``max_raw_logit`` the largest |q.k|/sqrt(d_head) before the cap."""

    def __init__(self, d: int, heads: int, qk_norm: bool = False, qk_kind: str = "ln", layers=nn, *,
                 softcap: Optional[float] = None) -> None:
        super().__init__()
        if d % heads:
            raise ValueError(f"d ({d}) must be divisible by heads ({heads})")
        if softcap is not None and not softcap > 0:
            raise ValueError(f"softcap must be a positive number or None, got {softcap!r}")
        self.heads, self.dh = heads, d // heads
        self.qkv = nn.Linear(d, 3 * d)
        self.proj = nn.Linear(d, d)
        self.q_norm = token_norm(qk_kind, self.dh, layers) if qk_norm else nn.Identity()
        self.k_norm = token_norm(qk_kind, self.dh, layers) if qk_norm else nn.Identity()
        self.softcap = softcap
        self.max_logit = self.max_raw_logit = float("nan")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, length, d = x.shape
        q, k, v = self.qkv(x).reshape(n, length, 3, self.heads, self.dh).permute(2, 0, 3, 1, 4)
        q, k = self.q_norm(q), self.k_norm(k)               # (N, h, L, d_head)
        logits = q @ k.transpose(-2, -1) / self.dh ** 0.5
        self.max_raw_logit = float(logits.detach().abs().max())
        if self.softcap is not None:
            logits = self.softcap * torch.tanh(logits / self.softcap)
        self.max_logit = float(logits.detach().abs().max())
        out = logits.softmax(-1) @ v
        return self.proj(out.transpose(1, 2).reshape(n, length, d))


class BranchScale(nn.Module):
    """A learnable scale on a residual branch's output: "rezero" (one scalar, initialized to 0: Bachlechner et al.
    2021) or "layerscale" (one per feature, initialized to ``init``: Touvron et al. 2021, CaiT)."""

    def __init__(self, d: int, kind: str, init: Optional[float] = None) -> None:
        super().__init__()
        if kind == "rezero":
            self.scale = nn.Parameter(torch.full((), 0.0 if init is None else float(init)))
        elif kind == "layerscale":
            self.scale = nn.Parameter(torch.full((d,), 0.1 if init is None else float(init)))
        else:
            raise ValueError(f"branch_scale must be 'rezero', 'layerscale' or None, got {kind!r}")
        self.kind = kind

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale


PLACEMENTS = ("pre", "post", "sandwich", "deepnorm", "none")


class TransformerBlock(nn.Module):
    """One Transformer encoder block, with F the attention branch and then the MLP branch:

    - ``placement="pre"``: x + F(norm(x)) (the residual path carries no norm);
    - ``"post"``: norm(x + F(x)) (the norm sits on the residual path, after the addition);
    - ``"sandwich"``: x + norm'(F(norm(x))) (pre-LN plus a norm at the end of each branch: Ding et al. 2021);
    - ``"deepnorm"``: norm(alpha * x + F(x)) (post-LN with the residual up-weighted: Wang et al. 2022);
    - ``"none"``: x + F(x), no normalization (with ``branch_scale="rezero"`` this is ReZero).

    ``branch_scale`` ("rezero", "layerscale" or None) multiplies each branch's output by a learnable scale
    initialized to ``scale_init``. ``softcap``: soft-capped attention logits; ``norm_bias``/``eps``: the norms'."""

    def __init__(self, d: int, heads: int, norm: str = "ln", placement: str = "pre", qk_norm: bool = False,
                 mlp_ratio: int = 4, layers=nn, *, branch_scale: Optional[str] = None,
                 scale_init: Optional[float] = None, alpha: float = 1.0, softcap: Optional[float] = None,
                 norm_bias: bool = True, eps: Optional[float] = None) -> None:
        super().__init__()
        if placement not in PLACEMENTS:
            raise ValueError(f"placement must be one of {PLACEMENTS}, got {placement!r}")
        self.placement, self.alpha = placement, alpha

        def make_norm():
            return nn.Identity() if placement == "none" else token_norm(norm, d, layers, bias=norm_bias, eps=eps)

        def make_scale():
            return nn.Identity() if branch_scale is None else BranchScale(d, branch_scale, scale_init)
        self.norm1 = make_norm()
        self.attn = SelfAttention(d, heads, qk_norm, "rms" if norm == "rms" else "ln", layers, softcap=softcap)
        self.norm2 = make_norm()
        self.mlp = nn.Sequential(nn.Linear(d, mlp_ratio * d), nn.GELU(), nn.Linear(mlp_ratio * d, d))
        if placement == "sandwich":
            self.out_norm1, self.out_norm2 = make_norm(), make_norm()
        if branch_scale is not None:
            self.scale1, self.scale2 = make_scale(), make_scale()

    def _out(self, name: str, value: torch.Tensor) -> torch.Tensor:
        module = getattr(self, name, None)
        return value if module is None else module(value)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.placement in ("pre", "sandwich", "none"):
            a = self._out("out_norm1", self.attn(self.norm1(x)))
            x = x + self._out("scale1", a)
            m = self._out("out_norm2", self.mlp(self.norm2(x)))
            return x + self._out("scale2", m)
        def residual(t):                                  # DeepNorm up-weights the residual by alpha
            return self.alpha * t if self.placement == "deepnorm" else t
        x = self.norm1(residual(x) + self._out("scale1", self.attn(x)))
        return self.norm2(residual(x) + self._out("scale2", self.mlp(x)))


def patchify(x: torch.Tensor, patch: int) -> torch.Tensor:
    """(N, C, H, W) images -> (N, L, C*patch*patch) tokens, L = (H/patch)(W/patch), row-major patch order."""
    n, c, h, w = x.shape
    x = x.reshape(n, c, h // patch, patch, w // patch, patch).permute(0, 2, 4, 1, 3, 5)
    return x.reshape(n, (h // patch) * (w // patch), c * patch * patch)


INITS = ("xavier", "deepnorm", "tfixup")


class ViT(nn.Module):
    """A small Vision Transformer: linear patch embedding + learned positions, ``depth`` blocks, a final norm in
    the pre-norm and sandwich placements (post-norm blocks already end in one; ``"none"`` has no norm at all),
    mean over tokens, a linear head. Linear weights Xavier-uniform, biases zero (the initialization Xiong et al.
    2020 analyse).

    ``init="deepnorm"`` (with ``placement="deepnorm"``, the default for it): DeepNet's encoder rule for N blocks,
    alpha = (2N)^(1/4) on the residual and the weights of the values, the attention output and the MLP
    initialized with Xavier gain beta = (8N)^(-1/4) (Wang et al. 2022). ``init="tfixup"``: T-Fixup's encoder rule
    (Huang et al. 2020), the same weights scaled by 0.67 N^(-1/4), meant for ``placement="none"`` (no norm,
    no warmup). Other keyword arguments go to every :class:`TransformerBlock`."""

    def __init__(self, norm: str = "ln", placement: str = "pre", qk_norm: bool = False, *, d: int = 64,
                 depth: int = 4, heads: int = 4, patch: int = 7, image_size: int = 28, in_channels: int = 1,
                 num_classes: int = 10, layers=nn, init: Optional[str] = None, branch_scale: Optional[str] = None,
                 scale_init: Optional[float] = None, softcap: Optional[float] = None, norm_bias: bool = True,
                 eps: Optional[float] = None) -> None:
        super().__init__()
        init = ("deepnorm" if placement == "deepnorm" else "xavier") if init is None else init
        if init not in INITS:
            raise ValueError(f"init must be one of {INITS}, got {init!r}")
        self.patch = patch
        tokens = (image_size // patch) ** 2
        alpha = (2 * depth) ** 0.25 if placement == "deepnorm" else 1.0
        self.embed = nn.Linear(in_channels * patch * patch, d)
        self.pos = nn.Parameter(torch.randn(1, tokens, d) * 0.02)
        self.blocks = nn.ModuleList(
            TransformerBlock(d, heads, norm, placement, qk_norm, layers=layers, branch_scale=branch_scale,
                             scale_init=scale_init, alpha=alpha, softcap=softcap, norm_bias=norm_bias, eps=eps)
            for _ in range(depth))
        self.final_norm = (token_norm(norm, d, layers, bias=norm_bias, eps=eps)
                           if placement in ("pre", "sandwich") else nn.Identity())
        self.head = nn.Linear(d, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)
        if init != "xavier":
            gain = (8 * depth) ** -0.25 if init == "deepnorm" else 0.67 * depth ** -0.25
            with torch.no_grad():
                for block in self.blocks:
                    block.attn.qkv.weight[2 * d:].mul_(gain)     # the values' third of the projection
                    block.attn.proj.weight.mul_(gain)
                    block.mlp[0].weight.mul_(gain)
                    block.mlp[2].weight.mul_(gain)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.embed(patchify(x, self.patch)) + self.pos
        for block in self.blocks:
            h = block(h)
        return self.head(self.final_norm(h).mean(1))


def vit(norm: str = "ln", placement: str = "pre", qk_norm: bool = False, *, layers=nn, **kwargs) -> ViT:
    """A :class:`ViT` whose LayerNorm/RMSNorm/BatchNorm1d come from ``layers`` (``torch.nn`` or ``normbook.nn``)."""
    return ViT(norm, placement, qk_norm, layers=layers, **kwargs)


__all__ += ["TokenBatchNorm", "token_norm", "SelfAttention", "BranchScale", "TransformerBlock", "patchify", "ViT",
            "vit", "PLACEMENTS", "INITS"]
