"""Property tests: results are invariant to id relabelling and to image order."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from panoptic_eval import PanopticQuality
from panoptic_eval.testing import categories, make_gt, make_pred


def images(seed, n):
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        gt, gi = make_gt(rng, 24, 32)
        pred, pi = make_pred(rng, gt, gi)
        out.append((gt, gi, pred, pi))
    return out


def result(imgs):
    metric = PanopticQuality(categories())
    for gt, gi, pred, pi in imgs:
        metric.update(gt, gi, pred, pi)
    return metric.compute()


def relabel(ids, segs, rng):
    """Map every id (0 stays VOID) to a fresh random id, consistently in map and segments."""
    present = sorted(set(np.unique(ids).tolist()) | {s["id"] for s in segs} - {0})
    new = rng.choice(np.arange(1, 1 << 24), size=len(present), replace=False)
    lut = dict(zip(present, new.tolist()))
    out = np.vectorize(lambda v: lut.get(v, 0) if v else 0, otypes=[np.uint32])(ids)
    return out, [dict(s, id=lut[s["id"]]) for s in segs]


def close(a, b):
    for g in ("All", "Things", "Stuff"):
        assert a[g]["n"] == b[g]["n"]
        for k in ("pq", "sq", "rq"):
            assert abs(a[g][k] - b[g][k]) < 1e-12


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**31), relabel_seed=st.integers(0, 2**31))
def test_invariant_to_id_relabelling(seed, relabel_seed):
    imgs = images(seed, 3)
    rng = np.random.default_rng(relabel_seed)
    relabelled = []
    for gt, gi, pred, pi in imgs:
        # GT ids present in the PNG but unlisted stay unlisted: relabel them too.
        gt2, gi2 = relabel(gt, gi, rng)
        pred2, pi2 = relabel(pred, pi, rng)
        relabelled.append((gt2, gi2, pred2, pi2))
    close(result(imgs), result(relabelled))


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**31), order=st.permutations(range(4)))
def test_invariant_to_image_order(seed, order):
    imgs = images(seed, 4)
    close(result(imgs), result([imgs[i] for i in order]))
