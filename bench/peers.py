"""Our HVP vs peers: plain double backward (PyHessian-style autograd) and PyHessian's density().

Same model (seeded ResNet-20 at init), same data (first 256 images of the real CIFAR subset, one
batch of 256), CPU. Variants, interleaved in every repeat:
- ours default: HessianOperator(model, batches, bn_mode).matvec, bn_mode "batch" and "running"
  (composition "auto", which keeps the first-order graph here as it fits; PyHessian with data=
  reuses its graph the same way);
- ours uncached: the double_backward composition (forward and first backward every product,
  like PyHessian with dataloader=);
- plain double backward: loss -> torch.autograd.grad(create_graph=True) -> grad of (g . v), on a
  model in train() ("batch") or eval() ("running") mode, v split into parameter shapes, the result
  flattened -- the way PyHessian and most code do it;
- PyHessian 0.1 density(iter, n_v=1) on an eval()-mode model (its only BN mode), timed per HVP =
  total time / number of HVPs it performed (counted by wrapping its HVP routines), both ways it
  runs: `dataloader=` (rebuilds the graph every HVP, like ours) and `data=` (one batch, graph
  built once in its constructor and reused; constructor time reported separately).
Goal (issue 6): ours (default) >= 1.5x faster than plain double backward.
"""

from __future__ import annotations

import copy
import sys
import time

import common

import torch
import torch.nn.functional as F

import hessdepth as hd
from hessdepth.data import fixed_batches
from hessdepth.probes import probe_vector

GOAL = 1.5
PYHESSIAN_DIR = common.BENCH / ".pyhessian"
EIG_PATCH = (
    "PyHessian 0.1's density() calls torch.eig, removed from PyTorch; the harness sets "
    "torch.eig to a torch.linalg.eigh-based replacement (T is symmetric; same return layout: "
    "eigenvalues as an (m, 2) real/imaginary tensor, eigenvectors as columns)."
)


def _eig(T, eigenvectors=False):
    values, vectors = torch.linalg.eigh(T)
    return torch.stack([values, torch.zeros_like(values)], 1), vectors


def import_pyhessian():
    """(pyhessian module, None) or (None, why not)."""
    if not PYHESSIAN_DIR.exists():
        return None, (
            f"{PYHESSIAN_DIR} is missing: install it with "
            "`.venv/bin/pip install --no-deps --target bench/.pyhessian pyhessian`"
        )
    sys.path.insert(0, str(PYHESSIAN_DIR))
    try:
        import pyhessian  # noqa: F401 - imported for its side effect: its __init__ rebinds pyhessian.hessian to the class: take the module itself

        ph = sys.modules["pyhessian.hessian"]
    except Exception as err:  # any import failure is reported, the rest still runs
        return None, f"import failed: {type(err).__name__}: {err}"
    torch.eig = _eig  # the stub left in PyTorch only raises
    counts = {"hvp": 0}
    inner = ph.hessian_vector_product

    def counted(*a, **k):
        counts["hvp"] += 1
        return inner(*a, **k)

    ph.hessian_vector_product = counted
    inner_dl = ph.hessian.dataloader_hv_product

    def counted_dl(self, v):
        counts["hvp"] += 1
        return inner_dl(self, v)

    ph.hessian.dataloader_hv_product = counted_dl
    ph.counts = counts
    return ph, None


def plain_hvp(model, x, y, v):
    """The usual double backward: grad with create_graph, then grad of (g . v)."""
    params = [p for p in model.parameters() if p.requires_grad]
    vs = [t.view_as(p) for t, p in zip(v.split([p.numel() for p in params]), params)]
    loss = F.cross_entropy(model(x), y)
    grads = torch.autograd.grad(loss, params, create_graph=True)
    hv = torch.autograd.grad(sum((g * t).sum() for g, t in zip(grads, vs)), params)
    return torch.cat([h.reshape(-1) for h in hv])


