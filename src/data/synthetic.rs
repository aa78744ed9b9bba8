//! Procedurally drawn shapes: a learnable but not trivial image classification task that
//! needs no files. Each image is a pure function of `(seed, index)`.

use burn::data::dataset::Dataset;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::ImageItem;

/// The classes, in label order.
pub const SHAPE_NAMES: [&str; 10] = [
    "circle",
    "square",
    "triangle",
    "cross",
    "ring",
    "horizontal_stripes",
    "vertical_stripes",
    "diagonal_stripes",
    "checkerboard",
    "gradient",
];

/// Size and split of a [`SyntheticDataset`].
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SyntheticConfig {
    /// Image side in pixels (at least 8).
    pub image_size: usize,
    /// Number of classes, 2 to 10 (the first `num_classes` of [`SHAPE_NAMES`]).
    pub num_classes: usize,
    /// Training images.
    pub train_size: usize,
    /// Validation images.
    pub valid_size: usize,
    /// Seed of the whole dataset.
    pub seed: u64,
}

impl SyntheticConfig {
    /// Checks the values, naming the first bad one.
    pub fn validate(&self) -> crate::Result<()> {
        let bad = |msg: String| Err(crate::Error::Config(msg));
        if self.image_size < 8 {
            return bad(format!(
                "synthetic image size must be at least 8, got {}",
                self.image_size
            ));
        }
        if !(2..=SHAPE_NAMES.len()).contains(&self.num_classes) {
            return bad(format!(
                "synthetic dataset has 2 to {} classes, got {}",
                SHAPE_NAMES.len(),
                self.num_classes
            ));
        }
        if self.train_size == 0 || self.valid_size == 0 {
            return bad(format!(
                "train and validation sizes must be at least 1, got {} and {}",
                self.train_size, self.valid_size
            ));
        }
        Ok(())
    }

    /// The training split: indices `0..train_size`.
    pub fn train(&self) -> crate::Result<SyntheticDataset> {
        self.validate()?;
        Ok(SyntheticDataset {
            config: self.clone(),
            offset: 0,
            len: self.train_size,
        })
    }

    /// The validation split: indices `train_size..train_size + valid_size`, disjoint from
    /// the training split.
    pub fn valid(&self) -> crate::Result<SyntheticDataset> {
        self.validate()?;
        Ok(SyntheticDataset {
            config: self.clone(),
            offset: self.train_size,
            len: self.valid_size,
        })
    }
}

/// One split of the synthetic shapes dataset. Labels cycle through the classes, so every
/// class has `len / num_classes` images (±1).
#[derive(Clone, Debug)]
pub struct SyntheticDataset {
    config: SyntheticConfig,
    offset: usize,
    len: usize,
}

impl SyntheticDataset {
    /// Class names, in label order.
    pub fn class_names(&self) -> Vec<String> {
        SHAPE_NAMES[..self.config.num_classes]
            .iter()
            .map(|s| s.to_string())
            .collect()
    }

    /// Global index of the split's first image (the validation split starts after the
    /// training one).
    pub fn offset(&self) -> usize {
        self.offset
    }
}

impl Dataset<ImageItem> for SyntheticDataset {
    fn get(&self, index: usize) -> Option<ImageItem> {
        (index < self.len).then(|| {
            let global = (self.offset + index) as u64;
            let label = (self.offset + index) % self.config.num_classes;
            // Mix seed and index so neighbouring indices get unrelated streams.
            let stream = self.config.seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ global;
            let mut rng = StdRng::seed_from_u64(stream);
            draw(label, self.config.image_size, &mut rng)
        })
    }

    fn len(&self) -> usize {
        self.len
    }
}

fn random_colour(rng: &mut StdRng) -> [f32; 3] {
    [rng.random(), rng.random(), rng.random()]
}

fn luminance(c: [f32; 3]) -> f32 {
    0.299 * c[0] + 0.587 * c[1] + 0.114 * c[2]
}

/// Two colours with enough contrast that the shape is visible: (background, foreground).
fn contrasting_colours(rng: &mut StdRng) -> ([f32; 3], [f32; 3]) {
    loop {
        let (a, b) = (random_colour(rng), random_colour(rng));
        if (luminance(a) - luminance(b)).abs() > 0.25 {
            return (a, b);
        }
    }
}

