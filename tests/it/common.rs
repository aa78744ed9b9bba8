//! Helpers shared by the integration tests.

use std::path::{Path, PathBuf};
use std::process::Command;

use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Deterministic uniform values in [-1, 1).
pub fn random_values(seed: u64, len: usize) -> Vec<f32> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..len).map(|_| rng.random_range(-1.0f32..1.0)).collect()
}

/// A tensor holding `values` with the given shape.
pub fn tensor<B: Backend, const D: usize>(
    values: &[f32],
    shape: [usize; D],
    device: &B::Device,
) -> Tensor<B, D> {
    Tensor::from_data(TensorData::new(values.to_vec(), shape), device)
}

/// A tensor's values as `f32`.
pub fn values<B: Backend, const D: usize>(t: Tensor<B, D>) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .into_vec::<f32>()
        .expect("f32 data")
}

/// Asserts `|actual - expected| <= tol * max(1, max |expected|)` element-wise.
///
/// The scale makes the bound relative to the size of the values, as f32 accumulation
/// error grows with them.
pub fn assert_close<A: Copy + Into<f64> + std::fmt::Display>(
    what: &str,
    actual: &[A],
    expected: &[f64],
    tol: f64,
) {
    assert_eq!(
        actual.len(),
        expected.len(),
        "{what}: length {} != {}",
        actual.len(),
        expected.len()
    );
    let scale = expected.iter().fold(1.0f64, |m, v| m.max(v.abs()));
    for (i, (a, e)) in actual.iter().zip(expected).enumerate() {
        let err = ((*a).into() - e).abs();
        assert!(
            err <= tol * scale,
            "{what}: element {i}: got {a}, expected {e} (error {err:.3e} > {:.3e})",
            tol * scale
        );
    }
}

/// A file under `tests/fixtures/`.
pub fn fixture(name: &str) -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// Asserts `max_relative_diff(got, expected) <= tol`, showing the first values.
pub fn assert_relative(what: &str, got: &[f32], expected: &[f32], tol: f64) {
    assert_eq!(got.len(), expected.len(), "{what}: length");
    let diff = max_relative_diff(got, expected);
    eprintln!("{what}: max relative difference {diff:.2e}");
    assert!(
        diff <= tol,
        "{what}: max relative difference {diff:.3e} > {tol:e}\n got      {:?}\n expected {:?}",
        &got[..got.len().min(6)],
        &expected[..expected.len().min(6)]
    );
}

/// Replaces every parameter of an inner-backend model by its gradient (zeros where it has
/// none), so that a model's export names its gradients.
pub struct GradientsAsValues<'a> {
    /// The gradients of an autodiff step.
    pub grads: &'a burn::optim::GradientsParams,
}

impl<B: Backend> burn::module::ModuleMapper<B> for GradientsAsValues<'_> {
    fn map_float<const D: usize>(
        &mut self,
        param: burn::module::Param<Tensor<B, D>>,
    ) -> burn::module::Param<Tensor<B, D>> {
        let id = param.id;
        let value = param.val();
        let grad = self
            .grads
            .get::<B, D>(id)
            .unwrap_or_else(|| value.zeros_like());
        burn::module::Param::initialized(id, grad)
    }
}

/// Replaces every randomly initialised parameter by values drawn from one seeded generator
/// (uniform, Kaiming's fan-out scale), keeping constant ones (BatchNorm's 1 and 0, zero
/// biases): the backends' own generators are shared by the tests running in parallel, so
/// a seed set there does not give a test the same model twice.
pub struct SeededParameters(pub StdRng);

impl SeededParameters {
    pub fn new(seed: u64) -> Self {
        Self(StdRng::seed_from_u64(seed))
    }
}

impl<B: Backend> burn::module::ModuleMapper<B> for SeededParameters {
    fn map_float<const D: usize>(
        &mut self,
        param: burn::module::Param<Tensor<B, D>>,
    ) -> burn::module::Param<Tensor<B, D>> {
        let id = param.id;
        let value = param.val();
        let dims = value.dims();
        let data = value.to_data().to_vec::<f32>().unwrap();
        if data.iter().all(|v| *v == data[0]) {
            return burn::module::Param::initialized(id, value);
        }
        // Fan-out: every dimension but the input channels (1 of a conv, 0 of Burn's Linear).
        let fan = data.len() / dims.get(1).copied().unwrap_or(1).max(1);
        let bound = (6.0 / fan as f32).sqrt();
        let fresh = (0..data.len())
            .map(|_| self.0.random_range(-bound..bound))
            .collect::<Vec<f32>>();
        let device = value.device();
        burn::module::Param::initialized(id, tensor(&fresh, dims, &device))
    }
}

/// Checks every parameter gradient a fixture holds (`grad.<key>`, `grad.input` aside)
/// against `model`'s gradients `grads` under the same PyTorch keys, each within 1e-3
/// relative; at least ten of them.
pub fn assert_parameter_gradients<A: burn::tensor::backend::AutodiffBackend>(
    what: &str,
    model: &dwconv::models::MobileNet<A>,
    grads: A::Gradients,
    io: &dwconv::models::StateDict,
) {
    use burn::module::{AutodiffModule, Module};
    let grads = burn::optim::GradientsParams::from_grads(grads, model);
    let grad_state = model
        .valid()
        .map(&mut GradientsAsValues { grads: &grads })
        .to_torchvision();
    let mut checked = 0;
    for key in io.tensors.keys() {
        let Some(param) = key.strip_prefix("grad.").filter(|k| *k != "input") else {
            continue;
        };
        let got = grad_state.values(param).expect("a parameter of the model");
        assert_relative(
            &format!("{what} gradient of {param}"),
            &got,
            &io.values(key).unwrap(),
            1e-3,
        );
        checked += 1;
    }
    assert!(
        checked >= 10,
        "{what}: only {checked} gradients in the fixture"
    );
}

