//! Dense symmetric positive definite solves for the ridge normal equations.

/// Solves `A X = B` in place for symmetric positive definite `A` (`n x n`, row-major, its
/// lower triangle overwritten by the Cholesky factor L) and `B` (`n x m`, row-major,
/// overwritten by X). Returns `false` if `A` is not numerically positive definite.
pub(crate) fn cholesky_solve(a: &mut [f64], n: usize, b: &mut [f64], m: usize) -> bool {
    debug_assert_eq!(a.len(), n * n);
    debug_assert_eq!(b.len(), n * m);
    for j in 0..n {
        let diagonal = a[j * n + j] - (0..j).map(|k| a[j * n + k] * a[j * n + k]).sum::<f64>();
        if !(diagonal.is_finite() && diagonal > 0.0) {
            return false;
        }
        let pivot = diagonal.sqrt();
        a[j * n + j] = pivot;
        for i in j + 1..n {
            let dot: f64 = (0..j).map(|k| a[i * n + k] * a[j * n + k]).sum();
            a[i * n + j] = (a[i * n + j] - dot) / pivot;
        }
    }
    // L Y = B, forward.
    for i in 0..n {
        for k in 0..i {
            let l = a[i * n + k];
            for c in 0..m {
                b[i * m + c] -= l * b[k * m + c];
            }
        }
        let pivot = a[i * n + i];
        for c in 0..m {
            b[i * m + c] /= pivot;
        }
    }
    // L^T X = Y, backward.
    for i in (0..n).rev() {
        for k in i + 1..n {
            let l = a[k * n + i];
            for c in 0..m {
                b[i * m + c] -= l * b[k * m + c];
            }
        }
        let pivot = a[i * n + i];
        for c in 0..m {
            b[i * m + c] /= pivot;
        }
    }
    true
}

/// Empirical quantile (linear interpolation between order statistics, "type 7") of `values`,
/// which it sorts. `values` must not be empty.
pub(crate) fn empirical_quantile(values: &mut [f64], level: f64) -> f64 {
    values.sort_unstable_by(f64::total_cmp);
    let position = level.clamp(0.0, 1.0) * (values.len() - 1) as f64;
    let below = position.floor() as usize;
    let above = position.ceil() as usize;
    let fraction = position - below as f64;
    values[below] + (values[above] - values[below]) * fraction
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn solves_a_small_spd_system() {
        // A = [[4, 2], [2, 3]], x = [1, -2] -> b = [0, -4].
        let mut a = vec![4.0, 2.0, 2.0, 3.0];
        let mut b = vec![0.0, -4.0];
        assert!(cholesky_solve(&mut a, 2, &mut b, 1));
        assert!(
            (b[0] - 1.0).abs() < 1e-12 && (b[1] + 2.0).abs() < 1e-12,
            "{b:?}"
        );
    }

    #[test]
    fn rejects_an_indefinite_matrix() {
        let mut a = vec![1.0, 2.0, 2.0, 1.0];
        let mut b = vec![1.0, 1.0];
        assert!(!cholesky_solve(&mut a, 2, &mut b, 1));
    }

    #[test]
    fn interpolates_quantiles() {
        let mut v = vec![4.0, 1.0, 3.0, 2.0];
        assert_eq!(empirical_quantile(&mut v, 0.5), 2.5);
        assert_eq!(empirical_quantile(&mut v, 0.0), 1.0);
        assert_eq!(empirical_quantile(&mut v, 1.0), 4.0);
    }
}
