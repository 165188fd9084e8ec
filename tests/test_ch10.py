"""normbook.book.ch10: the compile-friendly readable normalizations equal torch.nn.functional (outputs, gradients,
running statistics), compile without graph breaks, refuse double backward; the byte accounting."""
import pytest
import torch
import torch.nn.functional as TF

import normbook.functional as F
from normbook.book import ch10

F64 = torch.float64


def _grads(fn, x, params, dy):
    y = fn(x, *params)
    leaves = [x] + [p for p in params if p is not None and p.requires_grad]
    return (y,) + torch.autograd.grad(y, leaves, dy)


def _close(got, expected, **tol):
    for g, e in zip(got, expected):
        assert g.dtype == e.dtype and g.shape == e.shape
        torch.testing.assert_close(g, e, **tol)


CASES = {   # name: (ours, torch's, x shape, parameter shapes)
    "layer_norm": (lambda x, w, b: ch10.layer_norm(x, x.shape[-1:], w, b, 1e-5),
                   lambda x, w, b: TF.layer_norm(x, x.shape[-1:], w, b, 1e-5), (3, 5, 37), (37,)),
    "layer_norm 2 dims": (lambda x, w, b: ch10.layer_norm(x, x.shape[-2:], w, b, 1e-5),
                          lambda x, w, b: TF.layer_norm(x, x.shape[-2:], w, b, 1e-5), (4, 6, 7), (6, 7)),
    "rms_norm": (lambda x, w, b: ch10.rms_norm(x, x.shape[-1:], w, 1e-6) + b,
                 lambda x, w, b: TF.rms_norm(x, x.shape[-1:], w, 1e-6) + b, (3, 5, 37), (37,)),
    "group_norm": (lambda x, w, b: ch10.group_norm(x, 3, w, b, 1e-5),
                   lambda x, w, b: TF.group_norm(x, 3, w, b, 1e-5), (4, 6, 5, 3), (6,)),
    "group_norm 1d": (lambda x, w, b: ch10.group_norm(x, 2, w, b, 1e-5),
                      lambda x, w, b: TF.group_norm(x, 2, w, b, 1e-5), (4, 6, 9), (6,)),
    "batch_norm 2d": (lambda x, w, b: ch10.batch_norm(x, None, None, w, b, True, 0.1, 1e-5),
                      lambda x, w, b: TF.batch_norm(x, None, None, w, b, True, 0.1, 1e-5), (4, 6, 5, 3), (6,)),
    "batch_norm 1d": (lambda x, w, b: ch10.batch_norm(x, None, None, w, b, True, 0.1, 1e-5),
                      lambda x, w, b: TF.batch_norm(x, None, None, w, b, True, 0.1, 1e-5), (16, 6), (6,)),
}


