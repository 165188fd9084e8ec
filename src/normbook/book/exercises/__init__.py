"""Checkers for the book's graded exercises, in the style of cs231n's assignments.

A student writes a function (a forward pass, a backward pass, an update rule, a fold) and hands it to a checker;
the checker runs it on several inputs against a reference (``torch.nn`` or ``normbook``), prints ``PASS`` or
``FAIL`` with the first mismatch and a hint, and returns a :class:`CheckResult` (truthy when it passed)::

    from normbook.book.exercises import ch02
    ch02.check_batch_norm_backward(my_backward)

One module per chapter (``ch01`` ... ``ch10``); the shared machinery is here:

- :func:`run_check`, :func:`compare`, :func:`compare_all`: run cases, compare values, report the first mismatch.
- :func:`forbidding` / :func:`guard`: run the student's function with functions the exercise rules out (torch's
  normalization layers, autograd, the book's own implementation) patched to raise :class:`ForbiddenCall`, so that
  "without autograd" or "without torch's layer" is enforced, not only asked.
- :func:`private_copy` / :func:`changed`: the checker keeps its own copy of what it hands the student (a module,
  tensors), computes the reference from that copy, and can say when the student's function changed its input.
- :func:`hint_leaks`: the fragments of a reference formula that a hint would print (the test over every checker's
  hint uses it: a hint says where to look, never the answer).
"""
from __future__ import annotations

import ast
import contextlib
import copy
import functools
import importlib
import re
from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator, List, Optional, Sequence, Tuple

import torch

__all__ = ["CheckResult", "compare", "compare_all", "run_check", "generator", "moments", "ForbiddenCall",
           "TORCH_NORM", "AUTOGRAD", "forbidding", "guard", "private_copy", "changed", "formula_fragments",
           "hint_leaks"]


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


# --------------------------------------------------------------------------- what an exercise rules out

class ForbiddenCall(RuntimeError):
    """Raised when the student's function calls a function that the exercise rules out."""


#: torch's normalization layers, at every level a student can reach them: the functional API, the ``torch.*``
#: operators it calls (so ``from torch.nn.functional import batch_norm`` bound before the check is caught too), and,
#: through :func:`forbidding`'s dispatch mode, any ATen normalization kernel (``torch.ops.aten.native_batch_norm``).
#: ``torch.nn.BatchNorm2d`` & co. call ``F.batch_norm``, so the modules are covered.
TORCH_NORM: Tuple[str, ...] = (
    "torch.nn.functional.batch_norm", "torch.nn.functional.layer_norm", "torch.nn.functional.group_norm",
    "torch.nn.functional.instance_norm", "torch.nn.functional.rms_norm", "torch.nn.functional.local_response_norm",
    "torch.batch_norm", "torch.layer_norm", "torch.group_norm", "torch.instance_norm", "torch.rms_norm",
    "torch.native_batch_norm", "torch.native_layer_norm", "torch.native_group_norm",
    "aten:(batch|layer|group|instance|rms)_norm",
)

#: autograd: ``torch.autograd.grad``, ``backward`` (function and method), ``torch.autograd.functional`` and
#: ``torch.func`` all end in the engine call patched here, whichever name the student imported.
AUTOGRAD: Tuple[str, ...] = (
    "torch.autograd.grad", "torch.autograd.backward", "torch.Tensor.backward",
    "torch.autograd._engine_run_backward", "torch.autograd.graph._engine_run_backward",
)


def _resolve(dotted: str):
    """(owner, attribute name, current value) of ``a.b.c``, importing the longest importable module prefix;
    None when the name does not exist in this version of torch (or of the package)."""
    parts = dotted.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        try:
            owner = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        try:
            for name in parts[cut:-1]:
                owner = getattr(owner, name)
            return owner, parts[-1], getattr(owner, parts[-1])
        except AttributeError:
            return None
    return None


def _raiser(name: str, why: str):
    def forbidden(*args, **kwargs):
        raise ForbiddenCall(f"the exercise asks for this {why}: your function called {name}")
    forbidden.__name__ = f"forbidden_{name.rsplit('.', 1)[-1]}"
    return forbidden


