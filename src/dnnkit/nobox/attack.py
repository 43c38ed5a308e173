"""Crafting no-box adversarial examples: stage-1 I-FGSM on the surrogate, then ILA on its features.

Li, Guo & Chen 2020 (Sec. 3.4, official ``attack.py``), L∞ budget, pixels in [0, 1]:

1. Stage 1 maximises the surrogate's "prototype classification" loss with I-FGSM under a larger
   budget ``stage1_eps``. In prototypical mode, for decoder k the logits of an image x are
   ``-alpha * [MSE(D_k(E(x)), a_k), MSE(D_k(E(x)), b_k)]`` and the loss is the cross-entropy with
   x's class (0 for A, 1 for B), averaged over images and decoders; single-decoder modes use
   ``-alpha * [MSE(D(E(x)), x_i), MSE(D(E(x)), x_j)]`` with x_j the paired image of the other
   class and label 0. Optional input diversity (``stage1="pgd"``): fresh U(-ε₁, ε₁) noise is added
   before each gradient evaluation.
2. ILA (Huang et al. 2019) starts again from the clean image and maximises
   ``<h(x') - h(x), v̂>`` with ``v̂ = (h(x₁) - h(x)) / ||h(x₁) - h(x)||₂`` per image, inside the
   final budget ``eps``.

Both stages use :func:`iterative_fgsm`, ``x <- clip(Π_ε(x + step · sign ∇ loss(x)))``, which equals
``torchattacks.BIM`` for the same loss.
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np
import torch
import torch.nn.functional as F

from dnnkit.core.seeding import make_generator
from dnnkit.core.validation import (
    Callable_,
    Instance,
    Int,
    Optional_,
    Options,
    Real,
    Seed,
    Sequence_,
    Tensor,
    param_error,
    validate_params,
)
from dnnkit.nobox.surrogate import (
    IMAGES,
    LABELS,
    NORMALIZE,
    NoBoxSurrogate,
    SurrogateConfig,
    check_images,
    check_labels,
    train_surrogate,
    two_classes,
)

__all__ = [
    "AttackConfig",
    "craft_nobox",
    "evaluate_transfer",
    "ila_projection",
    "iterative_fgsm",
    "make_groups",
    "nobox_attack",
    "stage1_loss",
]

log = logging.getLogger("dnnkit")
_A = "nobox.AttackConfig"


@validate_params({
    "eps": Real(0.0, 1.0, closed="right"), "stage1_eps": Real(0.0, 1.0, closed="right"),
    "stage1_iters": Int(0, 1_000_000), "ila_iters": Int(0, 1_000_000),
    "step": Real(0.0, 1.0, closed="right"), "alpha": Real(0.0, 1e6, closed="right"),
    "stage1": Options("ifgsm", "pgd"),
})
@dataclass(frozen=True)
class AttackConfig:
    """Crafting budget and schedule (defaults: the paper's ImageNet setting).

    Parameters
    ----------
    eps : float
        Final L∞ budget in pixel units ([0, 1] images); 0.1 in the paper.
    stage1_eps : float
        Stage-1 budget ε₁ >= ``eps`` (0.3 in the paper).
    stage1_iters, ila_iters : int
        Iterations of stage 1 (200) and ILA (100).
    step : float
        I-FGSM step size of both stages (1/255).
    alpha : float
        Temperature of the prototype-classification logits (1).
    stage1 : {"ifgsm", "pgd"}
        ``"pgd"`` adds fresh uniform noise of size ε₁ to the input before each stage-1 gradient.
    """

    eps: float = 0.1
    stage1_eps: float = 0.3
    stage1_iters: int = 200
    ila_iters: int = 100
    step: float = 1 / 255
    alpha: float = 1.0
    stage1: str = "ifgsm"

    def __post_init__(self) -> None:
        if self.stage1_eps < self.eps:
            raise ValueError(param_error("stage1_eps", _A, f">= eps = {self.eps}",
                                         self.stage1_eps))


@validate_params({
    "loss_fn": Callable_(), "x": Tensor(dtype="floating"),
    "eps": Real(0.0, None, closed="neither"), "alpha": Real(0.0, None, closed="neither"),
    "steps": Int(0, 10_000_000), "clip": Sequence_(Real(), min_len=2, max_len=2),
    "random_start": Instance(bool), "generator": Seed(),
})
def iterative_fgsm(
    loss_fn: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    *,
    eps: float,
    alpha: float,
    steps: int,
    clip: tuple[float, float] = (0.0, 1.0),
    random_start: bool = False,
    generator: torch.Generator | int | None = None,
) -> torch.Tensor:
    """Iterative FGSM / BIM (Kurakin et al. 2017) under an L∞ budget, maximising ``loss_fn``.

    ``x_{t+1} = clip(Π_{B∞(x, eps)}(x_t + alpha · sign ∇ loss_fn(x_t)))``. With
    ``random_start=True`` it starts from ``x + U(-eps, eps)`` (projected): PGD (Madry et al. 2018).

    Parameters
    ----------
    loss_fn : callable
        Maps a batch ``(N, ...)`` to a scalar to maximise. Any randomness inside it is its own.
    x : torch.Tensor
        Clean inputs, any shape; the result has the same shape, dtype and device.
    eps, alpha : float
        Budget and step size (> 0).
    steps : int
        Number of iterations (>= 0; 0 returns the projected start).
    clip : (low, high)
        Valid input range.
    random_start : bool
        Start from a uniform point of the ball.
    generator : torch.Generator, int or None
        Seeds the random start.

    Returns
    -------
    torch.Tensor
        Detached adversarial inputs with ``|x_adv - x|_∞ <= eps`` and values in ``clip``.
    """
    where = "nobox.iterative_fgsm"
    lo, hi = float(clip[0]), float(clip[1])
    if not lo < hi:
        raise ValueError(param_error("clip", where, "(low, high) with low < high", clip))
    x0 = x.detach()
    xa = x0.clone()
    if random_start:
        g = make_generator(generator)
        noise = torch.rand(x0.shape, generator=g, dtype=x0.dtype, device=g.device)
        xa = xa + (2 * noise.to(x0.device) - 1) * eps
    low, high = x0 - eps, x0 + eps
    xa = torch.clamp(torch.clamp(xa, low, high), lo, hi)
    for _ in range(steps):
        xa.requires_grad_(True)
        loss = loss_fn(xa)
        (grad,) = torch.autograd.grad(loss, xa)
        xa = xa.detach() + alpha * grad.sign()
        xa = torch.clamp(torch.clamp(xa, low, high), lo, hi)
    return xa.detach()


def _per_image_mse(r: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    return (r - t).pow(2).flatten(2).mean(-1)            # (N, K)


def _partners(cls: torch.Tensor) -> torch.Tensor:
    """Index of the paired other-class image: i-th of A <-> i-th of B (cyclic if uneven)."""
    ia = torch.nonzero(cls == 0).flatten()
    ib = torch.nonzero(cls == 1).flatten()
    partner = torch.empty_like(cls)
    partner[ia] = ib[torch.arange(len(ia), device=cls.device) % len(ib)]
    partner[ib] = ia[torch.arange(len(ib), device=cls.device) % len(ia)]
    return partner


def stage1_loss(surrogate: NoBoxSurrogate, clean: torch.Tensor, cls: torch.Tensor, *,
                alpha: float = 1.0) -> Callable[[torch.Tensor], torch.Tensor]:
    """The stage-1 "prototype classification" loss as a function of the perturbed batch.

    ``cls`` holds 0 (class A) or 1 (class B) per image. Prototypical mode compares every decoder's
    reconstruction with its prototypes ``(a_k, b_k)``; single-decoder modes compare the
    reconstruction with the clean image itself (logit 0) and its paired other-class image
    (logit 1), target 0. Cross-entropy of ``softmax(-alpha * distances)`` averaged over images and
    decoders (to be maximised).
    """
    if surrogate.cfg.mode == "prototypical":
        protos = surrogate.prototypes                     # (K, 2, C, h, w)

        def loss(xa: torch.Tensor) -> torch.Tensor:
            r = surrogate(xa)                             # (N, K, C, h, w)
            d = torch.stack([_per_image_mse(r, protos[:, 0].unsqueeze(0)),
                             _per_image_mse(r, protos[:, 1].unsqueeze(0))], dim=-1)
            logits = -alpha * d                           # (N, K, 2)
            target = cls[:, None].expand(-1, logits.shape[1])
            return F.cross_entropy(logits.flatten(0, 1), target.flatten())

        return loss
    own = clean.detach().unsqueeze(1)
    other = clean.detach()[_partners(cls)].unsqueeze(1)

    def loss(xa: torch.Tensor) -> torch.Tensor:
        r = surrogate(xa)                                 # (N, 1, C, H, W)
        logits = -alpha * torch.cat([_per_image_mse(r, own), _per_image_mse(r, other)], dim=1)
        return F.cross_entropy(logits, torch.zeros(len(xa), dtype=torch.long, device=xa.device))

    return loss


def ila_projection(surrogate: NoBoxSurrogate, x: torch.Tensor, x_ref: torch.Tensor,
                   x_adv: torch.Tensor) -> torch.Tensor:
    """Per-image ILA objective ``<h(x_adv) - h(x), v̂>`` with ``v̂`` the unit direction of
    ``h(x_ref) - h(x)`` (zero where that change is zero). Shape ``(N,)``."""
    with torch.no_grad():
        h0 = surrogate.encode(x).flatten(1)
        v = surrogate.encode(x_ref).flatten(1) - h0
        norm = v.norm(dim=1, keepdim=True)
        v = torch.where(norm > 0, v / norm.clamp_min(torch.finfo(v.dtype).tiny), 0.0)
        return ((surrogate.encode(x_adv).flatten(1) - h0) * v).sum(1)


@validate_params({"surrogate": Instance(NoBoxSurrogate), "images": IMAGES, "labels": LABELS,
                  "cfg": Optional_(Instance(AttackConfig)), "seed": Seed(),
                  "return_stage1": Instance(bool)})
def craft_nobox(
    surrogate: NoBoxSurrogate,
    images: torch.Tensor,
    labels: torch.Tensor,
    cfg: AttackConfig | None = None,
    *,
    seed: int | torch.Generator | None = 0,
    return_stage1: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Craft no-box adversarial examples of ``images`` against one surrogate (stage 1 + ILA).

    Parameters
    ----------
    surrogate : NoBoxSurrogate
        Trained on (typically) these very images; left unchanged (its modes are restored).
    images : torch.Tensor
        ``(N, C, H, W)`` in [0, 1].
    labels : torch.Tensor
        ``(N,)`` with exactly two classes (the smaller label is class A, i.e. prototype ``a_k``).
    cfg : AttackConfig
        Budgets and iterations (default: the paper's).
    seed : int, torch.Generator or None
        Seeds the stage-1 input noise (``cfg.stage1 == "pgd"`` only).
    return_stage1 : bool
        Also return the stage-1 examples ``x₁`` (budget ``stage1_eps``).

    Returns
    -------
    torch.Tensor
        ``x_adv``, same shape/dtype/device, ``|x_adv - x|_∞ <= eps``, values in [0, 1].

    Warns
    -----
    UserWarning
        When stage 1 leaves the features of some images unchanged (ILA has no direction): those
        images get the stage-1 example projected to the ε-ball.
    """
    where = "nobox.craft_nobox"
    cfg = AttackConfig() if cfg is None else cfg
    x = check_images(images, "images", where)
    y = check_labels(labels, x.shape[0], where)
    ia, ib = two_classes(y, where, min_per_class=1, even=False)
    cls = torch.zeros(len(y), dtype=torch.long, device=x.device)
    cls[ib.to(x.device)] = 1
    if surrogate.cfg.mode == "prototypical" and surrogate.prototypes.numel() == 0:
        raise ValueError(param_error("surrogate", where, "a trained prototypical surrogate "
                                     "(from train_surrogate)", "no prototypes"))
    gen = make_generator(seed)
    x = x.detach()
    flags = [(m, m.training, [p.requires_grad for p in m.parameters(recurse=False)])
             for m in surrogate.modules()]
    try:
        surrogate.eval()
        surrogate.requires_grad_(False)
        base = stage1_loss(surrogate, x, cls, alpha=cfg.alpha)
        if cfg.stage1 == "pgd":
            e1 = cfg.stage1_eps

            def loss1(xa: torch.Tensor) -> torch.Tensor:
                u = torch.rand(xa.shape, generator=gen, dtype=xa.dtype, device=gen.device)
                return base(xa + (2 * u.to(xa.device) - 1) * e1)
        else:
            loss1 = base
        x1 = iterative_fgsm(loss1, x, eps=cfg.stage1_eps, alpha=cfg.step,
                            steps=cfg.stage1_iters)
        with torch.no_grad():
            h0 = surrogate.encode(x)
            dv = (surrogate.encode(x1) - h0).flatten(1)
            norm = dv.norm(dim=1)
        dead = norm == 0
        v = dv / norm.clamp_min(torch.finfo(dv.dtype).tiny)[:, None]
        v = v.reshape(h0.shape)

        def ila(xa: torch.Tensor) -> torch.Tensor:
            return ((surrogate.encode(xa) - h0) * v).sum()

        x_adv = iterative_fgsm(ila, x, eps=cfg.eps, alpha=cfg.step, steps=cfg.ila_iters)
        if bool(dead.any()):
            warnings.warn(f"craft_nobox: stage 1 left the features of {int(dead.sum())} of "
                          f"{len(x)} images unchanged; they get the stage-1 example clipped to "
                          f"eps = {cfg.eps}.", UserWarning, stacklevel=2)
            clipped = torch.clamp(torch.clamp(x1, x - cfg.eps, x + cfg.eps), 0.0, 1.0)
            x_adv = torch.where(dead[:, None, None, None], clipped, x_adv)
    finally:
        for m, training, req in flags:
            m.training = training
            for p, r in zip(m.parameters(recurse=False), req):
                p.requires_grad_(r)
    return (x_adv, x1) if return_stage1 else x_adv


# --------------------------------------------------------------------------- groups
@validate_params({"labels": LABELS, "group_size": Int(4, 1_000_000), "seed": Seed()})
def make_groups(labels: torch.Tensor, *, group_size: int = 20,
                seed: int | torch.Generator | None = 0) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Split a labelled pool into balanced two-class groups, one surrogate each.

    Classes are visited in a seeded random order and consecutive classes are paired (the paper's
    ImageNet protocol: 10 images from each of two classes). Images left over (a class with fewer
    than ``group_size / 2`` remaining images, or no partner class) get extra groups topped up
    with already-used images of their class and images of a partner class: those extra images
    only train the surrogate.

    Returns
    -------
    list of (train_idx, attack_idx)
        Index tensors into ``labels``; every image is in exactly one ``attack_idx``.
    """
    where = "nobox.make_groups"
    y = torch.as_tensor(labels)
    if group_size % 2:
        raise ValueError(param_error("group_size", where, "an even int", group_size))
    per = group_size // 2
    gen = make_generator(seed)
    y_cpu = y.cpu()
    classes = torch.unique(y_cpu)
    if classes.numel() < 2:
        raise ValueError(param_error("labels", where, "at least two classes",
                                     f"{classes.numel()} class(es)"))
    order = classes[torch.randperm(len(classes), generator=gen)].tolist()
    members = {c: torch.nonzero(y_cpu == c).flatten() for c in order}
    small = [c for c in order if len(members[c]) < 2]
    if small:
        raise ValueError(param_error("labels", where, "at least 2 images per class",
                                     f"classes {small} with fewer"))
    queues = {c: members[c][torch.randperm(len(members[c]), generator=gen)].tolist()
              for c in order}
    groups: list[tuple[torch.Tensor, torch.Tensor]] = []
    while True:
        avail = [c for c in order if len(queues[c]) >= per]
        if len(avail) < 2:
            break
        for a, b in zip(avail[0::2], avail[1::2]):
            take = queues[a][:per] + queues[b][:per]
            queues[a], queues[b] = queues[a][per:], queues[b][per:]
            t = torch.tensor(take)
            groups.append((t, t))
    for pos, c in enumerate(order):
        left = queues[c]
        if not left:
            continue
        partner = max((d for d in order if d != c), key=lambda d: len(members[d]))
        m = min(per, len(members[c]), len(members[partner]))
        for s in range(0, len(left), m):
            chunk = left[s:s + m]
            used = [i for i in members[c].tolist() if i not in chunk]
            fill = used[: m - len(chunk)]
            other = members[partner][torch.randperm(len(members[partner]),
                                                    generator=gen)[:m]].tolist()
            groups.append((torch.tensor(chunk + fill + other), torch.tensor(chunk)))
    return groups


def _run_group(args: tuple) -> torch.Tensor:
    x, y, scfg, acfg, normalize, seed = args
    sur = train_surrogate(x, y, scfg, normalize=normalize, seed=seed)
    return craft_nobox(sur, x, y, acfg, seed=seed + 1)


@validate_params({
    "images": IMAGES, "labels": LABELS, "group_size": Int(4, 1_000_000),
    "surrogate_cfg": Optional_(Instance(SurrogateConfig)),
    "attack_cfg": Optional_(Instance(AttackConfig)), "normalize": NORMALIZE,
    "seed": Int(0, 2**62), "workers": Int(1, 256), "progress": Optional_(Callable_()),
})
def nobox_attack(
    images: torch.Tensor,
    labels: torch.Tensor,
    *,
    group_size: int = 20,
    surrogate_cfg: SurrogateConfig | None = None,
    attack_cfg: AttackConfig | None = None,
    normalize: tuple[Sequence[float], Sequence[float]] | None = None,
    seed: int = 0,
    workers: int = 1,
    progress: Callable[[int, int], None] | None = None,
) -> torch.Tensor:
    """No-box attack of a labelled pool: one surrogate per two-class group (paper's protocol).

    Parameters
    ----------
    images : torch.Tensor
        ``(N, C, H, W)`` in [0, 1]: the attacker's only data.
    labels : torch.Tensor
        ``(N,)`` integer classes (at least two classes, >= 2 images each).
    group_size : int
        Images per surrogate (even; 20 in the paper = 10 per class).
    surrogate_cfg, attack_cfg : SurrogateConfig, AttackConfig
        Surrogate training and crafting settings (defaults: the paper's).
    normalize : (mean, std) or None
        Normalisation inside the surrogates.
    seed : int
        Group ``g`` trains with seed ``seed + 1000 * g``: results do not depend on ``workers``.
    workers : int
        Parallel worker processes (groups are independent); 1 runs in this process.
    progress : callable or None
        Called as ``progress(done, total)`` after each group (in-process runs).

    Returns
    -------
    torch.Tensor
        Adversarial images, same shape, dtype and device as ``images``.
    """
    where = "nobox.nobox_attack"
    x = check_images(images, "images", where)
    y = check_labels(labels, x.shape[0], where)
    scfg = SurrogateConfig() if surrogate_cfg is None else surrogate_cfg
    acfg = AttackConfig() if attack_cfg is None else attack_cfg
    groups = make_groups(y, group_size=group_size, seed=seed)
    if scfg.mode == "prototypical":
        smallest = min(len(t) // 2 for t, _ in groups)
        if scfg.n_decoders > smallest * smallest:
            scfg = replace(scfg, n_decoders=smallest * smallest)
            log.warning("nobox_attack: n_decoders lowered to %d for a group of %d + %d images",
                        scfg.n_decoders, smallest, smallest)
    jobs = [(x[t.to(x.device)], y[t.to(y.device)], scfg, acfg, normalize, seed + 1000 * g)
            for g, (t, _) in enumerate(groups)]
    out = x.detach().clone()
    if workers == 1 or len(jobs) == 1:
        results = []
        for g, job in enumerate(jobs):
            results.append(_run_group(job))
            if progress is not None:
                progress(g + 1, len(jobs))
    else:
        import concurrent.futures as cf
        import multiprocessing as mp

        cpu_jobs = [(j[0].cpu(), j[1].cpu(), *j[2:]) for j in jobs]
        with cf.ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn"),
                                    initializer=torch.set_num_threads, initargs=(1,)) as ex:
            results = [r.to(x.device) for r in ex.map(_run_group, cpu_jobs)]
    for (t, a), adv in zip(groups, results):
        pos = {int(i): k for k, i in enumerate(t.tolist())}
        sel = torch.tensor([pos[int(i)] for i in a.tolist()], device=adv.device)
        out[a.to(x.device)] = adv[sel]
    return out


# --------------------------------------------------------------------------- evaluation
def _predict(victim: Callable, x: torch.Tensor, name: str) -> torch.Tensor:
    out = victim(x)
    if isinstance(out, torch.Tensor):
        out = out.detach().cpu()
    else:
        out = torch.as_tensor(np.asarray(out))
    if out.ndim == 2:
        warnings.warn(f"evaluate_transfer: victim {name!r} returned a 2-D output "
                      f"{tuple(out.shape)} (logits or scores); taking the arg-max as its label.",
                      UserWarning, stacklevel=3)
        out = out.argmax(1)
    if out.ndim != 1 or out.shape[0] != x.shape[0]:
        raise ValueError(param_error("victims", "evaluate_transfer",
                                     f"callables returning {x.shape[0]} class labels",
                                     f"{name!r} returned shape {tuple(out.shape)}"))
    return out.long()


@validate_params({"victims": Instance(Mapping), "clean": IMAGES, "adv": IMAGES,
                  "labels": LABELS})
def evaluate_transfer(
    victims: Mapping[str, Callable[[torch.Tensor], object]],
    clean: torch.Tensor,
    adv: torch.Tensor,
    labels: torch.Tensor,
) -> dict[str, dict[str, float]]:
    """Accuracy of each victim on clean and adversarial images.

    Parameters
    ----------
    victims : mapping name -> callable
        Each maps a batch ``(N, C, H, W)`` to ``(N,)`` class labels (torch modules wrapped to
        argmax, scikit-learn ``predict`` on flattened numpy, remote stubs ...). A 2-D output is
        treated as scores: arg-max, with a warning. Victims are only called, never differentiated.
    clean, adv : torch.Tensor
        Same shape, pixels in [0, 1].
    labels : torch.Tensor
        ``(N,)`` true classes.

    Returns
    -------
    dict
        Per victim: ``clean_acc``, ``adv_acc``, ``success_rate`` (= 1 - adv_acc) and
        ``success_on_correct`` (share of clean-correct images misclassified after the attack; NaN
        when none is correct).
    """
    where = "nobox.evaluate_transfer"
    if not victims:
        raise TypeError(param_error("victims", where, "a non-empty dict name -> callable",
                                    type(victims).__name__))
    for k, v in victims.items():
        if not callable(v):
            raise TypeError(param_error("victims", where, "a dict of callables",
                                        f"{k!r}: {type(v).__name__}"))
    c = check_images(clean, "clean", where)
    a = check_images(adv, "adv", where)
    if a.shape != c.shape:
        raise ValueError(param_error("adv", where, f"the shape of clean {tuple(c.shape)}",
                                     f"shape {tuple(a.shape)}"))
    y = check_labels(labels, c.shape[0], where).cpu()
    res: dict[str, dict[str, float]] = {}
    for name, victim in victims.items():
        pc = _predict(victim, c, name)
        pa = _predict(victim, a, name)
        ok = pc == y
        n_ok = int(ok.sum())
        res[name] = {
            "clean_acc": float(ok.float().mean()),
            "adv_acc": float((pa == y).float().mean()),
            "success_rate": float((pa != y).float().mean()),
            "success_on_correct": float((pa[ok] != y[ok]).float().mean()) if n_ok else math.nan,
        }
    return res
