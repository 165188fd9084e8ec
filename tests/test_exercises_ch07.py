"""Chapter 7's checkers: a right implementation passes, a wrong one fails."""
import torch

from normbook.book.exercises import ch07


def frozen_right(x, weight, bias, running_mean, running_var, eps):
    shape = (1, -1, 1, 1)
    scale = weight.reshape(shape) / torch.sqrt(running_var.reshape(shape) + eps)
    return (x - running_mean.reshape(shape)) * scale + bias.reshape(shape)


def frozen_wrong(x, weight, bias, running_mean, running_var, eps):  # batch statistics: BN's training mode
    mu = x.mean((0, 2, 3), keepdim=True)
    var = x.var((0, 2, 3), unbiased=False, keepdim=True)
    return (x - mu) / torch.sqrt(var + eps) * weight.reshape(1, -1, 1, 1) + bias.reshape(1, -1, 1, 1)


def _x_hat(x, running_mean, running_var, eps, r_max, d_max, detach=True):
    dims = [0] + list(range(2, x.dim()))
    shape = [1, -1] + [1] * (x.dim() - 2)
    mu_b = x.mean(dims, keepdim=True)
    sigma_b = torch.sqrt(x.var(dims, unbiased=False, keepdim=True) + eps)
    sigma = torch.sqrt(running_var.reshape(shape) + eps)
    r = (sigma_b / sigma).clamp(1 / r_max, r_max)
    d = ((mu_b - running_mean.reshape(shape)) / sigma).clamp(-d_max, d_max)
    if detach:
        r, d = r.detach(), d.detach()
    return (x - mu_b) / sigma_b * r + d


def _update(x, running_mean, running_var, momentum, unbiased=True):
    dims = [0] + list(range(2, x.dim()))
    with torch.no_grad():
        running_mean.lerp_(x.mean(dims), momentum)
        running_var.lerp_(x.var(dims, unbiased=unbiased), momentum)


def renorm_step_right(x, running_mean, running_var, momentum, eps, r_max, d_max):
    x_hat = _x_hat(x, running_mean, running_var, eps, r_max, d_max)
    _update(x, running_mean, running_var, momentum)
    return x_hat


def renorm_step_no_detach(x, running_mean, running_var, momentum, eps, r_max, d_max):  # gradient through r, d
    x_hat = _x_hat(x, running_mean, running_var, eps, r_max, d_max, detach=False)
    _update(x, running_mean, running_var, momentum)
    return x_hat


def renorm_step_no_update(x, running_mean, running_var, momentum, eps, r_max, d_max):  # the page's function
    return _x_hat(x, running_mean, running_var, eps, r_max, d_max)


def renorm_step_biased(x, running_mean, running_var, momentum, eps, r_max, d_max):  # stores the biased variance
    x_hat = _x_hat(x, running_mean, running_var, eps, r_max, d_max)
    _update(x, running_mean, running_var, momentum, unbiased=False)
    return x_hat


def renorm_step_update_first(x, running_mean, running_var, momentum, eps, r_max, d_max):  # r, d from new buffers
    _update(x, running_mean, running_var, momentum)
    return _x_hat(x, running_mean, running_var, eps, r_max, d_max)


def renorm_step_by_the_book(x, running_mean, running_var, momentum, eps, r_max, d_max):
    from normbook.functional import batch_renorm
    return batch_renorm(x, running_mean, running_var, None, None, True, momentum, eps, r_max, d_max)


class WSRight(torch.nn.Linear):
    def __init__(self, in_features, out_features, bias=True, ws_eps=1e-5):
        super().__init__(in_features, out_features, bias=bias)
        self.ws_eps = ws_eps

    def forward(self, x):
        w = self.weight
        w = (w - w.mean(1, keepdim=True)) / torch.sqrt(w.var(1, unbiased=False, keepdim=True) + self.ws_eps)
        return torch.nn.functional.linear(x, w, self.bias)


class WSUnbiased(WSRight):  # the unbiased variance
    def forward(self, x):
        w = self.weight
        w = (w - w.mean(1, keepdim=True)) / torch.sqrt(w.var(1, keepdim=True) + self.ws_eps)
        return torch.nn.functional.linear(x, w, self.bias)


