# dnnkit.feddip: Flower's simulation engine needs Ray (`flwr[simulation]`, about 1.7 GB and
# ~50 s start-up), so only the slow tests (`make test-slow`) ask for it; the oracle tests
# (Flower's FedAvg, torch's global pruning) run in the default `make test` without Ray.
# torch is named in the same pip call so nothing pulls a CUDA build.
SLOW_ENVS += $(BIN)/.feddip-ray

$(BIN)/.feddip-ray: $(BIN)/.dev
	FLWR_TELEMETRY_ENABLED=0 RAY_USAGE_STATS_ENABLED=0 $(PIP) install "$(TORCH)" "flwr[simulation]>=1.20"
	touch $@