def main():
    args = common.parse_args(
        __doc__,
        repeats=3,
        extra=lambda p: p.add_argument(
            "--iter", type=int, default=3, help="Lanczos steps of each PyHessian density() call (default 3)"
        ),
    )
    depth, n = (8, 16) if args.quick else (20, 256)
    _, images, labels, source = common.cifar_images(n)
    model = hd.seeded_model("resnet", depth, seed=0)
    batches = fixed_batches(images, labels, n, "cpu")
    ((x, y),) = batches
    v = probe_vector(hd.count_params(model), 0, 0)
    v = (v / v.norm()).float()
    ours = {m: hd.HessianOperator(model, batches, m) for m in hd.BN_MODES}
    uncached = {m: hd.HessianOperator(model, batches, m, "double_backward") for m in hd.BN_MODES}
    models = {"batch": copy.deepcopy(model).train(), "running": copy.deepcopy(model).eval()}
    variants = {}
    for m in hd.BN_MODES:
        variants[f"ours default {m}"] = lambda m=m: ours[m].matvec(v)
        variants[f"ours uncached {m}"] = lambda m=m: uncached[m].matvec(v)
        variants[f"plain double backward {m}"] = lambda m=m: plain_hvp(models[m], x, y, v)
    # agreement of the products being timed (same v): relative differences
    ref = {m: ours[m].matvec(v) for m in hd.BN_MODES}
    rel = lambda a, b: float((a - b).norm() / b.norm())  # noqa: E731
    agree = {}
    for m in hd.BN_MODES:
        agree[f"plain double backward {m} vs ours"] = rel(plain_hvp(models[m], x, y, v), ref[m])
        agree[f"ours uncached {m} vs ours"] = rel(uncached[m].matvec(v), ref[m])

    pyh, why = import_pyhessian()
    setup_s = None
    if pyh is not None:
        try:
            crit = torch.nn.CrossEntropyLoss()
            dl_model, one_model = copy.deepcopy(model), copy.deepcopy(model)
            h_dl = pyh.hessian(dl_model, crit, dataloader=[(x, y)], cuda=False)
            tic = time.perf_counter()
            h_one = pyh.hessian(one_model, crit, data=(x, y), cuda=False)
            setup_s = time.perf_counter() - tic
            vs = [t.view_as(p).clone() for t, p in zip(v.split([p.numel() for p in h_one.params]), h_one.params)]
            hv = torch.cat([t.reshape(-1) for t in pyh.hessian_vector_product(h_one.gradsH, h_one.params, vs)])
            agree["PyHessian data= vs ours running"] = rel(hv.double(), ref["running"])
            _, hv = h_dl.dataloader_hv_product(vs)
            agree["PyHessian dataloader= vs ours running"] = rel(
                torch.cat([t.reshape(-1) for t in hv]).double(), ref["running"]
            )

            def per_hvp(h):
                def run():
                    pyh.counts["hvp"] = 0
                    tic = time.perf_counter()
                    h.density(iter=args.iter, n_v=1)
                    return (time.perf_counter() - tic) / pyh.counts["hvp"]

                return run

            variants["PyHessian density() dataloader= (per HVP)"] = per_hvp(h_dl)
            variants["PyHessian density() data= (per HVP)"] = per_hvp(h_one)
        except Exception as err:  # report, keep the double-backward comparison
            why = f"PyHessian failed to run: {type(err).__name__}: {err}"
            variants = {k: f for k, f in variants.items() if not k.startswith("PyHessian")}

    print(f"resnet{depth}, {n} images", file=sys.stderr)
    res = common.interleaved(variants, args.repeats, warmup=1)
    t, med = res["times"], res["median"]
    speed = {}
    for m in hd.BN_MODES:
        speed[f"{m}: plain double backward / ours default"] = common.median_ratio(
            t, f"plain double backward {m}", f"ours default {m}"
        )
        speed[f"{m}: plain double backward / ours uncached"] = common.median_ratio(
            t, f"plain double backward {m}", f"ours uncached {m}"
        )
    if pyh is not None and why is None:
        speed["running: PyHessian dataloader= / ours uncached"] = common.median_ratio(
            t, "PyHessian density() dataloader= (per HVP)", "ours uncached running"
        )
        speed["running: PyHessian data= / ours default"] = common.median_ratio(
            t, "PyHessian density() data= (per HVP)", "ours default running"
        )
    met = all(speed[f"{m}: plain double backward / ours default"] >= GOAL for m in hd.BN_MODES)
    pyh_note = (
        f"PyHessian: version 0.1 from PyPI in bench/.pyhessian (not a project dependency). {EIG_PATCH} "
        f"density(iter={args.iter}, n_v=1) per call; its constructor with data= (forward + backward with "
        f"create_graph) took {setup_s:.3g} s once."
        if why is None and pyh is not None
        else f"PyHessian not measured: {why}"
    )
    body = f"""Data: {source}, {n} images as one batch; resnet{depth} at its seeded initialisation; CPU; float32.
Median over {args.repeats} interleaved repeats after one warm-up call each. {common.load_summary(res["loads"])}.

{common.table(["variant", "median s per HVP", "first call s"], [[k, med[k], res["first"][k]] for k in variants])}

{common.table(["speed-up (median of per-repeat ratios)", "x"], [[k, s] for k, s in speed.items()])}

"ours default" is HessianOperator's default composition "auto", which chose `{ours["batch"].composition}`
(batch) and `{ours["running"].composition}` (running): the first-order graph of these {n} images is
{ours["batch"].graph_bytes / 2**30:.2f} GiB (batch BN), within the default graph_cache_gb.
Goal: ours (default) >= {GOAL}x faster than plain double backward in the same BN mode: {"met" if met else "NOT met"}.

Agreement of the timed products with ours (relative 2-norm difference, same v):
{common.table(["pair", "rel. diff"], [[k, f"{a:.2e}"] for k, a in agree.items()])}

{pyh_note}
"""
    common.write_results(
        "peers",
        "2. Our HVP vs plain double backward and PyHessian",
        body,
        {
            "results": res,
            "speedup": speed,
            "agreement": agree,
            "pyhessian": why or "ok",
            "pyhessian_setup_s": setup_s,
            "depth": depth,
            "n_images": n,
            "data": source,
        },
        args,
        "python bench/peers.py",
    )


if __name__ == "__main__":
    main()