class WSInPlace(WSRight):  # standardizes the parameter itself
    def forward(self, x):
        with torch.no_grad():
            w = self.weight
            w.copy_((w - w.mean(1, keepdim=True)) / torch.sqrt(w.var(1, unbiased=False, keepdim=True)
                                                                 + self.ws_eps))
        return torch.nn.functional.linear(x, self.weight, self.bias)


class WSDetached(WSRight):  # no gradient through the standardization
    def forward(self, x):
        w = self.weight.detach()
        w = (w - w.mean(1, keepdim=True)) / torch.sqrt(w.var(1, unbiased=False, keepdim=True) + self.ws_eps)
        return torch.nn.functional.linear(x, w + 0 * self.weight, self.bias)


class WSOverColumns(WSRight):  # standardizes each input's column instead of each unit's row
    def forward(self, x):
        w = self.weight
        w = (w - w.mean(0, keepdim=True)) / torch.sqrt(w.var(0, unbiased=False, keepdim=True) + self.ws_eps)
        return torch.nn.functional.linear(x, w, self.bias)


class WSByTheBook(WSRight):
    def forward(self, x):
        from normbook.functional import weight_standardization
        return torch.nn.functional.linear(x, weight_standardization(self.weight, self.ws_eps), self.bias)


def frozen_by_torch(x, weight, bias, running_mean, running_var, eps):
    return torch.nn.functional.batch_norm(x, running_mean, running_var, weight, bias, training=False, eps=eps)


def test_frozen_bn_checker():
    assert ch07.check_frozen_bn_forward(frozen_right, verbose=False)
    result = ch07.check_frozen_bn_forward(frozen_wrong, verbose=False)
    assert not result and "running" in result.hint
    result = ch07.check_frozen_bn_forward(frozen_by_torch, verbose=False)
    assert not result and all("ForbiddenCall" in m for _, m in result.failures)
    assert ch07.check_frozen_bn_forward.forbids == ("torch-norm",)


def test_batch_renorm_step_checker():
    assert ch07.check_batch_renorm_step(renorm_step_right, verbose=False)
    result = ch07.check_batch_renorm_step(renorm_step_no_detach, verbose=False)
    assert not result and any("gradient" in message for _, message in result.failures)
    result = ch07.check_batch_renorm_step(renorm_step_no_update, verbose=False)
    assert not result and all("running_mean after the step" in m for _, m in result.failures)
    result = ch07.check_batch_renorm_step(renorm_step_biased, verbose=False)
    assert not result and all("running_var after the step" in m for _, m in result.failures)
    assert not ch07.check_batch_renorm_step(renorm_step_update_first, verbose=False)


def test_batch_renorm_step_checker_forbids_the_books_implementation():
    result = ch07.check_batch_renorm_step(renorm_step_by_the_book, verbose=False)
    assert not result and all("ForbiddenCall" in m for _, m in result.failures)
    assert "normbook.functional.batch_renorm" in ch07.check_batch_renorm_step.forbids
    assert ch07.check_batch_renorm_step(renorm_step_right, verbose=False)  # restored


def test_ws_linear_checker(capsys):
    assert ch07.check_ws_linear(WSRight)
    assert "PASS" in capsys.readouterr().out
    assert not ch07.check_ws_linear(WSUnbiased)
    assert "FAIL" in capsys.readouterr().out
    result = ch07.check_ws_linear(WSInPlace, verbose=False)
    assert not result and "stored weight" in result.failures[0][1]
    result = ch07.check_ws_linear(WSDetached, verbose=False)
    assert not result and all("gradient" in m for _, m in result.failures)
    assert not ch07.check_ws_linear(WSOverColumns, verbose=False)
    result = ch07.check_ws_linear(WSByTheBook, verbose=False)
    assert not result and all("ForbiddenCall" in m for _, m in result.failures)
    assert not ch07.check_ws_linear(lambda i, o, bias=True, ws_eps=1e-5: torch.nn.Conv1d(i, o, 1), verbose=False)


def test_hints_guide_without_the_formula():
    """A failing check's hint says where to look, not the reference formula (no assignments, no sqrt(...))."""
    results = [ch07.check_frozen_bn_forward(frozen_wrong, verbose=False),
               ch07.check_batch_renorm_step(renorm_step_no_detach, verbose=False),
               ch07.check_ws_linear(WSUnbiased, verbose=False)]
    for result in results:
        assert not result and result.hint
        assert "=" not in result.hint and "sqrt(" not in result.hint, result.hint
