//! A bounds-checked view of the `gemm` crate (the matrix-product kernels burn's flex backend
//! runs on), for the CPU kernels that lower convolutions to matrix products.

use gemm::Parallelism;

/// A read-only matrix inside a slice: element (i, j) is `data[i·row_stride + j·col_stride]`.
#[derive(Debug, Clone, Copy)]
pub struct Mat<'a> {
    data: &'a [f32],
    rows: usize,
    cols: usize,
    row_stride: usize,
    col_stride: usize,
}

impl<'a> Mat<'a> {
    /// A `rows × cols` matrix stored row after row.
    pub fn row_major(data: &'a [f32], rows: usize, cols: usize) -> Self {
        assert!(data.len() >= rows * cols, "matrix larger than its storage");
        Self {
            data,
            rows,
            cols,
            row_stride: cols,
            col_stride: 1,
        }
    }

    /// A `rows × cols` matrix whose rows start `row_stride` apart, e.g. one head's columns of a
    /// [N, H·d] projection.
    pub fn strided(data: &'a [f32], rows: usize, cols: usize, row_stride: usize) -> Self {
        assert!(
            rows == 0 || data.len() >= (rows - 1) * row_stride + cols,
            "matrix larger than its storage"
        );
        Self {
            data,
            rows,
            cols,
            row_stride,
            col_stride: 1,
        }
    }

    /// The same storage read as the transpose.
    pub fn t(self) -> Self {
        Self {
            rows: self.cols,
            cols: self.rows,
            row_stride: self.col_stride,
            col_stride: self.row_stride,
            ..self
        }
    }
}

/// Whether a matrix product may split its work over rayon's threads: yes when the caller runs
/// it alone, no when the caller already runs one product per thread.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Threads {
    Shared,
    Own,
}

/// `dst = lhs · rhs`, or `dst += lhs · rhs` with `accumulate`; `dst` is row-major
/// `lhs.rows × rhs.cols`.
pub fn matmul(dst: &mut [f32], lhs: Mat, rhs: Mat, accumulate: bool, threads: Threads) {
    matmul_strided(dst, rhs.cols, lhs, rhs, accumulate, threads);
}

/// [`matmul`] into a destination whose rows start `dst_row_stride` apart.
pub fn matmul_strided(
    dst: &mut [f32],
    dst_row_stride: usize,
    lhs: Mat,
    rhs: Mat,
    accumulate: bool,
    threads: Threads,
) {
    assert_eq!(lhs.cols, rhs.rows, "inner dimensions differ");
    let (m, n, k) = (lhs.rows, rhs.cols, lhs.cols);
    if m == 0 || n == 0 {
        return;
    }
    assert!(
        dst_row_stride >= n && dst.len() >= (m - 1) * dst_row_stride + n,
        "product larger than its destination"
    );
    if k == 0 {
        if !accumulate {
            dst.chunks_mut(dst_row_stride)
                .take(m)
                .for_each(|row| row[..n].fill(0.0));
        }
        return;
    }
    for mat in [&lhs, &rhs] {
        let last = (mat.rows - 1) * mat.row_stride + (mat.cols - 1) * mat.col_stride;
        assert!(last < mat.data.len(), "matrix reads past its storage");
    }
    let parallelism = match threads {
        Threads::Shared => Parallelism::None,
        Threads::Own => Parallelism::Rayon(0),
    };
    // SAFETY: every index gemm touches lies inside the slices (checked above: the last element
    // of each operand and of the destination), and `dst` is borrowed mutably while the operands
    // are shared borrows, so they cannot alias.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            dst_row_stride as isize,
            accumulate,
            lhs.data.as_ptr(),
            lhs.col_stride as isize,
            lhs.row_stride as isize,
            rhs.data.as_ptr(),
            rhs.col_stride as isize,
            rhs.row_stride as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            parallelism,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(lhs: Mat, rhs: Mat) -> Vec<f32> {
        let mut out = vec![0.0; lhs.rows * rhs.cols];
        for i in 0..lhs.rows {
            for j in 0..rhs.cols {
                out[i * rhs.cols + j] = (0..lhs.cols)
                    .map(|k| {
                        lhs.data[i * lhs.row_stride + k * lhs.col_stride]
                            * rhs.data[k * rhs.row_stride + j * rhs.col_stride]
                    })
                    .sum();
            }
        }
        out
    }

    #[test]
    fn products_of_transposed_views_match_the_definition() {
        let a: Vec<f32> = (0..12).map(|v| v as f32 * 0.5 - 2.0).collect();
        let b: Vec<f32> = (0..20).map(|v| (v as f32).sin()).collect();
        let lhs = Mat::row_major(&a, 4, 3).t(); // 3×4
        let rhs = Mat::row_major(&b, 4, 5); // 4×5
        let mut out = vec![1.0; 15];
        matmul(&mut out, lhs, rhs, false, Threads::Own);
        let expected = naive(lhs, rhs);
        for (got, want) in out.iter().zip(&expected) {
            assert!((got - want).abs() < 1e-5, "{got} vs {want}");
        }
        matmul(&mut out, lhs, rhs, true, Threads::Shared);
        for (got, want) in out.iter().zip(&expected) {
            assert!((got - 2.0 * want).abs() < 1e-5, "{got} vs {}", 2.0 * want);
        }
    }
}
