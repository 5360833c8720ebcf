//! Folders of PNG/JPEG images.
//!
//! A folder whose sub-folders hold images is a labelled set (one class per sub-folder, in
//! name order); a folder holding the images itself is an unlabelled set. Every image is
//! resized so its shorter side is the target resolution and then center-cropped to a square,
//! which keeps the aspect ratio and never pads.

use std::path::{Path, PathBuf};

use image::imageops::{self, FilterType};
use image::{ImageBuffer, ImageReader, Pixel};

use super::{ColorMode, DataKind, Dataset};
use crate::error::{DiffuseError, Result};

/// Extensions (compared case-insensitively) of the files that are decoded; others are skipped.
const EXTENSIONS: [&str; 3] = ["png", "jpg", "jpeg"];

/// Decodes every image under `dir` into `resolution`×`resolution` samples of `color`.
pub fn load(dir: &Path, resolution: usize, color: ColorMode) -> Result<Dataset> {
    if resolution == 0 {
        return Err(DiffuseError::config(
            "the image resolution must be at least 1",
        ));
    }
    let side = u32::try_from(resolution)
        .map_err(|_| DiffuseError::config(format!("image resolution {resolution} is too large")))?;
    if !dir.is_dir() {
        return Err(DiffuseError::bad_file(dir, "no such folder of images"));
    }
    let listing = list_images(dir)?;
    if listing.files.is_empty() {
        return Err(DiffuseError::bad_file(
            dir,
            "no .png/.jpg/.jpeg images, neither in the folder nor in class sub-folders",
        ));
    }
    let channels = match color {
        ColorMode::Gray => 1,
        ColorMode::Rgb => 3,
    };
    let values = decode_all(
        &listing.files,
        side,
        color,
        channels * resolution * resolution,
    )?;
    Dataset::new(
        [channels, resolution, resolution],
        values,
        listing.labels,
        listing.class_names,
        DataKind::Images,
    )
}

/// The files to decode, in a fixed order, with their classes when the folder has them.
struct Listing {
    files: Vec<PathBuf>,
    labels: Option<Vec<usize>>,
    class_names: Vec<String>,
}

/// Class sub-folders win when any holds images; loose images beside them would be ambiguous.
fn list_images(dir: &Path) -> Result<Listing> {
    let (sub_dirs, loose) = read_sorted(dir)?;
    let mut files = Vec::new();
    let mut labels = Vec::new();
    let mut class_names = Vec::new();
    for sub_dir in sub_dirs {
        let (_, images) = read_sorted(&sub_dir)?;
        if images.is_empty() {
            continue;
        }
        labels.extend(std::iter::repeat_n(class_names.len(), images.len()));
        class_names.push(file_name(&sub_dir));
        files.extend(images);
    }
    if class_names.is_empty() {
        return Ok(Listing {
            files: loose,
            labels: None,
            class_names,
        });
    }
    if let Some(stray) = loose.first() {
        return Err(DiffuseError::bad_file(
            stray,
            "an image beside class sub-folders; move it into a class folder or remove it",
        ));
    }
    Ok(Listing {
        files,
        labels: Some(labels),
        class_names,
    })
}

/// The visible sub-folders and image files directly in `dir`, each sorted by path.
fn read_sorted(dir: &Path) -> Result<(Vec<PathBuf>, Vec<PathBuf>)> {
    let mut dirs = Vec::new();
    let mut images = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| DiffuseError::io(dir, e))? {
        let path = entry.map_err(|e| DiffuseError::io(dir, e))?.path();
        if file_name(&path).starts_with('.') {
            continue;
        }
        if path.is_dir() {
            dirs.push(path);
        } else if is_image(&path) {
            images.push(path);
        }
    }
    dirs.sort();
    images.sort();
    Ok((dirs, images))
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn is_image(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| EXTENSIONS.iter().any(|x| e.eq_ignore_ascii_case(x)))
}

