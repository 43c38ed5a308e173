import pytest

from tests.feddip.helpers import require_flower

require_flower()


@pytest.mark.slow
def test_quick_reproduction_claims_pass(tmp_path):
    from dnnkit.core.registry import RunContext, get

    exp = get("feddip")
    res = exp.run(exp.config.quick(), RunContext(out_dir=tmp_path))
    failed = [(c.name, c.measured, c.expected) for c in res.claims if not c.passed]
    assert not failed
    assert (tmp_path / "feddip_accuracy_sparsity.png").is_file()
    assert any("sparsity = target" in c.name for c in res.claims)
