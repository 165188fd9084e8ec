"""Chapter 2's checkers: a right implementation passes, wrong ones fail (and say where)."""
import torch
import torch.nn.functional as F

from normbook.book.exercises import ch02


def forward_cl_right(x, gamma, beta, eps):  # channels last: every dim but the last
    dims = tuple(range(x.dim() - 1))
    mean = x.mean(dims, keepdim=True)
    var = x.var(dims, unbiased=False, keepdim=True)
    return gamma * (x - mean) / torch.sqrt(var + eps) + beta


def forward_cl_unbiased(x, gamma, beta, eps):  # the unbiased variance: wrong for BN
    dims = tuple(range(x.dim() - 1))
    mean = x.mean(dims, keepdim=True)
    return gamma * (x - mean) / torch.sqrt(x.var(dims, keepdim=True) + eps) + beta


def forward_channels_first(x, gamma, beta, eps):  # the page's convention applied to a channels-last input
    dims = [0] + list(range(2, x.dim()))
    mean = x.mean(dims, keepdim=True)
    var = x.var(dims, unbiased=False, keepdim=True)
    return gamma * (x - mean) / torch.sqrt(var + eps) + beta


def forward_cl_torch(x, gamma, beta, eps):  # right numbers, but torch's layer does the work
    return F.batch_norm(x.movedim(-1, 1), None, None, gamma, beta, training=True, eps=eps).movedim(1, -1)


def _nd(dy, x, gamma, eps):
    dims = [0] + list(range(2, x.dim()))
    shape = [1, -1] + [1] * (x.dim() - 2)
    r = 1 / torch.sqrt(x.var(dims, unbiased=False, keepdim=True) + eps)
    x_hat = (x - x.mean(dims, keepdim=True)) * r
    return dims, shape, r, x_hat, dy.sum(dims), (dy * x_hat).sum(dims)


def backward_right(dy, x, gamma, eps):  # (N, C, *): n values per channel
    dims, shape, r, x_hat, dbeta, dgamma = _nd(dy, x, gamma, eps)
    n = x.numel() // x.shape[1]
    dx = gamma.reshape(shape) * r / n * (n * dy - dbeta.reshape(shape) - x_hat * dgamma.reshape(shape))
    return dx, dgamma, dbeta


def backward_n_is_batch_size(dy, x, gamma, eps):  # the (N, C) formula's n = N, wrong with positions
    dims, shape, r, x_hat, dbeta, dgamma = _nd(dy, x, gamma, eps)
    n = x.shape[0]
    dx = gamma.reshape(shape) * r / n * (n * dy - dbeta.reshape(shape) - x_hat * dgamma.reshape(shape))
    return dx, dgamma, dbeta


def backward_2d_only(dy, x, gamma, eps):  # the page's (N, C) backward
    n = x.shape[0]
    r = 1 / torch.sqrt(x.var(0, unbiased=False) + eps)
    x_hat = (x - x.mean(0)) * r
    dbeta, dgamma = dy.sum(0), (dy * x_hat).sum(0)
    return gamma * r / n * (n * dy - dbeta - x_hat * dgamma), dgamma, dbeta


def backward_no_variance_path(dy, x, gamma, eps):  # forgets the path through sigma^2
    dims, shape, r, x_hat, dbeta, dgamma = _nd(dy, x, gamma, eps)
    n = x.numel() // x.shape[1]
    return gamma.reshape(shape) * r / n * (n * dy - dbeta.reshape(shape)), dgamma, dbeta


def backward_autograd(dy, x, gamma, eps):  # right numbers, but autograd does the work
    x, gamma = x.requires_grad_(), gamma.requires_grad_()
    beta = torch.zeros_like(gamma, requires_grad=True)
    y = F.batch_norm(x, None, None, gamma, beta, training=True, eps=eps)
    return torch.autograd.grad(y, (x, gamma, beta), dy)


def test_forward_channels_last_checker(capsys):
    assert ch02.check_batch_norm_forward_channels_last(forward_cl_right)
    assert "PASS" in capsys.readouterr().out
    result = ch02.check_batch_norm_forward_channels_last(forward_cl_unbiased)
    assert not result and "FAIL" in capsys.readouterr().out and "biased" in result.hint
    result = ch02.check_batch_norm_forward_channels_last(forward_channels_first, verbose=False)
    assert not result and len(result.failures) >= 3  # right for (N, C) only


def test_forward_checker_rejects_torchs_batch_norm():
    result = ch02.check_batch_norm_forward_channels_last(forward_cl_torch, verbose=False)
    assert not result and "ForbiddenCall" in result.failures[0][1] and "batch_norm" in result.failures[0][1]
    assert ch02.check_batch_norm_forward_channels_last.forbids == ("torch-norm",)
    assert ch02.check_batch_norm_forward_channels_last(forward_cl_right, verbose=False)  # restored