/// Decodes `files` on a few threads, each filling its own run of samples in file order.
fn decode_all(files: &[PathBuf], side: u32, color: ColorMode, numel: usize) -> Result<Vec<f32>> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get().min(8));
    let per_thread = files.len().div_ceil(threads);
    let mut values = vec![0.0; files.len() * numel];
    std::thread::scope(|scope| {
        let workers: Vec<_> = files
            .chunks(per_thread)
            .zip(values.chunks_mut(per_thread * numel))
            .map(|(paths, out)| {
                scope.spawn(move || {
                    paths
                        .iter()
                        .zip(out.chunks_mut(numel))
                        .try_for_each(|(path, sample)| decode_into(path, side, color, sample))
                })
            })
            .collect();
        // Joining in spawn order reports the first failing file of the sorted listing.
        workers.into_iter().try_for_each(|worker| {
            worker
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        })
    })?;
    Ok(values)
}

/// Decodes one file into `sample` (CHW, values in [-1, 1]).
fn decode_into(path: &Path, side: u32, color: ColorMode, sample: &mut [f32]) -> Result<()> {
    let image = ImageReader::open(path)
        .map_err(|e| DiffuseError::io(path, e))?
        .with_guessed_format()
        .map_err(|e| DiffuseError::io(path, e))?
        .decode()
        .map_err(|e| DiffuseError::bad_file(path, format!("cannot decode the image: {e}")))?;
    match color {
        ColorMode::Gray => write_chw(&square(&image.to_luma8(), side), sample),
        ColorMode::Rgb => write_chw(&square(&image.to_rgb8(), side), sample),
    }
    Ok(())
}

/// Resizes so the shorter side is `side`, then crops the center `side`×`side` square.
fn square<P>(image: &ImageBuffer<P, Vec<u8>>, side: u32) -> ImageBuffer<P, Vec<u8>>
where
    P: Pixel<Subpixel = u8> + 'static,
{
    let (width, height) = image.dimensions();
    let (new_w, new_h) = cover(width, height, side);
    let resized = imageops::resize(image, new_w, new_h, FilterType::Triangle);
    let x = (new_w - side) / 2;
    let y = (new_h - side) / 2;
    imageops::crop_imm(&resized, x, y, side, side).to_image()
}

/// The smallest size of the same aspect ratio (rounded) that covers a `side` square.
fn cover(width: u32, height: u32, side: u32) -> (u32, u32) {
    let scale = |long: u32, short: u32| {
        let scaled = (u64::from(long) * u64::from(side) + u64::from(short) / 2) / u64::from(short);
        u32::try_from(scaled).unwrap_or(u32::MAX).max(side)
    };
    if width <= height {
        (side, scale(height, width))
    } else {
        (scale(width, height), side)
    }
}

/// Writes an interleaved (HWC) 8-bit image as planar CHW floats in [-1, 1].
fn write_chw<P>(image: &ImageBuffer<P, Vec<u8>>, sample: &mut [f32])
where
    P: Pixel<Subpixel = u8>,
{
    let channels = usize::from(P::CHANNEL_COUNT);
    let plane = sample.len() / channels;
    for (i, pixel) in image.as_raw().chunks_exact(channels).enumerate() {
        for (c, &v) in pixel.iter().enumerate() {
            sample[c * plane + i] = f32::from(v) / 127.5 - 1.0;
        }
    }
}

#[cfg(test)]
mod tests {
    use image::{Rgb, RgbImage};

    use super::*;

    fn write_png(path: &Path, width: u32, height: u32, color: [u8; 3]) {
        RgbImage::from_pixel(width, height, Rgb(color))
            .save(path)
            .expect("write test png");
    }

