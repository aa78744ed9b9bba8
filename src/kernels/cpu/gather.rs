//! Dense row-major copies of strided views: what a permuted tensor (an NCHW map seen as
//! NHWC, or the reverse) costs when a kernel needs its elements in order.
//!
//! Both CPU backends fall back to an element-by-element walk with a multi-dimensional
//! index for views that do not collapse to two axes, which costs ~20 ns an element on the
//! 32×32 MobileNet maps (burn-flex 0.21's `to_contiguous` on an `[N, HW, C]` transpose):
//! more than the convolution that follows. Here the axes are collapsed first and the
//! innermost transpose is copied in cache-sized tiles, one image (outer index) per task.

use std::mem::MaybeUninit;

use rayon::prelude::*;

/// Side of the square tiles of a transposing copy: 16 × 16 `f32` reads and writes stay
/// within a few cache lines each.
const TILE: usize = 16;

/// The elements of the view `(shape, strides)` over `memory` starting at `offset`, in
/// row-major order; `None` for a view with a negative stride (the caller takes its
/// backend's own copy).
pub(crate) fn dense_copy(
    memory: &[f32],
    offset: usize,
    shape: &[usize],
    strides: &[isize],
) -> Option<Vec<f32>> {
    if strides.iter().any(|&s| s < 0) {
        return None;
    }
    let total: usize = shape.iter().product();
    let (shape, strides) = collapse(shape, strides);
    let Some((&cols, outer)) = shape.split_last() else {
        // Every axis has length 1 (or there are none): one element.
        return Some(if total == 0 {
            Vec::new()
        } else {
            vec![memory[offset]]
        });
    };
    if total == 0 {
        return Some(Vec::new());
    }
    let col_stride = strides[strides.len() - 1];
    // One task copies the plane of the last two axes (`[rows, cols]`), in tiles when it
    // transposes; the axes before it are the tasks.
    let (rows, row_stride, outer_len) = match outer.last() {
        Some(&rows) => (rows, strides[strides.len() - 2], outer.len() - 1),
        None => (1, 0, 0),
    };
    let (outer_shape, outer_strides) = (&shape[..outer_len], &strides[..outer_len]);
    let plane = rows * cols;
    // SAFETY: the chunks of `out` are the planes, one per outer index; `copy_plane` writes
    // each of its `rows × cols` elements exactly once.
    let out = unsafe {
        super::uninit_vec(total, |out| {
            out.par_chunks_mut(plane)
                .enumerate()
                .for_each(|(outer_index, dst)| {
                    let base = offset + outer_offset(outer_index, outer_shape, outer_strides);
                    copy_plane(memory, base, (rows, row_stride), (cols, col_stride), dst);
                });
        })
    };
    Some(out)
}

/// `(shape, strides)` without length-1 axes, and with each pair of neighbouring axes
/// that walks memory as one axis (`stride[i] == stride[i + 1] * shape[i + 1]`) merged.
fn collapse(shape: &[usize], strides: &[isize]) -> (Vec<usize>, Vec<usize>) {
    let mut merged_shape: Vec<usize> = Vec::with_capacity(shape.len());
    let mut merged_strides: Vec<usize> = Vec::with_capacity(shape.len());
    for (&len, &stride) in shape.iter().zip(strides) {
        if len == 1 {
            continue;
        }
        let stride = stride as usize;
        match (merged_shape.last_mut(), merged_strides.last_mut()) {
            (Some(last_len), Some(last_stride)) if *last_stride == stride * len => {
                *last_len *= len;
                *last_stride = stride;
            }
            _ => {
                merged_shape.push(len);
                merged_strides.push(stride);
            }
        }
    }
    (merged_shape, merged_strides)
}

/// Memory offset of the `index`-th (row-major) position of the outer axes.
fn outer_offset(mut index: usize, shape: &[usize], strides: &[usize]) -> usize {
    let mut offset = 0;
    for (&len, &stride) in shape.iter().zip(strides).rev() {
        offset += (index % len) * stride;
        index /= len;
    }
    offset
}

/// Copies the `[rows, cols]` plane at `base` (strides `row_stride`, `col_stride`) into
/// `dst` row-major; every element of `dst` written.
fn copy_plane(
    memory: &[f32],
    base: usize,
    (rows, row_stride): (usize, usize),
    (cols, col_stride): (usize, usize),
    dst: &mut [MaybeUninit<f32>],
) {
    if col_stride == 1 {
        for (r, dst_row) in dst.chunks_mut(cols).enumerate() {
            let start = base + r * row_stride;
            for (d, &s) in dst_row.iter_mut().zip(&memory[start..start + cols]) {
                d.write(s);
            }
        }
        return;
    }
    for r0 in (0..rows).step_by(TILE) {
        for c0 in (0..cols).step_by(TILE) {
            for r in r0..(r0 + TILE).min(rows) {
                let dst_row = &mut dst[r * cols..(r + 1) * cols];
                let row_base = base + r * row_stride;
                for (c, d) in dst_row
                    .iter_mut()
                    .enumerate()
                    .take((c0 + TILE).min(cols))
                    .skip(c0)
                {
                    d.write(memory[row_base + c * col_stride]);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every view of a small buffer reads back as a naive multi-index walk does.
    #[test]
    fn strided_views_copy_in_row_major_order() {
        let memory: Vec<f32> = (0..2 * 3 * 40 * 5).map(|i| i as f32).collect();
        // (shape, strides, offset) of views over a [2, 3, 40, 5] buffer.
        let views: [(&[usize], &[isize], usize); 6] = [
            (&[2, 40, 5, 3], &[600, 5, 1, 200], 0),  // NCHW seen as NHWC
            (&[2, 3, 40, 5], &[600, 200, 5, 1], 0),  // dense
            (&[2, 3, 5, 40], &[600, 200, 1, 5], 0),  // last two axes swapped
            (&[3, 40, 1, 2], &[200, 5, 1, 600], 1),  // offset, a length-1 axis
            (&[5, 3, 2, 40], &[1, 200, 600, 5], 0),  // axes reversed
            (&[2, 2, 20, 5], &[600, 200, 10, 2], 3), // a slice with steps
        ];
        for (shape, strides, offset) in views {
            let mut expected = Vec::new();
            let total: usize = shape.iter().product();
            for flat in 0..total {
                let mut rest = flat;
                let mut at = offset;
                for (&len, &stride) in shape.iter().zip(strides).rev() {
                    at += (rest % len) * stride as usize;
                    rest /= len;
                }
                expected.push(memory[at]);
            }
            let got = dense_copy(&memory, offset, shape, strides).expect("positive strides");
            assert_eq!(got, expected, "view {shape:?} {strides:?} at {offset}");
        }
        assert_eq!(dense_copy(&memory, 0, &[2, 3], &[-1, 2]), None);
    }
}