class _ForbidOps:
    """A ``TorchDispatchMode`` (built on first use) that raises on ATen operators whose name matches a pattern."""

    _cls = None

    @classmethod
    def make(cls, pattern: "re.Pattern[str]", why: str):
        if cls._cls is None:
            from torch.utils._python_dispatch import TorchDispatchMode

            class Mode(TorchDispatchMode):
                def __init__(self, pattern, why):
                    super().__init__()
                    self.pattern, self.why = pattern, why

                def __torch_dispatch__(self, func, types, args=(), kwargs=None):
                    name = func.overloadpacket.__name__
                    if self.pattern.search(name):
                        raise ForbiddenCall(f"the exercise asks for this {self.why}: your function called "
                                            f"torch.ops.aten.{name}")
                    return func(*args, **(kwargs or {}))

            cls._cls = Mode
        return cls._cls(pattern, why)


@contextlib.contextmanager
def forbidding(*names: str, why: str = "without them") -> Iterator[None]:
    """Within the block, each named function raises :class:`ForbiddenCall` when called.

    ``names`` are dotted paths (``"torch.nn.functional.batch_norm"``, ``"normbook.fold.fold_batchnorm"``) or
    ``"aten:<regex>"`` for ATen operators (caught below Python by a dispatch mode), or the groups
    :data:`TORCH_NORM` and :data:`AUTOGRAD` unpacked. Names that do not exist here are skipped. Everything is
    restored on exit, also when the block raises. Wrap only the student's call: the checker computes its
    reference outside the block.
    """
    patches, patterns = [], []
    for name in names:
        if name.startswith("aten:"):
            patterns.append(name[len("aten:"):])
            continue
        found = _resolve(name)
        if found is not None:
            patches.append(found)
    with contextlib.ExitStack() as stack:
        for owner, attr, original in patches:
            label = f"{getattr(owner, '__name__', type(owner).__name__)}.{attr}"
            setattr(owner, attr, _raiser(label if not label.startswith("_") else attr, why))
            stack.callback(setattr, owner, attr, original)
        if patterns:
            stack.enter_context(_ForbidOps.make(re.compile("|".join(f"(?:{p})" for p in patterns)), why))
        yield


def guard(student_fn: Callable, *names: str, why: str = "without them") -> Callable:
    """``student_fn`` wrapped so that each call runs under :func:`forbidding` ``(*names)``::

        student_fn = guard(student_fn, *TORCH_NORM, why="computed by hand, not by torch's layer")
    """
    @functools.wraps(student_fn)
    def guarded(*args, **kwargs):
        with forbidding(*names, why=why):
            return student_fn(*args, **kwargs)
    return guarded


# --------------------------------------------------------------------------- the checker's own copy

def private_copy(obj):
    """A deep copy the student's function never sees: tensors detached and cloned, modules and containers copied.
    Build the reference from it (or compare against it), hand the student the original."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().clone()
    return copy.deepcopy(obj)


def _state(obj) -> dict:
    if isinstance(obj, torch.nn.Module):
        return {k: v for k, v in obj.state_dict().items()} | {"training": torch.tensor(obj.training)}
    if isinstance(obj, torch.Tensor):
        return {"": obj}
    return {}


def changed(original, kept, what: str = "input") -> Optional[str]:
    """None if ``original`` (what the student got) still equals ``kept`` (its :func:`private_copy` taken before
    the call), else a message naming what the student's function changed (a buffer, a parameter, a mode)."""
    now, before = _state(original), _state(kept)
    for key in sorted(set(now) | set(before)):
        a, b = now.get(key), before.get(key)
        if a is None or b is None or a.shape != b.shape or not torch.equal(a.detach().cpu(), b.detach().cpu()):
            part = f" ({key})" if key else ""
            return f"your function changed its {what}{part}; it must leave its inputs as they were"
    return None


# --------------------------------------------------------------------------- hints that do not give the answer

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_']*")
_TOKEN = re.compile(r"[A-Za-z_][A-Za-z0-9_']*|\d+(?:\.\d+)?(?:e-?\d+)?|\*\*|//|[-+*/()=@^,\[\]]")
_OPERATORS = {"+", "-", "*", "/", "**", "//", "@"}
#: method calls that change a tensor's shape, type or place, not its values: a hint may leave them out
_SHAPE_ONLY = {"reshape", "view", "view_as", "reshape_as", "unsqueeze", "squeeze", "expand", "expand_as", "flatten",
               "contiguous", "double", "float", "half", "to", "detach", "clone", "item", "cpu", "cuda"}
_MODULES = {"torch", "F", "nn", "math", "np", "numpy"}