def test_backward_checker(capsys):
    assert ch02.check_batch_norm_backward(backward_right)
    assert "PASS" in capsys.readouterr().out
    result = ch02.check_batch_norm_backward(backward_no_variance_path)
    assert not result and "FAIL" in capsys.readouterr().out
    assert any("dx" in message for _, message in result.failures)
    assert "dx =" not in result.hint  # the hint points at the terms, it does not print the formula


def test_backward_checker_asks_for_the_convolutional_case():
    result = ch02.check_batch_norm_backward(backward_n_is_batch_size, verbose=False)
    assert not result and all("dx" in message for _, message in result.failures)
    assert len(result.failures) == 4  # only the (N, C) case passes
    assert not ch02.check_batch_norm_backward(backward_2d_only, verbose=False)


def test_backward_checker_rejects_autograd():
    result = ch02.check_batch_norm_backward(backward_autograd, verbose=False)
    assert not result and all("without autograd" in message for _, message in result.failures)
    assert ch02.check_batch_norm_backward.forbids == ("autograd",)
    x = torch.randn(4, 2, requires_grad=True)  # autograd works again after the check
    (x ** 2).sum().backward()
    assert torch.equal(x.grad, 2 * x)


def test_backward_checker_reports_a_wrong_return():
    result = ch02.check_batch_norm_backward(lambda dy, x, g, eps: dy, verbose=False)
    assert not result and "tuple" in result.failures[0][1]


# --- the staged exercise: stage by stage against autograd -------------------------------------------------------

def _forward(x, eps):
    mu = x.mean(0)
    var = ((x - mu) ** 2).mean(0)
    return mu, var, (x - mu) / torch.sqrt(var + eps)


def stages_right(dy, x, gamma, eps):
    n = x.shape[0]
    mu, var, x_hat = _forward(x, eps)
    d_x_hat = gamma * dy
    d_var = (d_x_hat * (x - mu)).sum(0) * -0.5 * (var + eps) ** -1.5
    d_mu = -(d_x_hat / torch.sqrt(var + eps)).sum(0) + d_var * (-2 / n) * (x - mu).sum(0)
    dx = d_x_hat / torch.sqrt(var + eps) + d_var * 2 * (x - mu) / n + d_mu / n
    return d_x_hat, d_var, d_mu, dx


def stages_wrong_var(dy, x, gamma, eps):  # stage 2 forgets the -1/2 of the derivative of (var + eps)^(-1/2)
    d_x_hat, d_var, d_mu, dx = stages_right(dy, x, gamma, eps)
    return d_x_hat, -2 * d_var, d_mu, dx


def stages_mu_without_direct_path(dy, x, gamma, eps):  # stage 3 keeps only the path through var
    n = x.shape[0]
    mu, var, _ = _forward(x, eps)
    d_x_hat, d_var, _, dx = stages_right(dy, x, gamma, eps)
    return d_x_hat, d_var, d_var * (-2 / n) * (x - mu).sum(0), dx


def stages_first_two_only(dy, x, gamma, eps):  # a student half-way through
    d_x_hat, d_var, _, _ = stages_right(dy, x, gamma, eps)
    return d_x_hat, d_var, ..., ...


def stages_with_autograd(dy, x, gamma, eps):
    x = x.requires_grad_()
    mu, var, x_hat = _forward(x, eps)
    (dx,) = torch.autograd.grad((gamma * x_hat * dy).sum(), x)
    return gamma * dy, None, None, dx


def test_stages_checker_passes_the_right_derivation(capsys):
    result = ch02.check_backward_stages(stages_right)
    out = capsys.readouterr().out
    assert result and out.count("PASS  stage") == 4 and "PASS  backward_stages" in out


def test_stages_checker_names_the_first_wrong_stage(capsys):
    result = ch02.check_backward_stages(stages_wrong_var)
    out = capsys.readouterr().out
    assert not result and "PASS  stage 1" in out and "FAIL  stage 2" in out and "stage 3" not in out
    assert result.failures[0][0].startswith("stage 2 (d_var)") and result.hint == ch02.STAGES[1][2]
    result = ch02.check_backward_stages(stages_mu_without_direct_path, verbose=False)
    assert not result and result.failures[0][0].startswith("stage 3 (d_mu)")
    assert not any(label.startswith(("stage 1", "stage 2")) for label, _ in result.failures)


def test_stages_checker_reports_unwritten_stages():
    result = ch02.check_backward_stages(stages_first_two_only, verbose=False)
    assert not result and result.failures[0][0].startswith("stage 3")
    assert "not written yet" in result.failures[0][1]


def test_stages_checker_rejects_autograd():
    result = ch02.check_backward_stages(stages_with_autograd, verbose=False)
    assert not result and "without autograd" in result.failures[0][1]
