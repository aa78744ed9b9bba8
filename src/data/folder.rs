//! Image folders: `root/<class>/<image>.{png,jpg,jpeg}`, one sub-folder per class (names
//! sorted to give the labels), or `root/train/<class>/…` and `root/valid/<class>/…` when
//! the split is given on disk.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use burn::data::dataset::Dataset;
use image::imageops::FilterType;
use rayon::prelude::*;

use super::ImageItem;
use crate::Error;

/// How to read an image folder.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct FolderOptions {
    /// Side of the square images produced (resized to fill, then centre-cropped).
    pub image_size: usize,
    /// Fraction of each class held out for validation when the root has no
    /// `train/` + `valid/` (or `val/`) sub-folders.
    pub valid_fraction: f64,
    /// Skip unreadable or non-image files with a warning instead of failing.
    pub skip_bad_files: bool,
}

impl Default for FolderOptions {
    fn default() -> Self {
        Self {
            image_size: 32,
            valid_fraction: 0.2,
            skip_bad_files: false,
        }
    }
}

/// A decoded image folder: class names and the two splits.
#[derive(Clone, Debug)]
pub struct FolderDataset {
    /// Class names (sub-folder names), sorted; label `i` is `class_names[i]`.
    pub class_names: Vec<String>,
    /// Training images.
    pub train: FolderSplit,
    /// Validation images.
    pub valid: FolderSplit,
}

/// One split of a [`FolderDataset`], decoded in memory.
#[derive(Clone, Debug)]
pub struct FolderSplit {
    items: Arc<Vec<ImageItem>>,
}

impl Dataset<ImageItem> for FolderSplit {
    fn get(&self, index: usize) -> Option<ImageItem> {
        self.items.get(index).cloned()
    }

    fn len(&self) -> usize {
        self.items.len()
    }
}

fn file_error(path: &Path, message: impl Into<String>) -> Error {
    Error::File {
        path: path.to_path_buf(),
        message: message.into(),
    }
}

fn sorted_entries(dir: &Path) -> crate::Result<Vec<PathBuf>> {
    let entries =
        std::fs::read_dir(dir).map_err(|e| file_error(dir, format!("cannot read folder: {e}")))?;
    let mut paths = entries
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_error(dir, format!("cannot read folder: {e}")))?;
    paths.sort();
    Ok(paths)
}

/// Class folders of `root`, sorted, with their files.
fn class_folders(root: &Path) -> crate::Result<Vec<(String, Vec<PathBuf>)>> {
    let mut classes = Vec::new();
    for dir in sorted_entries(root)?.into_iter().filter(|p| p.is_dir()) {
        let name = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let files: Vec<PathBuf> = sorted_entries(&dir)?
            .into_iter()
            .filter(|p| p.is_file())
            .collect();
        classes.push((name, files));
    }
    if classes.len() < 2 {
        return Err(file_error(
            root,
            format!(
                "an image folder needs at least 2 class sub-folders, found {}",
                classes.len()
            ),
        ));
    }
    Ok(classes)
}

fn is_image_name(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| matches!(e.to_ascii_lowercase().as_str(), "png" | "jpg" | "jpeg"))
}

/// Decodes and resizes one file to `size × size` RGB in `[0, 1]`.
fn load_image(path: &Path, size: usize) -> crate::Result<Vec<f32>> {
    if !is_image_name(path) {
        return Err(file_error(
            path,
            "not a PNG or JPEG image (by its extension)",
        ));
    }
    let img = image::ImageReader::open(path)
        .map_err(|e| file_error(path, format!("cannot open: {e}")))?
        .with_guessed_format()
        .map_err(|e| file_error(path, format!("cannot read: {e}")))?
        .decode()
        .map_err(|e| file_error(path, format!("cannot decode image: {e}")))?;
    let side = size as u32;
    let rgb = img
        .resize_to_fill(side, side, FilterType::Triangle)
        .to_rgb8();
    let plane = size * size;
    let mut pixels = vec![0.0f32; 3 * plane];
    for (i, p) in rgb.pixels().enumerate() {
        for c in 0..3 {
            pixels[c * plane + i] = f32::from(p.0[c]) / 255.0;
        }
    }
    Ok(pixels)
}

/// Decodes `files` (with labels) in parallel; bad files fail the load or, with
/// `skip_bad_files`, are reported on stderr and left out.
fn decode_all(
    files: Vec<(PathBuf, usize)>,
    options: &FolderOptions,
) -> crate::Result<Vec<ImageItem>> {
    let decoded: Vec<(PathBuf, crate::Result<Vec<f32>>, usize)> = files
        .into_par_iter()
        .map(|(path, label)| {
            let pixels = load_image(&path, options.image_size);
            (path, pixels, label)
        })
        .collect();
    let mut items = Vec::with_capacity(decoded.len());
    for (_, pixels, label) in decoded {
        match pixels {
            Ok(pixels) => items.push(ImageItem {
                pixels,
                size: options.image_size,
                label,
            }),
            Err(e) if options.skip_bad_files => eprintln!("warning: skipping {e}"),
            Err(e) => return Err(e),
        }
    }
    Ok(items)
}

