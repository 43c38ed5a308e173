import math

import numpy as np
import pytest
import torch

from dnnkit.core.validation import (
    check_choice,
    check_int,
    check_interval,
    check_positive,
    check_tensor,
    find_unsupported,
)


def test_interval_message_follows_the_house_template():
    with pytest.raises(ValueError, match=r"The 'eps' parameter of nobox.attack must be a float "
                                         r"in \(0, 1\]\. Got -0.1 instead\."):
        check_interval(-0.1, "eps", 0, 1, closed="right", where="nobox.attack")


@pytest.mark.parametrize("value,closed,ok", [(0.0, "both", True), (0.0, "right", False),
                                             (1.0, "left", False), (0.5, "neither", True),
                                             (math.nan, "both", False)])
def test_interval_bounds(value, closed, ok):
    if ok:
        assert check_interval(value, "x", 0, 1, closed=closed) == value
    else:
        with pytest.raises(ValueError):
            check_interval(value, "x", 0, 1, closed=closed)


def test_types_are_type_errors():
    with pytest.raises(TypeError):
        check_interval("a", "x")
    with pytest.raises(TypeError):
        check_int(1.5, "n")
    with pytest.raises(TypeError):
        check_int(True, "n")
    with pytest.raises(TypeError, match="torch.Tensor"):
        check_tensor([1, 2], "x")


def test_positive_and_int_ranges():
    with pytest.raises(ValueError):
        check_positive(0.0, "lr")
    with pytest.raises(ValueError):
        check_positive(math.inf, "lr")
    with pytest.raises(ValueError, match=r"\[1, 10\]"):
        check_int(11, "n", 1, 10)
    assert check_int(np.int64(3), "n", 1, 10) == 3


def test_choice_suggests_close_matches():
    with pytest.raises(ValueError, match="Did you mean 'zplus'"):
        check_choice("zplu", "rule", ["zplus", "zb", "w2"])


def test_tensor_shape_and_finiteness():
    x = torch.zeros(2, 3)
    assert check_tensor(x, "x", shape=(None, 3)) is x
    with pytest.raises(ValueError, match=r"shape \(\*, 4\)"):
        check_tensor(x, "x", shape=(None, 4))
    with pytest.raises(ValueError, match="ndim"):
        check_tensor(x, "x", ndim=3)
    x[0, 1] = float("nan")
    with pytest.raises(ValueError, match="1 non-finite"):
        check_tensor(x, "x")
    assert isinstance(check_tensor(np.ones(3), "x"), torch.Tensor)


def test_find_unsupported_lists_every_path():
    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Tanh(),
                                torch.nn.Sequential(torch.nn.GELU()))
    bad = find_unsupported(model, (torch.nn.Linear,))
    assert bad == ["1 (Tanh)", "2.0 (GELU)"]


# ------------------------------------------------------------------ declarative constraints
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from dnnkit.core.validation import (  # noqa: E402
    AnyOf,
    Int,
    Options,
    Real,
    Seed,
    Sequence_,
    Tensor,
    validate_params,
)


@settings(max_examples=60, deadline=None)
@given(lo=st.floats(-1e6, 1e6), width=st.floats(0.0, 1e6), v=st.floats(allow_nan=True,
                                                                       allow_infinity=True))
def test_real_accepts_exactly_its_interval(lo, width, v):
    c = Real(lo, lo + width)
    inside = v == v and lo <= v <= lo + width
    if inside:
        c.check(v, "x", None)
    else:
        with pytest.raises(ValueError, match="'x'"):
            c.check(v, "x", None)


@settings(max_examples=60, deadline=None)
@given(lo=st.integers(-100, 100), hi=st.integers(-100, 100), v=st.integers(-2**70, 2**70))
def test_int_accepts_exactly_its_range(lo, hi, v):
    c = Int(lo, hi)
    if lo <= v <= hi:
        c.check(v, "n", None)
    else:
        with pytest.raises(ValueError, match="'n'"):
            c.check(v, "n", None)


@pytest.mark.parametrize("c,valid", [
    (Real(0.0, 1.0, closed="right"), 0.5), (Int(1, 100), 3), (Options("a", "b"), "a"),
    (Seed(), 0), (Sequence_(Int(0, 9)), [1, 2]), (Tensor(ndim=2, dtype="floating"),
                                                  torch.zeros(2, 3)),
    (Tensor(ndim=1, dtype="integer", low=0, high=9), torch.tensor([1, 2])),
    (Tensor(shape=(None, 3)), torch.zeros(2, 3)), (AnyOf(Int(0, 5), Tensor(ndim=1)), 2),
])
def test_generated_bad_values_are_refused_with_their_type(c, valid):
    c.check(valid, "p", None)
    bad = c.bad_values(valid)
    assert bad
    for value, exc in bad:
        with pytest.raises(exc, match="'p"):
            c.check(value, "p", None)


def test_validate_params_checks_passed_arguments_and_keeps_declarations():
    @validate_params({"eps": Real(0.0, 1.0)})
    def f(x, *, eps=0.5):
        return eps

    assert f(1, eps=0.25) == 0.25 and f(1) == 0.5
    with pytest.raises(ValueError, match=r"The 'eps' parameter of .*f must be a float in \[0, 1\]"):
        f(1, eps=2.0)
    assert set(f.__dnnkit_params__) == {"eps"}
