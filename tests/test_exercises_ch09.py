"""Chapter 9's checkers accept a right implementation and reject a wrong one."""
import torch
import torch.nn.functional as F

from normbook.book.exercises import ch09


def attention(x, w_qkv, b_qkv, w_proj, b_proj, heads, scale=True):
    n, length, d = x.shape
    q, k, v = (x @ w_qkv.T + b_qkv).chunk(3, dim=-1)
    q, k, v = (t.reshape(n, length, heads, d // heads).transpose(1, 2) for t in (q, k, v))
    logits = q @ k.transpose(-2, -1)
    if scale:
        logits = logits / (d // heads) ** 0.5
    out = (logits.softmax(-1) @ v).transpose(1, 2).reshape(n, length, d)
    return out @ w_proj.T + b_proj


def test_attention_right():
    assert ch09.check_attention(attention, verbose=False)


def test_attention_wrong_no_scale():
    res = ch09.check_attention(lambda *a: attention(*a, scale=False), verbose=False)
    assert not res
    assert res.failures


def test_attention_wrong_heads_split():
    def wrong(x, w_qkv, b_qkv, w_proj, b_proj, heads):  # heads ignored: one head of width d
        return attention(x, w_qkv, b_qkv, w_proj, b_proj, 1)
    assert not ch09.check_attention(wrong, verbose=False)


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


def test_branch_scales():
    def rezero(x, fx, alpha):
        return x + alpha * fx

    def layer_scale(x, fx, lam):
        return x + lam * fx

    assert ch09.check_branch_scales(rezero, layer_scale, verbose=False)
    assert not ch09.check_branch_scales(lambda x, fx, a: a * (x + fx), layer_scale, verbose=False)
    assert not ch09.check_branch_scales(rezero, lambda x, fx, lam: x + fx, verbose=False)   # scale ignored


def test_checker_reports_exception():
    def broken(*args):
        raise RuntimeError("boom")
    res = ch09.check_z_loss(broken, verbose=False)
    assert not res and "boom" in res.failures[0][1]


def test_hints_do_not_print_the_formula():
    for check in (ch09.check_attention, ch09.check_z_loss):
        res = check(lambda *a: None, verbose=False)
        assert "@" not in res.hint and "sqrt" not in res.hint and "logsumexp" not in res.hint
