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
