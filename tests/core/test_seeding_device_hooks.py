import pytest
import torch

from dnnkit.core.device import resolve_device
from dnnkit.core.hooks import eval_mode, preserved_mode, registered_hooks
from dnnkit.core.seeding import make_generator, make_rng


def test_generator_from_seed_is_reproducible_and_global_state_untouched():
    state = torch.random.get_rng_state()
    a = torch.rand(5, generator=make_generator(3))
    b = torch.rand(5, generator=make_generator(3))
    assert torch.equal(a, b)
    assert torch.equal(state, torch.random.get_rng_state())
    g = torch.Generator()
    assert make_generator(g) is g
    with pytest.raises(TypeError):
        make_generator("3")
    assert make_rng(1).integers(100) == make_rng(1).integers(100)


def test_resolve_device():
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type in ("cpu", "cuda")
    with pytest.raises(ValueError):
        resolve_device("gpu0")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            resolve_device("cuda:0")


def test_hooks_are_removed_even_when_forward_raises():
    m = torch.nn.Linear(2, 2)

    def boom(*_):
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        with registered_hooks() as hs:
            hs.append(m.register_forward_hook(boom))
            m(torch.zeros(1, 2))
    assert len(m._forward_hooks) == 0
    m(torch.zeros(1, 2))


def test_modes_restored():
    m = torch.nn.Sequential(torch.nn.Dropout(), torch.nn.Linear(2, 2))
    m.train()
    m[1].eval()
    with eval_mode(m):
        assert not any(x.training for x in m.modules())
    assert m.training and m[0].training and not m[1].training
    with pytest.raises(ValueError):
        with preserved_mode(m):
            m.eval()
            raise ValueError
    assert m.training


def test_make_rng_accepts_a_torch_generator_like_validation_seed():
    import numpy as np

    from dnnkit.core.seeding import make_rng

    a = make_rng(torch.Generator().manual_seed(3)).random(4)
    b = make_rng(torch.Generator().manual_seed(3)).random(4)
    c = make_rng(torch.Generator().manual_seed(4)).random(4)
    assert np.array_equal(a, b) and not np.array_equal(a, c)
