"""Chapter 9's checkers accept a right implementation and reject a wrong one."""
import torch
import torch.nn.functional as F

from normbook.book.exercises import ch09


def causal_attention(x, w_qkv, b_qkv, w_proj, b_proj, heads, causal=True, scale=True):
    n, length, d = x.shape
    q, k, v = (x @ w_qkv.T + b_qkv).chunk(3, dim=-1)
    q, k, v = (t.reshape(n, length, heads, d // heads).transpose(1, 2) for t in (q, k, v))
    logits = q @ k.transpose(-2, -1)
    if scale:
        logits = logits / (d // heads) ** 0.5
    if causal:
        future = torch.ones(length, length, dtype=torch.bool).triu(1)
        logits = logits.masked_fill(future, float("-inf"))
    out = (logits.softmax(-1) @ v).transpose(1, 2).reshape(n, length, d)
    return out @ w_proj.T + b_proj


def test_causal_attention_right():
    assert ch09.check_causal_attention(causal_attention, verbose=False)


def test_causal_attention_wrong():
    for wrong in (lambda *a: causal_attention(*a, causal=False), lambda *a: causal_attention(*a, scale=False),
                  lambda x, wq, bq, wp, bp, heads: causal_attention(x, wq, bq, wp, bp, 1)):
        res = ch09.check_causal_attention(wrong, verbose=False)
        assert not res and res.failures


def test_causal_attention_by_torch_is_rejected():
    def by_sdpa(x, w_qkv, b_qkv, w_proj, b_proj, heads):
        n, length, d = x.shape
        q, k, v = (t.reshape(n, length, heads, d // heads).transpose(1, 2)
                   for t in (x @ w_qkv.T + b_qkv).chunk(3, dim=-1))
        out = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return out.transpose(1, 2).reshape(n, length, d) @ w_proj.T + b_proj
    res = ch09.check_causal_attention(by_sdpa, verbose=False)
    assert not res and "ForbiddenCall" in res.failures[0][1]


def loss_with_z(logits, targets, coefficient):
    return F.cross_entropy(logits, targets) + coefficient * torch.logsumexp(logits, -1).pow(2).mean()


def test_z_loss_right():
    assert ch09.check_z_loss(loss_with_z, verbose=False)


def test_z_loss_wrong():
    def unstable(logits, targets, coefficient):   # overflows for logits of size 1000
        log_z = torch.log(torch.exp(logits).sum(-1))
        return F.cross_entropy(logits, targets) + coefficient * log_z.pow(2).mean()

    def squares_the_mean(logits, targets, coefficient):
        return F.cross_entropy(logits, targets) + coefficient * torch.logsumexp(logits, -1).mean() ** 2
    for wrong in (unstable, squares_the_mean):
        res = ch09.check_z_loss(wrong, verbose=False)
        assert not res and res.failures


def test_scaled_residual():
    assert ch09.check_scaled_residual(lambda x, fx, scale: x + scale * fx, verbose=False)
    assert not ch09.check_scaled_residual(lambda x, fx, scale: scale * (x + fx), verbose=False)
    assert not ch09.check_scaled_residual(lambda x, fx, scale: x + fx, verbose=False)   # scale ignored


def test_checker_reports_exception():
    def broken(*args):
        raise RuntimeError("boom")
    res = ch09.check_z_loss(broken, verbose=False)
    assert not res and "boom" in res.failures[0][1]


def test_hints_do_not_print_the_formula():
    for check in (ch09.check_causal_attention, ch09.check_z_loss):
        res = check(lambda *a: None, verbose=False)
        assert "@" not in res.hint and "sqrt" not in res.hint and "logsumexp" not in res.hint