@pytest.mark.parametrize("name", CASES)
@pytest.mark.parametrize("affine", [True, False])
def test_equals_torch_float64(name, affine):
    ours, theirs, xshape, pshape = CASES[name]
    torch.manual_seed(0)
    x = (torch.randn(xshape, dtype=F64) * 3 + 100).requires_grad_()   # a large mean
    w = (torch.rand(pshape, dtype=F64) + 0.5).requires_grad_() if affine else None
    b = torch.randn(pshape, dtype=F64).requires_grad_() if affine else None
    if not affine and name.startswith("rms"):
        b = torch.zeros(pshape, dtype=F64)
    dy = torch.randn(xshape, dtype=F64)
    _close(_grads(ours, x, [w, b], dy), _grads(theirs, x, [w, b], dy), rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("name", ["layer_norm", "rms_norm", "group_norm", "batch_norm 2d"])
def test_bfloat16_is_computed_in_float32(name):
    ours, _, xshape, pshape = CASES[name]
    book = {"layer_norm": lambda x, w, b: F.layer_norm(x, x.shape[-1:], w, b, 1e-5),
            "rms_norm": lambda x, w, b: F.rms_norm(x, x.shape[-1:], w, 1e-6) + b,
            "group_norm": lambda x, w, b: F.group_norm(x, 3, w, b, 1e-5),
            "batch_norm 2d": lambda x, w, b: F.batch_norm(x, None, None, w, b, True, 0.1, 1e-5)}[name]
    torch.manual_seed(0)
    x = torch.randn(xshape).bfloat16().requires_grad_()
    w, b = (torch.rand(pshape) + 0.5).requires_grad_(), torch.randn(pshape).requires_grad_()
    dy = torch.randn(xshape).bfloat16()
    _close(_grads(ours, x, [w, b], dy), _grads(book, x, [w, b], dy), rtol=1e-2, atol=1e-2)


def test_batch_norm_running_statistics_and_eval():
    x = torch.randn(8, 3, 4, 4) * 2 + 1
    for momentum in (0.1, 0.5):
        rm, rv = torch.zeros(3), torch.ones(3)
        rm_t, rv_t = torch.zeros(3), torch.ones(3)
        ch10.batch_norm(x, rm, rv, None, None, True, momentum, 1e-5)
        TF.batch_norm(x, rm_t, rv_t, None, None, True, momentum, 1e-5)
        torch.testing.assert_close((rm, rv), (rm_t, rv_t))
    torch.testing.assert_close(ch10.batch_norm(x, rm, rv, None, None, False),
                               TF.batch_norm(x, rm, rv, None, None, False))


def test_errors_are_torchs():
    with pytest.raises(RuntimeError, match="divisible by num_groups"):
        ch10.group_norm(torch.randn(2, 6, 3), 4)
    with pytest.raises(RuntimeError, match="normalized_shape"):
        ch10.layer_norm(torch.randn(2, 6), (5,))
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        ch10.batch_norm(torch.randn(1, 3), None, None, training=True)


@pytest.mark.parametrize("fn", [
    lambda x, w: ch10.layer_norm(x, (5,), w, None),
    lambda x, w: ch10.rms_norm(x, (5,), w),
    lambda x, w: ch10.group_norm(x.reshape(2, 5, 3), 5, w, None),
    lambda x, w: ch10.batch_norm(x, None, None, w, None, True),
])
def test_create_graph_raises(fn):
    x = (torch.randn(6, 5, dtype=F64) + 1).requires_grad_()
    w = (torch.rand(5, dtype=F64) + 0.5).requires_grad_()
    y = fn(x, w)
    with pytest.raises(RuntimeError, match="double backward is not supported"):
        torch.autograd.grad((y * y).sum(), (x, w), create_graph=True)


@pytest.mark.parametrize("name", ["layer_norm", "rms_norm", "group_norm", "batch_norm 2d"])
def test_compiles_in_one_graph(name):
    """fullgraph=True: a graph break would raise. The compiled function gives the eager one's results."""
    torch._dynamo.reset()
    ours, _, xshape, pshape = CASES[name]
    compiled = torch.compile(ours, fullgraph=True)
    torch.manual_seed(0)
    x = torch.randn(xshape).requires_grad_()
    w, b = (torch.rand(pshape) + 0.5).requires_grad_(), torch.randn(pshape).requires_grad_()
    dy = torch.randn(xshape)
    _close(_grads(compiled, x, [w, b], dy), _grads(ours, x, [w, b], dy), rtol=1e-5, atol=1e-5)


def test_min_traffic():
    assert ch10.min_traffic("row-local", 4) == 20 and ch10.min_traffic("row-local", 4, backward=False) == 8
    assert ch10.min_traffic("batch-wide", 4) == 32 and ch10.min_traffic("batch-wide", 2, backward=False) == 6
    with pytest.raises(ValueError):
        ch10.min_traffic("global", 4)


FAKE_MODULE = """
cpp_fused_demo_0 = async_compile.cpp_pybinding(['float*', 'const float*', 'float*'], r'''
#include <torch/csrc/inductor/cpp_prefix.h>
extern "C"  void  kernel(float* in_out_ptr0,
                       const float* in_ptr0,
                       float* out_ptr1)
{
    auto out_ptr0 = in_out_ptr0;
    {
        for(int64_t x0=static_cast<int64_t>(0L); x0<static_cast<int64_t>(8L); x0+=static_cast<int64_t>(1L))
        {
            {
                float tmp_acc0 = 0;
                for(int64_t x1=static_cast<int64_t>(0L); x1<static_cast<int64_t>(32L); x1+=static_cast<int64_t>(16L))
                {
                    auto tmp0 = at::vec::Vectorized<float>::loadu(in_ptr0 + static_cast<int64_t>(x1 + 32L*x0), static_cast<int64_t>(16));
                    tmp_acc0_vec = tmp_acc0_vec + tmp0;
                }
                tmp_acc0 = tmp_acc0 + at::vec::vec_reduce_all<float, 1>([](auto& x, auto& y) { return x + y; }, tmp_acc0_vec);
                out_ptr0[static_cast<int64_t>(x0)] = static_cast<float>(tmp_acc0);
            }
            for(int64_t x1=static_cast<int64_t>(0L); x1<static_cast<int64_t>(32L); x1+=static_cast<int64_t>(16L))
            {
                auto tmp0 = at::vec::Vectorized<float>::loadu(in_ptr0 + static_cast<int64_t>(x1 + 32L*x0), static_cast<int64_t>(16));
                auto tmp1 = in_out_ptr0[static_cast<int64_t>(x0)];
                tmp0.store(out_ptr1 + static_cast<int64_t>(x1 + 32L*x0));
            }
        }
    }
}
''')
        cpp_fused_demo_0(buf0, primals_1, buf1)
"""


def test_loop_skeleton():
    skeleton = ch10.loop_skeleton(FAKE_MODULE, {"primals_1": "x"})
    assert skeleton.splitlines() == [
        "kernel cpp_fused_demo_0:",
        "    for x0 in 0..8:",
        "        for x1 in 0..32 step 16:",
        "            load x[x1+32*x0]",
        "            accumulate",
        "        store buf0[x0]",
        "        for x1 in 0..32 step 16:",
        "            load x[x1+32*x0]",
        "            load buf0[x0]",
        "            store buf1[x1+32*x0]",
    ]


def test_generated_code_of_a_compiled_layer_norm():
    """The forward of the reformulated LayerNorm compiles to one loop nest over the rows (one pass over x); the
    readable functional.layer_norm to several (what the chapter shows)."""
    torch._dynamo.reset()
    x = torch.randn(64, 32, requires_grad=True)
    w, b = torch.rand(32, requires_grad=True), torch.randn(32, requires_grad=True)
    passes = {}
    for name, mod in (("readable", F), ("reformulated", ch10)):
        torch._dynamo.reset()
        f = torch.compile(lambda x, w, b, mod=mod: mod.layer_norm(x, (32,), w, b, 1e-5), fullgraph=True)
        forward = ch10.generated_code(lambda f=f: f(x, w, b))[0]
        nests = [line for line in ch10.loop_skeleton(forward).splitlines() if line.startswith("    for")]
        passes[name] = len(nests)
    assert passes["reformulated"] == 1 and passes["readable"] > 1