impl FolderDataset {
    /// Decodes one image file into an item of `image_size` (label 0), with the same
    /// resizing as the folder loader.
    pub fn load_file(path: impl AsRef<Path>, image_size: usize) -> crate::Result<ImageItem> {
        Ok(ImageItem {
            pixels: load_image(path.as_ref(), image_size)?,
            size: image_size,
            label: 0,
        })
    }

    /// Class names of an image folder without decoding any image (the `train/`
    /// sub-folder's when the split is given on disk).
    pub fn class_names(root: impl AsRef<Path>) -> crate::Result<Vec<String>> {
        let root = root.as_ref();
        if !root.is_dir() {
            return Err(file_error(
                root,
                "image folder not found (expected a directory)",
            ));
        }
        let train = root.join("train");
        let dir = if train.is_dir() {
            train
        } else {
            root.to_path_buf()
        };
        Ok(class_folders(&dir)?
            .into_iter()
            .map(|(name, _)| name)
            .collect())
    }

    /// Reads `root`. Errors name the offending path: a missing root, fewer than two
    /// classes, an empty class folder, an unreadable or non-image file (unless
    /// `skip_bad_files`), or splits whose class folders differ.
    pub fn load(root: impl AsRef<Path>, options: &FolderOptions) -> crate::Result<Self> {
        let root = root.as_ref();
        if !root.is_dir() {
            return Err(file_error(
                root,
                "image folder not found (expected a directory)",
            ));
        }
        if options.image_size < 8 {
            return Err(Error::Config(format!(
                "image size must be at least 8, got {}",
                options.image_size
            )));
        }
        if !(0.0..1.0).contains(&options.valid_fraction) {
            return Err(Error::Config(format!(
                "valid_fraction must be in [0, 1), got {}",
                options.valid_fraction
            )));
        }
        let valid_dir = ["valid", "val"]
            .map(|d| root.join(d))
            .into_iter()
            .find(|p| p.is_dir());
        let (class_names, train_files, valid_files) = match (root.join("train"), valid_dir) {
            (train, Some(valid)) if train.is_dir() => {
                let train_classes = class_folders(&train)?;
                let valid_classes = class_folders(&valid)?;
                let names: Vec<String> = train_classes.iter().map(|(n, _)| n.clone()).collect();
                let valid_names: Vec<String> =
                    valid_classes.iter().map(|(n, _)| n.clone()).collect();
                if names != valid_names {
                    return Err(file_error(
                        &valid,
                        format!(
                            "validation classes {valid_names:?} differ from training classes {names:?}"
                        ),
                    ));
                }
                (
                    names,
                    labelled(&train, &train_classes)?,
                    labelled(&valid, &valid_classes)?,
                )
            }
            _ => {
                let classes = class_folders(root)?;
                let all = labelled(root, &classes)?;
                let names = classes.into_iter().map(|(n, _)| n).collect();
                // Every k-th file of each class (in sorted order) goes to validation.
                let (mut train, mut valid) = (Vec::new(), Vec::new());
                let mut seen = std::collections::HashMap::new();
                for (path, label) in all {
                    let i = seen.entry(label).or_insert(0usize);
                    let held_out = options.valid_fraction > 0.0
                        && ((*i as f64 + 1.0) * options.valid_fraction).floor()
                            > (*i as f64 * options.valid_fraction).floor();
                    *i += 1;
                    if held_out {
                        valid.push((path, label))
                    } else {
                        train.push((path, label))
                    }
                }
                (names, train, valid)
            }
        };
        Ok(Self {
            class_names,
            train: FolderSplit {
                items: Arc::new(decode_all(train_files, options)?),
            },
            valid: FolderSplit {
                items: Arc::new(decode_all(valid_files, options)?),
            },
        })
    }
}

/// `(file, label)` pairs of the class folders under `root`; an empty class folder is an
/// error naming it.
fn labelled(
    root: &Path,
    classes: &[(String, Vec<PathBuf>)],
) -> crate::Result<Vec<(PathBuf, usize)>> {
    let mut out = Vec::new();
    for (label, (name, files)) in classes.iter().enumerate() {
        if files.is_empty() {
            return Err(file_error(
                &root.join(name),
                "empty class folder: it holds no image files",
            ));
        }
        out.extend(files.iter().map(|f| (f.clone(), label)));
    }
    Ok(out)
}
