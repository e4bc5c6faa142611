#!/usr/bin/python3
"""Self-checks of the DeepSeek-V4 numpy oracle (tests/models/v4_ref.py) on a tiny random
checkpoint written by tests/models/make_tiny_ckpt.py: the codecs on every code, fake_quant's
ties to even, sinkhorn, kv_compress against a direct per-window computation, the YaRN ramp of
the Flash values, causality of the whole pass, ref vs f32 numerics, and the CLI on 3, 128 and
270 tokens."""
import io
import math
import os
import subprocess
import sys
import tempfile
import unittest
from contextlib import redirect_stdout

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # small products; the CI machine is shared
os.environ.setdefault("OMP_NUM_THREADS", "1")
import numpy as np  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import make_tiny_ckpt  # noqa: E402
import v4_ref as V  # noqa: E402

TMP = tempfile.TemporaryDirectory(prefix="v4_ref_")
CKPT = os.path.join(TMP.name, "tiny")
make_tiny_ckpt.make(CKPT, seed=1)
IDS = [int(t) for t in np.random.default_rng(7).integers(0, 1024, 270)]
MODELS = {}


def model(numerics):
    if numerics not in MODELS:
        MODELS[numerics] = V.Model(CKPT, numerics)
    return MODELS[numerics]


def rel(a, b):
    return float(np.linalg.norm(np.asarray(a, np.float64) - b) / np.linalg.norm(b))


class Codecs(unittest.TestCase):
    def test_e4m3_all_codes(self):
        t = V.E4M3
        known = {0x00: 0.0, 0x01: 2.0 ** -9, 0x07: 7 * 2.0 ** -9, 0x08: 2.0 ** -6,
                 0x38: 1.0, 0x39: 1.125, 0x40: 2.0, 0x7E: 448.0, 0xFE: -448.0, 0xB8: -1.0}
        for c, v in known.items():
            self.assertEqual(t[c], v, hex(c))
        self.assertTrue(np.isnan(t[0x7F]) and np.isnan(t[0xFF]))
        self.assertEqual(int(np.isnan(t).sum()), 2)
        pos = t[:127]
        self.assertTrue(np.all(np.diff(pos) > 0), "codes 0..126 ascend")
        np.testing.assert_array_equal(t[128:255], -pos)
        # every normal code: (1 + m/8) * 2^(e-7) read from the bits another way
        for c in range(8, 127):
            self.assertEqual(pos[c], math.ldexp(8 + (c & 7), (c >> 3) - 10))

    def test_e2m1_all_codes(self):
        np.testing.assert_array_equal(
            V.E2M1, [0, .5, 1, 1.5, 2, 3, 4, 6, -0., -.5, -1, -1.5, -2, -3, -4, -6])

    def test_e8m0(self):
        v = V.e8m0_to_f64(np.array([0, 1, 126, 127, 128, 254, 255], np.uint8))
        self.assertEqual(list(v[:6]), [2.0 ** -127, 2.0 ** -126, .5, 1., 2., 2.0 ** 127])
        self.assertTrue(np.isnan(v[6]))

    def test_fp4_nibble_order(self):
        w = V.dequant_fp4(np.array([[0x21, 0xF9]], np.uint8), np.array([[128]], np.uint8))
        np.testing.assert_array_equal(w, [[1.0, 2.0, -1.0, -12.0]])

    def test_bf16_round_to_nearest_even(self):
        x = np.array([1 + 2 ** -8, 1 + 3 * 2 ** -8, 1 + 2 ** -8 + 2 ** -20, -(1 + 2 ** -8),
                      3.0e38, 0.0], np.float32)
        want = [1.0, 1 + 2 ** -6, 1 + 2 ** -7, -1.0, 3.0e38, 0.0]
        got = V.round_bf16(x)
        np.testing.assert_array_equal(got[:4], want[:4])
        self.assertEqual(got[5], 0.0)
        self.assertEqual(got.view(np.uint32)[4] & 0xFFFF, 0)

    def test_fake_quant_e4m3_ties_to_even(self):
        # amax 448 -> s = 1; 1.0625 lies halfway between 1 (0x38) and 1.125 (0x39)
        x = np.array([[448, 1.0625, 1.1875, -1.0625, 0.5 * 2 ** -9, 1.5 * 2 ** -9] +
                      [0] * 122], np.float32)
        y = V.fake_quant(x, "e4m3", 128)
        np.testing.assert_array_equal(y[0, :6], [448, 1.0, 1.25, -1.0, 0.0, 2 * 2 ** -9])
        # amax just above 448 doubles the scale: 449/2 -> 224; 3.375/2 = 1.6875 lies halfway
        # between 1.625 (0x3D) and 1.75 (0x3E)
        y = V.fake_quant(np.array([[449, 3.375] + [0] * 126], np.float32), "e4m3", 128)
        np.testing.assert_array_equal(y[0, :2], [448, 3.5])

    def test_fake_quant_e2m1_ties_to_even(self):
        x = np.array([[6, .25, .75, 1.25, 1.75, 2.5, 3.5, 5, -5] + [0] * 23], np.float32)
        y = V.fake_quant(x, "e2m1", 32)
        np.testing.assert_array_equal(y[0, :9], [6, 0, 1, 1, 2, 2, 4, 4, -4])
        y = V.fake_quant(np.array([[12, 5, 7] + [0] * 29], np.float32), "e2m1", 32)
        np.testing.assert_array_equal(y[0, :3], [12, 4, 8])

    def test_fake_quant_range_and_floor(self):
        x = np.zeros((2, 256), np.float32)
        x[:, 192:] = 0.123456789
        np.testing.assert_array_equal(V.fake_quant(x, "e4m3", 64, 0, 192), x)  # rope passes
        tiny = np.full((1, 32), 1e-30, np.float32)  # below the e2m1 floor's resolution
        self.assertTrue(np.all(np.isfinite(V.fake_quant(tiny, "e2m1", 32))))


