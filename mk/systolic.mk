# SCALE-Sim v3.0.0 (the systolic module's oracle) crashes with numpy >= 2.4, so it gets its own
# venv; tests/oracles/systolic_scalesim.py runs inside it and talks JSON with the tests.
ORACLE_ENVS += .venv-scalesim/.ok

.venv-scalesim/.ok:
	$(PYTHON) -m venv .venv-scalesim
	.venv-scalesim/bin/python -m pip --disable-pip-version-check -q install "numpy<2.4" scalesim==3.0.0
	touch $@