class _Normalize(ast.NodeTransformer):
    """Code as a hint would write it: ``torch.sqrt(a)`` -> ``sqrt(a)``, ``x.mean(dim=0)`` -> ``mean(x)``,
    ``bn.running_var`` -> ``running_var``, ``t.reshape(shape)`` -> ``t``; keyword arguments dropped."""

    def visit_Call(self, node):
        args = [self.visit(a) for a in node.args]
        func = node.func
        if isinstance(func, ast.Attribute):
            owner = func.value
            if func.attr in _SHAPE_ONLY:
                return self.visit(owner)
            if isinstance(owner, ast.Name) and owner.id in _MODULES:
                return ast.copy_location(ast.Call(func=ast.Name(id=func.attr, ctx=ast.Load()), args=args,
                                                  keywords=[]), node)
            return ast.copy_location(ast.Call(func=ast.Name(id=func.attr, ctx=ast.Load()),
                                              args=[self.visit(owner)] + args, keywords=[]), node)
        return ast.copy_location(ast.Call(func=self.visit(func), args=args, keywords=[]), node)

    def visit_Attribute(self, node):
        return ast.copy_location(ast.Name(id=node.attr, ctx=ast.Load()), node)


def _abstract(tokens: Sequence[str]) -> List[str]:
    """Names become ``v`` (a run of names, as in prose, becomes one); numbers and operators stay."""
    out: List[str] = []
    for tok in tokens:
        tok = "v" if _NAME.fullmatch(tok) else tok
        if not (tok == "v" and out and out[-1] == "v"):
            out.append(tok)
    return out


def _longest_common(a: Sequence[str], b: Sequence[str]) -> List[str]:
    best, end, prev = 0, 0, [0] * (len(b) + 1)
    for i in range(1, len(a) + 1):
        cur = [0] * (len(b) + 1)
        for j in range(1, len(b) + 1):
            if a[i - 1] == b[j - 1]:
                cur[j] = prev[j - 1] + 1
                if cur[j] > best:
                    best, end = cur[j], i
        prev = cur
    common = list(a[end - best:end])
    while common and common[0] in _OPERATORS | {","}:
        common.pop(0)
    while common and common[-1] in _OPERATORS | {","}:
        common.pop()
    return common


def formula_fragments(code: str) -> List[List[str]]:
    """The right-hand sides of ``code`` (a reference solution: assignments, returns, expressions), each as tokens
    of its normalized form (see ``_Normalize``). Code that does not parse yields nothing."""
    try:
        tree = _Normalize().visit(ast.parse(code))
    except SyntaxError:
        return []
    out = []
    for node in ast.walk(tree):
        value = getattr(node, "value", None) if isinstance(node, (ast.Assign, ast.AugAssign, ast.Return,
                                                                  ast.Expr, ast.AnnAssign)) else None
        if value is not None:
            out.append(_TOKEN.findall(ast.unparse(value)))
    return out


def hint_leaks(hint: str, reference: str, min_ops: int = 2, min_abstract_ops: int = 3,
               min_tokens: int = 8) -> List[str]:
    """The formulas of ``reference`` (code) that ``hint`` prints: the longest run of tokens a right-hand side of
    the reference shares with the hint, when it holds at least ``min_ops`` operators with the same names, or at
    least ``min_abstract_ops`` under other names (``new = (1 - momentum) * old + momentum * batch statistic``
    prints ``(1 - momentum) * running_mean + momentum * mean``), or a whole right-hand side of ``min_tokens``
    tokens or more (``(0,) + tuple(range(2, ndim))``). Shape-only calls, module prefixes, markdown emphasis and
    spaces are ignored. Empty: the hint gives no formula of the reference away. A heuristic: a hint that writes
    the formula rearranged (factors in another order) passes it, which is why a checker can also declare the
    fragments its hint must not contain (tests/test_checker_hints.py)."""
    text = re.sub(r"(?<![\w)\]])\*{1,2}(?=\w)|(?<=\w)\*{1,2}(?![\w(\[])|`", "", hint)
    tokens = _TOKEN.findall(text)
    found = []
    for rhs in formula_fragments(reference):
        same = _longest_common(rhs, tokens)
        other = _longest_common(_abstract(rhs), _abstract(tokens))
        if sum(t in _OPERATORS for t in same) >= min_ops or (len(rhs) >= min_tokens and same == rhs):
            found.append("".join(same))
        elif sum(t in _OPERATORS for t in other) >= min_abstract_ops:
            found.append("".join(other))
    return sorted(set(found))
