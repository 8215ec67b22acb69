//! The codelab's TensorFlow preprocessing, reproduced: `decode_image(channels=3)` (baseline
//! and progressive JPEG, PNG; grayscale replicated to RGB, alpha dropped), then
//! `tf.image.resize(method="bilinear")` (half-pixel centers, no antialias, float32 output
//! left in 0..255; the codelab's `convert_image_dtype` on float input changes nothing).
//!
//! The resize is written by hand because no image library computes exactly TensorFlow's
//! kernel (its sample positions, edge clamping and float32 operation order).
//!
//! JPEG: TensorFlow decodes with libjpeg-turbo's fast integer IDCT; the `image` crate
//! (zune-jpeg) uses an accurate integer IDCT, so decoded pixels can differ by a few levels on
//! high-frequency blocks. After resizing to 128×128 the differences mostly average out; the
//! golden-tensor test records the largest difference seen.

use image::ImageDecoder as _;

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("cannot decode the image: {0}")]
    Decode(String),
    #[error("the image is {0}×{1} pixels; at most 100 megapixels are accepted")]
    TooLarge(u32, u32),
}

/// Decodes to RGB8 (row-major, 3 bytes per pixel).
pub fn decode(bytes: &[u8]) -> Result<(u32, u32, Vec<u8>), ImageError> {
    let reader = image::ImageReader::new(std::io::Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| ImageError::Decode(e.to_string()))?;
    let decoder = reader
        .into_decoder()
        .map_err(|e| ImageError::Decode(e.to_string()))?;
    let (w, h) = decoder.dimensions();
    if u64::from(w) * u64::from(h) > 100_000_000 {
        return Err(ImageError::TooLarge(w, h));
    }
    let img = image::DynamicImage::from_decoder(decoder)
        .map_err(|e| ImageError::Decode(e.to_string()))?;
    let rgb = img.to_rgb8();
    Ok((w, h, rgb.into_raw()))
}

/// `tf.image.resize(images, [out_h, out_w], method="bilinear", antialias=False)` on one RGB8
/// image: float32 NHWC pixels in 0..255.
pub fn resize_bilinear(src: &[u8], w: usize, h: usize, out_w: usize, out_h: usize) -> Vec<f32> {
    // TensorFlow's interpolation weights with half-pixel centers: the source coordinate of
    // output index i is (i + 0.5) * scale - 0.5, clamped to the image for the lower and upper
    // neighbours, with the fraction taken before clamping.
    fn weights(out: usize, input: usize) -> Vec<(usize, usize, f32)> {
        let scale = input as f32 / out as f32;
        (0..out)
            .map(|i| {
                let x = (i as f32 + 0.5) * scale - 0.5;
                let floor = x.floor();
                let lower = (floor.max(0.0) as usize).min(input - 1);
                let upper = (x.ceil().max(0.0) as usize).min(input - 1);
                (lower, upper, x - floor)
            })
            .collect()
    }
    let xs = weights(out_w, w);
    let ys = weights(out_h, h);
    let px = |x: usize, y: usize, c: usize| f32::from(src[(y * w + x) * 3 + c]);
    let mut out = Vec::with_capacity(out_w * out_h * 3);
    for &(y0, y1, dy) in &ys {
        for &(x0, x1, dx) in &xs {
            for c in 0..3 {
                let top_left = px(x0, y0, c);
                let top_right = px(x1, y0, c);
                let bottom_left = px(x0, y1, c);
                let bottom_right = px(x1, y1, c);
                let top = top_left + (top_right - top_left) * dx;
                let bottom = bottom_left + (bottom_right - bottom_left) * dx;
                out.push(top + (bottom - top) * dy);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resizing_to_the_same_size_changes_nothing_and_halving_averages() {
        let src: Vec<u8> = (0..4 * 4 * 3).map(|i| i as u8).collect();
        let same = resize_bilinear(&src, 4, 4, 4, 4);
        assert_eq!(same, src.iter().map(|&v| f32::from(v)).collect::<Vec<_>>());
        // 2×1 → 1×1 with half-pixel centers samples exactly between the two pixels.
        let two = [0u8, 0, 0, 100, 200, 50];
        assert_eq!(resize_bilinear(&two, 2, 1, 1, 1), vec![50.0, 100.0, 25.0]);
    }

    #[test]
    fn upscaling_clamps_at_the_edges_like_tensorflow() {
        // 1-pixel-wide source: every output column is that pixel.
        let src = [10u8, 20, 30, 40, 50, 60];
        let out = resize_bilinear(&src, 1, 2, 3, 4);
        assert_eq!(&out[0..3], &[10.0, 20.0, 30.0]);
        assert_eq!(&out[out.len() - 3..], &[40.0, 50.0, 60.0]);
    }

    #[test]
    fn corrupt_bytes_are_an_error_not_a_crash() {
        assert!(decode(b"\xff\xd8\xff\xe0 not a jpeg").is_err());
        assert!(decode(b"").is_err());
    }
}
