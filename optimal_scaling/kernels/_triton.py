"""The Triton source of the Newton–Schulz kernels (imported only when Triton is).

``sym_kernel`` computes a symmetric S = P Pᵀ, optionally β·P + α·P Pᵀ (``EPILOGUE``):
A = X Xᵀ and B = b·A + c·A A (A symmetric, so A A = A Aᵀ) are the same kernel.
``ns_update_kernel`` computes Y = a·X + B X.

The kernels are plain functions turned into Triton kernels by :func:`build`, once per mode
(compiled or interpreted), so the mode follows ``TRITON_INTERPRET`` at call time. Grid axis 0
walks output tiles, axis 1 the batch; every tensor comes with (batch, row, column) strides and
indices are int64 before they meet a stride; tails are masked. Symmetric results compute only
tiles (i, j), i ≤ j: program k takes the k-th tile of the column-major upper triangle,
j = ⌊(√(8k+1) − 1)/2⌋, i = k − j(j+1)/2, and writes entry (r, c) to S[r, c] if r ≤ c and to
S[c, r] if r < c, so every entry has one writer and S == Sᵀ bit for bit. ``UPCAST`` turns bf16
tiles into fp32 before ``tl.dot`` (the interpreter's dot multiplies raw bf16 bits).
"""

import triton
import triton.language as tl