/// Largest relative difference between two equally long vectors, scaled by the largest
/// magnitude in `b`.
pub fn max_relative_diff(a: &[f32], b: &[f32]) -> f64 {
    let scale = b.iter().fold(1e-12f64, |m, v| m.max(v.abs() as f64));
    a.iter()
        .zip(b)
        .map(|(x, y)| (*x as f64 - *y as f64).abs() / scale)
        .fold(0.0, f64::max)
}

/// A fresh, empty directory under the system's temporary directory, removed when the
/// guard is dropped unless the test is failing (then it is left for a look).
pub fn scratch_dir(name: &str) -> ScratchDir {
    let dir = std::env::temp_dir().join(format!("dwconv-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    ScratchDir(dir)
}

/// See [`scratch_dir`]; derefs to its path.
pub struct ScratchDir(PathBuf);

impl std::ops::Deref for ScratchDir {
    type Target = Path;

    fn deref(&self) -> &Path {
        &self.0
    }
}

impl AsRef<std::ffi::OsStr> for ScratchDir {
    fn as_ref(&self) -> &std::ffi::OsStr {
        self.0.as_os_str()
    }
}

impl ScratchDir {
    /// The directory renamed to `name` (replacing what was there) and no longer removed.
    pub fn keep_as(self, name: &str) -> PathBuf {
        let kept = std::env::temp_dir().join(name);
        let _ = std::fs::remove_dir_all(&kept);
        std::fs::rename(&self.0, &kept).unwrap();
        kept
    }
}

impl AsRef<Path> for ScratchDir {
    fn as_ref(&self) -> &Path {
        &self.0
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// Runs `command` to its end and returns its standard output, failing the test with both
/// outputs (prefixed by `what`) when it did not succeed.
pub fn run_to_success(what: &str, command: &mut Command) -> String {
    let out = command.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{what}: {stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// This test binary again, running only the test `name` (its full path, e.g.
/// `resume::resumed_run_equals_uninterrupted_run`) on one thread: a process of its own.
pub fn this_test_alone(name: &str) -> Command {
    let mut command = Command::new(std::env::current_exe().unwrap());
    command.args(["--exact", name, "--test-threads=1"]);
    command
}

/// Runs `body` in a process of its own: this test binary again with only the test `name`
/// selected (Burn's CPU random generators are process-wide, and another test drawing from
/// one mid-run would change this run's dropout or drop path masks). In that child process
/// `body` runs; the parent checks that it ran exactly this test and passed.
pub fn in_a_process_of_its_own(name: &str, body: impl FnOnce()) {
    const CHILD: &str = "DWCONV_TEST_ALONE";
    if std::env::var_os(CHILD).is_some() {
        return body();
    }
    let out = this_test_alone(name).env(CHILD, "1").output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the test in its own process failed: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The child ran exactly this test (a wrong filter would pass with 0 tests).
    assert!(stdout.contains("test result: ok. 1 passed"), "{stdout}");
}

/// Non-fusion wgpu (`burn::backend::Wgpu` is this only while Burn's `fusion` is off).
#[cfg(feature = "wgpu")]
pub type WgpuDirect =
    burn::backend::wgpu::CubeBackend<burn::backend::wgpu::WgpuRuntime, f32, i32, u32>;

/// Wgpu as Burn's default features build it: fusion over the CubeCL backend.
#[cfg(all(feature = "wgpu", feature = "fusion"))]
pub type WgpuFusion = burn_fusion::Fusion<WgpuDirect>;

/// Runs one generic test body, `fn name<B: DepthwiseBackend>(backend: &str)`, as one test
/// per backend this build has: `name::ndarray`, `name::flex`, `name::wgpu` (no fusion),
/// `name::wgpu_fusion`, `name::candle`, `name::router` (over Flex and NdArray, on the
/// first), `name::dispatch` (on its default device).
macro_rules! test_on_every_backend {
    ($($name:ident),+ $(,)?) => {$(
        mod $name {
            #[cfg(feature = "ndarray")]
            #[test]
            fn ndarray() {
                super::$name::<burn::backend::NdArray>("ndarray")
            }

            #[cfg(feature = "flex")]
            #[test]
            fn flex() {
                super::$name::<burn::backend::Flex>("flex")
            }

            #[cfg(feature = "wgpu")]
            #[test]
            fn wgpu() {
                super::$name::<$crate::common::WgpuDirect>("wgpu")
            }

            #[cfg(all(feature = "wgpu", feature = "fusion"))]
            #[test]
            fn wgpu_fusion() {
                super::$name::<$crate::common::WgpuFusion>("wgpu-fusion")
            }

            #[cfg(feature = "candle")]
            #[test]
            #[allow(deprecated)]
            fn candle() {
                super::$name::<burn::backend::Candle>("candle")
            }

            #[cfg(all(feature = "router", feature = "flex"))]
            #[test]
            fn router() {
                super::$name::<burn::backend::Router<(burn::backend::Flex, burn::backend::NdArray)>>("router")
            }

            #[cfg(feature = "dispatch")]
            #[test]
            fn dispatch() {
                super::$name::<burn::Dispatch>("dispatch")
            }
        }
    )+};
}
pub(crate) use test_on_every_backend;
