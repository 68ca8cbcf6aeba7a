"""The Triton source of the three Newton–Schulz kernels (imported only when Triton is).

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


def syrk_kernel(
    X,  # (batch, M, N) input
    A,  # (batch, M, M) output
    M,
    N,
    stride_xb,
    stride_xm,
    stride_xn,
    stride_ab,
    stride_am,
    stride_an,
    BLOCK: tl.constexpr,
    BLOCK_K: tl.constexpr,
    UPCAST: tl.constexpr,
):
    """A = X Xᵀ, upper tiles only: tile (i, j) = Σ_k X[rows_i, k] · X[rows_j, k]ᵀ."""
    # upper-triangle tile number k → (i, j), i ≤ j (see the module docstring)
    k = tl.program_id(0)
    j = ((tl.sqrt(8.0 * k.to(tl.float32) + 1.0) - 1.0) * 0.5).to(tl.int32)
    j = tl.where(j * (j + 1) // 2 > k, j - 1, j)  # fp32 √ is one off for some k > 10⁵
    j = tl.where((j + 1) * (j + 2) // 2 <= k, j + 1, j)
    i = k - j * (j + 1) // 2
    batch = tl.program_id(1).to(tl.int64)
    X += batch * stride_xb
    A += batch * stride_ab

    rows = i * BLOCK + tl.arange(0, BLOCK)  # the tile's rows: rows of X
    cols = j * BLOCK + tl.arange(0, BLOCK)  # the tile's columns: also rows of X
    r64 = rows.to(tl.int64)
    c64 = cols.to(tl.int64)
    acc = tl.zeros((BLOCK, BLOCK), dtype=tl.float32)
    for k0 in range(0, N, BLOCK_K):
        kk = k0 + tl.arange(0, BLOCK_K)
        k64 = kk.to(tl.int64)
        # X[rows, kk] (BLOCK, BLOCK_K) and X[cols, kk]ᵀ (BLOCK_K, BLOCK)
        lhs_mask = (rows[:, None] < M) & (kk[None, :] < N)
        rhs_mask = (kk[:, None] < N) & (cols[None, :] < M)
        lhs = tl.load(X + r64[:, None] * stride_xm + k64[None, :] * stride_xn, lhs_mask, other=0.0)
        rhs = tl.load(X + k64[:, None] * stride_xn + c64[None, :] * stride_xm, rhs_mask, other=0.0)
        if UPCAST:
            lhs = lhs.to(tl.float32)
            rhs = rhs.to(tl.float32)
        acc = tl.dot(lhs, rhs, acc, input_precision="ieee")

    out = acc.to(A.dtype.element_ty)
    # entry (r, c) to A[r, c] where r ≤ c; the transposed tile, laid out (cols, rows) so that
    # neighbouring threads write neighbouring addresses, to A[c, r] where r < c
    upper = (rows[:, None] <= cols[None, :]) & (cols[None, :] < M)
    lower = (cols[:, None] > rows[None, :]) & (cols[:, None] < M)
    tl.store(A + r64[:, None] * stride_am + c64[None, :] * stride_an, out, upper)
    tl.store(A + c64[:, None] * stride_am + r64[None, :] * stride_an, tl.trans(out), lower)


def sym_poly_kernel(
    A,  # (batch, M, M) input, symmetric
    B,  # (batch, M, M) output
    M,
    b,
    c,
    stride_ab,
    stride_am,
    stride_an,
    stride_bb,
    stride_bm,
    stride_bn,
    BLOCK: tl.constexpr,
    BLOCK_K: tl.constexpr,
    UPCAST: tl.constexpr,
):
    """B = b·A + c·A A, upper tiles only; b·A is added in the epilogue, in fp32."""
    k = tl.program_id(0)
    j = ((tl.sqrt(8.0 * k.to(tl.float32) + 1.0) - 1.0) * 0.5).to(tl.int32)
    j = tl.where(j * (j + 1) // 2 > k, j - 1, j)
    j = tl.where((j + 1) * (j + 2) // 2 <= k, j + 1, j)
    i = k - j * (j + 1) // 2
    batch = tl.program_id(1).to(tl.int64)
    A += batch * stride_ab
    B += batch * stride_bb

    rows = i * BLOCK + tl.arange(0, BLOCK)
    cols = j * BLOCK + tl.arange(0, BLOCK)
    r64 = rows.to(tl.int64)
    c64 = cols.to(tl.int64)
    acc = tl.zeros((BLOCK, BLOCK), dtype=tl.float32)
    for k0 in range(0, M, BLOCK_K):
        kk = k0 + tl.arange(0, BLOCK_K)
        k64 = kk.to(tl.int64)
        # A[rows, kk] (BLOCK, BLOCK_K) and A[kk, cols] (BLOCK_K, BLOCK)
        lhs_mask = (rows[:, None] < M) & (kk[None, :] < M)
        rhs_mask = (kk[:, None] < M) & (cols[None, :] < M)
        lhs = tl.load(A + r64[:, None] * stride_am + k64[None, :] * stride_an, lhs_mask, other=0.0)
        rhs = tl.load(A + k64[:, None] * stride_am + c64[None, :] * stride_an, rhs_mask, other=0.0)
        if UPCAST:
            lhs = lhs.to(tl.float32)
            rhs = rhs.to(tl.float32)
        acc = tl.dot(lhs, rhs, acc, input_precision="ieee")

    # epilogue: b·A[rows, cols] + c·(A A)[rows, cols], combined in fp32 and rounded once
    inside = (rows[:, None] < M) & (cols[None, :] < M)
    a_tile = tl.load(A + r64[:, None] * stride_am + c64[None, :] * stride_an, inside, other=0.0)
    out = (b * a_tile.to(tl.float32) + c * acc).to(B.dtype.element_ty)
    upper = (rows[:, None] <= cols[None, :]) & (cols[None, :] < M)
    lower = (cols[:, None] > rows[None, :]) & (cols[:, None] < M)
    tl.store(B + r64[:, None] * stride_bm + c64[None, :] * stride_bn, out, upper)
    tl.store(B + c64[:, None] * stride_bm + r64[None, :] * stride_bn, tl.trans(out), lower)


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
    UPCAST: tl.constexpr,
):
    """Y = a·X + B X, a plain tiled product (B X is not symmetric); a·X in the epilogue."""
    pid = tl.program_id(0)
    tiles_n = tl.cdiv(N, BLOCK_N)
    i = pid // tiles_n
    j = pid % tiles_n
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


KERNELS = ("syrk_kernel", "sym_poly_kernel", "ns_update_kernel")


def build(interpret: bool) -> dict:
    """The three kernels, interpreted (``interpret=True``) or compiled, by name.

    The same choice ``@triton.jit`` makes at decoration time (triton/runtime/jit.py), with the
    mode given instead of read from ``TRITON_INTERPRET``.
    """
    if interpret:
        from triton.runtime.interpreter import InterpretedFunction as wrap
    else:
        wrap = triton.JITFunction
    return {name: wrap(globals()[name]) for name in KERNELS}
