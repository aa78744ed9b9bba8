//! Published ImageNet weights by name (feature `pretrained`).
//!
//! Each [`Weights`] names one checkpoint that torchvision publishes, with its URL, the
//! SHA-256 prefix torchvision publishes in the file name (the part after the last `-`,
//! which torchvision's own `check_hash` compares), and the preprocessing it was evaluated
//! with. [`MobileNetConfig::pretrained`] downloads a checkpoint once into
//! [`cache_dir`] (with a progress bar on a terminal), checks its hash, writes it atomically
//! and loads it from the cache afterwards.
//!
//! ```no_run
//! use burn::backend::NdArray;
//! use dwconv::models::MobileNetConfig;
//! use dwconv::pretrained::Weights;
//!
//! let device = Default::default();
//! let model = MobileNetConfig::pretrained::<NdArray>(Weights::MobileNetV3LargeV2, &device)?;
//! # Ok::<(), dwconv::Error>(())
//! ```

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use burn::tensor::backend::Backend;
use sha2::{Digest, Sha256};

use crate::Error;
use crate::models::{Architecture, MobileNet, MobileNetConfig};

/// The environment variable that overrides [`cache_dir`].
pub const CACHE_DIR_VARIABLE: &str = "DWCONV_CACHE_DIR";

/// Declares [`Weights`] and its table from one row per checkpoint.
macro_rules! published_weights {
    ($(
        $(#[$doc:meta])*
        $variant:ident => $name:literal, $architecture:ident, $width:literal,
            $url:literal, $sha256:literal, crop $crop:literal, resize $resize:literal,
            $interpolation:ident, top1 $top1:literal;
    )*) => {
        /// A published ImageNet-1K checkpoint (torchvision's `<Model>_Weights.<TAG>`).
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum Weights {
            $($(#[$doc])* $variant,)*
        }

        impl Weights {
            /// Every published checkpoint.
            pub const ALL: &'static [Weights] = &[$(Weights::$variant),*];

            /// What is known of this checkpoint.
            pub fn info(self) -> &'static WeightsInfo {
                match self {
                    $(Weights::$variant => &WeightsInfo {
                        name: $name,
                        architecture: Architecture::$architecture,
                        width_mult: $width,
                        url: $url,
                        sha256_prefix: $sha256,
                        crop_size: $crop,
                        resize_size: $resize,
                        interpolation: Interpolation::$interpolation,
                        top1: $top1,
                    },)*
                }
            }
        }
    };
}

// From torchvision 0.29's weight enums (`torchvision.models.*_Weights`: `url`, the
// `transforms` partial's crop/resize/interpolation, `meta["_metrics"]` top-1).
published_weights! {
    /// `MobileNet_V2_Weights.IMAGENET1K_V1`.
    MobileNetV2V1 => "v2-imagenet1k-v1", V2, 1.0,
        "https://download.pytorch.org/models/mobilenet_v2-b0353104.pth", "b0353104",
        crop 224, resize 256, Bilinear, top1 71.878;
    /// `MobileNet_V2_Weights.IMAGENET1K_V2`.
    MobileNetV2V2 => "v2-imagenet1k-v2", V2, 1.0,
        "https://download.pytorch.org/models/mobilenet_v2-7ebf99e0.pth", "7ebf99e0",
        crop 224, resize 232, Bilinear, top1 72.154;
    /// `MobileNet_V3_Small_Weights.IMAGENET1K_V1`.
    MobileNetV3SmallV1 => "v3-small-imagenet1k-v1", V3Small, 1.0,
        "https://download.pytorch.org/models/mobilenet_v3_small-047dcff4.pth", "047dcff4",
        crop 224, resize 256, Bilinear, top1 67.668;
    /// `MobileNet_V3_Large_Weights.IMAGENET1K_V1`.
    MobileNetV3LargeV1 => "v3-large-imagenet1k-v1", V3Large, 1.0,
        "https://download.pytorch.org/models/mobilenet_v3_large-8738ca79.pth", "8738ca79",
        crop 224, resize 256, Bilinear, top1 74.042;
    /// `MobileNet_V3_Large_Weights.IMAGENET1K_V2`.
    MobileNetV3LargeV2 => "v3-large-imagenet1k-v2", V3Large, 1.0,
        "https://download.pytorch.org/models/mobilenet_v3_large-5c1a4163.pth", "5c1a4163",
        crop 224, resize 232, Bilinear, top1 75.274;
    /// `EfficientNet_B0_Weights.IMAGENET1K_V1`.
    EfficientNetB0V1 => "efficientnet-b0-imagenet1k-v1", EfficientNetB0, 1.0,
        "https://download.pytorch.org/models/efficientnet_b0_rwightman-7f5810bc.pth", "7f5810bc",
        crop 224, resize 256, Bicubic, top1 77.692;
    /// `EfficientNet_B1_Weights.IMAGENET1K_V1`.
    EfficientNetB1V1 => "efficientnet-b1-imagenet1k-v1", EfficientNetB1, 1.0,
        "https://download.pytorch.org/models/efficientnet_b1_rwightman-bac287d4.pth", "bac287d4",
        crop 240, resize 256, Bicubic, top1 78.642;
    /// `EfficientNet_B1_Weights.IMAGENET1K_V2`.
    EfficientNetB1V2 => "efficientnet-b1-imagenet1k-v2", EfficientNetB1, 1.0,
        "https://download.pytorch.org/models/efficientnet_b1-c27df63c.pth", "c27df63c",
        crop 240, resize 255, Bilinear, top1 79.838;
    /// `EfficientNet_B2_Weights.IMAGENET1K_V1`.
    EfficientNetB2V1 => "efficientnet-b2-imagenet1k-v1", EfficientNetB2, 1.0,
        "https://download.pytorch.org/models/efficientnet_b2_rwightman-c35c1473.pth", "c35c1473",
        crop 288, resize 288, Bicubic, top1 80.608;
    /// `EfficientNet_B3_Weights.IMAGENET1K_V1`.
    EfficientNetB3V1 => "efficientnet-b3-imagenet1k-v1", EfficientNetB3, 1.0,
        "https://download.pytorch.org/models/efficientnet_b3_rwightman-b3899882.pth", "b3899882",
        crop 300, resize 320, Bicubic, top1 82.008;
    /// `EfficientNet_B4_Weights.IMAGENET1K_V1`.
    EfficientNetB4V1 => "efficientnet-b4-imagenet1k-v1", EfficientNetB4, 1.0,
        "https://download.pytorch.org/models/efficientnet_b4_rwightman-23ab8bcd.pth", "23ab8bcd",
        crop 380, resize 384, Bicubic, top1 83.384;
    /// `EfficientNet_B5_Weights.IMAGENET1K_V1`.
    EfficientNetB5V1 => "efficientnet-b5-imagenet1k-v1", EfficientNetB5, 1.0,
        "https://download.pytorch.org/models/efficientnet_b5_lukemelas-1a07897c.pth", "1a07897c",
        crop 456, resize 456, Bicubic, top1 83.444;
    /// `EfficientNet_B6_Weights.IMAGENET1K_V1`.
    EfficientNetB6V1 => "efficientnet-b6-imagenet1k-v1", EfficientNetB6, 1.0,
        "https://download.pytorch.org/models/efficientnet_b6_lukemelas-24a108a5.pth", "24a108a5",
        crop 528, resize 528, Bicubic, top1 84.008;
    /// `EfficientNet_B7_Weights.IMAGENET1K_V1`.
    EfficientNetB7V1 => "efficientnet-b7-imagenet1k-v1", EfficientNetB7, 1.0,
        "https://download.pytorch.org/models/efficientnet_b7_lukemelas-c5b4e57e.pth", "c5b4e57e",
        crop 600, resize 600, Bicubic, top1 84.122;
    /// `EfficientNet_V2_S_Weights.IMAGENET1K_V1`.
    EfficientNetV2SV1 => "efficientnet-v2-s-imagenet1k-v1", EfficientNetV2S, 1.0,
        "https://download.pytorch.org/models/efficientnet_v2_s-dd5fe13b.pth", "dd5fe13b",
        crop 384, resize 384, Bilinear, top1 84.228;
    /// `EfficientNet_V2_M_Weights.IMAGENET1K_V1`.
    EfficientNetV2MV1 => "efficientnet-v2-m-imagenet1k-v1", EfficientNetV2M, 1.0,
        "https://download.pytorch.org/models/efficientnet_v2_m-dc08266a.pth", "dc08266a",
        crop 480, resize 480, Bilinear, top1 85.112;
    /// `EfficientNet_V2_L_Weights.IMAGENET1K_V1`.
    EfficientNetV2LV1 => "efficientnet-v2-l-imagenet1k-v1", EfficientNetV2L, 1.0,
        "https://download.pytorch.org/models/efficientnet_v2_l-59c71312.pth", "59c71312",
        crop 480, resize 480, Bicubic, top1 85.808;
    /// `MNASNet0_5_Weights.IMAGENET1K_V1`.
    MnasNet05V1 => "mnasnet-0.5-imagenet1k-v1", MnasNet, 0.5,
        "https://download.pytorch.org/models/mnasnet0.5_top1_67.823-3ffadce67e.pth", "3ffadce67e",
        crop 224, resize 256, Bilinear, top1 67.734;
    /// `MNASNet0_75_Weights.IMAGENET1K_V1`.
    MnasNet075V1 => "mnasnet-0.75-imagenet1k-v1", MnasNet, 0.75,
        "https://download.pytorch.org/models/mnasnet0_75-7090bc5f.pth", "7090bc5f",
        crop 224, resize 232, Bilinear, top1 71.18;
    /// `MNASNet1_0_Weights.IMAGENET1K_V1`.
    MnasNet10V1 => "mnasnet-1.0-imagenet1k-v1", MnasNet, 1.0,
        "https://download.pytorch.org/models/mnasnet1.0_top1_73.512-f206786ef8.pth", "f206786ef8",
        crop 224, resize 256, Bilinear, top1 73.456;
    /// `MNASNet1_3_Weights.IMAGENET1K_V1`.
    MnasNet13V1 => "mnasnet-1.3-imagenet1k-v1", MnasNet, 1.3,
        "https://download.pytorch.org/models/mnasnet1_3-a4c69d6f.pth", "a4c69d6f",
        crop 224, resize 232, Bilinear, top1 76.506;
}

/// How the evaluation images were resized.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Interpolation {
    /// Bilinear (torchvision's default).
    Bilinear,
    /// Bicubic.
    Bicubic,
}

/// A published checkpoint: where it is, how to check it, what it builds, and the
/// evaluation preprocessing (resize the shorter side to `resize_size`, centre-crop
/// `crop_size`, ImageNet mean and standard deviation).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct WeightsInfo {
    /// The name [`Weights`] parses from (`infer --pretrained NAME`).
    pub name: &'static str,
    /// The network it fits.
    pub architecture: Architecture,
    /// Its width multiplier (MnasNet's `alpha`).
    pub width_mult: f64,
    /// Where it is published.
    pub url: &'static str,
    /// The start of its SHA-256 as hex, as the publisher gives it.
    pub sha256_prefix: &'static str,
    /// Side of the centre crop the network sees.
    pub crop_size: usize,
    /// Shorter side the image is resized to before the crop.
    pub resize_size: usize,
    /// Resampling of that resize.
    pub interpolation: Interpolation,
    /// Published ImageNet-1K top-1 accuracy (%).
    pub top1: f64,
}

