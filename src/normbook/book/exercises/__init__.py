"""Checkers for the book's graded exercises, in the style of cs231n's assignments.

A student writes a function (a forward pass, a backward pass, an update rule, a fold) and hands it to a checker;
the checker runs it on several inputs against a reference (``torch.nn`` or ``normbook``), prints ``PASS`` or
``FAIL`` with the first mismatch and a hint, and returns a :class:`CheckResult` (truthy when it passed)::

    from normbook.exercises import ch02
    ch02.check_batch_norm_forward(my_batch_norm)

One module per chapter (``ch01`` ... ``ch10``); the shared machinery is here.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterable, List, Optional, Sequence, Tuple

import torch

__all__ = ["CheckResult", "compare", "compare_all", "run_check", "generator", "moments"]


@dataclass
class CheckResult:
    """What a checker found: ``passed``, the failed cases (label and message each) and the hint shown on failure."""

    name: str
    passed: bool
    cases: int
    failures: List[Tuple[str, str]] = field(default_factory=list)
    hint: str = ""

    def __bool__(self) -> bool:
        return self.passed

    def __str__(self) -> str:
        if self.passed:
            return f"PASS  {self.name} ({self.cases} case{'s' if self.cases != 1 else ''})"
        label, message = self.failures[0]
        more = f" (and {len(self.failures) - 1} more failing case(s))" if len(self.failures) > 1 else ""
        lines = [f"FAIL  {self.name}: {len(self.failures)} of {self.cases} cases failed{more}",
                 f"      first failure, {label}: {message}"]
        if self.hint:
            lines.append(f"      hint: {self.hint}")
        return "\n".join(lines)


def compare(got, expected, what: str = "output", rtol: float = 1e-5, atol: float = 1e-6) -> Optional[str]:
    """None if ``got`` matches ``expected`` (shape, then values within rtol/atol), else a message saying how not."""
    if got is None:
        return f"{what} is None (did the function forget to return it?)"
    if not isinstance(got, torch.Tensor):
        try:
            got = torch.as_tensor(got)
        except Exception:  # noqa: BLE001 - anything not tensor-like is a failure to report, not to raise
            return f"{what} is a {type(got).__name__}, expected a tensor"
    expected = torch.as_tensor(expected)
    if tuple(got.shape) != tuple(expected.shape):
        return f"{what} has shape {tuple(got.shape)}, expected {tuple(expected.shape)}"
    got64, exp64 = got.detach().to("cpu", torch.float64), expected.detach().to("cpu", torch.float64)
    if not torch.isfinite(got64).all() and torch.isfinite(exp64).all():
        return f"{what} contains NaN or inf"
    err = (got64 - exp64).abs()
    bound = atol + rtol * exp64.abs()
    if (err > bound).any():
        worst = int((err - bound).argmax())
        return (f"{what} differs: max abs error {err.max().item():.3g} "
                f"(at flat index {worst}: got {got64.flatten()[worst].item():.6g}, "
                f"expected {exp64.flatten()[worst].item():.6g})")
    return None


def generator(seed: int) -> torch.Generator:
    """A CPU generator seeded with ``seed``: checkers draw each case's inputs from one, so every case repeats."""
    return torch.Generator().manual_seed(seed)


def moments(t: torch.Tensor) -> Tuple[float, torch.Tensor, torch.Tensor]:
    """(count, mean, M2) of ``t`` over dim 0, M2 being the sum of squared deviations from the mean (the
    statistics Chan et al.'s parallel update merges); zeros for an empty ``t``."""
    if len(t) == 0:
        return 0.0, t.new_zeros(t.shape[1:]), t.new_zeros(t.shape[1:])
    mean = t.mean(0)
    return float(t.shape[0]), mean, ((t - mean) ** 2).sum(0)


def compare_all(got, expected: Sequence, names: Sequence[str], rtol: float = 1e-5,
                atol: float = 1e-6) -> Optional[str]:
    """For a function that returns several tensors: None if ``got`` is a tuple (or list) of ``len(names)`` values
    each matching its ``expected`` (see :func:`compare`), else the first problem, a wrong count first."""
    if not isinstance(got, (tuple, list)) or len(got) != len(names):
        return f"expected a tuple ({', '.join(names)})"
    for value, reference, what in zip(got, expected, names):
        message = compare(value, reference, what, rtol=rtol, atol=atol)
        if message is not None:
            return message
    return None


def run_check(name: str, cases: Iterable[Tuple[str, Callable[[], Optional[str]]]], hint: str = "",
              verbose: bool = True) -> CheckResult:
    """Run each ``(label, case)``; a case returns None when it passes and a message otherwise.

    An exception raised by the student's code counts as that case's failure (its type and message are shown),
    so one mistake does not hide the report of the others.
    """
    failures: List[Tuple[str, str]] = []
    count = 0
    for label, case in cases:
        count += 1
        try:
            message = case()
        except Exception as exc:  # noqa: BLE001 - the student's code may raise anything; report it
            message = f"raised {type(exc).__name__}: {exc}"
        if message is not None:
            failures.append((label, message))
    result = CheckResult(name=name, passed=not failures, cases=count, failures=failures, hint=hint)
    if verbose:
        print(result)
    return result
