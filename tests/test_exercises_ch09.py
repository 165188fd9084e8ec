"""Chapter 9's checkers accept a right implementation and reject a wrong one."""
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


def test_deep_norm_right():
    def deep_norm(x, fx, alpha, weight, bias, eps):
        return F.layer_norm(alpha * x + fx, x.shape[-1:], weight, bias, eps)
    assert ch09.check_deep_norm(deep_norm, verbose=False)


def test_deep_norm_wrong_scales_branch():
    def wrong(x, fx, alpha, weight, bias, eps):
        return F.layer_norm(x + alpha * fx, x.shape[-1:], weight, bias, eps)
    assert not ch09.check_deep_norm(wrong, verbose=False)


def test_checker_reports_exception():
    def broken(*args):
        raise RuntimeError("boom")
    res = ch09.check_deep_norm(broken, verbose=False)
    assert not res and "boom" in res.failures[0][1]