impl WeightsInfo {
    /// The configuration these weights fit (1000 classes, the architecture's reference
    /// dropout).
    pub fn config(&self) -> MobileNetConfig {
        MobileNetConfig::reference(self.architecture, IMAGENET_CLASSES)
            .with_width_mult(self.width_mult)
    }

    /// The file name in the cache (the URL's last segment).
    pub fn file_name(&self) -> &'static str {
        self.url.rsplit('/').next().unwrap_or(self.url)
    }
}

impl std::fmt::Display for Weights {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.info().name)
    }
}

impl std::str::FromStr for Weights {
    type Err = Error;

    fn from_str(name: &str) -> crate::Result<Self> {
        Weights::ALL
            .iter()
            .copied()
            .find(|w| w.info().name == name)
            .ok_or_else(|| {
                let names: Vec<&str> = Weights::ALL.iter().map(|w| w.info().name).collect();
                Error::Config(format!(
                    "no published weights named '{name}'; expected one of: {}",
                    names.join(", ")
                ))
            })
    }
}

/// The number of ImageNet-1K classes.
pub const IMAGENET_CLASSES: usize = 1000;

/// The ImageNet-1K class names in label order (torchvision's list).
pub fn imagenet_class_names() -> Vec<&'static str> {
    include_str!("imagenet_classes.txt").lines().collect()
}

