"""The merged-state enumeration behind the q3-accept-no-sl2-check proof (docs/vectors.md) against the
chain-by-chain depth-first one it replaces: the same number of chains, the same removal proposals."""

import inspect
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "mutation"))
import search  # noqa: E402


def _slice(lo, n=1 << 11):
    a = np.float32(lo).view(np.int32)
    return np.arange(a, a + n, dtype=np.int32).view(np.float32)


def _proposals_only(fn):
    """fn with the last helper's removal counted when proposed (the error test dropped): removals are
    never accepted, so this is what makes the hit paths comparable"""
    src = inspect.getsource(fn).replace(
        "acc = prop & (Q1 > 0) & ((P1 * P1) * T2 > (T1 * T1) * Q1)", "acc = prop")
    assert "acc = prop\n" in src
    ns: dict = {}
    exec(src, search.__dict__, ns)
    return ns[fn.__name__]


@pytest.mark.parametrize("H,wins,zmax,lo", [(1, [8], 10, 1.0), (2, [12, 8], 14, 1.3),
                                            (3, [6, 5, 4], 6, 1.7)])
def test_merged_states_count_every_chain(H, wins, zmax, lo):
    m = _slice(lo)
    with np.errstate(all="ignore"):
        n1, h1 = search.q3_first_removal_dfs(m, H, max(wins), wins, zmax)
        n2, h2, states = search.q3_first_removal_states(m, H, wins, zmax)
        p1, q1 = _proposals_only(search.q3_first_removal_dfs)(m, H, max(wins), wins, zmax)
        p2, q2, _ = _proposals_only(search.q3_first_removal_states)(m, H, wins, zmax)
    assert n1 == n2 > 0
    assert h1 == h2 == []
    assert sum(states) < n1                     # merging did something
    assert len(q1) == sum(c for _, _, c in q2) > 0
    assert sorted({r[0] for r in q1}) == sorted({r[0] for r in q2})


def test_low_only_widens():
    """z and the helpers from 8 steps below their ties add nothing: below the tie no level is added"""
    m = _slice(1.1)
    with np.errstate(all="ignore"):
        a = search.q3_first_removal_states(m, 2, [8, 8], 10)[0]
        b = search.q3_first_removal_states(m, 2, [8, 8], 10, low=8)[0]
    assert a == b > 0


def test_proof_margins_hold():
    """steps 3-6 of docs/vectors.md's q3-accept-no-sl2-check proof, in exact rationals (asserts inside)"""
    out = search.q3_margins(verbose=False)
    top, low, zw = out["windows"]
    assert top < 8 and low < 160 and zw < 166          # the windows --first-removal-q3 was run with
    assert out["Y"][2] < 1.006 and out["added_from"] > 0.985