def sym_kernel(
    P,  # (batch, M, K) input
    S,  # (batch, M, M) output
    M,
    K,
    alpha,
    beta,
    stride_pb,
    stride_pm,
    stride_pk,
    stride_sb,
    stride_sm,
    stride_sn,
    BLOCK: tl.constexpr,
    BLOCK_K: tl.constexpr,
    UPCAST: tl.constexpr,
    EPILOGUE: tl.constexpr,
):
    """S = P Pᵀ (EPILOGUE off) or β·P + α·P Pᵀ (on; P square and symmetric, so P Pᵀ = P P).

    syrk is the first (P = X), sym_poly the second (P = A, β = b, α = c). Upper tiles only.
    """
    # upper-triangle tile number t → (i, j), i ≤ j (see the module docstring)
    t = tl.program_id(0)
    j = ((tl.sqrt(8.0 * t.to(tl.float32) + 1.0) - 1.0) * 0.5).to(tl.int32)
    j = tl.where(j * (j + 1) // 2 > t, j - 1, j)  # fp32 √ is one off for some t > 10⁵
    j = tl.where((j + 1) * (j + 2) // 2 <= t, j + 1, j)
    i = t - j * (j + 1) // 2
    batch = tl.program_id(1).to(tl.int64)
    P += batch * stride_pb
    S += batch * stride_sb

    rows = i * BLOCK + tl.arange(0, BLOCK)  # the tile's rows: rows of P
    cols = j * BLOCK + tl.arange(0, BLOCK)  # the tile's columns: also rows of P
    r64 = rows.to(tl.int64)
    c64 = cols.to(tl.int64)
    acc = tl.zeros((BLOCK, BLOCK), dtype=tl.float32)
    for k0 in range(0, K, BLOCK_K):
        kk = k0 + tl.arange(0, BLOCK_K)
        k64 = kk.to(tl.int64)
        # P[rows, kk] (BLOCK, BLOCK_K) and P[cols, kk]ᵀ (BLOCK_K, BLOCK)
        lhs_mask = (rows[:, None] < M) & (kk[None, :] < K)
        rhs_mask = (kk[:, None] < K) & (cols[None, :] < M)
        lhs = tl.load(P + r64[:, None] * stride_pm + k64[None, :] * stride_pk, lhs_mask, other=0.0)
        rhs = tl.load(P + k64[:, None] * stride_pk + c64[None, :] * stride_pm, rhs_mask, other=0.0)
        if UPCAST:
            lhs = lhs.to(tl.float32)
            rhs = rhs.to(tl.float32)
        acc = tl.dot(lhs, rhs, acc, input_precision="ieee")

    if EPILOGUE:  # β·P[rows, cols] + α·acc, combined in fp32 and rounded once
        inside = (rows[:, None] < M) & (cols[None, :] < M)
        tile = tl.load(P + r64[:, None] * stride_pm + c64[None, :] * stride_pk, inside, other=0.0)
        acc = beta * tile.to(tl.float32) + alpha * acc
    out = acc.to(S.dtype.element_ty)
    # entry (r, c) to S[r, c] where r ≤ c; the transposed tile, laid out (cols, rows) so that
    # neighbouring threads write neighbouring addresses, to S[c, r] where r < c
    upper = (rows[:, None] <= cols[None, :]) & (cols[None, :] < M)
    lower = (cols[:, None] > rows[None, :]) & (cols[:, None] < M)
    tl.store(S + r64[:, None] * stride_sm + c64[None, :] * stride_sn, out, upper)
    tl.store(S + c64[:, None] * stride_sm + r64[None, :] * stride_sn, tl.trans(out), lower)


def ns_update_kernel(
    X,  # (batch, M, N) input
    B,  # (batch, M, M) input
    Y,  # (batch, M, N) output
    M,
    N,
    a,
    stride_xb,
    stride_xm,
    stride_xn,
    stride_bb,
    stride_bm,
    stride_bn,
    stride_yb,
    stride_ym,
    stride_yn,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,
    GROUP_M: tl.constexpr,
    UPCAST: tl.constexpr,
):
    """Y = a·X + B X, a plain tiled product (B X is not symmetric); a·X in the epilogue.

    Tiles are visited in groups of GROUP_M tile rows, column by column inside a group, so
    programs that run together share rows of B and columns of X in the L2 cache (GROUP_M = 1:
    plain row-major order).
    """
    pid = tl.program_id(0)
    tiles_m = tl.cdiv(M, BLOCK_M)
    tiles_n = tl.cdiv(N, BLOCK_N)
    per_group = GROUP_M * tiles_n
    first = (pid // per_group) * GROUP_M
    rows_in_group = tl.minimum(tiles_m - first, GROUP_M)
    i = first + (pid % per_group) % rows_in_group
    j = (pid % per_group) // rows_in_group
    batch = tl.program_id(1).to(tl.int64)
    X += batch * stride_xb
    B += batch * stride_bb
    Y += batch * stride_yb

    rows = i * BLOCK_M + tl.arange(0, BLOCK_M)
    cols = j * BLOCK_N + tl.arange(0, BLOCK_N)
    r64 = rows.to(tl.int64)
    c64 = cols.to(tl.int64)
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for k0 in range(0, M, BLOCK_K):
        kk = k0 + tl.arange(0, BLOCK_K)
        k64 = kk.to(tl.int64)
        # B[rows, kk] (BLOCK_M, BLOCK_K) and X[kk, cols] (BLOCK_K, BLOCK_N)
        lhs_mask = (rows[:, None] < M) & (kk[None, :] < M)
        rhs_mask = (kk[:, None] < M) & (cols[None, :] < N)
        lhs = tl.load(B + r64[:, None] * stride_bm + k64[None, :] * stride_bn, lhs_mask, other=0.0)
        rhs = tl.load(X + k64[:, None] * stride_xm + c64[None, :] * stride_xn, rhs_mask, other=0.0)
        if UPCAST:
            lhs = lhs.to(tl.float32)
            rhs = rhs.to(tl.float32)
        acc = tl.dot(lhs, rhs, acc, input_precision="ieee")

    # epilogue: a·X[rows, cols] + (B X)[rows, cols], combined in fp32 and rounded once
    inside = (rows[:, None] < M) & (cols[None, :] < N)
    x_tile = tl.load(X + r64[:, None] * stride_xm + c64[None, :] * stride_xn, inside, other=0.0)
    out = (a * x_tile.to(tl.float32) + acc).to(Y.dtype.element_ty)
    tl.store(Y + r64[:, None] * stride_ym + c64[None, :] * stride_yn, out, inside)


KERNELS = ("sym_kernel", "ns_update_kernel")


def build(interpret: bool) -> dict:
    """The two kernels, interpreted (``interpret=True``) or compiled, by name.

    The same choice ``@triton.jit`` makes at decoration time (triton/runtime/jit.py), with the
    mode given instead of read from ``TRITON_INTERPRET``.
    """
    if interpret:
        from triton.runtime.interpreter import InterpretedFunction as wrap
    else:
        wrap = triton.JITFunction
    return {name: wrap(globals()[name]) for name in KERNELS}