/// Where downloaded weights are kept: `$DWCONV_CACHE_DIR`, else
/// `$XDG_CACHE_HOME/dwconv`, else `~/.cache/dwconv`.
pub fn cache_dir() -> PathBuf {
    let var = |name| {
        std::env::var_os(name)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    var(CACHE_DIR_VARIABLE)
        .or_else(|| var("XDG_CACHE_HOME").map(|d| d.join("dwconv")))
        .or_else(|| var("HOME").map(|d| d.join(".cache").join("dwconv")))
        .unwrap_or_else(|| std::env::temp_dir().join("dwconv"))
}

/// The path of `file_name` in `cache_dir`, downloaded from `url` first unless it is
/// there. The download goes to a temporary file that is renamed into place only once
/// whole and once its SHA-256 starts with `sha256_prefix` (hex): a wrong hash, a cut-off
/// or failed transfer is an error and leaves nothing in the cache. `progress` shows a
/// progress bar on a terminal.
pub fn download(
    url: &str,
    sha256_prefix: &str,
    file_name: &str,
    cache_dir: &Path,
    progress: bool,
) -> crate::Result<PathBuf> {
    if sha256_prefix.len() < 8 || !sha256_prefix.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(Error::Config(format!(
            "SHA-256 prefix '{sha256_prefix}' must be at least 8 hex digits"
        )));
    }
    let target = cache_dir.join(file_name);
    if target.is_file() {
        return Ok(target);
    }
    let file_error = |message: String| Error::File {
        path: target.clone(),
        message,
    };
    std::fs::create_dir_all(cache_dir)
        .map_err(|e| file_error(format!("cannot create the cache directory: {e}")))?;
    let temporary = crate::atomic_write::temporary_path(&target);
    let result = fetch_into(url, sha256_prefix, &temporary, progress)
        .and_then(|()| std::fs::rename(&temporary, &target).map_err(|e| e.to_string()));
    result.map_err(|message| {
        let _ = std::fs::remove_file(&temporary);
        file_error(message)
    })?;
    Ok(target)
}