    /// Two classes, `cats` (2 images) and `dogs` (1), plus a non-image file that is skipped.
    fn two_class_folder() -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("tempdir");
        let cats = dir.path().join("cats");
        let dogs = dir.path().join("dogs");
        std::fs::create_dir(&cats).expect("mkdir");
        std::fs::create_dir(&dogs).expect("mkdir");
        write_png(&dogs.join("a.png"), 8, 8, [0, 0, 255]);
        write_png(&cats.join("b.PNG"), 20, 40, [255, 0, 0]);
        write_png(&cats.join("a.png"), 10, 10, [0, 255, 0]);
        std::fs::write(cats.join("notes.txt"), "not an image").expect("write");
        dir
    }

    #[test]
    fn class_folders_give_labels_in_sorted_order() {
        let dir = two_class_folder();
        let data = load(dir.path(), 4, ColorMode::Rgb).expect("valid folder");
        assert_eq!(data.sample_shape, [3, 4, 4]);
        assert_eq!(data.len(), 3);
        assert_eq!(data.class_names, ["cats", "dogs"]);
        assert_eq!(data.labels, Some(vec![0, 0, 1]));
        // cats/a.png is green, cats/b.PNG red, dogs/a.png blue: CHW planes of 16 values.
        let dominant = |i: usize| {
            let s = data.sample(i);
            (0..3).find(|&c| s[c * 16..(c + 1) * 16].iter().all(|&v| v == 1.0))
        };
        assert_eq!(
            [dominant(0), dominant(1), dominant(2)],
            [Some(1), Some(0), Some(2)]
        );
        assert!(data.values.iter().all(|&v| (-1.0..=1.0).contains(&v)));
    }

    #[test]
    fn loose_images_are_unlabelled_and_gray_has_one_channel() {
        let dir = tempfile::tempdir().expect("tempdir");
        write_png(&dir.path().join("x.png"), 6, 6, [255, 255, 255]);
        write_png(&dir.path().join("y.png"), 6, 6, [0, 0, 0]);
        let data = load(dir.path(), 3, ColorMode::Gray).expect("valid folder");
        assert_eq!(data.sample_shape, [1, 3, 3]);
        assert_eq!(data.labels, None);
        assert!(data.class_names.is_empty());
        assert!(data.sample(0).iter().all(|&v| v == 1.0));
        assert!(data.sample(1).iter().all(|&v| v == -1.0));
    }

    #[test]
    fn resizes_shorter_side_then_crops_the_center() {
        // 40×20: left quarter black, middle half white, right quarter black. Scaling to
        // 32×16 and cropping the center 16 columns keeps only the white middle.
        let dir = tempfile::tempdir().expect("tempdir");
        let image = RgbImage::from_fn(40, 20, |x, _| {
            if (10..30).contains(&x) {
                Rgb([255; 3])
            } else {
                Rgb([0; 3])
            }
        });
        image.save(dir.path().join("wide.png")).expect("write");
        let data = load(dir.path(), 16, ColorMode::Gray).expect("valid folder");
        assert_eq!(data.sample_shape, [1, 16, 16]);
        let sample = data.sample(0);
        // The edge columns blend a little of the black border through the filter; a wrong
        // crop or a squash instead would leave fully black (-1) columns.
        assert!(sample.iter().all(|&v| v > 0.5), "{sample:?}");
        assert_eq!(cover(40, 20, 16), (32, 16));
        assert_eq!(cover(20, 41, 10), (10, 21));
    }

    #[test]
    fn undecodable_file_is_named() {
        let dir = two_class_folder();
        std::fs::write(dir.path().join("dogs/broken.jpg"), b"garbage").expect("write");
        let message = load(dir.path(), 4, ColorMode::Rgb).unwrap_err().to_string();
        assert!(message.contains("broken.jpg"), "{message}");
    }

    #[test]
    fn empty_or_missing_folder_and_zero_resolution_are_errors() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(dir.path().join("empty_class")).expect("mkdir");
        let message = load(dir.path(), 8, ColorMode::Rgb).unwrap_err().to_string();
        assert!(message.contains("no .png"), "{message}");
        let missing = dir.path().join("missing");
        let message = load(&missing, 8, ColorMode::Rgb).unwrap_err().to_string();
        assert!(message.contains("missing"), "{message}");
        assert!(load(dir.path(), 0, ColorMode::Rgb).is_err());
    }

    #[test]
    fn stray_image_beside_classes_is_an_error() {
        let dir = two_class_folder();
        write_png(&dir.path().join("stray.png"), 4, 4, [1, 2, 3]);
        let message = load(dir.path(), 4, ColorMode::Rgb).unwrap_err().to_string();
        assert!(message.contains("stray.png"), "{message}");
    }
}