class Pieces(unittest.TestCase):
    def test_sinkhorn_doubly_stochastic(self):
        L = np.random.default_rng(0).normal(0, 2, (5, 4, 4))
        M = V.sinkhorn(L, 20, 1e-6).astype(np.float64)
        np.testing.assert_allclose(M.sum(-2), 1, atol=1e-5)
        np.testing.assert_allclose(M.sum(-1), 1, atol=1e-3)
        self.assertTrue(np.all(M > 0))

    def test_hadamard_matches_matrix(self):
        D = 128
        H = np.array([[(-1) ** bin(i & j).count("1") for j in range(D)] for i in range(D)])
        x = np.random.default_rng(1).normal(0, 1, (3, D)).astype(np.float32)
        np.testing.assert_allclose(V.hadamard(x), x.astype(np.float64) @ H.T / math.sqrt(D),
                                   rtol=0, atol=1e-5)

    def _direct(self, a, z, ape, m, overlap, w):
        """Entry w from its definition, one channel at a time."""
        d = a.shape[1] // (1 + overlap)
        out = np.zeros(d)
        for k in range(d):
            slots = []
            if overlap and w > 0:
                slots += [(a[p, k], z[p, k] + ape[p % m, k]) for p in range(w * m - m, w * m)]
            off = d if overlap else 0
            slots += [(a[p, off + k], z[p, off + k] + ape[p % m, off + k])
                      for p in range(w * m, w * m + m)]
            zs = np.array([s[1] for s in slots])
            e = np.exp(zs - zs.max())
            out[k] = sum(s[0] * ei for s, ei in zip(slots, e)) / e.sum()
        return out

    def test_kv_compress_matches_direct(self):
        rng = np.random.default_rng(2)
        for m, overlap, T, d in ((4, 1, 19, 6), (8, 0, 27, 5)):
            c = 1 + overlap
            a, z = rng.normal(0, 1, (T, c * d)), rng.normal(0, 2, (T, c * d))
            ape = rng.normal(0, 1, (m, c * d))
            e, epos = V.kv_compress(a, z, ape, m, overlap)
            self.assertEqual(e.shape, (T // m, d))
            self.assertEqual(list(epos), [w * m for w in range(T // m)])
            for w in range(T // m):
                np.testing.assert_allclose(e[w], self._direct(a, z, ape, m, overlap, w),
                                           rtol=1e-6, atol=1e-6)

    def test_yarn_flash_frequencies(self):
        self.assertEqual(V.yarn_range(160000, 64, 65536, 32, 1), (15, 25))
        f = V.yarn_freqs(160000, 64)
        g = V.yarn_freqs(160000, 64, 16, 65536, 32, 1)
        np.testing.assert_array_equal(g[:16], f[:16])
        np.testing.assert_allclose(g[25:], f[25:] / 16, rtol=1e-15)
        self.assertTrue(np.all((g[16:25] < f[16:25]) & (g[16:25] > f[16:25] / 16)))

    def test_rope_inverse_undoes(self):
        x = np.random.default_rng(3).normal(0, 1, (5, 2, 16)).astype(np.float32)
        pos, f = np.arange(5) * 37, V.yarn_freqs(160000, 8, 16, 65536)
        y = V.rope(x, pos, f)
        np.testing.assert_array_equal(y[..., :8], x[..., :8])
        np.testing.assert_allclose(V.rope(y, pos, f, inverse=True), x, atol=1e-5)

    def test_sparse_attention_matches_direct(self):
        rng = np.random.default_rng(4)
        T, H, D, W = 13, 2, 8, 5
        q, kv = rng.normal(0, 1, (T, H, D)), rng.normal(0, 1, (T, D))
        comp, sinks = rng.normal(0, 1, (3, D)), rng.normal(0, 1, H)
        mask = rng.random((T, 3)) < 0.5
        o = V.sparse_attention(q, kv, sinks, W, comp, mask)
        for t in range(T):
            keys = [kv[j] for j in range(max(0, t - W + 1), t + 1)] + \
                [comp[w] for w in range(3) if mask[t, w]]
            for h in range(H):
                lg = [q[t, h] @ k / math.sqrt(D) for k in keys]
                M = max(lg + [sinks[h]])
                e = [math.exp(v - M) for v in lg]
                want = sum(ei * k for ei, k in zip(e, keys)) / (sum(e) + math.exp(sinks[h] - M))
                np.testing.assert_allclose(o[t, h], want, rtol=1e-5, atol=1e-6)

    def test_hc_pre_post_match_direct(self):
        rng = np.random.default_rng(5)
        T, n, C = 3, 4, 8
        X = rng.normal(0, 1, (T, n, C)).astype(np.float32)
        fn, base = rng.normal(0, .3, ((n + 2) * n, n * C)), rng.normal(0, .5, (n + 2) * n)
        scale = np.array([.7, 1.2, .9])
        x, post, comb = V.hc_pre(X, fn, scale, base, 20, 1e-6, 1e-6)
        for t in range(T):
            f = X[t].reshape(-1).astype(np.float64)
            mix = fn @ f / math.sqrt(np.mean(f * f) + 1e-6)
            pre = 1 / (1 + np.exp(-(mix[:n] * scale[0] + base[:n]))) + 1e-6
            np.testing.assert_allclose(x[t], pre @ X[t], rtol=1e-5, atol=1e-6)
            np.testing.assert_allclose(post[t], 2 / (1 + np.exp(-(mix[n:2 * n] * scale[1] +
                                                                 base[n:2 * n]))), rtol=1e-6)
        y = rng.normal(0, 1, (T, C)).astype(np.float32)
        Xn = V.hc_post(X, y, post, comb)
        for t in range(T):
            for k in range(n):
                want = post[t, k] * y[t] + sum(comb[t, j, k] * X[t, j] for j in range(n))
                np.testing.assert_allclose(Xn[t, k], want, rtol=1e-5, atol=1e-6)

    def test_dequant_fp8_partial_blocks(self):
        rng = np.random.default_rng(6)
        codes = rng.integers(0, 256, (130, 200)).astype(np.uint8)
        codes[(codes & 0x7F) == 0x7F] = 0x38
        sc = rng.integers(120, 135, (2, 2)).astype(np.uint8)
        w = V.dequant_fp8(codes, sc)
        for r, c in ((0, 0), (127, 127), (128, 0), (129, 199), (5, 150)):
            self.assertEqual(w[r, c], V.E4M3[codes[r, c]] * 2.0 ** (int(sc[r // 128, c // 128])
                                                                  - 127))
        with self.assertRaisesRegex(V.RefError, r"needs \[2, 2\]"):
            V.dequant_fp8(codes, sc[:1])

    def test_moe_ffn_both_orders(self):
        rng = np.random.default_rng(8)
        T, C, F, E = 3, 128, 128, 3
        x = rng.normal(0, 1, (T, C)).astype(np.float32)
        gu = [rng.normal(0, .2, (2 * F, C)) for _ in range(E)]
        dn = [rng.normal(0, .2, (C, F)) for _ in range(E)]
        ex, wt = np.array([[0, 2], [1, 0], [2, 1]]), rng.uniform(.2, 1, (T, 2)).astype(np.float32)
        for aq in (False, True):
            y = V.moe_ffn(x, ex, wt, gu, dn, 10.0, aq)
            for t in range(T):
                xt = V.fake_quant(x[t:t + 1], "e4m3", 128)[0] if aq else x[t]
                want = np.zeros(C)
                for i in range(2):
                    e = ex[t, i]
                    g, u = gu[e][:F] @ xt, gu[e][F:] @ xt
                    h = V.swiglu(g, u, 10.0)
                    if aq:
                        want += dn[e] @ V.fake_quant((wt[t, i] * h)[None].astype(np.float32),
                                                     "e4m3", 128)[0]
                    else:
                        want += wt[t, i] * (dn[e] @ h)
                np.testing.assert_allclose(y[t], want, rtol=1e-5, atol=1e-5)

    def test_topk_fill(self):
        x = np.array([[1.0, 3.0, 3.0, -np.inf, 2.0]], np.float32)
        np.testing.assert_array_equal(V.topk_fill(x, 5), [[1, 2, 4, 0, -1]])


class Forward(unittest.TestCase):
    def test_causal(self):
        """Logits at position t do not change when later tokens change."""
        m = model("ref")
        a = IDS[:150]
        b = a[:100] + [(t * 7 + 3) % 1024 for t in a[100:]]
        la, lb = m.forward(a, 0), m.forward(b, 0)
        # bit-identical here; a tolerance so another BLAS's row blocking cannot fail it
        np.testing.assert_allclose(la[:100], lb[:100], rtol=0, atol=1e-3)
        self.assertGreater(np.abs(la[100:] - lb[100:]).max(), 1e-2)

    def test_ref_vs_f32_close_but_different(self):
        lr, lf = model("ref").forward(IDS[:40], 0), model("f32").forward(IDS[:40], 0)
        r = np.linalg.norm(lr - lf, axis=1) / np.linalg.norm(lf, axis=1)
        print(f"\nref vs f32: median relative diff {np.median(r):.3g}, max {r.max():.3g}")
        self.assertTrue(np.all(np.isfinite(lr)) and np.all(np.isfinite(lf)))
        self.assertGreater(np.median(r), 1e-3)
        self.assertLess(np.median(r), 0.2)
        agree = np.mean(lr.argmax(1) == lf.argmax(1))
        self.assertGreater(agree, 0.5)

    def test_f32_ignores_later_quant_points(self):
        """f32 numerics are the same whichever pieces R/FQ would touch: R is the identity."""
        x = np.array([1 + 2 ** -8], np.float32)
        self.assertEqual(model("f32").R(x)[0], x[0])
        self.assertEqual(model("ref").R(x)[0], 1.0)

    def _cli(self, ids, *extra):
        out = os.path.join(TMP.name, "logits.npy")
        buf = io.StringIO()
        with redirect_stdout(buf):
            rc = V.main(["--model", CKPT, "--ids", " ".join(map(str, ids)), "--numerics", "ref",
                         "--out", out] + list(extra))
        self.assertEqual(rc, 0)
        return np.load(out), buf.getvalue()

    def test_lengths_run(self):
        """3 tokens (no compressed entries), exactly 128 (HCA entry 0 from the last token, the
        window full) and 270 (window eviction, CSA top-8 of 67 entries, two HCA entries)."""
        for n in (3, 128):
            lg, _ = self._cli(IDS[:n])
            self.assertEqual(lg.shape, (1, 1024))
            self.assertEqual(lg.dtype, np.float32)
            self.assertTrue(np.all(np.isfinite(lg)))
        np.testing.assert_allclose(lg[0], model("ref").forward(IDS[:128], 127)[0], atol=1e-6)
        lg = model("ref").forward(IDS, 260)
        self.assertEqual(lg.shape, (10, 1024))
        self.assertTrue(np.all(np.isfinite(lg)))

    def test_from_and_greedy(self):
        lg, _ = self._cli(IDS[:10], "--from", "7")
        full = model("ref").forward(IDS[:10], 0)
        self.assertEqual(lg.shape, (4, 1024))
        np.testing.assert_allclose(lg, full[6:], atol=1e-6)
        lg, text = self._cli(IDS[:10], "--greedy", "3")
        gen = [int(t) for t in text.split("generated:")[1].split()]
        self.assertEqual(len(gen), 3)
        self.assertEqual(lg.shape, (3, 1024))
        self.assertEqual(gen[0], int(full[-1].argmax()))
        np.testing.assert_allclose(lg[0], full[-1], atol=1e-6)
        again = model("ref").forward(IDS[:10] + gen[:2], 0)
        np.testing.assert_allclose(lg, again[9:], atol=1e-5)
        self.assertEqual(gen, [int(r.argmax()) for r in again[9:]])

    def test_subprocess_and_errors(self):
        out = os.path.join(TMP.name, "sub.npy")
        r = subprocess.run([sys.executable, os.path.join(HERE, "v4_ref.py"), "--model", CKPT,
                            "--ids", "0 5 7", "--numerics", "f32", "--out", out],
                           capture_output=True, text=True)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(np.load(out).shape, (1, 1024))
        r = subprocess.run([sys.executable, os.path.join(HERE, "v4_ref.py"), "--model", CKPT,
                            "--ids", "0 5 4096", "--numerics", "f32", "--out", out],
                           capture_output=True, text=True)
        self.assertEqual(r.returncode, 1)
        self.assertIn("[0, 1024)", r.stderr)
        ck = V.Checkpoint(CKPT)
        with self.assertRaisesRegex(V.RefError, "layers.9.attn.wkv.weight is missing"):
            ck.weight("layers.9.attn.wkv")


if __name__ == "__main__":
    res = unittest.main(exit=False, verbosity=2).result
    TMP.cleanup()
    sys.exit(0 if res.wasSuccessful() else 1)
