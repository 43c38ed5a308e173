# neural-tangents oracle for dnnkit.adv_ntk (tests/oracles/adv_ntk_nt.py).
# neural-tangents 0.6.5 works with jax 0.5.3 only (newer jax removed jax.core.Jaxpr). It is
# installed with --no-deps so that its declared tensorflow / tf2jax requirements (about 1.9 GB,
# used only by neural_tangents.experimental, which the oracle script stubs) are not pulled.
ORACLE_ENVS += .venv-nt/.ok
.venv-nt/.ok:
	$(PYTHON) -m venv .venv-nt
	.venv-nt/bin/python -m pip install --disable-pip-version-check -q "jax[cpu]==0.5.3" "jaxlib==0.5.3" "frozendict>=2.3.8"
	.venv-nt/bin/python -m pip install --disable-pip-version-check -q --no-deps neural-tangents==0.6.5
	touch $@
