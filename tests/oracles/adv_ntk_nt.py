"""neural-tangents oracle for dnnkit.adv_ntk; runs in .venv-nt (see mk/adv_ntk.mk).

Reads ``{"requests": [...]}`` as JSON on stdin and writes ``{"results": [...]}`` on stdout.
Requests (arrays are nested lists, float64; conv inputs are NCHW and transposed to NHWC here):

- ``{"task": "kernel", "arch": "mlp"|"conv", "depth", "w_std", "b_std", "activation",
  "x1", "x2" (or null)}`` -> ``{"nngp", "ntk"}`` from ``stax`` ``kernel_fn(x1, x2, ("nngp", "ntk"))``;
- ``{"task": "predict", "k_train_train", "y_train", "k_test_train", "t" (or null), "lr"}`` ->
  ``{"f"}`` = ``nt.predict.gradient_descent_mse(...)(t, 0., 0., k_test_train)[1]``;
- ``{"task": "bench", <kernel fields>, "x", "repeat"}`` -> ``{"seconds", "first_call_s"}``: median
  wall time of the jitted ``kernel_fn(x, None, ("nngp", "ntk"))`` (after a compile call).

Does not import dnnkit (an independent implementation). TensorFlow is only used by
``neural_tangents.experimental``, which is stubbed so the package imports without it.
"""

import json
import sys
import time
import types

sys.modules["neural_tangents.experimental"] = types.ModuleType("neural_tangents.experimental")

import jax

jax.config.update("jax_enable_x64", True)
jax.config.update("jax_platform_name", "cpu")

import jax.numpy as jnp
import neural_tangents as nt
import numpy as np
from neural_tangents import stax


def network(req):
    sw, sb, depth = float(req["w_std"]), float(req["b_std"]), int(req["depth"])
    act = stax.Relu() if req.get("activation", "relu") == "relu" else stax.Erf()
    if req["arch"] == "mlp":
        layers = [stax.Flatten()]
        for _ in range(depth - 1):
            layers += [stax.Dense(1, W_std=sw, b_std=sb), act]
        layers += [stax.Dense(1, W_std=sw, b_std=sb)]
    else:
        layers = []
        for _ in range(depth):
            layers += [stax.Conv(1, (3, 3), padding="SAME", W_std=sw, b_std=sb), act]
        layers += [stax.Flatten(), stax.Dense(1, W_std=sw, b_std=sb)]
    return stax.serial(*layers)[2]


def as_input(a, arch):
    x = jnp.asarray(np.asarray(a, dtype=np.float64))
    return jnp.transpose(x, (0, 2, 3, 1)) if arch == "conv" else x


def run(req):
    task = req["task"]
    if task == "kernel":
        kfn = network(req)
        x1 = as_input(req["x1"], req["arch"])
        x2 = None if req.get("x2") is None else as_input(req["x2"], req["arch"])
        k = kfn(x1, x2, ("nngp", "ntk"))
        return {"nngp": np.asarray(k.nngp).tolist(), "ntk": np.asarray(k.ntk).tolist()}
    if task == "predict":
        ktt = jnp.asarray(np.asarray(req["k_train_train"], dtype=np.float64))
        y = jnp.asarray(np.asarray(req["y_train"], dtype=np.float64))
        kte = jnp.asarray(np.asarray(req["k_test_train"], dtype=np.float64))
        fn = nt.predict.gradient_descent_mse(ktt, y, learning_rate=float(req.get("lr", 1.0)))
        t = req.get("t")
        out = fn(None if t is None else float(t), 0.0, 0.0, kte)
        return {"f": np.asarray(out[1]).tolist()}
    if task == "bench":
        kfn = jax.jit(network(req), static_argnames="get")
        x = as_input(req["x"], req["arch"])

        def call():
            k = kfn(x, None, get=("nngp", "ntk"))
            k.ntk.block_until_ready()
            k.nngp.block_until_ready()

        t0 = time.perf_counter()
        call()
        first = time.perf_counter() - t0
        times = []
        for _ in range(int(req.get("repeat", 5))):
            t0 = time.perf_counter()
            call()
            times.append(time.perf_counter() - t0)
        times.sort()
        return {"seconds": times[len(times) // 2], "first_call_s": first}
    raise ValueError(f"unknown task {task!r}")


def main():
    reqs = json.load(sys.stdin)["requests"]
    json.dump({"results": [run(r) for r in reqs], "versions": {"neural_tangents": nt.__version__,
                                                             "jax": jax.__version__}}, sys.stdout)


if __name__ == "__main__":
    main()
