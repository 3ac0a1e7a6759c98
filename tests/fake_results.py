"""Small but valid workflow files for the summary and figure tests, with known true values.

Spectra are those of diagonal matrices: Lanczos runs on diag(eigs) from a normalised Rademacher
probe, for which v^T H^k v = (1/n) sum(eigs^k) exactly, so SLQ must recover the true moments.
"""

from __future__ import annotations

import numpy as np
from scipy.linalg import eigh_tridiagonal

from hessdepth.h5io import atomic_h5, string_array


def identity(arch: str, depth: int, seed: int = 0, step: int = 10, synthetic: bool = True) -> dict:
    return dict(
        dataset="synthetic" if synthetic else "cifar10",
        synthetic=synthetic,
        model=f"{arch}{depth}",
        arch=arch,
        depth=depth,
        seed=seed,
        step=step,
        n_params=1000 * depth,
        bn_mode="batch",
    )


def spectrum(n: int, tail: float, seed: int) -> np.ndarray:
    """Eigenvalues: a bulk near zero plus a few outliers up to ``tail`` (heavier tail -> larger)."""
    rng = np.random.default_rng(seed)
    return np.concatenate([rng.normal(0.0, 0.1, n - 4), tail * np.array([0.4, 0.6, 0.8, 1.0])])


def true_stats(eigs: np.ndarray) -> dict:
    c = eigs - eigs.mean()
    var = np.mean(c**2)
    return dict(mean=eigs.mean(), std=np.sqrt(var), skewness=np.mean(c**3) / var**1.5, kurtosis=np.mean(c**4) / var**2)


def lanczos(eigs: np.ndarray, v: np.ndarray, m: int) -> tuple[np.ndarray, np.ndarray]:
    """alpha (m,), beta (m-1,) of diag(eigs) from unit v, with full reorthogonalisation."""
    q = np.zeros((m, len(eigs)))
    q[0] = v / np.linalg.norm(v)
    alpha, beta = np.zeros(m), np.zeros(m - 1)
    for j in range(m):
        w = eigs * q[j]
        alpha[j] = q[j] @ w
        w -= q[: j + 1].T @ (q[: j + 1] @ w)
        w -= q[: j + 1].T @ (q[: j + 1] @ w)
        if j < m - 1:
            beta[j] = np.linalg.norm(w)
            q[j + 1] = w / beta[j]
    return alpha, beta


def write_lanczos(
    path, eigs, ident: dict, probes: int = 3, m: int = 30, short: int = 0, seed: int = 0, diverged: bool = False
) -> None:
    """lanczos.h5; the last probe stops ``short`` steps early (NaN/0 padded), as the layout allows."""
    rng = np.random.default_rng(seed)
    shape = (probes, m)
    alpha, beta = np.full(shape, np.nan), np.full((probes, m - 1), np.nan)
    nodes, weights = np.full(shape, np.nan), np.zeros(shape)
    steps = np.full(probes, m)
    steps[-1] = m - short
    for p in range(probes):
        k = steps[p]
        a, b = lanczos(eigs, rng.choice([-1.0, 1.0], len(eigs)), k)
        theta, vecs = eigh_tridiagonal(a, b)
        alpha[p, :k], beta[p, : k - 1], nodes[p, :k], weights[p, :k] = a, b, theta, vecs[0] ** 2
    if diverged:
        nodes[:] = np.nan
    with atomic_h5(path, ident) as f:
        for name, data in dict(
            alpha=alpha, beta=beta, nodes=nodes, weights=weights, steps=steps, seconds=np.ones(probes)
        ).items():
            f.create_dataset(name, data=data)


def write_moments(path, eigs, ident: dict, probes: int = 16, seed: int = 1, diverged: bool = False) -> None:
    """moments.h5 from Gaussian Hutchinson probes (noisy, unbiased)."""
    z = np.random.default_rng(seed).normal(size=(probes, len(eigs)))
    values = np.stack([(z**2 * eigs**k).sum(1) / len(eigs) for k in range(1, 5)], 1)
    if diverged:
        values[:] = np.nan
    with atomic_h5(path, ident) as f:
        f.create_dataset("probe_values", data=values)
        f.create_dataset("estimate", data=values.mean(0))
        f.create_dataset("stderr", data=values.std(0, ddof=1) / np.sqrt(probes))


def write_checkpoint(path, ident: dict, train_loss: float, diverged: bool = False) -> None:
    metrics = dict(train_loss=train_loss, train_acc=0.5, test_loss=train_loss * 1.2, test_acc=0.4)
    if diverged:
        metrics = dict.fromkeys(metrics, np.nan)
    config = {"steps": 100, "lr": 0.1, "lr_milestones": [0.5], "lr_decay": 0.1}  # lr at step 10: 0.1
    with atomic_h5(path, {"config": config, **ident, **metrics, "diverged": diverged}) as f:
        f.create_group("state").create_dataset("fc.weight", data=np.zeros((2, 2)))


def write_curve(path, ident: dict, final_loss: float, steps: int = 200, diverged: bool = False) -> None:
    step = np.arange(0, steps + 1, 10)
    loss = 2.3 * (final_loss / 2.3) ** (step / steps)
    lr = np.where(step < steps // 2, 0.1, 0.01)
    if diverged:
        loss[len(loss) // 2 :] = np.nan
    attrs = {k: ident[k] for k in ("model", "arch", "depth", "seed", "dataset", "synthetic")}
    with atomic_h5(path, {**attrs, "diverged": diverged, "config": {"steps": steps}}) as f:
        for group, data in dict(
            train=dict(step=step, loss=loss, acc=1 - loss / 2.3, lr=lr),
            test=dict(step=step[::5], loss=loss[::5], acc=1 - loss[::5] / 2.3),
        ).items():
            for key, value in data.items():
                f.create_dataset(f"{group}/{key}", data=value)


def write_gradnorms(path, ident: dict, norms: np.ndarray) -> None:
    names = [f"layer{i}.weight" for i in range(len(norms))]
    with atomic_h5(path, ident) as f:
        f.create_dataset("names", data=string_array(names))
        f.create_dataset("norms", data=np.asarray(norms, float))
        f.create_dataset("numel", data=np.full(len(norms), 9))


def write_parts(path, ident: dict, spectra: dict, probes: int = 4, seed: int = 2, diverged: bool = False) -> None:
    """blocks.h5 / gauss_newton.h5: one group per part of diagonal spectrum ``spectra[name]``.

    Rademacher probes of a diagonal matrix give v'D^k v / n = mean(eigs^k) exactly, so every
    statistic of the file equals the part's true one.
    """
    rng = np.random.default_rng(seed)
    with atomic_h5(path, {**ident, "parts": list(spectra), "probes": probes, "diverged": diverged}) as f:
        for name, eigs in spectra.items():
            v = rng.choice([-1.0, 1.0], size=(probes, len(eigs)))
            values = np.stack([(v**2 * eigs**k).sum(1) / len(eigs) for k in range(1, 5)], 1)
            group = f.create_group(name)
            group["probe_values"] = np.full_like(values, np.nan) if diverged else values
            group.attrs["dimension"] = len(eigs)