/// Draws one image of `class`: a shape (or pattern patch) of random colour, position,
/// scale and rotation on a random background, plus Gaussian-ish pixel noise.
fn draw(class: usize, size: usize, rng: &mut StdRng) -> ImageItem {
    let (background, foreground) = contrasting_colours(rng);
    let s = size as f32;
    let scale = rng.random_range(0.22..0.38) * s;
    let margin = scale * 0.9;
    let cx = rng.random_range(margin..(s - margin).max(margin + 1e-3));
    let cy = rng.random_range(margin..(s - margin).max(margin + 1e-3));
    let angle: f32 = rng.random_range(0.0..std::f32::consts::TAU);
    // Patterns keep their orientation class: small jitter only.
    let jitter: f32 = rng.random_range(-0.15..0.15);
    let period = rng.random_range(0.28..0.45);
    let second_colour = loop {
        let c = random_colour(rng);
        if (luminance(c) - luminance(foreground)).abs() > 0.25 {
            break c;
        }
    };
    let noise = rng.random_range(0.02..0.08);
    let mut pixels = vec![0.0f32; 3 * size * size];
    let plane = size * size;
    for y in 0..size {
        for x in 0..size {
            // Shape coordinates: centred, rotated, in units of `scale`.
            let (dx, dy) = (x as f32 + 0.5 - cx, y as f32 + 0.5 - cy);
            let (sin, cos) = angle.sin_cos();
            let (u, v) = (
                (cos * dx + sin * dy) / scale,
                (-sin * dx + cos * dy) / scale,
            );
            let (pu, pv) = (dx / scale, dy / scale);
            let in_patch = pu.abs() <= 1.0 && pv.abs() <= 1.0;
            let stripes = |theta: f32| {
                let (st, ct) = (theta + jitter).sin_cos();
                let t = (ct * pu + st * pv) / period;
                in_patch && t.rem_euclid(2.0) < 1.0
            };
            // `mix` = 0 keeps the background, 1 paints the foreground.
            let (mix, colour) = match class {
                0 => (f32::from(u * u + v * v <= 1.0), foreground),
                1 => (f32::from(u.abs() <= 0.8 && v.abs() <= 0.8), foreground),
                2 => {
                    // Equilateral triangle: inside all three edge half-planes.
                    let inside = (0..3).all(|k| {
                        let a = std::f32::consts::TAU * k as f32 / 3.0;
                        -(a.sin() * u) + a.cos() * v >= -0.5
                    });
                    (f32::from(inside), foreground)
                }
                3 => {
                    let arm =
                        (u.abs() <= 0.28 && v.abs() <= 1.0) || (v.abs() <= 0.28 && u.abs() <= 1.0);
                    (f32::from(arm), foreground)
                }
                4 => {
                    let r2 = u * u + v * v;
                    (f32::from((0.36..=1.0).contains(&r2)), foreground)
                }
                5 => (f32::from(stripes(std::f32::consts::FRAC_PI_2)), foreground),
                6 => (f32::from(stripes(0.0)), foreground),
                7 => (f32::from(stripes(std::f32::consts::FRAC_PI_4)), foreground),
                8 => {
                    let (st, ct) = jitter.sin_cos();
                    let (a, b) = ((ct * pu + st * pv) / period, (-st * pu + ct * pv) / period);
                    let parity = (a.floor() as i32 + b.floor() as i32).rem_euclid(2) == 0;
                    (f32::from(in_patch && parity), foreground)
                }
                _ => {
                    // A patch shading smoothly from one colour to another.
                    let t = ((u + 1.0) / 2.0).clamp(0.0, 1.0);
                    let blend = [0, 1, 2].map(|c| foreground[c] * (1.0 - t) + second_colour[c] * t);
                    (f32::from(in_patch), blend)
                }
            };
            for c in 0..3 {
                // Sum of two uniforms: cheap, zero-mean, bell-shaped noise.
                let n = (rng.random::<f32>() + rng.random::<f32>() - 1.0) * noise * 2.0;
                let value = background[c] * (1.0 - mix) + colour[c] * mix + n;
                pixels[c * plane + y * size + x] = value.clamp(0.0, 1.0);
            }
        }
    }
    ImageItem {
        pixels,
        size,
        label: class,
    }
}