/// Streams `url` into `path`, hashing as it goes; checks the length and the hash.
fn fetch_into(url: &str, sha256_prefix: &str, path: &Path, progress: bool) -> Result<(), String> {
    let agent = ureq::Agent::new_with_config(
        ureq::Agent::config_builder()
            .timeout_connect(Some(Duration::from_secs(30)))
            .timeout_recv_body(Some(Duration::from_secs(60)))
            .build(),
    );
    let mut response = agent
        .get(url)
        .call()
        .map_err(|e| format!("cannot download {url}: {e}"))?;
    let expected_len: Option<u64> = response
        .headers()
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    let bar = match progress {
        true => indicatif::ProgressBar::new(expected_len.unwrap_or(0)),
        false => indicatif::ProgressBar::hidden(),
    };
    let mut reader = response.body_mut().as_reader();
    let mut file =
        std::fs::File::create(path).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 1 << 16];
    let mut received: u64 = 0;
    loop {
        let n = match reader.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) => {
                return Err(format!(
                    "download of {url} cut off after {received} bytes: {e}"
                ));
            }
        };
        hasher.update(&buffer[..n]);
        file.write_all(&buffer[..n])
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        received += n as u64;
        bar.set_position(received);
    }
    bar.finish_and_clear();
    if let Some(expected) = expected_len.filter(|&len| len != received) {
        return Err(format!(
            "download of {url} cut off: {received} of {expected} bytes"
        ));
    }
    let digest: String = hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    if !digest.starts_with(&sha256_prefix.to_ascii_lowercase()) {
        return Err(format!(
            "download of {url} has SHA-256 {digest}, not the published {sha256_prefix}…"
        ));
    }
    file.sync_all()
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}

impl MobileNetConfig {
    /// The network of `weights` with those weights loaded, downloading them into
    /// [`cache_dir`] first unless they are there (see [`download`]).
    pub fn pretrained<B: Backend>(
        weights: Weights,
        device: &B::Device,
    ) -> crate::Result<MobileNet<B>> {
        let info = weights.info();
        let path = download(
            info.url,
            info.sha256_prefix,
            info.file_name(),
            &cache_dir(),
            true,
        )?;
        info.config().init_from_torchvision(&path, device)
    }
}
